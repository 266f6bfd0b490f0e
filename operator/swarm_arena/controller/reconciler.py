"""One evaluation's reconcile pass: observe, `decide`, act. Called by its kopf daemon.

By concern: `_observe` gathers the `Observation` (the cluster, its dashboard, the job, pod losses);
what was counted is read and written by counted_results.py; the pure `decide` (decide.py) turns the
observation into a `Decision`; status_writer.py writes its status; `_act` carries out its actions.
`_reconcile` orders them (the final results before the phase that says they are there, status
before the actions).

Observing costs bounded work however long the run: the RayCluster comes from kopf's index (no
API call), the job from one dashboard GET, its progress from the last line of its status file,
and counted episodes from the lines added since the last pass.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import aiohttp
from pydantic import ValidationError

from swarm_arena.api import job_channel
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.status import Phase, Results, SwarmEvaluationStatus
from swarm_arena.api.validation import ManifestError, validate_manifest
from swarm_arena.controller import build_cluster, build_job, build_results, events, metrics, names
from swarm_arena.controller.counted_results import Counted, CountedResults
from swarm_arena.controller.dashboard import Dashboard, DashboardError, JobInfo, repair_on_head
from swarm_arena.controller.decide import (
    ACTIVE_JOB,
    FINISHED,
    ClusterView,
    Decision,
    DeleteCluster,
    EnsureCluster,
    Repair,
    JobView,
    Observation,
    StopJob,
    RejoinView,
    Taken,
    RestartWorkers,
    Submit,
    WriteResults,
    decide,
    status_results,
    stop_pending,
)
from swarm_arena.controller.kube import Kube, NamespaceTerminating, NotOurs, ownership
from swarm_arena.controller.losses import Loss, PodView, find_losses, orphaned_workers, summarize_pod  # noqa: F401
from swarm_arena.controller.addresses import Access, AddressBook
from swarm_arena.controller.settings import OperatorSettings
from swarm_arena.controller.status_writer import DETAIL_INTERVAL_S, Written, write_status  # noqa: F401 (DETAIL_INTERVAL_S: its users know it here)

log = logging.getLogger(__name__)


@dataclass
class RunMemory:
    """What observing and acting on the current run keep between passes: dropped, all of it, when
    the evaluation finishes (`Memory.forget_run`)."""

    unreachable_since: datetime | None = None
    seen: dict[str, PodView] = field(default_factory=dict)
    """pod uid -> its last alive view, while a job runs."""
    pending: dict[str, Loss] = field(default_factory=dict)
    """Losses not acted on yet."""
    ray_nodes: dict[str, str] = field(default_factory=dict)
    """pod IP -> Ray node id (alive), from the dashboard."""
    ray_nodes_at: float = 0.0
    repair_id: str | None = None
    restarted: set[str] = field(default_factory=set)
    """uids of worker pods deleted because a replaced head left them behind."""
    head_ip: str | None = None
    """The head pod's IP, where the job takes repair requests (a cluster the operator made)."""
    head_back_since: float | None = None
    """Monotonic time the replaced head first answered without the job (the re-submission waits
    for the workers to join it)."""


@dataclass
class Memory:
    """Per-evaluation state that only saves work: losing it (a restart) changes no decision.

    By concern: `run` (observing and acting on the current run), `counted` (the counted results),
    `written` (the status writer); the rest is about the object itself (its spec, its names, its
    namespace) and outlives the run."""

    run: RunMemory = field(default_factory=RunMemory)
    counted: Counted = field(default_factory=Counted)
    written: Written = field(default_factory=Written)
    namespace_terminating: bool = False
    """Its namespace is being deleted (the API server said so): it goes with it, nothing to do."""
    spec_seen: dict[str, Any] | None = None
    """The spec `validated` was made from: a pass validates again only when the spec changed."""
    validated: SwarmEvaluation | ManifestError | None = None
    taken: NotOurs | None = None
    """A child's name held by an object not ours, found on an earlier pass: checked again each
    pass (one GET) until it is gone."""
    too_large: str | None = None
    """Why the counted episodes no longer fit (TooManyEpisodes, ResumeTooLarge): the evaluation fails
    with it instead of retrying what cannot succeed."""
    results_final: bool = False
    """The results ConfigMap is known to be written with `final: true` (this operator wrote it,
    or read it so): a finished evaluation's first pass checks it once, and repairs it."""

    def forget_run(self) -> None:
        """The evaluation finished: drop what only its run needed (the counted episodes are in
        its final results ConfigMap). What is kept is small: the status last written, the
        validated spec, `results_final`."""
        self.run = RunMemory()
        self.counted = Counted()


