"""Random faults against one evaluation on process-backed pods (issue 18 point 16): the engine of
benchmarks/soak.py (the table) and tests/operator/test_soak.py (the short version in `make test`).

One SwarmEvaluation runs on an operator-made RayCluster (the head pinned to the GPU process node,
two workers on the CPU process nodes, a durable file:// checkpoint store); while it runs, faults
are injected one at a time at seeded random times, each kind in turn from a shuffled cycle:

| kind | what happens |
|---|---|
| `worker-pod` | a Running worker pod deleted (grace 0, forced) |
| `node-kill` | the node of a worker killed abruptly (`ControlPlane.kill_node`), a fresh node joins |
| `head-pod` | the head pod deleted (the job is resubmitted, resuming from the durable checkpoint) |
| `operator` | the operator SIGKILLed, started again a few seconds later |
| `apiserver` | kube-apiserver stopped and started again (`ControlPlane.restart_apiserver`) |
| `node-cut` | the node of a worker cut off from the network for a while, then reconnected (`cut_node`) |

After each fault the soak waits (with a deadline) until the status shows more agent-steps than it
did before the fault: the seconds to that are the fault's time to recover. A sampler thread reads
the Ray jobs of the cluster every second or two and records the evaluation jobs (repair jobs
aside) that are PENDING or RUNNING together: never more than one may be. At the end the run must
be `Succeeded` with the leaderboard (and agent-steps) of the uninterrupted reference run, and the
results ConfigMap's records must hold every episode index exactly once.
"""

from __future__ import annotations

import json
import random
import secrets
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from swarm_arena.controller import build_results
from tests.controlplane.plane import ControlPlane, wait_for
from tests.operator.conftest import Evaluations, OperatorProcess, run_locally
from tests.operator.test_real_clusters import dashboard, pods, real_manifest

KINDS = ("worker-pod", "node-kill", "head-pod", "operator", "apiserver", "node-cut")
TERMINAL = ("Succeeded", "Failed")


def soak_manifest(name: str, episodes: int, store: Path, max_steps: int = 2000, agents: int = 60) -> dict[str, Any]:
    doc = real_manifest(name, workers=2, episodes=episodes, max_steps=max_steps, agents=agents,
                        checkpoint={"intervalSteps": 100, "storageURI": f"file://{store}"})
    doc["spec"]["execution"] = {"parallelEpisodes": 1}
    # The head on the (tainted) GPU process node: node faults take workers only; a lost head is
    # its own kind (head-pod).
    doc["spec"]["cluster"]["head"].update({
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    })
    return doc


