"""How fast the operator turns SwarmEvaluations into RayClusters, against KubeRay's own RayJob.

On the real test control plane (kube-apiserver, etcd, scheduler, controller-manager, kwok fake
nodes, the real KubeRay operator; tests/controlplane), for each N in --counts:

* apply N SwarmEvaluations at once; time from the apply to each RayCluster existing, and to each
  evaluation's `ClusterReady` condition (KubeRay made the pods, kwok made them Running);
* the operator's RSS once all N are ClusterReady (the process and its children);
* in the same run, N KubeRay RayJobs applied at once: time from the apply to each RayCluster
  KubeRay creates for them.

Pods go to kwok's fake nodes (Ray never runs: this measures the control loop, not Ray). Prints a
table (medians and p99 over the N objects) with the machine.

    .venv/bin/python benchmarks/operator_latency.py --counts 1,100,1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

import psutil  # noqa: E402

from tests.controlplane import build as cpbuild  # noqa: E402
from tests.controlplane.plane import KWOK_NODE_SELECTOR, KWOK_TOLERATION, ControlPlane, wait_for  # noqa: E402
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


def apply_all(cp: ControlPlane, namespace: str, docs: list[dict[str, Any]]) -> float:
    text = "\n---\n".join(json.dumps(d) for d in docs)
    t0 = time.monotonic()
    cp.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=text, timeout=600)
    return t0


def run_one(cp: ControlPlane, op: OperatorProcess, n: int, timeout: float) -> dict[str, Any]:
    ns = f"bench-{n}-{secrets.token_hex(2)}"
    cp.kubectl("create", "namespace", ns)
    wait_for("default ServiceAccount", lambda: cp.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0, 60)
    rc = Watcher(cp, "ray.io", "v1", ns, "rayclusters")
    ev = Watcher(cp, "arena.swarm.dev", "v1alpha1", ns, "swarmevaluations", cluster_ready)
    names = [f"e{i:04d}" for i in range(n)]
    t0 = apply_all(cp, ns, [evaluation(x) for x in names])
    ok = True
    try:
        wait_for(f"{n} RayClusters", lambda: len(rc.seen) >= n, timeout, interval=0.5)
        wait_for(f"{n} ClusterReady", lambda: len(ev.ready) >= n, timeout, interval=0.5)
    except Exception as exc:  # noqa: BLE001 - report what was reached
        print(f"  N={n}: {exc}", file=sys.stderr)
        ok = False
    created = [rc.seen[x] - t0 for x in names if x in rc.seen]
    ready = [ev.ready[x] - t0 for x in names if x in ev.ready]
    memory = rss_mb(op.proc.pid)
    rc.stop(), ev.stop()
    # KubeRay's RayJob, same N, same control plane
    jns = f"rayjob-{n}-{secrets.token_hex(2)}"
    cp.kubectl("create", "namespace", jns)
    jrc = Watcher(cp, "ray.io", "v1", jns, "rayclusters")
    t1 = apply_all(cp, jns, [rayjob(f"j{i:04d}") for i in range(n)])
    try:
        wait_for(f"{n} RayJob RayClusters", lambda: len(jrc.seen) >= n, timeout, interval=0.5)
    except Exception as exc:  # noqa: BLE001
        print(f"  N={n} RayJob: {exc}", file=sys.stderr)
    jcreated = [t - t1 for t in jrc.seen.values()]
    jrc.stop()
    for namespace in (ns, jns):
        cp.kubectl("delete", "namespace", namespace, "--wait=false")
    return {"n": n, "complete": ok, "created": percentiles(created), "ready": percentiles(ready),
            "rss_mb": memory, "rayjob_created": percentiles(jcreated), "counts": (len(created), len(ready), len(jcreated))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1,100,1000")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    counts = [int(x) for x in args.counts.split(",")]
    cp = ControlPlane(build_dir=cpbuild.build(), process_nodes=())
    cp.start()
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
        rows = [run_one(cp, op, n, args.timeout) for n in counts]
        op.kill()
    finally:
        cp.stop()
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}")
    print("| evaluations | apply -> RayCluster p50 / p99 (s) | apply -> ClusterReady p50 / p99 (s) | "
          "operator RSS (MB) | KubeRay RayJob: apply -> RayCluster p50 / p99 (s) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        c, rd, j = r["created"], r["ready"], r["rayjob_created"]
        note = "" if r["complete"] else f" (reached {r['counts'][0]}/{r['counts'][1]} of {r['n']})"
        print(f"| {r['n']:,}{note} | {c[0]:.2f} / {c[1]:.2f} | {rd[0]:.2f} / {rd[1]:.2f} | {r['rss_mb']:.0f} | "
              f"{j[0]:.2f} / {j[1]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
