"""The runs users write, through the real runtime, against loops doing the same work, and the limit.

Every runtime row is one `run_evaluation` (what `swarm-arena run` calls) on a fresh embedded
Ray in its own process, with the execution settings it names (default: none, i.e. what a user
gets without tuning); the step percentiles and agent-steps/s are the ones the run reports (every
step counted, the ones after a checkpoint boundary included). Next to it, in their own process:

- **same work**: the loop a user would write without the arena, doing exactly the arena's work
  per step: the same policies on the same agents (`HostedPolicy`, as the environment actor steps
  them: one vectorised `act` per policy, observations built only for policies that read them).
  For foraging the batched loop (`ArrayEnv.observe` -> `act` -> the env's array step); for a
  PettingZoo environment such as MAgent2 battle the PettingZoo loop (`{agent: action}` from each
  policy's one draw, `env.step(dict)`, observations stacked from the returned dict only for
  policies that read them);
- **limit**: the environment's own step alone, fed by actions from one vectorised draw over all
  live agents per step: `env.step(dict(zip(agents, draw)))`, or for an env with the array path
  `step_arrays(draw)` then `observe_arrays()` (every agent's observation: what a PettingZoo
  `step` returns, and what MAgent2's `step` computes anyway); no policy. What a run costs beyond
  it is the arena's (and its policies') overhead; `x limit` is the run's agent-steps/s over the
  limit's.

Throughput counts the episode resets too (the runtime's does). Both divide agent-steps by the
time it took to play them: the limit from each episode's reset to its last step (building the
environment left out), the runtime its coordinator's `run` (every episode, from the first
dispatch to the last chunk taken: episode starts and ends, chunk boundaries, the coordinator's
own work), leaving out what comes before it (starting Ray, building the actors and their
environments) and after it (the final score, shutting down), which the limit does not pay
either. Each row's load average (1 min, median over repeats) is printed next to it: on a shared
machine, rerun on a quiet one.

`--compare DIR` also runs every runtime row on the source tree at DIR (its `operator/` first on
PYTHONPATH, so the driver and Ray's workers import it), back to back with this tree and the limit
in every repeat: an A/B on a machine that is not quiet.

The scaling table runs a numpy MLP policy (real compute per agent) over parallel episodes and
shard layouts. `--json` prints the raw rows; `--plot FILE.png` draws both tables.

    .venv/bin/python benchmarks/arena_runs.py --repeats 3 --plot docs/performance-arena-runs.png
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
    """(case, same-work loop kind) for the runs of issue #21; `old` rows (no baseline) compare the
    old defaults (every policy a set of shard actors)."""
    old = {"cpu": 1}  # what every policy got before resources.cpu defaulted to 0: shard actors
    battle = {"factory": BATTLE, "params": {"map_size": 120}, "maxSteps": steps}
    teams = [{"name": "red", "agents": "red_*"}, {"name": "blue", "agents": "blue_*"}]
    battle_policies = [{"name": p, "factory": "random"} for p in ("random-a", "random-b")]
    return [
        (Case("foraging 1,000, greedy + random", _foraging(1000, steps), _two()), "batched"),
        (Case("  same, shard actors (old defaults: cpu 1, 256 per shard)", _foraging(1000, steps), _two(old)), "old"),
        (Case("foraging 10,000, greedy + random", _foraging(10000, steps), _two()), "batched"),
        (Case("  same, shard actors (old defaults: 40 shards)", _foraging(10000, steps), _two(old)), "old"),
        (Case("battle_v4 map 120 (1,152 agents), random vs random, round-robin", battle, battle_policies, episodes=1,
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


def _load() -> float:
    return os.getloadavg()[0]


def _stats(latencies: list[float], acted: int, seconds: float, load: float) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1e3
    p50, p99, p999 = np.percentile(ms, [50, 99, 99.9])
    return {"p50_ms": float(p50), "p99_ms": float(p99), "p999_ms": float(p999), "max_ms": float(ms.max()),
            "agent_steps_per_s": acted / seconds, "load": load}  # fmt: skip


def _runtime(case: Case, index: int) -> dict[str, Any]:
    """One run_evaluation on a fresh embedded Ray (called in a fresh process)."""
    from swarm_arena.api.resource import SwarmEvaluation
    from swarm_arena.arena.runner import run_evaluation

    load = _load()
    evaluation = SwarmEvaluation.model_validate(case.manifest(f"bench-{index}-{os.getpid()}"))
    report = run_evaluation(evaluation)
    latency = report.results.step_latency_ms
    assert latency is not None and report.results.agent_steps_per_second
    return {"p50_ms": latency.p50, "p99_ms": latency.p99, "p999_ms": latency.p99_9, "max_ms": latency.max,
            "agent_steps_per_s": report.results.agent_steps_per_second, "load": load,
            "wall_s": report.wall_seconds}  # fmt: skip


def _runtime_on(tree: str, case: Case, index: int) -> dict[str, Any]:
    """`_runtime` in a fresh interpreter importing swarm_arena from the source tree at `tree`."""
    from source_tree import run_in_fresh_interpreter

    return run_in_fresh_interpreter(tree, (
        f"import arena_runs, swarm_arena; assert swarm_arena.__file__.startswith({tree!r}), swarm_arena.__file__; "
        f"case = [c for c, _ in arena_runs.user_cases({case.environment['maxSteps']})][{index}]; "
        f"print('RESULT' + json.dumps(arena_runs._runtime(case, {index})))"))  # fmt: skip


def _episodes(case: Case) -> list[tuple[Any, Any, dict[str, list[int]]]]:
    """(spec, match, policy -> agent indices) of every episode the runtime plays for `case`."""
    from swarm_arena.api.resource import SwarmEvaluation
    from swarm_arena.arena.array_env import make_array_env
    from swarm_arena.arena.matchmaking import assign_agents, plan_matches

    spec = SwarmEvaluation.model_validate(case.manifest("plain")).spec
    agents = make_array_env(spec.environment.factory, spec.environment.params, spec.environment.max_steps).possible_agents
    return [(spec, match, assign_agents(spec, match, agents)) for match in plan_matches(spec)]


def _hosted(spec: Any, match: Any, split: dict[str, list[int]], env: Any) -> list[tuple[Any, np.ndarray, bool]]:
    """The policies of one episode as the environment actor steps them: (policy, indices, reads)."""
    from swarm_arena.arena.shard import HostedPolicy

    by_name = {p.name: p for p in spec.policies}
    parts = []
    for name, indices in split.items():
        if not indices:
            continue
        first, ids = indices[0], [env.possible_agents[i] for i in indices]
        spaces = (env.observation_space(first), env.action_space(first))
        policy = HostedPolicy(by_name[name].factory, dict(by_name[name].params), match.seed, spaces)
        reads = policy.begin_episode(match.seed, ids, *spaces)
        parts.append((policy, np.asarray(indices, dtype=np.int64), reads))
    return parts


def _plain_batched(case: Case) -> dict[str, Any]:
    """Same work, array path: ArrayEnv + the same policies on the same agents, no Ray."""
    from swarm_arena.arena.array_env import make_array_env

    load = _load()
    episodes = _episodes(case)
    spec = episodes[0][0]
    env = make_array_env(spec.environment.factory, spec.environment.params, spec.environment.max_steps)
    latencies, acted, seconds = [], 0, 0.0
    for spec, match, split in episodes:
        parts = _hosted(spec, match, split, env)
        began = time.perf_counter()
        env.reset(match.seed)
        actions = np.zeros(env.num_agents, dtype=np.int64)
        while not env.done:
            started = time.perf_counter()
            for policy, indices, reads in parts:
                actions[indices] = policy.act(env.observe(indices) if reads else len(indices))
            acted += int(env.alive.sum())
            env.step(actions)
            latencies.append(time.perf_counter() - started)
        seconds += time.perf_counter() - began
    return _stats(latencies, acted, seconds, load)


def _plain_dicts(case: Case) -> dict[str, Any]:
    """Same work, PettingZoo loop: each policy's one vectorised `act` on its live agents, turned
    into `{agent: action}`; observations stacked from the returned dict only for policies that
    read them."""
    from swarm_arena.arena.array_env import make_array_env
    from swarm_arena.arena.registry import load_environment_factory

    load = _load()
    episodes = _episodes(case)
    spec = episodes[0][0]
    factory = load_environment_factory(spec.environment.factory)
    probe = make_array_env(spec.environment.factory, spec.environment.params, spec.environment.max_steps)
    steps = spec.environment.max_steps
    latencies, acted, seconds = [], 0, 0.0
    for spec, match, split in episodes:
        parts = [(policy, [probe.possible_agents[i] for i in indices], reads)
                 for policy, indices, reads in _hosted(spec, match, split, probe)]  # fmt: skip
        env = factory(**spec.environment.params)
        began = time.perf_counter()
        observations, _ = env.reset(seed=match.seed)
        for _ in range(steps):
            if not env.agents:
                break
            started = time.perf_counter()
            live = set(env.agents)
            joint: dict[str, int] = {}
            for policy, names, reads in parts:
                names = [n for n in names if n in live]
                if names:
                    acts = policy.act(np.stack([observations[n] for n in names]) if reads else len(names))
                    joint.update(zip(names, acts.tolist()))
            observations, *_ = env.step(joint)
            acted += len(joint)
            latencies.append(time.perf_counter() - started)
        seconds += time.perf_counter() - began
        env.close()
    return _stats(latencies, acted, seconds, load)


def _limit(case: Case) -> dict[str, Any]:
    """The environment's own step alone, fed by one vectorised draw over all live agents per step."""
    from swarm_arena.arena.array_env import NATIVE_METHODS
    from swarm_arena.arena.policies.builtin import sample_actions
    from swarm_arena.arena.registry import load_environment_factory

    load = _load()
    episodes = _episodes(case)
    spec = episodes[0][0]
    factory = load_environment_factory(spec.environment.factory)
    steps = spec.environment.max_steps
    latencies, acted, seconds = [], 0, 0.0
    for _, match, _ in episodes:
        env = factory(**spec.environment.params)
        native = all(callable(getattr(env, name, None)) for name in NATIVE_METHODS)
        space = env.action_space(env.possible_agents[0])
        if any(env.action_space(a) != space for a in env.possible_agents):
            raise ValueError("the limit loop draws every agent's action from one space; these differ")
        rng = np.random.default_rng(match.seed)
        began = time.perf_counter()
        if native:
            env.reset_arrays(match.seed)
            count = len(env.possible_agents)
            for _ in range(steps):
                started = time.perf_counter()
                env.step_arrays(sample_actions(space, count, rng))
                env.observe_arrays()  # every agent's observation, as a PettingZoo step returns them
                acted += count
                latencies.append(time.perf_counter() - started)
        else:
            env.reset(seed=match.seed)
            for _ in range(steps):
                if not env.agents:
                    break
                started = time.perf_counter()
                agents = env.agents
                env.step(dict(zip(agents, sample_actions(space, len(agents), rng).tolist())))
                acted += len(agents)
                latencies.append(time.perf_counter() - started)
        seconds += time.perf_counter() - began
        env.close()
    return _stats(latencies, acted, seconds, load)


