"""Counted episode records sharded over owned ConfigMaps (results_shards.py, pure): N records make
K ConfigMaps that read back exactly, sealed shards never change, a partial write and a missing
shard count every episode at most once."""

from __future__ import annotations

import functools
import random

from swarm_arena.api import episode_codec
from swarm_arena.api.report import EpisodeRecord
from swarm_arena.controller import results_shards as rs
from tests.controller.test_builders import UID

BUDGET = 2_048


@functools.cache
def _record(episode: int, policies: int = 4) -> EpisodeRecord:
    """Full-precision returns: about 40 bytes a record packed, some 50 in a shard of BUDGET."""
    rng = random.Random(episode)
    names = [f"p{i}" for i in range(policies)]
    return EpisodeRecord(episode=episode, pairing={"all": ",".join(names)},
                         returns={p: rng.uniform(-1e3, 1e3) for p in names}, agents={p: 1 for p in names},
                         steps=10, agent_steps=10 * policies)


def _records(episodes) -> dict[int, EpisodeRecord]:
    return {e: _record(e) for e in episodes}


def _place(shards: list[rs.Shard], new: list[int]) -> list[rs.Shard]:
    return rs.place(shards, new, _record, lambda index: BUDGET)


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
    # Cut by packed size, full: each sealed shard has less than two records' bytes of room left.
    for s in layout[:-1]:
        assert BUDGET - len(s.packed) < 2 * len(s.packed) / len(s.members)
    assert [episode_codec.unpack(s.packed) for s in layout] == [[_record(e) for e in s.members] for s in layout]
    cms = _configmaps(layout)
    assert [cm["metadata"]["name"] for cm in cms[1:]] == [f"big-results-{i}" for i in range(1, len(layout))]
    assert all(cm["metadata"]["ownerReferences"][0]["uid"] == UID for cm in cms[1:])
    found = rs.read_back(cms, len(layout))
    assert found.records == _records(range(500)) and found.missing == []
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
    assert rs.read_back(_configmaps(later), len(later)).records == _records(range(300))


def test_a_shard_written_before_the_configmap_that_names_it_still_counts_once() -> None:
    before = _place([], list(range(200)))
    after = _place(before, list(range(200, 400)))
    assert len(after) > len(before) + 1
    # The operator stopped while applying the shards (in order: the open one, then the new ones)
    # and before the results ConfigMap: that one still names the old count, the last shard is unwritten.
    written = _configmaps(after)[:-1]
    found = rs.read_back(written, named=len(before))
    kept = [e for s in after[:-1] for e in s.members]
    assert found.records == _records(kept) and found.missing == []
    # The job's episode file still has the rest: read again after the restart, they fill the open shard.
    again = _place(found.shards, sorted(set(range(400)) - set(kept)))
    assert sorted(e for s in again for e in s.members) == list(range(400))
    assert again[: len(after) - 2] == after[: len(after) - 2]


def test_an_episode_in_two_shards_counts_once() -> None:
    layout = _place([], list(range(100)))
    members = layout[1].members + layout[0].members[:5]
    doubled = rs.Shard(members, episode_codec.pack([_record(e) for e in members]))
    cms = _configmaps([layout[0], doubled, *layout[2:]])
    found = rs.read_back(cms, len(layout))
    assert sorted(found.records) == list(range(100))


def test_a_missing_shard_loses_only_its_episodes_and_is_named() -> None:
    layout = _place([], list(range(400)))
    cms: list[dict | None] = list(_configmaps(layout))
    cms[2] = None  # deleted by hand
    found = rs.read_back(cms, len(layout))
    assert found.missing == [2]
    assert sorted(found.records) == sorted(set(range(400)) - set(layout[2].members))
    assert found.shards[2].members == () and len(found.shards) == len(layout)
    # The episodes played again land in the open shard; the missing one is not reused.
    again = _place(found.shards, list(layout[2].members))
    assert sorted(e for s in again for e in s.members) == list(range(400))
    cms[-1] = None  # probed past the end: not a shard
    assert rs.read_back([*_configmaps(layout), None], len(layout)).shards == rs.read_back(
        _configmaps(layout), len(layout)).shards


def test_a_record_bigger_than_a_shard_gets_one_of_its_own() -> None:
    records = {**_records(range(7)), 7: _record(7, policies=400)}  # 400 returns: about 3.5 KiB packed
    layout = rs.place([], list(range(8)), records.__getitem__, lambda index: BUDGET)
    assert layout[-1].members == (7,) and len(layout[-1].packed) > BUDGET


def test_records_an_earlier_operator_kept_as_json_lines_read_back_and_are_packed_anew() -> None:
    import base64
    import gzip

    lines = "".join(_record(e).model_dump_json(by_alias=True) + "\n" for e in range(30))
    earlier = {"binaryData": {rs.EARLIER_EPISODES_KEY: base64.b64encode(gzip.compress(lines.encode())).decode()}}
    found = rs.read_back([earlier], 1)
    assert found.records == _records(range(30))
    assert episode_codec.unpack(found.shards[0].packed) == [_record(e) for e in range(30)]
    again = _place(found.shards, list(range(30, 40)))  # the open shard is written in today's packing
    assert episode_codec.unpack(again[0].packed)[:40] == [_record(e) for e in range(40)][: len(again[0].members)]