WATCHED_WAIT_S = 30.0
"""How long a Provisioning evaluation whose RayCluster is not ready sleeps: the RayCluster's own
events wake it (handlers/rayclusters.py), so this is only a safety net. Polling it every
`poll_s` instead made 1,000 new evaluations cost 500 passes a second while they waited."""


def next_pass_in(decision: Decision, cluster: ClusterView | None, poll_s: float,
                 unreachable_s: float | None = None) -> float:
    """Seconds until an evaluation's next pass is due, unless a watch event wakes it sooner.

    `unreachable_s`: how long the dashboard has not answered; a new cluster's dashboard is asked
    again less often the longer it takes (a quarter of the wait so far, at least `poll_s`), so the
    job starts within about a quarter of the time the head took, and 1,000 heads coming up do not
    cost 1,000 probes every `poll_s`.
    """
    phase = decision.status.phase
    if phase is Phase.PROVISIONING and cluster is not None and not (cluster.exists and cluster.ready):
        wait = WATCHED_WAIT_S  # waiting on KubeRay: its RayCluster events wake the loop
    elif phase is Phase.PROVISIONING and unreachable_s is not None:
        wait = max(poll_s, unreachable_s / 4)  # its head is starting: capped by decide's requeue
    elif phase in (Phase.RUNNING, Phase.RECOVERING, Phase.PROVISIONING):
        wait = poll_s  # the job's progress, the dashboard coming up
    elif phase is Phase.SUSPENDED:
        wait = 2.0 if (cluster is not None and cluster.exists) or _has(decision, StopJob) else 30.0
    else:
        wait = 300.0
    if decision.requeue_s is not None:
        wait = min(wait, max(decision.requeue_s, 0.5))
    return wait


def _validated(memory: Memory, doc: dict[str, Any]) -> SwarmEvaluation | ManifestError:
    """`validate_manifest` of the evaluation (or why it is invalid), again only when its spec
    changed: about 0.8 ms a time, on every pass of every evaluation otherwise."""
    if memory.validated is None or memory.spec_seen != doc["spec"]:
        spec = copy.deepcopy(doc["spec"])
        try:
            memory.validated = validate_manifest(doc, check_imports=False)
            too_big = build_results.size_problems(memory.validated.spec)
            if too_big:  # what the operator cannot keep: refused before anything runs
                memory.validated = ManifestError(too_big)
        except ManifestError as exc:
            memory.validated = exc
        memory.spec_seen = spec
    return memory.validated


def cluster_view(summaries: list[dict[str, Any]], uid: str, name: str = "") -> ClusterView:
    if not summaries:
        return ClusterView(exists=False)
    s = summaries[0]
    owned = uid in s["owners"]
    previous = not owned and (s.get("deleting", False) or name in s.get("owner_evaluations", ()))
    return ClusterView(exists=True, owned=owned, ready=s["ready"], state=s["state"], reason=s["reason"],
                       previous_life=previous)


def summarize_ray_cluster(body: dict[str, Any]) -> dict[str, Any]:
    """What the operator's index keeps of a RayCluster (small: 1,000 of them stay cheap)."""
    status = body.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    provisioned = conditions.get("RayClusterProvisioned", {}).get("status") == "True"
    head_ready = conditions.get("HeadPodReady", {}).get("status", "True") == "True"
    state = status.get("state")
    ready = (state == "ready" or provisioned) and head_ready
    reason = None
    for c in conditions.values():
        if c.get("status") == "False" and c.get("reason"):
            reason = c["reason"]
            break
    owners = body.get("metadata", {}).get("ownerReferences") or []
    return {
        "owners": [o.get("uid") for o in owners],
        "owner_evaluations": [o.get("name") for o in owners if o.get("kind") == "SwarmEvaluation"],
        "deleting": bool(body.get("metadata", {}).get("deletionTimestamp")),
        "state": state,
        "ready": ready,
        "reason": reason,
        "head_ip": (status.get("head") or {}).get("podIP"),
        "created": body.get("metadata", {}).get("creationTimestamp"),
    }


@dataclass(frozen=True)
class Observed:
    """A pass's observation and what acting on its decision needs of it."""

    obs: Observation
    cluster: ClusterView | None
    dashboard: Dashboard | None
    address_mode: bool


