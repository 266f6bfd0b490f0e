"""The runs users write, through the real runtime, against the plain single-process loop.

Every runtime row is one `run_evaluation` (what `swarm-arena run` calls) on a fresh embedded
Ray in its own process, with the execution settings it names (default: none, i.e. what a user
gets without tuning); the step p50/p99 and agent-steps/s are the ones the run reports. Every
plain row is the loop a user would write without the arena, in its own process, on one core:

- foraging: the batched loop (`ArrayEnv.observe` -> each policy's `act` on its agents ->
  `ArrayEnv.step`), the agents split between the policies as the runtime splits them;
- MAgent2 battle: the plain PettingZoo loop with per-agent dicts (`{agent: action}` built by a
  per-agent policy each step: `space.sample()` for random, a constant for noop).

The scaling table runs a numpy MLP policy (real compute per agent) over parallel episodes and
shard layouts. `--json` prints the raw rows; `--plot FILE.png` draws both tables.

    .venv/bin/python benchmarks/arena_runs.py --plot docs/performance-arena-runs.png
"""

from __future__ import annotations

import os

# One BLAS thread per process, set before numpy loads anywhere (this process, the spawned plain
# loops, the embedded Ray's workers inherit it): every process is one core's worth of work, and
# BLAS threads do not fight each other on a small machine (without it the plain MLP loop took
# 56.6 ms a step instead of 13.8 ms on the shared 2-core machine, docs/performance.md).
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import json
import multiprocessing
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BATTLE = "magent2.environments.battle_v4:parallel_env"
MLP = "swarm_arena.arena.policies.mlp:MlpPolicy"
MLP_PARAMS = {"hidden": [64, 64]}


@dataclass(frozen=True)
class Case:
    """One evaluation to run: a spec fragment on top of the defaults."""

    label: str
    environment: dict[str, Any]
    policies: list[dict[str, Any]]
    episodes: int = 2
    matchmaking: dict[str, Any] = field(default_factory=dict)
    teams: list[dict[str, Any]] = field(default_factory=list)
    execution: dict[str, Any] = field(default_factory=dict)

    def manifest(self, name: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"environment": self.environment, "policies": self.policies, "episodes": self.episodes}
        for key in ("matchmaking", "teams", "execution"):
            if getattr(self, key):
                spec[key] = getattr(self, key)
        return {"apiVersion": "arena.swarm.dev/v1alpha1", "kind": "SwarmEvaluation", "metadata": {"name": name}, "spec": spec}


def _foraging(agents: int, steps: int) -> dict[str, Any]:
    return {"factory": "foraging", "params": {"agents": agents}, "maxSteps": steps}