PLAIN = {"batched": _plain_batched, "dicts": _plain_dicts}
FIGURES = ("p50_ms", "p99_ms", "p999_ms", "max_ms", "agent_steps_per_s", "load")


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


def measure(cases: list[tuple[Case, str]], repeats: int, compare: str | None = None) -> list[dict[str, Any]]:
    """Per case: the runtime, and for cases with a same-work kind that loop and the limit; each
    the median of `repeats` runs in fresh processes. The three run back to back in every repeat,
    so a load that changes during the benchmark weighs on all three alike; `x limit` is the
    median of each repeat's own ratio. `compare`: a source tree whose runtime runs in every repeat
    too (`compared`), alternating which tree goes first."""
    rows = []
    for index, (case, plain) in enumerate(cases):
        kinds = {"runtime": lambda: _in_process(_runtime, case, index)}
        if compare:
            number = [c.label for c, _ in user_cases(case.environment.get("maxSteps", 200))].index(case.label)
            kinds["compared"] = lambda: _runtime_on(compare, case, number)
        if plain in PLAIN:
            kinds["plain"] = lambda: _in_process(PLAIN[plain], case)
            kinds["limit"] = lambda: _in_process(_limit, case)
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for repeat in range(repeats):
            order = list(kinds)
            if compare and repeat % 2:
                order[0], order[1] = order[1], order[0]
            for kind in order:
                runs[kind].append(kinds[kind]())
            if "limit" in runs:
                top = runs["limit"][-1]["agent_steps_per_s"]
                for kind in ("runtime", "compared", "plain"):
                    if kind in runs:
                        runs[kind][-1]["x_limit"] = runs[kind][-1]["agent_steps_per_s"] / top
                runs["limit"][-1]["x_limit"] = 1.0
        row: dict[str, Any] = {"run": case.label, "plain": None, "limit": None, "compared": None}
        row.update({kind: _median(group) for kind, group in runs.items()})
        if plain in PLAIN:
            row["plain_kind"] = plain
        rows.append(row)
        print(f"done: {case.label.strip()}: {json.dumps(row)}", file=sys.stderr)
    return rows


