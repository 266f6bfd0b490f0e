"""The leaderboard, the pairwise matrix and the return aggregates of a run: one pure function.

`score(method, policies, outcomes, seed, options)` depends on nothing else: outcomes are
sorted by episode and policies by name before anything is computed, and every random draw comes
from a stream of `seed`. Intervals are at `options.confidence_level` (see bootstrap.py for
how they are drawn and docs/ratings-and-matchmaking.md for the formulas):

- `bradley-terry`: percentile interval of the refitted ratings over the smoothed, stratified
  bootstrap of the games;
- `mean-return`: Hesterberg's expanded percentile interval over the stratified bootstrap of
  episodes (nominal coverage from about ten episodes a policy);
- `elo`: percentile interval of the replayed resamples;
- `openskill`: mu +/- z sigma, labelled `posterior`.

An entry whose data cannot give an interval (no games, one episode per pairing, returns that
never vary) gets the method's prior range, labelled `prior`; an interval is never zero-width.
The pairwise matrix's P(row beats column) gets a stratified Wilson score interval
(pairs.score_interval), not a bootstrap percentile one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.spec import RatingMethod, SwarmEvaluationSpec
from swarm_arena.api.status import (
    Estimate,
    IntervalKind,
    LeaderboardEntry,
    PairwiseMatrix,
    PopulationReturns,
    ReturnAggregates,
    SocialOutcome,
)
from swarm_arena.arena.scoring import bradley_terry, elo, openskill_band
from swarm_arena.arena.scoring.bootstrap import (
    expanded_level,
    expanded_p,
    holm_reject,
    percentile_interval,
    rng_for,
    two_sided_p,
)
from swarm_arena.arena.scoring.outcomes import EpisodeOutcome, Table, build_table
from swarm_arena.arena.scoring.pairs import count_games
from swarm_arena.arena.scoring.returns import bootstrap_returns

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE_LEVEL = 0.95
PAIRWISE_DIGITS = 4
_PAIRS_STREAM, _RETURNS_STREAM, _ELO_STREAM = 1, 2, 3


@dataclass(frozen=True)
class RatingOptions:
    resamples: int = DEFAULT_RESAMPLES
    confidence_level: float = DEFAULT_CONFIDENCE_LEVEL
    optimality_target: float | None = None


@dataclass(frozen=True)
class Scoreboard:
    method: RatingMethod
    leaderboard: list[LeaderboardEntry]
    pairwise: PairwiseMatrix | None
    """None when scored without `detail`."""
    return_aggregates: list[ReturnAggregates] | None
    populations: list[PopulationReturns] | None = None
    social_outcomes: list[SocialOutcome] | None = None
    """Per policy and team, from the records' social metrics; only with `detail` (and `score_evaluation`)."""
    """Focal and background per-capita returns; only with background policies, and only with `detail`."""


@dataclass(frozen=True)
class _Rated:
    """Per player (columns of the table): rating, interval, its kind, and the bootstrap of the rating."""

    rating: np.ndarray
    low: np.ndarray
    high: np.ndarray
    kind: list[IntervalKind]
    replicates: np.ndarray | None  # (B, m), for the separation test


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2.0))


def _strata_per_player(table: Table) -> np.ndarray:
    return np.array([len(np.unique(table.strata[table.present[:, j]])) for j in range(len(table.players))])


def _finish(rating: np.ndarray, low: np.ndarray, high: np.ndarray, too_little: np.ndarray,
            prior: tuple[float, float], replicates: np.ndarray | None, kind: IntervalKind) -> _Rated:
    """Prior range where the data give none (or a zero-width one); the point always inside."""
    prior_low, prior_high = prior
    flat = too_little | ~(high - low > 0)
    low = np.where(flat, prior_low, np.minimum(low, rating))
    high = np.where(flat, prior_high, np.maximum(high, rating))
    low, high = np.minimum(low, rating), np.maximum(high, rating)
    return _Rated(rating, low, high, [IntervalKind.PRIOR if f else kind for f in flat], replicates)


def bt_prior_range(level: float) -> tuple[float, float]:
    half = _z(level) * bradley_terry.PRIOR_SD_ELO
    return bradley_terry.ELO_MEAN - half, bradley_terry.ELO_MEAN + half


def _returns_prior_range(table: Table) -> tuple[float, float]:
    """Mean return of a policy nothing is known about: anywhere in the field's observed returns."""
    if not table.present.any():
        return -1.0, 1.0
    values = table.returns[table.present]
    low, high = float(values.min()), float(values.max())
    return (low - 1.0, high + 1.0) if high - low <= 0 else (low, high)


