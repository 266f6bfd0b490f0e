"""What recording (spec.recording) costs a 10,000-agent foraging episode: the step, the chunk, the write.

The runtime's own environment actor (`EnvironmentWorker`, a Ray actor) steps foraging with two
policies stepped inside it (`greedy` and `random`, half the agents each), a chunk of
`--interval` steps at a time as the coordinator drives it; episodes alternate between recording
off and on (every step of every agent), so both see the same machine load. Per mode it reports
the step latency (the runtime's own per-step timer, which includes the recording hook), the
chunk round trip (which includes stacking the chunk's buffer and shipping it back), and the
episode's wall time; then what writing one recorded episode costs the coordinator's writer
thread (join, tables, Parquet bytes, file), which runs off the step path.

    .venv/bin/python benchmarks/recording_cost.py --agents 10000 --steps 500 --episodes 5
    .venv/bin/python benchmarks/recording_cost.py --runs --agents 10000 --steps 500 --episodes 2 --repeats 3

`--runs` measures whole runs instead (`run_evaluation` on a fresh embedded Ray per run, in a
process of its own, off and on alternating): the runtime's step p50/p99 and the run's wall time,
the coordinator's writer thread included.
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _task(episode: int, agents: int, start: int, stop: int, record: bool) -> Any:
    from swarm_arena.arena.episode import EpisodeTask, ShardPart

    half = agents // 2
    split = {"greedy": tuple(range(half)), "random": tuple(range(half, agents))}
    parts = tuple(
        ShardPart(name=f"bench/{p}", handle=None, policy=p, agent_indices=ix, seed=episode, factory=p, params={})
        for p, ix in split.items()
    )
    return EpisodeTask(episode=episode, seed=1000 + episode, pairing={"all": "greedy,random"}, policy_agents=split,
                       shards=parts, start_step=start, stop_at=stop, recording=() if record else None)  # fmt: skip


def play(worker: Any, episode: int, agents: int, steps: int, interval: int, record: bool) -> dict[str, Any]:
    import ray

    from swarm_arena.arena.recording.buffer import join_segments

    latencies: list[float] = []
    chunks: list[float] = []
    segments = {}
    started = time.perf_counter()
    step = 0
    result = None
    while result is None or not result.done:
        sent = time.perf_counter()
        result = ray.get(worker.run.remote(_task(episode, agents, step, step + interval, record)))
        chunks.append(time.perf_counter() - sent)
        latencies.extend(result.latencies_s)
        if result.recording is not None:
            segments[result.recording.first_step] = result.recording
        step = result.step
    wall = time.perf_counter() - started
    assert step == steps, (step, steps)
    return {"latencies": latencies, "chunks": chunks, "wall": wall,
            "joined": join_segments(segments, steps) if record else None, "record": result.record}  # fmt: skip


def write_cost(joined: Any, record: dict[str, Any], agents: int, folder: Path) -> dict[str, float]:
    from swarm_arena.arena.checkpoint import open_files
    from swarm_arena.arena.recording import tables

    names = [f"agent_{i}" for i in range(agents)]
    half = agents // 2
    split = {"greedy": tuple(range(half)), "random": tuple(range(half, agents))}
    t0 = time.perf_counter()
    returns = tables.agent_returns(joined.rewards)
    assert tables.policy_returns(returns, split) == record["returns"]
    t1 = time.perf_counter()
    table = tables.steps_table(0, joined, names, split)
    t2 = time.perf_counter()
    data = tables.to_parquet(table)
    t3 = time.perf_counter()
    open_files(f"file://{folder}").write("steps/000000.parquet", data)
    t4 = time.perf_counter()
    return {"rows": table.num_rows, "bytes": len(data), "check_s": t1 - t0, "table_s": t2 - t1,
            "parquet_s": t3 - t2, "file_s": t4 - t3, "total_s": t4 - t0}  # fmt: skip


def hook_cost(agents: int, steps: int, interval: int) -> dict[str, float]:
    """In this process, no Ray: the step (observe the greedy half, act, `ArrayEnv.step`) against
    exactly what recording adds to it (`StepBuffer.append`) and to a chunk's end (`segment()`),
    each timed on its own, so the ratio holds on a loaded machine too."""
    from swarm_arena.arena.array_env import make_array_env
    from swarm_arena.arena.policies.base import make_policy
    from swarm_arena.arena.recording.buffer import StepBuffer

    env = make_array_env("foraging", {"agents": agents}, steps)
    half = np.arange(agents // 2)
    spaces = (env.observation_space(0), env.action_space(0))
    greedy = make_policy("greedy", {}, *spaces, seed=0)
    ids = [env.possible_agents[i] for i in half]
    rng = np.random.default_rng(0)
    env.reset(1)
    actions = np.zeros(agents, dtype=np.int64)
    step_s, hook_s, segment_s = [], [], []
    buffer = StepBuffer(0, (), interval)
    while not env.done:
        t0 = time.perf_counter()
        alive = env.alive
        actions[half] = greedy.act(env.observe(half), ids)
        actions[agents // 2 :] = rng.integers(0, 5, agents - agents // 2)
        outcome = env.step(actions)
        t1 = time.perf_counter()
        buffer.append(actions, outcome, alive)
        t2 = time.perf_counter()
        step_s.append(t1 - t0)
        hook_s.append(t2 - t1)
        if env.steps % interval == 0 or env.done:
            t3 = time.perf_counter()
            buffer.segment()
            segment_s.append(time.perf_counter() - t3)
            buffer = StepBuffer(env.steps, (), interval)
    return {"step_ms": 1000 * statistics.median(step_s), "hook_us": 1e6 * statistics.median(hook_s),
            "hook_share": sum(hook_s) / sum(step_s), "segment_ms": 1000 * statistics.median(segment_s),
            "segment_share": sum(segment_s) / sum(step_s)}  # fmt: skip


def whole_run(agents: int, steps: int, interval: int, episodes: int, record: str | None) -> dict[str, Any]:
    """One `run_evaluation` (what `swarm-arena run` calls) on a fresh embedded Ray, in this process."""
    from swarm_arena.api.resource import SwarmEvaluation
    from swarm_arena.arena.runner import run_evaluation

    spec: dict[str, Any] = {
        "environment": {"factory": "foraging", "params": {"agents": agents}, "maxSteps": steps},
        "policies": [{"name": "greedy", "factory": "greedy"}, {"name": "random", "factory": "random"}],
        "episodes": episodes,
        "checkpoint": {"intervalSteps": interval},
    }
    if record:
        spec["recording"] = {"storageURI": f"file://{record}"}
    evaluation = SwarmEvaluation.model_validate({"apiVersion": "arena.swarm.dev/v1alpha1", "kind": "SwarmEvaluation",
                                                 "metadata": {"name": f"bench-{os.getpid()}"}, "spec": spec})
    report = run_evaluation(evaluation)
    latency = report.results.step_latency_ms
    assert latency is not None
    return {"p50_ms": latency.p50, "p99_ms": latency.p99, "wall_s": report.wall_seconds,
            "recorded": report.results.recordings.count if report.results.recordings else 0}  # fmt: skip


def _in_process(function: Any, *args: Any) -> dict[str, Any]:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def runs_table(args: argparse.Namespace) -> None:
    rows: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for mode in ("off", "on") if repeat % 2 == 0 else ("on", "off"):  # neither always goes first
                record = f"{folder}/{repeat}" if mode == "on" else None
                rows[mode].append(_in_process(whole_run, args.agents, args.steps, args.interval, args.episodes, record))
                print(f"run {repeat} recording {mode}: {rows[mode][-1]}", file=sys.stderr)
    print(f"# whole runs (run_evaluation, embedded Ray): {args.agents:,} foraging agents, {args.episodes} episodes of "
          f"{args.steps} steps, medians of {args.repeats}")
    print()
    print("| recording | step p50 ms | step p99 ms | run wall s | episodes recorded |")
    print("|---|---:|---:|---:|---:|")
    medians = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in rows.items()}
    for mode, r in medians.items():
        print(f"| {mode} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['wall_s']:.2f} | {r['recorded']:.0f} |")
    off, on = medians["off"], medians["on"]
    print(f"| on / off | {on['p50_ms'] / off['p50_ms']:.3f} | {on['p99_ms'] / off['p99_ms']:.3f} | "
          f"{on['wall_s'] / off['wall_s']:.3f} | |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=200, help="maxSteps of each episode")
    parser.add_argument("--interval", type=int, default=100, help="checkpoint.intervalSteps: steps per chunk")
    parser.add_argument("--episodes", type=int, default=3, help="episodes per mode (alternating off, on)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", action="store_true",
                        help="instead: whole runs through run_evaluation, off and on, --repeats times each")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.runs:
        runs_table(args)
        return 0

    import ray

    from swarm_arena.arena.episode import EnvironmentWorker

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    worker = ray.remote(EnvironmentWorker).options(num_cpus=1).remote(
        "bench/env-0", "foraging", {"agents": args.agents}, args.steps
    )
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    play(worker, 99, args.agents, args.steps, args.interval, False)  # warm-up: imports, first allocations
    for e in range(args.episodes):
        for mode in ("off", "on") if e % 2 == 0 else ("on", "off"):  # neither always goes first
            runs[mode].append(play(worker, e, args.agents, args.steps, args.interval, mode == "on"))
            print(f"episode {e} recording {mode}: {runs[mode][-1]['wall']:.2f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        last = runs["on"][-1]
        write = write_cost(last["joined"], last["record"], args.agents, Path(folder))
    ray.shutdown()
    hook = hook_cost(args.agents, args.steps, args.interval)

    rows = {}
    for mode, plays in runs.items():
        latencies = np.concatenate([np.asarray(p["latencies"]) for p in plays]) * 1000
        rows[mode] = {
            "step_p50_ms": float(np.percentile(latencies, 50)),
            "step_p99_ms": float(np.percentile(latencies, 99)),
            "step_mean_ms": float(latencies.mean()),
            "chunk_ms": statistics.median(c * 1000 for p in plays for c in p["chunks"]),
            "episode_s": statistics.median(p["wall"] for p in plays),
        }
    if args.json:
        print(json.dumps({"rows": rows, "write": write, "hook": hook, "args": vars(args)}, indent=1))
        return 0
    print(f"# {args.agents:,} foraging agents, {args.steps} steps an episode, chunks of {args.interval}, "
          f"{args.episodes} episodes per mode; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print()
    print("| recording | step p50 ms | step p99 ms | step mean ms | chunk round trip ms (median) | episode s (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, r in rows.items():
        print(f"| {mode} | {r['step_p50_ms']:.2f} | {r['step_p99_ms']:.2f} | {r['step_mean_ms']:.2f} | "
              f"{r['chunk_ms']:.0f} | {r['episode_s']:.2f} |")
    off, on = rows["off"], rows["on"]
    print(f"| on / off | {on['step_p50_ms'] / off['step_p50_ms']:.3f} | {on['step_p99_ms'] / off['step_p99_ms']:.3f} | "
          f"{on['step_mean_ms'] / off['step_mean_ms']:.3f} | {on['chunk_ms'] / off['chunk_ms']:.3f} | "
          f"{on['episode_s'] / off['episode_s']:.3f} |")
    print()
    print("| what recording adds, timed on its own (one process, no Ray) | |")
    print("|---|---:|")
    print(f"| step without recording, median ms | {hook['step_ms']:.2f} |")
    print(f"| the per-step append, median µs | {hook['hook_us']:.1f} |")
    print(f"| appends / step time | {100 * hook['hook_share']:.2f} % |")
    print(f"| a chunk's segment() (hand-over: slices, actions compacted), median ms | {hook['segment_ms']:.1f} |")
    print(f"| segments / step time | {100 * hook['segment_share']:.2f} % |")
    print()
    print("| writing one recorded episode (writer thread, off the step path) | |")
    print("|---|---:|")
    print(f"| rows (agent-steps) | {write['rows']:,} |")
    print(f"| Parquet bytes (zstd) | {write['bytes']:,} ({write['bytes'] / write['rows']:.2f} B/row) |")
    for key, label in (("check_s", "returns check"), ("table_s", "Arrow table"), ("parquet_s", "Parquet encode"),
                       ("file_s", "file write"), ("total_s", "total")):
        print(f"| {label} s | {write[key]:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
