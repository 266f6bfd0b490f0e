"""A user's own policy for the built-in `foraging` environment: the code `own-code.yaml` ships.

`ScoutPolicy` heads for the quarter of its view with the most food (not the nearest piece, as
the built-in `greedy` does) and eats what it stands on. It is batched like every policy: one
`act` call serves all of a shard's agents (docs/environments-and-policies.md).

On Kubernetes this file reaches the Ray cluster through `spec.runtimeEnv.py_modules` (zip it,
upload it, name the URI); locally it only has to be importable:
    PYTHONPATH=manifests/examples/own-code swarm-arena run manifests/examples/own-code/own-code.yaml
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

STAY, UP, DOWN, LEFT, RIGHT = range(5)


class ScoutPolicy:
    """Move toward the densest quarter of food in view; stay on food; wander when none is seen."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, seed: int = 0,
                 appetite: float = 0.5) -> None:
        if not (isinstance(action_space, spaces.Discrete) and action_space.n == 5):
            raise ValueError(f"ScoutPolicy plays foraging's Discrete(5) actions, got {action_space}")
        size = int(np.prod(observation_space.shape or (0,)))
        window = math.isqrt(size // 3)
        if 3 * window * window != size or window % 2 == 0:
            raise ValueError(f"ScoutPolicy needs foraging's observation (3 x odd square window), got {observation_space}")
        self._window, self._appetite = window, appetite
        self._rng = np.random.default_rng(seed)

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def get_state(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]

    def act(self, observations: np.ndarray, agent_ids: Sequence[str]) -> np.ndarray:
        n, w = len(observations), self._window
        food = np.asarray(observations).reshape(n, 3, w, w)[:, 0] > self._appetite
        r = w // 2
        counts = np.stack([
            food[:, :r, :].sum(axis=(1, 2)),      # UP: rows above the agent
            food[:, r + 1:, :].sum(axis=(1, 2)),  # DOWN
            food[:, :, :r].sum(axis=(1, 2)),      # LEFT
            food[:, :, r + 1:].sum(axis=(1, 2)),  # RIGHT
        ], axis=1).astype(np.float64)
        # Jitter below 1 breaks ties between equally rich quarters without reordering the rest.
        best = np.argmax(counts + 0.5 * self._rng.random(counts.shape), axis=1) + UP
        wander = self._rng.integers(UP, RIGHT + 1, size=n)
        actions = np.where(counts.max(axis=1) > 0, best, wander)
        return np.where(food[:, r, r], STAY, actions).astype(np.int64)
