"""Every gate of `decide` and every branch inside it, one row each (pure, table-driven).

A row is an observation and what the pass must decide from it: the phase, the exact actions, the
requeue, the event, the conditions the gate sets and the status fields it changes. The gates run
in order: invalid spec, finished, too large, deadline, suspended, an earlier life's children, a
refused address, the Ray cluster, the dashboard, the job (missing, active, succeeded, failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from swarm_arena.api.job_channel import FailureReason, JobState
from swarm_arena.api.status import (
    Condition, LeaderboardEntry, Phase, Recovery, Results, StoppedEarly, SwarmEvaluationStatus,
)
from swarm_arena.controller import conditions as cond
from swarm_arena.controller import names
from swarm_arena.controller.decide import (
    STOPPING, ClusterView, DeleteCluster, EnsureCluster, JobView, Observation, RejoinView, Repair, RestartWorkers,
    StopJob, Submit, Taken, WriteResults, decide,
)
from swarm_arena.controller.losses import Loss
from tests.controller.test_decide import NOW, READY, SPEC, UID, record

SID1, SID2 = names.submission_id(UID, 1), names.submission_id(UID, 2)
T = "2026-11-23T{}Z".format  # times of day on NOW's date
GONE = ClusterView(exists=False)
UNREADY = ClusterView(exists=True, ready=False, state="provisioning")

RUN = JobView(SID1, True, "RUNNING", record=record(done=2))
STOPPED = JobView(SID1, True, "STOPPED", record=record(done=2))
UNKNOWN = JobView(SID1, found=False)
HEAD = Loss("duel-head-x", "u-head", "node-a", "10.0.0.1", "head", "was deleted")
WORKER = Loss("duel-worker-y", "u-w", "node-b", "10.0.0.2", "worker", "was deleted", ray_node_id="ab" * 28)
WORKER_UNMAPPED = Loss("duel-worker-z", "u-z", None, None, "worker", "failed")
ORPHANS = (("duel-worker-old", "u-old"),)
LEADERS = Results(leaderboard=[
    LeaderboardEntry(policy=p, rating=r, ci_low=0, ci_high=1, mean_return=1, episodes=4) for p, r in (("a", 2), ("b", 1))
])


def status(phase: Phase | None = Phase.RUNNING, **fields: Any) -> SwarmEvaluationStatus:
    """A status as an earlier pass wrote it: by default running attempt 1, accepted, since 11:00."""
    base: dict[str, Any] = {"job_id": SID1, "attempts": 1, "job_accepted": True, "start_time": T("11:00:00")}
    return SwarmEvaluationStatus(phase=phase, **{**base, **fields})


def stopping(**fields: Any) -> SwarmEvaluationStatus:
    """Finished, with a stop sent that Ray has not confirmed."""
    c = Condition(type=cond.JOB_RUNNING, status="Unknown", reason=STOPPING, message="stopping",
                  last_transition_time=T("11:59:00"), observed_generation=2)
    return status(Phase.FAILED, completion_time=T("11:30:00"), conditions=[c], **fields)


def see(st: SwarmEvaluationStatus | None = None, *, cluster: ClusterView | None = READY, reachable: bool = True,
        job: JobView | None = None, spec: dict[str, Any] | None = None, **seen: Any) -> Observation:
    return Observation(now=NOW, uid=UID, generation=2, spec=SPEC.model_copy(update=spec or {}),
                       status=st if st is not None else SwarmEvaluationStatus(), cluster=cluster,
                       dashboard_reachable=reachable, job=job, **seen)


@dataclass(frozen=True)
class Row:
    id: str
    obs: Observation
    phase: Phase | None
    actions: list[Any]
    requeue_s: float | None = None
    event: tuple[str, str] | None = None
    """(type, reason), or None: no event."""
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Type -> (status, reason) the pass leaves (a subset)."""
    fields: dict[str, Any] = field(default_factory=dict)
    """Status fields after the pass (a subset)."""
    message: tuple[str, str] | None = None
    """(condition type, text its message contains)."""


