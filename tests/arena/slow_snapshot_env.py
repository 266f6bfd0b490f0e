"""A foraging environment whose snapshot stalls (for test_step_latency): every checkpoint takes at
least `stall_s` more, as a slow store or a large environment state would. The stall sits between
two steps, never inside one, which is exactly what step latency must still count."""

from __future__ import annotations

import time
from typing import Any

from swarm_arena.arena.envs.foraging import ForagingEnv


class SlowSnapshotForaging(ForagingEnv):
    def __init__(self, stall_s: float, **params: Any) -> None:
        super().__init__(**params)
        self._stall_s = stall_s

    def get_state(self) -> dict[str, Any]:
        time.sleep(self._stall_s)  # the slow snapshot itself, not a wait in a test
        return super().get_state()


def parallel_env(stall_s: float, **params: Any) -> SlowSnapshotForaging:
    return SlowSnapshotForaging(stall_s, **params)
