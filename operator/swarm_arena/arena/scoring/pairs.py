"""Who beat whom: per pairing and pair of policies, wins, draws and losses, and their bootstrap.

Every pair of policies present in an episode plays one game in it, decided by return (ties
within the tolerance are draws, counted as half a win). Resampling episodes within a stratum
makes each pair's (wins, draws, losses) there a multinomial draw; we draw it directly, which
costs O(pairings x pairs) however many episodes were played. The observed proportions get a
pseudo-count of 1/2 on each decisive outcome (Jeffreys), so a pair where one side always won
still has a spread (100 wins of 100 is strong evidence, not certainty).

Pairs are drawn independently of each other. For head-to-head plans (two policies an episode)
this is exactly the stratified bootstrap; where more policies share an episode it ignores the
correlation between their games in that episode (docs/ratings-and-matchmaking.md).

The pairwise matrix's interval for P(row beats column) is not read off that bootstrap: a
percentile interval of a smoothed binomial covers 97-99% where it says 95% (the pseudo-counts
widen it, most at few games or lopsided pairs), and an unsmoothed one collapses to a point when
one side always won. It is `score_interval`, a stratified Wilson score interval: calibrated in
tests/arena/test_calibration.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse, stats

from swarm_arena.arena.scoring.bootstrap import stratum_rows
from swarm_arena.arena.scoring.outcomes import Table

PSEUDO_COUNT = 0.5


@dataclass(frozen=True)
class Games:
    """Per (stratum, pair) game counts; `first` is the lower column index of the pair."""

    first: np.ndarray  # (K,) int
    second: np.ndarray  # (K,) int
    outcomes: np.ndarray  # (K, 3) int: first wins, draws, second wins
    players: int

    def games(self) -> np.ndarray:
        """(m, m) games played between each pair (symmetric)."""
        g = np.zeros((self.players, self.players))
        np.add.at(g, (self.first, self.second), self.outcomes.sum(axis=1))
        return g + g.T

    def scores(self) -> np.ndarray:
        """(m, m) observed score of row over column (wins + half the draws)."""
        first_scores = self.outcomes[:, 0] + 0.5 * self.outcomes[:, 1]
        return pair_matrix(self.first, self.second, self.outcomes.sum(axis=1), first_scores, self.players)

    def score_interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """(m, m) low and high of P(row beats column) (`score_interval`); 0 where a pair never played."""
        return score_interval(self.first, self.second, self.outcomes, self.players, level)

    def resampled_scores(self, resamples: int, rng: np.random.Generator) -> np.ndarray:
        """(B, m, m) scores under the smoothed stratified bootstrap."""
        first_scores = resample_first_scores(self.outcomes, resamples, rng)
        return pair_matrix(self.first, self.second, self.outcomes.sum(axis=1), first_scores, self.players)


def pair_matrix(first: np.ndarray, second: np.ndarray, totals: np.ndarray, first_scores: np.ndarray,
                m: int) -> np.ndarray:
    """(..., K) scores of `first` over `second` (of `totals` games) -> (..., m, m) row over column."""
    k = len(first)
    lead = first_scores.shape[:-1]
    if k == 0:
        return np.zeros((*lead, m, m))
    flat_scores = first_scores.reshape(-1, k)
    cells = np.concatenate([first * m + second, second * m + first])
    onehot = sparse.csr_matrix((np.ones(2 * k), (np.arange(2 * k), cells)), shape=(2 * k, m * m))
    both = np.concatenate([flat_scores, np.broadcast_to(totals, flat_scores.shape) - flat_scores], axis=1)
    return np.asarray((onehot.T @ both.T).T).reshape(*lead, m, m)


def resample_first_scores(outcomes: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, ..., K) bootstrap scores of `first` from (..., K, 3) outcomes (wins, draws, losses).

    The multinomial draw as two binomials (wins, then draws among the rest): vectorised over any
    leading axes, which the calibration tests use to run a thousand tournaments at once.
    """
    totals = outcomes.sum(axis=-1)
    smoothed = outcomes + np.array([PSEUDO_COUNT, 0.0, PSEUDO_COUNT])
    p = smoothed / smoothed.sum(axis=-1, keepdims=True)
    shape = (resamples, *totals.shape)
    wins = rng.binomial(np.broadcast_to(totals, shape), np.broadcast_to(p[..., 0], shape))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_draw = np.where(p[..., 2] + p[..., 1] > 0, p[..., 1] / (p[..., 1] + p[..., 2]), 0.0)
    draws = rng.binomial(np.broadcast_to(totals, shape) - wins, np.broadcast_to(p_draw, shape))
    return wins + 0.5 * draws


