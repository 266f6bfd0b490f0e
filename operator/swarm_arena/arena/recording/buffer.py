"""The environment actor's side of recording: one append per step, nothing written.

A chunk (the steps between two checkpoints) records into a `StepBuffer`; the chunk hands the
stacked `RecordedSegment` back with its result, so what a lost actor had buffered is lost with
the chunk it belonged to, and the replayed chunk records those steps again (recorder.py keeps
one copy of each step).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class RecordedSegment:
    """Steps `first_step`.. of one episode; every array is [steps, agents, ...] in possible_agents order."""

    first_step: int
    actions: np.ndarray  # [T, N, *action shape]; 0 for agents that did not act
    rewards: np.ndarray  # float32 [T, N]
    terminated: np.ndarray  # bool [T, N]
    truncated: np.ndarray  # bool [T, N]
    acted: np.ndarray  # bool [T, N]: alive at that step (the agents that acted)
    observations: np.ndarray | None = None  # [T, k, *obs shape] of the observed agents, None: not asked

    @property
    def steps(self) -> int:
        return len(self.rewards)


# Rows a buffer holds before it first grows (then it doubles): a chunk is usually shorter.
INITIAL_ROWS = 4096


class StepBuffer:
    """The steps of one chunk, in arrays allocated once (doubled when full): an append copies one
    row per column, and handing the chunk over stacks nothing. `observed`: agent indices whose
    observations are kept too; `capacity`: the most steps the chunk can have."""

    def __init__(self, first_step: int, observed: tuple[int, ...], capacity: int = INITIAL_ROWS) -> None:
        self.first_step = first_step
        self.observed = np.asarray(observed, dtype=np.int64)
        self.length = 0
        self._rows = max(1, min(capacity, INITIAL_ROWS))
        self._columns: list[np.ndarray] = []
        self._seen: list[np.ndarray] = []

    def observe(self, env: Any) -> None:
        """Before the step: what the observed agents see (nothing unless observations were asked)."""
        if self.observed.size:
            self._seen.append(env.observe(self.observed))

    def append(self, actions: np.ndarray, outcome: Any, alive: np.ndarray) -> None:
        """After the step: its actions, rewards, terminations, truncations and who acted, one row each."""
        row = (actions, outcome.rewards, outcome.terminated, outcome.truncated, alive)
        if not self._columns:
            self._columns = [np.empty((self._rows, *np.shape(v)), dtype=np.asarray(v).dtype) for v in row]
        elif self.length == len(self._columns[0]):
            self._columns = [np.concatenate([c, np.empty_like(c)]) for c in self._columns]
        for column, value in zip(self._columns, row, strict=True):
            column[self.length] = value
        self.length += 1

    def segment(self) -> RecordedSegment | None:
        if not self.length:
            return None
        actions, rewards, terminated, truncated, acted = (c[: self.length] for c in self._columns)
        return RecordedSegment(
            first_step=self.first_step,
            actions=compact_integers(actions),
            rewards=rewards.astype(np.float32, copy=False),
            terminated=terminated,
            truncated=truncated,
            acted=acted,
            observations=np.stack(self._seen) if self._seen else None,
        )


class EpisodeSegments:
    """The recorded chunks of the episodes in flight; a chunk replayed after a loss starts at the
    checkpoint it was restored from and supersedes every segment from that step on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._segments: dict[int, dict[int, RecordedSegment]] = {}

    def add(self, episode: int, segment: RecordedSegment) -> None:
        with self._lock:
            kept = {k: v for k, v in self._segments.get(episode, {}).items() if k < segment.first_step}
            kept[segment.first_step] = segment
            self._segments[episode] = kept

    def pop(self, episode: int) -> dict[int, RecordedSegment]:
        with self._lock:
            return self._segments.pop(episode, {})


def join_segments(segments: dict[int, RecordedSegment], steps: int) -> RecordedSegment | None:
    """The segments from step 0 to `steps`, end to end, as one; None when they do not join up."""
    pieces, at = [], 0
    while at < steps and at in segments:
        pieces.append(segments[at])
        at += segments[at].steps
    if at != steps or not pieces:
        return None
    observations = [p.observations for p in pieces]
    return RecordedSegment(
        first_step=0,
        actions=np.concatenate([p.actions for p in pieces]),
        rewards=np.concatenate([p.rewards for p in pieces]),
        terminated=np.concatenate([p.terminated for p in pieces]),
        truncated=np.concatenate([p.truncated for p in pieces]),
        acted=np.concatenate([p.acted for p in pieces]),
        observations=None if any(o is None for o in observations) else np.concatenate(observations),  # type: ignore[arg-type]
    )


def observed_agents(agents: int, sample: int) -> tuple[int, ...]:
    """`sample` agent indices spread evenly over `agents` (all of them when there are fewer)."""
    if sample <= 0:
        return ()
    return tuple(int(i) for i in np.unique(np.linspace(0, agents - 1, min(sample, agents)).round().astype(np.int64)))


def compact_integers(values: np.ndarray) -> np.ndarray:
    """Integer `values` in the smallest integer type that holds them (int8 for Discrete(21)); others as given."""
    if values.dtype.kind not in "iu" or not values.size:
        return values
    low, high = int(values.min()), int(values.max())
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.astype(dtype, copy=False)
    return values
