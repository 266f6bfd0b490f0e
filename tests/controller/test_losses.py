"""Lost Ray pods from what Kubernetes shows, and the repair decision they lead to (pure)."""

from __future__ import annotations

from swarm_arena.api.status import Phase, SwarmEvaluationStatus
from swarm_arena.controller import conditions as cond
from swarm_arena.controller import names
from swarm_arena.controller.build_job import build_repair_submission
from swarm_arena.controller.decide import JobView, Repair, decide
from swarm_arena.controller.losses import Loss, PodView, find_losses, summarize_pod
from tests.controller.test_builders import UID, evaluation
from tests.controller.test_decide import obs, record


def pod(name: str, node: str = "n1", phase: str = "Running", deleting: bool = False, kind: str = "worker") -> PodView:
    return PodView(name=name, uid=f"uid-{name}", ip=f"10.0.0.{len(name)}", node=node, phase=phase,
                   deleting=deleting, kind=kind)


def test_summary_reads_kuberays_labels() -> None:
    body = {"metadata": {"name": "p", "uid": "u", "labels": {"ray.io/node-type": "head"},
                         "deletionTimestamp": "2026-11-23T00:00:00Z"},
            "spec": {"nodeName": "n1"}, "status": {"podIP": "10.1.2.3", "phase": "Running"}}
    assert PodView(**summarize_pod(body)) == PodView("p", "u", "10.1.2.3", "n1", "Running", True, "head")


def test_deleted_terminating_failed_and_node_losses_are_found() -> None:
    seen = {p.uid: p for p in [pod("a"), pod("b"), pod("c"), pod("d", node="n2"), pod("e", node="n3"), pod("f")]}
    now = [pod("b", deleting=True), pod("c", phase="Failed"), pod("d", node="n2"), pod("e", node="n3"), pod("f")]
    lost = {loss.pod: loss.why for loss in find_losses(seen, now, {"n1": True, "n2": False})}
    assert lost == {"a": "was deleted", "b": "is terminating", "c": "failed", "d": "is on a NotReady node",
                    "e": "lost its node (the Node is gone)"}


def test_a_lost_worker_is_repaired_at_once_naming_pod_and_node() -> None:
    sid = names.submission_id(UID, 1)
    loss = Loss("w-1", "uid-w-1", "node-7", "10.0.0.9", "worker", "was deleted", ray_node_id="abc123")
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    o = obs(status, job=JobView(sid, True, "RUNNING", record=record()))
    d = decide(o.__class__(**{**o.__dict__, "losses": (loss,)}))
    assert d.actions == [Repair(("abc123",), (loss,))]
    assert d.status.phase is Phase.RECOVERING
    degraded = cond.get(d.status.conditions, cond.DEGRADED)
    assert degraded.status == "True" and "w-1" in degraded.message and "node-7" in degraded.message
    assert d.event[0] == "Warning" and "w-1" in d.event[2]
    # while the repair job runs: Recovering, no second repair; then back to Running
    busy = decide(o.__class__(**{**o.__dict__, "status": d.status, "repair": JobView("r", True, "RUNNING")}))
    assert busy.actions == [] and busy.status.phase is Phase.RECOVERING
    done = decide(o.__class__(**{**o.__dict__, "status": busy.status, "repair": JobView("r", True, "SUCCEEDED")}))
    assert done.status.phase is Phase.RUNNING
    assert cond.get(done.status.conditions, cond.DEGRADED).status == "False"


def test_a_lost_head_goes_recovering_without_a_repair() -> None:
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    head = Loss("h", "uid-h", "node-1", "10.0.0.1", "head", "was deleted")
    o = obs(status, reachable=False)
    d = decide(o.__class__(**{**o.__dict__, "losses": (head,)}))
    assert d.status.phase is Phase.RECOVERING and not d.actions
    assert cond.get(d.status.conditions, cond.DEGRADED).reason == "HeadLost"


def test_repair_job_calls_swarm_arena_repair_with_the_lost_node_ids() -> None:
    body = build_repair_submission(evaluation(), "swe-1", "swe-1-repair-a", ("n1", "n2"))
    assert body["entrypoint"] == "swarm-arena repair team-a/duel --json --ray-address auto --node-id n1 --node-id n2"
    assert body["submission_id"] == "swe-1-repair-a" and body["entrypoint_num_cpus"] == 0


def test_workers_older_than_the_new_head_and_unknown_to_its_ray_cluster_are_orphans() -> None:
    from swarm_arena.controller.losses import orphaned_workers

    def view(name, kind, created, ip, phase="Running"):
        return PodView(name=name, uid=f"u-{name}", ip=ip, node="n1", phase=phase, deleting=False, kind=kind,
                       created=created)

    pods = [view("head-new", "head", "2026-11-26T12:05:00Z", "10.0.0.9"),
            view("w-old", "worker", "2026-11-26T12:00:00Z", "10.0.0.2"),          # left behind
            view("w-old-joined", "worker", "2026-11-26T12:00:00Z", "10.0.0.3"),   # rejoined by itself
            view("w-new", "worker", "2026-11-26T12:05:30Z", "10.0.0.4"),          # starting: not an orphan
            view("w-pending", "worker", "2026-11-26T12:00:00Z", None, "Pending")]
    assert [p.name for p in orphaned_workers(pods, {"10.0.0.9", "10.0.0.3"})] == ["w-old"]
    assert orphaned_workers([p for p in pods if p.kind != "head"], set()) == []  # no head yet: nothing to judge
