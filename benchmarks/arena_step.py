"""How fast does the arena step a swarm, and what does Ray cost over a plain loop?

Steps the built-in `foraging` environment at several agent counts and shard counts two ways:

- **ray**: the runtime's real actors on a local Ray: one `EnvironmentWorker` (owns the ArrayEnv,
  fans observations out to the shards each step) and `k` `PolicyShard` actors, driven through
  `EnvironmentWorker.run` exactly as the coordinator does;
- **plain**: the same ArrayEnv and the same `k` policy instances in one process, no Ray (the same
  work as the ray mode: what a user would write with PettingZoo alone, minus the per-agent
  dicts), in a fresh subprocess so its peak memory is its own;
- **limit**: the environment alone (`step_arrays` then `observe_arrays` for every agent, what a
  PettingZoo step returns) fed by one vectorised random draw per step, no policy: the
  environment's own speed, in a fresh subprocess.

Prints a table of p50/p99/p99.9/max step latency, agent-steps/s, peak memory (RSS of the driver
plus the Ray actor processes; the plain loop's own peak RSS), ray/plain ratios and every mode's
throughput as a fraction of the limit; medians over `--repeats`. The ray mode steps one chunk
(no checkpoint inside it): the runs benchmark (`--runs`) counts the steps across checkpoints. `--json` prints the rows as JSON instead; `--plot FILE.png` writes latency and
memory against agents.

    .venv/bin/python benchmarks/arena_step.py --agents 100,1000,10000 --shards 1,2,4 --plot perf.png

`--runs` (first argument) measures instead the runs users write, end to end through
`run_evaluation` with default settings, against the plain loop (benchmarks/arena_runs.py;
its options follow):

    .venv/bin/python benchmarks/arena_step.py --runs --plot docs/performance-arena-runs.png
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from swarm_arena.arena.runner import INLINE_ARG_BYTES


@dataclass(frozen=True)
class Run:
    """One measured run of one configuration."""

    mode: str  # "ray" | "plain"
    agents: int
    shards: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    agent_steps_per_s: float
    peak_rss_mb: float


def _env_params(agents: int, steps: int) -> dict[str, Any]:
    return {"agents": agents, "max_cycles": steps + 1}


def _split(agents: int, shards: int) -> list[np.ndarray]:
    return [part for part in np.array_split(np.arange(agents), shards) if part.size]


def _summary(mode: str, agents: int, shards: int, latencies: list[float], seconds: float, rss: float) -> Run:
    ms = np.asarray(latencies) * 1e3
    return Run(
        mode=mode,
        agents=agents,
        shards=shards,
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        p999_ms=float(np.percentile(ms, 99.9)),
        max_ms=float(ms.max()),
        agent_steps_per_s=agents * len(latencies) / seconds,
        peak_rss_mb=rss / 2**20,
    )


# ---- plain loop (no Ray) --------------------------------------------------------------------


def plain_loop(agents: int, shards: int, policy: str, steps: int, warmup: int, seed: int) -> Run:
    """The same env + policies in this process; called in a fresh subprocess (peak RSS is its own)."""
    from swarm_arena.arena.array_env import make_array_env
    from swarm_arena.arena.policies import make_policy

    env = make_array_env("foraging", _env_params(agents, warmup + steps), max_steps=warmup + steps)
    parts = _split(agents, shards)
    policies = [
        make_policy(policy, {}, env.observation_space(0), env.action_space(0), seed=seed + i) for i in range(len(parts))
    ]
    ids = [[env.possible_agents[i] for i in part] for part in parts]
    env.reset(seed)
    latencies = []
    began = 0.0
    while not env.done:
        if env.steps == warmup:
            began = time.perf_counter()
        started = time.perf_counter()
        actions = np.zeros(env.num_agents, dtype=np.int64)
        for part, pol, names in zip(parts, policies, ids, strict=True):
            actions[part] = pol.act(env.observe(part), names)
        env.step(actions)
        if env.steps > warmup:
            latencies.append(time.perf_counter() - started)
    seconds = time.perf_counter() - began
    # Not getrusage's ru_maxrss: Linux carries it across exec, so a spawned child would report
    # its parent's peak.
    return _summary("plain", agents, shards, latencies, seconds, _peak_rss(os.getpid()))


def plain_in_subprocess(*args: Any) -> Run:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(plain_loop, args)


def limit_loop(agents: int, shards: int, policy: str, steps: int, warmup: int, seed: int) -> Run:
    """The environment alone: one vectorised draw, `step_arrays`, every agent's observation."""
    from swarm_arena.arena.envs.foraging import ForagingEnv
    from swarm_arena.arena.policies.builtin import sample_actions

    env = ForagingEnv(**_env_params(agents, warmup + steps))
    space = env.action_space(env.possible_agents[0])
    rng = np.random.default_rng(seed)
    env.reset_arrays(seed)
    latencies = []
    began = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            began = time.perf_counter()
        started = time.perf_counter()
        env.step_arrays(sample_actions(space, agents, rng))
        env.observe_arrays()
        if step >= warmup:
            latencies.append(time.perf_counter() - started)
    seconds = time.perf_counter() - began
    return _summary("limit", agents, shards, latencies, seconds, _peak_rss(os.getpid()))


