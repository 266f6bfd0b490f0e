"""Episode outcomes as arrays: who played, what they returned, how they ranked, in which pairing.

Everything downstream is a pure function of this table. Rows are sorted by episode index and
columns by policy name, so the order in which outcomes arrive, or in which the manifest lists
its policies, never changes a number. The stratum of an episode is its pairing (team -> policy);
bootstraps resample episodes within a stratum, never across.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TIE_RTOL = 1e-9
TIE_ATOL = 1e-12
"""Returns this close are a draw, so float summation order never decides a game."""


@dataclass(frozen=True)
class EpisodeOutcome:
    """What one finished episode tells the ratings."""

    episode: int
    """`Match.index`."""
    returns: dict[str, float]
    """Policy -> mean per-agent return in this episode (only the policies present)."""
    pairing: dict[str, str] | None = None
    """Team -> policy; episodes with the same pairing form one bootstrap stratum. None: the set of
    policies present is the stratum."""


@dataclass(frozen=True)
class Table:
    """Episodes x policies that played (columns sorted by name)."""

    players: list[str]
    returns: np.ndarray  # (N, m) float64, 0 where absent
    present: np.ndarray  # (N, m) bool
    ranks: np.ndarray  # (N, m) float64: dense rank by return within the episode, 0 = worst; -1 absent
    strata: np.ndarray  # (N,) int: stratum index, numbered in sorted order of the pairing keys

    @property
    def episodes(self) -> np.ndarray:
        """(m,) episodes each policy played."""
        return self.present.sum(axis=0)


def dense_ranks(returns: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Per row, 0 for the lowest present return, +1 at every gap larger than the tie tolerance."""
    n, m = returns.shape
    if m == 0:
        return np.zeros((n, 0))
    keyed = np.where(present, returns, np.inf)
    order = np.argsort(keyed, axis=1, kind="stable")
    ordered = np.take_along_axis(keyed, order, axis=1)
    prev, cur = ordered[:, :-1], ordered[:, 1:]
    with np.errstate(invalid="ignore"):
        gap = np.abs(cur - prev) > TIE_ATOL + TIE_RTOL * np.maximum(np.abs(cur), np.abs(prev))
    steps = np.concatenate([np.zeros((n, 1)), gap.astype(np.float64)], axis=1)
    ranks = np.empty((n, m))
    np.put_along_axis(ranks, order, np.cumsum(steps, axis=1), axis=1)
    return np.where(present, ranks, -1.0)


def _check(policies: Sequence[str], ordered: Sequence[EpisodeOutcome]) -> None:
    if len(set(policies)) != len(policies):
        raise ValueError(f"policies must be unique, got {list(policies)}")
    known = set(policies)
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


def build_table(policies: Sequence[str], outcomes: Sequence[EpisodeOutcome]) -> Table:
    ordered = sorted(outcomes, key=lambda o: o.episode)
    _check(policies, ordered)
    players = sorted({p for o in ordered for p in o.returns})
    column = {p: j for j, p in enumerate(players)}
    n, m = len(ordered), len(players)
    returns = np.zeros((n, m))
    present = np.zeros((n, m), dtype=bool)
    keys: list[tuple[tuple[str, str], ...]] = []
    for i, outcome in enumerate(ordered):
        for policy, value in outcome.returns.items():
            returns[i, column[policy]] = value
            present[i, column[policy]] = True
        if outcome.pairing is not None:
            keys.append(tuple(sorted(outcome.pairing.items())))
        else:
            keys.append(tuple(("", p) for p in sorted(outcome.returns)))
    numbering = {key: s for s, key in enumerate(sorted(set(keys)))}
    strata = np.fromiter((numbering[k] for k in keys), dtype=np.int64, count=n)
    return Table(players, returns, present, dense_ranks(returns, present), strata)
