"""How fast the operator turns SwarmEvaluations into RayClusters, against KubeRay's own RayJob.

On the real test control plane (kube-apiserver, etcd, scheduler, controller-manager, kwok fake
nodes, the real KubeRay operator; tests/controlplane), for each N in --counts:

* apply N SwarmEvaluations at once; time from the apply to each RayCluster existing, and to each
  evaluation's `ClusterReady` condition (KubeRay made the pods, kwok made them Running);
* the operator's RSS once all N are ClusterReady (the process and its children), and again once
  they are deleted;
* the CPU seconds each component (the operator, the API server, etcd, KubeRay, kwok, ...) spent
  from the apply until the batch's last RayCluster existed (the same window for both batches);
* in the same run, N KubeRay RayJobs applied at once: time from the apply to each RayCluster
  KubeRay creates for them.

Each N is run --repeats times with the two batches in alternating order, and every batch waits
for the one before it to be deleted entirely, so neither side pays for the other's clean-up.

Pods go to kwok's fake nodes (Ray never runs: this measures the control loop, not Ray). Their
fake IPs are routed nowhere while it runs (root), so the operator's probes of a head's dashboard
fail at once, as they do in a cluster before the head listens. Prints a
table (medians and p99 over the N objects) with the machine.

    .venv/bin/python benchmarks/operator_latency.py --counts 1,100,1000 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

import psutil  # noqa: E402

from tests.controlplane import build as cpbuild  # noqa: E402
from tests.controlplane.plane import (  # noqa: E402
    KWOK_NODE_SELECTOR, KWOK_TOLERATION, POD_CIDR, ControlPlane, wait_for,
)
from tests.operator.conftest import CRD_FILE, CRD_NAME, OperatorProcess  # noqa: E402

EXTRA_KWOK_NODES = 6
PODS_PER_NODE = "1000"


def kwok_pod_spec() -> dict[str, Any]:
    return {"nodeSelector": dict(KWOK_NODE_SELECTOR), "tolerations": [dict(KWOK_TOLERATION)]}


def evaluation(name: str) -> dict[str, Any]:
    placement = {"nodeSelector": dict(KWOK_NODE_SELECTOR), "tolerations": [dict(KWOK_TOLERATION)]}
    return {
        "apiVersion": "arena.swarm.dev/v1alpha1", "kind": "SwarmEvaluation", "metadata": {"name": name},
        "spec": {
            "environment": {"factory": "foraging", "params": {"agents": 40}},
            "policies": [{"name": "greedy", "factory": "greedy"}, {"name": "random", "factory": "random"}],
            "cluster": {
                "head": {"resources": {"cpu": 1, "memory": "1Gi"}, **placement},
                "workerGroups": [{"name": "cpu", "replicas": 1, "resources": {"cpu": 1, "memory": "1Gi"}, **placement}],
            },
        },
    }


def rayjob(name: str) -> dict[str, Any]:
    def template(container: str) -> dict[str, Any]:
        return {"spec": {"containers": [{"name": container, "image": "rayproject/ray:2.60.0",
                                         "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
                         **kwok_pod_spec()}}
    return {
        "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name},
        "spec": {
            "entrypoint": "python -c 'print(1)'",
            "submissionMode": "HTTPMode",
            "rayClusterSpec": {
                "rayVersion": "2.60.0",
                "headGroupSpec": {"rayStartParams": {}, "template": template("ray-head")},
                "workerGroupSpecs": [{"groupName": "cpu", "replicas": 1, "minReplicas": 0, "maxReplicas": 1,
                                      "rayStartParams": {}, "template": template("ray-worker")}],
            },
        },
    }


class Watcher:
    """First time (monotonic) each custom object of a kind in a namespace was seen, and when a
    predicate first held for it (a watch through the kubernetes client, re-opened when it ends)."""

    def __init__(self, cp: ControlPlane, group: str, version: str, namespace: str, plural: str,
                 done: Any = None) -> None:
        self.cp, self.where, self.done = cp, (group, version, namespace, plural), done
        self.seen: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from kubernetes import client, watch

        api = client.CustomObjectsApi(self.cp.api_client())
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(api.list_namespaced_custom_object, *self.where,
                                                  timeout_seconds=30):
                    obj = event["object"]
                    name = obj["metadata"]["name"]
                    now = time.monotonic()
                    self.seen.setdefault(name, now)
                    if self.done is not None and name not in self.ready and self.done(obj):
                        self.ready[name] = now
                    if self._stop.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - re-watch
                print(f"  watch {self.where[-1]}: {exc}; watching again", file=sys.stderr)
                self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()


def cluster_ready(obj: dict[str, Any]) -> bool:
    return any(c.get("type") == "ClusterReady" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def percentiles(values: list[float]) -> tuple[float, float]:
    import numpy as np

    if not values:
        return float("nan"), float("nan")
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def cpu_seconds(cp: ControlPlane, op: OperatorProcess | None) -> dict[str, float]:
    """User + system CPU seconds so far of each control-plane component and of the operator (each
    with its children)."""
    pids = dict(cp.pids())
    if op is not None and op.proc is not None:
        pids["operator"] = op.proc.pid
    out = {}
    for name, pid in pids.items():
        try:
            proc = psutil.Process(pid)
            out[name] = sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            continue
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def refuse_fake_pod_ips() -> bool:
    """Make kwok's fake pod IPs fail at once, as a head whose dashboard is not listening yet does.

    Nothing listens there; on a host whose network accepts any connection (this sandbox's does),
    every probe of a head's dashboard would instead hang until its timeout, and 1,000 of them
    would be measured as the operator's memory and CPU. Needs root (`ip route`); False otherwise.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print(f"  not root: probes of kwok's fake pod IPs ({POD_CIDR}) wait out their timeout", file=sys.stderr)
        return False
    r = subprocess.run(["ip", "route", "replace", "unreachable", POD_CIDR], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"  could not route {POD_CIDR} nowhere: {r.stderr.strip()}", file=sys.stderr)
    return r.returncode == 0


def apply_all(cp: ControlPlane, namespace: str, docs: list[dict[str, Any]]) -> float:
    text = "\n---\n".join(json.dumps(d) for d in docs)
    t0 = time.monotonic()
    cp.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=text, timeout=600)
    return t0


