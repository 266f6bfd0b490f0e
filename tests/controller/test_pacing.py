"""How often an evaluation's loop runs and what a pass repeats, pure: the pacing that decides what
1,000 evaluations cost the operator while they wait for KubeRay."""

from __future__ import annotations

import asyncio
import copy

import kopf
import pytest

from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.status import Phase, SwarmEvaluationStatus
from swarm_arena.api.validation import ManifestError
from swarm_arena.controller import metrics, reconciler
from swarm_arena.controller.decide import ClusterView, decide
from swarm_arena.controller.handlers.evaluations import _snapshot
from swarm_arena.controller.handlers import evaluations as eval_handlers
from swarm_arena.controller.handlers.lifecycle import MemoryDiffBaseStorage
from swarm_arena.controller.kube import NamespaceTerminating
from swarm_arena.controller.reconciler import DETAIL_INTERVAL_S, WATCHED_WAIT_S, Memory, next_pass_in
from swarm_arena.controller.settings import OperatorSettings
from tests.controller.test_builders import DOC
from tests.controller.test_decide import READY, obs

POLL = 2.0


def wait_for(status=None, cluster=READY, **kw) -> float:
    return next_pass_in(decide(obs(status, cluster=cluster, **kw)), cluster, POLL)


def test_an_evaluation_waiting_on_kuberay_sleeps_until_its_raycluster_changes() -> None:
    # Created just now, or created and not ready: RayCluster events wake the loop (handlers/rayclusters.py).
    assert wait_for(cluster=ClusterView(exists=False)) == WATCHED_WAIT_S
    provisioning = SwarmEvaluationStatus(phase=Phase.PROVISIONING)
    assert wait_for(provisioning, cluster=ClusterView(exists=True, owned=True, ready=False, state=None)) == WATCHED_WAIT_S
    assert WATCHED_WAIT_S > 10 * POLL


def test_a_ready_cluster_whose_dashboard_is_not_up_yet_is_polled() -> None:
    provisioning = SwarmEvaluationStatus(phase=Phase.PROVISIONING)
    assert wait_for(provisioning, reachable=False) == POLL


def test_a_dashboard_that_takes_long_to_answer_is_asked_less_often() -> None:
    provisioning = SwarmEvaluationStatus(phase=Phase.PROVISIONING)
    d = decide(obs(provisioning, reachable=False))
    assert next_pass_in(d, READY, POLL, unreachable_s=0.0) == POLL
    assert next_pass_in(d, READY, POLL, unreachable_s=14.0) == 3.5
    assert next_pass_in(d, READY, POLL, unreachable_s=600.0) == d.requeue_s == 5.0  # never longer than that


def test_a_deadline_wakes_a_waiting_evaluation_in_time() -> None:
    started = SwarmEvaluationStatus(phase=Phase.PROVISIONING, start_time="2026-11-23T11:59:50Z")
    waiting = ClusterView(exists=True, owned=True, ready=False, state=None)
    assert wait_for(started, cluster=waiting, active_deadline_seconds=15) == 5.0  # due at 12:00:05


def test_running_evaluations_are_polled_for_progress_and_finished_ones_rest() -> None:
    n = next_pass_in
    running = decide(obs(SwarmEvaluationStatus(phase=Phase.RUNNING, job_id="sid", attempts=1)))
    assert running.status.phase is Phase.RUNNING and n(running, READY, POLL) == POLL
    done = decide(obs(SwarmEvaluationStatus(phase=Phase.SUCCEEDED)))
    assert n(done, READY, POLL) == 300.0


def test_the_manifest_is_validated_again_only_when_the_spec_changes(monkeypatch) -> None:
    calls = []
    real = reconciler.validate_manifest

    def counting(doc, **kw):
        calls.append(doc["spec"])
        return real(doc, **kw)

    monkeypatch.setattr(reconciler, "validate_manifest", counting)
    memory = Memory()
    doc = copy.deepcopy(DOC)
    first = reconciler._validated(memory, copy.deepcopy(doc))
    assert isinstance(first, SwarmEvaluation)
    assert reconciler._validated(memory, copy.deepcopy(doc)) is first and len(calls) == 1
    doc["spec"]["suspend"] = True
    again = reconciler._validated(memory, copy.deepcopy(doc))
    assert len(calls) == 2 and again.spec.suspend is True


def test_an_invalid_spec_is_remembered_as_its_error_until_it_changes() -> None:
    memory = Memory()
    doc = copy.deepcopy(DOC)
    doc["spec"]["policies"] = []
    bad = reconciler._validated(memory, copy.deepcopy(doc))
    assert isinstance(bad, ManifestError) and any("policies" in p for p in bad.problems)
    assert reconciler._validated(memory, copy.deepcopy(doc)) is bad
    fixed = reconciler._validated(memory, copy.deepcopy(DOC))
    assert isinstance(fixed, SwarmEvaluation)


