"""The arena on a real local Ray: named actors, exact counts, round-robin, parallel episodes,
determinism, and errors that name the field."""

from __future__ import annotations

import pytest
import ray

from swarm_arena.api.status import Progress
from swarm_arena.arena.naming import RAY_NAMESPACE, coordinator_name, env_name, shard_name
from swarm_arena.arena.recovery import EvaluationFailed
from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


def _named(name: str) -> bool:
    try:
        ray.get_actor(name, namespace=RAY_NAMESPACE)
    except ValueError:
        return False
    return True


def test_foraging_run_counts_everything_and_ranks_greedy_first(local_ray) -> None:
    evaluation = foraging_evaluation("rt-basic")
    qualified = evaluation.qualified_name
    names = [coordinator_name(qualified), env_name(qualified, 0)] + [
        shard_name(qualified, p, i) for p in ("greedy", "random", "noop") for i in range(2)
    ]
    seen: list[Progress] = []
    alive_during: dict[str, bool] = {}

    def on_progress(progress: Progress) -> None:
        seen.append(progress)
        if not alive_during and progress.agent_steps > 0:
            alive_during.update({n: _named(n) for n in names})

    report = run_evaluation(evaluation, on_progress=on_progress)

    assert alive_during == {n: True for n in names}
    assert not any(_named(n) for n in names)
    assert report.progress.episodes_completed == report.progress.episodes_total == 4
    # 200 agents, nobody terminates in foraging, 30 steps each.
    assert [e.episode for e in report.episodes] == [0, 1, 2, 3]
    assert all(e.steps == 30 and e.agent_steps == 200 * 30 for e in report.episodes)
    assert report.progress.agent_steps == 4 * 200 * 30
    assert [e.agents for e in report.episodes] == [{"greedy": 67, "random": 67, "noop": 66}] * 4
    board = report.results.leaderboard
    assert sorted(e.policy for e in board) == ["greedy", "noop", "random"]
    assert board[0].policy == "greedy" and all(e.episodes == 4 for e in board)
    latency = report.results.step_latency_ms
    assert latency is not None and 0 < latency.p50 <= latency.p99
    assert report.results.agent_steps_per_second and report.results.agent_steps_per_second > 0
    # Progress after every checkpoint and every episode, ending complete.
    assert seen[-1].episodes_completed == 4 and seen[-1].agent_steps == 4 * 200 * 30
    assert [p.episodes_completed for p in seen] == sorted(p.episodes_completed for p in seen)
    assert len(seen) >= 4 * 3  # 3 chunks of 10 steps per episode


def test_round_robin_plays_every_ordered_pairing(local_ray) -> None:
    evaluation = foraging_evaluation(
        "rt-rr",
        environment={"factory": "foraging", "params": {"agents": 20}, "maxSteps": 12},
        policies=[{"name": p, "factory": p, "resources": {"cpu": 0.25}} for p in ("greedy", "random")],
        teams=[{"name": "red", "agents": "agent_?"}, {"name": "blue", "agents": "agent_1?"}],
        matchmaking={"mode": "round-robin"},
        episodes=2,
        checkpoint={"intervalSteps": 5},
    )
    report = run_evaluation(evaluation)
    assert report.progress.episodes_completed == report.progress.episodes_total == 4
    pairings = [e.pairing for e in report.episodes]
    assert pairings == [{"red": "greedy", "blue": "random"}] * 2 + [{"red": "random", "blue": "greedy"}] * 2
    assert all(e.agents == {"greedy": 10, "random": 10} for e in report.episodes)
    assert report.progress.agent_steps == 4 * 20 * 12
    # Social outcome metrics per policy and team, from the step loop, averaged over the run.
    for e in report.episodes:
        assert e.social is not None and set(e.social.teams) == {"red", "blue"}
        for policy, metrics in e.social.policies.items():
            # kept to 4 significant digits in the record (swarm_arena.api.report.SOCIAL_SIGNIFICANT_DIGITS)
            assert metrics.efficiency == pytest.approx(e.returns[policy] * e.agents[policy] / e.steps, rel=5e-4)
            assert 0 <= metrics.equality <= 1 and metrics.peace == 1.0  # foraging keeps every agent in play
        assert e.social.teams["red"].efficiency == e.social.policies[e.pairing["red"]].efficiency  # one policy a team
    outcomes = {(o.kind, o.name): o for o in report.results.social_outcomes}
    assert set(outcomes) == {("policy", "greedy"), ("policy", "random"), ("team", "blue"), ("team", "red")}
    assert outcomes[("policy", "greedy")].episodes == 4


def test_same_seed_same_results_with_parallel_episodes(local_ray) -> None:
    spec = {"episodes": 4, "rating": {"method": "elo"}, "seed": 11}
    one = run_evaluation(foraging_evaluation("rt-det", **spec))
    two = run_evaluation(foraging_evaluation("rt-det", execution={"agentsPerShard": 50, "parallelEpisodes": 2}, **spec))
    assert two.progress.episodes_completed == 4
    assert [e.model_dump() for e in one.episodes] == [e.model_dump() for e in two.episodes]
    assert [e.model_dump() for e in one.results.leaderboard] == [e.model_dump() for e in two.results.leaderboard]
    other = run_evaluation(foraging_evaluation("rt-det", **{**spec, "seed": 12, "episodes": 1}))
    assert other.episodes[0].returns != one.episodes[0].returns


