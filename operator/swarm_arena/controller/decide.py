"""The lifecycle of one evaluation as a pure function: what is observed -> status and actions.

Level-based: `decide` looks only at the evaluation (spec, the status it wrote before) and what
the world shows now (the RayCluster, the job on the dashboard, the job's last status line), never
at which event woke it. So a missed event, a conflict on a status write or an operator restart
changes nothing: the next pass decides the same. The reconciler applies what it returns; every
action is idempotent (create-if-absent, a deterministic submission id Ray answers "already
exists" to, stop and delete of what may be gone).

`decide` runs one gate after another, each a small function that says whether it settled the
pass: an invalid spec; finished (a stop to confirm, the TTL); counted episodes that no longer fit;
the deadline; suspended; children of an earlier evaluation of this name; a refused address; the
Ray cluster; the dashboard; and then the job: none yet, one Ray does not show, or the outcome of
the one it shows (running or repairing, succeeded, failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, NamedTuple, TypeAlias

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


Action: TypeAlias = Submit | StopJob | EnsureCluster | DeleteCluster | WriteResults | Repair | RestartWorkers
"""What the reconciler does after writing status (it dispatches on the class)."""


class Event(NamedTuple):
    """A Kubernetes Event about the evaluation (a tuple: the reconciler posts `*event`)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Decision:
    status: SwarmEvaluationStatus
    actions: list[Action] = field(default_factory=list)
    """In order; each idempotent."""
    event: Event | None = None
    """When the phase changed, or an attempt failed and is re-submitted."""
    requeue_s: float | None = None
    """The next pass is due within this many seconds (no event would wake it)."""

    def wake_within(self, seconds: float) -> None:
        """The next pass is due within `seconds`: the earliest of every gate's due time wins (a later
        gate never postpones a pass an earlier one needs, e.g. a stop retry behind a distant TTL)."""
        self.requeue_s = seconds if self.requeue_s is None else min(self.requeue_s, seconds)


