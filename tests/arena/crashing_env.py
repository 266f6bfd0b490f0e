"""A foraging environment that misbehaves the first time it is restored from a checkpoint (for
test_recovery_paths): its process dies (`crash`, as when its node is lost mid-restore) or the
restore takes `slow` seconds (as a large state loading)."""

from __future__ import annotations

import os
import time
from typing import Any

from swarm_arena.arena.envs.foraging import ForagingEnv


class FirstRestoreMisbehaves(ForagingEnv):
    def __init__(self, marker: str, crash: bool = False, slow: float = 0.0, **params: Any) -> None:
        super().__init__(**params)
        self._marker, self._crash, self._slow = marker, crash, slow

    def set_state(self, state: dict[str, Any]) -> None:
        if not os.path.exists(self._marker):
            with open(self._marker, "w"):
                pass
            if self._crash:
                os._exit(1)  # the worker dies mid-restore
            time.sleep(self._slow)
        super().set_state(state)


def parallel_env(marker: str, crash: bool = False, slow: float = 0.0, **params: Any) -> FirstRestoreMisbehaves:
    return FirstRestoreMisbehaves(marker, crash, slow, **params)
