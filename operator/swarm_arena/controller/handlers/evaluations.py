"""SwarmEvaluations: one daemon each runs the reconcile loop; events and deletion poke or end it."""

from __future__ import annotations

import asyncio
import copy
import logging

import kopf

from swarm_arena.api.resource import GROUP, PLURAL, VERSION
from swarm_arena.api.status import Phase
from swarm_arena.controller import conditions as cond
from swarm_arena.controller import events, metrics, names
from swarm_arena.controller.dashboard import Dashboard, DashboardError
from swarm_arena.controller.decide import ACTIVE_JOB, STOP_RETRY_S, STOPPING
from swarm_arena.controller.reconciler import Memory

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 60.0
STOP_ON_DELETE_TIMEOUT_S = 5.0
STOP_ON_DELETE_GIVE_UP_S = 60.0
"""How long a deleted evaluation on an existing cluster keeps trying to stop its job before its
finalizer is released anyway (with a Warning Event JobNotStopped)."""
SNAPSHOT_METADATA = ("name", "namespace", "uid", "generation", "creationTimestamp", "deletionTimestamp")


RUNNING_PHASES = (Phase.RUNNING.value, Phase.RECOVERING.value)
"""Phases whose pods and nodes wake the loop (status holds the phase as its string)."""


def poke(memo: kopf.Memo, namespace: str, name: str) -> None:
    """Wake the evaluation's loop now (its next pass sees what changed)."""
    uid = getattr(memo, "uids", {}).get((namespace, name))
    event = getattr(memo, "pokes", {}).get(uid)
    if event is not None:
        event.set()


def register(memo: kopf.Memo, namespace: str, name: str, uid: str) -> asyncio.Event:
    """The loop of this evaluation (this uid) is the one a poke by name wakes. By uid, not by name:
    when an evaluation is deleted and re-created under its name, the old loop's end must not take
    the new one's wake-ups with it."""
    memo.uids[namespace, name] = uid
    return memo.pokes.setdefault(uid, asyncio.Event())


def unregister(memo: kopf.Memo, namespace: str, name: str, uid: str) -> None:
    memo.pokes.pop(uid, None)
    memo.running.discard(uid)
    if memo.uids.get((namespace, name)) == uid:
        del memo.uids[namespace, name]


def poke_if_running(memo: kopf.Memo, namespace: str, name: str) -> None:
    """Wake the loop of a Running or Recovering evaluation (what its pods and nodes matter to: a
    lost one is repaired at once). Before that KubeRay's RayCluster status, which wakes it too,
    already says what its pods do: at 1,000 new evaluations their pods' events were 8,000 passes."""
    if getattr(memo, "uids", {}).get((namespace, name)) in getattr(memo, "running", ()):
        poke(memo, namespace, name)


def _snapshot(body: kopf.Body) -> dict:
    """What a pass reads of the evaluation, copied (kopf's body changes under a running pass).

    Not the whole body: its managedFields alone outweigh spec and status, and a deep copy of it
    on every pass of every evaluation was a fifth of the operator's CPU at 1,000 evaluations.
    """
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
        "metadata": {k: copy.deepcopy(meta[k]) for k in SNAPSHOT_METADATA if k in meta},
        "spec": copy.deepcopy(dict(body.get("spec") or {})),
        "status": copy.deepcopy(dict(body.get("status") or {})),
    }


