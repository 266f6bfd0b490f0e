"""What scoring a run costs: the leaderboard, the pairwise matrix and the return aggregates of
`--episodes` episodes among `--policies` policies, with `--resamples` bootstrap resamples.

Two plan shapes: a round robin (two policies an episode, one stratum per ordered pairing) and
a fixed plan where every policy plays every episode (one stratum). For each method, the final
scoring (`score`, everything that goes to the results ConfigMap) and the interim leaderboard the
job re-computes while it runs (`detail=False`: no pairwise matrix, no median/IQM). Printed as a
table; seconds are wall time of one call on this machine.

    .venv/bin/python benchmarks/ratings.py --episodes 100000 --policies 8
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from swarm_arena.arena.scoring import EpisodeOutcome, RatingOptions, score  # noqa: E402


def round_robin(episodes: int, policies: list[str], rng: np.random.Generator) -> list[EpisodeOutcome]:
    pairings = [(a, b) for a in policies for b in policies if a != b]
    skill = {p: i * 0.2 for i, p in enumerate(policies)}
    out = []
    for i in range(episodes):
        a, b = pairings[i % len(pairings)]
        out.append(EpisodeOutcome(i, {a: float(rng.normal(skill[a])), b: float(rng.normal(skill[b]))},
                                  {"red": a, "blue": b}))
    return out


def everyone(episodes: int, policies: list[str], rng: np.random.Generator) -> list[EpisodeOutcome]:
    values = rng.normal(size=(episodes, len(policies))) + 0.2 * np.arange(len(policies))
    return [EpisodeOutcome(i, dict(zip(policies, map(float, row))), {"all": "+".join(policies)})
            for i, row in enumerate(values)]


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--policies", type=int, default=8)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--methods", default="bradley-terry,mean-return,elo,openskill")
    parser.add_argument("--shapes", default="round-robin,everyone")
    args = parser.parse_args()
    policies = [f"p{i}" for i in range(args.policies)]
    options = RatingOptions(resamples=args.resamples)
    rng = np.random.default_rng(0)
    shapes = {"round-robin": round_robin, "everyone": everyone}
    print(f"# {args.episodes:,} episodes x {args.policies} policies, {args.resamples} resamples; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"| plan | method | final score (s) | interim leaderboard (s) |")
    print("|---|---|---:|---:|")
    for shape in args.shapes.split(","):
        outcomes = shapes[shape](args.episodes, policies, rng)
        for method in args.methods.split(","):
            final = timed(lambda: score(method, policies, outcomes, 0, options))
            interim = timed(lambda: score(method, policies, outcomes, 0, options, detail=False))
            print(f"| {shape} | {method} | {final:.2f} | {interim:.2f} |", flush=True)


if __name__ == "__main__":
    main()
