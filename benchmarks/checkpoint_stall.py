"""What a checkpoint boundary costs the step after it, through `run_evaluation`.

Foraging with `greedy` + `random` (stepped in the environment actor, the defaults), one episode at
a time, a checkpoint every `--interval` steps, the memory store or a durable `file://` one. Every
step's latency is kept in order (the driver's metrics relay, one slot: chunks arrive in order), so
the first step of each chunk after the first (the one that carries the boundary's stall) is told
apart from the others. Each repeat is a fresh process with a fresh embedded Ray.

`--compare DIR` runs the same case on the source tree at DIR too (its `operator/` first on
PYTHONPATH, so the driver and Ray's workers import it), alternating with this tree in every repeat
so that a changing load weighs on both alike; the table gives each one's medians over repeats
and the ratio of this tree to DIR per repeat (median), with the 1-minute load average.

    .venv/bin/python benchmarks/checkpoint_stall.py --agents 1000 --steps 1000 --interval 100 --repeats 3
    git archive main operator | tar -x -C /tmp/main-tree
    .venv/bin/python benchmarks/checkpoint_stall.py --compare /tmp/main-tree --store file
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from typing import Any

FIGURES = ("boundary_p50_ms", "boundary_max_ms", "other_p50_ms", "p99_ms", "p999_ms", "max_ms", "agent_steps_per_s")


def _one(agents: int, steps: int, interval: int, episodes: int, store: str) -> dict[str, Any]:
    """One run in this process (called in a fresh one): its step latencies, split at the boundaries."""
    import numpy as np

    import swarm_arena
    from swarm_arena.api.resource import SwarmEvaluation
    from swarm_arena.arena.metrics import ArenaMetrics
    from swarm_arena.arena.runner import run_evaluation

    seen: list[float] = []
    observe = ArenaMetrics.observe_steps

    def keep(self: Any, latencies: list[float], agent_steps: int) -> None:
        seen.extend(latencies)
        observe(self, latencies, agent_steps)

    ArenaMetrics.observe_steps = keep  # type: ignore[method-assign]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        checkpoint: dict[str, Any] = {"intervalSteps": interval}
        if store == "file":
            checkpoint["storageURI"] = f"file://{folder}"
        spec = {
            "environment": {"factory": "foraging", "params": {"agents": agents, "max_cycles": steps}, "maxSteps": steps},
            "policies": [{"name": p, "factory": p} for p in ("greedy", "random")],
            "episodes": episodes,
            "checkpoint": checkpoint,
        }
        evaluation = SwarmEvaluation.model_validate({
            "apiVersion": "arena.swarm.dev/v1alpha1", "kind": "SwarmEvaluation",
            "metadata": {"name": f"stall-{os.getpid()}"}, "spec": spec,
        })  # fmt: skip
        report = run_evaluation(evaluation)
    ms = np.asarray(seen) * 1e3
    assert len(ms) == episodes * steps, f"{len(ms)} latencies for {episodes} x {steps} steps"
    first = np.zeros(len(ms), dtype=bool)
    for episode in range(episodes):
        first[episode * steps + interval : (episode + 1) * steps : interval] = True
    p99, p999 = np.percentile(ms, [99, 99.9])
    return {
        "boundary_p50_ms": float(np.median(ms[first])), "boundary_max_ms": float(ms[first].max()),
        "other_p50_ms": float(np.median(ms[~first])), "p99_ms": float(p99), "p999_ms": float(p999),
        "max_ms": float(ms.max()), "agent_steps_per_s": float(report.results.agent_steps_per_second or 0),
        "load": load, "source": os.path.dirname(swarm_arena.__file__),
    }  # fmt: skip


def _fresh(tree: str | None, args: argparse.Namespace) -> dict[str, Any]:
    from source_tree import run_in_fresh_interpreter

    return run_in_fresh_interpreter(tree, (
        f"from checkpoint_stall import _one; "
        f"print('RESULT' + json.dumps(_one({args.agents}, {args.steps}, {args.interval}, {args.episodes}, {args.store!r})))"))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000, help="maxSteps of every episode")
    parser.add_argument("--interval", type=int, default=100, help="checkpoint.intervalSteps")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--store", choices=("memory", "file"), default="memory")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", metavar="DIR", help="another source tree to run back to back")
    args = parser.parse_args(argv)
    trees: dict[str, str | None] = {"this tree": None}
    if args.compare:
        trees[args.compare] = args.compare
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
    for _ in range(args.repeats):
        for label, tree in trees.items():
            runs[label].append(_fresh(tree, args))
            print(f"{label}: {json.dumps(runs[label][-1])}", file=sys.stderr)
    print(f"\nforaging {args.agents}, greedy + random, {args.episodes} x {args.steps} steps, checkpoint every "
          f"{args.interval} ({args.store} store); medians of {args.repeats}\n")  # fmt: skip
    print("| tree | " + " | ".join(FIGURES) + " | load |")
    print("|---|" + "---:|" * (len(FIGURES) + 1))
    for label, group in runs.items():
        cells = [f"{statistics.median(r[k] for r in group):,.2f}" for k in (*FIGURES, "load")]
        print(f"| {label} ({group[0]['source']}) | " + " | ".join(cells) + " |")
    if args.compare:
        ours, theirs = runs["this tree"], runs[args.compare]
        ratios = [f"{statistics.median(a[k] / b[k] for a, b in zip(ours, theirs, strict=True)):.2f}" for k in FIGURES]
        print("| this tree / compared (median of per-repeat ratios) | " + " | ".join(ratios) + " | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
