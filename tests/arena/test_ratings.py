"""The leaderboard: hand-computed cases, determinism, and agreement with the openskill library."""

from __future__ import annotations

import math
import random

import pytest
from openskill.models import PlackettLuce

from swarm_arena.api.status import IntervalKind
from swarm_arena.arena.scoring import EpisodeOutcome, leaderboard
from swarm_arena.arena.scoring.elo import ELO_INITIAL, ELO_K
from swarm_arena.arena.scoring.elo import elo as elo_run
from swarm_arena.arena.scoring.outcomes import build_table

METHODS = ["mean-return", "bradley-terry", "elo", "openskill"]


def by_policy(entries):  # type: ignore[no-untyped-def]
    return {e.policy: e for e in entries}


def test_mean_return_rating_is_the_mean_inside_a_bootstrap_interval() -> None:
    outcomes = [EpisodeOutcome(i, {"a": r, "b": 0.0}) for i, r in enumerate([1.0, 2.0, 3.0, 4.0])]
    a = by_policy(leaderboard("mean-return", ["a", "b"], outcomes, seed=0))["a"]
    assert (a.rating, a.mean_return, a.episodes, a.interval_kind) == (2.5, 2.5, 4, IntervalKind.BOOTSTRAP)
    # Expanded percentile: never narrower than the resampled means' own range allows, never past it.
    assert 1.0 <= a.ci_low < 2.5 < a.ci_high <= 4.0


def test_one_episode_or_returns_that_never_vary_give_the_prior_range_never_a_point() -> None:
    (a, b) = leaderboard("mean-return", ["a", "b"], [EpisodeOutcome(0, {"a": 3.0, "b": 1.0})], seed=0)
    assert (a.policy, a.rating, a.ci_low, a.ci_high, a.interval_kind) == ("a", 3.0, 1.0, 3.0, IntervalKind.PRIOR)
    assert (b.policy, b.rating, b.ci_low, b.ci_high, b.interval_kind) == ("b", 1.0, 1.0, 3.0, IntervalKind.PRIOR)
    steady = [EpisodeOutcome(i, {"a": float(i % 3), "noop": 0.0}) for i in range(30)]
    noop = by_policy(leaderboard("mean-return", ["a", "noop"], steady, seed=0))["noop"]
    assert (noop.ci_low, noop.ci_high, noop.interval_kind) == (0.0, 2.0, IntervalKind.PRIOR)
    for method in METHODS:
        for entry in leaderboard(method, ["a", "noop"], steady[:1], seed=0):
            assert entry.ci_high > entry.ci_low, (method, entry)


def test_elo_two_player_wins_by_hand() -> None:
    outcomes = [EpisodeOutcome(0, {"a": 1.0, "b": 0.0}), EpisodeOutcome(1, {"a": 5.0, "b": 2.0})]
    entries = by_policy(leaderboard("elo", ["a", "b"], outcomes, seed=0))
    # Episode 0: equal ratings, expectation 0.5, winner +16.
    a, b = ELO_INITIAL + 16, ELO_INITIAL - 16
    # Episode 1: a is expected to win with 1 / (1 + 10^((b - a) / 400)).
    expected = 1 / (1 + 10 ** ((b - a) / 400))
    a, b = a + ELO_K * (1 - expected), b - ELO_K * (1 - expected)
    assert entries["a"].rating == pytest.approx(a, abs=1e-9)
    assert entries["b"].rating == pytest.approx(b, abs=1e-9)
    assert a == pytest.approx(1530.530, abs=1e-3)  # 10^-0.08 = 0.83176, E = 0.54592


def test_elo_draw_between_equals_changes_nothing_even_with_float_noise() -> None:
    outcomes = [EpisodeOutcome(0, {"a": 0.1 + 0.2, "b": 0.3})]
    entries = leaderboard("elo", ["a", "b"], outcomes, seed=0)
    assert [e.rating for e in entries] == [ELO_INITIAL, ELO_INITIAL]


