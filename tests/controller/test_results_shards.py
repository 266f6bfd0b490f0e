"""Counted episode records sharded over owned ConfigMaps (results_shards.py, pure): N records make
K ConfigMaps that read back exactly, sealed shards never change, a partial write and a missing
shard count every episode at most once."""

from __future__ import annotations

import json
import random

from swarm_arena.controller import results_shards as rs
from tests.controller.test_builders import UID

BUDGET = 2_048


def _line(episode: int) -> str:
    """A record line as any format would have it: the sharding reads only `episode`."""
    rng = random.Random(episode)
    return json.dumps({"episode": episode, "returns": {f"p{i}": rng.uniform(-1e3, 1e3) for i in range(4)}},
                      separators=(",", ":"))


def _place(shards: list[rs.Shard], new: list[int]) -> list[rs.Shard]:
    return rs.place(shards, new, _line, lambda index: BUDGET)


def _configmaps(layout: list[rs.Shard]) -> list[dict]:
    """Shard 0 as the results ConfigMap carries it (binaryData), the rest as built."""
    import base64

    main = {"binaryData": {rs.EPISODES_KEY: base64.b64encode(layout[0].packed).decode()}}
    return [main, *(rs.build_shard_configmap("ns", "big", UID, i, s) for i, s in enumerate(layout) if i > 0)]


def test_n_records_make_k_configmaps_that_read_back_exactly() -> None:
    layout = _place([], list(range(500)))
    assert len(layout) > 3
    assert all(len(s.packed) <= BUDGET for s in layout)
    assert [e for s in layout for e in s.members] == list(range(500))  # counting order, each once
    cms = _configmaps(layout)
    assert [cm["metadata"]["name"] for cm in cms[1:]] == [f"big-results-{i}" for i in range(1, len(layout))]
    assert all(cm["metadata"]["ownerReferences"][0]["uid"] == UID for cm in cms[1:])
    found = rs.read_back(cms, len(layout))
    assert found.lines == {e: _line(e) for e in range(500)} and found.missing == []
    assert [s.members for s in found.shards] == [s.members for s in layout]


def test_counting_more_changes_only_the_open_shard_and_new_ones() -> None:
    order = list(range(300))
    random.Random(3).shuffle(order)  # episodes finish out of order
    layout = _place([], order[:200])
    later = _place(layout, order[200:])
    assert later[: len(layout) - 1] == layout[:-1]  # sealed: the same bytes, never written again
    assert later[len(layout) - 1].members[: len(layout[-1].members)] == layout[-1].members
    in_one_go = _place([], order)
    assert sorted(e for s in later for e in s.members) == list(range(300))
    assert len(later) <= len(in_one_go) + 1
    assert rs.read_back(_configmaps(later), len(later)).lines == {e: _line(e) for e in range(300)}


def test_a_shard_written_before_the_configmap_that_names_it_still_counts_once() -> None:
    before = _place([], list(range(200)))
    after = _place(before, list(range(200, 400)))
    assert len(after) > len(before) + 1
    # The operator stopped while applying the shards (in order: the open one, then the new ones)
    # and before the results ConfigMap: that one still names the old count, the last shard is unwritten.
    written = _configmaps(after)[:-1]
    found = rs.read_back(written, named=len(before))
    kept = [e for s in after[:-1] for e in s.members]
    assert found.lines == {e: _line(e) for e in kept} and found.missing == []
    # The job's episode file still has the rest: read again after the restart, they fill the open shard.
    again = _place(found.shards, sorted(set(range(400)) - set(kept)))
    assert sorted(e for s in again for e in s.members) == list(range(400))
    assert again[: len(after) - 2] == after[: len(after) - 2]


def test_an_episode_in_two_shards_counts_once() -> None:
    layout = _place([], list(range(100)))
    doubled = rs.Shard(layout[1].members + layout[0].members[:5],
                       rs.compress_lines([_line(e) for e in layout[1].members + layout[0].members[:5]]))
    cms = _configmaps([layout[0], doubled, *layout[2:]])
    found = rs.read_back(cms, len(layout))
    assert sorted(found.lines) == list(range(100))


def test_a_missing_shard_loses_only_its_episodes_and_is_named() -> None:
    layout = _place([], list(range(400)))
    cms: list[dict | None] = list(_configmaps(layout))
    cms[2] = None  # deleted by hand
    found = rs.read_back(cms, len(layout))
    assert found.missing == [2]
    assert sorted(found.lines) == sorted(set(range(400)) - set(layout[2].members))
    assert found.shards[2].members == () and len(found.shards) == len(layout)
    # The episodes played again land in the open shard; the missing one is not reused.
    again = _place(found.shards, list(layout[2].members))
    assert sorted(e for s in again for e in s.members) == list(range(400))
    cms[-1] = None  # probed past the end: not a shard
    assert rs.read_back([*_configmaps(layout), None], len(layout)).shards == rs.read_back(
        _configmaps(layout), len(layout)).shards


def test_a_record_bigger_than_a_shard_gets_one_of_its_own() -> None:
    huge = {7: json.dumps({"episode": 7, "blob": random.Random(7).randbytes(4_000).hex()})}
    lines = {**{e: _line(e) for e in range(7)}, **huge}
    layout = rs.place([], list(range(8)), lines.__getitem__, lambda index: BUDGET)
    assert layout[-1].members == (7,) and len(layout[-1].packed) > BUDGET


class _GrowingFile:
    """A job's episodes file as the dashboard's log API serves it: the last N lines, and the job
    counts on between the status line the operator read and its read of this file."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def count(self, episodes: range) -> None:
        from swarm_arena.api.report import EpisodeRecord

        self.lines += [EpisodeRecord(episode=e, pairing={"all": "a"}, returns={"a": 1.0}, agents={"a": 1}, steps=1,
                                     agent_steps=1).model_dump_json(by_alias=True) for e in episodes]

    async def tail_file(self, node_id: str, filename: str, lines: int) -> str:
        return "".join(line + "\n" for line in self.lines[-lines:])


def test_episode_lines_counted_after_the_status_line_are_never_skipped() -> None:
    import asyncio

    from swarm_arena.controller.dashboard import JobInfo
    from swarm_arena.controller.decide import JobView
    from swarm_arena.controller.reconciler import Memory, Reconciler
    from swarm_arena.controller.settings import OperatorSettings
    from tests.controller.test_decide import record

    file, memory = _GrowingFile(), Memory()
    memory.counted.loaded = True
    reconciler = Reconciler(OperatorSettings(ray_auth_key=b"k" * 32), None, None)  # type: ignore[arg-type]
    info = JobInfo("s-1", "RUNNING", None, "node", {})
    done = 0
    for burst in (10, 50, 5, 400, 3):
        file.count(range(done, done + burst))
        done += burst
        job = JobView("s-1", True, "RUNNING", record=record(done=done))  # the status line says `done`...
        file.count(range(done, done + 20))  # ...and 20 more were counted before the file is read
        asyncio.run(reconciler._sync_episodes(memory, file, job, info))
        kept = sorted(memory.counted.episodes)
        assert kept == list(range(len(kept))) and len(kept) >= done  # no gap, nothing the status line counted missing
        done += 20
    assert memory.counted.unplaced == list(range(len(memory.counted.unplaced)))  # each once, in counting order
