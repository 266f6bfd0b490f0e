"""The Ray pods of every evaluation and the nodes they run on: indexes, and a poke on every change
while the evaluation runs, so a lost worker is repaired at once instead of after Ray's own
node-death detection. The node watch is registered only when the operator may read nodes
(`watch_nodes()`; the chart's `rbac.nodes`): a kopf index it cannot fill would hold every handler."""

from __future__ import annotations

import kopf

from swarm_arena.controller.handlers.evaluations import poke_if_running
from swarm_arena.controller.names import LABEL_EVALUATION
from swarm_arena.controller.reconciler import summarize_pod

POD_SELECTOR = {LABEL_EVALUATION: kopf.PRESENT, "ray.io/node-type": kopf.PRESENT}


@kopf.index("", "v1", "pods", labels=POD_SELECTOR)
async def ray_pods(namespace: str, labels: kopf.Labels, body: kopf.Body, **_) -> dict:
    return {(namespace, labels[LABEL_EVALUATION]): summarize_pod(body)}


@kopf.on.event("", "v1", "pods", labels=POD_SELECTOR)
async def ray_pod_changed(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **_) -> None:
    poke_if_running(memo, namespace, labels[LABEL_EVALUATION])


async def node_ready(name: str, status: kopf.Status, **_) -> dict:
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return {name: conditions.get("Ready") == "True"}


async def node_changed(name: str, type: str, status: kopf.Status, memo: kopf.Memo, ray_pods: kopf.Index, **_) -> None:
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if type != "DELETED" and conditions.get("Ready") == "True":
        return
    for (namespace, evaluation), pods in ray_pods.items():
        if any(p.get("node") == name for p in pods):
            poke_if_running(memo, namespace, evaluation)


def watch_nodes() -> None:
    """Register the node index and watch (cluster-scoped: needs get/list/watch on nodes)."""
    kopf.index("", "v1", "nodes")(node_ready)
    kopf.on.event("", "v1", "nodes")(node_changed)
