"""The leaderboard: per-episode returns in, ranked policies with 95% confidence intervals out.

A pure function of (method, policies, outcomes, seed): outcomes are sorted by episode index
first, so a coordinator that receives episodes out of order, or replays them after a restart,
computes the same leaderboard. Three methods (see docs/ratings-and-matchmaking.md):

- `mean-return`: the mean of the policy's per-episode returns; Student-t interval.
- `elo`: sequential Elo over episodes in index order, every pair of present policies compared
  by return; percentile bootstrap over episodes (seeded, vectorised over resamples).
- `openskill`: Plackett-Luce (the `openskill` package), each episode a ranking of the present
  policies by return; rating = mu, interval = mu +/- 1.96 sigma.

Returns within `TIE_RTOL`/`TIE_ATOL` of each other are a draw, so float summation order never
decides a game. A policy that never played is listed last with `episodes=0`, the method's prior
as rating and an interval wide enough to say "unknown" (never NaN: status must serialise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swarm_arena.api.spec import RatingMethod
from swarm_arena.api.status import LeaderboardEntry

ELO_INITIAL = 1500.0
ELO_K = 32.0
"""Rating points at stake per episode; shared between a policy's opponents in that episode."""
ELO_SCALE = 400.0
ELO_RESAMPLES = 200
ELO_MIN_RESAMPLES = 20
ELO_WORK_BUDGET = 2e9
"""Bootstrap resamples x episodes x policies^2 allowed before the resample count is lowered."""
Z_95 = 1.959963984540054
TIE_RTOL = 1e-9
TIE_ATOL = 1e-12

# Student-t 0.975 quantiles for 1..30 degrees of freedom; beyond, a Cornish-Fisher expansion
# is within 3e-8 of the exact value.
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip


@dataclass(frozen=True)
class EpisodeOutcome:
    """What one finished episode tells the ratings."""

    episode: int
    """`Match.index`."""
    returns: dict[str, float]
    """Policy -> mean per-agent return in this episode (only the policies present)."""


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (two-sided 95%)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = Z_95, float(df)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


# ---- the returns table ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """Episodes x policies that played: returns (0 where absent), presence, and draw-aware ranks."""

    players: list[str]
    returns: np.ndarray  # (N, m) float64
    present: np.ndarray  # (N, m) bool
    ranks: np.ndarray  # (N, m) float64: dense rank by return within the episode, 0 = worst


