"""What a run has counted and what the driver has not heard yet.

The ledger owns the counted episodes (through the checkpoint store: each index exactly once,
resumed ones included), the step statistics, the recoveries, and the batch `poll` hands over.
The slots' threads write it (each slot's chunks, restores and recoveries run on a thread of
their own); `poll` (another thread) only swaps the pending batch. Its lock guards nothing but
memory.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from swarm_arena.api.job_channel import ResumePayload
from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.api.status import Progress, Recovery, StepLatency
from swarm_arena.arena.checkpoint import CheckpointStore
from swarm_arena.arena.episode import ChunkResult
from swarm_arena.arena.run_models import PollBatch, ProgressEvent, RunOutcome

if TYPE_CHECKING:
    from swarm_arena.arena.scoring.stopping import StoppingRule

# Step latencies kept for the percentiles of the report; beyond this, every other one is dropped
# (the slowest is kept apart, so `max` is exact whatever was dropped).
MAX_LATENCY_SAMPLES = 1_000_000


class RunLedger:
    def __init__(self, store: CheckpointStore, resume: ResumePayload | None) -> None:
        self.store = store
        self.resume = resume or ResumePayload()
        self.episodes_total = 0
        self._lock = threading.Lock()
        self._pending = PollBatch()
        self._recoveries: list[Recovery] = []
        self._latencies: list[float] = []
        self._slowest = 0.0
        self._stepped_agent_steps = 0  # this run's, replays after a recovery included
        self._inflight_steps: dict[int, int] = {}  # slot -> agent-steps of its episode up to its last checkpoint
        self.stopping: StoppingRule | None = None  # spec.stopping's rule, once the scheduler is done with it

    def adopt_resumed(self) -> None:
        """Take over what earlier attempts counted: the resume payload, and the durable store.

        Episodes only the durable store knows (an attempt finished them after its last report
        reached the operator, then lost its head) are reported now, once, as counted by this run:
        whoever keeps the results (the operator's ConfigMap) hears of every episode."""
        resumed = {record.episode for record in self.resume.episodes}
        for record in self.resume.episodes:
            self.store.adopt_record(record)
        for episode, record in sorted(self.store.records().items()):
            if episode not in resumed:
                self.emit_progress(record)

    # ---- what the run thread records ---------------------------------------------------------

    def chunk_done(self, result: ChunkResult) -> None:
        with self._lock:
            self._pending.latencies_s.extend(result.latencies_s)
            self._pending.agent_steps += result.agent_steps
            self._latencies.extend(result.latencies_s)
            self._slowest = max([self._slowest, *result.latencies_s])
            self._stepped_agent_steps += result.agent_steps
            if len(self._latencies) > MAX_LATENCY_SAMPLES:
                self._latencies = self._latencies[::2]

    def count(self, record: EpisodeRecord) -> bool:
        """Count a finished episode; False when its index was counted already (a replayed finish)."""
        if record.episode in self.store.records():
            return False
        self.store.save_record(record)
        return True

    def in_flight(self, slot: int, agent_steps: int | None) -> None:
        """The agent-steps of the episode slot `slot` plays, up to its last checkpoint (None: none)."""
        with self._lock:
            if agent_steps is None:
                self._inflight_steps.pop(slot, None)
            else:
                self._inflight_steps[slot] = agent_steps

    def progress(self) -> Progress:
        records = self.store.records()
        with self._lock:
            inflight = sum(self._inflight_steps.values())
        steps = sum(r.agent_steps for r in records.values()) + inflight
        return Progress(episodes_completed=len(records), episodes_total=self.episodes_total, agent_steps=steps)

    def emit_progress(self, counted: EpisodeRecord | None = None) -> None:
        """Queue a progress snapshot, with the episode it counted: one poll sees both or neither."""
        event = ProgressEvent(progress=self.progress(), counted=counted)
        with self._lock:
            self._pending.events.append(event)

    def recovered(self, recovery: Recovery) -> None:
        with self._lock:
            self._recoveries.append(recovery)
            self._pending.recoveries.append(recovery)
            self._pending.restarted.extend(recovery.actors_restarted)

    # ---- what the driver reads ---------------------------------------------------------------

    def poll(self, actors: int) -> PollBatch:
        with self._lock:
            pending, self._pending = self._pending, PollBatch()
        pending.actors = actors
        return pending

    def outcome(self, spec: SwarmEvaluationSpec, wall_seconds: float) -> RunOutcome:
        from swarm_arena.arena.scoring import score_evaluation

        records = [self.store.records()[i] for i in sorted(self.store.records())]
        board = score_evaluation(spec, records)
        latency = None
        if self._latencies:
            p50, p99, p99_9 = np.percentile(np.asarray(self._latencies) * 1000.0, [50, 99, 99.9])
            latency = StepLatency(
                p50=round(float(p50), 4),
                p99=round(float(p99), 4),
                p99_9=round(float(p99_9), 4),
                max=round(self._slowest * 1000.0, 4),
            )
        return RunOutcome(
            episodes=records,
            episodes_total=self.episodes_total,
            leaderboard=board.leaderboard,
            step_latency_ms=latency,
            agent_steps=sum(r.agent_steps for r in records),
            agent_steps_per_second=self._stepped_agent_steps / wall_seconds if wall_seconds > 0 else None,
            recoveries=[*self.resume.recoveries, *self._recoveries],
            rating_method=board.method,
            pairwise=board.pairwise,
            return_aggregates=board.return_aggregates,
            populations=board.populations,
            social_outcomes=board.social_outcomes,
            stopped_early=self.stopping.outcome(len(records)) if self.stopping is not None else None,
        )
