"""spec.stopping's rule, pure: looks in round order on counted prefixes, deterministic, never discarding."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.arena.matchmaking import match_at
from swarm_arena.arena.scoring.stopping import StoppingRule, StopReason, round_order

STRENGTH = {"a": 3.0, "b": 2.0, "c": 1.0}


def _spec(stopping: dict[str, Any], *, mode: str = "round-robin", episodes: int = 40, **rating: Any) -> SwarmEvaluationSpec:
    doc: dict[str, Any] = {
        "environment": {"factory": "foraging", "params": {"agents": 4}},
        "policies": [{"name": p, "factory": "random"} for p in STRENGTH],
        "episodes": episodes,
        "stopping": stopping,
        "rating": rating,
    }
    if mode == "round-robin":
        doc["teams"] = [{"name": "red", "agents": "agent_[01]"}, {"name": "blue", "agents": "agent_*"}]
        doc["matchmaking"] = {"mode": "round-robin"}
    return SwarmEvaluationSpec.model_validate(doc)


def _record(spec: SwarmEvaluationSpec, index: int, returns: dict[str, float]) -> EpisodeRecord:
    label = match_at(spec, index).pairing_label()
    present = sorted(set(label.values()) if spec.teams else returns)  # fixed: one team shared by all
    return EpisodeRecord(episode=index, pairing=label, returns={p: returns[p] for p in present},
                         agents={p: 2 for p in present}, steps=1, agent_steps=2 * len(present))


def _ordered_strengths(spec: SwarmEvaluationSpec) -> dict[int, EpisodeRecord]:
    """a > b > c in every episode, no noise."""
    return {i: _record(spec, i, STRENGTH) for i in range(spec.planned_episodes)}


def test_round_order_takes_every_pairing_once_per_round() -> None:
    assert round_order(3, 2) == [0, 2, 4, 1, 3, 5]
    assert round_order(1, 4) == [0, 1, 2, 3]


def test_looks_are_every_check_every_rounds_before_the_end_and_the_test_level_is_bonferroni() -> None:
    rule = StoppingRule(_spec({"separated": True, "checkEvery": 10}))  # 6 pairings x 40
    assert rule.looks == [60, 120, 180]
    assert rule.separation_level == pytest.approx(1 - 0.05 / 3)
    assert rule.scheduled() == rule.order and len(rule.order) == 240


def test_separated_field_stops_at_the_first_look_that_separates_every_adjacent_pair() -> None:
    spec = _spec({"separated": True, "checkEvery": 1})
    rule = StoppingRule(spec)
    decision = rule.advance(_ordered_strengths(spec))
    assert decision is not None and decision.reason is StopReason.SEPARATED
    assert decision.look % 6 == 0 and 6 <= decision.look < 240
    # Nothing earlier decides: a fresh rule shown exactly the episodes before that look stays undecided.
    early = StoppingRule(spec)
    before = {i: r for i, r in _ordered_strengths(spec).items() if i in set(rule.order[: decision.look - 1])}
    assert early.advance(before) is None


def test_a_look_waits_for_every_episode_before_it_even_when_later_ones_are_counted() -> None:
    spec = _spec({"separated": True, "checkEvery": 1})
    everything = _ordered_strengths(spec)
    decided = StoppingRule(spec).advance(everything)
    assert decided is not None
    hole = StoppingRule(spec).order[0]  # the first episode of the plan in round order, still in flight
    rule = StoppingRule(spec)
    assert rule.advance({i: r for i, r in everything.items() if i != hole}) is None
    assert rule.advance(everything) == decided


def test_the_decision_depends_on_the_counted_episodes_not_on_arrival_order_or_extras() -> None:
    """A resumed attempt (other arrival order, more episodes counted past the look) decides the same."""
    spec = _spec({"separated": True, "checkEvery": 1})
    everything = _ordered_strengths(spec)
    one_by_one = StoppingRule(spec)
    counted: dict[int, EpisodeRecord] = {}
    first = None
    for i in one_by_one.order:
        counted[i] = everything[i]
        first = one_by_one.advance(counted)
        if first is not None:
            break
    shuffled = list(everything.items())
    random.Random(7).shuffle(shuffled)
    assert StoppingRule(spec).advance(dict(shuffled)) == first


def test_tied_policies_never_stop_on_separation() -> None:
    spec = _spec({"separated": True, "checkEvery": 1}, episodes=20)
    rng = np.random.default_rng(3)
    counted = {}
    for i in range(spec.planned_episodes):  # a and b flip coins; c always loses
        returns = {"a": float(rng.random()), "b": float(rng.random()), "c": -1.0}
        counted[i] = _record(spec, i, returns)
    rule = StoppingRule(spec)
    assert rule.advance(counted) is None
    assert rule.finish(counted) is None and rule.outcome(len(counted)) is None


def test_half_width_stops_a_mean_return_run_once_every_interval_is_that_narrow() -> None:
    spec = _spec({"halfWidth": 0.3, "checkEvery": 5}, mode="fixed", episodes=100)
    rng = np.random.default_rng(5)
    counted = {i: _record(spec, i, {p: float(s + rng.normal()) for p, s in STRENGTH.items()})
               for i in range(spec.planned_episodes)}
    rule = StoppingRule(spec)
    decision = rule.advance(counted)
    assert decision is not None and decision.reason is StopReason.NARROW
    # Standard deviation 1: a half-width of 0.3 needs about (1.96 / 0.3)^2 = 43 episodes, at 5-episode looks.
    assert 30 <= decision.look <= 70 and decision.look % 5 == 0


def test_max_episodes_cuts_the_plan_in_round_order_and_reports_what_it_saved() -> None:
    spec = _spec({"maxEpisodes": 50})
    rule = StoppingRule(spec)
    assert rule.looks == [] and rule.scheduled() == round_order(6, 40)[:50]
    counted = {i: _record(spec, i, STRENGTH) for i in rule.scheduled()}
    decision = rule.finish(counted)
    assert decision is not None and decision.reason is StopReason.MAX_EPISODES and decision.look == 50
    outcome = rule.outcome(len(counted))
    assert outcome is not None
    assert (outcome.reason, outcome.episodes_planned, outcome.episodes_saved) == ("MaxEpisodes", 240, 190)


def test_episodes_counted_past_the_look_are_kept_and_not_counted_as_saved() -> None:
    spec = _spec({"separated": True, "checkEvery": 1})
    rule = StoppingRule(spec)
    decision = rule.advance(_ordered_strengths(spec))
    assert decision is not None
    outcome = rule.outcome(decision.look + 3)  # three parallel episodes finished after the look
    assert outcome is not None and outcome.decided_at == decision.look
    assert outcome.episodes_saved == 240 - decision.look - 3


def test_a_run_that_played_its_whole_plan_did_not_stop_early() -> None:
    spec = _spec({"maxEpisodes": 10_000}, episodes=2)
    rule = StoppingRule(spec)
    counted = _ordered_strengths(spec)
    assert rule.finish(counted) is None and rule.outcome(len(counted)) is None


def test_stopping_needs_a_criterion_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"stopping\.separated, stopping\.halfWidth or stopping\.maxEpisodes"):
        _spec({"checkEvery": 3})
