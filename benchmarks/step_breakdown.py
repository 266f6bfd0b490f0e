"""Where a step's time goes: env, observation building, policy, dict conversion, Ray, checkpoint.

For each run of `arena_runs.py`'s table that has a same-work loop (foraging 1,000 and 10,000,
greedy + random; MAgent2 battle, random vs random), the environment actor's own code
(`EnvironmentWorker.run`, policies hosted in it as by default) is stepped in this process, no
Ray in between, with a timer around each part:

- **env**: the environment's own step (`env.step(dict)`; `step_arrays` for the array path);
- **observations**: `ArrayEnv.observe` for policies that read them, plus (generic path) storing
  the observations `env.step` returned;
- **policy**: every hosted policy's `act` (with the action check);
- **dict conversion**: the generic path's `ArrayEnv.step` beyond the env's step and the
  observation store: actions to `{agent: action}`, rewards/terminations back to arrays, the
  live mask, the action log; for the array path, the arrays' wrapping;
- **step loop**: the rest of `EnvironmentWorker.run` (live masks, placing actions, returns);
- **checkpoint**: the environment actor's snapshot (`EnvironmentWorker.checkpoint`) plus the
  coordinator's store write, per step (divided by `checkpoint.intervalSteps`);
- **Ray and coordination**: a real `swarm-arena run` of the same case (fresh process, fresh
  embedded Ray) minus all of the above: per step, its wall time per step minus the in-process
  one (the chunk round trips, the coordinator, what else the run's processes cost the core).

The parts are CPU time of the stepping thread (`time.thread_time`), so other processes taking the
core do not land on them; means per step in ms (they add up; p50s do not), medians over
`--repeats`; the load average is printed next to every figure. Ray and coordination is a
difference of wall times, so on a loaded machine it carries that machine's noise. `--py-spy`
records the in-process loop of each case with py-spy and prints its hottest functions inside
`EnvironmentWorker.run` (own time): the largest remaining cost.

    .venv/bin/python benchmarks/step_breakdown.py --repeats 3 --py-spy
"""

from __future__ import annotations

import os
import re

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import collections
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from arena_runs import PLAIN, Case, _episodes, _in_process, _runtime, user_cases  # noqa: E402

# The parts are this thread's CPU time, not wall time: on a shared machine another process taking
# the core would otherwise land on whichever part happened to be running.
CLOCK = time.thread_time
PARTS = ("env", "observations", "policy", "dict conversion", "step loop", "checkpoint")


class Timers:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)

    def wrap(self, owner: Any, name: str, part: str) -> None:
        """Time every call of `owner.name` into `part` (instance or class attribute)."""
        inner: Callable[..., Any] = getattr(owner, name)
        seconds = self.seconds

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = CLOCK()
            try:
                return inner(*args, **kwargs)
            finally:
                seconds[part] += CLOCK() - started

        setattr(owner, name, timed)