def _settle(cp: ControlPlane, namespace: str, timeout: float) -> None:
    """Delete a batch's namespace and wait until it is gone (its RayClusters and pods with it), so
    the next batch does not race the garbage collector for the API server."""
    cp.kubectl("delete", "namespace", namespace, "--wait=false")
    wait_for(f"namespace {namespace} gone",
             lambda: cp.kubectl("get", "namespace", namespace, check=False).returncode != 0, timeout, interval=1.0)


def run_operator(cp: ControlPlane, op: OperatorProcess, n: int, timeout: float) -> dict[str, Any]:
    ns = f"bench-{n}-{secrets.token_hex(2)}"
    cp.kubectl("create", "namespace", ns)
    wait_for("default ServiceAccount", lambda: cp.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0, 60)
    rc = Watcher(cp, "ray.io", "v1", ns, "rayclusters")
    ev = Watcher(cp, "arena.swarm.dev", "v1alpha1", ns, "swarmevaluations", cluster_ready)
    names = [f"e{i:04d}" for i in range(n)]
    cpu0 = cpu_seconds(cp, op)
    t0 = apply_all(cp, ns, [evaluation(x) for x in names])
    ok, cpu = True, {}
    try:
        wait_for(f"{n} RayClusters", lambda: len(rc.seen) >= n, timeout, interval=0.5)
        cpu = cpu_delta(cpu0, cpu_seconds(cp, op))  # the same window as the RayJob batch's
        wait_for(f"{n} ClusterReady", lambda: len(ev.ready) >= n, timeout, interval=0.5)
    except Exception as exc:  # noqa: BLE001 - report what was reached
        print(f"  N={n}: {exc}", file=sys.stderr)
        ok = False
    created = [rc.seen[x] - t0 for x in names if x in rc.seen]
    ready = [ev.ready[x] - t0 for x in names if x in ev.ready]
    memory = rss_mb(op.proc.pid)
    rc.stop(), ev.stop()
    _settle(cp, ns, timeout)
    return {"complete": ok, "created": percentiles(created), "ready": percentiles(ready), "rss_mb": memory,
            "rss_after_delete_mb": rss_mb(op.proc.pid), "counts": (len(created), len(ready)), "cpu": cpu}


def run_rayjobs(cp: ControlPlane, n: int, timeout: float) -> dict[str, Any]:
    """KubeRay's own RayJob, same N, same control plane: apply -> the RayCluster KubeRay makes."""
    jns = f"rayjob-{n}-{secrets.token_hex(2)}"
    cp.kubectl("create", "namespace", jns)
    jrc = Watcher(cp, "ray.io", "v1", jns, "rayclusters")
    cpu0 = cpu_seconds(cp, None)
    t1 = apply_all(cp, jns, [rayjob(f"j{i:04d}") for i in range(n)])
    try:
        wait_for(f"{n} RayJob RayClusters", lambda: len(jrc.seen) >= n, timeout, interval=0.5)
    except Exception as exc:  # noqa: BLE001
        print(f"  N={n} RayJob: {exc}", file=sys.stderr)
    jcreated = [t - t1 for t in jrc.seen.values()]
    cpu = cpu_delta(cpu0, cpu_seconds(cp, None))
    jrc.stop()
    _settle(cp, jns, timeout)
    return {"rayjob_created": percentiles(jcreated), "rayjob_count": len(jcreated), "rayjob_cpu": cpu}


