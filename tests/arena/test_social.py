"""Social outcome metrics (Perolat et al. 2017): per episode from the step loop's sums, then over the run."""

from __future__ import annotations

import numpy as np
import pytest

from swarm_arena.api.report import EpisodeRecord, EpisodeSocial, SocialMetrics
from swarm_arena.arena.scoring.social import social_outcomes
from swarm_arena.arena.social_tally import SocialTally, episode_social, equality


def _gini_by_pairs(x: np.ndarray) -> float:
    """The textbook O(n^2) definition: mean absolute difference over twice the mean."""
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


def test_equality_is_one_minus_gini_by_sorting() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 3, 10, 257):
        x = rng.exponential(size=n)
        assert equality(x) == pytest.approx(1 - _gini_by_pairs(x), rel=1e-12)
    assert equality(np.array([0.0, 0.0, 0.0, 4.0])) == pytest.approx(0.25)  # one holds everything: 1 - (n-1)/n
    assert equality(np.ones(5)) == pytest.approx(1.0)


def test_equality_rules_for_zero_negative_and_single_returns() -> None:
    assert equality(np.zeros(6)) == 1.0  # nobody earned anything: perfectly equal
    assert equality(np.array([3.0])) == 1.0
    assert equality(np.array([-1.0, 1.0])) == pytest.approx(equality(np.array([0.0, 2.0])))  # shifted by the minimum
    assert equality(np.full(4, -2.0)) == 1.0


def test_the_tally_gives_sustainability_and_peace_per_group() -> None:
    tally = SocialTally(3)
    alive = np.ones(3, dtype=bool)
    rewards = [np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0]),
               np.array([0.0, 2.0, 0.0])]
    for step, r in enumerate(rewards, start=1):
        if step == 3:
            alive = np.array([True, True, False])  # agent 2 left env.agents after step 2
        tally.add(step, r, alive)
    returns = np.sum(rewards, axis=0)
    social = episode_social(returns, tally.sums, 4, {"policies": {"a": (0, 1), "b": (2,)}, "teams": {"all": (0, 1, 2)}})
    a, b, everyone = social["policies"]["a"], social["policies"]["b"], social["teams"]["all"]
    assert a["efficiency"] == pytest.approx((2.0 + 2.0) / 4)
    assert a["sustainability"] == pytest.approx(((1 + 3) / 2 + 4) / 2)  # agent 0 at steps 1, 3; agent 1 at 4
    assert b["sustainability"] is None  # never a positive reward
    assert a["peace"] == 1.0 and b["peace"] == pytest.approx(2 / 4)
    assert everyone["peace"] == pytest.approx((1 + 1 + 0.5) / 3, rel=1e-4)  # kept to 4 significant digits
    assert a["equality"] == 1.0  # 2 and 2


def test_run_social_outcomes_average_episodes_with_intervals() -> None:
    rng = np.random.default_rng(2)
    records = []
    for i in range(40):
        eff = 1.0 + rng.normal(scale=0.1)
        metrics = SocialMetrics(efficiency=eff, equality=0.8, sustainability=None if i % 2 else 10.0 + i % 4, peace=1.0)
        records.append(EpisodeRecord(episode=i, pairing={"red": "a", "blue": "b"}, returns={"a": 1.0, "b": 0.0},
                                     agents={"a": 2, "b": 2}, steps=5, agent_steps=20,
                                     social=EpisodeSocial(policies={"a": metrics, "b": metrics},
                                                          teams={"red": metrics, "blue": metrics})))
    out = social_outcomes(records, resamples=300, seed=0, level=0.95)
    assert [(o.kind, o.name) for o in out] == [("policy", "a"), ("policy", "b"), ("team", "blue"), ("team", "red")]
    a = out[0]
    assert a.episodes == 40
    assert a.efficiency.value == pytest.approx(np.mean([r.social.policies["a"].efficiency for r in records]), abs=1e-6)
    assert a.efficiency.low < a.efficiency.value < a.efficiency.high
    assert a.sustainability.value == pytest.approx(11.0)  # the 20 even episodes (10 and 12), the others had none
    # Never-varying metrics: the interval is the value +- 1, never zero-width.
    assert (a.equality.low, a.equality.value, a.equality.high) == pytest.approx((-0.2, 0.8, 1.8))
    assert social_outcomes([r.model_copy(update={"social": None}) for r in records], resamples=100, seed=0,
                           level=0.95) == []