# ---- report -----------------------------------------------------------------------------------


def _cells(r: dict[str, Any], limit: dict[str, Any] | None) -> list[str]:
    ratio = f"{r['x_limit']:.2f}" if "x_limit" in r else ""
    return [f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['p999_ms']:.2f}", f"{r['max_ms']:.2f}",
            f"{r['agent_steps_per_s']:,.0f}", ratio, f"{r['load']:.1f}"]  # fmt: skip


def print_tables(user: list[dict[str, Any]], scaling: list[dict[str, Any]], plain_mlp: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    table = Table(title="runs users write: swarm-arena run (default execution unless stated), the same work without "
                        "the arena, and the limit (env step alone, one vectorised draw); medians")  # fmt: skip
    for column in ("run", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "agent-steps/s", "x limit", "load 1m"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in user:
        limit = row["limit"]
        table.add_row(f"{row['run']}: swarm-arena run" if limit else row["run"], *_cells(row["runtime"], limit))
        if row.get("compared"):
            table.add_row("  same, swarm-arena run of the compared tree", *_cells(row["compared"], limit))
        if row["plain"]:
            kind = {"batched": "batched ArrayEnv loop", "dicts": "PettingZoo dict loop"}[row["plain_kind"]]
            table.add_row(f"  same work, {kind}", *_cells(row["plain"], limit))
            table.add_row("  limit: env step alone", *_cells(limit, limit))
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
    left.barh(y - 0.2, [row["plain"]["p99_ms"] if row["plain"] else 0 for row in user], 0.4, label="same work, no arena, p99")
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
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (medians)")
    parser.add_argument("--scaling-agents", type=int, default=2000)
    parser.add_argument("--scaling-episodes", type=int, default=4)
    parser.add_argument("--skip", default="", help="comma-separated: user, old (the old-default rows), scaling")
    parser.add_argument("--only", metavar="TEXT", default="",
                        help="only the runs whose label contains TEXT (e.g. battle), for more repeats of one")
    parser.add_argument("--compare", metavar="DIR",
                        help="another source tree whose runtime rows run back to back with this one's")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", metavar="FILE.png")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    load_before = os.getloadavg()
    started = time.monotonic()
    wanted = [(case, kind) for case, kind in user_cases(args.steps)
              if not (kind == "old" and "old" in skip) and args.only in case.label]  # fmt: skip
    user = measure(wanted, args.repeats, args.compare) if "user" not in skip else []
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
