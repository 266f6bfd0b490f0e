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


def _order_statistic(cum: np.ndarray, k: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The k-th (1-based) smallest value of each weighted row: first position with cum >= k."""
    index = np.minimum((cum < k[:, None]).sum(axis=1), len(values) - 1)
    return values[index]


def _quantile_stats(weights: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and IQM of each row's multiset (`weights` copies of sorted `values`)."""
    cum = np.cumsum(weights, axis=1, dtype=np.int64)
    total = cum[:, -1]
    median = 0.5 * (
        _order_statistic(cum, (total + 1) // 2, values) + _order_statistic(cum, (total + 2) // 2, values)
    )
    cut = (total * 0.25).astype(np.int64)  # as scipy.stats.trim_mean: int(0.25 n) off each end
    low, high = cut[:, None], (total - cut)[:, None]
    kept = np.clip(cum, low, high) - np.clip(cum - weights, low, high)
    iqm = (kept * values).sum(axis=1) / np.maximum(high[:, 0] - low[:, 0], 1)
    return median, iqm


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
        weight = counts @ present
        safe = np.maximum(weight, 1.0)
        out = {"mean": (counts @ values) / safe, "optimality_gap": (counts @ gaps) / safe}
        out["median"] = np.zeros_like(out["mean"])
        out["iqm"] = np.zeros_like(out["mean"])
        for j in range(m if quantiles else 0):
            if len(sorted_rows[j]):
                out["median"][:, j], out["iqm"][:, j] = _quantile_stats(counts[:, sorted_rows[j]], sorted_values[j])
        return out

    observed = {k: v[0] for k, v in statistics(np.ones((1, n), dtype=np.int32)).items()}
    chunks = [statistics(counts.astype(np.float64)) for counts in episode_counts(table.strata, resamples, rng)]
    replicates = {k: np.concatenate([c[k] for c in chunks]) if chunks else np.zeros((0, m)) for k in STATISTICS}
    return ReturnBootstrap(observed, replicates)