def score_interval(first: np.ndarray, second: np.ndarray, outcomes: np.ndarray, players: int,
                   level: float) -> tuple[np.ndarray, np.ndarray]:
    """(..., m, m) low and high of P(row beats column), draws half, from (..., K, 3) per-(stratum, pair)
    outcomes (first wins, draws, second wins); leading axes are independent tournaments.

    Wilson's score interval (the set of p the score test at `level` does not reject), with two
    corrections to its null variance p(1 − p)/n: a draw scores ½, so one game's variance is
    p(1 − p) − d/4 (d: the pair's observed draw rate); and the pair's games are a stratified sample
    (a pairing, e.g. who plays red, can favour one side), so n is the effective number of games,
    n_eff = (p̂(1 − p̂) − d/4) / v̂ with v̂ = Σ_s n_s S_s² / n² the stratified variance of the score
    (S_s²: the unbiased variance of one game in stratum s; a stratum of one game borrows the pair's
    pooled one). Where v̂ is 0 (every stratum unanimous) n_eff = n: plain Wilson, never zero width.
    """
    totals = outcomes.sum(axis=-1).astype(np.float64)
    score = outcomes[..., 0] + 0.5 * outcomes[..., 1]
    square = outcomes[..., 0] + 0.25 * outcomes[..., 1]  # Σ x² of the games' scores
    lead = outcomes.shape[:-2]
    pair = first * players + second
    _, which = np.unique(pair, return_inverse=True)
    pairs = which.max() + 1 if len(which) else 0

    def by_pair(values: np.ndarray) -> np.ndarray:  # (..., K) -> (..., P)
        out = np.zeros((*lead, pairs))
        np.add.at(out, (..., which), values)
        return out

    n, s, q = by_pair(totals), by_pair(score), by_pair(square)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_hat, draws = s / n, by_pair(outcomes[..., 1]) / (n + 1.0)  # shrunk: all draws is no point
        per_game = np.maximum(q / n - p_hat**2, 0.0)  # plug-in variance of one game's score
        pooled = np.where(n > 1, per_game * n / (n - 1), 0.0)
        in_stratum = np.where(totals > 1, (square - score**2 / totals) / (totals - 1), pooled[..., which])
        v = by_pair(totals * np.maximum(in_stratum, 0.0)) / n**2
        n_eff = np.where(v > 0, per_game / v, n)
    z2 = stats.norm.ppf(0.5 + level / 2.0) ** 2 / np.maximum(n_eff, 1e-12)
    # (p̂ − p)² ≤ z²/n_eff · (p(1 − p) − d/4), solved for p
    a, b, c = 1.0 + z2, -(2.0 * p_hat + z2), p_hat**2 + z2 * draws / 4.0
    root = np.sqrt(np.maximum(b * b - 4.0 * a * c, 0.0))
    low, high = np.clip((-b - root) / (2.0 * a), 0.0, 1.0), np.clip((-b + root) / (2.0 * a), 0.0, 1.0)
    firsts, seconds = np.zeros(pairs, dtype=np.int64), np.zeros(pairs, dtype=np.int64)
    firsts[which], seconds[which] = first, second
    low_m, high_m = np.zeros((*lead, players, players)), np.zeros((*lead, players, players))
    low_m[..., firsts, seconds], high_m[..., firsts, seconds] = low, high
    low_m[..., seconds, firsts], high_m[..., seconds, firsts] = 1.0 - high, 1.0 - low
    return low_m, high_m


def count_games(table: Table) -> Games:
    m = len(table.players)
    firsts, seconds, outcomes = [], [], []
    upper = np.triu(np.ones((m, m), dtype=bool), k=1)
    for rows in stratum_rows(table.strata):
        ranks, present = table.ranks[rows], table.present[rows]
        both = present[:, :, None] & present[:, None, :] & upper
        if not both.any():
            continue
        wins = ((ranks[:, :, None] > ranks[:, None, :]) & both).sum(axis=0)
        draws = ((ranks[:, :, None] == ranks[:, None, :]) & both).sum(axis=0)
        played = both.sum(axis=0)
        i, j = np.nonzero(played)
        firsts.append(i)
        seconds.append(j)
        outcomes.append(np.stack([wins[i, j], draws[i, j], played[i, j] - wins[i, j] - draws[i, j]], axis=1))
    if not firsts:
        empty = np.zeros(0, dtype=np.int64)
        return Games(empty, empty, np.zeros((0, 3), dtype=np.int64), m)
    return Games(np.concatenate(firsts), np.concatenate(seconds), np.concatenate(outcomes), m)