def _two(resources: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [{"name": p, "factory": p, **({"resources": resources} if resources else {})} for p in ("greedy", "random")]


def user_cases(steps: int) -> list[tuple[Case, str]]:
    """(case, plain loop kind) for every row of issue #11's table, and the old defaults to compare."""
    old = {"cpu": 1}  # what every policy got before resources.cpu defaulted to 0: shard actors
    battle = {"factory": BATTLE, "params": {"map_size": 120}, "maxSteps": steps}
    teams = [{"name": "red", "agents": "red_*"}, {"name": "blue", "agents": "blue_*"}]
    battle_policies = [{"name": p, "factory": p} for p in ("random", "noop")]
    return [
        (Case("foraging 1,000, greedy + random", _foraging(1000, steps), _two()), "batched"),
        (Case("  same, shard actors (old defaults: cpu 1, 256 per shard)", _foraging(1000, steps), _two(old)), ""),
        (Case("  same, shard actors, agentsPerShard 500", _foraging(1000, steps), _two(old), execution={"agentsPerShard": 500}), ""),
        (Case("foraging 10,000, greedy + random", _foraging(10000, steps), _two()), "batched"),
        (Case("  same, shard actors (old defaults: 40 shards)", _foraging(10000, steps), _two(old)), ""),
        (Case("battle_v4 map 120 (1,152 agents), random vs noop, round-robin", battle, battle_policies, episodes=1,
              matchmaking={"mode": "round-robin"}, teams=teams), "dicts"),
    ]  # fmt: skip


def scaling_cases(agents: int, steps: int, episodes: int) -> list[Case]:
    """The MLP policy over parallel episodes and shard layouts."""
    cases = []
    for parallel in (1, 2):
        for label, resources, per_shard in (
            ("in the environment actor", None, None),
            ("1 shard actor (cpu 1)", {"cpu": 1}, agents),
            ("2 shard actors (cpu 1 each)", {"cpu": 1}, agents // 2),
        ):
            policy = {"name": "mlp", "factory": MLP, "params": MLP_PARAMS, **({"resources": resources} if resources else {})}
            execution: dict[str, Any] = {"parallelEpisodes": parallel}
            if per_shard:
                execution["agentsPerShard"] = per_shard
            cases.append(Case(f"{parallel} | {label}", _foraging(agents, steps), [policy], episodes=episodes, execution=execution))
    return cases


# ---- measuring --------------------------------------------------------------------------------


def _runtime(case: Case, index: int) -> dict[str, Any]:
    """One run_evaluation on a fresh embedded Ray (called in a fresh process)."""
    from swarm_arena.api.resource import SwarmEvaluation
    from swarm_arena.arena.runner import run_evaluation

    evaluation = SwarmEvaluation.model_validate(case.manifest(f"bench-{index}-{os.getpid()}"))
    report = run_evaluation(evaluation)
    latency = report.results.step_latency_ms
    assert latency is not None and report.results.agent_steps_per_second
    return {"p50_ms": latency.p50, "p99_ms": latency.p99, "agent_steps_per_s": report.results.agent_steps_per_second,
            "wall_s": report.wall_seconds}  # fmt: skip


def _plain_batched(case: Case, seed: int = 0) -> dict[str, Any]:
    """The ArrayEnv and the policies in one process, agents split as the runtime splits them."""
    from swarm_arena.api.resource import SwarmEvaluation
    from swarm_arena.arena.array_env import make_array_env
    from swarm_arena.arena.matchmaking import assign_agents, plan_matches
    from swarm_arena.arena.policies import make_policy

    spec = SwarmEvaluation.model_validate(case.manifest("plain")).spec
    env = make_array_env(spec.environment.factory, spec.environment.params, spec.environment.max_steps)
    latencies, acted, seconds = [], 0, 0.0
    for match in plan_matches(spec):
        split = assign_agents(spec, match, env.possible_agents)
        policies = {p.name: make_policy(p.factory, p.params, env.observation_space(0), env.action_space(0), seed) for p in spec.policies}
        parts = [
            (policies[name], np.asarray(indices), [env.possible_agents[i] for i in indices])
            for name, indices in split.items()
            if indices
        ]
        env.reset(match.seed)
        actions = np.zeros(env.num_agents, dtype=np.int64)
        began = time.perf_counter()
        while not env.done:
            started = time.perf_counter()
            for policy, indices, names in parts:
                actions[indices] = policy.act(env.observe(indices), names)
            acted += int(env.alive.sum())
            env.step(actions)
            latencies.append(time.perf_counter() - started)
        seconds += time.perf_counter() - began
    ms = np.asarray(latencies) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "agent_steps_per_s": acted / seconds}


def _plain_dicts(case: Case, seed: int = 0) -> dict[str, Any]:
    """The PettingZoo loop users write: per-agent dicts, one action per agent per step."""
    from swarm_arena.arena.registry import load_environment_factory

    factory = load_environment_factory(case.environment["factory"])
    steps = case.environment["maxSteps"]
    latencies, acted, seconds = [], 0, 0.0
    for random_team in ("red", "blue"):  # round-robin: each side plays random once
        env = factory(**case.environment["params"], max_cycles=steps)
        env.reset(seed=seed)
        spaces = {agent: env.action_space(agent) for agent in env.possible_agents}
        for space in spaces.values():
            space.seed(seed)
        began = time.perf_counter()
        for _ in range(steps):
            if not env.agents:
                break
            started = time.perf_counter()
            actions = {agent: spaces[agent].sample() if agent.startswith(random_team) else 0 for agent in env.agents}
            env.step(actions)
            acted += len(actions)
            latencies.append(time.perf_counter() - started)
        seconds += time.perf_counter() - began
        env.close()
    ms = np.asarray(latencies) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "agent_steps_per_s": acted / seconds}


PLAIN = {"batched": _plain_batched, "dicts": _plain_dicts}


