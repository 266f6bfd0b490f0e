"""The plan: pairings, counts, seeds, the agent split and the shard layout."""

from __future__ import annotations

import pytest

from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.arena.matchmaking import (
    Match,
    ShardSlot,
    assign_agents,
    count_matches,
    iter_matches,
    match_at,
    max_shards_per_policy,
    plan_matches,
    shard_layout,
    team_members,
)


def make_spec(policies: list[str], **extra: object) -> SwarmEvaluationSpec:
    return SwarmEvaluationSpec.model_validate(
        {
            "environment": {"factory": "foraging", "params": {"agents": 10}},
            "policies": [{"name": p, "factory": "random"} for p in policies],
            **extra,
        }
    )


RED_BLUE = [{"name": "red", "agents": "red_*"}, {"name": "blue", "agents": "blue_*"}]
BATTLE_AGENTS = [f"red_{i}" for i in range(6)] + [f"blue_{i}" for i in range(6)]


def test_fixed_single_team_is_a_mixed_population_of_all_policies() -> None:
    plan = plan_matches(make_spec(["a", "b", "c"], episodes=4))
    assert [m.index for m in plan] == [0, 1, 2, 3]
    assert all(m.pairing == {"all": ("a", "b", "c")} for m in plan)
    assert plan[0].policies == ("a", "b", "c")
    assert plan[0].pairing_label() == {"all": "a,b,c"}


def test_fixed_single_team_assigned_to_one_policy_plays_only_that_policy() -> None:
    spec = make_spec(["a", "b"], matchmaking={"assignments": {"all": "b"}}, episodes=2)
    plan = plan_matches(spec)
    assert [m.pairing for m in plan] == [{"all": ("b",)}, {"all": ("b",)}]
    assert assign_agents(spec, plan[0], [f"x{i}" for i in range(5)]) == {"b": [0, 1, 2, 3, 4]}


def test_fixed_teams_follow_assignments() -> None:
    spec = make_spec(["a", "b"], teams=RED_BLUE, matchmaking={"assignments": {"red": "b", "blue": "a"}})
    (first, *_rest) = plan_matches(spec)
    assert first.pairing == {"red": ("b",), "blue": ("a",)}
    assert count_matches(spec) == 10
    assert assign_agents(spec, first, BATTLE_AGENTS) == {"b": [0, 1, 2, 3, 4, 5], "a": [6, 7, 8, 9, 10, 11]}


def test_round_robin_plays_every_ordered_pairing_of_distinct_policies_pairing_major() -> None:
    spec = make_spec(["a", "b", "c"], teams=RED_BLUE, matchmaking={"mode": "round-robin"}, episodes=2)
    plan = plan_matches(spec)
    assert count_matches(spec) == len(plan) == 6 * 2
    labels = [tuple(m.pairing_label().values()) for m in plan]
    assert labels == [
        ("a", "b"), ("a", "b"), ("a", "c"), ("a", "c"), ("b", "a"), ("b", "a"),
        ("b", "c"), ("b", "c"), ("c", "a"), ("c", "a"), ("c", "b"), ("c", "b"),
    ]
    assert [m.index for m in plan] == list(range(12))


def test_seeds_are_deterministic_distinct_and_follow_spec_seed() -> None:
    spec = make_spec(["a", "b"], episodes=50, seed=7)
    seeds = [m.seed for m in plan_matches(spec)]
    assert seeds == [m.seed for m in plan_matches(make_spec(["a", "b"], episodes=50, seed=7))]
    assert len(set(seeds)) == 50
    assert all(0 <= s < 2**32 for s in seeds)
    other = [m.seed for m in plan_matches(make_spec(["a", "b"], episodes=50, seed=8))]
    assert not set(seeds) & set(other)


def test_random_access_and_resume_agree_with_the_plan() -> None:
    spec = make_spec(["a", "b", "c"], teams=RED_BLUE, matchmaking={"mode": "round-robin"}, episodes=3)
    plan = plan_matches(spec)
    assert [match_at(spec, i) for i in range(len(plan))] == plan
    assert list(iter_matches(spec, start=10)) == plan[10:]
    with pytest.raises(IndexError, match="outside the plan"):
        match_at(spec, len(plan))


def test_split_is_even_disjoint_complete_and_seeded() -> None:
    spec = make_spec(["a", "b", "c"], episodes=20)
    agents = [f"agent_{i}" for i in range(11)]
    plan = plan_matches(spec)
    splits = [assign_agents(spec, m, agents) for m in plan]
    for split in splits:
        assert sorted(len(v) for v in split.values()) == [3, 4, 4]
        assert sorted(i for v in split.values() for i in v) == list(range(11))
        assert all(v == sorted(v) for v in split.values())
    # Deterministic per episode, and varies between episodes (no policy stuck on the same agents).
    assert splits == [assign_agents(spec, m, agents) for m in plan]
    assert len({tuple(s["a"]) for s in splits}) > 1


