"""The coordinator: one named actor per evaluation that drives the whole run.

It lives next to the driver (on the head in a cluster; scheduled with node affinity to the
driver's node) and owns everything that must outlive a worker node: the plan, the counted
episodes (each index exactly once), the latest checkpoint of every running episode, and the
table of named actors with their restart counts. It is a threaded actor whose methods are the
run's four concerns, each in a module of its own:

- `setup`: the plan, the placement group and every named actor (run_setup.py);
- `run`: the episodes, a checkpoint interval at a time, and recovery of lost actors (scheduler.py);
- `repair`: the operator's fast path, answered from another thread while `run` goes on; it only
  swaps actors in the table (recovery.py) and never waits for the run thread;
- `poll`: what happened since the last poll, and the final outcome (run_ledger.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
import time
from typing import Any

from swarm_arena.api.job_channel import ResumePayload
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.arena.checkpoint import open_store
from swarm_arena.arena.recording.recorder import EpisodeRecorder
from swarm_arena.arena.recovery import ActorTable
from swarm_arena.arena.run_ledger import RunLedger
from swarm_arena.arena.run_models import PollBatch, RunOutcome
from swarm_arena.arena.run_setup import ENV_ACTOR_CPUS, RunLayout, plan_run, start_actors
from swarm_arena.arena.scheduler import EpisodeScheduler, RepairMarks, shard_seed

log = logging.getLogger(__name__)

__all__ = ["ENV_ACTOR_CPUS", "Coordinator", "shard_seed"]

SCORING_MODULE = "swarm_arena.arena.scoring.stopping"  # what `run` imports first; it imports the rest of scoring


class Coordinator:
    """Wrapped with `ray.remote(max_concurrency=...)` by the runner; named `<ns>/<eval>/coordinator`."""

    def __init__(self, evaluation: dict[str, Any], resume: ResumePayload | None = None) -> None:
        parsed = SwarmEvaluation.model_validate(evaluation)
        self.spec = parsed.spec
        self.evaluation = parsed.qualified_name
        self._table = ActorTable(self.spec.fault_tolerance.max_actor_restarts)
        self._resume = resume
        self._ledger: RunLedger | None = None  # setup() opens the store: its errors are InvalidSpec there
        self._marks = RepairMarks()
        self._failure: BaseException | None = None
        self._layout: RunLayout | None = None
        self._recorder: EpisodeRecorder | None = None

    def setup(self) -> list[str]:
        """Plan the run, create the placement group and every named actor; their names once all answer."""
        # Counted by earlier attempts (the operator's `SWARM_ARENA_RESUME`): never played again.
        self._ledger = RunLedger(open_store(self.spec, self.evaluation), self._resume)
        self._layout, _ = plan_run(self.spec, self.evaluation, self._ledger.resume)
        self._ledger.episodes_total = len(self._layout.matches)
        self._ledger.adopt_resumed()
        if self.spec.recording is not None:
            self._recorder = EpisodeRecorder(self.spec, self.evaluation, self._layout.agents)
        # The scoring modules (scipy.stats: about a second to import) are imported while the actors
        # start (start_actors waits on Ray, the GIL free), not when the run first needs them
        # (spec.stopping, the final score): that would stall the first episode by as much.
        scoring = threading.Thread(
            target=importlib.import_module, args=(SCORING_MODULE,), name="import-scoring", daemon=True
        )
        scoring.start()
        start_actors(self.spec, self._layout, self._table)
        scoring.join()  # an import that failed fails again, with its error, where the run imports it
        return self._table.names()

    def run(self) -> RunOutcome:
        """Play every episode of the plan once; the episodes, leaderboard and timings."""
        assert self._layout is not None and self._ledger is not None, "setup() first"
        started = time.monotonic()
        scheduler = EpisodeScheduler(
            self.spec, self.evaluation, self._layout, self._table, self._ledger, self._marks, lambda: self._failure,
            self._recorder,
        )
        try:
            scheduler.run()
            recordings = self._recorder.drain() if self._recorder is not None else None
        except BaseException as exc:
            self._failure = exc
            raise
        outcome = self._ledger.outcome(self.spec, time.monotonic() - started)
        return dataclasses.replace(outcome, recordings=recordings)

    def repair(self, lost_node_ids: list[str] | None = None) -> list[str]:
        """Replace now every actor on `lost_node_ids` (None: every actor `ActorTable.lost` finds gone).

        Returns the names it replaced (started, not yet answering: the run thread restores them).
        Idempotent: an actor already replaced, or being replaced, no longer counts as on a lost
        node, so a second call replaces nothing twice.
        """
        began = time.monotonic()
        if lost_node_ids:
            names = self._table.on_nodes(lost_node_ids)
        else:
            names = self._table.lost()  # never a healthy actor that is only busy or still starting
        if not names:
            return []
        log.warning("%s: repair requested; replacing %s", self.evaluation, ", ".join(names))
        self._marks.mark(names, began)  # before the kill: the failed chunk it causes must see the mark
        try:
            return self._table.replace(names, lost_nodes=lost_node_ids or ())
        except BaseException as exc:
            self._failure = exc
            raise

    def poll(self) -> PollBatch:
        """What happened since the last poll (progress and counted episodes, step stats, restarts)."""
        assert self._ledger is not None, "setup() first"
        return self._ledger.poll(actors=len(self._table.names()))

    def actor_names(self) -> list[str]:
        return self._table.names()

    def ping(self) -> str:
        return self.evaluation

    def shutdown(self) -> None:
        """Kill every actor of the run and free the placement group."""
        from ray.util.placement_group import remove_placement_group

        self._table.kill_all()
        if self._layout is not None and self._layout.placement_group is not None:
            remove_placement_group(self._layout.placement_group)
            self._layout.placement_group = None
