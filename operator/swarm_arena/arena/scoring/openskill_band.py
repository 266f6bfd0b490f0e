"""OpenSkill (Plackett-Luce): each episode a ranking of the present policies by return.

A Bayesian filter: the rating is the posterior mean mu after the episodes in index order, and
mu +/- z sigma is a band of the filter's approximate posterior, not a confidence interval (it
is not calibrated against resampling, and it depends on episode order as Elo does).
"""

from __future__ import annotations

import numpy as np

from swarm_arena.arena.scoring.outcomes import Table


def model():  # type: ignore[no-untyped-def]
    from openskill.models import PlackettLuce

    return PlackettLuce()


def openskill(table: Table) -> tuple[np.ndarray, np.ndarray]:
    """mu (m,) and sigma (m,) after every episode, in episode order."""
    rater = model()
    current = {p: rater.rating(name=p) for p in table.players}
    for i in range(len(table.returns)):
        columns = np.flatnonzero(table.present[i])
        if len(columns) < 2:
            continue  # nobody to be ranked against
        names = [table.players[j] for j in columns]
        best = table.ranks[i, columns].max()
        ranks = [float(best - table.ranks[i, j]) for j in columns]  # openskill: 0 is the winner
        rated = rater.rate([[current[p]] for p in names], ranks=ranks)
        for name, (rating,) in zip(names, rated):
            current[name] = rating
    mu = np.array([current[p].mu for p in table.players])
    sigma = np.array([current[p].sigma for p in table.players])
    return mu, sigma


def prior() -> tuple[float, float]:
    rating = model().rating()
    return float(rating.mu), float(rating.sigma)
