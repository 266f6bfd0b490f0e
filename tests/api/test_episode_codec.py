"""The compact packing of episode records gives back exactly what it was given (pure)."""

from __future__ import annotations

import base64
import gzip
import lzma

import pytest

from swarm_arena.api import episode_codec
from swarm_arena.api.report import EpisodeRecord, EpisodeSocial, SocialMetrics, significant


def _metrics(efficiency: float, equality: float = 0.5, sustainability: float | None = 3.25, peace: float = 1.0):
    return SocialMetrics(efficiency=efficiency, equality=equality, sustainability=sustainability, peace=peace)


def _record(i: int, social: EpisodeSocial | None, **changes) -> EpisodeRecord:
    fields = {"episode": i, "pairing": {"red": "a", "blue": "b"}, "returns": {"a": 1.0 / 3, "b": -2.5},
              "agents": {"a": 3, "b": 5}, "steps": 7, "agent_steps": 56, "social": social}
    return EpisodeRecord(**{**fields, **changes})


def _wire(records: list[EpisodeRecord]) -> list[str]:
    return [r.model_dump_json(by_alias=True) for r in records]


def test_every_kind_of_record_comes_back_exactly_key_order_included() -> None:
    derived_a, derived_b = significant(1.0 / 3 * 3 / 7), significant(-2.5 * 5 / 7)
    records = [
        _record(0, None),  # no social metrics (a record from before them)
        # teams of one policy each: stored once, referred to
        _record(1, EpisodeSocial(policies={"a": _metrics(derived_a), "b": _metrics(derived_b, 0.1234, None, 0.25)},
                                 teams={"red": _metrics(derived_a), "blue": _metrics(derived_b, 0.1234, None, 0.25)})),
        # a team that differs from its policy; efficiencies that are not what the returns give
        _record(3, EpisodeSocial(policies={"b": _metrics(12.5), "a": _metrics(derived_a, 0.0, 0.001234, 0.9999)},
                                 teams={"blue": _metrics(derived_b), "red": _metrics(derived_a, 0.5001)})),
        # values that are not four-digit decimals go whole: more digits, -0.0, huge and tiny
        _record(4, EpisodeSocial(policies={"a": _metrics(1.0 / 3, -0.0, 1e300, 5e-324),
                                           "b": _metrics(2.0, 1234567.0, 9.999e125, -3.2e-127)})),
        # a mixed team, keys in another order, a gap in the episode indices, zero steps
        _record(9, EpisodeSocial(policies={"b": _metrics(0.0), "a": _metrics(-0.0)},
                                 teams={"all": _metrics(significant(1.0 / 3 * 3 - 12.5))}),
                pairing={"all": "a,b"}, returns={"b": 0.0, "a": -0.0}, agents={"b": 5, "a": 3}, steps=0),
    ]
    packed = episode_codec.pack(list(reversed(records)))
    assert _wire(episode_codec.unpack(packed)) == _wire(records)
    assert episode_codec.unpack(episode_codec.pack([])) == []


def test_records_written_before_the_packing_are_read() -> None:
    records = [_record(i, EpisodeSocial(policies={"a": _metrics(0.1429)}, teams={"red": _metrics(0.1429)}))
               for i in range(3)]
    earlier = gzip.compress("".join(r.model_dump_json(by_alias=True) + "\n" for r in records).encode(), mtime=0)
    assert _wire(episode_codec.unpack(earlier)) == _wire(records)


def test_what_is_not_packed_records_is_refused_saying_so() -> None:
    with pytest.raises(episode_codec.CodecError, match="neither xz nor gzip"):
        episode_codec.unpack(b"not records")
    with pytest.raises(episode_codec.CodecError, match="do not start with"):
        episode_codec.unpack(lzma.compress(b"{}"))
    good = lzma.decompress(episode_codec.pack([_record(0, None)]))
    with pytest.raises(episode_codec.CodecError, match="cut short"):
        episode_codec.unpack(lzma.compress(good[:-3]))
    with pytest.raises(episode_codec.CodecError, match="beyond the columns"):
        episode_codec.unpack(lzma.compress(good + b"\0"))
    assert base64.b64encode(episode_codec.pack([_record(0, None)]))  # base64 is the caller's


def test_a_team_of_one_policy_and_a_derivable_efficiency_cost_nothing() -> None:
    import random

    rng = random.Random(5)

    def records(teams: bool, efficiency: bool) -> list[EpisodeRecord]:
        out = []
        for i in range(300):
            r = _record(i, None, returns={"a": rng.uniform(-9, 9), "b": rng.uniform(-9, 9)})
            a, b = (_metrics(significant(r.returns[p] * r.agents[p] / r.steps if efficiency else rng.random()),
                             significant(rng.random()), significant(rng.uniform(1, 7)), significant(rng.random()))
                    for p in "ab")
            r.social = EpisodeSocial(policies={"a": a, "b": b}, teams={"red": a, "blue": b} if teams else {})
            out.append(r)
        return out

    def size(rs: list[EpisodeRecord]) -> int:
        assert _wire(episode_codec.unpack(packed := episode_codec.pack(rs))) == _wire(rs)
        return len(packed)

    assert size(records(teams=True, efficiency=True)) < size(records(teams=False, efficiency=True)) * 1.02
    assert size(records(teams=False, efficiency=True)) < size(records(teams=False, efficiency=False)) * 0.9