def test_unresolvable_policy_factory_names_the_field() -> None:
    evaluation = foraging_evaluation(
        "rt-bad",
        policies=[
            {"name": "greedy", "factory": "greedy"},
            {"name": "mine", "factory": "no_such_module_xyz:policy"},
        ],
    )
    with pytest.raises(EvaluationFailed, match=r"spec\.policies\[1\]\.factory"):
        run_evaluation(evaluation)


def test_policy_that_fails_to_build_names_the_field(local_ray) -> None:
    evaluation = foraging_evaluation(
        "rt-bad-params",
        policies=[
            {"name": "greedy", "factory": "greedy", "resources": {"cpu": 0.25}},
            {"name": "rand", "factory": "random", "params": {"no_such_param": 1}, "resources": {"cpu": 0.25}},
        ],
    )
    with pytest.raises(EvaluationFailed, match=r"spec\.policies\[1\]\.factory.*no_such_param"):
        run_evaluation(evaluation)
    assert not _named(coordinator_name(evaluation.qualified_name))


def test_durable_checkpoints_let_a_resubmitted_run_resume(local_ray, tmp_path) -> None:
    spec = {"episodes": 2, "checkpoint": {"intervalSteps": 10, "storageURI": f"file://{tmp_path}"}}
    first = run_evaluation(foraging_evaluation("rt-durable", **spec))
    stored = sorted(p.name for p in tmp_path.rglob("episodes/*.json"))
    assert stored == ["000000.json", "000001.json"]
    assert not list(tmp_path.rglob("inflight/*"))  # finished episodes keep no checkpoint

    seen: list[Progress] = []
    again = run_evaluation(foraging_evaluation("rt-durable", **spec), on_progress=seen.append)
    assert seen[0].episodes_completed == 2  # nothing was played twice
    assert [e.model_dump() for e in again.episodes] == [e.model_dump() for e in first.episodes]


def test_stopping_ends_a_decided_round_robin_early_and_a_resumed_run_decides_the_same(local_ray, tmp_path) -> None:
    from swarm_arena.arena.scoring.stopping import StoppingRule

    evaluation = foraging_evaluation(
        "rt-stop",
        environment={"factory": "foraging", "params": {"agents": 20}, "maxSteps": 12},
        policies=[{"name": p, "factory": p} for p in ("greedy", "noop")],  # greedy forages, noop never does
        teams=[{"name": "red", "agents": "agent_?"}, {"name": "blue", "agents": "agent_1?"}],
        matchmaking={"mode": "round-robin"},
        episodes=30,
        stopping={"separated": True, "checkEvery": 2},
        checkpoint={"intervalSteps": 12, "storageURI": f"file://{tmp_path}"},
    )
    report = run_evaluation(evaluation)
    rule = StoppingRule(evaluation.spec)
    decision = rule.advance({e.episode: e for e in report.episodes})  # the rule, replayed on what was counted
    assert decision is not None and decision.reason.value == "LeaderboardSeparated"
    # One episode at a time: exactly the episodes before the deciding look, in round order.
    assert sorted(e.episode for e in report.episodes) == sorted(rule.order[: decision.look])
    assert report.progress.episodes_completed == decision.look < report.progress.episodes_total == 60
    early = report.results.stopped_early
    assert early is not None and early.reason == "LeaderboardSeparated" and early.decided_at == decision.look
    assert early.episodes_saved == 60 - decision.look
    assert [e.policy for e in report.results.leaderboard] == ["greedy", "noop"]
    assert report.results.leaderboard[0].separated_from == ["noop"]

    # A new attempt on the same store (as after a lost head) decides the same before playing anything.
    again = run_evaluation(evaluation)
    assert [e.model_dump() for e in again.episodes] == [e.model_dump() for e in report.episodes]
    assert again.results.stopped_early == early


def test_background_policies_play_unranked_beside_the_focal_ones(local_ray) -> None:
    evaluation = foraging_evaluation(
        "rt-background",
        environment={"factory": "foraging", "params": {"agents": 30}, "maxSteps": 12},
        policies=[{"name": "greedy", "factory": "greedy"}, {"name": "random", "factory": "random"},
                  {"name": "bots", "factory": "noop", "role": "background"}],
        episodes=3,
    )
    report = run_evaluation(evaluation)
    assert all(set(e.returns) == {"greedy", "random", "bots"} for e in report.episodes)  # every policy plays
    assert report.results.rating_method.value == "mean-return"
    assert sorted(e.policy for e in report.results.leaderboard) == ["greedy", "random"]  # bots are not ranked
    populations = {p.policy: p for p in report.results.populations}
    assert set(populations) == {"greedy", "random"} and populations["greedy"].episodes == 3
    assert populations["greedy"].background_per_capita_return.value == pytest.approx(
        sum(e.returns["bots"] for e in report.episodes) / 3, abs=1e-5)
    assert {(o.kind, o.name) for o in report.results.social_outcomes} >= {("policy", "bots"), ("team", "all")}
