"""The reconciler's results path with a recording stand-in for the API server: a finished
evaluation's ConfigMap is checked once and written again when not final; then the run's memory
is dropped."""

from __future__ import annotations

import asyncio
import copy
import json

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.status import Results
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
        if name != f"{DOC['metadata']['name']}-results":
            return None  # no record shards: these runs are small
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
    memory.run.ray_nodes = {"10.0.0.1": "n1"}
    r = reconciler.Reconciler(OperatorSettings(ray_auth_key=b"k" * 32, dashboard_via="pod-ip"), kube, None)
    asyncio.run(r.reconcile(_finished("u1"), [], memory))
    assert kube.applied == [] and memory.results_final
    assert memory.counted.episodes == {} and memory.run.ray_nodes == {}


class _AnswersEveryName(_Kube):
    """An API server that has a ConfigMap of this evaluation's under every name asked for."""

    async def read_configmap(self, ns, name):
        self.reads += 1
        assert self.reads <= 100, f"still reading ConfigMaps: {name}"  # fail, do not grow without end
        return copy.deepcopy(self.configmap)


def test_reading_the_record_shards_back_asks_for_at_most_max_shards_configmaps(monkeypatch) -> None:
    """The probe for shards written after the results ConfigMap (an operator restart between the
    two) stops at MAX_SHARDS, whatever answers or the results ConfigMap says: unbounded, it read
    the same ConfigMap again and again until the process was killed at 6 GB."""
    from swarm_arena.controller import results_shards

    monkeypatch.setattr(reconciler.events, "post", lambda *a: None)
    configmap = _configmap("u1", final=False)
    doc = json.loads(configmap["data"][build_results.RESULTS_KEY])
    doc[build_results.RECORDS_KEPT_KEY] = {"count": 0, "in": "configMaps", "shards": 10**9}
    configmap["data"][build_results.RESULTS_KEY] = json.dumps(doc)
    kube, memory = _AnswersEveryName(configmap), Memory()
    r = reconciler.Reconciler(OperatorSettings(ray_auth_key=b"k" * 32, dashboard_via="pod-ip"), kube, None)
    asyncio.run(r._load_counted(memory, "ns", DOC["metadata"]["name"], "u1"))
    assert kube.reads == results_shards.MAX_SHARDS and memory.counted.loaded
    assert build_results.shards_named(configmap) == results_shards.MAX_SHARDS


def test_a_plan_the_operator_cannot_keep_fails_before_anything_runs(monkeypatch) -> None:
    monkeypatch.setattr(reconciler.events, "post", lambda *a: None)
    body = copy.deepcopy(DOC)
    body["metadata"].update(namespace="ns", uid="u1", generation=1)
    body["spec"]["episodes"] = 100_000
    body["spec"]["policies"] += [{"name": f"p{i}", "factory": "random"} for i in range(14)]  # 16 in every record
    kube, memory = _Kube(None), Memory()
    r = reconciler.Reconciler(OperatorSettings(ray_auth_key=b"k" * 32), kube, None)
    asyncio.run(r.reconcile(body, [], memory))
    (patch,) = kube.patches
    failed = next(c for c in patch["conditions"] if c["type"] == "Failed")
    assert patch["phase"] == "Failed" and failed["reason"] == "InvalidSpec"
    assert failed["message"].startswith("spec.episodes: 100000 planned episodes") and "spec.checkpoint.storageURI" in failed["message"]
    assert kube.applied == []  # no cluster, no job, nothing written but status


def _full_results(seed: int):
    """Results of 12 policies as the job's final record has them: every row, the pairwise matrix
    with `separated`, the aggregates (some policies clearly apart, so separatedFrom is not empty)."""
    import random

    from swarm_arena.api.status import Results
    from swarm_arena.arena.scoring import EpisodeOutcome, RatingOptions, score

    policies = [f"p{i:02d}" for i in range(12)]
    rng = random.Random(seed)
    outcomes = []
    for a in policies:
        for b in policies:
            for _ in range(4 if a != b else 0):
                returns = {a: float(a < b) + rng.random() / 10, b: float(b < a) + rng.random() / 10}
                outcomes.append(EpisodeOutcome(len(outcomes), returns, {"red": a, "blue": b}))
    board = score("bradley-terry", policies, outcomes, seed=seed, options=RatingOptions(resamples=50))
    results = Results(leaderboard=board.leaderboard, pairwise=board.pairwise, return_aggregates=board.return_aggregates)
    assert any(e.separated_from for e in results.leaderboard)
    return results


def _stored_results(cm: dict) -> dict | None:
    return json.loads(cm["data"][build_results.RESULTS_KEY])["results"]