async def _nap(stopped: kopf.DaemonStopped, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait(seconds))]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def evaluation_loop(
    stopped: kopf.DaemonStopped, body: kopf.Body, namespace: str, name: str, uid: str,
    memo: kopf.Memo, rayclusters: kopf.Index, ray_pods: kopf.Index, node_ready: kopf.Index | None = None, **_,
) -> None:
    wake = register(memo, namespace, name, uid)
    memory = memo.memories.setdefault(uid, Memory())
    backoff = 1.0
    try:
        while not stopped:
            wake.clear()
            try:
                nodes = {name: ready for name, values in (node_ready or {}).items() for ready in values}
                key = (namespace, name)
                wait = await memo.reconciler.reconcile(_snapshot(body), list(rayclusters.get(key, [])), memory,
                                                       list(ray_pods.get(key, [])), nodes)
                backoff = 1.0
                if (memory.written.last_status or {}).get("phase") in RUNNING_PHASES:
                    memo.running.add(uid)
                else:
                    memo.running.discard(uid)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one evaluation's trouble never stops the others
                log.warning("%s/%s: reconcile failed, retrying in %.0fs: %s: %s",
                            namespace, name, backoff, type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
                wait, backoff = backoff, min(backoff * 2, MAX_BACKOFF_S)
            await _nap(stopped, wake, wait)
    finally:
        unregister(memo, namespace, name, uid)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def evaluation_changed(type: str, namespace: str, name: str, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """A new generation (the spec changed: suspend, deadline, TTL) wakes the loop. The loop's own
    status writes do not: it already acted on what it wrote (each was a pass that did nothing).
    Deletion stops the loop through kopf."""
    key = (namespace, name)
    if type == "DELETED":
        memo.generations.pop(key, None)
        return
    generation = (body.get("metadata") or {}).get("generation")
    if memo.generations.get(key) != generation:
        memo.generations[key] = generation
        poke(memo, namespace, name)


def job_to_stop(body: dict) -> str | None:
    """The job a deleted evaluation may still run, read leniently from whatever its status holds
    (a status this operator's model refuses must never keep the evaluation in Terminating)."""
    status = body.get("status")
    if not isinstance(status, dict):
        return None
    job_id = status.get("jobId")
    if not isinstance(job_id, str) or not job_id:
        return None
    conditions = status.get("conditions") if isinstance(status.get("conditions"), list) else []
    stopping = any(isinstance(c, dict) and c.get("type") == cond.JOB_RUNNING and c.get("reason") == STOPPING
                   for c in conditions)
    if status.get("phase") in (Phase.SUCCEEDED.value, Phase.FAILED.value) and not stopping:
        return None  # finished, and its job with it
    return job_id


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def evaluation_deleted(
    body: kopf.Body, namespace: str, name: str, uid: str, memo: kopf.Memo, rayclusters: kopf.Index,
    retry: int = 0, started=None, **_,
) -> None:
    """Stop the job (an existing cluster keeps running without us); children go by owner references.

    Bounded, retried and visible. On a cluster the operator made, one try (the cluster goes with
    the evaluation). On an existing cluster (`cluster.address`) the stop is sent and confirmed,
    again every STOP_RETRY_S for up to STOP_ON_DELETE_GIVE_UP_S; then the finalizer is released
    anyway with a Warning Event naming the job that may still run. Nothing in here can raise
    forever: whatever goes wrong is a failed try.
    """
    memo.memories.pop(uid, None)
    metrics.set_phase(uid, None)
    job_id = job_to_stop(dict(body))
    if job_id is None:
        return
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    cluster = spec.get("cluster") if isinstance(spec.get("cluster"), dict) else {}
    address = cluster.get("address") if isinstance(cluster.get("address"), str) else None
    try:
        problem = await _stop_on_delete(memo, namespace, name, uid, job_id, address, rayclusters)
    except Exception as exc:  # noqa: BLE001 - a failed try, never a stuck finalizer
        log.warning("%s/%s: stopping job %s on delete failed", namespace, name, job_id, exc_info=True)
        problem = f"{type(exc).__name__}: {str(exc)[:300]}"
    if problem is None:
        return
    if address is None:
        log.info("%s/%s: job %s not stopped on delete (%s); its cluster goes with the evaluation",
                 namespace, name, job_id, problem)
        return
    elapsed = _elapsed_s(started)
    if elapsed >= STOP_ON_DELETE_GIVE_UP_S:
        message = (f"job {job_id} on {address} could not be stopped in {elapsed:.0f}s ({problem}); it may still "
                   f"run there: stop it with `ray job stop {job_id} --address {address}`")
        log.error("%s/%s: %s", namespace, name, message)
        events.post(namespace, name, uid, "Warning", "JobNotStopped", message)
        return
    message = f"stopping job {job_id} on {address} (try {retry + 1}): {problem}; trying again"
    events.post(namespace, name, uid, "Warning", "StoppingJob", message)
    raise kopf.TemporaryError(message, delay=STOP_RETRY_S)


def _elapsed_s(started) -> float:
    import datetime

    if started is None:
        return 0.0
    if started.tzinfo is None:
        started = started.replace(tzinfo=datetime.timezone.utc)
    return (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()


async def _stop_on_delete(memo: kopf.Memo, namespace: str, name: str, uid: str, job_id: str, address: str | None,
                          rayclusters: kopf.Index) -> str | None:
    """One try: None when Ray says the job does not run (any more), else what went wrong."""
    reconciler = memo.reconciler
    settings = reconciler.settings
    if address:
        dashboard, access = reconciler.address_dashboard(namespace, address, STOP_ON_DELETE_TIMEOUT_S)
        if dashboard is None:
            return access.message
    else:
        summaries = list(rayclusters.get((namespace, name), []))
        token = names.ray_auth_token(settings.ray_auth_key, namespace, name, uid)
        if settings.dashboard_via == "pod-ip":
            ip = summaries[0].get("head_ip") if summaries else None
            if not ip:
                return "the head pod has no IP"
            url = f"http://{ip}:8265"
        else:
            url = f"http://{names.head_service_name(names.ray_cluster_name(name))}.{namespace}.svc:8265"
        dashboard = Dashboard(memo.session, url, token, timeout_s=STOP_ON_DELETE_TIMEOUT_S)
    try:
        await asyncio.wait_for(dashboard.stop(job_id), STOP_ON_DELETE_TIMEOUT_S)
        job = await asyncio.wait_for(dashboard.job(job_id), STOP_ON_DELETE_TIMEOUT_S)
    except (DashboardError, asyncio.TimeoutError, ValueError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    if job is not None and job.status in ACTIVE_JOB:
        return f"Ray still reports it {job.status}"
    log.info("%s/%s: job %s stopped on delete", namespace, name, job_id)
    return None
