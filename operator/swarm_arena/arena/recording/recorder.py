"""The coordinator's side of recording: each episode's chunks joined once, written when final.

A chunk's `RecordedSegment` arrives with its result. A chunk replayed after a loss starts at the
checkpoint it was restored from and supersedes every segment from that step on, so the joined
episode holds each step exactly once, whatever was lost and replayed. Nothing is written before
the episode is final; then one writer thread builds the tables and writes them (retried through a
storage hiccup, like checkpoints), so neither a step nor the run thread waits on storage. Files
are named by episode index, so a second write of an episode replaces the first.

After a lost head, the segments held in memory are gone: a recorded episode that was in flight
replays from its start (the same numbers), and a counted episode whose files are missing (its
write was cut short) is played again to record it (it is not counted twice).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.api.status import Recordings
from swarm_arena.arena.checkpoint import STORAGE_RETRY_S, open_files, spec_fingerprint, with_retries
from swarm_arena.arena.errors import EvaluationFailed, InvalidSpec
from swarm_arena.arena.matchmaking import Match
from swarm_arena.arena.recording import tables
from swarm_arena.arena.recording.buffer import EpisodeSegments, RecordedSegment, join_segments, observed_agents

log = logging.getLogger(__name__)

FIELD = "spec.recording.storageURI"


def recording_root(spec: SwarmEvaluationSpec, evaluation: str) -> str:
    """The recording's folder: `<storage URI>/<namespace>/<name>/<spec fingerprint>/recording`."""
    assert spec.recording is not None
    return f"{spec.recording.uri(spec.checkpoint).rstrip('/')}/{evaluation}/{spec_fingerprint(spec)}/recording"


class EpisodeRecorder:
    def __init__(self, spec: SwarmEvaluationSpec, evaluation: str, agents: Sequence[str], retry_s: float = STORAGE_RETRY_S) -> None:
        assert spec.recording is not None
        self.selection = spec.recording.episodes
        uri = spec.recording.uri(spec.checkpoint)
        field = FIELD if spec.recording.storage_uri else "spec.checkpoint.storageURI"
        try:
            tables.pyarrow_modules()
            self._files = open_files(uri, field)
        except (ImportError, ValueError) as exc:
            raise InvalidSpec(f"spec.recording: {exc}") from None
        self.root = recording_root(spec, evaluation)
        self._prefix = f"{evaluation}/{spec_fingerprint(spec)}/recording"
        self.retry_s = retry_s
        self.agents = list(agents)
        self.observed = observed_agents(len(self.agents), spec.recording.observations.agents)
        environment = spec.environment.model_dump(by_alias=True, mode="json")
        self.digest = tables.params_digest(environment)
        self._lock = threading.Lock()
        self._segments = EpisodeSegments()
        self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="recording")
        self._writes: list[concurrent.futures.Future[None]] = []
        manifest = {
            "format": tables.FORMAT,
            "evaluation": evaluation,
            "environment": environment,
            "envParamsDigest": self.digest,
            "agents": self.agents,
            "observedAgents": list(self.observed),
            "seed": spec.seed,
        }
        self._write(tables.MANIFEST, json.dumps(manifest, indent=1).encode())
        self._written = self._listed()

    def _listed(self) -> set[int]:
        """Episodes whose files are in the store (the episodes table is written last)."""
        names = with_retries(f"listing {self.root}", lambda: self._files.list(f"{self._prefix}/{tables.EPISODES}"), self.retry_s)
        stems = (n.removesuffix(tables.PARQUET_SUFFIX) for n in names if n.endswith(tables.PARQUET_SUFFIX))
        return {int(s) for s in stems if s.isdigit()}

    def _write(self, name: str, data: bytes) -> None:
        with_retries(f"writing {self.root}/{name}", lambda: self._files.write(f"{self._prefix}/{name}", data), self.retry_s)

    # ---- what the scheduler asks -------------------------------------------------------------

    def wants(self, match: Match) -> bool:
        return self.selection.selects(match.index, match.pairing_label())

    def request(self, match: Match) -> tuple[int, ...] | None:
        """What a chunk of `match` records: None (nothing), or the agents whose observations it keeps."""
        return self.observed if self.wants(match) else None

    def unwritten(self, matches: Sequence[Match], counted: set[int]) -> set[int]:
        """Counted episodes it wants whose files are not in the store (their write was cut short)."""
        with self._lock:
            return {m.index for m in matches if m.index in counted and m.index not in self._written and self.wants(m)}

    def add(self, episode: int, segment: RecordedSegment) -> None:
        """A chunk's steps; they supersede whatever was kept from `segment.first_step` on (a replay)."""
        self._segments.add(episode, segment)

    def finish(self, match: Match, policy_agents: dict[str, tuple[int, ...]], record: dict[str, Any]) -> None:
        """The episode is final: join its chunks, check them against its record, and queue the write."""
        segments = self._segments.pop(match.index)
        steps = int(record["steps"])
        joined = join_segments(segments, steps)
        if joined is None:
            raise EvaluationFailed(
                f"spec.recording: episode {match.index}'s recorded chunks (from steps {sorted(segments)}) do not "
                f"join up to its {steps} steps"
            )
        returns = tables.agent_returns(joined.rewards)
        per_policy = tables.policy_returns(returns, policy_agents)
        if per_policy != record["returns"]:
            raise EvaluationFailed(
                f"spec.recording: episode {match.index}'s recorded rewards sum to {per_policy}, the episode counted "
                f"{record['returns']}: the recording is not the episode played"
            )
        future = self._writer.submit(
            self._write_episode, match, policy_agents, joined, returns, per_policy
        )
        with self._lock:
            self._writes.append(future)

    def _write_episode(
        self,
        match: Match,
        policy_agents: dict[str, tuple[int, ...]],
        joined: RecordedSegment,
        returns: np.ndarray,
        per_policy: dict[str, float],
    ) -> None:
        name = tables.episode_file(match.index)
        steps = tables.steps_table(match.index, joined, self.agents, policy_agents)
        self._write(f"{tables.STEPS}/{name}", tables.to_parquet(steps))
        if joined.observations is not None:
            seen = tables.observations_table(match.index, joined, self.observed, self.agents)
            self._write(f"{tables.OBSERVATIONS}/{name}", tables.to_parquet(seen))
        row = tables.episodes_table(
            match.index, match.seed, match.pairing_label(), self.digest, joined.steps, returns, per_policy
        )
        self._write(f"{tables.EPISODES}/{name}", tables.to_parquet(row))  # last: the episode is whole
        with self._lock:
            self._written.add(match.index)

    def failure(self) -> BaseException | None:
        """The first write that failed (after its retries), if one did."""
        with self._lock:
            failed = [f for f in self._writes if f.done() and f.exception() is not None]
            self._writes = [f for f in self._writes if not f.done() or f.exception() is not None]
        return failed[0].exception() if failed else None

    def drain(self) -> Recordings:
        """Wait for every queued write (raising the first that failed); what the store holds now."""
        with self._lock:
            writes = list(self._writes)
        for future in writes:
            future.result()
        self._writer.shutdown(wait=True)
        return self.recordings()

    def recordings(self) -> Recordings:
        with self._lock:
            return Recordings.of(self.root, sorted(self._written))
