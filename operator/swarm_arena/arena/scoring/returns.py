"""Aggregates of per-episode returns as rliable computes them, with stratified bootstrap intervals.

Mean, median, interquartile mean (the mean of the middle 50%, `scipy.stats.trim_mean(x, 0.25)`)
and optimality gap (mean of max(target - x, 0)) per policy. One set of resamples serves every
policy: an episode drawn brings all its players' returns, so differences between policies that
share episodes are paired differences. Quantile statistics are read from counts over each
policy's sorted returns (O(resamples x episodes), no per-resample sort).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from swarm_arena.arena.scoring.bootstrap import episode_counts
from swarm_arena.arena.scoring.outcomes import Table

STATISTICS = ("mean", "median", "iqm", "optimality_gap")


@dataclass(frozen=True)
class ReturnBootstrap:
    """Observed statistics (m,) and their replicates (B, m), per statistic name."""

    observed: dict[str, np.ndarray]
    replicates: dict[str, np.ndarray]


class _Prefix:
    """Per row of a (b, n) weights matrix over sorted `values`: prefix counts and sums, searchable.

    Each row's prefix counts are shifted by row x (largest total + 1), so the flattened matrix is
    nondecreasing and one `searchsorted` finds the k-th order statistic of every row at once.
    """

    def __init__(self, weights: np.ndarray, values: np.ndarray) -> None:
        b, n = weights.shape
        self.values, self.n, self.rows = values, n, np.arange(b)
        self.cum = np.cumsum(weights, axis=1, dtype=np.int64)
        self.total = self.cum[:, -1].copy()
        self.offset = self.rows * (int(self.total.max(initial=0)) + 1)
        self.cum += self.offset[:, None]
        self.sums = np.cumsum(weights * values, axis=1)

    def first_reaching(self, k: np.ndarray) -> np.ndarray:
        """Per row, the first column whose prefix count is >= k (the k-th smallest, 1-based)."""
        at = np.searchsorted(self.cum.reshape(-1), k + self.offset, side="left") - self.rows * self.n
        return np.minimum(at, self.n - 1)

    def smallest_sum(self, t: np.ndarray) -> np.ndarray:
        """Per row, the sum of its t smallest values (t >= 0)."""
        at = self.first_reaching(np.maximum(t, 1))
        before = np.where(at > 0, self.cum[self.rows, at - 1] - self.offset, 0)
        below = np.where(at > 0, self.sums[self.rows, at - 1], 0.0)
        return np.where(t > 0, below + (t - before) * self.values[at], 0.0)


def _quantile_stats(weights: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and IQM of each row's multiset (`weights` copies of sorted `values`)."""
    prefix = _Prefix(weights, values)
    total = prefix.total
    median = 0.5 * (values[prefix.first_reaching((total + 1) // 2)] + values[prefix.first_reaching((total + 2) // 2)])
    cut = (total * 0.25).astype(np.int64)  # as scipy.stats.trim_mean: int(0.25 n) off each end
    kept = prefix.smallest_sum(total - cut) - prefix.smallest_sum(cut)
    return median, kept / np.maximum(total - 2 * cut, 1)


def bootstrap_returns(
    table: Table,
    resamples: int,
    rng: np.random.Generator,
    optimality_target: float | None,
    quantiles: bool = True,
) -> ReturnBootstrap:
    """`quantiles=False` leaves median and IQM at 0 (they cost O(resamples x episodes) per policy);
    `resamples=0` gives the observed statistics alone."""
    n, m = table.returns.shape
    present = table.present.astype(np.float64)
    values = table.returns * present
    gaps = np.maximum((optimality_target or 0.0) - table.returns, 0.0) * present
    columns = [np.flatnonzero(table.present[:, j]) for j in range(m)]
    sorted_rows = [rows[np.argsort(table.returns[rows, j], kind="stable")] for j, rows in enumerate(columns)]
    sorted_values = [table.returns[rows, j] for j, rows in enumerate(sorted_rows)]

    def statistics(counts: np.ndarray) -> dict[str, np.ndarray]:
        real = counts.astype(np.float64)
        weight = real @ present
        safe = np.maximum(weight, 1.0)
        out = {"mean": (real @ values) / safe, "optimality_gap": (real @ gaps) / safe}
        out["median"] = np.zeros_like(out["mean"])
        out["iqm"] = np.zeros_like(out["mean"])
        for j in range(m if quantiles else 0):
            if len(sorted_rows[j]):
                out["median"][:, j], out["iqm"][:, j] = _quantile_stats(counts[:, sorted_rows[j]], sorted_values[j])
        return out

    observed = {k: v[0] for k, v in statistics(np.ones((1, n), dtype=np.int32)).items()}
    chunks = [statistics(counts) for counts in episode_counts(table.strata, resamples, rng)]
    replicates = {k: np.concatenate([c[k] for c in chunks]) if chunks else np.zeros((0, m)) for k in STATISTICS}
    return ReturnBootstrap(observed, replicates)
