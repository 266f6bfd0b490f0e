"""Means of per-episode values with the intervals mean-return gets (focal/background returns, social outcomes).

Each column is one quantity (a policy's focal per-capita return, a team's equality, ...) observed
in some episodes. Its estimate is the mean over those episodes, with Hesterberg's expanded
percentile interval over the bootstrap stratified by pairing (bootstrap.py): one set of resamples
for every column, so quantities of one episode move together. Where the data give no interval
(fewer than two episodes, or one per pairing) the interval is the range of the column's values,
widened to ± 1 when they never vary: never zero-width, as the leaderboard's prior ranges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from swarm_arena.api.status import Estimate
from swarm_arena.arena.scoring.bootstrap import expanded_level, percentile_interval, rng_for
from swarm_arena.arena.scoring.outcomes import Table
from swarm_arena.arena.scoring.returns import bootstrap_returns

DIGITS = 6


def strata_of(pairings: Sequence[Mapping[str, str]]) -> np.ndarray:
    """Stratum numbers of episodes by pairing (team -> policy), numbered in sorted key order."""
    keys = [tuple(sorted(p.items())) for p in pairings]
    numbering = {key: s for s, key in enumerate(sorted(set(keys)))}
    return np.fromiter((numbering[k] for k in keys), dtype=np.int64, count=len(keys))


def mean_estimates(
    names: Sequence[str],
    values: np.ndarray,
    present: np.ndarray,
    strata: np.ndarray,
    resamples: int,
    seed: int,
    stream: int,
    level: float,
) -> dict[str, Estimate | None]:
    """`values`/`present`: (episodes, columns); None for a column observed in no episode."""
    n, m = values.shape
    table = Table(list(names), np.where(present, values, 0.0), present, np.zeros((n, m)), strata)
    boot = bootstrap_returns(table, resamples, rng_for(seed, stream), None, quantiles=False)
    episodes = present.sum(axis=0)
    per_column_strata = np.array([len(np.unique(strata[present[:, j]])) for j in range(m)])
    levels = expanded_level(level, episodes, per_column_strata) if m else np.zeros(0)
    out: dict[str, Estimate | None] = {}
    for j, name in enumerate(names):
        if not episodes[j]:
            out[name] = None
            continue
        point = float(boot.observed["mean"][j])
        column = values[present[:, j], j]
        low, high = percentile_interval(boot.replicates["mean"][:, j], float(levels[j])) if resamples else (point, point)
        flat = 1e-9 * max(1.0, abs(point))  # float noise of resampled sums of a constant is no spread
        if episodes[j] < 2 or episodes[j] <= per_column_strata[j] or not float(high) - float(low) > flat:
            low, high = float(column.min()), float(column.max())
            if not high - low > flat:
                low, high = low - 1.0, high + 1.0
        out[name] = Estimate(value=round(point, DIGITS), low=round(min(float(low), point), DIGITS),
                             high=round(max(float(high), point), DIGITS))
    return out
