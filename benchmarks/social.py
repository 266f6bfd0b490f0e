"""What the social outcome metrics cost an episode: the step loop's hook and the end-of-episode metrics.

Steps the built-in `foraging` environment with `--agents` agents (two policies, `greedy` and
`random`, half the agents each, on two teams) for `--steps` steps in one process, as the
environment actor does, and times in place:

- the **hook**: `SocialTally.add` once per step (three vector operations over the agents);
- the **end**: `episode_social` once per episode (sort per group for equality; policies and teams);

against the episode's own time (observe, act, step). Prints a table; medians over `--repeats`.

    .venv/bin/python benchmarks/social.py --agents 10000 --steps 200

`--run-episodes N` times instead what the end of a run adds: the averages with intervals of the
social outcomes (`results.socialOutcomes`) and of the focal/background populations
(`results.populations`) over N synthetic episodes of an 8-policy round robin on two teams (the
last two policies background), 1,000 resamples:

    .venv/bin/python benchmarks/social.py --run-episodes 100000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from swarm_arena.arena.array_env import make_array_env  # noqa: E402
from swarm_arena.arena.policies import make_policy  # noqa: E402
from swarm_arena.arena.social_tally import SocialTally, episode_social  # noqa: E402


def one_episode(agents: int, steps: int, seed: int) -> dict[str, float]:
    env = make_array_env("foraging", {"agents": agents, "max_cycles": steps + 1}, max_steps=steps)
    halves = [np.arange(0, agents // 2), np.arange(agents // 2, agents)]
    policies = [make_policy(name, {}, env.observation_space(0), env.action_space(0), seed=seed + i)
                for i, name in enumerate(("greedy", "random"))]
    ids = [[env.possible_agents[i] for i in part] for part in halves]
    tally = SocialTally(env.num_agents)
    returns = np.zeros(env.num_agents)
    env.reset(seed)
    hook = 0.0
    began = time.perf_counter()
    while not env.done:
        alive = env.alive
        actions = np.zeros(env.num_agents, dtype=np.int64)
        for part, policy, names in zip(halves, policies, ids, strict=True):
            actions[part] = policy.act(env.observe(part), names)
        outcome = env.step(actions)
        returns += outcome.rewards
        started = time.perf_counter()
        tally.add(env.steps, outcome.rewards, alive)
        hook += time.perf_counter() - started
    started = time.perf_counter()
    groups = {"policies": {"greedy": tuple(halves[0]), "random": tuple(halves[1])},
              "teams": {"red": tuple(halves[0]), "blue": tuple(halves[1])}}
    episode_social(returns, tally.sums, env.steps, groups)
    end = time.perf_counter() - started
    episode = time.perf_counter() - began
    return {"episode_s": episode, "hook_s": hook, "end_s": end, "steps": float(env.steps)}


def run_cost(episodes: int, policies: int = 8) -> None:
    from swarm_arena.api.report import EpisodeRecord, EpisodeSocial, SocialMetrics
    from swarm_arena.arena.scoring.populations import population_returns
    from swarm_arena.arena.scoring.social import social_outcomes

    rng = np.random.default_rng(0)
    names = [f"p{i}" for i in range(policies)]
    pairings = [(a, b) for a in names for b in names if a != b]

    def metrics() -> SocialMetrics:
        return SocialMetrics(efficiency=float(rng.normal()), equality=float(rng.random()),
                             sustainability=float(rng.random() * 100), peace=1.0)

    records = []
    for i in range(episodes):
        a, b = pairings[i % len(pairings)]
        records.append(EpisodeRecord(
            episode=i, pairing={"red": a, "blue": b}, returns={a: float(rng.normal()), b: float(rng.normal())},
            agents={a: 5, b: 5}, steps=100, agent_steps=1000,
            social=EpisodeSocial(policies={a: metrics(), b: metrics()}, teams={"red": metrics(), "blue": metrics()}),
        ))
    print("| episodes | policies | social outcomes (s) | populations (s) |")
    print("|---:|---:|---:|---:|")
    began = time.perf_counter()
    social_outcomes(records, resamples=1000, seed=0, level=0.95)
    social = time.perf_counter() - began
    began = time.perf_counter()
    population_returns(records, names[:-2], names[-2:], resamples=1000, seed=0, level=0.95)
    populations = time.perf_counter() - began
    print(f"| {episodes:,} | {policies} | {social:.1f} | {populations:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="1000,10000", help="comma-separated agent counts")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run-episodes", type=int, default=None, help="time the end-of-run averages instead")
    args = parser.parse_args()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.run_episodes:
        run_cost(args.run_episodes)
        return
    print("| agents | steps | episode (s) | hook per step (µs) | end of episode (ms) | share of the episode |")
    print("|---:|---:|---:|---:|---:|---:|")
    for agents in (int(a) for a in args.agents.split(",")):
        runs = [one_episode(agents, args.steps, seed) for seed in range(args.repeats)]
        episode = statistics.median(r["episode_s"] for r in runs)
        hook = statistics.median(r["hook_s"] / r["steps"] for r in runs)
        end = statistics.median(r["end_s"] for r in runs)
        share = statistics.median((r["hook_s"] + r["end_s"]) / r["episode_s"] for r in runs)
        print(f"| {agents:,} | {args.steps} | {episode:.2f} | {hook * 1e6:.1f} | {end * 1e3:.2f} | {share:.3%} |")


if __name__ == "__main__":
    main()