def limit_in_subprocess(*args: Any) -> Run:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(limit_loop, args)


# ---- the runtime's actors on Ray ------------------------------------------------------------


def _peak_rss(pid: int) -> float:
    """Peak RSS of a process (Linux VmHWM), else its current RSS."""
    import psutil

    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(psutil.Process(pid).memory_info().rss)


def ray_loop(agents: int, shards: int, policy: str, steps: int, warmup: int, seed: int) -> Run:
    """EnvironmentWorker + PolicyShard actors, stepped through EnvironmentWorker.run."""
    import psutil
    import ray

    from swarm_arena.arena.array_env import make_array_env
    from swarm_arena.arena.episode import EnvironmentWorker, EpisodeTask, ShardPart
    from swarm_arena.arena.naming import RAY_NAMESPACE, env_name, shard_name
    from swarm_arena.arena.shard import PolicyShard

    evaluation = f"bench/foraging-{agents}-{shards}-{time.monotonic_ns()}"
    total = warmup + steps
    # num_cpus=0: the point is the stepping cost, not Ray's CPU accounting on a 2-core machine.
    env_actor = (
        ray.remote(EnvironmentWorker)
        .options(name=env_name(evaluation, 0), namespace=RAY_NAMESPACE, num_cpus=0)
        .remote(name=env_name(evaluation, 0), factory="foraging", params=_env_params(agents, total), max_steps=total)
    )
    probe = make_array_env("foraging", {"agents": 1}, 1)  # the shards' spaces
    obs_space, act_space = probe.observation_space(0), probe.action_space(0)
    parts = []
    for i, indices in enumerate(_split(agents, shards)):
        name = shard_name(evaluation, policy, i)
        handle = (
            ray.remote(PolicyShard)
            .options(name=name, namespace=RAY_NAMESPACE, num_cpus=0)
            .remote(name=name, factory=policy, params={}, seed=seed + i, spaces=(obs_space, act_space))
        )
        parts.append(ShardPart(name=name, handle=handle, policy=policy, agent_indices=tuple(indices.tolist()), seed=seed + i, shard=i))
    actors = [env_actor, *(part.handle for part in parts)]
    ray.get([actor.ping.remote() for actor in actors])

    def task(start: int, stop: int) -> EpisodeTask:
        return EpisodeTask(
            episode=0,
            seed=seed,
            pairing={"all": policy},
            policy_agents={policy: tuple(range(agents))},
            shards=tuple(parts),
            start_step=start,
            stop_at=stop,
        )

    ray.get(env_actor.run.remote(task(0, warmup)))
    began = time.perf_counter()
    result = ray.get(env_actor.run.remote(task(warmup, total)))
    seconds = time.perf_counter() - began
    pids = ray.get([actor.__ray_call__.remote(lambda self: os.getpid()) for actor in actors])
    rss = psutil.Process().memory_info().rss + sum(_peak_rss(pid) for pid in pids)
    for actor in actors:
        ray.kill(actor)
    return _summary("ray", agents, shards, result.latencies_s, seconds, rss)


def compiled_loop(agents: int, shards: int, policy: str, steps: int, warmup: int, seed: int) -> Run:
    """A candidate design, for comparison: the ArrayEnv in the driver and the same PolicyShard
    actors behind a Ray compiled graph (shared-memory channels instead of a task per call)."""
    import psutil
    import ray
    from ray.dag import InputNode, MultiOutputNode

    from swarm_arena.arena.array_env import make_array_env
    from swarm_arena.arena.shard import PolicyShard

    total = warmup + steps
    env = make_array_env("foraging", _env_params(agents, total), max_steps=total)
    parts = _split(agents, shards)
    actors = []
    for i, indices in enumerate(parts):
        actor = ray.remote(PolicyShard).options(num_cpus=0).remote(
            name=f"bench/compiled/shard-{i}",
            factory=policy,
            params={},
            seed=seed + i,
            spaces=(env.observation_space(0), env.action_space(0)),
        )
        ray.get(actor.begin_episode.remote(seed + i, [env.possible_agents[j] for j in indices], env.observation_space(0), env.action_space(0)))
        actors.append(actor)
    with InputNode() as observations:
        dag = MultiOutputNode([actor.act.bind(observations[i]) for i, actor in enumerate(actors)])
    # Channels sized for the largest observation block a shard receives.
    compiled = dag.experimental_compile(_buffer_size_bytes=max(1 << 20, 2 * max(p.size for p in parts) * 75 * 4))
    try:
        env.reset(seed)
        latencies = []
        began = 0.0
        while not env.done:
            if env.steps == warmup:
                began = time.perf_counter()
            started = time.perf_counter()
            results = ray.get(compiled.execute(*[env.observe(part) for part in parts]))
            actions = np.zeros(env.num_agents, dtype=np.int64)
            for part, result in zip(parts, results, strict=True):
                actions[part] = result
            env.step(actions)
            if env.steps > warmup:
                latencies.append(time.perf_counter() - started)
        seconds = time.perf_counter() - began
    finally:
        compiled.teardown()
    pids = ray.get([actor.__ray_call__.remote(lambda self: os.getpid()) for actor in actors])
    rss = psutil.Process().memory_info().rss + sum(_peak_rss(pid) for pid in pids)
    for actor in actors:
        ray.kill(actor)
    return _summary("ray-compiled", agents, shards, latencies, seconds, rss)