class Reconciler:
    def __init__(self, settings: OperatorSettings, kube: Kube, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.kube = kube
        self.session = session
        self.addresses = AddressBook(settings.cluster_addresses_file, settings.ray_tokens_dir)
        self.counted = CountedResults(settings, kube)

    # -- observe -------------------------------------------------------------------------------------

    def address_dashboard(self, namespace: str, address: str, timeout_s: float | None = None) -> tuple[Dashboard | None, Access]:
        """An existing cluster's dashboard, only when the admin approved `address` for `namespace`
        (addresses.py): otherwise None, and no request is ever made to it."""
        access = self.addresses.access(namespace, address)
        if not access.allowed:
            return None, access
        kwargs = {"timeout_s": timeout_s} if timeout_s else {}
        return Dashboard(self.session, address, access.token, **kwargs), access

    def _dashboard(self, evaluation: SwarmEvaluation, uid: str, summary: dict[str, Any] | None) -> Dashboard | None:
        ns, name = evaluation.metadata.namespace, evaluation.metadata.name
        cluster = evaluation.spec.cluster
        if cluster is not None and cluster.address:
            return self.address_dashboard(ns, cluster.address)[0]
        token = names.ray_auth_token(self.settings.ray_auth_key, ns, name, uid)
        if self.settings.dashboard_via == "pod-ip":
            ip = summary.get("head_ip") if summary else None
            if not ip:
                return None
            url = f"http://{ip}:8265"
        else:
            url = f"http://{names.head_service_name(names.ray_cluster_name(name))}.{ns}.svc:8265"
        return Dashboard(self.session, url, token)

    async def _job_view(self, dashboard: Dashboard, sid: str) -> tuple[JobView, JobInfo | None]:
        info = await dashboard.job(sid)
        if info is None:
            return JobView(submission_id=sid, found=False), None
        record = None
        if info.driver_node_id:
            try:
                text = await dashboard.tail_file(info.driver_node_id, job_channel.status_file_name(sid), 1)
            except DashboardError as exc:
                if info.status not in ACTIVE_JOB:
                    raise  # its outcome is decided on its last record: ask again next pass
                # The job answered and runs: a log read that failed (the log agent restarting, a
                # slow node) leaves its progress as it was, never turns it into a lost head.
                log.info("job %s is %s; its status line could not be read (%s)", sid, info.status, exc)
                return JobView(sid, True, info.status, info.message, None), None  # type: ignore[arg-type]
            record = job_channel.last_status(text if text.endswith("\n") else text + "\n")
        return JobView(sid, True, info.status, info.message, record), info  # type: ignore[arg-type]

    # -- counted results (counted_results.py) --------------------------------------------------------

    async def _load_counted(self, memory: Memory, ns: str, name: str, uid: str) -> None:
        await self.counted.load(memory.counted, ns, name, uid)

    async def _sync_episodes(self, memory: Memory, dashboard: Dashboard, job: JobView, info: JobInfo | None) -> None:
        await self.counted.sync(memory.counted, dashboard, job, info)

    async def _write_results(self, evaluation: SwarmEvaluation, uid: str, status: SwarmEvaluationStatus,
                             memory: Memory, *, final: bool) -> None:
        await self.counted.write(evaluation, uid, status, memory.counted, final=final,
                                 drop=memory.too_large is not None)

    # -- the pass -----------------------------------------------------------------------------------

    async def reconcile(self, body: dict[str, Any], summaries: list[dict[str, Any]], memory: Memory,
                        pods: list[dict[str, Any]] | None = None, nodes_ready: dict[str, bool] | None = None) -> float:
        """One pass; returns seconds until the next one is due (pokes come sooner)."""
        started = time.monotonic()
        try:
            wait = await self._reconcile(body, summaries, memory, pods or [], nodes_ready or {})
        except (build_results.TooManyEpisodes, build_job.ResumeTooLarge) as exc:
            log.warning("%s/%s: %s", body["metadata"]["namespace"], body["metadata"]["name"], exc)
            memory.too_large = str(exc)
            wait = 0.5
        except NotOurs as exc:
            # Found creating or reading a child: the next pass (soon) says so in status, and waits.
            log.info("%s/%s: %s is not this evaluation's (%s); not using it", body["metadata"]["namespace"],
                     body["metadata"]["name"], exc.describe(), "an earlier one's" if exc.previous_life else "foreign")
            memory.taken = exc
            memory.counted = Counted()
            wait = 0.5
        except Exception:
            metrics.RECONCILES.labels(outcome="error").inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        metrics.RECONCILES.labels(outcome="ok").inc()
        return wait

    async def _reconcile(self, body: dict[str, Any], summaries: list[dict[str, Any]], memory: Memory,
                         pods: list[dict[str, Any]], nodes_ready: dict[str, bool]) -> float:
        meta = body["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        if meta.get("deletionTimestamp") or memory.namespace_terminating:
            # Deletion began: the delete handler stops the job and the children go by their owner
            # references; a pass now would only re-create what the garbage collector is deleting.
            return 300.0
        now = datetime.now(timezone.utc)
        try:
            # What this operator last wrote, when it wrote anything: kopf's body lags behind a
            # write by a watch event, and a pass in between would decide from the status before it
            # (at 1,000 new evaluations, that rewrote each one's startTime and conditions).
            stored = memory.written.last_status if memory.written.last_status is not None else body.get("status") or {}
            status = SwarmEvaluationStatus.model_validate(stored)
        except ValidationError:
            status = SwarmEvaluationStatus()
        doc = {"apiVersion": body["apiVersion"], "kind": body["kind"],
               "metadata": {"name": name, "namespace": ns}, "spec": body.get("spec") or {}}
        evaluation = _validated(memory, doc)
        if isinstance(evaluation, ManifestError):
            invalid = "; ".join(evaluation.problems)
            decision = decide(Observation(now, uid, meta.get("generation", 1), None, status, None, True,
                                          invalid=invalid))
            await write_status(self.kube, ns, name, uid, status, decision, memory.written)
            return 3600.0

        seen = await self._observe(evaluation, uid, meta.get("generation", 1), now, status, summaries, memory,
                                   pods, nodes_ready)
        spec, obs, cluster, dashboard, address_mode = evaluation.spec, seen.obs, seen.cluster, seen.dashboard, seen.address_mode
        repaired = False
        if status.phase in FINISHED and not memory.results_final:
            repaired = await self._ensure_final_results(evaluation, uid, status, memory, dashboard)
        decision = decide(obs)
        if address_mode:
            decision.status.ray_cluster_name, decision.status.dashboard_url = None, spec.cluster.address
        else:  # what a user reaches from inside the cluster (or port-forwards to)
            decision.status.ray_cluster_name = names.ray_cluster_name(name)
            decision.status.dashboard_url = (
                f"http://{names.head_service_name(names.ray_cluster_name(name))}.{ns}.svc:8265")
        if _has(decision, WriteResults) or memory.counted.dirty or repaired:
            cm_name = names.results_configmap_name(name)
            await self._load_counted(memory, ns, name, uid)  # what the ConfigMap kept, after a restart
            if memory.counted.results is not None:
                # The ConfigMap written in this pass and status come from the same full results
                # (the job's last record, or what the ConfigMap kept across an operator restart).
                decision.status.results = status_results(memory.counted.results, cm_name)
            elif decision.status.results is None:
                decision.status.results = Results(results_config_map=cm_name)
            else:
                decision.status.results.results_config_map = cm_name
        # A brand-new evaluation gets its status (observedGeneration, Ready=False) at once, so that
        # kstatus (Flux) never reads it as Current; afterwards the RayCluster comes before status,
        # which does not refer to it (at 1,000 new evaluations, each later status write first would
        # put all of them ahead of the clusters they wait for).
        new_evaluation = status.observed_generation is None
        if _has(decision, EnsureCluster) and not new_evaluation and not await self._ensure_cluster_unless_terminating(
                evaluation, uid, memory):
            return 300.0
        if decision.status.phase in FINISHED and status.phase not in FINISHED and _has(decision, WriteResults):
            # The final results before the phase that says they are there: a restart (or a failed
            # write) in between leaves a phase that is not final yet, and the next pass decides again.
            await self._write_results(evaluation, uid, decision.status, memory, final=True)
            memory.results_final = True
            decision.actions = [a for a in decision.actions if not isinstance(a, WriteResults)]
        # Status before the other actions: the submission id is recorded before the job is submitted.
        deferred = await write_status(self.kube, ns, name, uid, status, decision, memory.written)
        if _has(decision, EnsureCluster) and new_evaluation and not await self._ensure_cluster_unless_terminating(
                evaluation, uid, memory):
            return 300.0
        await self._act(evaluation, uid, decision, memory, dashboard)
        if _has(decision, Submit):  # a new attempt: the lost head it answers is handled
            for key in [k for k, loss in memory.run.pending.items() if loss.kind == "head"]:
                memory.run.pending.pop(key)
            memory.run.ray_nodes.clear()  # a new head may be a new Ray cluster: map the pods again
        if decision.status.phase in FINISHED and memory.results_final:
            memory.forget_run()
        unreachable_s = None if memory.run.unreachable_since is None else (now - memory.run.unreachable_since).total_seconds()
        wait = next_pass_in(decision, cluster, self.settings.poll_s, unreachable_s)
        return wait if deferred is None else min(wait, deferred)

    async def _observe(self, evaluation: SwarmEvaluation, uid: str, generation: int, now: datetime,
                       status: SwarmEvaluationStatus, summaries: list[dict[str, Any]], memory: Memory,
                       pods: list[dict[str, Any]], nodes_ready: dict[str, bool]) -> Observed:
        """What `decide` is given: the cluster, its dashboard, the job, pod losses, a repair or rejoin
        under way; and, while the job runs, the episodes it counted since the last pass."""
        ns, name = evaluation.metadata.namespace, evaluation.metadata.name
        spec = evaluation.spec
        address_mode = spec.cluster is not None and spec.cluster.address is not None
        summary = summaries[0] if summaries else None
        memory.run.head_ip = None if address_mode or summary is None else summary.get("head_ip")
        cluster = None if address_mode else cluster_view(summaries, uid, name)
        taken = None
        if memory.taken is not None:
            found = await self.kube.read(memory.taken.kind, ns, memory.taken.name)
            verdict = "gone" if found is None else ownership(found, uid, name)
            if verdict in ("gone", "ours"):
                log.info("%s/%s: %s is gone; going on", ns, name, memory.taken.describe())
                memory.taken = None
            else:
                taken = Taken(memory.taken.describe(), verdict == "previous")
        dashboard = None
        reachable, error, job, info = False, None, None, None
        refused = None
        if address_mode:
            assert spec.cluster is not None and spec.cluster.address is not None
            dashboard, access = self.address_dashboard(ns, spec.cluster.address)
            if not access.allowed:
                refused = (access.refused, access.message)
        elif cluster is not None and cluster.exists and cluster.owned:
            dashboard = self._dashboard(evaluation, uid, summary)
        # An unready cluster with no job yet is not asked: nothing is decided on its dashboard, and
        # every change of its RayCluster's status would otherwise cost a probe.
        waiting = cluster is not None and not cluster.ready and not status.job_id
        finished = status.phase in (Phase.SUCCEEDED, Phase.FAILED)
        if dashboard is not None and not waiting and (not finished or stop_pending(status)):
            try:
                if status.job_id:
                    job, info = await self._job_view(dashboard, status.job_id)
                else:
                    await dashboard.version()
                reachable = True
                memory.run.unreachable_since = None
            except DashboardError as exc:
                error = str(exc)
                memory.run.unreachable_since = memory.run.unreachable_since or now
        elif dashboard is None and cluster is not None and cluster.exists and status.job_id:
            memory.run.unreachable_since = memory.run.unreachable_since or now
            error = "the head pod has no IP yet"

        if job is not None and job.found and dashboard is not None and not finished:
            await self._load_counted(memory, ns, name, uid)
            if job.record is not None and job.record.results is not None:
                memory.counted.results = job.record.results.model_copy(deep=True)
            try:
                await self._sync_episodes(memory, dashboard, job, info)
            except DashboardError as exc:
                log.warning("%s/%s: could not read counted episodes yet: %s", ns, name, exc)

        repair = None
        if status.phase in (Phase.RUNNING, Phase.RECOVERING) and not address_mode:
            self._track_pods(memory, [PodView(**p) for p in pods], nodes_ready)
            if reachable and dashboard is not None:
                await self._map_ray_nodes(memory, dashboard, pods)
                if memory.run.repair_id:
                    repair, _ = await self._job_view(dashboard, memory.run.repair_id)
                    if not repair.found or repair.status not in ("PENDING", "RUNNING"):
                        log.info("%s/%s: repair job %s %s", ns, name, memory.run.repair_id, repair.status)
                        memory.run.repair_id = None
        else:
            memory.run.seen.clear()
            memory.run.pending.clear()
        rejoin = None
        if (job is not None and not job.found and dashboard is not None and not address_mode
                and status.phase in (Phase.RUNNING, Phase.RECOVERING)):
            rejoin = await self._rejoin_view(spec, dashboard, pods, memory)
        else:
            memory.run.head_back_since = None
        losses = tuple(Loss(**{**loss.__dict__, "ray_node_id": memory.run.ray_nodes.get(loss.ip or "")})
                       for loss in memory.run.pending.values())
        obs = Observation(
            now=now, uid=uid, generation=generation, spec=spec, status=status, cluster=cluster,
            dashboard_reachable=reachable, dashboard_error=error, job=job,
            unreachable_since=memory.run.unreachable_since, losses=losses, repair=repair, rejoin=rejoin, taken=taken,
            address_refused=refused,
            too_large=memory.too_large,
        )
        return Observed(obs, cluster, dashboard, address_mode)

    async def _rejoin_view(self, spec, dashboard: Dashboard, pods: list[dict[str, Any]],
                           memory: Memory) -> RejoinView | None:
        """The new head's Ray workers against the pods: who joined, who was left behind."""
        try:
            nodes = await dashboard.nodes()
        except DashboardError as exc:
            log.debug("could not list Ray nodes: %s", exc)
            return None
        now = time.monotonic()
        if memory.run.head_back_since is None:
            memory.run.head_back_since = now
        alive = {n["node_ip"] for n in nodes if n.get("state") == "ALIVE" and n.get("node_ip")}
        joined = sum(1 for n in nodes if n.get("state") == "ALIVE" and not n.get("is_head_node"))
        groups = spec.cluster.worker_groups if spec.cluster is not None else []
        autoscaling = spec.cluster is not None and spec.cluster.autoscaling
        wanted = sum(g.min_replicas if autoscaling else g.replicas for g in groups)
        orphans = orphaned_workers([PodView(**p) for p in pods], alive)
        return RejoinView(joined=joined, wanted=wanted, orphans=tuple((p.name, p.uid) for p in orphans),
                          waited_s=now - memory.run.head_back_since)

    def _track_pods(self, memory: Memory, pods: list[PodView], nodes_ready: dict[str, bool]) -> None:
        for loss in find_losses(memory.run.seen, pods, nodes_ready):
            memory.run.seen.pop(loss.uid, None)
            memory.run.pending[loss.uid] = loss
        for pod in pods:
            if pod.alive and pod.uid not in memory.run.pending and nodes_ready.get(pod.node or "", False):
                memory.run.seen[pod.uid] = pod

    async def _map_ray_nodes(self, memory: Memory, dashboard: Dashboard, pods: list[dict[str, Any]]) -> None:
        """Pod IP -> Ray node id, refreshed (at most every 5 s) while a running pod's IP is unmapped."""
        unmapped = [p["ip"] for p in pods if p.get("ip") and p.get("phase") == "Running" and p["ip"] not in memory.run.ray_nodes]
        if not unmapped or time.monotonic() - memory.run.ray_nodes_at < 5.0:
            return
        memory.run.ray_nodes_at = time.monotonic()
        try:
            nodes = await dashboard.nodes()
        except DashboardError as exc:
            log.debug("could not list Ray nodes: %s", exc)
            return
        for node in nodes:
            if node.get("state") == "ALIVE" and node.get("node_ip") and node.get("node_id"):
                memory.run.ray_nodes[node["node_ip"]] = node["node_id"]

    async def _act(self, evaluation: SwarmEvaluation, uid: str, decision: Decision, memory: Memory, dashboard: Dashboard | None) -> None:
        ns, name = evaluation.metadata.namespace, evaluation.metadata.name
        for action in decision.actions:
            if isinstance(action, DeleteCluster):
                log.info("%s/%s: deleting its RayCluster (%s)", ns, name, action.why)
                await self.kube.delete_ray_cluster(ns, names.ray_cluster_name(name))
            elif isinstance(action, StopJob) and dashboard is not None:
                try:
                    await dashboard.stop(action.submission_id)
                except DashboardError as exc:
                    log.warning("%s/%s: could not stop job %s: %s", ns, name, action.submission_id, exc)
            elif isinstance(action, WriteResults):
                await self._write_results(evaluation, uid, decision.status, memory, final=action.final)
            elif isinstance(action, Submit) and dashboard is not None:
                await self._submit(evaluation, uid, action, memory, dashboard)
            elif isinstance(action, Repair) and dashboard is not None:
                await self._repair(evaluation, uid, decision, action, memory, dashboard)
            elif isinstance(action, RestartWorkers):
                for pod, pod_uid in action.pods:
                    memory.run.seen.pop(pod_uid, None)  # restarted on purpose: not a loss to repair
                    if pod_uid in memory.run.restarted:  # our watch has not seen the deletion yet
                        continue
                    memory.run.restarted.add(pod_uid)
                    if not self.settings.delete_pods:  # the chart's rbac.podDelete: false
                        events.post(ns, name, uid, "Warning", "WorkerLeftBehind",
                                    f"worker pod {pod} was left behind by the replaced Ray head and the operator "
                                    f"may not delete pods; delete it (kubectl -n {ns} delete pod {pod}) so that "
                                    "KubeRay creates one that joins the new head")
                    elif await self.kube.delete_pod(ns, pod, pod_uid):
                        log.info("%s/%s: deleted worker pod %s: the replaced head's Ray cluster does not know it",
                                 ns, name, pod)
                        events.post(ns, name, uid, "Normal", "RestartingWorker",
                                    f"worker pod {pod} was left behind by the replaced Ray head; deleted so "
                                    "that KubeRay creates one that joins the new head")
        if memory.counted.dirty and not _has(decision, WriteResults):
            await self._write_results(evaluation, uid, decision.status, memory,
                                      final=decision.status.phase in FINISHED)

    async def _ensure_cluster_unless_terminating(self, evaluation: SwarmEvaluation, uid: str, memory: Memory) -> bool:
        """`_ensure_cluster`; False when the namespace is being deleted (the evaluation goes with it:
        every pass until then, each of its pods deleted pokes one, would only be refused again)."""
        try:
            await self._ensure_cluster(evaluation, uid)
        except NamespaceTerminating:
            log.info("%s/%s: its namespace is being deleted; not creating its RayCluster",
                     evaluation.metadata.namespace, evaluation.metadata.name)
            memory.namespace_terminating = True
            return False
        return True

    async def _ensure_cluster(self, evaluation: SwarmEvaluation, uid: str) -> None:
        """The auth Secret, then the RayCluster whose pods read it; each created only if absent."""
        ns, name = evaluation.metadata.namespace, evaluation.metadata.name
        token = names.ray_auth_token(self.settings.ray_auth_key, ns, name, uid)
        await self.kube.create_if_absent(build_cluster.build_auth_secret(evaluation, uid, token))
        await self.kube.create_if_absent(build_cluster.build_ray_cluster(evaluation, uid, self.settings.ray_pods))

    async def _repair(self, evaluation: SwarmEvaluation, uid: str, decision: Decision, action: Repair, memory: Memory,
                      dashboard: Dashboard) -> None:
        import secrets

        ns, name = evaluation.metadata.namespace, evaluation.metadata.name
        job_id = decision.status.job_id or ""
        repair_id = f"{job_id}-repair-{secrets.token_hex(3)}"
        body = build_job.build_repair_submission(evaluation, job_id, repair_id, action.node_ids)
        lost = ", ".join(loss.describe() for loss in action.losses)
        for loss in action.losses:
            events.post(ns, name, uid, "Warning", "WorkerLost", f"{loss.describe()}; restarting its actors from their checkpoints")
        if memory.run.head_ip and action.node_ids:
            # The fast way: the job's own endpoint on the head (no job supervisor, no new driver).
            token = names.ray_auth_token(self.settings.ray_auth_key, ns, name, uid)
            try:
                replaced = await repair_on_head(self.session, memory.run.head_ip, token, action.node_ids)
            except DashboardError as exc:
                metrics.REPAIRS.labels(route="head", outcome="error").inc()
                log.info("%s/%s: the job on the head did not take the repair (%s); submitting a repair job", ns, name, exc)
            else:
                metrics.REPAIRS.labels(route="head", outcome="ok").inc()
                for loss in action.losses:
                    memory.run.pending.pop(loss.uid, None)
                log.info("%s/%s: repaired through the job on the head for %s: replaced %s", ns, name, lost,
                         ", ".join(replaced) or "nothing (already replaced)")
                return
        try:
            await dashboard.submit(body)
        except DashboardError:
            metrics.REPAIRS.labels(route="job", outcome="error").inc()
            raise
        metrics.REPAIRS.labels(route="job", outcome="ok").inc()
        memory.run.repair_id = repair_id
        for loss in action.losses:
            memory.run.pending.pop(loss.uid, None)
        log.info("%s/%s: repair %s submitted for %s", ns, name, repair_id, lost)

    async def _ensure_final_results(self, evaluation: SwarmEvaluation, uid: str, status: SwarmEvaluationStatus,
                                    memory: Memory, dashboard: Dashboard | None) -> bool:
        """A finished evaluation's results ConfigMap is final; one that is missing or not final
        (an operator before this rule, a write that failed, someone deleted it) is written again
        from what is left: the ConfigMap's records and results, the job's files while its cluster
        answers; never from status (its top rows). True when it was written again: status's results
        are then made from the same full results."""
        ns, name = evaluation.metadata.namespace, evaluation.metadata.name
        cm_name = status.results.results_config_map if status.results is not None else None
        if not cm_name:  # it finished before anything was counted (an invalid spec, a conflict)
            memory.results_final = True
            return False
        cm = await self.kube.read_configmap(ns, cm_name)
        if cm is not None and build_results.is_final(cm):
            memory.results_final = True
            return False
        memory.counted = Counted()
        try:
            await self._load_counted(memory, ns, name, uid)
        except NotOurs as exc:  # replaced by something else since: not ours to write over
            log.warning("%s/%s: %s is not this evaluation's; its results are not written again", ns, name,
                        exc.describe())
            memory.results_final = True
            return False
        if dashboard is not None and status.job_id:
            try:
                job, info = await self._job_view(dashboard, status.job_id)
                if job.found:
                    await self._sync_episodes(memory, dashboard, job, info)
                    if job.record is not None and job.record.results is not None:
                        memory.counted.results = job.record.results.model_copy(deep=True)
            except DashboardError as exc:
                log.info("%s/%s: the job's files are not readable (%s); repairing from what is kept", ns, name, exc)
        await self._write_results(evaluation, uid, status, memory, final=True)
        memory.results_final = True
        why = "missing" if cm is None else "not final"
        lost = "" if memory.counted.results is not None else (
            "; the job's results are no longer readable and the ConfigMap kept none, so it has no results")
        log.warning("%s/%s: the finished evaluation's results ConfigMap was %s; written again (%d episodes)%s",
                    ns, name, why, len(memory.counted.episodes), lost)
        events.post(ns, name, uid, "Warning", "ResultsRepaired",
                    f"results ConfigMap {cm_name} was {why}; written again with final: true "
                    f"({len(memory.counted.episodes)} episode records){lost}")
        return True

    async def _submit(self, evaluation: SwarmEvaluation, uid: str, action: Submit, memory: Memory, dashboard: Dashboard) -> None:
        await self._load_counted(memory, evaluation.metadata.namespace, evaluation.metadata.name, uid)
        counted = memory.counted
        resume = job_channel.ResumePayload(
            episodes=sorted(counted.episodes.values(), key=lambda r: r.episode), recoveries=counted.recoveries
        )
        # Packed once, off the event loop (20,000 records take seconds).
        encoded = await asyncio.to_thread(build_job.resume_text, resume)
        package = None
        if build_job.needs_package(evaluation, resume, encoded):
            # Too many for an environment variable: the job finds them in a package uploaded first.
            package = await asyncio.to_thread(build_job.build_resume_package, resume, encoded)
            if await dashboard.upload_package(package.uri, package.data):
                log.info("%s/%s: uploaded %d counted episodes as %s (%d KiB)", evaluation.metadata.namespace,
                         evaluation.metadata.name, len(resume.episodes), package.uri, len(package.data) // 1024)
        body = build_job.build_submission(evaluation, action.submission_id, action.attempt, resume, package,
                                          resume_encoded=encoded)
        started = time.monotonic()
        try:
            await dashboard.submit(body)
        except DashboardError:
            metrics.SUBMISSIONS.labels(outcome="error").inc()
            raise
        metrics.SUBMISSIONS.labels(outcome="ok").inc()
        metrics.SUBMISSION_SECONDS.observe(time.monotonic() - started)
        log.info("%s/%s: submitted job %s (attempt %d, %d episodes resumed)", evaluation.metadata.namespace,
                 evaluation.metadata.name, action.submission_id, action.attempt, len(resume.episodes))


def _has(decision: Decision, kind: type) -> bool:
    return any(isinstance(a, kind) for a in decision.actions)