def test_a_repaired_configmap_never_gets_statuss_top_rows(monkeypatch) -> None:
    """The job's files are gone (no dashboard) and the ConfigMap kept no results: it is written
    final with its records and no results, never with status's ten rows as if they were all."""
    from swarm_arena.controller.decide import status_results

    monkeypatch.setattr(reconciler.events, "post", lambda *a: None)
    body = _finished("u1")
    body["status"]["results"] = status_results(_full_results(1), "duel-results").to_wire()
    assert len(body["status"]["results"]["leaderboard"]) == 10
    cm = _configmap("u1", final=False)
    cm["data"][build_results.RESULTS_KEY] = json.dumps({"final": False, "results": None, "recoveries": []})
    kube, memory = _Kube(cm), Memory()
    r = reconciler.Reconciler(OperatorSettings(ray_auth_key=b"k" * 32, dashboard_via="pod-ip"), kube, None)
    asyncio.run(r.reconcile(body, [], memory))
    (written,) = kube.applied
    assert build_results.is_final(written) and _stored_results(written) is None


def test_after_a_restart_status_and_the_final_configmap_come_from_the_same_full_results(monkeypatch) -> None:
    """Status was written from newer results than the ConfigMap holds (its write failed, or the
    operator stopped before it). The next operator finishes the evaluation (deadline, the cluster
    gone) from what the ConfigMap durably kept: status's top rows and the ConfigMap's every row are
    of one result, separatedFrom included (the ConfigMap keeps it as pairwise.separated)."""
    from swarm_arena.controller.decide import status_results

    monkeypatch.setattr(reconciler.events, "post", lambda *a: None)
    kept, newer = _full_results(1), _full_results(2)
    body = copy.deepcopy(DOC)
    body["metadata"].update(namespace="ns", uid="u1", generation=1)
    body["spec"]["activeDeadlineSeconds"] = 60
    body["status"] = {"phase": "Running", "startTime": "2026-12-07T10:00:00Z", "jobId": "swe-u1-1", "attempts": 1,
                      "observedGeneration": 1, "progress": {"episodesCompleted": 3, "episodesTotal": 4},
                      "results": status_results(newer, "duel-results").to_wire()}
    evaluation = SwarmEvaluation.model_validate({**DOC, "metadata": {"name": "duel", "namespace": "ns"}})
    cm = build_results.build_results_configmap(evaluation, "u1", records=[], progress=None, results=kept,
                                               recoveries=[], final=False)
    kube, memory = _Kube(cm), Memory()  # a new operator: nothing in memory
    r = reconciler.Reconciler(OperatorSettings(ray_auth_key=b"k" * 32, dashboard_via="pod-ip"), kube, None)
    asyncio.run(r.reconcile(body, [], memory))

    (written,) = kube.applied
    assert build_results.is_final(written)
    stored = Results.model_validate(_stored_results(written))
    assert len(stored.leaderboard) == 12 and stored.pairwise is not None
    assert stored.from_configmap().to_wire() == {**kept.to_wire(), "resultsConfigMap": "duel-results"}
    (patch,) = kube.patches
    assert patch["phase"] == "Failed"
    status = {**body["status"]["results"], **patch["results"]}  # a merge patch: what did not change is not in it
    assert status == status_results(kept, "duel-results").to_wire()
    assert status["leaderboard"] == stored.from_configmap().to_wire()["leaderboard"][:10]


class _GrowingFile:
    """A job's episodes file as the dashboard's log API serves it (the last N lines), while the job
    counts on between the status line the operator read and its read of this file."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def count(self, episodes: range) -> None:
        self.lines += [EpisodeRecord(episode=e, pairing={"all": "a"}, returns={"a": 1.0}, agents={"a": 1}, steps=1,
                                     agent_steps=1).model_dump_json(by_alias=True) for e in episodes]

    async def tail_file(self, node_id: str, filename: str, lines: int) -> str:
        return "".join(line + "\n" for line in self.lines[-lines:])


def test_episode_lines_counted_after_the_status_line_are_never_skipped() -> None:
    """The tail the operator asks for is sized by the status line; lines the job counted since
    then sit after it, so a tail of that size started past unread lines, lost for good (found by
    a real-plane run that kept 1,997 of 2,000 records)."""
    import asyncio

    from swarm_arena.controller.dashboard import JobInfo
    from swarm_arena.controller.decide import JobView
    from swarm_arena.controller.reconciler import Memory, Reconciler
    from swarm_arena.controller.settings import OperatorSettings
    from tests.controller.test_decide import record

    file, memory = _GrowingFile(), Memory()
    memory.counted.loaded = True
    reconciler = Reconciler(OperatorSettings(ray_auth_key=b"k" * 32), None, None)  # type: ignore[arg-type]
    info = JobInfo("s-1", "RUNNING", None, "node", {})
    done = 0
    for burst in (10, 50, 5, 400, 3):
        file.count(range(done, done + burst))
        done += burst
        job = JobView("s-1", True, "RUNNING", record=record(done=done))  # the status line says `done`...
        file.count(range(done, done + 20))  # ...and 20 more were counted before the file is read
        asyncio.run(reconciler._sync_episodes(memory, file, job, info))  # type: ignore[arg-type]
        kept = sorted(memory.counted.episodes)
        assert kept == list(range(len(kept))) and len(kept) >= done, (done, kept[:5], len(kept))
        done += 20
    assert memory.counted.unplaced == list(range(len(memory.counted.unplaced)))  # each once, in counting order