def _per_column_interval(replicates: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.empty(replicates.shape[1]), np.empty(replicates.shape[1])
    for j, level in enumerate(levels):
        low[j], high[j] = percentile_interval(replicates[:, j], float(level))
    return low, high


def score(
    method: str | RatingMethod,
    policies: Sequence[str],
    outcomes: Sequence[EpisodeOutcome],
    seed: int,
    options: RatingOptions = RatingOptions(),
    detail: bool = True,
) -> Scoreboard:
    """`detail=False`: the leaderboard only (no pairwise matrix, no median/IQM), for interim results."""
    method = RatingMethod(method)
    table = build_table(policies, outcomes)
    m, level = len(table.players), options.confidence_level
    episodes = table.episodes
    strata = _strata_per_player(table)
    games = count_games(table)
    played, won = games.games(), games.scores()
    won_b = games.resampled_scores(options.resamples, rng_for(seed, _PAIRS_STREAM))
    # The leaderboard of a rating method needs only the observed mean returns.
    needed = options.resamples if detail or method is RatingMethod.MEAN_RETURN else 0
    returns = bootstrap_returns(table, needed, rng_for(seed, _RETURNS_STREAM), options.optimality_target,
                                quantiles=detail)
    levels = expanded_level(level, episodes, strata) if m else np.zeros(0)

    if method is RatingMethod.MEAN_RETURN:
        reps = returns.replicates["mean"]
        low, high = _per_column_interval(reps, levels)
        rated = _finish(returns.observed["mean"], low, high, (episodes < 2) | (episodes <= strata),
                        _returns_prior_range(table), reps, IntervalKind.BOOTSTRAP)
    elif method is RatingMethod.BRADLEY_TERRY:
        theta = bradley_terry.fit(won, played)
        point = bradley_terry.to_elo(theta)
        reps = bradley_terry.to_elo(bradley_terry.fit(won_b, played, start=theta))
        low, high = percentile_interval(reps, level)
        rated = _finish(point, low, high, played.sum(axis=1) < 2, bt_prior_range(level), reps, IntervalKind.BOOTSTRAP)
    elif method is RatingMethod.ELO:
        point, reps = elo.elo(table, options.resamples, rng_for(seed, _ELO_STREAM)) if m else (
            np.zeros(0), np.zeros((options.resamples, 0)))
        low, high = percentile_interval(reps, level)
        rated = _finish(point, low, high, played.sum(axis=1) < 1, bt_prior_range(level), reps, IntervalKind.BOOTSTRAP)
    else:
        mu, sigma = openskill_band.openskill(table)
        z = _z(level)
        prior_mu, prior_sigma = openskill_band.prior()
        rated = _finish(mu, mu - z * sigma, mu + z * sigma, np.zeros(m, dtype=bool),
                        (prior_mu - z * prior_sigma, prior_mu + z * prior_sigma), None, IntervalKind.POSTERIOR)

    expand = (episodes, strata) if method is RatingMethod.MEAN_RETURN else None
    separated = _separated(rated, played, won, won_b, level, expand)
    entries = [
        LeaderboardEntry(
            policy=p, rating=float(rated.rating[j]), ci_low=float(rated.low[j]), ci_high=float(rated.high[j]),
            interval_kind=rated.kind[j], mean_return=float(returns.observed["mean"][j]), episodes=int(episodes[j]),
            separated_from=sorted(table.players[k] for k in np.flatnonzero(separated[j])),
        )
        for j, p in enumerate(table.players)
    ]
    entries.sort(key=lambda e: (-e.rating, e.policy))
    entries += _unplayed(method, table, policies, level)
    return Scoreboard(
        method=method,
        leaderboard=entries,
        pairwise=_pairwise(method, table, entries, played, won, games.score_interval(level), level) if detail else None,
        return_aggregates=_aggregates(table, returns, levels, options.optimality_target) if detail else None,
    )


def _separated(rated: _Rated, played: np.ndarray, won: np.ndarray, won_b: np.ndarray, level: float,
               expand: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """(m, m) bool: the rating difference (openskill: the head-to-head win rate) excludes no difference."""
    m = len(rated.rating)
    first, second = np.triu_indices(m, k=1)
    usable = np.array([IntervalKind.PRIOR not in (rated.kind[i], rated.kind[j]) for i, j in zip(first, second)],
                      dtype=bool)
    if rated.replicates is not None:
        differences = rated.replicates[:, first] - rated.replicates[:, second]
        observed = rated.rating[first] - rated.rating[second]
    else:
        usable &= played[first, second] > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            differences = won_b[:, first, second] / played[first, second] - 0.5
            observed = won[first, second] / played[first, second] - 0.5
    p = two_sided_p(np.nan_to_num(differences), np.nan_to_num(observed))
    if expand is not None:  # means: the small-sample expansion their intervals get (bootstrap.expanded_p)
        episodes, strata = expand
        fewer = np.where(episodes[first] <= episodes[second], first, second)
        p = expanded_p(p, episodes[fewer], strata[fewer])
    p = np.where(usable, p, 1.0)
    reject = holm_reject(p, level) & usable
    out = np.zeros((m, m), dtype=bool)
    out[first[reject], second[reject]] = True
    return out | out.T


def _unplayed(method: RatingMethod, table: Table, policies: Sequence[str], level: float) -> list[LeaderboardEntry]:
    if method is RatingMethod.OPENSKILL:
        mu, sigma = openskill_band.prior()
        z = _z(level)
        rating, low, high = mu, mu - z * sigma, mu + z * sigma
    elif method is RatingMethod.MEAN_RETURN:
        low, high = _returns_prior_range(table)
        rating = float(table.returns[table.present].mean()) if table.present.any() else 0.0
    else:
        rating = bradley_terry.ELO_MEAN
        low, high = bt_prior_range(level)
    return [
        LeaderboardEntry(policy=p, rating=rating, ci_low=low, ci_high=high, interval_kind=IntervalKind.PRIOR,
                         mean_return=0.0, episodes=0)
        for p in sorted(set(policies) - set(table.players))
    ]


def _rounded(matrix: np.ndarray, mask: np.ndarray) -> list[list[float | None]]:
    return [[round(float(v), PAIRWISE_DIGITS) if ok else None for v, ok in zip(row, oks)]
            for row, oks in zip(matrix, mask)]


def _pairwise(method: RatingMethod, table: Table, entries: list[LeaderboardEntry], played: np.ndarray,
              won: np.ndarray, interval: tuple[np.ndarray, np.ndarray], level: float) -> PairwiseMatrix:
    order = [e.policy for e in entries]
    k = len(order)
    column = {p: j for j, p in enumerate(table.players)}
    rate, low, high, count = (np.zeros((k, k)) for _ in range(4))
    index = np.array([column.get(p, -1) for p in order])
    has = index >= 0
    sub = np.ix_(np.flatnonzero(has), np.flatnonzero(has))
    cols = index[has]
    if len(cols):
        games = played[np.ix_(cols, cols)]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate[sub] = won[np.ix_(cols, cols)] / games
        low[sub], high[sub], count[sub] = interval[0][np.ix_(cols, cols)], interval[1][np.ix_(cols, cols)], games
    mask = count > 0
    return PairwiseMatrix(
        kind="probability-of-improvement" if method is RatingMethod.MEAN_RETURN else "win-rate",
        confidence_level=level,
        policies=order,
        probability=_rounded(rate, mask),
        low=_rounded(low, mask),
        high=_rounded(high, mask),
        episodes=count.astype(int).tolist(),
        separated=[[int(q in set(e.separated_from)) for q in order] for e in entries],
    )


def _aggregates(table: Table, returns, levels: np.ndarray, target: float | None) -> list[ReturnAggregates]:  # type: ignore[no-untyped-def]
    names = ["mean", "median", "iqm"] + (["optimality_gap"] if target is not None else [])
    bounds = {k: _per_column_interval(returns.replicates[k], levels) for k in names}
    out = []
    for j, p in enumerate(table.players):
        est = {k: Estimate(value=float(returns.observed[k][j]), low=float(min(bounds[k][0][j], returns.observed[k][j])),
                           high=float(max(bounds[k][1][j], returns.observed[k][j]))) for k in names}
        out.append(ReturnAggregates(policy=p, episodes=int(table.episodes[j]), **est))
    return out


def leaderboard(
    method: str | RatingMethod,
    policies: Sequence[str],
    outcomes: Sequence[EpisodeOutcome],
    seed: int,
    options: RatingOptions = RatingOptions(),
) -> list[LeaderboardEntry]:
    """Every policy in `policies`, best first (ties by name); those that never played last."""
    return score(method, policies, outcomes, seed, options).leaderboard




def score_evaluation(spec: SwarmEvaluationSpec, records: Sequence[EpisodeRecord], detail: bool = True) -> Scoreboard:
    """`score` with the evaluation's method (resolved), seed and rating options.

    Only focal policies are ranked: background policies' returns are left out of the outcomes
    (episodes without a focal policy drop out), and with `detail` their per-capita return beside
    each focal policy's is in `populations`."""
    from swarm_arena.arena.scoring.populations import population_returns
    from swarm_arena.arena.scoring.social import social_outcomes

    focal = spec.focal_policy_names
    keep = set(focal)
    outcomes = [
        EpisodeOutcome(episode=r.episode, returns={p: v for p, v in r.returns.items() if p in keep}, pairing=r.pairing)
        for r in records
        if keep & set(r.returns)
    ]
    options = RatingOptions(
        resamples=spec.rating.resamples,
        confidence_level=spec.rating.confidence_level,
        optimality_target=spec.rating.optimality_target,
    )
    board = score(spec.rating_method, focal, outcomes, spec.seed, options, detail)
    if not detail:
        return board
    background = spec.background_policy_names
    populations = population_returns(records, focal, background, resamples=options.resamples, seed=spec.seed,
                                     level=options.confidence_level) if background else None
    social = social_outcomes(records, resamples=options.resamples, seed=spec.seed, level=options.confidence_level)
    return dataclasses.replace(board, populations=populations, social_outcomes=social or None)