def _rfc3339(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(t: str | None) -> datetime | None:
    return datetime.fromisoformat(t.replace("Z", "+00:00")) if t else None


# Phases before the job ran: a wait in them is Provisioning.
_NOT_STARTED = (None, Phase.PENDING, Phase.SUSPENDED, Phase.PROVISIONING)


class _Draft:
    """One pass's decision in the making: the observation, a working copy of status (its
    conditions set as of now and this generation) and the decision the gates fill in."""

    def __init__(self, obs: Observation) -> None:
        self.obs = obs
        self.status = obs.status.model_copy(deep=True)
        self.status.observed_generation = obs.generation
        self.now = _rfc3339(obs.now)
        self.decision = Decision(status=self.status)
        # Where the results are (status names the ConfigMap once it was written).
        self.configmap = self.status.results.results_config_map if self.status.results is not None else None

    @property
    def spec(self) -> SwarmEvaluationSpec:
        assert self.obs.spec is not None, "only the invalid-spec gate sees no spec"
        return self.obs.spec

    def act(self, action: Action) -> None:
        self.decision.actions.append(action)

    def set_condition(self, type_: str, status: bool | None, reason: str, message: str) -> None:
        self.status.conditions = cond.set_condition(
            self.status.conditions, type_, status, reason, message, now=self.now, generation=self.obs.generation
        )

    def set_phase(self, phase: Phase, reason: str, message: str) -> None:
        """The phase, and the conditions that mirror it (Ready, Complete, Failed, Stalled)."""
        self.status.phase = phase
        succeeded, failed = phase is Phase.SUCCEEDED, phase is Phase.FAILED
        other = f"phase {phase.value}"
        self.set_condition(cond.READY, succeeded, reason, message)
        self.set_condition(cond.COMPLETE, succeeded, reason if succeeded else "NotComplete", message if succeeded else other)
        self.set_condition(cond.FAILED, failed, reason if failed else "NotFailed", message if failed else other)
        self.set_condition(cond.STALLED, failed, reason if failed else "NotStalled", message if failed else other)
        if phase in FINISHED and self.status.completion_time is None:
            self.status.completion_time = self.now


def decide(obs: Observation) -> Decision:
    draft = _Draft(obs)
    _run_gates(draft)
    decision, before, after = draft.decision, obs.status.phase, draft.status.phase
    if after in FINISHED and before not in FINISHED:
        # The results ConfigMap written now is the last one: final, and written before the phase
        # (the reconciler applies it before status, so a finished phase implies final results).
        decision.actions = [WriteResults(final=True) if isinstance(a, WriteResults) else a for a in decision.actions]
    ttl = obs.spec.ttl_seconds_after_finished if obs.spec is not None else None
    if after in FINISHED and before is not after and ttl is not None and _cluster_exists(obs):
        # Finished in this pass: the next one, due at the TTL, deletes the cluster (no event wakes it).
        decision.wake_within(ttl)
    if after is not before and after is not None and decision.event is None:
        ready = cond.get(draft.status.conditions, cond.READY)
        kind: Literal["Normal", "Warning"] = "Warning" if after in (Phase.FAILED, Phase.RECOVERING) else "Normal"
        decision.event = Event(kind, after.value, ready.message if ready and ready.message else after.value)
    return decision


def _run_gates(draft: _Draft) -> None:
    """The lifecycle, one gate after the other: the first that settles the pass ends it."""
    if _invalid(draft):
        return
    _account(draft)
    gates = (
        _finished, _too_large, _deadline, _suspended, _names_taken, _address_refused, _cluster, _dashboard,
        _job_not_submitted, _job_not_shown,
    )  # fmt: skip
    for gate in gates:
        if gate(draft):
            return
    _job_outcome(draft)  # the last gate: the job Ray shows settles every pass that gets this far


# -- the stored object does not validate --------------------------------------------------------------

def _invalid(draft: _Draft) -> bool:
    if draft.obs.invalid is None:
        return False
    draft.set_phase(Phase.FAILED, "InvalidSpec", draft.obs.invalid)
    return True


def _account(draft: _Draft) -> None:
    """What every pass notes before any gate: a pause that just ended, a job Ray has shown."""
    status, obs = draft.status, draft.obs
    if not draft.spec.suspend and status.suspended_since is not None:  # resumed: the pause is not run time
        paused = (obs.now - (_parse(status.suspended_since) or obs.now)).total_seconds()
        status.suspended_seconds = (status.suspended_seconds or 0) + max(int(paused), 0)
        status.suspended_since = None
    if obs.job is not None and obs.job.found and obs.job.submission_id == status.job_id:
        status.job_accepted = True  # Ray has it: from now on, a dashboard that does not know it lost it


# -- finished: a stop to confirm, and the TTL ---------------------------------------------------------

def _finished(draft: _Draft) -> bool:
    status, obs, spec = draft.status, draft.obs, draft.spec
    if status.phase not in FINISHED:
        return False
    if stop_pending(status):
        if _stop(draft, None):
            draft.set_condition(cond.JOB_RUNNING, False, "Stopped", f"job {status.job_id} stopped")
    elif obs.job is not None and _active(obs.job):
        draft.act(StopJob(obs.job.submission_id))
    ttl = spec.ttl_seconds_after_finished
    if ttl is not None and _cluster_exists(obs):
        due = (_parse(status.completion_time) or obs.now) + timedelta(seconds=ttl)
        if obs.now >= due:
            draft.act(DeleteCluster("ttlSecondsAfterFinished"))
            draft.set_condition(cond.CLUSTER_READY, False, "DeletedAfterTTL",
                                f"RayCluster deleted {ttl}s after the evaluation finished")
        else:
            draft.decision.wake_within((due - obs.now).total_seconds())
    return True


# -- what was counted no longer fits (admission refuses such plans; this is the safety net) -----------

def _too_large(draft: _Draft) -> bool:
    why = draft.obs.too_large
    if why is None:
        return False
    _fold_record(draft, draft.obs.job.record if draft.obs.job else None)
    if _stop(draft, "the counted episodes no longer fit"):
        draft.set_condition(cond.JOB_RUNNING, False, "TooManyEpisodes", why)
    draft.set_phase(Phase.FAILED, "TooManyEpisodes", why)
    draft.act(WriteResults(final=True))
    return True


# -- deadline -----------------------------------------------------------------------------------------

def _deadline(draft: _Draft) -> bool:
    status, obs, limit = draft.status, draft.obs, draft.spec.active_deadline_seconds
    started = _parse(status.start_time)
    if limit is None or started is None:
        return False
    # Run time only: what was spent suspended (so far, and now) does not count.
    pausing = _parse(status.suspended_since)
    paused = (status.suspended_seconds or 0) + ((obs.now - pausing).total_seconds() if pausing else 0.0)
    due = started + timedelta(seconds=limit + paused)
    if obs.now < due:
        draft.decision.wake_within((due - obs.now).total_seconds())
        return False
    _fold_record(draft, obs.job.record if obs.job else None)
    if _stop(draft, "spec.activeDeadlineSeconds passed"):
        draft.set_condition(cond.JOB_RUNNING, False, "DeadlineExceeded", "stopped at spec.activeDeadlineSeconds")
    draft.set_phase(Phase.FAILED, "DeadlineExceeded",
                    f"ran longer than spec.activeDeadlineSeconds ({limit}s); the job was stopped "
                    "and what was counted is kept in status and the results ConfigMap")
    draft.act(WriteResults(final=False))
    return True


# -- suspend: stop the job, keep what was counted, tear the cluster down ------------------------------

def _suspended(draft: _Draft) -> bool:
    status, obs = draft.status, draft.obs
    if not draft.spec.suspend:
        if status.start_time is None:
            # It runs from now: the spec is locked from here on (CEL on status.startTime), not while
            # it was created suspended and never ran.
            status.start_time = draft.now
        return False
    if status.start_time is not None and status.suspended_since is None:
        status.suspended_since = draft.now
    job = obs.job
    if job is not None:
        _fold_record(draft, job.record)
    if job is not None and _active(job):
        draft.act(StopJob(job.submission_id))
        draft.act(WriteResults(final=False))
        draft.set_condition(cond.JOB_RUNNING, False, "Suspending", "stopping the job; counted episodes are kept")
        draft.set_phase(Phase.SUSPENDED, "Suspending", "spec.suspend is set: stopping the job")
        return True
    shown = job is not None and job.found
    if shown:
        draft.act(WriteResults(final=False))  # the episodes counted up to the stop
    if _cluster_exists(obs):
        draft.act(DeleteCluster("suspend"))
    draft.set_condition(cond.JOB_RUNNING, False, "Suspended", "spec.suspend is set")
    draft.set_condition(cond.CLUSTER_READY, False, "Suspended", "the Ray cluster is torn down while suspended")
    if status.job_id is not None and shown:
        # the next attempt resumes from what was counted; the stopped one is done with
        status.job_id = None
        status.job_accepted = None
    draft.set_phase(Phase.SUSPENDED, "Suspended", "spec.suspend is set; unset it to resume from what was counted")
    return True


# -- children of an earlier evaluation of this name: wait for them to go, never use them --------------

def _names_taken(draft: _Draft) -> bool:
    status, obs = draft.status, draft.obs
    old = obs.taken.what if obs.taken is not None and obs.taken.previous_life else None
    if obs.cluster is not None and obs.cluster.exists and not obs.cluster.owned and obs.cluster.previous_life:
        old = "the RayCluster"
    if old is not None:
        msg = (f"{old} of an earlier evaluation of this name is still being deleted; waiting for it to go "
               "(it is not reused)")
        draft.set_condition(cond.CLUSTER_READY, False, "WaitingForOldCluster", msg)
        if status.phase in _NOT_STARTED:
            draft.set_phase(Phase.PROVISIONING, "WaitingForOldCluster", msg)
        draft.decision.wake_within(2.0)
        return True
    if obs.taken is not None:
        draft.set_condition(cond.CLUSTER_READY, False, "NameConflict",
                            f"{obs.taken.what} exists and is not owned by this evaluation")
        draft.set_phase(Phase.FAILED, "ClusterConflict",
                        f"{obs.taken.what} already exists and belongs to something else; delete it or give the "
                        "evaluation another name")
        return True
    return False


# -- an existing cluster the admin did not approve: no request goes to it -----------------------------

def _address_refused(draft: _Draft) -> bool:
    if draft.obs.address_refused is None:
        return False
    reason, message = draft.obs.address_refused
    draft.set_condition(cond.CLUSTER_READY, False, reason, message)
    if draft.status.phase in (None, Phase.PENDING):
        draft.set_phase(Phase.PENDING, reason, message)
    else:
        draft.set_condition(cond.READY, False, reason, message)
    draft.decision.wake_within(ADDRESS_RECHECK_S)  # the admin's file is read again: an approval takes effect
    return True


# -- the Ray cluster (ours; none to look after for `cluster.address`) ---------------------------------

def _cluster(draft: _Draft) -> bool:
    status, cluster = draft.status, draft.obs.cluster
    if cluster is None:
        return False
    if not cluster.exists:
        draft.act(EnsureCluster())
        draft.set_condition(cond.CLUSTER_READY, False, "Creating", "creating the RayCluster")
        if status.phase in _NOT_STARTED:
            draft.set_phase(Phase.PROVISIONING, "Provisioning", "creating the RayCluster")
        else:  # Running or Recovering (a finished phase was settled before)
            # Deleted under a running job (by hand, by a cleanup): never Running with no job behind it.
            msg = ("the RayCluster was deleted while the job ran; re-creating it, then the job is re-submitted "
                   "and resumes from what was counted")
            draft.set_condition(cond.JOB_RUNNING, None, "ClusterLost", msg)
            draft.set_condition(cond.DEGRADED, True, "ClusterLost", msg)
            draft.set_phase(Phase.RECOVERING, "ClusterLost", msg)
        return True
    if not cluster.owned:
        draft.set_condition(cond.CLUSTER_READY, False, "NameConflict",
                            "a RayCluster with this evaluation's name exists and is not owned by it")
        draft.set_phase(Phase.FAILED, "ClusterConflict",
                        "a RayCluster with this evaluation's name already exists and belongs to something else; "
                        "delete it or give the evaluation another name")
        return True
    if cluster.ready:
        draft.set_condition(cond.CLUSTER_READY, True, "Ready", "the RayCluster is ready")
        return False
    draft.set_condition(cond.CLUSTER_READY, False, cluster.reason or "Provisioning",
                        f"RayCluster state {cluster.state or 'unknown'}; waiting for the head and workers to be ready")
    if status.phase in _NOT_STARTED:
        draft.set_phase(Phase.PROVISIONING, "Provisioning", "waiting for the Ray cluster")
    return status.job_id is None  # a job already submitted is still looked after


# -- the dashboard: nothing is decided about the job while it does not answer -------------------------

def _dashboard(draft: _Draft) -> bool:
    status, obs = draft.status, draft.obs
    if obs.dashboard_reachable:
        if obs.cluster is None:
            draft.set_condition(cond.CLUSTER_READY, True, "Reachable", "the Ray cluster at spec.cluster.address answers")
        return False
    msg = f"the Ray dashboard does not answer: {obs.dashboard_error or 'unreachable'}"
    if obs.cluster is None:
        draft.set_condition(cond.CLUSTER_READY, False, "Unreachable", msg + "; check spec.cluster.address")
    if status.phase in _NOT_STARTED:
        draft.set_phase(Phase.PROVISIONING, "WaitingForDashboard", msg)
    elif any(loss.kind == "head" for loss in obs.losses) and status.phase in (Phase.RUNNING, Phase.RECOVERING):
        what = "; ".join(loss.describe() for loss in obs.losses)
        draft.set_condition(cond.JOB_RUNNING, None, "HeadLost", f"{what}; the job is re-submitted once the head is back")
        draft.set_condition(cond.DEGRADED, True, "HeadLost", what)
        draft.set_phase(Phase.RECOVERING, "HeadLost", f"{what}; re-submitting the job once the head is back")
    elif status.phase is Phase.RUNNING and obs.unreachable_since is not None and (
        (obs.now - obs.unreachable_since).total_seconds() >= HEAD_LOSS_GRACE_S
    ):
        # Never sit in Running with no job behind it: say so, and act once the head is back.
        draft.set_condition(cond.JOB_RUNNING, None, "HeadUnreachable", msg)
        draft.set_condition(cond.DEGRADED, True, "HeadUnreachable", msg)
        draft.set_phase(Phase.RECOVERING, "HeadUnreachable", msg)
    draft.decision.wake_within(5.0)
    return True


# -- the job: none yet, one Ray does not show, and the outcome of one it shows ------------------------

def _job_not_submitted(draft: _Draft) -> bool:
    """No job recorded: the next attempt. A job recorded but not asked about this pass is never
    replaced by a new attempt (that could run beside it): the pass waits to see it."""
    if draft.status.job_id is not None:
        if draft.obs.job is not None:
            return False
        draft.decision.wake_within(2.0)
        return True
    _submit(draft, (draft.status.attempts or 0) + 1, "Submitting", "submitting the arena job")
    return True


def _job_not_shown(draft: _Draft) -> bool:
    status, job = draft.status, draft.obs.job
    assert job is not None
    if job.found:
        return False
    if status.job_accepted is not False and status.phase in (Phase.RUNNING, Phase.RECOVERING):
        # It ran, and the dashboard no longer knows it: the head was replaced.
        _head_replaced(draft)
    else:
        # Recorded and never shown by Ray (its POST failed, or the operator stopped between
        # recording and sending it): the same id again, never a new attempt beside it. Also
        # from Running (a re-submission after a failed run keeps the phase): only a job Ray
        # showed can vanish with the head.
        assert status.job_id is not None
        draft.act(Submit(status.attempts or 1, status.job_id))
        draft.set_condition(cond.JOB_RUNNING, None, "Submitting", f"submitting job {status.job_id}")
    return True


def _head_replaced(draft: _Draft) -> None:
    """First the workers must be part of the new Ray cluster (a job started on a bare head waits
    for resources and fails); then a new attempt, not counted against backoffLimit, that resumes
    from what was counted."""
    status, rejoin = draft.status, draft.obs.rejoin
    if (rejoin is not None and (rejoin.orphans or rejoin.joined < rejoin.wanted)
            and rejoin.waited_s < REJOIN_TIMEOUT_S):
        if rejoin.orphans:
            draft.act(RestartWorkers(rejoin.orphans))
        what = (f"restarting {len(rejoin.orphans)} worker pod(s) the lost head left behind "
                f"({', '.join(name for name, _ in rejoin.orphans)}); " if rejoin.orphans else "")
        msg = (f"the Ray head was replaced; {what}{rejoin.joined} of {rejoin.wanted} worker(s) joined the new head; "
               f"the job is re-submitted once they have (at most {REJOIN_TIMEOUT_S:.0f}s)")
        draft.set_condition(cond.DEGRADED, True, "HeadLost", msg)
        draft.set_phase(Phase.RECOVERING, "WaitingForWorkers", msg)
        draft.decision.wake_within(2.0)
        return
    status.head_restarts = (status.head_restarts or 0) + 1
    draft.set_condition(cond.DEGRADED, True, "HeadLost", f"job {status.job_id} vanished with the Ray head; re-submitting")
    _submit(draft, (status.attempts or 0) + 1, "HeadLost", "the Ray head was lost; re-submitting the job to resume")


def _job_outcome(draft: _Draft) -> None:
    """The job Ray shows: running (or being repaired), succeeded, or a failed run."""
    job = draft.obs.job
    assert job is not None
    _fold_record(draft, job.record)
    if _active(job):
        _job_running(draft, job)
    elif job.status == "SUCCEEDED" and job.record is not None and job.record.state.value == "succeeded":
        _job_succeeded(draft, job)
    else:  # FAILED, STOPPED (not by us) or SUCCEEDED without a final record: the run failed.
        _job_failed(draft, job)


def _job_running(draft: _Draft, job: JobView) -> None:
    draft.set_condition(cond.JOB_RUNNING, True, "Running", f"job {job.submission_id} is {job.status}")
    if _recovering(draft):
        return
    draft.set_condition(cond.DEGRADED, False, "Healthy", "no loss being repaired")
    progress = draft.status.progress
    draft.set_phase(Phase.RUNNING, "Running", f"{progress.episodes_completed}/{progress.episodes_total} episodes"
                    if progress else f"job {job.submission_id} running")


def _job_succeeded(draft: _Draft, job: JobView) -> None:
    results = draft.status.results
    draft.act(WriteResults(final=True))
    draft.set_condition(cond.JOB_RUNNING, False, "Succeeded", f"job {job.submission_id} finished")
    draft.set_condition(cond.DEGRADED, False, "Healthy", "finished")
    leader = results.leaderboard[0].policy if results and results.leaderboard else "?"
    early = results.stopped_early if results else None
    if early is None:
        draft.set_phase(Phase.SUCCEEDED, "Succeeded", f"all episodes counted; leader {leader}")
        return
    # spec.stopping decided the leaderboard before the plan ran out
    draft.set_condition(cond.STOPPED_EARLY, True, early.reason, early.message)
    draft.set_phase(Phase.SUCCEEDED, "Succeeded",
                    f"stopped early ({early.reason}): {early.episodes_saved} of {early.episodes_planned} episodes "
                    f"saved; leader {leader}")


def _job_failed(draft: _Draft, job: JobView) -> None:
    status, spec, record = draft.status, draft.spec, job.record
    why = (record.message if record and record.message else None) or job.message or f"job {job.status}"
    draft.set_condition(cond.JOB_RUNNING, False, "JobFailed", why)
    if record is not None and record.reason is FailureReason.INVALID_SPEC:
        draft.set_phase(Phase.FAILED, "InvalidSpec", why)
        return
    failures = (status.failures or 0) + 1
    status.failures = failures
    draft.act(WriteResults(final=False))
    if failures > spec.backoff_limit:
        draft.set_phase(Phase.FAILED, "BackoffLimitExceeded",
                        f"{failures} failed runs, more than spec.backoffLimit ({spec.backoff_limit}); last: {why}")
        return
    attempts = status.attempts or 0
    msg = f"run {failures} of at most {spec.backoff_limit + 1} failed ({why}); re-submitting, resuming from what was counted"
    _submit(draft, attempts + 1, "Resubmitting", msg)
    # The phase may stay Running: say why the attempt failed in an Event (and the operator log) too.
    draft.decision.event = Event("Warning", "Resubmitting",
                                 f"attempt {attempts} failed ({failures} of at most {spec.backoff_limit + 1}): {why}; "
                                 "re-submitting, resuming from what was counted")


# -- what the gates share -----------------------------------------------------------------------------

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


def _fold_record(draft: _Draft, record: JobStatusRecord | None) -> None:
    """What the job reported -> progress, recoveries and the head of the leaderboard."""
    if record is None:
        return
    status = draft.status
    status.progress = record.progress
    status.recoveries = record.recoveries
    if record.last_recovery is not None:
        status.last_recovery = record.last_recovery
    if record.results is not None:
        status.results = status_results(record.results, draft.configmap)


def _active(job: JobView) -> bool:
    return job.found and job.status in ACTIVE_JOB


def _cluster_exists(obs: Observation) -> bool:
    return obs.cluster is not None and obs.cluster.exists


def stop_pending(status: SwarmEvaluationStatus) -> bool:
    """A stop was sent and Ray has not confirmed it yet (the job may still run): the operator
    keeps asking, also once the phase is final."""
    c = cond.get(status.conditions, cond.JOB_RUNNING)
    return status.job_id is not None and c is not None and c.reason == STOPPING


def _confirmed_stopped(obs: Observation, sid: str) -> bool:
    if obs.cluster is not None and not obs.cluster.exists:
        return True  # its own Ray cluster is gone, and every job with it
    job = obs.job
    return (obs.dashboard_reachable and job is not None and job.submission_id == sid
            and (not job.found or job.status not in ACTIVE_JOB))


def _stop(draft: _Draft, why: str | None) -> bool:
    """True when no job of this evaluation runs (Ray says so); else a StopJob, JobRunning
    Unknown/Stopping (`why`, or the message it has), and a pass again in STOP_RETRY_S."""
    sid = draft.status.job_id
    if sid is None or _confirmed_stopped(draft.obs, sid):
        return True
    draft.act(StopJob(sid))
    if why is not None:
        draft.set_condition(cond.JOB_RUNNING, None, STOPPING,
                            f"stopping job {sid} ({why}); asked again until Ray says it stopped")
    draft.decision.wake_within(STOP_RETRY_S)
    return False


def _recovering(draft: _Draft) -> bool:
    """Lost workers -> one repair of their Ray nodes now (phase Recovering until it is done)."""
    obs = draft.obs
    heads = [loss for loss in obs.losses if loss.kind == "head"]
    workers = [loss for loss in obs.losses if loss.kind != "head"]
    if heads:
        what = "; ".join(loss.describe() for loss in heads)
        draft.set_condition(cond.DEGRADED, True, "HeadLost", what)
        draft.set_phase(Phase.RECOVERING, "HeadLost", f"{what}; re-submitting the job once the head is back")
        return True
    repairing = obs.repair is not None and _active(obs.repair)
    if workers and not repairing:
        what = "; ".join(loss.describe() for loss in workers)
        ids = tuple(sorted({loss.ray_node_id for loss in workers if loss.ray_node_id}))
        draft.act(Repair(ids, tuple(workers)))
        draft.set_condition(cond.DEGRADED, True, "WorkerLost", f"{what}; restarting its actors from their checkpoints")
        draft.set_phase(Phase.RECOVERING, "WorkerLost", f"{what}; restarting its actors from their checkpoints")
        return True
    if repairing:
        degraded = cond.get(draft.status.conditions, cond.DEGRADED)
        draft.set_phase(Phase.RECOVERING, "Repairing", degraded.message if degraded and degraded.message else "repairing")
        return True
    return False


def _submit(draft: _Draft, attempt: int, reason: str, message: str) -> None:
    sid = names.submission_id(draft.obs.uid, attempt)
    draft.status.job_id = sid
    draft.status.job_accepted = False
    draft.status.attempts = attempt
    draft.act(Submit(attempt, sid))
    draft.set_condition(cond.JOB_RUNNING, None, reason, f"{message} ({sid})")
    if draft.status.phase in _NOT_STARTED:
        # Running only once the dashboard shows the job: "it ran" is what tells a lost head apart
        # from a submission the operator recorded and never sent.
        draft.set_phase(Phase.PROVISIONING, reason, message)
