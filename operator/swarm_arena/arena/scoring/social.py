"""Social outcome metrics over a run (Perolat et al. 2017): each episode's, averaged, with intervals.

Every counted episode carries, per policy and per team, efficiency, equality, sustainability and
peace of its agents (arena/social_tally.py computes them where the episode ran). Here each is
averaged over the episodes the group took part in, with the expanded percentile interval of the
bootstrap stratified by pairing (episode_means.py), one set of resamples for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.status import SocialOutcome
from swarm_arena.arena.scoring.episode_means import mean_estimates, strata_of

SOCIAL_STREAM = 5
METRICS = ("efficiency", "equality", "sustainability", "peace")
KINDS = (("policies", "policy"), ("teams", "team"))


def social_outcomes(records: Sequence[EpisodeRecord], *, resamples: int, seed: int, level: float) -> list[SocialOutcome]:
    """Per policy, then per team (each sorted by name); empty when no record carries the metrics."""
    ordered = sorted((r for r in records if r.social is not None), key=lambda r: r.episode)
    groups = sorted({(kind, name) for r in ordered for kind, _ in KINDS for name in getattr(r.social, kind)},
                    key=lambda g: ([k for k, _ in KINDS].index(g[0]), g[1]))
    if not groups:
        return []
    columns = [(kind, name, metric) for kind, name in groups for metric in METRICS]
    values = np.zeros((len(ordered), len(columns)))
    present = np.zeros_like(values, dtype=bool)
    for i, record in enumerate(ordered):
        for j, (kind, name, metric) in enumerate(columns):
            group = getattr(record.social, kind).get(name)
            value = getattr(group, metric) if group is not None else None
            if value is not None:
                values[i, j], present[i, j] = value, True
    names = ["/".join(c) for c in columns]
    estimates = mean_estimates(names, values, present, strata_of([r.pairing for r in ordered]), resamples, seed,
                               SOCIAL_STREAM, level)
    label = dict(KINDS)
    out = []
    for g, (kind, name) in enumerate(groups):
        episodes = int(present[:, g * len(METRICS) + METRICS.index("efficiency")].sum())
        metrics = {m: estimates[f"{kind}/{name}/{m}"] for m in METRICS}
        out.append(SocialOutcome(kind=label[kind], name=name, episodes=episodes, **metrics))
    return out
