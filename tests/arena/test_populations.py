"""Focal and background populations: background policies play, are not ranked, and are reported beside each focal one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.spec import RatingMethod, SwarmEvaluationSpec
from swarm_arena.arena.scoring import score_evaluation


def _spec(**extra: Any) -> SwarmEvaluationSpec:
    return SwarmEvaluationSpec.model_validate({
        "environment": {"factory": "foraging", "params": {"agents": 12}},
        "policies": [{"name": "mine", "factory": "greedy"}, {"name": "theirs", "factory": "random"},
                     {"name": "bots", "factory": "noop", "role": "background"},
                     {"name": "bullies", "factory": "noop", "role": "background"}],
        "episodes": 30,
        **extra,
    })


def _records(spec: SwarmEvaluationSpec) -> list[EpisodeRecord]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(spec.episodes):
        returns = {"mine": 2.0 + rng.normal(), "theirs": 1.0 + rng.normal(), "bots": 0.5 + rng.normal(),
                   "bullies": 4.0 + rng.normal()}
        agents = {"mine": 3, "theirs": 3, "bots": 4, "bullies": 2}
        out.append(EpisodeRecord(episode=i, pairing={"all": "mine,theirs,bots,bullies"}, returns=returns,
                                 agents=agents, steps=10, agent_steps=120))
    return out


def test_the_role_defaults_to_focal_and_background_makes_mean_return_the_default_method() -> None:
    spec = _spec()
    assert spec.focal_policy_names == ["mine", "theirs"] and spec.background_policy_names == ["bots", "bullies"]
    assert spec.rating_method is RatingMethod.MEAN_RETURN
    assert _spec(rating={"method": "openskill"}).rating_method is RatingMethod.OPENSKILL


def test_background_policies_are_not_ranked_and_each_focal_policy_sees_their_per_capita_return() -> None:
    spec = _spec()
    records = _records(spec)
    board = score_evaluation(spec, records)
    assert [e.policy for e in board.leaderboard] == ["mine", "theirs"]
    assert board.pairwise is not None and board.pairwise.policies == ["mine", "theirs"]
    assert board.populations is not None and [p.policy for p in board.populations] == ["mine", "theirs"]
    mine = board.populations[0]
    assert mine.episodes == 30
    assert mine.focal_per_capita_return.value == pytest.approx(np.mean([r.returns["mine"] for r in records]), abs=1e-6)
    background = np.mean([(4 * r.returns["bots"] + 2 * r.returns["bullies"]) / 6 for r in records])
    assert mine.background_per_capita_return.value == pytest.approx(background, abs=1e-6)
    for estimate in (mine.focal_per_capita_return, mine.background_per_capita_return):
        assert estimate.low < estimate.value < estimate.high
    # Focal per-capita return is what mean-return ranks by: the same number.
    assert board.leaderboard[0].rating == pytest.approx(mine.focal_per_capita_return.value, abs=1e-6)


def test_a_focal_policy_that_never_met_the_background_has_no_estimates() -> None:
    spec = _spec()
    records = [r.model_copy(update={"returns": {"mine": 1.0, "bots": 0.0}, "agents": {"mine": 6, "bots": 6}})
               if r.episode % 2 else r.model_copy(update={"returns": {"theirs": 1.0}, "agents": {"theirs": 12}})
               for r in _records(spec)]
    board = score_evaluation(spec, records)
    theirs = next(p for p in board.populations if p.policy == "theirs")
    assert theirs.episodes == 0 and theirs.focal_per_capita_return is None
    assert theirs.background_per_capita_return is None
    mine = next(p for p in board.populations if p.policy == "mine")
    # Returns that never vary: the interval is the range of the values, widened to +-1, never zero-width.
    assert (mine.focal_per_capita_return.low, mine.focal_per_capita_return.high) == (0.0, 2.0)


def test_without_background_policies_nothing_changes() -> None:
    spec = SwarmEvaluationSpec.model_validate({
        "environment": {"factory": "foraging", "params": {"agents": 12}},
        "policies": [{"name": "mine", "factory": "greedy"}, {"name": "theirs", "factory": "random"}],
    })
    records = [r.model_copy(update={"returns": {k: v for k, v in r.returns.items() if k in ("mine", "theirs")}})
               for r in _records(_spec())]
    assert score_evaluation(spec, records).populations is None
