"""A policy that breaks the first attempt of a run mid-way (the operator's backoff test).

It acts randomly; in attempt 1 (SWARM_ARENA_ATTEMPT, set by the operator on the job and its
actors) it raises once its episode passed a few steps, so the run fails with some episodes
counted and the re-submitted attempt must resume from them.
"""

from __future__ import annotations

import os

from swarm_arena.arena.policies.builtin import RandomPolicy


class FlakyPolicy(RandomPolicy):
    def act(self, observations, *args, **kwargs):  # type: ignore[override]
        self._steps = getattr(self, "_steps", 0) + 1
        if os.environ.get("SWARM_ARENA_ATTEMPT") == "1" and self._steps > 45:
            raise RuntimeError("flaky policy: failing the first attempt on purpose")
        return super().act(observations, *args, **kwargs)
