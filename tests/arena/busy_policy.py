"""A policy that is busy longer than a liveness ping, the way a real one can be: one `act` call
holds the interpreter (a C call that never lets the GIL go: here libc's `sleep` through
`ctypes.PyDLL`) for `busy_s` seconds, so even the ping thread of its actor cannot answer.

It is busy once per episode (only in the episode it is reset with `busy_seed`, when given), at
its `busy_step`-th call, and first writes `<marker>/busy` (and,
when done, `<marker>/done`), so a test knows when the actor is in that call.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import gymnasium
import numpy as np


class BusyPolicy:
    reads_observations = False

    def __init__(self, observation_space: gymnasium.Space, action_space: gymnasium.Space, seed: int,
                 marker: str, busy_s: int = 3, busy_step: int = 5, busy_seed: int | None = None) -> None:  # fmt: skip
        self._space, self._marker = action_space, marker
        self._busy_s, self._busy_step = int(busy_s), busy_step
        self._calls = 0
        self._busy_seed, self._busy_now = busy_seed, busy_seed is None

    def reset(self, seed: int) -> None:
        self._calls = 0
        self._busy_now = self._busy_seed is None or seed == self._busy_seed

    def act(self, observations: Any, agent_ids: list[str]) -> np.ndarray:
        self._calls += 1
        if self._busy_now and self._calls == self._busy_step:
            open(os.path.join(self._marker, "busy"), "w").close()
            ctypes.PyDLL(None).sleep(self._busy_s)  # holds the GIL throughout
            open(os.path.join(self._marker, "done"), "w").close()
        return np.zeros(len(observations), dtype=self._space.dtype)
