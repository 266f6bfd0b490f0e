"""How a slot's lost actors are brought back, ping by ping (pure decisions, no Ray)."""

from __future__ import annotations

import pytest

from swarm_arena.arena.errors import EvaluationFailed
from swarm_arena.arena.revival import Answer, Revival

A, D, S = Answer.ALIVE, Answer.DEAD, Answer.SILENT


def _revival() -> Revival:
    return Revival(names=("env", "shard"), started=0.0, ray_wait_s=90.0, start_wait_s=60.0)


def test_dead_actors_are_replaced_at_once_and_silent_ones_get_rays_window() -> None:
    decision = _revival().decide({"env": D, "shard": S}, now=1.0)
    assert decision.replace == ("env",) and decision.waiting == ("shard",) and not decision.done
    assert _revival().decide({"env": A, "shard": A}, now=1.0).done


def test_after_rays_window_the_silent_originals_are_replaced_once() -> None:
    revival = _revival()
    decision = revival.decide({"env": A, "shard": S}, now=91.0)
    assert decision.replace == ("shard",)
    revival.replaced(list(decision.replace), now=91.0)
    # The replacement is still starting (a new worker takes seconds): it is waited for, not
    # replaced again every round (each replacement burns one of maxActorRestarts).
    for now in (91.5, 92.0, 95.0, 120.0, 150.0):
        decision = revival.decide({"env": A, "shard": S}, now=now)
        assert decision.replace == () and decision.waiting == ("shard",), now
    assert revival.decide({"env": A, "shard": A}, now=151.0).done


def test_a_replacement_that_never_answers_fails_the_run_saying_why() -> None:
    revival = _revival()
    revival.replaced(["shard"], now=10.0)
    with pytest.raises(EvaluationFailed, match=r"actor shard was re-created after a loss but did not start within 60 s.*placement group"):
        revival.decide({"env": A, "shard": S}, now=71.0)


def test_a_replacement_that_dies_is_replaced_again() -> None:
    revival = _revival()
    revival.replaced(["shard"], now=10.0)
    assert revival.decide({"env": A, "shard": D}, now=12.0).replace == ("shard",)
