"""The lifecycle of one evaluation as a pure function: what is observed -> status and actions.

Level-based: `decide` looks only at the evaluation (spec, the status it wrote before) and what
the world shows now (the RayCluster, the job on the dashboard, the job's last status line), never
at which event woke it. So a missed event, a conflict on a status write or an operator restart
changes nothing: the next pass decides the same. The reconciler applies what it returns; every
action is idempotent (create-if-absent, a deterministic submission id Ray answers "already
exists" to, stop and delete of what may be gone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from swarm_arena.api.job_channel import FailureReason, JobStatusRecord
from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.api.status import Phase, Results, SwarmEvaluationStatus
from swarm_arena.controller import conditions as cond
from swarm_arena.controller import names
from swarm_arena.controller.losses import Loss

# A job the dashboard no longer knows although it ran (the head was replaced) is re-submitted as a
# new attempt; one the dashboard cannot be asked about for this long is treated the same way.
HEAD_LOSS_GRACE_S = 30.0
# After a head is replaced, how long the re-submission waits for the workers to join it.
REJOIN_TIMEOUT_S = 180.0
# How often a stop Ray has not confirmed yet is sent again.
STOP_RETRY_S = 5.0
# JobRunning's reason while a stop is sent and not yet confirmed (durable: it is in status).
STOPPING = "Stopping"
# How often an evaluation whose `cluster.address` is refused looks at the admin's file again.
ADDRESS_RECHECK_S = 30.0
# How many leaderboard rows status carries; the results ConfigMap has all of them.
STATUS_LEADERBOARD_ROWS = 10

FINISHED = (Phase.SUCCEEDED, Phase.FAILED)

JobStatus = Literal["PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"]
ACTIVE_JOB: tuple[str, ...] = ("PENDING", "RUNNING")


@dataclass(frozen=True)
class ClusterView:
    """The RayCluster as KubeRay reports it (from the operator's index)."""

    exists: bool
    owned: bool = True
    ready: bool = False
    state: str | None = None
    reason: str | None = None
    previous_life: bool = False
    """Not owned, and an earlier evaluation's of this name (owned by it, or being deleted): the
    garbage collector removes it; waited for, never used."""


@dataclass(frozen=True)
class Taken:
    """A child's name (ConfigMap, Secret) is held by an object this evaluation does not own."""

    what: str
    """e.g. "ConfigMap duel-results"."""
    previous_life: bool
    """An earlier evaluation of this name's, being deleted: wait. Otherwise someone else's: conflict."""


@dataclass(frozen=True)
class JobView:
    """The current submission as the dashboard reports it."""

    submission_id: str
    found: bool
    status: JobStatus | None = None
    message: str | None = None
    record: JobStatusRecord | None = None


@dataclass(frozen=True)
class Observation:
    now: datetime
    uid: str
    generation: int
    spec: SwarmEvaluationSpec | None
    """None when the stored object does not validate (the error is in `invalid`)."""
    status: SwarmEvaluationStatus
    cluster: ClusterView | None
    """None for `cluster.address` (no RayCluster of ours)."""
    dashboard_reachable: bool
    dashboard_error: str | None = None
    job: JobView | None = None
    invalid: str | None = None
    unreachable_since: datetime | None = None
    losses: tuple[Loss, ...] = ()
    """Ray pods lost since the last pass and not handled yet (Ray node ids mapped where known)."""
    repair: JobView | None = None
    """The repair job in flight, if any."""
    rejoin: RejoinView | None = None
    """After the head was replaced (the job is gone with it): the workers of the new Ray cluster."""
    address_refused: tuple[str, str] | None = None
    """(reason, message) when `cluster.address` is not approved for the evaluation's namespace, or
    its token is missing (addresses.py): no request was made to it, and none is."""
    taken: Taken | None = None
    """A child's name held by an object not ours (found creating or reading it)."""
    too_large: str | None = None
    """Why the counted episodes no longer fit where the operator keeps them (no durable store)."""


@dataclass(frozen=True)
class RejoinView:
    joined: int
    """Alive Ray worker nodes of the new head."""
    wanted: int
    """Workers the spec asks for (minReplicas under autoscaling)."""
    orphans: tuple[tuple[str, str], ...]
    """(name, uid) of worker pods the old head left behind (losses.orphaned_workers)."""
    waited_s: float
    """Seconds since the new head answered."""


@dataclass(frozen=True)
class Submit:
    attempt: int
    submission_id: str


@dataclass(frozen=True)
class StopJob:
    submission_id: str


@dataclass(frozen=True)
class EnsureCluster:
    pass


@dataclass(frozen=True)
class DeleteCluster:
    why: str


@dataclass(frozen=True)
class WriteResults:
    final: bool


@dataclass(frozen=True)
class RestartWorkers:
    """Delete worker pods a replaced head left behind; KubeRay creates new ones that join it."""

    pods: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Repair:
    """Ask the running job to restart, from their checkpoints, the named actors on these Ray nodes."""

    node_ids: tuple[str, ...]
    losses: tuple[Loss, ...]


Action = Submit | StopJob | EnsureCluster | DeleteCluster | WriteResults | Repair | RestartWorkers


@dataclass
class Decision:
    status: SwarmEvaluationStatus
    actions: list[Action] = field(default_factory=list)
    event: tuple[str, str, str] | None = None
    """(type Normal|Warning, reason, message) when the phase changed."""
    requeue_s: float | None = None


def _rfc3339(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(t: str | None) -> datetime | None:
    return datetime.fromisoformat(t.replace("Z", "+00:00")) if t else None


class _Status:
    """A working copy of status with the condition helpers bound to now and generation."""

    def __init__(self, obs: Observation) -> None:
        self.s = obs.status.model_copy(deep=True)
        self.now = _rfc3339(obs.now)
        self.generation = obs.generation
        self.s.observed_generation = obs.generation

    def set(self, type_: str, status: bool | None, reason: str, message: str) -> None:
        self.s.conditions = cond.set_condition(
            self.s.conditions, type_, status, reason, message, now=self.now, generation=self.generation
        )

    def phase(self, phase: Phase, reason: str, message: str) -> None:
        self.s.phase = phase
        done = phase in (Phase.SUCCEEDED, Phase.FAILED)
        self.set(cond.READY, phase is Phase.SUCCEEDED, reason, message)
        self.set(cond.COMPLETE, phase is Phase.SUCCEEDED, reason if phase is Phase.SUCCEEDED else "NotComplete",
                 message if phase is Phase.SUCCEEDED else f"phase {phase.value}")
        self.set(cond.FAILED, phase is Phase.FAILED, reason if phase is Phase.FAILED else "NotFailed",
                 message if phase is Phase.FAILED else f"phase {phase.value}")
        self.set(cond.STALLED, phase is Phase.FAILED, reason if phase is Phase.FAILED else "NotStalled",
                 message if phase is Phase.FAILED else f"phase {phase.value}")
        if done and self.s.completion_time is None:
            self.s.completion_time = self.now


def status_results(full: Results, configmap: str | None) -> Results:
    """Status's copy of the full results: the top rows and their populations and social outcomes,
    without what only the ConfigMap holds (the pairwise matrix, the aggregates). The results ConfigMap gets `full.for_configmap()`: both are
    made from one full result, never one from the other."""
    results = full.for_status()
    results.leaderboard = results.leaderboard[:STATUS_LEADERBOARD_ROWS]
    # Populations and social outcomes of the policies on those rows (and of the first teams), so
    # `kubectl get -o yaml` answers "how did the leaders do" without the ConfigMap.
    shown = {e.policy for e in results.leaderboard}
    if results.populations is not None:
        results.populations = [p for p in results.populations if p.policy in shown] or None
    if results.social_outcomes is not None:
        teams = [o for o in results.social_outcomes if o.kind == "team"][:STATUS_LEADERBOARD_ROWS]
        results.social_outcomes = [o for o in results.social_outcomes if o.kind == "policy" and o.name in shown] + teams or None
    results.results_config_map = configmap
    return results


def _fold_record(st: _Status, record: JobStatusRecord | None, configmap: str | None) -> None:
    """What the job reported -> progress, recoveries and the head of the leaderboard."""
    if record is None:
        return
    st.s.progress = record.progress
    st.s.recoveries = record.recoveries
    if record.last_recovery is not None:
        st.s.last_recovery = record.last_recovery
    if record.results is not None:
        st.s.results = status_results(record.results, configmap)
    elif configmap and st.s.results is None:
        st.s.results = Results(results_config_map=configmap)


def _job_active(obs: Observation) -> bool:
    return obs.job is not None and obs.job.found and obs.job.status in ACTIVE_JOB


def decide(obs: Observation) -> Decision:
    before = obs.status.phase
    st = _Status(obs)
    decision = Decision(status=st.s)
    _decide(obs, st, decision)
    after = st.s.phase
    if after in FINISHED and before not in FINISHED:
        # The results ConfigMap written now is the last one: final, and written before the phase
        # (the reconciler applies it before status, so a finished phase implies final results).
        decision.actions = [WriteResults(final=True) if isinstance(a, WriteResults) else a for a in decision.actions]
    ttl = obs.spec.ttl_seconds_after_finished if obs.spec is not None else None
    if (after in (Phase.SUCCEEDED, Phase.FAILED) and before is not after and ttl is not None
            and obs.cluster is not None and obs.cluster.exists):
        # Finished in this pass: the next one, due at the TTL, deletes the cluster (no event wakes it).
        decision.requeue_s = min(decision.requeue_s if decision.requeue_s is not None else ttl, ttl)
    if after is not before and after is not None and decision.event is None:
        ready = cond.get(st.s.conditions, cond.READY)
        kind = "Warning" if after in (Phase.FAILED, Phase.RECOVERING) else "Normal"
        decision.event = (kind, after.value, ready.message if ready and ready.message else after.value)
    return decision


def _decide(obs: Observation, st: _Status, d: Decision) -> None:  # noqa: C901 - one state machine, read top-down
    s = st.s
    name_cm = None
    if obs.invalid is not None:
        st.phase(Phase.FAILED, "InvalidSpec", obs.invalid)
        return
    spec = obs.spec
    assert spec is not None
    now = obs.now
    if not spec.suspend and s.suspended_since is not None:  # resumed: the pause is not run time
        paused = (now - (_parse(s.suspended_since) or now)).total_seconds()
        s.suspended_seconds = (s.suspended_seconds or 0) + max(int(paused), 0)
        s.suspended_since = None
    if s.results is not None:
        name_cm = s.results.results_config_map
    if obs.job is not None and obs.job.found and obs.job.submission_id == s.job_id:
        s.job_accepted = True  # Ray has it: from now on, a dashboard that does not know it lost it

    # -- finished: a stop to confirm, and the TTL --------------------------------------------------
    if s.phase in (Phase.SUCCEEDED, Phase.FAILED):
        if stop_pending(s):
            if _stop(st, d, obs, None):
                st.set(cond.JOB_RUNNING, False, "Stopped", f"job {s.job_id} stopped")
        elif _job_active(obs):
            d.actions.append(StopJob(obs.job.submission_id))
        if spec.ttl_seconds_after_finished is not None and obs.cluster is not None and obs.cluster.exists:
            done = _parse(s.completion_time) or now
            due = done + timedelta(seconds=spec.ttl_seconds_after_finished)
            if now >= due:
                d.actions.append(DeleteCluster("ttlSecondsAfterFinished"))
                st.set(cond.CLUSTER_READY, False, "DeletedAfterTTL",
                       f"RayCluster deleted {spec.ttl_seconds_after_finished}s after the evaluation finished")
            else:
                d.requeue_s = (due - now).total_seconds()
        return

    # -- what was counted no longer fits (admission refuses such plans; this is the safety net) ----
    if obs.too_large is not None:
        _fold_record(st, obs.job.record if obs.job else None, name_cm)
        if _stop(st, d, obs, "the counted episodes no longer fit"):
            st.set(cond.JOB_RUNNING, False, "TooManyEpisodes", obs.too_large)
        st.phase(Phase.FAILED, "TooManyEpisodes", obs.too_large)
        d.actions.append(WriteResults(final=True))
        return

    # -- deadline ----------------------------------------------------------------------------------
    if spec.active_deadline_seconds is not None and s.start_time is not None:
        # Run time only: what was spent suspended (so far, and now) does not count.
        paused = (s.suspended_seconds or 0) + (
            (now - _parse(s.suspended_since)).total_seconds() if s.suspended_since else 0.0)
        due = _parse(s.start_time) + timedelta(seconds=spec.active_deadline_seconds + paused)
        if now >= due:
            _fold_record(st, obs.job.record if obs.job else None, name_cm)
            if _stop(st, d, obs, "spec.activeDeadlineSeconds passed"):
                st.set(cond.JOB_RUNNING, False, "DeadlineExceeded", "stopped at spec.activeDeadlineSeconds")
            st.phase(Phase.FAILED, "DeadlineExceeded",
                     f"ran longer than spec.activeDeadlineSeconds ({spec.active_deadline_seconds}s); the job was stopped "
                     "and what was counted is kept in status and the results ConfigMap")
            d.actions.append(WriteResults(final=False))
            return
        d.requeue_s = (due - now).total_seconds()

    # -- suspend: stop the job, keep what was counted, tear the cluster down ----------------------
    if spec.suspend:
        if s.start_time is not None and s.suspended_since is None:
            s.suspended_since = st.now
        if obs.job is not None:
            _fold_record(st, obs.job.record, name_cm)
        if _job_active(obs):
            d.actions.append(StopJob(obs.job.submission_id))
            d.actions.append(WriteResults(final=False))
            st.set(cond.JOB_RUNNING, False, "Suspending", "stopping the job; counted episodes are kept")
            st.phase(Phase.SUSPENDED, "Suspending", "spec.suspend is set: stopping the job")
            return
        if obs.job is not None and obs.job.found:
            d.actions.append(WriteResults(final=False))  # the episodes counted up to the stop
        if obs.cluster is not None and obs.cluster.exists:
            d.actions.append(DeleteCluster("suspend"))
        st.set(cond.JOB_RUNNING, False, "Suspended", "spec.suspend is set")
        st.set(cond.CLUSTER_READY, False, "Suspended", "the Ray cluster is torn down while suspended")
        if s.job_id is not None and obs.job is not None and obs.job.found:
            # the next attempt resumes from what was counted; the stopped one is done with
            s.job_id = None
            s.job_accepted = None
        st.phase(Phase.SUSPENDED, "Suspended", "spec.suspend is set; unset it to resume from what was counted")
        return
    if s.start_time is None:
        # It runs from now: the spec is locked from here on (CEL on status.startTime), not while
        # it was created suspended and never ran.
        s.start_time = st.now

    # -- children of an earlier evaluation of this name: wait for them to go, never use them --------
    old = obs.taken.what if obs.taken is not None and obs.taken.previous_life else None
    if obs.cluster is not None and obs.cluster.exists and not obs.cluster.owned and obs.cluster.previous_life:
        old = "the RayCluster"
    if old is not None:
        msg = (f"{old} of an earlier evaluation of this name is still being deleted; waiting for it to go "
               "(it is not reused)")
        st.set(cond.CLUSTER_READY, False, "WaitingForOldCluster", msg)
        if s.phase in (None, Phase.PENDING, Phase.SUSPENDED, Phase.PROVISIONING):
            st.phase(Phase.PROVISIONING, "WaitingForOldCluster", msg)
        d.requeue_s = 2.0
        return
    if obs.taken is not None:
        st.set(cond.CLUSTER_READY, False, "NameConflict", f"{obs.taken.what} exists and is not owned by this evaluation")
        st.phase(Phase.FAILED, "ClusterConflict",
                 f"{obs.taken.what} already exists and belongs to something else; delete it or give the "
                 "evaluation another name")
        return

    # -- an existing cluster the admin did not approve: no request goes to it ---------------------
    if obs.address_refused is not None:
        reason, message = obs.address_refused
        st.set(cond.CLUSTER_READY, False, reason, message)
        if s.phase in (None, Phase.PENDING):
            st.phase(Phase.PENDING, reason, message)
        else:
            st.set(cond.READY, False, reason, message)
        d.requeue_s = ADDRESS_RECHECK_S  # the admin's file is read again: an approval takes effect
        return

    # -- the Ray cluster ---------------------------------------------------------------------------
    if obs.cluster is not None:
        c = obs.cluster
        if not c.exists:
            d.actions.append(EnsureCluster())
            st.set(cond.CLUSTER_READY, False, "Creating", "creating the RayCluster")
            if s.phase in (None, Phase.PENDING, Phase.SUSPENDED, Phase.PROVISIONING):
                st.phase(Phase.PROVISIONING, "Provisioning", "creating the RayCluster")
            elif s.phase in (Phase.RUNNING, Phase.RECOVERING):
                # Deleted under a running job (by hand, by a cleanup): never Running with no job behind it.
                msg = ("the RayCluster was deleted while the job ran; re-creating it, then the job is re-submitted "
                       "and resumes from what was counted")
                st.set(cond.JOB_RUNNING, None, "ClusterLost", msg)
                st.set(cond.DEGRADED, True, "ClusterLost", msg)
                st.phase(Phase.RECOVERING, "ClusterLost", msg)
            return
        if not c.owned:
            st.set(cond.CLUSTER_READY, False, "NameConflict",
                   "a RayCluster with this evaluation's name exists and is not owned by it")
            st.phase(Phase.FAILED, "ClusterConflict",
                     "a RayCluster with this evaluation's name already exists and belongs to something else; "
                     "delete it or give the evaluation another name")
            return
        if not c.ready:
            st.set(cond.CLUSTER_READY, False, c.reason or "Provisioning",
                   f"RayCluster state {c.state or 'unknown'}; waiting for the head and workers to be ready")
            if s.phase in (None, Phase.PENDING, Phase.SUSPENDED, Phase.PROVISIONING):
                st.phase(Phase.PROVISIONING, "Provisioning", "waiting for the Ray cluster")
            if s.job_id is None:
                return
        else:
            st.set(cond.CLUSTER_READY, True, "Ready", "the RayCluster is ready")
    if not obs.dashboard_reachable:
        msg = f"the Ray dashboard does not answer: {obs.dashboard_error or 'unreachable'}"
        if obs.cluster is None:
            st.set(cond.CLUSTER_READY, False, "Unreachable", msg + "; check spec.cluster.address")
        if s.phase in (None, Phase.PENDING, Phase.SUSPENDED, Phase.PROVISIONING):
            st.phase(Phase.PROVISIONING, "WaitingForDashboard", msg)
        elif any(loss.kind == "head" for loss in obs.losses) and s.phase in (Phase.RUNNING, Phase.RECOVERING):
            what = "; ".join(loss.describe() for loss in obs.losses)
            st.set(cond.JOB_RUNNING, None, "HeadLost", f"{what}; the job is re-submitted once the head is back")
            st.set(cond.DEGRADED, True, "HeadLost", what)
            st.phase(Phase.RECOVERING, "HeadLost", f"{what}; re-submitting the job once the head is back")
        elif s.phase is Phase.RUNNING and obs.unreachable_since is not None and (
            (now - obs.unreachable_since).total_seconds() >= HEAD_LOSS_GRACE_S
        ):
            # Never sit in Running with no job behind it: say so, and act once the head is back.
            st.set(cond.JOB_RUNNING, None, "HeadUnreachable", msg)
            st.set(cond.DEGRADED, True, "HeadUnreachable", msg)
            st.phase(Phase.RECOVERING, "HeadUnreachable", msg)
        d.requeue_s = min(d.requeue_s or 5.0, 5.0)
        return
    if obs.cluster is None:
        st.set(cond.CLUSTER_READY, True, "Reachable", "the Ray cluster at spec.cluster.address answers")

    # -- the job -------------------------------------------------------------------------------------
    attempts = s.attempts or 0
    job = obs.job
    if s.job_id is None or job is None:
        _submit(st, d, obs, attempts + 1, "Submitting", "submitting the arena job")
        return
    if not job.found:
        if s.job_accepted is not False and s.phase in (Phase.RUNNING, Phase.RECOVERING):
            # It ran, and the dashboard no longer knows it: the head was replaced. First the
            # workers must be part of the new Ray cluster (a job started on a bare head waits for
            # resources and fails); then a new attempt, not counted against backoffLimit, that
            # resumes from what was counted.
            r = obs.rejoin
            if r is not None and (r.orphans or r.joined < r.wanted) and r.waited_s < REJOIN_TIMEOUT_S:
                if r.orphans:
                    d.actions.append(RestartWorkers(r.orphans))
                what = (f"restarting {len(r.orphans)} worker pod(s) the lost head left behind "
                        f"({', '.join(n for n, _ in r.orphans)}); " if r.orphans else "")
                msg = (f"the Ray head was replaced; {what}{r.joined} of {r.wanted} worker(s) joined the new head; "
                       f"the job is re-submitted once they have (at most {REJOIN_TIMEOUT_S:.0f}s)")
                st.set(cond.DEGRADED, True, "HeadLost", msg)
                st.phase(Phase.RECOVERING, "WaitingForWorkers", msg)
                d.requeue_s = 2.0
                return
            s.head_restarts = (s.head_restarts or 0) + 1
            st.set(cond.DEGRADED, True, "HeadLost", f"job {s.job_id} vanished with the Ray head; re-submitting")
            _submit(st, d, obs, attempts + 1, "HeadLost", "the Ray head was lost; re-submitting the job to resume")
        else:
            # Recorded and never shown by Ray (its POST failed, or the operator stopped between
            # recording and sending it): the same id again, never a new attempt beside it. Also
            # from Running (a re-submission after a failed run keeps the phase): only a job Ray
            # showed can vanish with the head.
            d.actions.append(Submit(attempts or 1, s.job_id))
            st.set(cond.JOB_RUNNING, None, "Submitting", f"submitting job {s.job_id}")
        return

    _fold_record(st, job.record, name_cm)
    record = job.record
    if job.status in ACTIVE_JOB:
        st.set(cond.JOB_RUNNING, True, "Running", f"job {job.submission_id} is {job.status}")
        if _recovering(obs, st, d):
            return
        st.set(cond.DEGRADED, False, "Healthy", "no loss being repaired")
        p = s.progress
        st.phase(Phase.RUNNING, "Running",
                 f"{p.episodes_completed}/{p.episodes_total} episodes" if p else f"job {job.submission_id} running")
        return
    if job.status == "SUCCEEDED" and record is not None and record.state.value == "succeeded":
        d.actions.append(WriteResults(final=True))
        st.set(cond.JOB_RUNNING, False, "Succeeded", f"job {job.submission_id} finished")
        st.set(cond.DEGRADED, False, "Healthy", "finished")
        leader = s.results.leaderboard[0].policy if s.results and s.results.leaderboard else "?"
        early = s.results.stopped_early if s.results else None
        if early is not None:  # spec.stopping decided the leaderboard before the plan ran out
            st.set(cond.STOPPED_EARLY, True, early.reason, early.message)
            st.phase(Phase.SUCCEEDED, "Succeeded",
                     f"stopped early ({early.reason}): {early.episodes_saved} of {early.episodes_planned} episodes "
                     f"saved; leader {leader}")
            return
        st.phase(Phase.SUCCEEDED, "Succeeded", f"all episodes counted; leader {leader}")
        return
    # FAILED, STOPPED (not by us) or SUCCEEDED without a final record: the run failed.
    why = (record.message if record and record.message else None) or job.message or f"job {job.status}"
    st.set(cond.JOB_RUNNING, False, "JobFailed", why)
    if record is not None and record.reason is FailureReason.INVALID_SPEC:
        st.phase(Phase.FAILED, "InvalidSpec", why)
        return
    failures = (s.failures or 0) + 1
    s.failures = failures
    if failures > spec.backoff_limit:
        st.phase(Phase.FAILED, "BackoffLimitExceeded",
                 f"{failures} failed runs, more than spec.backoffLimit ({spec.backoff_limit}); last: {why}")
        d.actions.append(WriteResults(final=False))
        return
    d.actions.append(WriteResults(final=False))
    msg = f"run {failures} of at most {spec.backoff_limit + 1} failed ({why}); re-submitting, resuming from what was counted"
    _submit(st, d, obs, attempts + 1, "Resubmitting", msg)
    # The phase may stay Running: say why the attempt failed in an Event (and the operator log) too.
    d.event = ("Warning", "Resubmitting",
               f"attempt {attempts} failed ({failures} of at most {spec.backoff_limit + 1}): {why}; "
               "re-submitting, resuming from what was counted")


def stop_pending(status: SwarmEvaluationStatus) -> bool:
    """A stop was sent and Ray has not confirmed it yet (the job may still run): the operator
    keeps asking, also once the phase is final."""
    c = cond.get(status.conditions, cond.JOB_RUNNING)
    return status.job_id is not None and c is not None and c.reason == STOPPING


def _confirmed_stopped(obs: Observation, sid: str) -> bool:
    if obs.cluster is not None and not obs.cluster.exists:
        return True  # its own Ray cluster is gone, and every job with it
    j = obs.job
    return (obs.dashboard_reachable and j is not None and j.submission_id == sid
            and (not j.found or j.status not in ACTIVE_JOB))


def _stop(st: _Status, d: Decision, obs: Observation, why: str | None) -> bool:
    """True when no job of this evaluation runs (Ray says so); else a StopJob, JobRunning
    Unknown/Stopping (`why`, or the message it has), and a pass again in STOP_RETRY_S."""
    sid = st.s.job_id
    if sid is None or _confirmed_stopped(obs, sid):
        return True
    d.actions.append(StopJob(sid))
    if why is not None:
        st.set(cond.JOB_RUNNING, None, STOPPING,
               f"stopping job {sid} ({why}); asked again until Ray says it stopped")
    d.requeue_s = min(d.requeue_s if d.requeue_s is not None else STOP_RETRY_S, STOP_RETRY_S)
    return False


def _recovering(obs: Observation, st: _Status, d: Decision) -> bool:
    """Lost workers -> one repair of their Ray nodes now (phase Recovering until it is done)."""
    heads = [loss for loss in obs.losses if loss.kind == "head"]
    workers = [loss for loss in obs.losses if loss.kind != "head"]
    if heads:
        what = "; ".join(loss.describe() for loss in heads)
        st.set(cond.DEGRADED, True, "HeadLost", what)
        st.phase(Phase.RECOVERING, "HeadLost", f"{what}; re-submitting the job once the head is back")
        return True
    repairing = obs.repair is not None and obs.repair.found and obs.repair.status in ACTIVE_JOB
    if workers and not repairing:
        what = "; ".join(loss.describe() for loss in workers)
        ids = tuple(sorted({loss.ray_node_id for loss in workers if loss.ray_node_id}))
        d.actions.append(Repair(ids, tuple(workers)))
        st.set(cond.DEGRADED, True, "WorkerLost", f"{what}; restarting its actors from their checkpoints")
        st.phase(Phase.RECOVERING, "WorkerLost", f"{what}; restarting its actors from their checkpoints")
        return True
    if repairing:
        degraded = cond.get(st.s.conditions, cond.DEGRADED)
        st.phase(Phase.RECOVERING, "Repairing", degraded.message if degraded and degraded.message else "repairing")
        return True
    return False


def _submit(st: _Status, d: Decision, obs: Observation, attempt: int, reason: str, message: str) -> None:
    sid = names.submission_id(obs.uid, attempt)
    st.s.job_id = sid
    st.s.job_accepted = False
    st.s.attempts = attempt
    d.actions.append(Submit(attempt, sid))
    st.set(cond.JOB_RUNNING, None, reason, f"{message} ({sid})")
    if st.s.phase in (None, Phase.PENDING, Phase.PROVISIONING, Phase.SUSPENDED):
        # Running only once the dashboard shows the job: "it ran" is what tells a lost head apart
        # from a submission the operator recorded and never sent.
        st.phase(Phase.PROVISIONING, reason, message)
