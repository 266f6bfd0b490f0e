"""Warm start and stop of the test control plane, with and without process nodes: a table.

    .venv/bin/python -m tests.controlplane.bench_start [--rounds 3]

Each round starts and stops one plane of each kind (binaries built: a warm build is a no-op), in
alternation so that both see the same machine load; the table shows medians and the load
average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from tests.controlplane import build as cpbuild
from tests.controlplane import procnet
from tests.controlplane.plane import DEFAULT_PROCESS_NODES, ControlPlane


def one(out, nodes) -> dict[str, float]:
    cp = ControlPlane(build_dir=out, process_nodes=nodes)
    cp.start()
    row = {"start (to all healthy)": cp.started_in or 0.0, **cp.timings}
    t = time.monotonic()
    cp.stop()
    row["stop"] = time.monotonic() - t
    if cp.network is not None:
        left = procnet.leftovers(cp.network.plane_id)
        assert not any(left.values()), left
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    out = cpbuild.build()
    kinds = {"kwok only": (), "kwok + 3 process nodes": DEFAULT_PROCESS_NODES}
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    loads = []
    for r in range(args.rounds):
        for kind, nodes in kinds.items():
            loads.append(os.getloadavg()[0])
            rows[kind].append(one(out, nodes))
            print(f"round {r + 1}/{args.rounds} {kind}: start {rows[kind][-1]['start (to all healthy)']:.1f}s "
                  f"(load {loads[-1]:.1f})", flush=True)
    keys = [k for k in rows["kwok + 3 process nodes"][0] if k in ("start (to all healthy)", "stop", "pod network")
            or k.startswith(("all nodes Ready", "kube-apiserver", "KubeRay CRDs served", "create"))]
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; load average during the runs: "
          f"min {min(loads):.1f}, median {statistics.median(loads):.1f}, max {max(loads):.1f}; "
          f"medians of {args.rounds} rounds (seconds)\n")
    print("| phase | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for k in keys:
        cells = [f"{statistics.median(r[k] for r in rows[kind] if k in r):.1f}" if any(k in r for r in rows[kind])
                 else "—" for kind in kinds]
        print(f"| {k} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