def in_process(case: Case) -> dict[str, Any]:
    """The environment actor's loop in this process, every part timed; means per step (ms)."""
    import ray

    from swarm_arena.arena.checkpoint import MemoryStore
    from swarm_arena.arena.episode import EnvironmentWorker, EpisodeTask, ShardPart
    from swarm_arena.arena.scheduler import shard_seed
    from swarm_arena.arena.shard import HostedPolicy
    from swarm_arena.arena.matchmaking import shard_layout

    load = os.getloadavg()[0]
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        episodes = _episodes(case)
        spec = episodes[0][0]
        env_spec = spec.environment
        worker = EnvironmentWorker("breakdown", env_spec.factory, dict(env_spec.params), env_spec.max_steps)
        timers = Timers()
        env = worker._env
        # Inner parts first, then the wholes they sit in (their own time = whole - inner).
        timers.wrap(env.env, "step_arrays" if env.native else "step", "env")
        timers.wrap(env, "_store_observations", "store")
        timers.wrap(env, "observe", "observations")
        timers.wrap(HostedPolicy, "act", "policy")
        whole = Timers()
        whole.wrap(env, "step", "ArrayEnv.step")
        whole.wrap(worker, "checkpoint", "checkpoint")
        store = MemoryStore()
        interval = spec.checkpoint.interval_steps
        policy_index = {p: i for i, p in enumerate(spec.policy_names)}
        by_name = {p.name: p for p in spec.policies}
        steps, agent_steps, wall, cpu_total = 0, 0, 0.0, 0.0
        for _, match, split in episodes:
            parts = tuple(
                ShardPart(name=f"hosted-{s.policy}-{s.shard}", handle=None, policy=s.policy, agent_indices=s.agent_indices,
                          seed=shard_seed(match.seed, policy_index[s.policy], s.shard),
                          factory=by_name[s.policy].factory, params=by_name[s.policy].params, shard=s.shard)
                for s in shard_layout(split, spec.execution.agents_per_shard, frozenset(split))
            )  # fmt: skip
            start, done = 0, False
            while not done:
                task = EpisodeTask(episode=match.index, seed=match.seed, pairing=match.pairing_label(),
                                   policy_agents={p: tuple(v) for p, v in split.items()}, shards=parts,
                                   start_step=start, stop_at=(start // interval + 1) * interval)  # fmt: skip
                began, cpu = time.perf_counter(), CLOCK()
                result = worker.run(task)
                if result.checkpoint is not None:
                    saving = CLOCK()
                    store.save_checkpoint(result.checkpoint)
                    whole.seconds["checkpoint"] += CLOCK() - saving
                wall += time.perf_counter() - began
                cpu_total += CLOCK() - cpu
                steps += result.step - start
                agent_steps += result.agent_steps
                start, done = result.step, result.done
        t = timers.seconds
        own = {
            "env": t["env"],
            "observations": t["observations"] + t["store"],
            "policy": t["policy"],
            "dict conversion": whole.seconds["ArrayEnv.step"] - t["env"] - t["store"],
            "checkpoint": whole.seconds["checkpoint"],
        }
        own["step loop"] = cpu_total - sum(own.values())
        ms = {part: own[part] / steps * 1e3 for part in PARTS}
        return {"ms": ms, "steps": steps, "agent_steps": agent_steps, "wall_ms_per_step": wall / steps * 1e3,
                "cpu_ms_per_step": cpu_total / steps * 1e3, "load": load}  # fmt: skip
    finally:
        ray.shutdown()


def _spy(case: Case, seconds_out: str) -> list[tuple[str, float]]:
    """py-spy over the in-process loop of `case`; the hottest functions by own time."""
    script = (
        "import sys, pickle; sys.path.insert(0, 'benchmarks'); import step_breakdown as b; "
        f"case = pickle.loads(bytes.fromhex('{__import__('pickle').dumps(case).hex()}')); b.in_process(case)"
    )
    raw = os.path.join(seconds_out, "spy.txt")
    subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "--format", "raw", "--rate", "250",
         "--output", raw, "--", sys.executable, "-c", script],  # fmt: skip
        check=True,
        capture_output=True,
    )
    own: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            if "EnvironmentWorker.run" not in stack:
                continue  # Ray's start-up and threads: not the step
            total += int(count)
            own[re.sub(r":\d+\)$", ")", stack.split(";")[-1])] += int(count)  # per function, not per line
    return [(frame, count / total) for frame, count in own.most_common(8)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="maxSteps of every episode")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--py-spy", action="store_true", help="also profile each case's loop with py-spy")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    cases = [case for case, kind in user_cases(args.steps) if kind in PLAIN]
    report = []
    for index, case in enumerate(cases):
        local, runs = [], []
        for _ in range(args.repeats):  # back to back, so both see the same load
            local.append(_in_process(in_process, case))
            runs.append(_in_process(_runtime, case, 1000 + index))
        ms = {part: statistics.median(r["ms"][part] for r in local) for part in PARTS}
        per_step = statistics.median(r["wall_ms_per_step"] for r in local)
        cpu_per_step = statistics.median(r["cpu_ms_per_step"] for r in local)
        # The run's agent-steps/s over the same agent-steps per step as in process.
        agents_per_step = local[0]["agent_steps"] / local[0]["steps"]
        run_ms = [agents_per_step / r["agent_steps_per_s"] * 1e3 for r in runs]
        ms["Ray and coordination"] = statistics.median(
            one - here["wall_ms_per_step"] for one, here in zip(run_ms, local, strict=True)
        )
        run_ms = statistics.median(run_ms)
        row = {"case": case.label, "ms": ms, "run_ms_per_step": run_ms, "in_process_ms_per_step": per_step,
               "in_process_cpu_ms_per_step": cpu_per_step,
               "load": statistics.median([*(r["load"] for r in local), *(r["load"] for r in runs)])}  # fmt: skip
        if args.py_spy:
            with tempfile.TemporaryDirectory() as folder:
                row["hottest"] = _spy(case, folder)
        report.append(row)
        print(f"done: {case.label}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for row in report:
        print(f"\n{row['case']} (load {row['load']:.1f}): {row['run_ms_per_step']:.2f} ms a step through swarm-arena run, "
              f"{row['in_process_ms_per_step']:.2f} ms in process ({row['in_process_cpu_ms_per_step']:.2f} ms CPU)")  # fmt: skip
        for part, value in row["ms"].items():
            print(f"  {part:<22} {value:7.3f} ms  {value / row['run_ms_per_step']:6.1%}")
        for frame, share in row.get("hottest", []):
            print(f"    py-spy own time {share:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