def test_first_listed_team_wins_an_agent_matched_twice() -> None:
    spec = make_spec(
        ["a", "b"],
        teams=[{"name": "first", "agents": "red_*"}, {"name": "second", "agents": "*"}],
        matchmaking={"assignments": {"first": "a", "second": "b"}},
    )
    assert team_members(spec, BATTLE_AGENTS) == {"first": list(range(6)), "second": list(range(6, 12))}


def test_unassigned_agents_are_an_error_naming_them_and_the_globs() -> None:
    spec = make_spec(
        ["a", "b"],
        teams=[{"name": "red", "agents": "red_*"}, {"name": "blue", "agents": "blu_*"}],
        matchmaking={"assignments": {"red": "a", "blue": "b"}},
    )
    with pytest.raises(ValueError, match=r"blue_0, blue_1.*spec.teams.*red='red_\*'.*blue='blu_\*'"):
        assign_agents(spec, plan_matches(spec)[0], BATTLE_AGENTS)


def test_team_selecting_nothing_is_an_error() -> None:
    spec = make_spec(
        ["a", "b"],
        teams=[{"name": "red", "agents": "*"}, {"name": "blue", "agents": "blue_*"}],
        matchmaking={"assignments": {"red": "a", "blue": "b"}},
    )
    with pytest.raises(ValueError, match="blue='blue_\\*' select none"):
        team_members(spec, BATTLE_AGENTS)


def test_team_smaller_than_its_policies_is_an_error() -> None:
    spec = make_spec(["a", "b", "c"])
    with pytest.raises(ValueError, match="has 2 agents but is shared by 3 policies"):
        assign_agents(spec, plan_matches(spec)[0], ["x", "y"])


def test_shard_layout_balances_and_caps_shard_size() -> None:
    slots = shard_layout({"a": list(range(300)), "b": [300, 301], "c": []}, agents_per_shard=256)
    assert [(s.policy, s.shard, len(s.agent_indices)) for s in slots] == [("a", 0, 150), ("a", 1, 150), ("b", 0, 2)]
    assert slots[0].agent_indices == tuple(range(150))
    assert slots[2] == ShardSlot(policy="b", shard=0, agent_indices=(300, 301))
    assert sum((s.agent_indices for s in slots if s.policy == "a"), ()) == tuple(range(300))


def test_shard_layout_is_the_same_for_every_episode_of_a_split() -> None:
    spec = make_spec(["a", "b"], episodes=5, execution={"agentsPerShard": 3})
    agents = [f"agent_{i}" for i in range(13)]
    shapes = {
        tuple((s.policy, s.shard, len(s.agent_indices)) for s in shard_layout(assign_agents(spec, m, agents), 3))
        for m in plan_matches(spec)
    }
    assert len(shapes) == 1
    assert max_shards_per_policy(spec, agents) == {"a": 3, "b": 2}  # 7 agents -> 3 shards, 6 -> 2


def test_max_shards_covers_every_episode_of_the_plan() -> None:
    teams = [{"name": "red", "agents": "red_*"}, {"name": "blue", "agents": "blue_*"}]
    agents = [f"red_{i}" for i in range(9)] + [f"blue_{i}" for i in range(3)]
    spec = make_spec(["a", "b", "c"], teams=teams, matchmaking={"mode": "round-robin"}, execution={"agentsPerShard": 4})
    needed = max_shards_per_policy(spec, agents)
    assert needed == {"a": 3, "b": 3, "c": 3}
    for match in plan_matches(spec):
        counts: dict[str, int] = {}
        for slot in shard_layout(assign_agents(spec, match, agents), 4):
            counts[slot.policy] = counts.get(slot.policy, 0) + 1
        assert all(counts[p] <= needed[p] for p in counts)


def test_policy_that_never_plays_needs_no_shards() -> None:
    spec = make_spec(["a", "b", "c"], teams=RED_BLUE, matchmaking={"assignments": {"red": "a", "blue": "b"}})
    assert max_shards_per_policy(spec, BATTLE_AGENTS) == {"a": 1, "b": 1, "c": 0}


def test_match_is_a_value() -> None:
    assert Match(index=0, pairing={"all": ("a",)}, seed=1) == Match(index=0, pairing={"all": ("a",)}, seed=1)


def test_large_round_robin_is_addressable_without_listing_it() -> None:
    policies = [f"p{i:02d}" for i in range(20)]
    teams = [{"name": f"t{i}", "agents": f"t{i}_*"} for i in range(4)]
    spec = make_spec(policies, teams=teams, matchmaking={"mode": "round-robin"}, episodes=3)
    assert count_matches(spec) == 20 * 19 * 18 * 17 * 3
    last = match_at(spec, count_matches(spec) - 1)
    assert last.pairing == {"t0": ("p19",), "t1": ("p18",), "t2": ("p17",), "t3": ("p16",)}
    assert match_at(spec, 3).pairing == {"t0": ("p00",), "t1": ("p01",), "t2": ("p02",), "t3": ("p04",)}
    assert next(iter_matches(spec, start=3)) == match_at(spec, 3)
