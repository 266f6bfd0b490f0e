"""What Elo and its bootstrap cost: `elo` (the run replayed in episode order, with every resample
alongside it) on `--episodes` episodes among `--policies` policies, `--resamples` resamples.

Two plan shapes, as in ratings.py: a round robin (two policies an episode: one game) and
everyone (every policy in every episode: policies x (policies - 1) / 2 games an episode).
`--before` also times the implementation this one replaced (a copy below: per step a
policies x policies matrix per resample, and every resample's episode sequence held at once)
on the same table. Printed as a table; seconds are wall time of one call on this machine.

    .venv/bin/python benchmarks/elo_bootstrap.py --episodes 100000 --policies 8
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from swarm_arena.arena.scoring.bootstrap import stratum_rows  # noqa: E402
from swarm_arena.arena.scoring.elo import ELO_INITIAL, ELO_K, ELO_SCALE, elo  # noqa: E402
from swarm_arena.arena.scoring.outcomes import Table, build_table  # noqa: E402
from benchmarks.ratings import everyone, round_robin  # noqa: E402


def elo_before(table: Table, resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The replaced implementation (commit 0ec5d6c, arena/scoring/elo.py), for comparison only."""
    n, m = table.present.shape
    sequences = np.empty((1 + resamples, n), dtype=np.int64)
    sequences[0] = np.arange(n)
    start = 0
    for rows in stratum_rows(table.strata):
        sequences[1:, start : start + len(rows)] = rows[rng.integers(0, len(rows), size=(resamples, len(rows)))]
        start += len(rows)
    sequences[1:].sort(axis=1)
    count = table.present.sum(axis=1)
    k_share = np.where(count > 1, ELO_K / np.maximum(count - 1, 1), 0.0)
    pairs = table.present[:, :, None] & table.present[:, None, :] & ~np.eye(m, dtype=bool)
    weight = pairs * k_share[:, None, None]
    rank = table.ranks
    score = (rank[:, :, None] > rank[:, None, :]) + 0.5 * (rank[:, :, None] == rank[:, None, :])
    scored = (weight * score).sum(axis=2)
    ratings = np.full((1 + resamples, m), ELO_INITIAL)
    strength = 10.0 ** (ratings / ELO_SCALE)
    for t in range(n):
        rows = sequences[:, t]
        expected = strength[:, :, None] / (strength[:, :, None] + strength[:, None, :])
        ratings += scored[rows] - (weight[rows] * expected).sum(axis=2)
        strength = 10.0 ** (ratings / ELO_SCALE)
    return ratings[0], ratings[1:]


def timed(fn) -> tuple[float, tuple[np.ndarray, np.ndarray]]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", default="100000", help="comma-separated")
    parser.add_argument("--policies", type=int, default=8)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--shapes", default="round-robin,everyone")
    parser.add_argument("--before", action="store_true", help="also time the replaced implementation")
    args = parser.parse_args()
    policies = [f"p{i}" for i in range(args.policies)]
    shapes = {"round-robin": round_robin, "everyone": everyone}
    print(f"# {args.policies} policies, {args.resamples} resamples; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| plan | episodes | games an episode | elo (s) | µs an episode | before (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for shape in args.shapes.split(","):
        for episodes in (int(e) for e in args.episodes.split(",")):
            table = build_table(policies, shapes[shape](episodes, policies, np.random.default_rng(0)))
            games = int((table.present.sum(axis=1) * (table.present.sum(axis=1) - 1) // 2).max())
            seconds, (point, _) = timed(lambda: elo(table, args.resamples, np.random.default_rng(1)))
            before = "—"
            if args.before:
                old_seconds, (old_point, _) = timed(lambda: elo_before(table, args.resamples, np.random.default_rng(1)))
                assert np.allclose(point, old_point, atol=1e-6), (point, old_point)  # the run's own ratings agree
                before = f"{old_seconds:.1f}"
            print(f"| {shape} | {episodes:,} | {games} | {seconds:.1f} | {1e6 * seconds / episodes:.0f} | {before} |",
                  flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"# peak resident memory of the process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
