"""Scoring: Bradley-Terry by hand, order invariance, the stratified bootstrap, aggregates, pairwise."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import optimize, stats

from swarm_arena.api.status import IntervalKind
from swarm_arena.arena.scoring import EpisodeOutcome, RatingOptions, leaderboard, score
from swarm_arena.arena.scoring import bradley_terry as bt
from swarm_arena.arena.scoring.bootstrap import episode_counts, holm_reject
from swarm_arena.arena.scoring.outcomes import build_table
from swarm_arena.arena.scoring.returns import bootstrap_returns


def by_policy(entries):  # type: ignore[no-untyped-def]
    return {e.policy: e for e in entries}


def round_robin(policies: list[str], strength: dict[str, float], per_pairing: int, seed: int) -> list[EpisodeOutcome]:
    """Pairing-major, as the plan is: every ordered pair of policies over teams red/blue."""
    rng = random.Random(seed)
    outcomes = []
    for a in policies:
        for b in policies:
            if a == b:
                continue
            for _ in range(per_pairing):
                p = 1 / (1 + 10 ** ((strength[b] - strength[a]) / 400))
                win = rng.random() < p
                outcomes.append(EpisodeOutcome(len(outcomes), {a: float(win), b: float(not win)}, {"red": a, "blue": b}))
    return outcomes


def test_bradley_terry_is_the_map_fit_of_the_documented_posterior() -> None:
    # a beat b 7 of 10, b beat c 6 of 10, a beat c 9 of 10, one draw between a and b among the 10.
    scores = np.array([[0, 6.5, 9], [3.5, 0, 6], [1, 4, 0]], dtype=float)
    games = np.array([[0, 10, 10], [10, 0, 10], [10, 10, 0]], dtype=float)

    def minus_log_posterior(theta: np.ndarray) -> float:
        d = theta[:, None] - theta[None, :]
        return -float((scores * np.log(stats.logistic.cdf(d))).sum() - (theta**2).sum() / (2 * bt.PRIOR_SD**2))

    direct = optimize.minimize(minus_log_posterior, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    assert bt.fit(scores, games) == pytest.approx(direct, abs=1e-5)
    elo = bt.to_elo(bt.fit(scores, games))
    assert elo.mean() == pytest.approx(1500.0)
    assert elo[0] - elo[1] == pytest.approx(400 * np.log10(np.e) * (direct[0] - direct[1]), abs=1e-3)


def test_perfect_separation_stays_finite_with_a_spread() -> None:
    outcomes = [EpisodeOutcome(i, {"a": 1.0, "b": 0.0}) for i in range(20)]
    a, b = leaderboard("bradley-terry", ["a", "b"], outcomes, seed=0)
    assert (a.policy, b.policy) == ("a", "b")
    assert np.isfinite([a.rating, a.ci_low, a.ci_high]).all()
    assert 1500 < a.rating < 2500 and a.ci_low < a.rating <= a.ci_high
    assert a.interval_kind is IntervalKind.BOOTSTRAP and a.separated_from == ["b"]


def test_the_issues_example_is_order_invariant_under_bradley_terry() -> None:
    # a > b > c always, 10 games per ordered pair; elo gave b 1537 in one order and 1463 in the other.
    def games(order: list[str]) -> list[EpisodeOutcome]:
        rank = {"a": 2.0, "b": 1.0, "c": 0.0}
        out = []
        for x in order:
            for y in order:
                if x != y:
                    out += [EpisodeOutcome(len(out) + k, {x: rank[x], y: rank[y]}, {"red": x, "blue": y}) for k in range(10)]
        return out

    forward = by_policy(leaderboard("bradley-terry", ["a", "b", "c"], games(["a", "b", "c"]), seed=0))
    backward = by_policy(leaderboard("bradley-terry", ["c", "b", "a"], games(["c", "b", "a"]), seed=0))
    assert forward == backward
    assert forward["b"].rating == pytest.approx(1500.0, abs=1e-6)
    assert forward["a"].rating - 1500 == pytest.approx(1500 - forward["c"].rating, abs=1e-6)
    elo_forward = by_policy(leaderboard("elo", ["a", "b", "c"], games(["a", "b", "c"]), seed=0))
    elo_backward = by_policy(leaderboard("elo", ["c", "b", "a"], games(["c", "b", "a"]), seed=0))
    assert elo_forward["b"].rating != pytest.approx(elo_backward["b"].rating, abs=1)  # why it is not the default


@pytest.mark.parametrize("method", ["bradley-terry", "mean-return"])
def test_any_presentation_of_the_same_outcomes_gives_the_same_scoreboard(method: str) -> None:
    policies = ["p0", "p1", "p2", "p3"]
    outcomes = round_robin(policies, {"p0": 0, "p1": 50, "p2": 100, "p3": 300}, per_pairing=7, seed=3)
    rng = random.Random(11)
    base = score(method, policies, outcomes, seed=4, options=RatingOptions(resamples=300))
    for _ in range(3):
        shuffled = outcomes[:]
        rng.shuffle(shuffled)
        listed = policies[:]
        rng.shuffle(listed)
        again = score(method, listed, shuffled, seed=4, options=RatingOptions(resamples=300))
        assert again == base
        if method == "bradley-terry":  # the games alone decide: new episode numbers change nothing either
            numbers = list(range(len(shuffled)))
            rng.shuffle(numbers)
            renumbered = [EpisodeOutcome(n, o.returns, o.pairing) for n, o in zip(numbers, shuffled)]
            again = score(method, listed, renumbered, seed=4, options=RatingOptions(resamples=300))
            assert (again.leaderboard, again.pairwise) == (base.leaderboard, base.pairwise)


def test_stratified_resamples_keep_each_pairings_size() -> None:
    strata = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    counts = np.concatenate(list(episode_counts(strata, 50, np.random.default_rng(0))))
    assert counts.shape == (50, 10)
    for s in range(3):
        assert (counts[:, strata == s].sum(axis=1) == (strata == s).sum()).all()


def test_return_aggregates_match_numpy_and_scipy_on_every_resample() -> None:
    rng = np.random.default_rng(5)
    outcomes = [EpisodeOutcome(i, {"a": float(rng.normal()), "b": float(rng.exponential())}, {"t": "a" if i % 3 else "b"})
                for i in range(41)]
    table = build_table(["a", "b"], outcomes)
    boot = bootstrap_returns(table, 20, np.random.default_rng(1), optimality_target=1.0)
    for j in range(2):
        x = table.returns[:, j]
        assert boot.observed["mean"][j] == pytest.approx(x.mean())
        assert boot.observed["median"][j] == pytest.approx(np.median(x))
        assert boot.observed["iqm"][j] == pytest.approx(stats.trim_mean(x, 0.25))
        assert boot.observed["optimality_gap"][j] == pytest.approx(np.maximum(1.0 - x, 0).mean())
    counts = next(episode_counts(table.strata, 20, np.random.default_rng(1)))
    for b in range(20):
        x = np.repeat(table.returns[:, 0], counts[b])
        assert boot.replicates["median"][b, 0] == pytest.approx(np.median(x))
        assert boot.replicates["iqm"][b, 0] == pytest.approx(stats.trim_mean(x, 0.25))


def test_pairwise_matrix_and_separation() -> None:
    outcomes = round_robin(["a", "b", "c"], {"a": 0, "b": 0, "c": 800}, per_pairing=30, seed=2)
    outcomes.append(EpisodeOutcome(len(outcomes), {"idle": 1.0}, {"red": "idle"}))
    board = score("bradley-terry", ["a", "b", "c", "idle", "never"], outcomes, seed=0)
    entries = by_policy(board.leaderboard)
    assert entries["c"].separated_from == ["a", "b"]
    assert "b" not in entries["a"].separated_from
    assert entries["idle"].interval_kind is IntervalKind.PRIOR and entries["never"].interval_kind is IntervalKind.PRIOR
    pw = board.pairwise
    assert pw.kind == "win-rate" and pw.policies[0] == "c"
    i = {p: k for k, p in enumerate(pw.policies)}
    assert pw.episodes[i["a"]][i["b"]] == 60 and pw.probability[i["a"]][i["a"]] is None
    assert pw.probability[i["idle"]][i["a"]] is None and pw.episodes[i["never"]][i["c"]] == 0
    p, lo, hi = (pw.probability[i["c"]][i["a"]], pw.low[i["c"]][i["a"]], pw.high[i["c"]][i["a"]])
    assert 0.5 < lo <= p <= hi <= 1
    assert pw.probability[i["a"]][i["c"]] == pytest.approx(1 - p)
    assert score("mean-return", ["a", "b", "c"], outcomes[:-1], seed=0).pairwise.kind == "probability-of-improvement"


def test_holm_rejects_step_down() -> None:
    assert holm_reject(np.array([0.01, 0.04, 0.03]), 0.95).tolist() == [True, False, False]
    assert holm_reject(np.array([0.001, 0.02, 0.04]), 0.95).tolist() == [True, True, True]
