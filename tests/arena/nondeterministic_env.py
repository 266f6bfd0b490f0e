"""Foraging that is not deterministic given its seed and actions: at step `at`, agent `agent` gets
a reward drawn from an unseeded generator (for tests/arena/test_recording.py's replay check)."""

from __future__ import annotations

from typing import Any

import numpy as np

from swarm_arena.arena.envs.foraging import ForagingEnv


class NoisyForaging(ForagingEnv):
    def __init__(self, at: int, agent: int, **params: Any) -> None:
        super().__init__(**params)
        self._at, self._agent, self._noise = at, agent, np.random.default_rng()

    def step_arrays(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        step = self._steps
        rewards, terminated, truncated = super().step_arrays(actions)
        if step == self._at:
            rewards = np.array(rewards, dtype=np.float32)
            rewards[self._agent] += np.float32(self._noise.uniform(1.0, 2.0))
        return rewards, terminated, truncated


def parallel_env(**params: Any) -> NoisyForaging:
    return NoisyForaging(**params)
