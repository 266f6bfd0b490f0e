"""The reconciler's results path with a recording stand-in for the API server: a finished
evaluation's ConfigMap is checked once and written again when not final; then the run's memory
is dropped."""

from __future__ import annotations

import asyncio
import copy
import json

from swarm_arena.controller import build_results, reconciler
from swarm_arena.controller.reconciler import Memory
from swarm_arena.controller.settings import OperatorSettings
from tests.controller.test_builders import DOC


class _Kube:
    def __init__(self, configmap: dict | None) -> None:
        self.configmap = configmap
        self.applied: list[dict] = []
        self.patches: list[dict] = []
        self.reads = 0

    async def read_configmap(self, ns, name):
        self.reads += 1
        return copy.deepcopy(self.configmap)

    async def apply_configmap(self, obj) -> None:
        self.applied.append(obj)
        self.configmap = obj

    async def patch_status(self, ns, name, status) -> None:
        self.patches.append(status)


def _finished(uid: str) -> dict:
    body = copy.deepcopy(DOC)
    body["metadata"].update(namespace="ns", uid=uid, generation=1)
    body["status"] = {"phase": "Succeeded", "startTime": "2026-12-07T10:00:00Z", "completionTime": "2026-12-07T10:05:00Z",
                      "jobId": "swe-x-1", "attempts": 1, "rayClusterName": "duel",
                      "dashboardURL": "http://duel-head-svc.ns.svc:8265",
                      "progress": {"episodesCompleted": 4, "episodesTotal": 4},
                      "results": {"leaderboard": [], "resultsConfigMap": f"{DOC['metadata']['name']}-results"}}
    return body


def _configmap(uid: str, final: bool) -> dict:
    doc = {"final": final, "results": {"leaderboard": []}, "recoveries": []}
    return {"metadata": {"ownerReferences": [{"kind": "SwarmEvaluation", "uid": uid, "name": DOC["metadata"]["name"]}]},
            "data": {build_results.RESULTS_KEY: json.dumps(doc)}}


def test_a_finished_evaluation_whose_results_are_not_final_gets_them_written_final(monkeypatch) -> None:
    monkeypatch.setattr(reconciler.events, "post", lambda *a: None)
    kube, memory = _Kube(_configmap("u1", final=False)), Memory()
    r = reconciler.Reconciler(OperatorSettings(ray_auth_key=b"k" * 32, dashboard_via="pod-ip"), kube, None)
    asyncio.run(r.reconcile(_finished("u1"), [], memory))
    assert len(kube.applied) == 1 and build_results.is_final(kube.applied[0])
    assert memory.results_final and not memory.counted.episodes
    reads = kube.reads
    asyncio.run(r.reconcile(_finished("u1"), [], memory))
    assert kube.reads == reads and len(kube.applied) == 1  # checked once per operator life


def test_a_finished_evaluation_with_final_results_is_left_alone_and_its_run_forgotten(monkeypatch) -> None:
    monkeypatch.setattr(reconciler.events, "post", lambda *a: None)
    kube, memory = _Kube(_configmap("u1", final=True)), Memory()
    memory.counted.episodes = {0: object(), 1: object()}  # what a run that just ended kept
    memory.ray_nodes = {"10.0.0.1": "n1"}
    r = reconciler.Reconciler(OperatorSettings(ray_auth_key=b"k" * 32, dashboard_via="pod-ip"), kube, None)
    asyncio.run(r.reconcile(_finished("u1"), [], memory))
    assert kube.applied == [] and memory.results_final
    assert memory.counted.episodes == {} and memory.ray_nodes == {}


def test_a_plan_the_operator_cannot_keep_fails_before_anything_runs(monkeypatch) -> None:
    monkeypatch.setattr(reconciler.events, "post", lambda *a: None)
    body = copy.deepcopy(DOC)
    body["metadata"].update(namespace="ns", uid="u1", generation=1)
    body["spec"]["episodes"] = 50_000
    kube, memory = _Kube(None), Memory()
    r = reconciler.Reconciler(OperatorSettings(ray_auth_key=b"k" * 32), kube, None)
    asyncio.run(r.reconcile(body, [], memory))
    (patch,) = kube.patches
    failed = next(c for c in patch["conditions"] if c["type"] == "Failed")
    assert patch["phase"] == "Failed" and failed["reason"] == "InvalidSpec"
    assert failed["message"].startswith("spec.episodes: 50000 planned episodes") and "spec.checkpoint.storageURI" in failed["message"]
    assert kube.applied == []  # no cluster, no job, nothing written but status
