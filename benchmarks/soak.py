"""Soak: evaluations on process-backed pods under random faults, with the table of what happened
(issue 18 point 16; a script that prints a table, not a timed test; tests/operator/test_soak.py
is the short version in `make test`).

Each run: one SwarmEvaluation on an operator-made RayCluster of the test control plane
(tests/controlplane: real kube-apiserver+etcd, real KubeRay, pods as processes), faults injected
one after another at seeded random moments for --minutes (worker pod deleted, node killed, head
pod deleted, operator killed and restarted, API server restarted, a node cut off from the network
and reconnected; see tests/operator/soak.py), then the run goes on to its end. Every run must end
Succeeded with the leaderboard and agent-steps of the uninterrupted run (`swarm-arena run` of the
same manifest, computed once), every episode exactly once in the results ConfigMap's records, and
never two evaluation jobs PENDING/RUNNING at once on the Ray side. Prints a line per fault and the
tables; exits 1 if any run broke an invariant.

    .venv/bin/python benchmarks/soak.py --runs 1 --minutes 10 --episodes 120 --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

import psutil  # noqa: E402

from tests.controlplane import build as cpbuild  # noqa: E402
from tests.controlplane.plane import DEFAULT_PROCESS_NODES, ControlPlane, wait_for  # noqa: E402
from tests.operator.conftest import CRD_FILE, CRD_NAME, Evaluations, OperatorProcess  # noqa: E402
from tests.operator.soak import KINDS, Soak, check, reference_run, soak_manifest, table  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=10, help="how long faults are injected in each run")
    ap.add_argument("--episodes", type=int, default=120, help="episodes per run (2000 steps, 60 agents each)")
    ap.add_argument("--seed", type=int, default=1, help="run i uses seed+i for its fault schedule")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--gap", default="5,25", help="seconds between a recovery and the next fault: min,max")
    ap.add_argument("--cut", default="20,60", help="seconds a node stays cut off: min,max")
    args = ap.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    gap = tuple(float(x) for x in args.gap.split(","))
    cut = tuple(float(x) for x in args.cut.split(","))
    load_before = os.getloadavg()
    cp = ControlPlane(build_dir=cpbuild.build(), process_nodes=DEFAULT_PROCESS_NODES)
    cp.start()
    outcomes, problems, same = [], [], 0
    started = time.monotonic()
    try:
        cp.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        wait_for("CRD", lambda: cp.crds_established(CRD_NAME), 60)
        work = Path(cp.workdir) / "soak"
        work.mkdir()
        (work / "key").write_text(secrets.token_hex(32))
        (work / "tokens").mkdir()
        reference = None
        for i in range(args.runs):
            ns = f"soak-{i}-{secrets.token_hex(2)}"
            cp.kubectl("create", "namespace", ns)
            wait_for("default SA", lambda: cp.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0, 60)
            op = OperatorProcess(cp, work, [ns], work / "key", work / "tokens", label=f"-{i}")
            op.start()
            evals = Evaluations(cp, ns, op.tail)
            evals.operator = op
            store = Path("/var/tmp") / f"swarm-arena-soak-{ns}"
            doc = soak_manifest("soak", episodes=args.episodes, store=store)
            if reference is None:
                t = time.monotonic()
                reference = reference_run(doc, work)
                print(f"reference run (swarm-arena run, embedded Ray): {time.monotonic() - t:.0f}s, "
                      f"leaderboard {json.dumps(reference['results']['leaderboard'])}", flush=True)
            soak = Soak(cp, op, evals, "soak", doc, seed=args.seed + i, kinds=kinds, seconds=args.minutes * 60,
                        gap=gap, cut_for=cut, say=lambda line, i=i: print(f"run {i} {line}", flush=True))
            try:
                outcome = soak.run(reference_episodes=args.episodes)
            except Exception as exc:  # noqa: BLE001 - a run that broke: say so, keep its faults, go on
                print(f"run {i} FAILED: {type(exc).__name__}: {exc}\n{op.tail(120)}", flush=True)
                problems.append(f"run {i}: {type(exc).__name__}: {str(exc)[:500]}")
                op.kill()
                shutil.rmtree(store, ignore_errors=True)
                continue
            bad = check(outcome, reference)
            same += (outcome.status.get("results") or {}).get("leaderboard") == reference["results"]["leaderboard"]
            problems += [f"run {i}: {b}" for b in bad]
            outcomes.append(outcome)
            print(f"run {i}: {'OK' if not bad else 'BROKEN: ' + '; '.join(bad)}", flush=True)
            print(f"after {i + 1} run(s):\n{table(outcomes, same)}", flush=True)
            op.kill()
            cp.kubectl("delete", "namespace", ns, "--wait=false")
            shutil.rmtree(store, ignore_errors=True)
    finally:
        cp.stop()
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}; load average "
          f"{load_before[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
          f"{(time.monotonic() - started) / 60:.0f} min in all; seeds {args.seed}..{args.seed + args.runs - 1}")
    print(table(outcomes, same))
    for p in problems:
        print(f"PROBLEM {p}")
    return 1 if problems or len(outcomes) < args.runs else 0


if __name__ == "__main__":
    raise SystemExit(main())
