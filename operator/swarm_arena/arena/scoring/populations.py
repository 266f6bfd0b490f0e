"""Focal and background populations (Melting Pot's protocol, for any PettingZoo environment).

Policies with `role: background` play but are not ranked. For each focal policy, over the
episodes it played beside at least one background policy: its **focal per-capita return** (the
mean per-agent return of its own agents) and the **background per-capita return** of the same
episodes (the background agents' returns summed, over how many background agents there were), so
"how does my policy do among these others, and what does it do to them" is one manifest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.status import PopulationReturns
from swarm_arena.arena.scoring.episode_means import mean_estimates, strata_of

POPULATIONS_STREAM = 4


def population_returns(
    records: Sequence[EpisodeRecord],
    focal: Sequence[str],
    background: Sequence[str],
    *,
    resamples: int,
    seed: int,
    level: float,
) -> list[PopulationReturns]:
    """One entry per focal policy (sorted by name); its estimates None when it never met the background."""
    focal, background_set = sorted(focal), set(background)
    mixed = sorted((r for r in records if background_set & set(r.returns) and set(focal) & set(r.returns)),
                   key=lambda r: r.episode)
    n, k = len(mixed), len(focal)
    values, present = np.zeros((n, 2 * k)), np.zeros((n, 2 * k), dtype=bool)
    for i, record in enumerate(mixed):
        agents = {b: record.agents.get(b, 0) for b in background_set & set(record.returns)}
        total = sum(agents.values())
        bg = sum(record.returns[b] * a for b, a in agents.items()) / total if total else float(
            np.mean([record.returns[b] for b in agents]))
        for j, policy in enumerate(focal):
            if policy in record.returns:
                values[i, j], present[i, j] = record.returns[policy], True
                values[i, k + j], present[i, k + j] = bg, True
    names = [*(f"focal/{p}" for p in focal), *(f"background/{p}" for p in focal)]
    estimates = mean_estimates(names, values, present, strata_of([r.pairing for r in mixed]), resamples, seed,
                               POPULATIONS_STREAM, level)
    return [
        PopulationReturns(policy=p, episodes=int(present[:, j].sum()),
                          focal_per_capita_return=estimates[f"focal/{p}"],
                          background_per_capita_return=estimates[f"background/{p}"])
        for j, p in enumerate(focal)
    ]