def breakdown(agents: int, policy: str, samples: int, seed: int) -> dict[str, Any]:
    """Where one step's time goes (one shard): env observe+step and policy act in-process, and a
    bare `PolicyShard.act` round trip on Ray with the same observation block (medians, ms)."""
    import ray

    from swarm_arena.arena.array_env import make_array_env
    from swarm_arena.arena.policies import make_policy
    from swarm_arena.arena.shard import PolicyShard

    env = make_array_env("foraging", _env_params(agents, samples + 1), max_steps=samples + 1)
    pol = make_policy(policy, {}, env.observation_space(0), env.action_space(0), seed=seed)
    everyone = np.arange(agents)
    env.reset(seed)
    env_ms, act_ms, call_ms = [], [], []
    actor = ray.remote(PolicyShard).options(num_cpus=0).remote(
        name="bench/breakdown", factory=policy, params={}, seed=seed, spaces=(env.observation_space(0), env.action_space(0))
    )
    ray.get(actor.begin_episode.remote(seed, env.possible_agents, env.observation_space(0), env.action_space(0)))
    for _ in range(samples):
        t0 = time.perf_counter()
        obs = env.observe(everyone)
        t1 = time.perf_counter()
        actions = pol.act(obs, env.possible_agents)
        t2 = time.perf_counter()
        env.step(actions)
        t3 = time.perf_counter()
        ray.get(actor.act.remote(obs, None))
        t4 = time.perf_counter()
        env_ms.append((t1 - t0) + (t3 - t2))
        act_ms.append(t2 - t1)
        call_ms.append(t4 - t3)
    ray.kill(actor)
    median = lambda values: float(np.median(values) * 1e3)  # noqa: E731
    return {
        "agents": agents,
        "observation_bytes": int(obs.nbytes),
        "env_ms": median(env_ms),
        "policy_act_ms": median(act_ms),
        "shard_round_trip_ms": median(call_ms),
    }


# ---- report ---------------------------------------------------------------------------------