def test_a_pass_after_deletion_began_touches_nothing() -> None:
    class NoKube:  # any call would fail the test
        def __getattr__(self, name):
            raise AssertionError(f"a pass of an evaluation being deleted called kube.{name}")

    body = copy.deepcopy(DOC)
    body["metadata"].update(namespace="ns", uid="u1", generation=1, deletionTimestamp="2026-11-23T12:00:00Z")
    r = reconciler.Reconciler(OperatorSettings(), NoKube(), None)
    assert asyncio.run(r.reconcile(body, [], Memory())) == 300.0


def test_the_pass_reads_a_lean_copy_of_the_body() -> None:
    raw = copy.deepcopy(DOC)
    raw["metadata"].update(namespace="ns", uid="u1", generation=3, managedFields=[{"manager": "kubectl"}] * 50,
                           annotations={"big": "x" * 10_000})
    raw["status"] = {"phase": "Running", "progress": {"episodesDone": 1}}
    snap = _snapshot(kopf.Body(raw))
    assert snap["metadata"] == {"name": raw["metadata"]["name"], "namespace": "ns", "uid": "u1", "generation": 3}
    assert snap["spec"] == raw["spec"] and snap["status"] == raw["status"]
    snap["status"]["progress"]["episodesDone"] = 2  # a copy: kopf's body is not changed by a pass
    assert raw["status"]["progress"]["episodesDone"] == 1


def test_the_phase_gauge_follows_each_evaluation_once() -> None:
    def gauge(phase: Phase) -> float:
        return metrics.EVALUATIONS.labels(phase=phase.value)._value.get()

    before = {p: gauge(p) for p in Phase}
    metrics.set_phase("g1", Phase.PENDING)
    metrics.set_phase("g2", Phase.PENDING)
    metrics.set_phase("g1", Phase.RUNNING)
    metrics.set_phase("g1", Phase.RUNNING)  # every pass reports; counted once
    assert gauge(Phase.PENDING) - before[Phase.PENDING] == 1 and gauge(Phase.RUNNING) - before[Phase.RUNNING] == 1
    metrics.set_phase("g1", None)
    metrics.set_phase("g2", None)
    metrics.set_phase("g2", None)  # gone twice (the delete handler and a late pass)
    assert {p: gauge(p) for p in Phase} == before


def test_an_evaluation_whose_namespace_is_being_deleted_stops_creating(monkeypatch) -> None:
    monkeypatch.setattr(reconciler.events, "post", lambda *a: None)  # kopf posts them when it runs
    class TerminatingKube:
        def __init__(self) -> None:
            self.creates = 0

        async def create_if_absent(self, obj):
            self.creates += 1
            raise NamespaceTerminating(obj["metadata"]["namespace"])

        async def patch_status(self, namespace, name, status):  # a new evaluation's first status
            pass

    body = copy.deepcopy(DOC)
    body["metadata"].update(namespace="ns", uid="u1", generation=1)
    kube, memory = TerminatingKube(), Memory()
    r = reconciler.Reconciler(OperatorSettings(ray_auth_key=b"k" * 32), kube, None)
    assert asyncio.run(r.reconcile(body, [], memory)) == 300.0 and memory.namespace_terminating
    assert asyncio.run(r.reconcile(body, [], memory)) == 300.0  # its pods' deletions poke it: no retry
    assert kube.creates == 1