def _in_process(function: Any, *args: Any) -> dict[str, Any]:
    for attempt in range(3):
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            try:
                return pool.apply(function, args)
            except Exception as exc:  # noqa: BLE001 - an overloaded machine can time Ray's start-up out
                if "timed out during startup" not in str(exc) or attempt == 2:
                    raise
                print(f"Ray did not start ({exc}); trying again", file=sys.stderr)
    raise AssertionError("unreachable")


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def measure(cases: list[tuple[Case, str]], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for index, (case, plain) in enumerate(cases):
        runtime = _median([_in_process(_runtime, case, index) for _ in range(repeats)])
        row: dict[str, Any] = {"run": case.label, "runtime": runtime, "plain": None}
        if plain:
            row["plain"] = _median([_in_process(PLAIN[plain], case) for _ in range(repeats)])
            row["plain_kind"] = plain
        rows.append(row)
        print(f"done: {case.label.strip()}: {json.dumps(row)}", file=sys.stderr)
    return rows


# ---- report -----------------------------------------------------------------------------------


def print_tables(user: list[dict[str, Any]], scaling: list[dict[str, Any]], plain_mlp: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    table = Table(title="runs users write: swarm-arena run (default execution unless stated) vs the plain loop; medians")
    for column in ("run", "step p50 ms", "step p99 ms", "agent-steps/s", "plain p50 ms", "plain p99 ms", "plain agent-steps/s", "x plain"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in user:
        r, p = row["runtime"], row["plain"]
        table.add_row(
            row["run"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['agent_steps_per_s']:,.0f}",
            *((f"{p['p50_ms']:.2f}", f"{p['p99_ms']:.2f}", f"{p['agent_steps_per_s']:,.0f} ({row['plain_kind']})",
               f"{r['agent_steps_per_s'] / p['agent_steps_per_s']:.2f}") if p else ("", "", "", "")),
        )  # fmt: skip
    console.print(table)
    scale = Table(title="scaling: numpy MLP policy (hidden 64, 64) on foraging; agent-steps/s, medians")
    for column in ("parallelEpisodes | policy hosting", "step p50 ms", "step p99 ms", "agent-steps/s", "x plain (1 core)"):
        scale.add_column(column, justify="left" if "hosting" in column else "right")
    for row in scaling:
        r = row["runtime"]
        ratio = f"{r['agent_steps_per_s'] / plain_mlp['agent_steps_per_s']:.2f}" if plain_mlp else ""
        scale.add_row(row["run"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['agent_steps_per_s']:,.0f}", ratio)
    if plain_mlp:
        scale.add_row("plain loop, one process", f"{plain_mlp['p50_ms']:.2f}", f"{plain_mlp['p99_ms']:.2f}",
                      f"{plain_mlp['agent_steps_per_s']:,.0f}", "1.00")  # fmt: skip
    console.print(scale)


def plot(user: list[dict[str, Any]], scaling: list[dict[str, Any]], plain_mlp: dict[str, Any] | None, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    labels = [row["run"].strip().replace(", ", ",\n", 1) for row in user]
    y = np.arange(len(user))
    left.barh(y + 0.2, [row["runtime"]["p99_ms"] for row in user], 0.4, label="swarm-arena run, p99")
    left.barh(y - 0.2, [row["plain"]["p99_ms"] if row["plain"] else 0 for row in user], 0.4, label="plain loop, p99")
    left.set_yticks(y, labels, fontsize=7)
    left.invert_yaxis()
    left.set_xscale("log")
    left.set_xlabel("step latency p99 (ms, log)")
    left.axvline(10, color="grey", linestyle=":", linewidth=0.8)
    left.legend(fontsize=7)
    names = [row["run"] for row in scaling]
    right.bar(range(len(scaling)), [row["runtime"]["agent_steps_per_s"] for row in scaling])
    if plain_mlp:
        right.axhline(plain_mlp["agent_steps_per_s"], color="black", linestyle="--", label="plain loop, one process")
        right.legend(fontsize=7)
    right.set_xticks(range(len(scaling)), [n.replace(" | ", " episode(s)\n") for n in names], fontsize=6, rotation=30, ha="right")
    right.set_ylabel("agent-steps/s")
    right.set_title("MLP policy: parallel episodes x policy hosting", fontsize=9)
    fig.suptitle(f"swarm-arena runs: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="maxSteps of every episode")
    parser.add_argument("--repeats", type=int, default=1, help="runs per row (medians)")
    parser.add_argument("--scaling-agents", type=int, default=2000)
    parser.add_argument("--scaling-episodes", type=int, default=4)
    parser.add_argument("--skip", default="", help="comma-separated: user, scaling")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", metavar="FILE.png")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    load_before = os.getloadavg()
    started = time.monotonic()
    user = measure(user_cases(args.steps), args.repeats) if "user" not in skip else []
    scaling, plain_mlp = [], None
    if "scaling" not in skip:
        cases = scaling_cases(args.scaling_agents, args.steps, args.scaling_episodes)
        scaling = measure([(case, "") for case in cases], args.repeats)
        plain_mlp = _median([_in_process(_plain_batched, cases[0]) for _ in range(args.repeats)])
    load = {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count(), "seconds": time.monotonic() - started}
    if args.json:
        print(json.dumps({"user": user, "scaling": scaling, "plain_mlp": plain_mlp, "load": load}, indent=2))
    else:
        print_tables(user, scaling, plain_mlp)
        print(f"load average {load['before'][0]:.1f} before, {load['after'][0]:.1f} after, on {load['cpus']} CPUs; "
              f"{load['seconds']:.0f} s")  # fmt: skip
    if args.plot:
        plot(user, scaling, plain_mlp, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
