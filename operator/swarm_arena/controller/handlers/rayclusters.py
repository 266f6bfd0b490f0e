"""The RayClusters the operator made: an in-memory index, and a poke to the owner on every change."""

from __future__ import annotations

import kopf

from swarm_arena.controller.handlers.evaluations import poke
from swarm_arena.controller.names import LABEL_EVALUATION, LABEL_MANAGED_BY, MANAGED_BY
from swarm_arena.controller.reconciler import summarize_ray_cluster

SELECTOR = {LABEL_MANAGED_BY: MANAGED_BY}


@kopf.index("ray.io", "v1", "rayclusters", labels=SELECTOR)
async def rayclusters(namespace: str, labels: kopf.Labels, body: kopf.Body, **_) -> dict:
    return {(namespace, labels.get(LABEL_EVALUATION, "")): summarize_ray_cluster(dict(body))}


@kopf.on.event("ray.io", "v1", "rayclusters", labels=SELECTOR)
async def raycluster_changed(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **_) -> None:
    poke(memo, namespace, labels.get(LABEL_EVALUATION, ""))