def _evaluation_body(**meta) -> dict:
    raw = copy.deepcopy(DOC)
    raw["metadata"].update(
        namespace="ns", uid="u1", generation=3, resourceVersion="7", labels={"team": "a"},
        annotations={"note": "x", "arena.swarm.dev/delete_fn": '{"retries": 1}',
                     "kubectl.kubernetes.io/last-applied-configuration": "{}"},
        managedFields=[{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        ownerReferences=[{"kind": "Application", "name": "argo", "uid": "o1", "apiVersion": "v1"}], **meta,
    )
    raw["status"] = {"phase": "Running"}
    return raw


def test_the_diff_base_is_kopfs_essence_kept_in_memory() -> None:
    raw = _evaluation_body()
    storage = MemoryDiffBaseStorage()
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="arena.swarm.dev", key="last-handled-configuration")
    essence = storage.build(body=kopf.Body(raw))
    assert essence == kopf.AnnotationsProgressStorage(prefix="arena.swarm.dev").clear(essence=kopfs.build(body=kopf.Body(raw)))
    assert essence["spec"] == raw["spec"] and essence["metadata"] == {"labels": {"team": "a"}, "annotations": {"note": "x"}}
    essence["spec"]["policies"].clear()  # a copy
    assert raw["spec"]["policies"]

    assert storage.fetch(body=kopf.Body(raw)) is None  # new to this operator: kopf sees a creation
    patch = kopf.Patch()
    storage.store(body=kopf.Body(raw), patch=patch, essence=storage.build(body=kopf.Body(raw)))
    assert not patch and len(storage) == 1  # no PATCH of the object
    raw["status"] = {"phase": "Succeeded"}
    raw["metadata"]["resourceVersion"] = "8"
    assert storage.fetch(body=kopf.Body(raw)) == storage.build(body=kopf.Body(raw))  # nothing essential
    raw["spec"]["suspend"] = True
    assert storage.fetch(body=kopf.Body(raw)) == {}  # an essential change: kopf sees an update
    raw["metadata"]["deletionTimestamp"] = "2026-11-23T12:00:00Z"
    assert storage.fetch(body=kopf.Body(raw)) is None and len(storage) == 0  # forgotten once deleting
    storage.store(body=kopf.Body(raw), patch=patch, essence=storage.build(body=kopf.Body(raw)))
    assert len(storage) == 0


def test_other_kinds_get_no_diff_base() -> None:
    pod = kopf.Body({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "p1"}, "spec": {"x": 1}})
    storage = MemoryDiffBaseStorage()
    assert storage.build(body=pod) is None and storage.fetch(body=pod) is None


class _Writes:
    def __init__(self) -> None:
        self.patches: list[dict] = []

    async def patch_status(self, ns, name, status) -> None:
        self.patches.append(status)

    async def create_if_absent(self, obj) -> bool:
        return True


def _raycluster(uid: str, **status) -> dict:
    return {"owners": [uid], "state": status.get("state"), "ready": status.get("ready", False),
            "reason": status.get("reason"), "head_ip": None, "created": None}


