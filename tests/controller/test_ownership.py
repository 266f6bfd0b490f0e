"""Whose child an object is: this evaluation's, an earlier one's of the same name, or someone else's (pure)."""

from __future__ import annotations

from swarm_arena.controller.kube import ownership
from swarm_arena.controller.reconciler import cluster_view, summarize_ray_cluster


def _obj(owner_uid: str | None, owner_name: str = "duel", deleting: bool = False) -> dict:
    meta: dict = {"name": "duel-results"}
    if owner_uid:
        meta["ownerReferences"] = [{"kind": "SwarmEvaluation", "name": owner_name, "uid": owner_uid}]
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T11:00:00Z"
    return {"metadata": meta}


def test_ownership() -> None:
    assert ownership(_obj("new"), "new", "duel") == "ours"
    assert ownership(_obj("old"), "new", "duel") == "previous"
    assert ownership(_obj(None, deleting=True), "new", "duel") == "previous"
    assert ownership(_obj("x", owner_name="other"), "new", "duel") == "foreign"
    assert ownership(_obj(None), "new", "duel") == "foreign"


def test_a_ray_cluster_of_an_earlier_evaluation_is_its_previous_life() -> None:
    body = {"metadata": {"ownerReferences": [{"kind": "SwarmEvaluation", "name": "duel", "uid": "old"}]},
            "status": {"state": "ready"}}
    view = cluster_view([summarize_ray_cluster(body)], "new", "duel")
    assert view.exists and not view.owned and view.previous_life
    assert cluster_view([summarize_ray_cluster(body)], "old", "duel").owned
    stray = {"metadata": {"ownerReferences": [{"kind": "Deployment", "name": "x", "uid": "y"}]}, "status": {}}
    assert not cluster_view([summarize_ray_cluster(stray)], "new", "duel").previous_life
    stray["metadata"]["deletionTimestamp"] = "2026-12-07T11:00:00Z"
    assert cluster_view([summarize_ray_cluster(stray)], "new", "duel").previous_life
