"""Deciding, ping by ping, how to bring a slot's lost actors back: pure logic, no Ray.

After a chunk failed with a lost actor, the coordinator pings every actor of the slot until all
answer. Each answer is one of:

- alive: the actor answers (a new incarnation id means Ray restarted it in place);
- dead: Ray says it will not come back (restart budget spent, or killed) -> re-create it now;
- silent: no answer yet. An original actor gets `ray_wait_s` from the loss for Ray's own
  restart (Ray needs ~15 s to notice a dead node); one that we re-created gets `start_wait_s`
  from its re-creation to answer its first ping, whoever re-created it (this slot, or a repair on
  another thread: the scheduler hands those in). A replacement is never replaced again for being
  slow to start (each replacement costs one of `maxActorRestarts`): if it stays silent past its
  window the run fails, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from swarm_arena.arena.errors import EvaluationFailed


class Answer(Enum):
    ALIVE = "alive"
    DEAD = "dead"
    SILENT = "silent"


@dataclass(frozen=True)
class Decision:
    replace: tuple[str, ...]
    """Re-create these now."""
    waiting: tuple[str, ...]
    """Not back yet; ping again."""

    @property
    def done(self) -> bool:
        return not self.replace and not self.waiting


@dataclass
class Revival:
    """One slot's way back after a loss detected at `started` (monotonic seconds)."""

    names: tuple[str, ...]
    started: float
    ray_wait_s: float
    start_wait_s: float
    replaced_at: dict[str, float] = field(default_factory=dict)

    def decide(self, answers: dict[str, Answer], now: float) -> Decision:
        replace, waiting = [], []
        for name in self.names:
            answer = answers[name]
            if answer is Answer.ALIVE:
                continue
            if answer is Answer.DEAD:
                replace.append(name)
                continue
            if name in self.replaced_at:
                if now - self.replaced_at[name] > self.start_wait_s:
                    raise EvaluationFailed(
                        f"actor {name} was re-created after a loss but did not start within {self.start_wait_s:.0f} s: "
                        "no live node has the resources it asks for (spec.policies[].resources) outside the run's "
                        "placement group, and Ray has not placed its bundle again; the cluster lost capacity (a "
                        "worker that did not come back) or is still scaling up"
                    )
                waiting.append(name)
            elif now - self.started > self.ray_wait_s:
                replace.append(name)  # Ray did not bring it back in time: re-create it ourselves
            else:
                waiting.append(name)
        return Decision(replace=tuple(replace), waiting=tuple(waiting))

    def replaced(self, names: list[str], now: float) -> None:
        """Record that `names` were re-created at `now` (their start window begins)."""
        for name in names:
            self.replaced_at[name] = now
