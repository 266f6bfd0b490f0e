"""Policies without resources of their own are stepped inside the environment actor.

No shard actors, no round trip per step; the same numbers as shard actors with the same layout;
a lost environment actor rolling the episode back to its checkpoint is in test_exact_recovery.py.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import ray
from gymnasium import spaces

from swarm_arena.api.status import Progress
from swarm_arena.arena.recovery import EvaluationFailed
from swarm_arena.arena.naming import RAY_NAMESPACE, coordinator_name, env_name, shard_name
from swarm_arena.arena.shard import HostedPolicy
from tests.arena.conftest import foraging_evaluation

POLICIES = ("greedy", "random", "noop")


def _named(name: str) -> bool:
    try:
        ray.get_actor(name, namespace=RAY_NAMESPACE)
    except ValueError:
        return False
    return True


def _default_resources(name: str, **spec):
    """The conftest evaluation with every policy at the default resources (none of its own)."""
    return foraging_evaluation(name, policies=[{"name": p, "factory": p} for p in POLICIES], **spec)


class ObservationSum:
    """Reads its observations: acts 1 where an agent's observation is not all zeros."""

    def __init__(self, observation_space, action_space, seed: int = 0) -> None:
        pass

    def act(self, observations: np.ndarray, agent_ids) -> np.ndarray:
        return (np.asarray(observations).reshape(len(observations), -1).sum(axis=1) != 0).astype(np.int64)


def test_blind_policies_get_a_zero_copy_placeholder_instead_of_observations() -> None:
    obs_space, act_space = spaces.Box(0.0, 1.0, (3, 4), np.float32), spaces.Discrete(5)
    random = HostedPolicy("random", {}, 0, (obs_space, act_space))
    reader = HostedPolicy("tests.arena.test_hosted_policies:ObservationSum", {}, 0, (obs_space, act_space))
    assert random.begin_episode(1, ["a", "b", "c"], obs_space, act_space) is False
    assert reader.begin_episode(1, ["a", "b", "c"], obs_space, act_space) is True
    assert random.act(3).shape == (3,)
    # Sent a count instead of observations, a policy sees zeros of the right shape, copied from nothing.
    assert (reader.act(2, np.array([0, 2])) == 0).all()
    assert (reader.act(np.ones((2, 3, 4), np.float32), np.array([0, 2])) == 1).all()


def test_default_policies_have_no_actors_and_count_everything(local_ray) -> None:
    evaluation = _default_resources("hp-basic")
    qualified = evaluation.qualified_name
    shards = [shard_name(qualified, p, 0) for p in POLICIES]
    during: dict[str, bool] = {}

    def on_progress(progress: Progress) -> None:
        if not during and progress.agent_steps > 0:
            during.update({n: _named(n) for n in [coordinator_name(qualified), env_name(qualified, 0), *shards]})

    from swarm_arena.arena.runner import run_evaluation

    report = run_evaluation(evaluation, on_progress=on_progress)
    assert during == {coordinator_name(qualified): True, env_name(qualified, 0): True, **{n: False for n in shards}}
    assert [e.episode for e in report.episodes] == [0, 1, 2, 3]
    assert report.progress.agent_steps == 4 * 200 * 30
    assert [e.agents for e in report.episodes] == [{"greedy": 67, "random": 67, "noop": 66}] * 4
    assert report.results.leaderboard[0].policy == "greedy"


def test_hosted_and_actor_shards_give_the_same_numbers(local_ray) -> None:
    from swarm_arena.arena.runner import run_evaluation

    one_shard_each = {"execution": {"agentsPerShard": 1000}, "episodes": 2, "seed": 3}
    hosted = run_evaluation(_default_resources("hp-same", **one_shard_each))
    actors = run_evaluation(foraging_evaluation("hp-same-actors", **one_shard_each))
    assert [e.model_dump() for e in hosted.episodes] == [e.model_dump() for e in actors.episodes]
    # Mixed: greedy hosted in the environment actor, the others as shard actors, in one step.
    mixed = [{"name": p, "factory": p, **({} if p == "greedy" else {"resources": {"cpu": 0.25}})} for p in POLICIES]
    both = run_evaluation(foraging_evaluation("hp-same-mixed", policies=mixed, **one_shard_each))
    assert [e.model_dump() for e in both.episodes] == [e.model_dump() for e in actors.episodes]


def test_hosted_policy_that_fails_to_build_names_the_field(local_ray) -> None:
    from swarm_arena.arena.runner import run_evaluation

    evaluation = foraging_evaluation(
        "hp-bad-params",
        policies=[{"name": "greedy", "factory": "greedy"}, {"name": "rand", "factory": "random", "params": {"bad": 1}}],
    )
    with pytest.raises(EvaluationFailed, match=r"spec\.policies\[1\]\.factory.*bad"):
        run_evaluation(evaluation)
