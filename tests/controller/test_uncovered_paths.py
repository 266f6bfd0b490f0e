"""Paths of the lifecycle no other test reached (issue 18 §15), pure: observations in, status and actions out."""

from __future__ import annotations

from datetime import timedelta

from swarm_arena.api.job_channel import JobState
from swarm_arena.api.status import Phase, SwarmEvaluationStatus
from swarm_arena.controller import conditions as cond
from swarm_arena.controller import names
from swarm_arena.controller.decide import (
    ClusterView, EnsureCluster, JobView, Observation, Repair, StopJob, Submit, WriteResults, decide,
)
from swarm_arena.controller.losses import Loss
from tests.controller.test_decide import NOW, SPEC, UID, condition, obs, record

SID = names.submission_id(UID, 1)
RUNNING = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=SID, attempts=1, start_time="2026-11-23T11:00:00Z")


def test_a_finished_evaluation_whose_job_is_still_active_stops_it() -> None:
    done = RUNNING.model_copy(update={"phase": Phase.FAILED, "completion_time": "2026-11-23T11:30:00Z"})
    d = decide(obs(done, job=JobView(SID, True, "RUNNING", record=record())))
    assert d.actions == [StopJob(SID)] and d.status.phase is Phase.FAILED and d.event is None


def test_a_job_that_succeeded_without_a_final_record_is_a_failed_run() -> None:
    d = decide(obs(RUNNING, job=JobView(SID, True, "SUCCEEDED", record=record(JobState.RUNNING, 2))))
    assert d.status.phase is Phase.RUNNING and d.status.failures == 1
    assert Submit(2, names.submission_id(UID, 2)) in d.actions and WriteResults(final=False) in d.actions
    assert not any(a == WriteResults(final=True) for a in d.actions)
    none = decide(obs(RUNNING, job=JobView(SID, True, "SUCCEEDED", message="driver exited 0")))
    assert none.status.failures == 1 and "driver exited 0" in cond.get(none.status.conditions, cond.JOB_RUNNING).message


def test_a_job_stopped_by_someone_else_is_a_failed_run_resubmitted() -> None:
    d = decide(obs(RUNNING, job=JobView(SID, True, "STOPPED", message="Job was intentionally stopped."), backoff_limit=1))
    assert d.status.failures == 1 and Submit(2, names.submission_id(UID, 2)) in d.actions
    assert d.event is not None and d.event[1] == "Resubmitting" and "intentionally stopped" in d.event[2]
    again = d.status.model_copy(update={"job_id": names.submission_id(UID, 2)})
    d2 = decide(obs(again, job=JobView(again.job_id, True, "STOPPED"), backoff_limit=1))
    assert d2.status.phase is Phase.FAILED and condition(d2.status, cond.FAILED) == ("True", "BackoffLimitExceeded")


def test_an_existing_cluster_that_does_not_answer() -> None:
    first = Observation(now=NOW, uid=UID, generation=2, spec=SPEC, status=SwarmEvaluationStatus(), cluster=None,
                        dashboard_reachable=False, dashboard_error="connection refused")
    d = decide(first)
    assert d.status.phase is Phase.PROVISIONING and d.actions == [] and d.requeue_s == 5.0
    ready = cond.get(d.status.conditions, cond.CLUSTER_READY)
    assert ready.reason == "Unreachable" and "check spec.cluster.address" in ready.message
    assert "connection refused" in ready.message
    gone = Observation(now=NOW, uid=UID, generation=2, spec=SPEC, status=RUNNING, cluster=None,
                       dashboard_reachable=False, unreachable_since=NOW - timedelta(seconds=60))
    d = decide(gone)
    assert d.status.phase is Phase.RECOVERING and condition(d.status, cond.DEGRADED) == ("True", "HeadUnreachable")


def test_a_raycluster_deleted_mid_run_is_recreated_and_the_evaluation_says_so() -> None:
    d = decide(obs(RUNNING, cluster=ClusterView(exists=False)))
    assert d.actions == [EnsureCluster()] and d.status.phase is Phase.RECOVERING
    assert condition(d.status, cond.DEGRADED) == ("True", "ClusterLost")
    # Back and ready: the job is not there any more, a new attempt resumes from what was counted.
    back = decide(obs(d.status, job=JobView(SID, found=False)))
    assert Submit(2, names.submission_id(UID, 2)) in back.actions and back.status.head_restarts == 1


def test_a_lost_worker_whose_ray_node_is_not_mapped_is_still_repaired() -> None:
    loss = Loss(pod="duel-cpu-x", uid="p1", node="node-1", ip=None, kind="worker", why="deleted")
    o = Observation(now=NOW, uid=UID, generation=2, spec=SPEC, status=RUNNING,
                    cluster=ClusterView(exists=True, owned=True, ready=True, state="ready"), dashboard_reachable=True,
                    job=JobView(SID, True, "RUNNING", record=record()), losses=(loss,))
    d = decide(o)
    assert d.actions == [Repair((), (loss,))]  # no node ids: the job replaces whatever does not answer
    assert d.status.phase is Phase.RECOVERING and condition(d.status, cond.DEGRADED) == ("True", "WorkerLost")
