"""A foraging environment that holds still at a chosen checkpoint until the test lets it go (for
test_exact_recovery): while it holds, every policy shard is idle and the durable store has the
checkpoints written so far, so a test can lose an idle shard, or the whole head, at a known point.

`gate` is a folder: the environment of the episode seeded `hold_seed` writes `<gate>/held` when
its snapshot at step `hold_at` begins (the shards' states are already taken), then waits for
`<gate>/open`, at most `HOLD_LIMIT_S`.
"""

from __future__ import annotations

import os
import time
from typing import Any

from swarm_arena.arena.envs.foraging import ForagingEnv

HOLD_LIMIT_S = 180.0


class GatedForaging(ForagingEnv):
    def __init__(self, gate: str, hold_seed: int, hold_at: int, **params: Any) -> None:
        super().__init__(**params)
        self._gate, self._hold_seed, self._hold_at = gate, hold_seed, hold_at
        self._episode_seed: int | None = None

    def reset_arrays(self, seed: int | None = None) -> None:
        self._episode_seed = seed
        super().reset_arrays(seed)

    def get_state(self) -> dict[str, Any]:
        if self._episode_seed == self._hold_seed and self._steps == self._hold_at:
            self._hold()
        return {**super().get_state(), "episode_seed": self._episode_seed}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self._episode_seed = state["episode_seed"]

    def _hold(self) -> None:
        opened = os.path.join(self._gate, "open")
        if os.path.exists(opened):
            return
        with open(os.path.join(self._gate, "held"), "w"):
            pass
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not os.path.exists(opened):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{opened} did not appear within {HOLD_LIMIT_S:.0f} s")
            time.sleep(0.05)


def parallel_env(gate: str, hold_seed: int, hold_at: int, **params: Any) -> GatedForaging:
    return GatedForaging(gate, hold_seed, hold_at, **params)
