"""Sequential Elo, kept for people who ask for it: its result depends on the order of episodes.

Within an episode every pair of present policies plays one game and the K of the episode is
shared between a policy's opponents; updates are simultaneous (from the ratings before the
episode). The run is replayed in episode-index order, so the same plan gives the same ratings,
but the same games in another order (policies listed differently in a round robin) do not:
use `bradley-terry` for a leaderboard that is a property of the games alone.

The bootstrap replays resamples (episodes drawn within each pairing, then put back in episode
order) alongside the run itself, vectorised over resamples; the loop runs over episodes.
"""

from __future__ import annotations

import numpy as np

from swarm_arena.arena.scoring.bootstrap import stratum_rows
from swarm_arena.arena.scoring.outcomes import Table

ELO_INITIAL = 1500.0
ELO_K = 32.0
"""Rating points at stake per episode; shared between a policy's opponents in that episode."""
ELO_SCALE = 400.0
_PRECOMPUTE_LIMIT = 8_000_000
"""Episodes x policies^2 up to which the per-episode pair terms are precomputed (float64: 64 MB)."""


class _EloPairs:
    """Per episode: the K-weighted pair mask and each policy's K-weighted score, by row."""

    def __init__(self, table: Table, precompute_limit: int = _PRECOMPUTE_LIMIT) -> None:
        self._table = table
        count = table.present.sum(axis=1)
        self._k_share = np.where(count > 1, ELO_K / np.maximum(count - 1, 1), 0.0)
        n, m = table.present.shape
        self._cached = self._compute(np.arange(n)) if n * m * m <= precompute_limit else None

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


def replay(table: Table, sequences: np.ndarray, precompute_limit: int = _PRECOMPUTE_LIMIT) -> np.ndarray:
    """Run Elo along each row of `sequences` (episode indices, ascending) at once: (B, m) ratings."""
    replicas, length = sequences.shape
    terms = _EloPairs(table, precompute_limit)
    ratings = np.full((replicas, len(table.players)), ELO_INITIAL)
    strength = 10.0 ** (ratings / ELO_SCALE)
    for t in range(length):
        weight, scored = terms(sequences[:, t])
        # expected[b, i, j] = 1 / (1 + 10^((r_j - r_i) / 400)) = q_i / (q_i + q_j)
        expected = strength[:, :, None] / (strength[:, :, None] + strength[:, None, :])
        ratings += scored - (weight * expected).sum(axis=2)
        strength = 10.0 ** (ratings / ELO_SCALE)
    return ratings


def elo(
    table: Table, resamples: int, rng: np.random.Generator, precompute_limit: int = _PRECOMPUTE_LIMIT
) -> tuple[np.ndarray, np.ndarray]:
    """The run's ratings (m,) and the bootstrap's (B, m)."""
    n = len(table.strata)
    sequences = np.empty((1 + resamples, n), dtype=np.int64)
    sequences[0] = np.arange(n)  # row 0: the run itself, replayed with the resamples in one pass
    start = 0
    for rows in stratum_rows(table.strata):
        sequences[1:, start : start + len(rows)] = rows[rng.integers(0, len(rows), size=(resamples, len(rows)))]
        start += len(rows)
    sequences[1:].sort(axis=1)  # a resample is replayed in episode order, like the real run
    replayed = replay(table, sequences, precompute_limit)
    return replayed[0], replayed[1:]