def _dense_ranks(returns: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Per row, 0 for the lowest present return, +1 at every gap larger than the tie tolerance."""
    n, m = returns.shape
    keyed = np.where(present, returns, np.inf)
    order = np.argsort(keyed, axis=1, kind="stable")
    ordered = np.take_along_axis(keyed, order, axis=1)
    prev, cur = ordered[:, :-1], ordered[:, 1:]
    with np.errstate(invalid="ignore"):
        gap = np.abs(cur - prev) > TIE_ATOL + TIE_RTOL * np.maximum(np.abs(cur), np.abs(prev))
    steps = np.concatenate([np.zeros((n, 1)), gap.astype(np.float64)], axis=1)
    ranks = np.empty((n, m))
    np.put_along_axis(ranks, order, np.cumsum(steps, axis=1), axis=1)
    return ranks


def _table(policies: Sequence[str], outcomes: Sequence[EpisodeOutcome]) -> _Table:
    known = set(policies)
    ordered = sorted(outcomes, key=lambda o: o.episode)
    for before, after in zip(ordered, ordered[1:]):
        if before.episode == after.episode:
            raise ValueError(f"episode {after.episode} is reported twice; each episode counts once")
    for outcome in ordered:
        unknown = sorted(set(outcome.returns) - known)
        if unknown:
            raise ValueError(
                f"episode {outcome.episode} reports returns for {', '.join(unknown)}, "
                f"which are not in the evaluation's policies ({', '.join(policies)})"
            )
        bad = sorted(p for p, r in outcome.returns.items() if not math.isfinite(r))
        if bad:
            raise ValueError(f"episode {outcome.episode} has non-finite returns for {', '.join(bad)}")
    played = {p for o in ordered for p in o.returns}
    players = [p for p in policies if p in played]
    column = {p: j for j, p in enumerate(players)}
    returns = np.zeros((len(ordered), len(players)))
    present = np.zeros((len(ordered), len(players)), dtype=bool)
    for i, outcome in enumerate(ordered):
        for policy, value in outcome.returns.items():
            returns[i, column[policy]] = value
            present[i, column[policy]] = True
    return _Table(players, returns, present, _dense_ranks(returns, present))


# ---- methods -------------------------------------------------------------------------------

# policy -> (rating, ci_low, ci_high) for the policies that played
_Ratings = dict[str, tuple[float, float, float]]


def _mean_return(table: _Table) -> _Ratings:
    rated: _Ratings = {}
    for j, policy in enumerate(table.players):
        values = table.returns[table.present[:, j], j]
        mean = float(values.mean())
        if len(values) < 2:
            rated[policy] = (mean, mean, mean)
            continue
        half = t_quantile_975(len(values) - 1) * float(values.std(ddof=1)) / math.sqrt(len(values))
        rated[policy] = (mean, mean - half, mean + half)
    return rated


def elo_resamples(episodes: int, players: int) -> int:
    """Bootstrap resamples for Elo: `ELO_RESAMPLES`, fewer when episodes x players^2 is huge."""
    affordable = ELO_WORK_BUDGET / max(1, episodes * players * players)
    return int(min(ELO_RESAMPLES, max(ELO_MIN_RESAMPLES, affordable)))


_ELO_PRECOMPUTE_LIMIT = 8_000_000
"""Episodes x policies^2 up to which the per-episode pair terms are precomputed (float64: 64 MB)."""


class _EloPairs:
    """Per episode: the K-weighted pair mask and each policy's K-weighted score, by row."""

    def __init__(self, table: _Table) -> None:
        self._table = table
        count = table.present.sum(axis=1)
        self._k_share = np.where(count > 1, ELO_K / np.maximum(count - 1, 1), 0.0)
        n, m = table.present.shape
        self._cached = self._compute(np.arange(n)) if n * m * m <= _ELO_PRECOMPUTE_LIMIT else None

    def _compute(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rank = self._table.ranks[rows]
        present = self._table.present[rows]
        m = rank.shape[1]
        pairs = present[:, :, None] & present[:, None, :] & ~np.eye(m, dtype=bool)
        weight = pairs * self._k_share[rows][:, None, None]
        score = (rank[:, :, None] > rank[:, None, :]) + 0.5 * (rank[:, :, None] == rank[:, None, :])
        return weight, (weight * score).sum(axis=2)

    def __call__(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._cached is None:
            return self._compute(rows)
        weight, scored = self._cached
        return weight[rows], scored[rows]


def _elo_replay(table: _Table, sequences: np.ndarray) -> np.ndarray:
    """Run Elo along each row of `sequences` (episode indices, ascending) at once: (B, m) ratings.

    Within an episode every pair of present policies plays one game and the K of the episode is
    shared between a policy's opponents; updates are simultaneous (from the ratings before the
    episode), so the order of pairs does not matter. The loop runs over episodes and is
    vectorised over resamples: its cost is mostly numpy call overhead per episode.
    """
    replicas, length = sequences.shape
    terms = _EloPairs(table)
    ratings = np.full((replicas, len(table.players)), ELO_INITIAL)
    strength = 10.0 ** (ratings / ELO_SCALE)
    for t in range(length):
        weight, scored = terms(sequences[:, t])
        # expected[b, i, j] = 1 / (1 + 10^((r_j - r_i) / 400)) = q_i / (q_i + q_j)
        expected = strength[:, :, None] / (strength[:, :, None] + strength[:, None, :])
        ratings += scored - (weight * expected).sum(axis=2)
        strength = 10.0 ** (ratings / ELO_SCALE)
    return ratings


def _elo(table: _Table, seed: int) -> _Ratings:
    n, m = table.returns.shape
    rng = np.random.default_rng(seed)
    sequences = rng.integers(0, n, size=(1 + elo_resamples(n, m), n), dtype=np.int32 if n < 2**31 else np.int64)
    sequences[0] = np.arange(n)  # row 0: the run itself, replayed with the resamples in one pass
    sequences.sort(axis=1)  # a resample is replayed in episode order, like the real run
    replayed = _elo_replay(table, sequences)
    point, boot = replayed[0], replayed[1:]
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    # The point estimate lies inside its interval even when the bootstrap is skewed.
    return {
        p: (float(point[j]), float(min(low[j], point[j])), float(max(high[j], point[j])))
        for j, p in enumerate(table.players)
    }


def _openskill_model():  # type: ignore[no-untyped-def]
    from openskill.models import PlackettLuce

    return PlackettLuce()


def _openskill(table: _Table) -> _Ratings:
    model = _openskill_model()
    current = {p: model.rating(name=p) for p in table.players}
    for i in range(len(table.returns)):
        columns = np.flatnonzero(table.present[i])
        if len(columns) < 2:
            continue  # nobody to be ranked against
        names = [table.players[j] for j in columns]
        best = table.ranks[i, columns].max()
        ranks = [float(best - table.ranks[i, j]) for j in columns]  # openskill: 0 is the winner
        rated = model.rate([[current[p]] for p in names], ranks=ranks)
        for name, (rating,) in zip(names, rated):
            current[name] = rating
    return {
        p: (float(r.mu), float(r.mu - Z_95 * r.sigma), float(r.mu + Z_95 * r.sigma))
        for p, r in current.items()
    }


def _unplayed(method: RatingMethod, table: _Table, rated: _Ratings) -> tuple[float, float, float]:
    """Rating and interval of a policy with no episodes: the prior, spanning the whole field."""
    if method is RatingMethod.OPENSKILL:
        prior = _openskill_model().rating()
        return (prior.mu, prior.mu - Z_95 * prior.sigma, prior.mu + Z_95 * prior.sigma)
    if method is RatingMethod.ELO:
        prior = ELO_INITIAL
    else:
        prior = float(table.returns[table.present].mean()) if table.present.any() else 0.0
    lows = [low for _, low, _ in rated.values()]
    highs = [high for _, _, high in rated.values()]
    return (prior, min([prior, *lows]), max([prior, *highs]))


def leaderboard(
    method: str | RatingMethod,
    policies: Sequence[str],
    outcomes: Sequence[EpisodeOutcome],
    seed: int,
) -> list[LeaderboardEntry]:
    """Every policy in `policies`, best first (ties by name); those that never played last."""
    method = RatingMethod(method)
    if len(set(policies)) != len(policies):
        raise ValueError(f"policies must be unique, got {list(policies)}")
    table = _table(policies, outcomes)
    if method is RatingMethod.MEAN_RETURN:
        rated = _mean_return(table)
    elif method is RatingMethod.ELO:
        rated = _elo(table, seed) if table.players else {}
    else:
        rated = _openskill(table)

    entries = []
    for j, policy in enumerate(table.players):
        rating, low, high = rated[policy]
        values = table.returns[table.present[:, j], j]
        entries.append(
            LeaderboardEntry(
                policy=policy,
                rating=rating,
                ci_low=low,
                ci_high=high,
                mean_return=float(values.mean()),
                episodes=int(len(values)),
            )
        )
    entries.sort(key=lambda e: (-e.rating, e.policy))
    never = sorted(p for p in policies if p not in rated)
    if never:
        rating, low, high = _unplayed(method, table, rated)
        entries += [
            LeaderboardEntry(policy=p, rating=rating, ci_low=low, ci_high=high, mean_return=0.0, episodes=0)
            for p in never
        ]
    return entries
