"""The recorder's bookkeeping, pure: a replayed chunk supersedes what it replays, and the joined
episode holds each step once (no Ray, no storage)."""

from __future__ import annotations

import numpy as np

from swarm_arena.arena.recording.buffer import EpisodeSegments, RecordedSegment, compact_integers, join_segments, observed_agents


def _segment(first: int, steps: int, agents: int = 3, mark: float = 0.0) -> RecordedSegment:
    shape = (steps, agents)
    rewards = np.full(shape, mark, dtype=np.float32) + np.arange(first, first + steps, dtype=np.float32)[:, None]
    return RecordedSegment(
        first_step=first, actions=np.zeros(shape, dtype=np.int8), rewards=rewards,
        terminated=np.zeros(shape, bool), truncated=np.zeros(shape, bool), acted=np.ones(shape, bool),
    )  # fmt: skip


def test_segments_join_end_to_end_from_step_zero() -> None:
    joined = join_segments({0: _segment(0, 10), 10: _segment(10, 10), 20: _segment(20, 5)}, 25)
    assert joined is not None and joined.steps == 25
    assert joined.rewards[:, 0].tolist() == list(range(25))


def test_segments_with_a_gap_do_not_join() -> None:
    assert join_segments({0: _segment(0, 10), 20: _segment(20, 5)}, 25) is None
    assert join_segments({0: _segment(0, 10)}, 25) is None


def test_a_replayed_chunk_supersedes_what_was_recorded_from_its_step_on() -> None:
    segments = EpisodeSegments()
    for first in (0, 10, 20):
        segments.add(4, _segment(first, 10))
    segments.add(4, _segment(10, 10, mark=0.5))  # restored from the checkpoint of step 10: replayed
    kept = segments.pop(4)
    assert sorted(kept) == [0, 10] and kept[10].rewards[0, 0] == 10.5
    assert join_segments(kept, 30) is None and segments.pop(4) == {}


def test_actions_take_the_smallest_integer_type_and_samples_spread_evenly() -> None:
    assert compact_integers(np.array([0, 20], dtype=np.int64)).dtype == np.int8
    assert compact_integers(np.array([0, 40_000], dtype=np.int64)).dtype == np.int32
    assert compact_integers(np.array([0.5])).dtype == np.float64
    assert observed_agents(100, 3) == (0, 50, 99) and observed_agents(2, 5) == (0, 1) and observed_agents(9, 0) == ()


def test_a_buffer_grows_past_its_capacity_and_hands_over_every_row() -> None:
    from types import SimpleNamespace

    from swarm_arena.arena.recording.buffer import StepBuffer

    buffer = StepBuffer(10, (), capacity=2)
    actions = np.zeros(3, dtype=np.int64)
    for t in range(5):
        actions[:] = t  # the actor reuses its actions array: the buffer must copy
        outcome = SimpleNamespace(rewards=np.full(3, t, np.float32), terminated=np.zeros(3, bool),
                                  truncated=np.full(3, t == 4), )  # fmt: skip
        buffer.append(actions, outcome, np.ones(3, bool))
    segment = buffer.segment()
    assert segment is not None and segment.first_step == 10 and segment.steps == 5
    assert segment.actions[:, 0].tolist() == [0, 1, 2, 3, 4] and segment.actions.dtype == np.int8
    assert segment.truncated[:, 0].tolist() == [False] * 4 + [True]
    assert StepBuffer(0, ()).segment() is None