def run_one(cp: ControlPlane, op: OperatorProcess, n: int, timeout: float, repeat: int) -> dict[str, Any]:
    """One repeat at N: the operator's batch and KubeRay's RayJob batch, in alternating order
    (even repeats the operator first), each on a quiet plane (the other's objects gone)."""
    if repeat % 2 == 0:
        ours = run_operator(cp, op, n, timeout)
        theirs = run_rayjobs(cp, n, timeout)
    else:
        theirs = run_rayjobs(cp, n, timeout)
        ours = run_operator(cp, op, n, timeout)
    row = {"n": n, "repeat": repeat, **ours, **theirs}
    first = "operator" if repeat % 2 == 0 else "RayJob"
    print(f"  N={n:<5} repeat {repeat} ({first} first): RayCluster p50 / p99 {row['created'][0]:.2f} / "
          f"{row['created'][1]:.2f} s, ClusterReady p50 / p99 {row['ready'][0]:.2f} / {row['ready'][1]:.2f} s, "
          f"RSS {row['rss_mb']:.0f} MB ({row['rss_after_delete_mb']:.0f} MB once deleted); "
          f"RayJob RayCluster p50 / p99 {row['rayjob_created'][0]:.2f} / {row['rayjob_created'][1]:.2f} s", flush=True)
    for label, cpu in (("operator batch", row["cpu"]), ("RayJob batch", row["rayjob_cpu"])):
        top = sorted(cpu.items(), key=lambda kv: -kv[1])
        print(f"    CPU s, {label}: " + ", ".join(f"{k} {v:.1f}" for k, v in top), flush=True)
    return row


def _median(rows: list[dict[str, Any]], key: str, i: int | None = None) -> float:
    import statistics

    values = [r[key] if i is None else r[key][i] for r in rows]
    return statistics.median(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1,100,1000")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--repeats", type=int, default=2,
                    help="repeats per N; the order of the two batches alternates (default 2)")
    args = ap.parse_args()
    counts = [int(x) for x in args.counts.split(",")]
    cp = ControlPlane(build_dir=cpbuild.build(), process_nodes=())
    cp.start()
    refused = refuse_fake_pod_ips()
    try:
        for i in range(EXTRA_KWOK_NODES):
            node = cp.node_manifest(f"kwok-bench-{i}")
            node["status"]["capacity"]["pods"] = node["status"]["allocatable"]["pods"] = PODS_PER_NODE
            node["status"]["capacity"]["cpu"] = node["status"]["allocatable"]["cpu"] = "2000"
            node["status"]["capacity"]["memory"] = node["status"]["allocatable"]["memory"] = "4000Gi"
            cp.kubectl("create", "-f", "-", input=json.dumps(node))
        cp.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        wait_for("CRD", lambda: cp.crds_established(CRD_NAME), 60)
        work = Path(cp.workdir) / "bench"
        work.mkdir()
        key = work / "key"
        key.write_text(secrets.token_hex(32))
        (work / "tokens").mkdir()
        op = OperatorProcess(cp, work, [], key, work / "tokens", ["--poll-seconds", "2", "--no-leader-election"])
        op.start()
        rows = [run_one(cp, op, n, args.timeout, r) for n in counts for r in range(args.repeats)]
        op.kill()
    finally:
        if refused:
            subprocess.run(["ip", "route", "del", "unreachable", POD_CIDR], check=False)
        cp.stop()
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}; medians over {args.repeats} repeats (order alternating) of each "
          "batch's p50 / p99")
    print("| evaluations | apply -> RayCluster p50 / p99 (s) | apply -> ClusterReady p50 / p99 (s) | "
          "operator RSS (MB): ready / deleted | KubeRay RayJob: apply -> RayCluster p50 / p99 (s) |")
    print("|---:|---:|---:|---:|---:|")
    for n in counts:
        batch = [r for r in rows if r["n"] == n]
        incomplete = [r for r in batch if not r["complete"] or r["rayjob_count"] < n]
        note = f" ({len(incomplete)} incomplete)" if incomplete else ""
        print(f"| {n:,}{note} | {_median(batch, 'created', 0):.2f} / {_median(batch, 'created', 1):.2f} | "
              f"{_median(batch, 'ready', 0):.2f} / {_median(batch, 'ready', 1):.2f} | {_median(batch, 'rss_mb'):.0f} / "
              f"{_median(batch, 'rss_after_delete_mb'):.0f} | "
              f"{_median(batch, 'rayjob_created', 0):.2f} / {_median(batch, 'rayjob_created', 1):.2f} |")
    print("\nCPU seconds per component from the apply to the batch's last RayCluster (medians):")
    parts = sorted({k for r in rows for k in (*r["cpu"], *r["rayjob_cpu"])})
    print("| evaluations | batch | " + " | ".join(parts) + " |")
    print("|---:|---|" + "---:|" * len(parts))
    for n in counts:
        batch = [r for r in rows if r["n"] == n]
        for label, key in (("operator", "cpu"), ("RayJob", "rayjob_cpu")):
            cells = [f"{_median([{'v': r[key].get(p, 0.0)} for r in batch], 'v'):.1f}" for p in parts]
            print(f"| {n:,} | {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