def reference_run(doc: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """`swarm-arena run` of the same manifest on an embedded Ray, no faults, no durable store:
    the leaderboard and agent-steps every faulted run must end with."""
    local = json.loads(json.dumps(doc))
    local["spec"]["checkpoint"].pop("storageURI", None)
    return run_locally(local, workdir, timeout=3600)


@dataclass
class Fault:
    kind: str
    target: str
    at: float
    """Seconds since the soak started."""
    steps_before: int
    outage_s: float = 0.0
    """Seconds until the fault was over (the node reconnected, the operator or API server back)."""
    recovered_s: float | None = None
    """Seconds from the fault to the first status with more agent-steps than before it."""


@dataclass
class Outcome:
    faults: list[Fault]
    status: dict[str, Any]
    records: list[int]
    """Every episode index in the results ConfigMap's records, as stored (duplicates kept)."""
    max_running_jobs: int
    overlaps: list[str]
    submissions: dict[str, str]
    """Evaluation job submission id -> its attempt, as the Ray side saw them."""
    seconds: float
    episodes: int
    operator_exits: int = 0
    """Times the operator exited on its own (Lease not renewed) and was started again."""

    @property
    def lost(self) -> int:
        return len(set(range(self.episodes)) - set(self.records))

    @property
    def twice(self) -> int:
        return len(self.records) - len(set(self.records))


class JobSampler(threading.Thread):
    """Reads the cluster's Ray jobs every `interval` seconds; remembers the evaluation jobs seen
    and the most that were PENDING or RUNNING at once (errors while things are down: skipped)."""

    def __init__(self, evals: Evaluations, name: str, interval: float = 1.5) -> None:
        super().__init__(name="ray-jobs", daemon=True)
        self.evals, self.name, self.interval = evals, name, interval
        self.stop = threading.Event()
        self.max_running = 0
        self.overlaps: list[str] = []
        self.submissions: dict[str, str] = {}
        self.samples = 0

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                jobs = dashboard(self.evals, self.name, "/api/jobs/")
            except Exception:  # noqa: BLE001 - the head or the API server is down right now
                continue
            self.samples += 1
            ours = [j for j in jobs if "arena.swarm.dev/attempt" in (j.get("metadata") or {})]
            for j in ours:
                self.submissions[j["submission_id"]] = j["metadata"]["arena.swarm.dev/attempt"]
            running = [j for j in ours if j.get("status") in ("PENDING", "RUNNING")]
            self.max_running = max(self.max_running, len(running))
            if len(running) > 1:
                self.overlaps.append(f"{time.strftime('%H:%M:%S')}: " + ", ".join(
                    f"{j['submission_id']} (attempt {j['metadata']['arena.swarm.dev/attempt']}, {j['status']})"
                    for j in running))


class Soak:
    def __init__(self, cp: ControlPlane, op: OperatorProcess, evals: Evaluations, name: str, doc: dict[str, Any],
                 seed: int, kinds: tuple[str, ...] = KINDS, seconds: float = 600, gap: tuple[float, float] = (5, 25),
                 cut_for: tuple[float, float] = (20, 60), recover_timeout: float = 600, max_faults: int = 10**6,
                 say: Callable[[str], None] = print) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
        self.cp, self.op, self.evals, self.name, self.doc = cp, op, evals, name, doc
        self.rng = random.Random(seed)
        self.kinds, self.seconds, self.gap, self.cut_for = kinds, seconds, gap, cut_for
        self.recover_timeout = recover_timeout
        self.max_faults = max_faults
        self.say = say
        self.faults: list[Fault] = []
        self._op_lock = threading.Lock()
        self._done = threading.Event()
        self.operator_exits: list[str] = []
        self.new_nodes = 0
        self.t0 = 0.0

    # -- what the faults hit ------------------------------------------------------------------

    def _pods(self, node_type: str) -> list[dict[str, Any]]:
        """The cluster's Running pods of `node_type` on nodes that are up and connected (a killed
        node's pods look Running until the pod garbage collector removes them)."""
        up = {n["name"] for n in self.cp.process_nodes() if n["alive"] and not n["cut"]}
        return sorted((p for p in pods(self.evals, self.name)
                       if p["metadata"]["labels"].get("ray.io/node-type") == node_type
                       and p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
                       and p["spec"].get("nodeName") in up),
                      key=lambda p: p["metadata"]["name"])

    def _worker_node(self) -> str:
        heads = {p["spec"].get("nodeName") for p in self._pods("head")}
        nodes = sorted({p["spec"]["nodeName"] for p in self._pods("worker")} - heads)
        if not nodes:
            raise LookupError("no Running worker on a node without the head")
        return self.rng.choice(nodes)

    def _inject(self, kind: str) -> str:
        if kind in ("worker-pod", "head-pod"):
            victims = self._pods("worker" if kind == "worker-pod" else "head")
            if not victims:
                raise LookupError(f"no Running {kind.split('-')[0]} pod")
            pod = self.rng.choice(victims)["metadata"]["name"]
            self.cp.kubectl("delete", "pod", pod, "-n", self.evals.ns, "--grace-period=0", "--force", "--wait=false")
            return pod
        if kind == "node-kill":
            node = self._worker_node()
            self.cp.kill_node(node)
            self.new_nodes += 1
            # a replacement machine joins, under a name never used in this plane (a killed node's is not reused)
            self.cp.add_process_node(f"soak-{secrets.token_hex(3)}")
            return node
        if kind == "node-cut":
            node = self._worker_node()
            cut = self.rng.uniform(*self.cut_for)
            self.cp.cut_node(node)
            time.sleep(cut)  # the partition itself: how long the node stays cut off
            self.cp.reconnect_node(node)
            return f"{node} for {cut:.0f}s"
        if kind == "operator":
            down = self.rng.uniform(0, 8)
            with self._op_lock:
                self.op.kill()
                time.sleep(down)  # the outage itself
                self.op.start()
            return f"down {down:.0f}s"
        if kind == "apiserver":
            down = self.rng.uniform(1, 8)
            self.cp.restart_apiserver(down_for=down)
            return f"down {down:.0f}s"
        raise ValueError(kind)

    def _supervise(self) -> None:
        """Start the operator again whenever it exits, as the kubelet restarts the container of its
        Deployment: it exits on purpose when it cannot renew its Lease (an API server away for
        longer than the renew deadline), so that only one operator ever acts."""
        while not self._done.wait(1.0):
            with self._op_lock:
                proc = self.op.proc
                if proc is None or proc.poll() is None:
                    continue
                self.operator_exits.append(f"{self._now():.0f}s: exit {proc.returncode}")
                self.say(f"[{self._now():6.0f}s] the operator exited ({proc.returncode}): started again, as its "
                         "Deployment would")
                self.op.proc = None
                try:
                    self.op.start()
                except Exception as exc:  # noqa: BLE001 - e.g. not healthy yet while the API server is away: next round
                    self.say(f"[{self._now():6.0f}s] operator start: {type(exc).__name__}: {str(exc)[:200]}")

    # -- the run ------------------------------------------------------------------------------

    def _steps(self, s: dict[str, Any]) -> int:
        return int((s.get("progress") or {}).get("agentSteps") or 0)

    def _check_not_failed(self, s: dict[str, Any]) -> None:
        if s.get("phase") == "Failed":
            raise AssertionError(f"evaluation failed: {json.dumps(s.get('conditions'), indent=1)}")

    def run(self, reference_episodes: int) -> Outcome:
        ev = self.evals
        ev.apply(self.doc)
        self.t0 = time.monotonic()

        def started(s: dict[str, Any]) -> Any:
            self._check_not_failed(s)
            return s.get("phase") == "Running" and self._steps(s) > 0

        ev.wait(self.name, "stepping", started, timeout=900)
        self.say(f"[{self._now():6.0f}s] stepping; faults for {self.seconds:.0f}s from now")
        sampler = JobSampler(ev, self.name)
        sampler.start()
        supervisor = threading.Thread(target=self._supervise, name="operator-supervisor", daemon=True)
        supervisor.start()
        cycle: list[str] = []
        fault_until = time.monotonic() + self.seconds
        try:
            while time.monotonic() < fault_until and len(self.faults) < self.max_faults:
                time.sleep(self.rng.uniform(*self.gap))  # the random moment of the next fault
                status = ev.status(self.name)
                self._check_not_failed(status)
                if status.get("phase") in TERMINAL:
                    break
                if not cycle:
                    cycle = list(self.kinds)
                    self.rng.shuffle(cycle)
                kind = cycle.pop()
                before = self._steps(status)
                at = self._now()
                try:
                    target = self._inject(kind)
                except LookupError as exc:  # nothing to hit right now (e.g. workers still coming back)
                    self.say(f"[{at:6.0f}s] {kind}: skipped, {exc}")
                    cycle.append(kind)
                    continue
                fault = Fault(kind, target, at, before, outage_s=self._now() - at)
                self.faults.append(fault)

                # A head loss is over when the *new attempt* steps: the status first names a new jobId, then
                # shows more agent-steps than it did at that moment (the old attempt's last progress, folded in
                # when its loss is seen, would otherwise pass `before` at once and time only the status lag).
                new_job: dict[str, int] = {}
                job_before = status.get("jobId")

                def progressed(s: dict[str, Any], before: int = before, kind: str = kind) -> bool:
                    self._check_not_failed(s)
                    if s.get("phase") == "Succeeded":
                        return True
                    if kind != "head-pod":
                        return self._steps(s) > before
                    if s.get("jobId") in (None, job_before):
                        return False
                    new_job.setdefault("steps", max(before, self._steps(s)))
                    return self._steps(s) > new_job["steps"]

                ev.wait(self.name, f"progress after {kind} ({target})", progressed, timeout=self.recover_timeout)
                fault.recovered_s = self._now() - at
                self.say(f"[{at:6.0f}s] {kind:10s} {target}: progressing again after {fault.recovered_s:.1f}s")
            status = ev.wait_phase(self.name, "Succeeded", timeout=3600)
        finally:
            sampler.stop.set()
            sampler.join(10)
            self._done.set()
            supervisor.join(90)
        seconds = self._now()
        cm = ev.configmap(f"{self.name}-results")
        records = sorted(r.episode for r in build_results.episodes_from_configmap(cm))
        self.say(f"[{seconds:6.0f}s] {status['phase']}: attempts {status.get('attempts')}, recoveries "
                 f"{status.get('recoveries')}, {sampler.samples} job samples, most jobs at once {sampler.max_running}")
        return Outcome(self.faults, status, records, sampler.max_running, sampler.overlaps, sampler.submissions,
                       seconds, reference_episodes, len(self.operator_exits))

    def _now(self) -> float:
        return time.monotonic() - self.t0


def check(outcome: Outcome, reference: dict[str, Any]) -> list[str]:
    """What is wrong with a run (empty: nothing)."""
    s = outcome.status
    bad = []
    if s.get("phase") != "Succeeded":
        bad.append(f"phase {s.get('phase')}")
    if (s.get("results") or {}).get("leaderboard") != reference["results"]["leaderboard"]:
        bad.append(f"leaderboard {json.dumps((s.get('results') or {}).get('leaderboard'))} != reference "
                   f"{json.dumps(reference['results']['leaderboard'])}")
    if (s.get("progress") or {}).get("agentSteps") != reference["progress"]["agentSteps"]:
        bad.append(f"agentSteps {(s.get('progress') or {}).get('agentSteps')} != {reference['progress']['agentSteps']}")
    if outcome.lost or outcome.twice:
        bad.append(f"episodes lost {outcome.lost}, counted twice {outcome.twice}: records {outcome.records}")
    if outcome.max_running_jobs > 1:
        bad.append(f"two attempts running at once: {outcome.overlaps}")
    attempts = s.get("attempts") or 0
    if len(outcome.submissions) > attempts:
        bad.append(f"Ray saw {len(outcome.submissions)} evaluation jobs {outcome.submissions}, status attempts {attempts}")
    if sorted(int(a) for a in outcome.submissions.values()) != sorted(set(int(a) for a in outcome.submissions.values())):
        bad.append(f"one attempt submitted twice: {outcome.submissions}")
    if any(f.recovered_s is None for f in outcome.faults):
        bad.append("a fault without recovery")
    return bad


def table(outcomes: list[Outcome], same_leaderboard: int) -> str:
    """The markdown tables: per fault kind, injected, recovered, time to recover p50/p99; then the
    runs' totals (`same_leaderboard`: how many ended with the reference leaderboard)."""
    rows = ["| fault | injected | recovered | outage p50 (s) | time to recover p50 (s) | p99 (s) |",
            "|---|---:|---:|---:|---:|---:|"]
    for kind in KINDS:
        fs = [f for o in outcomes for f in o.faults if f.kind == kind]
        times = sorted(f.recovered_s for f in fs if f.recovered_s is not None)
        p50 = f"{statistics.median(times):.1f}" if times else "-"
        p99 = f"{_quantile(times, 0.99):.1f}" if times else "-"
        outage = f"{statistics.median(f.outage_s for f in fs):.1f}" if fs else "-"
        rows.append(f"| {kind} | {len(fs)} | {len(times)} | {outage} | {p50} | {p99} |")
    rows += ["", "| runs | Succeeded | leaderboard = reference | minutes | episodes | extra attempts "
             "| recoveries (status) | operator exits restarted | episodes lost | counted twice "
             "| most evaluation jobs running at once |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| {len(outcomes)} | {sum(o.status.get('phase') == 'Succeeded' for o in outcomes)} | {same_leaderboard} "
             f"| {sum(o.seconds for o in outcomes) / 60:.1f} | {sum(o.episodes for o in outcomes)} "
             f"| {sum((o.status.get('attempts') or 1) - 1 for o in outcomes)} "
             f"| {sum(o.status.get('recoveries') or 0 for o in outcomes)} | {sum(o.operator_exits for o in outcomes)} "
             f"| {sum(o.lost for o in outcomes)} "
             f"| {sum(o.twice for o in outcomes)} | {max((o.max_running_jobs for o in outcomes), default=0)} |"]
    return "\n".join(rows)


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted values."""
    import math

    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