def test_elo_shares_k_between_opponents_of_one_episode() -> None:
    outcomes = [EpisodeOutcome(0, {"a": 3.0, "b": 2.0, "c": 1.0})]
    entries = by_policy(leaderboard("elo", ["a", "b", "c"], outcomes, seed=0))
    assert entries["a"].rating == pytest.approx(ELO_INITIAL + 16)
    assert entries["b"].rating == pytest.approx(ELO_INITIAL)
    assert entries["c"].rating == pytest.approx(ELO_INITIAL - 16)


def test_openskill_agrees_with_the_library_used_directly() -> None:
    rng = random.Random(3)
    policies = ["a", "b", "c"]
    outcomes = []
    for i in range(30):
        present = rng.sample(policies, rng.choice([2, 3]))
        outcomes.append(EpisodeOutcome(i, {p: rng.uniform(0, 10) for p in present}))

    model = PlackettLuce()
    ratings = {p: model.rating(name=p) for p in policies}
    for outcome in outcomes:
        names = list(outcome.returns)
        new = model.rate([[ratings[p]] for p in names], scores=[outcome.returns[p] for p in names])
        ratings.update({p: team[0] for p, team in zip(names, new)})

    for entry in leaderboard("openskill", policies, outcomes, seed=0):
        direct = ratings[entry.policy]
        assert entry.rating == pytest.approx(direct.mu, abs=1e-9)
        assert entry.interval_kind is IntervalKind.POSTERIOR
        assert entry.ci_low == pytest.approx(direct.mu - 1.96 * direct.sigma, abs=1e-3)
        assert entry.ci_high == pytest.approx(direct.mu + 1.96 * direct.sigma, abs=1e-3)


def test_openskill_ties_are_ties() -> None:
    tied = leaderboard("openskill", ["a", "b"], [EpisodeOutcome(0, {"a": 1.0, "b": 1.0})], seed=0)
    assert tied[0].rating == pytest.approx(tied[1].rating)
    assert [e.policy for e in tied] == ["a", "b"]  # equal ratings: by name


def random_outcomes(n: int, seed: int) -> list[EpisodeOutcome]:
    rng = random.Random(seed)
    return [
        EpisodeOutcome(i, {"weak": rng.gauss(0, 1), "mid": rng.gauss(0.5, 1), "strong": rng.gauss(3, 1)})
        for i in range(n)
    ]


@pytest.mark.parametrize("method", METHODS)
def test_a_dominating_policy_ranks_first(method: str) -> None:
    entries = leaderboard(method, ["weak", "mid", "strong"], random_outcomes(60, seed=1), seed=0)
    assert entries[0].policy == "strong"
    assert entries[0].ci_low > entries[-1].rating
    assert all(e.ci_low <= e.rating <= e.ci_high for e in entries)
    assert all(e.episodes == 60 for e in entries)


@pytest.mark.parametrize("method", METHODS)
def test_same_inputs_same_leaderboard_whatever_the_arrival_order(method: str) -> None:
    outcomes = random_outcomes(40, seed=2)
    shuffled = outcomes[:]
    random.Random(9).shuffle(shuffled)
    policies = ["weak", "mid", "strong"]
    assert leaderboard(method, policies, outcomes, seed=5) == leaderboard(method, policies, shuffled, seed=5)


def test_elo_interval_depends_on_the_seed_and_only_on_it() -> None:
    outcomes = random_outcomes(40, seed=2)
    policies = ["weak", "mid", "strong"]
    first = leaderboard("elo", policies, outcomes, seed=1)
    assert first == leaderboard("elo", policies, outcomes, seed=1)
    other = leaderboard("elo", policies, outcomes, seed=2)
    assert [e.rating for e in first] == [e.rating for e in other]
    assert [e.ci_low for e in first] != [e.ci_low for e in other]