def median_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per (agents, shards, mode): medians over repeats, plus ray/plain ratios."""
    groups: dict[tuple[int, int, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.agents, run.shards, run.mode), []).append(run)
    rows = []
    for (agents, shards, mode), group in sorted(groups.items()):
        row: dict[str, Any] = {"agents": agents, "shards": shards, "mode": mode, "repeats": len(group)}
        for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms", "agent_steps_per_s", "peak_rss_mb"):
            row[key] = statistics.median(getattr(run, key) for run in group)
        rows.append(row)
    plain = {(r["agents"], r["shards"]): r for r in rows if r["mode"] == "plain"}
    limit = {(r["agents"], r["shards"]): r for r in rows if r["mode"] == "limit"}
    for row in rows:
        base = plain.get((row["agents"], row["shards"]))
        row["p99_vs_plain"] = row["p99_ms"] / base["p99_ms"] if base else None
        row["throughput_vs_plain"] = row["agent_steps_per_s"] / base["agent_steps_per_s"] if base else None
        top = limit.get((row["agents"], row["shards"]))
        row["throughput_vs_limit"] = row["agent_steps_per_s"] / top["agent_steps_per_s"] if top else None
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="arena step: built-in foraging, medians over repeats")
    columns = ("agents", "shards", "mode", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "agent-steps/s", "peak RSS MB",
               "p99 x plain", "throughput x plain", "x limit")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            f"{r['agents']:,}",
            str(r["shards"]),
            r["mode"],
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['p999_ms']:.2f}",
            f"{r['max_ms']:.2f}",
            f"{r['agent_steps_per_s']:,.0f}",
            f"{r['peak_rss_mb']:,.0f}",
            f"{r['p99_vs_plain']:.1f}" if r["p99_vs_plain"] else "-",
            f"{r['throughput_vs_plain']:.2f}" if r["throughput_vs_plain"] else "-",
            f"{r['throughput_vs_limit']:.2f}" if r["throughput_vs_limit"] else "-",
        )
    Console(width=160).print(table)


def plot(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (latency, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = sorted({(r["mode"], r["shards"]) for r in rows})
    for mode, shards in series:
        points = sorted((r for r in rows if (r["mode"], r["shards"]) == (mode, shards)), key=lambda r: r["agents"])
        agents = [r["agents"] for r in points]
        label = f"{mode}, {shards} shard{'s' if shards > 1 else ''}"
        style = {"plain": "--", "ray": "-", "limit": ":"}.get(mode, "-.")
        line = latency.plot(agents, [r["p99_ms"] for r in points], style, marker="o", label=f"{label} p99")[0]
        latency.plot(agents, [r["p50_ms"] for r in points], style, marker=".", alpha=0.5, color=line.get_color())
        memory.plot(agents, [r["peak_rss_mb"] for r in points], style, marker="o", label=label, color=line.get_color())
    latency.axhline(10, color="grey", linewidth=0.8, linestyle=":")
    for axis, title, unit in ((latency, "step latency (p99 solid marker, p50 faint)", "ms"), (memory, "peak memory (RSS)", "MB")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("agents")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    latency.legend(fontsize=7)
    fig.suptitle(f"swarm-arena foraging step: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


MODES = {"limit": limit_in_subprocess, "plain": plain_in_subprocess, "ray": ray_loop, "ray-compiled": compiled_loop}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--runs"]:
        # The runs users write, through `run_evaluation` with default settings (benchmarks/arena_runs.py).
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from arena_runs import main as runs_main

        return runs_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default="100,1000,10000", help="comma-separated agent counts")
    parser.add_argument("--shards", default="1,2,4", help="comma-separated policy shard counts")
    parser.add_argument("--policy", default="greedy", help="built-in policy (or module:callable) for every shard")
    parser.add_argument("--steps", type=int, default=200, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured steps before them")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray")
    parser.add_argument(
        "--modes",
        default="limit,plain,ray,ray-compiled",
        help="which of limit, plain, ray, ray-compiled to run (comma-separated)",
    )
    parser.add_argument(
        "--inline-bytes",
        type=int,
        default=INLINE_ARG_BYTES,
        help="Ray's max_direct_call_object_size for the local Ray (arguments up to this size travel "
        "inline with the call instead of through the object store); default: what `swarm-arena run` "
        f"uses ({INLINE_ARG_BYTES} bytes); Ray's own default is 100 KiB (pass 102400 to compare)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also break one step down: env, policy, Ray round trip"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument("--plot", metavar="FILE.png", help="write latency and memory against agents")
    args = parser.parse_args(argv)
    agent_counts = [int(a) for a in args.agents.split(",")]
    shard_counts = [int(s) for s in args.shards.split(",")]
    modes = args.modes.split(",")
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"--modes: unknown {sorted(unknown)}; choose from {sorted(MODES)}")

    import ray

    # address="local": always a fresh private Ray, never a cluster someone else started here.
    system_config = {} if args.inline_bytes is None else {"max_direct_call_object_size": args.inline_bytes}
    ray.init(
        address="local",
        num_cpus=args.num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _system_config=system_config,
    )
    runs: list[Run] = []
    profile: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    try:
        if args.profile:
            profile = [breakdown(agents, args.policy, 100, args.seed) for agents in agent_counts]
        for _ in range(args.repeats):
            for agents in agent_counts:
                for shards in shard_counts:
                    config = (agents, shards, args.policy, args.steps, args.warmup, args.seed)
                    for mode in modes:
                        runs.append(MODES[mode](*config))
                    print(f"done: {agents} agents, {shards} shards", file=sys.stderr)
    finally:
        ray.shutdown()
    rows = median_rows(runs)
    # Other load on the machine shows up in p99 first; say how busy it was.
    load = {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count(), "inline_bytes": args.inline_bytes}
    if args.json:
        print(json.dumps({"rows": rows, "runs": [asdict(run) for run in runs], "profile": profile, "load": load}, indent=2))
    else:
        print_table(rows)
        if profile:
            print("one step, one shard (medians, ms):")
            for p in profile:
                print(
                    f"  {p['agents']:>6,} agents: env {p['env_ms']:.2f}, policy {p['policy_act_ms']:.2f}, "
                    f"Ray round trip with {p['observation_bytes'] / 1e3:,.0f} kB of observations "
                    f"{p['shard_round_trip_ms']:.2f}"
                )
        print(f"load average {load['before'][0]:.1f} before, {load['after'][0]:.1f} after, on {load['cpus']} CPUs")
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