ROWS = [
    # -- the stored object does not validate ------------------------------------------------------
    Row("invalid", Observation(now=NOW, uid=UID, generation=2, spec=None, status=SwarmEvaluationStatus(), cluster=None,
                               dashboard_reachable=True, invalid="spec.policies[0].ref: required"),
        Phase.FAILED, [], event=("Warning", "Failed"),
        conditions={cond.READY: ("False", "InvalidSpec"), cond.FAILED: ("True", "InvalidSpec"),
                    cond.STALLED: ("True", "InvalidSpec"), cond.COMPLETE: ("False", "NotComplete")},
        fields={"completion_time": T("12:00:00"), "observed_generation": 2},
        message=(cond.READY, "spec.policies[0].ref")),
    # -- finished: a stop to confirm, and the TTL -------------------------------------------------
    Row("finished-stop-pending-confirmed", see(stopping(), job=STOPPED), Phase.FAILED, [],
        conditions={cond.JOB_RUNNING: ("False", "Stopped")}),
    Row("finished-stop-pending-cluster-gone", see(stopping(), cluster=GONE), Phase.FAILED, [],
        conditions={cond.JOB_RUNNING: ("False", "Stopped")}),
    Row("finished-stop-pending-job-unknown-to-ray", see(stopping(), job=UNKNOWN), Phase.FAILED, [],
        conditions={cond.JOB_RUNNING: ("False", "Stopped")}),
    Row("finished-stop-pending-still-running", see(stopping(), job=RUN), Phase.FAILED, [StopJob(SID1)], 5.0,
        conditions={cond.JOB_RUNNING: ("Unknown", STOPPING)}),
    Row("finished-stop-pending-dashboard-down", see(stopping(), reachable=False, job=RUN), Phase.FAILED,
        [StopJob(SID1)], 5.0, conditions={cond.JOB_RUNNING: ("Unknown", STOPPING)}),
    Row("finished-stop-pending-other-job-shown", see(stopping(), job=JobView(SID2, True, "STOPPED")), Phase.FAILED,
        [StopJob(SID1)], 5.0),
    Row("finished-job-still-active", see(status(Phase.SUCCEEDED, completion_time=T("11:30:00")), job=RUN),
        Phase.SUCCEEDED, [StopJob(SID1)]),
    Row("finished-job-ended", see(status(Phase.SUCCEEDED, completion_time=T("11:30:00")), job=STOPPED),
        Phase.SUCCEEDED, []),
    Row("finished-ttl-due", see(status(Phase.SUCCEEDED, completion_time=T("11:00:00")),
                                spec={"ttl_seconds_after_finished": 60}),
        Phase.SUCCEEDED, [DeleteCluster("ttlSecondsAfterFinished")],
        conditions={cond.CLUSTER_READY: ("False", "DeletedAfterTTL")}),
    Row("finished-ttl-not-due", see(status(Phase.SUCCEEDED, completion_time=T("11:30:00")),
                                    spec={"ttl_seconds_after_finished": 3600}),
        Phase.SUCCEEDED, [], 1800.0),
    Row("finished-ttl-no-completion-time", see(status(Phase.FAILED), spec={"ttl_seconds_after_finished": 90}),
        Phase.FAILED, [], 90.0),
    Row("finished-ttl-cluster-gone", see(status(Phase.SUCCEEDED, completion_time=T("11:00:00")), cluster=GONE,
                                         spec={"ttl_seconds_after_finished": 60}),
        Phase.SUCCEEDED, []),
    Row("finished-ttl-address-mode", see(status(Phase.SUCCEEDED, completion_time=T("11:00:00")), cluster=None,
                                         spec={"ttl_seconds_after_finished": 60}),
        Phase.SUCCEEDED, []),
    Row("finished-stop-pending-behind-a-distant-ttl-retries-at-the-stop-retry",
        see(stopping(), job=RUN, spec={"ttl_seconds_after_finished": 3600}), Phase.FAILED, [StopJob(SID1)], 5.0,
        conditions={cond.JOB_RUNNING: ("Unknown", STOPPING)}),
    # -- what was counted no longer fits ----------------------------------------------------------
    Row("too-large-job-ended", see(status(), job=STOPPED, too_large="20000 episodes do not fit"), Phase.FAILED,
        [WriteResults(final=True)], event=("Warning", "Failed"),
        conditions={cond.JOB_RUNNING: ("False", "TooManyEpisodes"), cond.FAILED: ("True", "TooManyEpisodes")},
        fields={"progress.episodes_completed": 2}),
    Row("too-large-job-running", see(status(), job=RUN, too_large="20000 episodes do not fit"), Phase.FAILED,
        [StopJob(SID1), WriteResults(final=True)], 5.0, ("Warning", "Failed"),
        conditions={cond.JOB_RUNNING: ("Unknown", STOPPING), cond.READY: ("False", "TooManyEpisodes")}),
    Row("too-large-no-job-seen", see(status(job_id=None), too_large="no room"), Phase.FAILED,
        [WriteResults(final=True)], event=("Warning", "Failed"),
        conditions={cond.JOB_RUNNING: ("False", "TooManyEpisodes")}),
    # -- deadline (run time only) -----------------------------------------------------------------
    Row("deadline-not-due", see(status(), job=RUN, spec={"active_deadline_seconds": 7200}), Phase.RUNNING, [], 3600.0),
    Row("deadline-not-due-suspended-time-excluded",
        see(status(suspended_seconds=600), job=RUN, spec={"active_deadline_seconds": 3600}), Phase.RUNNING, [], 600.0),
    Row("deadline-not-due-while-suspended",
        see(status(Phase.SUSPENDED, job_id=None, suspended_seconds=600, suspended_since=T("11:55:00")), cluster=GONE,
            spec={"active_deadline_seconds": 3600, "suspend": True}),
        Phase.SUSPENDED, [], 900.0, fields={"suspended_since": T("11:55:00"), "suspended_seconds": 600}),
    Row("deadline-due-job-running", see(status(), job=RUN, spec={"active_deadline_seconds": 60}), Phase.FAILED,
        [StopJob(SID1), WriteResults(final=True)], 5.0, ("Warning", "Failed"),
        conditions={cond.JOB_RUNNING: ("Unknown", STOPPING), cond.FAILED: ("True", "DeadlineExceeded")},
        fields={"progress.episodes_completed": 2}),
    Row("deadline-due-job-ended", see(status(), job=STOPPED, spec={"active_deadline_seconds": 60}), Phase.FAILED,
        [WriteResults(final=True)], event=("Warning", "Failed"),
        conditions={cond.JOB_RUNNING: ("False", "DeadlineExceeded"), cond.READY: ("False", "DeadlineExceeded")}),
    Row("deadline-due-ttl-requeues-at-the-stop-retry",
        see(status(), job=RUN, spec={"active_deadline_seconds": 60, "ttl_seconds_after_finished": 600}),
        Phase.FAILED, [StopJob(SID1), WriteResults(final=True)], 5.0, ("Warning", "Failed")),
    Row("deadline-not-started-yet", see(status(None, job_id=None, attempts=None, job_accepted=None, start_time=None),
                                        cluster=GONE, spec={"active_deadline_seconds": 60}),
        Phase.PROVISIONING, [EnsureCluster()], event=("Normal", "Provisioning"), fields={"start_time": T("12:00:00")}),
    # -- suspended ----------------------------------------------------------------------------------
    Row("suspend-job-active", see(status(), job=RUN, spec={"suspend": True}), Phase.SUSPENDED,
        [StopJob(SID1), WriteResults(final=False)], event=("Normal", "Suspended"),
        conditions={cond.JOB_RUNNING: ("False", "Suspending"), cond.READY: ("False", "Suspending")},
        fields={"suspended_since": T("12:00:00"), "job_id": SID1, "progress.episodes_completed": 2}),
    Row("suspend-job-stopped-cluster-up", see(status(Phase.SUSPENDED, suspended_since=T("11:59:00")), job=STOPPED,
                                              spec={"suspend": True}),
        Phase.SUSPENDED, [WriteResults(final=False), DeleteCluster("suspend")],
        conditions={cond.JOB_RUNNING: ("False", "Suspended"), cond.CLUSTER_READY: ("False", "Suspended"),
                    cond.READY: ("False", "Suspended")},
        fields={"job_id": None, "job_accepted": None, "suspended_since": T("11:59:00")}),
    Row("suspend-job-stopped-address-mode", see(status(Phase.SUSPENDED), cluster=None, job=STOPPED,
                                                spec={"suspend": True}),
        Phase.SUSPENDED, [WriteResults(final=False)], fields={"job_id": None, "suspended_since": T("12:00:00")}),
    Row("suspend-job-unknown-to-ray", see(status(Phase.SUSPENDED, job_accepted=False), job=UNKNOWN,
                                          spec={"suspend": True}),
        Phase.SUSPENDED, [DeleteCluster("suspend")], fields={"job_id": SID1, "job_accepted": False}),
    Row("suspend-torn-down", see(status(Phase.SUSPENDED, job_id=None, suspended_since=T("11:00:00")), cluster=GONE,
                                 spec={"suspend": True}),
        Phase.SUSPENDED, [], fields={"suspended_since": T("11:00:00")}),
    Row("suspend-created-suspended", see(cluster=GONE, spec={"suspend": True}), Phase.SUSPENDED, [],
        event=("Normal", "Suspended"), fields={"start_time": None, "suspended_since": None}),
    Row("resumed-counts-the-pause", see(status(Phase.SUSPENDED, job_id=None, suspended_seconds=60,
                                               suspended_since=T("11:50:00")), cluster=GONE),
        Phase.PROVISIONING, [EnsureCluster()], event=("Normal", "Provisioning"),
        fields={"suspended_seconds": 660, "suspended_since": None, "start_time": T("11:00:00")}),
    Row("resumed-pause-from-the-future-counts-zero",
        see(status(Phase.SUSPENDED, job_id=None, suspended_since=T("12:05:00")), cluster=GONE),
        Phase.PROVISIONING, [EnsureCluster()], event=("Normal", "Provisioning"),
        fields={"suspended_seconds": 0, "suspended_since": None}),
    # -- children of an earlier evaluation of this name -------------------------------------------
    Row("old-child-waited-for", see(taken=Taken("ConfigMap duel-results", previous_life=True)), Phase.PROVISIONING, [],
        2.0, ("Normal", "Provisioning"), conditions={cond.CLUSTER_READY: ("False", "WaitingForOldCluster"),
                                                      cond.READY: ("False", "WaitingForOldCluster")},
        message=(cond.CLUSTER_READY, "ConfigMap duel-results of an earlier evaluation")),
    Row("old-cluster-waited-for-while-running",
        see(status(), cluster=ClusterView(exists=True, owned=False, previous_life=True), job=RUN),
        Phase.RUNNING, [], 2.0, conditions={cond.CLUSTER_READY: ("False", "WaitingForOldCluster")},
        message=(cond.CLUSTER_READY, "the RayCluster of an earlier evaluation")),
    Row("someone-elses-child", see(taken=Taken("Secret duel-token", previous_life=False)), Phase.FAILED, [],
        event=("Warning", "Failed"),
        conditions={cond.CLUSTER_READY: ("False", "NameConflict"), cond.FAILED: ("True", "ClusterConflict")},
        message=(cond.READY, "Secret duel-token already exists")),
    # -- an existing cluster the admin did not approve --------------------------------------------
    Row("address-refused-new", see(cluster=None, address_refused=("AddressNotAllowed", "not approved")),
        Phase.PENDING, [], 30.0, ("Normal", "Pending"),
        conditions={cond.CLUSTER_READY: ("False", "AddressNotAllowed"), cond.READY: ("False", "AddressNotAllowed")}),
    Row("address-refused-pending", see(status(Phase.PENDING), cluster=None, address_refused=("NoToken", "no token")),
        Phase.PENDING, [], 30.0, conditions={cond.READY: ("False", "NoToken")}),
    Row("address-refused-running", see(status(), cluster=None, job=RUN, address_refused=("AddressNotAllowed", "no")),
        Phase.RUNNING, [], 30.0,
        conditions={cond.CLUSTER_READY: ("False", "AddressNotAllowed"), cond.READY: ("False", "AddressNotAllowed")}),
    Row("address-refused-with-a-deadline-due-sooner-wakes-at-the-deadline",
        see(status(), cluster=None, job=RUN, address_refused=("AddressNotAllowed", "no"),
            spec={"active_deadline_seconds": 3610}),
        Phase.RUNNING, [], 10.0, conditions={cond.READY: ("False", "AddressNotAllowed")}),
    # -- the Ray cluster --------------------------------------------------------------------------
    Row("cluster-created", see(cluster=GONE), Phase.PROVISIONING, [EnsureCluster()], event=("Normal", "Provisioning"),
        conditions={cond.CLUSTER_READY: ("False", "Creating")}, fields={"start_time": T("12:00:00")}),
    Row("cluster-created-after-resume", see(status(Phase.SUSPENDED, job_id=None), cluster=GONE), Phase.PROVISIONING,
        [EnsureCluster()], event=("Normal", "Provisioning")),
    Row("cluster-deleted-while-running", see(status(), cluster=GONE, job=RUN), Phase.RECOVERING, [EnsureCluster()],
        event=("Warning", "Recovering"),
        conditions={cond.JOB_RUNNING: ("Unknown", "ClusterLost"), cond.DEGRADED: ("True", "ClusterLost"),
                    cond.READY: ("False", "ClusterLost")}),
    Row("cluster-deleted-while-recovering", see(status(Phase.RECOVERING), cluster=GONE), Phase.RECOVERING,
        [EnsureCluster()], conditions={cond.DEGRADED: ("True", "ClusterLost")}),
    Row("cluster-not-ours", see(cluster=ClusterView(exists=True, owned=False)), Phase.FAILED, [],
        event=("Warning", "Failed"),
        conditions={cond.CLUSTER_READY: ("False", "NameConflict"), cond.FAILED: ("True", "ClusterConflict")}),
    Row("cluster-not-ready-no-job", see(status(Phase.PENDING, job_id=None), cluster=UNREADY), Phase.PROVISIONING, [],
        event=("Normal", "Provisioning"), conditions={cond.CLUSTER_READY: ("False", "Provisioning")},
        message=(cond.CLUSTER_READY, "RayCluster state provisioning")),
    Row("cluster-not-ready-reason-kept", see(cluster=ClusterView(exists=True, ready=False, reason="HeadPodPending")),
        Phase.PROVISIONING, [], event=("Normal", "Provisioning"),
        conditions={cond.CLUSTER_READY: ("False", "HeadPodPending")},
        message=(cond.CLUSTER_READY, "RayCluster state unknown")),
    Row("cluster-not-ready-job-running-goes-on", see(status(), cluster=UNREADY, job=RUN), Phase.RUNNING, [],
        conditions={cond.CLUSTER_READY: ("False", "Provisioning"), cond.JOB_RUNNING: ("True", "Running")}),
    Row("cluster-ready", see(status(Phase.PROVISIONING, job_id=None)), Phase.PROVISIONING, [Submit(2, SID2)],
        conditions={cond.CLUSTER_READY: ("True", "Ready"), cond.JOB_RUNNING: ("Unknown", "Submitting")}),
    # -- the dashboard ----------------------------------------------------------------------------
    Row("dashboard-down-new", see(reachable=False, dashboard_error="connection refused"), Phase.PROVISIONING, [], 5.0,
        ("Normal", "Provisioning"), conditions={cond.READY: ("False", "WaitingForDashboard")},
        message=(cond.READY, "connection refused")),
    Row("dashboard-down-provisioning", see(status(Phase.PROVISIONING, job_id=None), reachable=False),
        Phase.PROVISIONING, [], 5.0, conditions={cond.READY: ("False", "WaitingForDashboard")},
        message=(cond.READY, "does not answer: unreachable")),
    Row("dashboard-down-address-mode", see(cluster=None, reachable=False), Phase.PROVISIONING, [], 5.0,
        ("Normal", "Provisioning"), conditions={cond.CLUSTER_READY: ("False", "Unreachable")},
        message=(cond.CLUSTER_READY, "check spec.cluster.address")),
    Row("dashboard-down-head-lost", see(status(), reachable=False, losses=(HEAD,)), Phase.RECOVERING, [], 5.0,
        ("Warning", "Recovering"),
        conditions={cond.JOB_RUNNING: ("Unknown", "HeadLost"), cond.DEGRADED: ("True", "HeadLost"),
                    cond.READY: ("False", "HeadLost")}),
    Row("dashboard-down-head-lost-recovering", see(status(Phase.RECOVERING), reachable=False, losses=(HEAD,)),
        Phase.RECOVERING, [], 5.0, conditions={cond.DEGRADED: ("True", "HeadLost")}),
    Row("dashboard-down-worker-lost-running", see(status(), reachable=False, losses=(WORKER,)), Phase.RUNNING, [], 5.0),
    Row("dashboard-down-past-grace", see(status(), reachable=False, unreachable_since=NOW - timedelta(seconds=30)),
        Phase.RECOVERING, [], 5.0, ("Warning", "Recovering"),
        conditions={cond.JOB_RUNNING: ("Unknown", "HeadUnreachable"), cond.DEGRADED: ("True", "HeadUnreachable")}),
    Row("dashboard-down-within-grace", see(status(), reachable=False, unreachable_since=NOW - timedelta(seconds=29)),
        Phase.RUNNING, [], 5.0),
    Row("dashboard-down-since-unknown", see(status(), reachable=False), Phase.RUNNING, [], 5.0),
    Row("dashboard-down-recovering-past-grace",
        see(status(Phase.RECOVERING), reachable=False, unreachable_since=NOW - timedelta(seconds=300)),
        Phase.RECOVERING, [], 5.0),
    Row("dashboard-down-keeps-an-earlier-requeue", see(status(), reachable=False,
                                                       spec={"active_deadline_seconds": 3602}),
        Phase.RUNNING, [], 2.0),
    Row("dashboard-down-caps-a-later-requeue", see(status(), reachable=False, spec={"active_deadline_seconds": 7200}),
        Phase.RUNNING, [], 5.0),
    Row("dashboard-up-address-mode", see(status(), cluster=None, job=RUN), Phase.RUNNING, [],
        conditions={cond.CLUSTER_READY: ("True", "Reachable"), cond.JOB_RUNNING: ("True", "Running")}),
    # -- the job: none yet, or not shown by Ray ---------------------------------------------------
    Row("job-first-submission", see(status(Phase.PROVISIONING, job_id=None, attempts=None)), Phase.PROVISIONING,
        [Submit(1, SID1)], conditions={cond.JOB_RUNNING: ("Unknown", "Submitting")},
        fields={"job_id": SID1, "job_accepted": False, "attempts": 1}),
    Row("job-first-submission-new", see(), Phase.PROVISIONING, [Submit(1, SID1)], event=("Normal", "Provisioning"),
        conditions={cond.READY: ("False", "Submitting")}),
    Row("job-recorded-not-asked-about-waits-never-a-second-attempt", see(status(Phase.PROVISIONING)),
        Phase.PROVISIONING, [], 2.0, fields={"attempts": 1, "job_id": SID1}),
    Row("job-resubmission-from-running-keeps-the-phase", see(status(job_id=None)), Phase.RUNNING, [Submit(2, SID2)],
        conditions={cond.JOB_RUNNING: ("Unknown", "Submitting")}),
    Row("job-recorded-never-sent", see(status(Phase.PROVISIONING, job_accepted=False), job=UNKNOWN),
        Phase.PROVISIONING, [Submit(1, SID1)], conditions={cond.JOB_RUNNING: ("Unknown", "Submitting")},
        fields={"attempts": 1, "job_accepted": False}),
    Row("job-recorded-never-sent-from-running", see(status(job_accepted=False), job=UNKNOWN), Phase.RUNNING,
        [Submit(1, SID1)], fields={"head_restarts": None}),
    Row("job-recorded-never-sent-no-attempts", see(status(Phase.PROVISIONING, attempts=None, job_accepted=False),
                                                   job=UNKNOWN),
        Phase.PROVISIONING, [Submit(1, SID1)]),
    Row("job-vanished-with-the-head", see(status(), job=UNKNOWN), Phase.RUNNING, [Submit(2, SID2)],
        conditions={cond.DEGRADED: ("True", "HeadLost"), cond.JOB_RUNNING: ("Unknown", "HeadLost")},
        fields={"head_restarts": 1, "attempts": 2, "job_id": SID2, "job_accepted": False, "failures": None}),
    Row("job-vanished-status-before-job-accepted", see(status(Phase.RECOVERING, job_accepted=None, head_restarts=2),
                                                       job=UNKNOWN),
        Phase.RECOVERING, [Submit(2, SID2)], fields={"head_restarts": 3}),
    Row("job-vanished-orphans-restarted",
        see(status(), job=UNKNOWN, rejoin=RejoinView(joined=0, wanted=2, orphans=ORPHANS, waited_s=1.0)),
        Phase.RECOVERING, [RestartWorkers(ORPHANS)], 2.0, ("Warning", "Recovering"),
        conditions={cond.DEGRADED: ("True", "HeadLost"), cond.READY: ("False", "WaitingForWorkers")},
        fields={"head_restarts": None, "job_id": SID1}, message=(cond.READY, "duel-worker-old")),
    Row("job-vanished-waiting-for-workers",
        see(status(Phase.RECOVERING), job=UNKNOWN, rejoin=RejoinView(joined=1, wanted=2, orphans=(), waited_s=10.0)),
        Phase.RECOVERING, [], 2.0, conditions={cond.READY: ("False", "WaitingForWorkers")},
        message=(cond.READY, "1 of 2 worker(s) joined")),
    Row("job-vanished-workers-joined",
        see(status(), job=UNKNOWN, rejoin=RejoinView(joined=2, wanted=2, orphans=(), waited_s=10.0)),
        Phase.RUNNING, [Submit(2, SID2)], fields={"head_restarts": 1}),
    Row("job-vanished-rejoin-timed-out",
        see(status(), job=UNKNOWN, rejoin=RejoinView(joined=0, wanted=2, orphans=ORPHANS, waited_s=180.0)),
        Phase.RUNNING, [Submit(2, SID2)], fields={"head_restarts": 1}),
    # -- the job: active --------------------------------------------------------------------------
    Row("job-running", see(status(Phase.PROVISIONING, job_accepted=False), job=RUN), Phase.RUNNING, [],
        event=("Normal", "Running"),
        conditions={cond.JOB_RUNNING: ("True", "Running"), cond.DEGRADED: ("False", "Healthy"),
                    cond.READY: ("False", "Running")},
        fields={"job_accepted": True, "progress.episodes_completed": 2, "recoveries": 0},
        message=(cond.READY, "2/4 episodes")),
    Row("job-running-without-a-record", see(status(Phase.PROVISIONING), job=JobView(SID1, True, "PENDING")),
        Phase.RUNNING, [], event=("Normal", "Running"), message=(cond.READY, f"job {SID1} running")),
    Row("job-running-record-with-a-recovery",
        see(status(), job=JobView(SID1, True, "RUNNING", record=record().model_copy(update={
            "recoveries": 1, "last_recovery": Recovery(time=T("11:58:00"), reason="NodeLost", seconds=4.0)}))),
        Phase.RUNNING, [], fields={"recoveries": 1, "last_recovery.reason": "NodeLost"}),
    Row("job-running-record-with-results", see(status(results=Results(results_config_map="duel-results")),
                                               job=JobView(SID1, True, "RUNNING", record=record().model_copy(
                                                   update={"results": LEADERS}))),
        Phase.RUNNING, [], fields={"results.results_config_map": "duel-results", "results.leaderboard[0].policy": "a"}),
    Row("job-running-head-lost", see(status(), job=RUN, losses=(HEAD,)), Phase.RECOVERING, [],
        event=("Warning", "Recovering"),
        conditions={cond.JOB_RUNNING: ("True", "Running"), cond.DEGRADED: ("True", "HeadLost"),
                    cond.READY: ("False", "HeadLost")}),
    Row("job-running-head-and-worker-lost", see(status(), job=RUN, losses=(WORKER, HEAD)), Phase.RECOVERING, [],
        event=("Warning", "Recovering"), conditions={cond.DEGRADED: ("True", "HeadLost")}),
    Row("job-running-worker-lost", see(status(), job=RUN, losses=(WORKER,)), Phase.RECOVERING,
        [Repair((WORKER.ray_node_id,), (WORKER,))], event=("Warning", "Recovering"),
        conditions={cond.DEGRADED: ("True", "WorkerLost"), cond.READY: ("False", "WorkerLost")}),
    Row("job-running-worker-lost-unmapped", see(status(), job=RUN, losses=(WORKER_UNMAPPED, WORKER)),
        Phase.RECOVERING, [Repair((WORKER.ray_node_id,), (WORKER_UNMAPPED, WORKER))], event=("Warning", "Recovering")),
    Row("job-running-worker-lost-repair-in-flight",
        see(status(Phase.RECOVERING), job=RUN, losses=(WORKER,), repair=JobView("repair-1", True, "RUNNING")),
        Phase.RECOVERING, [], conditions={cond.READY: ("False", "Repairing")}),
    Row("job-running-repairing", see(status(Phase.RECOVERING, conditions=[Condition(
        type=cond.DEGRADED, status="True", reason="WorkerLost", message="worker pod w was deleted",
        last_transition_time=T("11:59:00"), observed_generation=2)]),
        job=RUN, repair=JobView("repair-1", True, "PENDING")),
        Phase.RECOVERING, [], conditions={cond.READY: ("False", "Repairing"), cond.DEGRADED: ("True", "WorkerLost")},
        message=(cond.READY, "worker pod w was deleted")),
    Row("job-running-repairing-no-degraded-condition",
        see(status(Phase.RECOVERING), job=RUN, repair=JobView("repair-1", True, "RUNNING")),
        Phase.RECOVERING, [], message=(cond.READY, "repairing")),
    Row("job-running-repair-done", see(status(Phase.RECOVERING), job=RUN, repair=JobView("repair-1", True, "SUCCEEDED")),
        Phase.RUNNING, [], event=("Normal", "Running"), conditions={cond.DEGRADED: ("False", "Healthy")}),
    Row("job-running-repair-unknown", see(status(Phase.RECOVERING), job=RUN, repair=JobView("repair-1", False)),
        Phase.RUNNING, [], event=("Normal", "Running")),
    # -- the job: succeeded -----------------------------------------------------------------------
    Row("job-succeeded", see(status(), job=JobView(SID1, True, "SUCCEEDED", record=record(
        JobState.SUCCEEDED, 4, results=LEADERS))),
        Phase.SUCCEEDED, [WriteResults(final=True)], event=("Normal", "Succeeded"),
        conditions={cond.JOB_RUNNING: ("False", "Succeeded"), cond.DEGRADED: ("False", "Healthy"),
                    cond.READY: ("True", "Succeeded"), cond.COMPLETE: ("True", "Succeeded")},
        fields={"completion_time": T("12:00:00")}, message=(cond.READY, "all episodes counted; leader a")),
    Row("job-succeeded-no-leaderboard", see(status(), job=JobView(SID1, True, "SUCCEEDED", record=record(
        JobState.SUCCEEDED, 4))),
        Phase.SUCCEEDED, [WriteResults(final=True)], event=("Normal", "Succeeded"), message=(cond.READY, "leader ?")),
    Row("job-succeeded-stopped-early", see(status(), job=JobView(SID1, True, "SUCCEEDED", record=record(
        JobState.SUCCEEDED, 4, results=LEADERS.model_copy(update={"stopped_early": StoppedEarly(
            reason="LeaderboardSeparated", message="separated", decided_at=24, episodes_planned=36,
            episodes_saved=12)})))),
        Phase.SUCCEEDED, [WriteResults(final=True)], event=("Normal", "Succeeded"),
        conditions={cond.STOPPED_EARLY: ("True", "LeaderboardSeparated")},
        message=(cond.READY, "stopped early (LeaderboardSeparated): 12 of 36 episodes saved; leader a")),
    Row("job-succeeded-ttl-requeues", see(status(), job=JobView(SID1, True, "SUCCEEDED", record=record(
        JobState.SUCCEEDED, 4)), spec={"ttl_seconds_after_finished": 120}),
        Phase.SUCCEEDED, [WriteResults(final=True)], 120.0, ("Normal", "Succeeded")),
    Row("job-succeeded-ttl-cluster-gone-no-requeue", see(status(), cluster=None, job=JobView(
        SID1, True, "SUCCEEDED", record=record(JobState.SUCCEEDED, 4)), spec={"ttl_seconds_after_finished": 120}),
        Phase.SUCCEEDED, [WriteResults(final=True)], event=("Normal", "Succeeded")),
    Row("job-succeeded-ttl-shorter-than-deadline", see(status(), job=JobView(SID1, True, "SUCCEEDED", record=record(
        JobState.SUCCEEDED, 4)), spec={"ttl_seconds_after_finished": 120, "active_deadline_seconds": 7200}),
        Phase.SUCCEEDED, [WriteResults(final=True)], 120.0, ("Normal", "Succeeded")),
    # -- the job: failed --------------------------------------------------------------------------
    Row("job-failed-resubmitted", see(status(), job=JobView(SID1, True, "FAILED", message="driver died",
                                                            record=record(JobState.FAILED, 1, message="boom"))),
        Phase.RUNNING, [WriteResults(final=False), Submit(2, SID2)], event=("Warning", "Resubmitting"),
        conditions={cond.JOB_RUNNING: ("Unknown", "Resubmitting")},
        fields={"failures": 1, "attempts": 2, "job_id": SID2, "head_restarts": None},
        message=(cond.JOB_RUNNING, "run 1 of at most 3 failed (boom)")),
    Row("job-failed-message-from-ray", see(status(Phase.PROVISIONING), job=JobView(
        SID1, True, "FAILED", message="driver died", record=record(JobState.FAILED, 1))),
        Phase.PROVISIONING, [WriteResults(final=False), Submit(2, SID2)], event=("Warning", "Resubmitting"),
        conditions={cond.READY: ("False", "Resubmitting")}, message=(cond.JOB_RUNNING, "(driver died)")),
    Row("job-failed-no-message", see(status(failures=1), job=JobView(SID1, True, "STOPPED")), Phase.RUNNING,
        [WriteResults(final=False), Submit(2, SID2)], event=("Warning", "Resubmitting"),
        fields={"failures": 2}, message=(cond.JOB_RUNNING, "run 2 of at most 3 failed (job STOPPED)")),
    Row("job-succeeded-without-a-final-record", see(status(), job=JobView(
        SID1, True, "SUCCEEDED", record=record(JobState.FAILED, 1))),
        Phase.RUNNING, [WriteResults(final=False), Submit(2, SID2)], event=("Warning", "Resubmitting")),
    Row("job-failed-backoff-limit", see(status(failures=2), job=JobView(SID1, True, "FAILED", record=record(
        JobState.FAILED, 1, message="boom"))),
        Phase.FAILED, [WriteResults(final=True)], event=("Warning", "Failed"),
        conditions={cond.JOB_RUNNING: ("False", "JobFailed"), cond.FAILED: ("True", "BackoffLimitExceeded")},
        fields={"failures": 3, "attempts": 1}, message=(cond.READY, "3 failed runs, more than spec.backoffLimit (2)")),
    Row("job-failed-invalid-spec", see(status(), job=JobView(SID1, True, "FAILED", record=record(
        JobState.FAILED, 0, FailureReason.INVALID_SPEC, "spec.environment.factory: no module"))),
        Phase.FAILED, [], event=("Warning", "Failed"),
        conditions={cond.JOB_RUNNING: ("False", "JobFailed"), cond.FAILED: ("True", "InvalidSpec")},
        fields={"failures": None}, message=(cond.READY, "spec.environment.factory")),
]


def _field(st: SwarmEvaluationStatus, path: str) -> Any:
    value: Any = st
    for part in path.split("."):
        name, _, index = part.partition("[")
        value = getattr(value, name)
        if index:
            value = value[int(index.rstrip("]"))]
    return value


def test_the_rows_name_distinct_cases() -> None:
    assert len({row.id for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_each_gate_decides(row: Row) -> None:
    d = decide(row.obs)
    assert d.status.phase is row.phase
    assert d.actions == row.actions
    assert d.requeue_s == row.requeue_s
    assert (d.event[:2] if d.event is not None else None) == row.event
    for type_, expected in row.conditions.items():
        c = cond.get(d.status.conditions, type_)
        assert c is not None, f"no {type_} condition"
        assert (c.status, c.reason) == expected, type_
        assert c.observed_generation == 2
    for path, expected in row.fields.items():
        assert _field(d.status, path) == expected, path
    if row.message is not None:
        type_, text = row.message
        c = cond.get(d.status.conditions, type_)
        assert c is not None and text in (c.message or ""), (type_, c)
    assert d.status.observed_generation == 2
    # The pass is pure: the observation's status is a copy, never changed in place.
    assert row.obs.status.observed_generation is None

