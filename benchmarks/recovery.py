"""Seconds from a lost Ray worker to stepping resumed: the operator's fast path against Ray's own
node-death detection alone, on the same operator-made RayCluster of process-backed pods.

For each way of losing a worker (`pod`: its pod deleted; `node`: its node killed abruptly) and each
path (`operator`: the operator sees the loss in its watches and asks the running job to restart
the lost actors at once; `ray`: the operator is stopped just before the loss, so only Ray's health
checks find it), --repeats times: an evaluation runs on two workers, the worker holding its
environment actor is lost, and the time from the loss to the recovery's end (`lastRecovery.time`,
written by the job when stepping resumed; pods are processes of this machine, so one clock) is
taken. Prints medians with the machine.

    .venv/bin/python benchmarks/recovery.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

import psutil  # noqa: E402

from swarm_arena.api import job_channel  # noqa: E402
from tests.controlplane import build as cpbuild  # noqa: E402
from tests.controlplane.plane import DEFAULT_PROCESS_NODES, ControlPlane, wait_for  # noqa: E402
from tests.operator.conftest import CRD_FILE, CRD_NAME, Evaluations, OperatorProcess  # noqa: E402
from tests.operator.test_real_clusters import dashboard, pod_holding, real_manifest  # noqa: E402


def last_recovery_from_job(evals: Evaluations, name: str) -> dict | None:
    """The job's own last status line, read through the dashboard (the operator may be down)."""
    sid = evals.status(name)["jobId"]
    job = dashboard(evals, name, f"/api/jobs/{sid}")
    node = job.get("driver_node_id")
    import urllib.parse

    query = urllib.parse.urlencode({"node_id": node, "filename": job_channel.status_file_name(sid), "lines": 1})
    rc = json.loads(evals.cp.kubectl("get", "raycluster", name, "-n", evals.ns, "-o", "json").stdout)
    import urllib.request

    from swarm_arena.controller import names

    token = names.ray_auth_token(evals.operator.key_file.read_bytes().strip(), evals.ns, name,
                                 evals.get(name)["metadata"]["uid"])
    req = urllib.request.Request(evals.cp.pod_url(rc["status"]["head"]["podIP"], 8265, f"/api/v0/logs/file?{query}"),
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        record = job_channel.last_status(r.read().decode() + "\n")
    return record.last_recovery.to_wire() if record and record.last_recovery else None


def one(cp: ControlPlane, op: OperatorProcess, how: str, path: str, round_: int) -> float | None:
    ns = f"rec-{how}-{path}-{round_}-{secrets.token_hex(2)}"
    cp.kubectl("create", "namespace", ns)
    wait_for("default SA", lambda: cp.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0, 60)
    op.namespaces = [ns]
    op.extra = ["--lease-namespace", ns]
    op.start()
    evals = Evaluations(cp, ns, op.tail)
    evals.operator = op
    name = "rec"
    doc = real_manifest(name, workers=2, episodes=3, max_steps=2000, agents=60)
    # One worker per process node (5 of a node's 8 CPUs each), so a killed node takes one worker
    # and the other has room for what was lost: what is timed is the recovery, not new capacity.
    doc["spec"]["cluster"]["workerGroups"][0]["resources"]["cpu"] = 5
    # The head on the (tainted) GPU process node: a lost worker never takes the head with it.
    doc["spec"]["cluster"]["head"].update({
        "nodeSelector": {"nvidia.com/gpu.present": "true"},  # a GPU process node (kwok's is tainted too)
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    })
    evals.apply(doc)
    evals.wait(name, "an episode running", lambda s: s.get("phase") == "Running" and (s.get("progress") or {}).get(
        "agentSteps", 0) > 0, timeout=400)
    victim = pod_holding(evals, name, "env-0")
    if path == "ray":
        op.kill()
    lost_at = datetime.now(timezone.utc)
    if how == "pod":
        cp.kubectl("delete", "pod", victim["metadata"]["name"], "-n", ns, "--grace-period=0", "--force", "--wait=false")
    else:
        cp.kill_node(victim["spec"]["nodeName"])
        cp.add_process_node(f"{victim['spec']['nodeName']}-{secrets.token_hex(2)}")
    seconds = None
    try:
        if path == "operator":
            last = evals.wait(name, "a recovery", lambda s: s.get("lastRecovery"), timeout=300)
        else:
            last = wait_for("a recovery (Ray alone)", lambda: last_recovery_from_job(evals, name), 300, interval=1.0)
        resumed = datetime.fromisoformat(last["time"].replace("Z", "+00:00"))
        seconds = (resumed - lost_at).total_seconds()
    except Exception as exc:  # noqa: BLE001 - report, go on
        print(f"  {how}/{path}/{round_}: {exc}", file=sys.stderr)
    if op.proc is None:
        op.start()
    cp.kubectl("delete", "namespace", ns, "--wait=false")
    op.kill()
    print(f"  {how:4s} {path:8s} round {round_}: {seconds if seconds is None else round(seconds, 2)} s", flush=True)
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--how", default="pod,node")
    args = ap.parse_args()
    cp = ControlPlane(build_dir=cpbuild.build(), process_nodes=DEFAULT_PROCESS_NODES)
    cp.start()
    results: dict[tuple[str, str], list[float]] = {}
    try:
        cp.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        wait_for("CRD", lambda: cp.crds_established(CRD_NAME), 60)
        work = Path(cp.workdir) / "bench"
        work.mkdir()
        (work / "key").write_text(secrets.token_hex(32))
        (work / "tokens").mkdir()
        op = OperatorProcess(cp, work, [], work / "key", work / "tokens")
        for how in args.how.split(","):
            for round_ in range(args.repeats):
                for path in ("operator", "ray"):
                    value = one(cp, op, how, path, round_)
                    if value is not None:
                        results.setdefault((how, path), []).append(value)
    finally:
        cp.stop()
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}; medians of {args.repeats}")
    print("| lost | operator fast path (s) | Ray's own detection alone (s) | speed-up |")
    print("|---|---:|---:|---:|")
    for how in args.how.split(","):
        fast, slow = results.get((how, "operator"), []), results.get((how, "ray"), [])
        f = statistics.median(fast) if fast else float("nan")
        s = statistics.median(slow) if slow else float("nan")
        print(f"| {'a deleted worker pod' if how == 'pod' else 'a killed node'} | {f:.1f} (n={len(fast)}) | "
              f"{s:.1f} (n={len(slow)}) | {s / f:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