@pytest.mark.parametrize("method", METHODS)
def test_a_policy_that_never_played_is_last_with_finite_values(method: str) -> None:
    outcomes = [EpisodeOutcome(i, {"a": float(i), "b": 1.0}) for i in range(5)]
    entries = leaderboard(method, ["idle", "a", "b"], outcomes, seed=0)
    idle = entries[-1]
    assert (idle.policy, idle.episodes, idle.mean_return) == ("idle", 0, 0.0)
    values = [idle.rating, idle.ci_low, idle.ci_high]
    assert all(math.isfinite(v) for v in values)
    # Its interval is at least as wide as any measured one: it says "unknown".
    assert idle.ci_high - idle.ci_low >= max(e.ci_high - e.ci_low for e in entries[:-1])


def test_no_outcomes_at_all_lists_every_policy_unplayed() -> None:
    for method in METHODS:
        entries = leaderboard(method, ["b", "a"], [], seed=0)
        assert [(e.policy, e.episodes) for e in entries] == [("a", 0), ("b", 0)]


def test_bad_outcomes_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="episode 1 is reported twice"):
        leaderboard("mean-return", ["a"], [EpisodeOutcome(1, {"a": 1.0}), EpisodeOutcome(1, {"a": 2.0})], 0)
    with pytest.raises(ValueError, match="returns for zed, which are not in the evaluation's policies"):
        leaderboard("elo", ["a"], [EpisodeOutcome(0, {"a": 1.0, "zed": 2.0})], 0)
    with pytest.raises(ValueError, match="non-finite returns for a"):
        leaderboard("openskill", ["a"], [EpisodeOutcome(0, {"a": math.nan})], 0)
    with pytest.raises(ValueError, match="'glicko'"):
        leaderboard("glicko", ["a"], [], 0)


def test_elo_pair_terms_computed_per_episode_give_the_same_ratings() -> None:
    import numpy as np

    table = build_table(["weak", "mid", "strong"], random_outcomes(50, seed=4))
    cached = elo_run(table, 200, np.random.default_rng(3))
    fresh = elo_run(table, 200, np.random.default_rng(3), precompute_limit=0)
    assert np.array_equal(cached[0], fresh[0]) and np.array_equal(cached[1], fresh[1])


@pytest.mark.parametrize(("names", "sizes"), [("abcd", [2, 2, 3, 4]), ("abcdef", [2, 2, 3])], ids=["dense", "compact"])
def test_elo_bootstrap_replays_every_resample_as_sequential_elo_would(names: str, sizes: list[int]) -> None:
    """All resamples at once (episodes of several sizes, draws, a block smaller than the run; each
    episode's games listed for all pairs of policies, or its own pairs only) give each resample's
    ratings as a plain loop over its episodes, one at a time, gives them."""
    import numpy as np

    from swarm_arena.arena.scoring.bootstrap import episode_counts
    from swarm_arena.arena.scoring.elo import _EloGames, replay

    rng = random.Random(8)
    names = list(names)
    outcomes = []
    for i in range(60):
        playing = rng.sample(names, rng.choice(sizes))
        outcomes.append(EpisodeOutcome(i, {p: float(rng.randrange(3)) for p in playing},
                                       {"side": ",".join(sorted(playing))}))
    table = build_table(names, outcomes)
    assert _EloGames(table).dense is (len(names) == 4)
    counts = list(episode_counts(table.strata, 25, np.random.default_rng(4)))
    fast = replay(table, counts, block=16)

    for b, drawn in enumerate(np.concatenate(counts)):
        ratings = dict.fromkeys(range(len(names)), ELO_INITIAL)
        for episode in np.repeat(np.arange(len(drawn)), drawn):
            playing = list(np.flatnonzero(table.present[episode]))
            share = ELO_K / (len(playing) - 1)
            before = dict(ratings)
            for x in playing:
                for y in playing:
                    if x != y:
                        rx, ry = table.ranks[episode, x], table.ranks[episode, y]
                        won = 1.0 if rx > ry else 0.5 if rx == ry else 0.0
                        ratings[x] += share * (won - 1 / (1 + 10 ** ((before[y] - before[x]) / 400)))
        assert fast[b] == pytest.approx([ratings[k] for k in range(len(names))], abs=1e-9)
