"""Which Ray pods of an evaluation were lost, from what Kubernetes shows (pure).

A pod counts as lost when it was seen running and is now deleted, terminating, failed, or on a
node that is NotReady or gone. The operator sees this at once from its watches, seconds before
Ray's own health checks would (~15 s), and maps each lost pod to its Ray node by the pod's IP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PodView:
    name: str
    uid: str
    ip: str | None
    node: str | None
    phase: str | None
    deleting: bool
    kind: str
    """`head` or `worker` (KubeRay's ray.io/node-type)."""
    created: str | None = None
    """metadata.creationTimestamp (RFC 3339)."""

    @property
    def alive(self) -> bool:
        return self.phase == "Running" and not self.deleting


@dataclass(frozen=True)
class Loss:
    pod: str
    uid: str
    node: str | None
    ip: str | None
    kind: str
    why: str
    ray_node_id: str | None = None

    def describe(self) -> str:
        where = f" on node {self.node}" if self.node else ""
        ray = f" (Ray node {self.ray_node_id[:12]})" if self.ray_node_id else ""
        return f"{self.kind} pod {self.pod}{where} {self.why}{ray}"


def summarize_pod(body: Any) -> dict[str, Any]:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    return {
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "ip": status.get("podIP"),
        "node": (body.get("spec") or {}).get("nodeName"),
        "phase": status.get("phase"),
        "deleting": bool(meta.get("deletionTimestamp")),
        "kind": (meta.get("labels") or {}).get("ray.io/node-type", "worker"),
        "created": meta.get("creationTimestamp"),
    }


def orphaned_workers(pods: list[PodView], alive_ray_ips: set[str]) -> list[PodView]:
    """Worker pods left behind by a replaced head: running, older than the current head pod, and
    not a node of its Ray cluster. Without GCS fault tolerance the new head's cluster does not know
    them, and their raylets may never rejoin (KubeRay #1141, #104); a new pod joins at once."""
    heads = [p for p in pods if p.kind == "head" and p.alive and p.created]
    if not heads:
        return []
    head_created = max(p.created for p in heads)  # RFC 3339 UTC strings sort by time
    return [p for p in pods if p.kind != "head" and p.alive and p.ip and p.created and p.created < head_created
            and p.ip not in alive_ray_ips]


def find_losses(seen: dict[str, PodView], current: list[PodView], nodes_ready: dict[str, bool]) -> list[Loss]:
    """Pods in `seen` (uid -> last alive view) that are lost now; `nodes_ready`: node -> Ready."""
    now = {p.uid: p for p in current}
    lost = []
    for uid, before in seen.items():
        after = now.get(uid)
        if after is None:
            why = "was deleted"
        elif after.deleting:
            why = "is terminating"
        elif after.phase == "Failed":
            why = "failed"
        elif before.node and before.node not in nodes_ready:
            why = "lost its node (the Node is gone)"
        elif before.node and not nodes_ready[before.node]:
            why = "is on a NotReady node"
        else:
            continue
        lost.append(Loss(before.name, uid, before.node, before.ip, before.kind, why))
    return lost