def test_a_provisioning_evaluation_writes_only_what_changed_meaning_at_once(monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(reconciler.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(reconciler.events, "post", lambda *a: None)  # kopf posts them when it runs
    body = copy.deepcopy(DOC)
    body["metadata"].update(namespace="ns", uid="u1", generation=1)
    kube, memory = _Writes(), Memory()
    # pod-ip: a head with no IP yet is not asked (no dashboard here)
    r = reconciler.Reconciler(OperatorSettings(ray_auth_key=b"k" * 32, dashboard_via="pod-ip"), kube, None)

    def run(*summaries, seen: bool = True) -> float:
        wait = asyncio.run(r.reconcile(body, list(summaries), memory))
        if seen:  # kopf's body has the write's watch event
            body["status"] = copy.deepcopy(memory.written.last_status)
        return wait

    run(seen=False)  # creates the RayCluster: written at once
    assert len(kube.patches) == 1 and kube.patches[0]["phase"] == "Provisioning"
    clock[0] += 1
    # KubeRay's passing reason, before the write's own event reached kopf's body: reworded only
    wait = run(_raycluster("u1", reason="HeadPodNotFound"), seen=False)
    assert len(kube.patches) == 1 and wait == DETAIL_INTERVAL_S - 1
    body["status"] = copy.deepcopy(memory.written.last_status)
    clock[0] += 3
    wait = run(_raycluster("u1", reason="RayClusterPodsProvisioning"))
    assert len(kube.patches) == 1 and wait == DETAIL_INTERVAL_S - 4
    clock[0] += DETAIL_INTERVAL_S  # due: the latest wording goes out
    run(_raycluster("u1", reason="RayClusterPodsProvisioning"))
    assert len(kube.patches) == 2
    ready = [c for c in kube.patches[1]["conditions"] if c["type"] == "ClusterReady"][0]
    assert ready["reason"] == "RayClusterPodsProvisioning"
    clock[0] += 1
    run(_raycluster("u1", state="ready", ready=True))  # a condition turns true: at once
    assert len(kube.patches) == 3
    ready = [c for c in kube.patches[2]["conditions"] if c["type"] == "ClusterReady"][0]
    assert ready["status"] == "True"


def test_pods_wake_only_running_evaluations_and_own_status_writes_wake_none() -> None:
    memo = kopf.Memo(pokes={"uid-a": asyncio.Event(), "uid-b": asyncio.Event()}, running={"uid-b"},
                     uids={("ns", "a"): "uid-a", ("ns", "b"): "uid-b"}, generations={})
    eval_handlers.poke_if_running(memo, "ns", "a")
    eval_handlers.poke_if_running(memo, "ns", "b")
    assert not memo.pokes["uid-a"].is_set() and memo.pokes["uid-b"].is_set()

    def changed(generation: int, type_: str = "MODIFIED") -> bool:
        memo.pokes["uid-a"].clear()
        body = kopf.Body({"metadata": {"name": "a", "namespace": "ns", "generation": generation}})
        asyncio.run(eval_handlers.evaluation_changed(type=type_, namespace="ns", name="a", body=body, memo=memo))
        return memo.pokes["uid-a"].is_set()

    assert changed(1)  # first seen
    assert not changed(1)  # a status write: same generation
    assert changed(2)  # the spec changed (e.g. suspend)
    assert not changed(2, "DELETED") and ("ns", "a") not in memo.generations


def test_a_recreated_evaluation_keeps_its_wake_ups_when_the_old_loop_ends() -> None:
    memo = kopf.Memo(pokes={}, running=set(), uids={}, generations={})
    old = eval_handlers.register(memo, "ns", "a", "uid-old")
    new = eval_handlers.register(memo, "ns", "a", "uid-new")  # re-created before the old loop ended
    memo.running.add("uid-new")
    eval_handlers.unregister(memo, "ns", "a", "uid-old")  # the old loop ends now
    eval_handlers.poke_if_running(memo, "ns", "a")
    assert new.is_set() and not old.is_set()
    eval_handlers.unregister(memo, "ns", "a", "uid-new")
    assert memo.pokes == {} and memo.uids == {} and memo.running == set()


def test_an_evaluation_that_finishes_wakes_again_at_its_ttl() -> None:
    # Its own status write wakes nothing: the pass that finishes it says when the TTL is due.
    from swarm_arena.api.job_channel import JobState
    from swarm_arena.controller import names
    from swarm_arena.controller.decide import JobView
    from tests.controller.test_decide import UID, record

    sid = names.submission_id(UID, 1)
    running = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    job = JobView(sid, True, "SUCCEEDED", record=record(JobState.SUCCEEDED, 4))
    d = decide(obs(running, job=job, ttl_seconds_after_finished=5))
    assert d.status.phase is Phase.SUCCEEDED and next_pass_in(d, READY, POLL) == 5.0
    assert next_pass_in(decide(obs(running, job=job)), READY, POLL) == 300.0  # no TTL: nothing left to do
    late = running.model_copy(update={"start_time": "2026-11-23T11:00:00Z"})
    failed = decide(obs(late, job=JobView(sid, True, "RUNNING", record=record()), ttl_seconds_after_finished=5,
                        active_deadline_seconds=60))
    assert failed.status.phase is Phase.FAILED and next_pass_in(failed, READY, POLL) == 5.0


def test_a_new_evaluations_first_status_comes_before_its_children(monkeypatch) -> None:
    monkeypatch.setattr(reconciler.events, "post", lambda *a: None)  # kopf posts them when it runs

    class Recording:
        def __init__(self) -> None:
            self.calls: list[str] = []

        async def create_if_absent(self, obj):
            self.calls.append(obj["kind"])
            return True

        async def patch_status(self, namespace, name, status):
            self.calls.append(f"status observedGeneration={status.get('observedGeneration')}")

        async def read_configmap(self, namespace, name):
            return None

    body = copy.deepcopy(DOC)
    body["metadata"].update(namespace="ns", uid="u1", generation=1)
    kube = Recording()
    r = reconciler.Reconciler(OperatorSettings(ray_auth_key=b"k" * 32), kube, None)
    asyncio.run(r.reconcile(body, [], Memory()))
    assert kube.calls[:3] == ["status observedGeneration=1", "Secret", "RayCluster"]


@pytest.mark.parametrize("may_delete", [True, False])
def test_a_worker_left_behind_is_deleted_or_named_in_an_event(monkeypatch, may_delete: bool) -> None:
    from swarm_arena.controller.decide import Decision, RestartWorkers

    posted: list[tuple] = []
    monkeypatch.setattr(reconciler.events, "post", lambda *a: posted.append(a))

    class Pods:
        def __init__(self) -> None:
            self.deleted: list[str] = []

        async def delete_pod(self, namespace, name, uid):
            self.deleted.append(name)
            return True

    kube = Pods()
    r = reconciler.Reconciler(OperatorSettings(ray_auth_key=b"k" * 32, delete_pods=may_delete), kube, None)
    evaluation = SwarmEvaluation.model_validate({**DOC, "metadata": {"name": "duel", "namespace": "ns"}})
    decision = Decision(status=SwarmEvaluationStatus(), actions=[RestartWorkers((("duel-cpu-abc", "p1"),))])
    asyncio.run(r._act(evaluation, "u1", decision, Memory(), None))
    if may_delete:
        assert kube.deleted == ["duel-cpu-abc"] and [p[4] for p in posted] == ["RestartingWorker"]
    else:
        assert kube.deleted == []
        [(_, _, _, type_, reason, message)] = posted
        assert (type_, reason) == ("Warning", "WorkerLeftBehind") and "kubectl -n ns delete pod duel-cpu-abc" in message
