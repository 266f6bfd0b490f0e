"""Social outcome metrics of one episode (Perolat et al. 2017), from per-agent sums kept while stepping.

The step loop adds three per-agent sums (one `add` call, three vector operations over the agents:
docs/performance.md measures it) and at the episode's end each group of agents (a policy's, a
team's) gets four numbers:

- **efficiency** = Σ_i R_i / T: the group's summed return per step (T: the episode's steps);
- **equality** = 1 − Gini(R) over the group's per-agent returns, Gini = Σ_k (2k − n − 1) x_(k) /
  (n Σ x) over the sorted returns (O(n log n)). Gini is defined for non-negative values: returns are
  shifted by their minimum when any is negative (equality of the shifted returns, which keeps
  differences and measures them against the spread above the worst); all-zero (or all-equal)
  returns are perfectly equal, 1; a single agent is 1;
- **sustainability** = the mean over the group's agents of the mean step (1-based) at which
  that agent got a positive reward; agents that never did are left out, and a group where none
  did has none (reported as null);
- **peace** = the mean over the group's agents of the share of the episode's steps the agent was
  still in `env.agents` (1: nobody left early; Perolat's count of agents not tagged out is
  peace × n).

Each is kept to SOCIAL_SIGNIFICANT_DIGITS (swarm_arena.api.report) significant digits in the episode's record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from swarm_arena.api.report import significant


class SocialTally:
    """Per-agent sums over an episode's steps: positive-reward times and counts, steps in play."""

    def __init__(self, agents: int) -> None:
        self.sums = np.zeros((3, agents), dtype=np.float64)  # rows: Σ t·[r>0], Σ [r>0], steps in play

    def reset(self, state: np.ndarray | None = None) -> None:
        self.sums[:] = 0.0 if state is None else state

    def add(self, step: int, rewards: np.ndarray, alive: np.ndarray) -> None:
        """Step `step` (1-based) gave `rewards`; `alive`: the agents that acted in it."""
        positive = rewards > 0
        self.sums[0] += positive * float(step)
        self.sums[1] += positive
        self.sums[2] += alive

    def state(self) -> np.ndarray:
        return self.sums.copy()


def equality(returns: np.ndarray) -> float:
    """1 − Gini of `returns` (the module docstring's rule for negative and all-zero returns)."""
    x = np.sort(np.asarray(returns, dtype=np.float64))
    n = len(x)
    if n < 2:
        return 1.0
    if x[0] < 0:
        x = x - x[0]
    total = x.sum()
    if total <= 0:
        return 1.0
    ranks = np.arange(1, n + 1, dtype=np.float64)
    gini = float(((2.0 * ranks - n - 1.0) * x).sum() / (n * total))
    return 1.0 - gini


def group_metrics(returns: np.ndarray, sums: np.ndarray, steps: int) -> dict[str, float | None]:
    """The four metrics of one group: its agents' returns and their tally columns."""
    times, counts, in_play = sums
    rewarded = counts > 0
    return {
        "efficiency": significant(float(returns.sum()) / max(steps, 1)),
        "equality": significant(equality(returns)),
        "sustainability": significant(float((times[rewarded] / counts[rewarded]).mean())) if rewarded.any() else None,
        "peace": significant(float(in_play.mean()) / max(steps, 1) if len(in_play) else 1.0),
    }


def episode_social(
    returns: np.ndarray, sums: np.ndarray, steps: int, groups: Mapping[str, Mapping[str, Sequence[int]]]
) -> dict[str, Any]:
    """`groups`: kind (`policies`, `teams`) -> name -> agent indices; the metrics of each group."""
    out: dict[str, Any] = {}
    for kind, members in groups.items():
        out[kind] = {}
        for name, indices in members.items():
            if len(indices):
                index = np.asarray(indices, dtype=np.int64)
                out[kind][name] = group_metrics(returns[index], sums[:, index], steps)
    return out
