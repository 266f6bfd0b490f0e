"""The stratified bootstrap every interval comes from, and what is read off its replicates.

Episodes are resampled with replacement within their stratum (pairing), as rliable resamples
runs within a task: each pairing keeps its size in every replicate, so a plan that played one
pairing ten times more than another is never re-weighted by chance. Defaults (resamples 1000,
confidence level 0.95) live in `RatingSpec`; the seed is the evaluation's.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import stats

CHUNK_CELLS = 4_000_000
"""Resamples x episodes held in memory at once (int32 counts: 16 MB)."""


def rng_for(seed: int, purpose: int) -> np.random.Generator:
    """An independent stream per use of the seed, so adding one statistic never shifts another."""
    return np.random.default_rng([seed, purpose])


def stratum_rows(strata: np.ndarray) -> list[np.ndarray]:
    """Row indices of each stratum, in stratum order."""
    order = np.argsort(strata, kind="stable")
    bounds = np.flatnonzero(np.diff(strata[order])) + 1
    return np.split(order, bounds) if len(order) else []


def episode_counts(strata: np.ndarray, resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Chunks of (b, N) int32: how often each episode appears in each resample, stratified.

    Concatenated over the chunks, exactly `resamples` rows. Every slot of a stratum draws one of
    its episodes uniformly, all strata in one vectorised draw.
    """
    n = len(strata)
    order = np.argsort(strata, kind="stable")
    _, starts, sizes = np.unique(strata[order], return_index=True, return_counts=True)
    slot_start = np.repeat(starts, sizes)
    slot_size = np.repeat(sizes, sizes)
    chunk = max(1, min(resamples, CHUNK_CELLS // max(n, 1)))
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        offset = (rng.random((b, n), dtype=np.float32) * slot_size).astype(np.int64)
        picks = order[slot_start + np.minimum(offset, slot_size - 1)]  # float32 may round up to the size
        flat = (np.arange(b, dtype=np.int64) * n)[:, None] + picks
        yield np.bincount(flat.reshape(-1), minlength=b * n).astype(np.int32).reshape(b, n)
        done += b


def percentile_interval(replicates: np.ndarray, level: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed percentile interval of the replicates along `axis`."""
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail], axis=axis)
    return low, high


def expanded_level(level: float, episodes: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """The percentile level that gives a bootstrap of a mean its nominal coverage in small samples.

    Hesterberg's expanded percentile interval (2015): the bootstrap's spread is the plug-in
    sd (divides by n, not n - 1) and its quantiles are normal, not Student's t; reading the
    quantiles at z' = sqrt(n_s / (n_s - 1)) t_{df} instead of z undoes both. n_s is the mean
    stratum size of the policy, df its episodes less its strata. Where that is undefined (one
    episode per stratum) the caller uses the prior range.
    """
    episodes = np.asarray(episodes, dtype=np.float64)
    strata = np.maximum(np.asarray(strata, dtype=np.float64), 1.0)
    per_stratum = episodes / strata
    df = np.maximum(episodes - strata, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.sqrt(np.where(per_stratum > 1, per_stratum / (per_stratum - 1), 1.0))
    z = factor * stats.t.ppf(0.5 + level / 2.0, df)
    return np.clip(1.0 - 2.0 * stats.norm.sf(z), level, 0.9999)


def two_sided_p(differences: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """p-value that a difference is zero: its observed value over its bootstrap standard error.

    A Wald test with the bootstrap's sd, per column of (B, P) replicates. Not the share of
    replicates past zero: that cannot go below 1/B, and Holm's correction over the 2,016 pairs of
    64 policies asks for p-values far smaller than 1/1000.
    """
    se = differences.std(axis=0, ddof=1) if differences.shape[0] > 1 else np.zeros(differences.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, np.abs(observed) / se, np.where(observed != 0, np.inf, 0.0))
    return 2.0 * stats.norm.sf(z)


def expanded_p(p_values: np.ndarray, episodes: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """The bootstrap p-value of a mean difference, with the same small-sample expansion as
    `expanded_level`: its normal score is read as a t statistic shrunk by sqrt(n_s / (n_s - 1))."""
    episodes = np.asarray(episodes, dtype=np.float64)
    strata = np.maximum(np.asarray(strata, dtype=np.float64), 1.0)
    per_stratum = episodes / strata
    df = np.maximum(episodes - strata, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.sqrt(np.where(per_stratum > 1, per_stratum / (per_stratum - 1), 1.0))
    z = stats.norm.isf(np.asarray(p_values) / 2.0)
    return np.minimum(1.0, 2.0 * stats.t.sf(z / factor, df))


def holm_reject(p_values: np.ndarray, level: float) -> np.ndarray:
    """Holm's step-down over all pairs: which nulls (no difference) fall at family level 1 - level."""
    alpha = 1.0 - level
    count = len(p_values)
    if count == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.maximum.accumulate(np.minimum(1.0, (count - np.arange(count)) * p_values[order]))
    reject = np.empty(count, dtype=bool)
    reject[order] = adjusted < alpha
    return reject
