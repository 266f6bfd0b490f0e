"""Rendering a run report: the terminal table and the PNG plot."""

from __future__ import annotations

import io
import random
from pathlib import Path

import matplotlib.image
from rich.console import Console

from swarm_arena.api.report import RunReport
from swarm_arena.arena.leaderboard_view import leaderboard_table, plot_leaderboard, summary_line
from swarm_arena.arena.scoring import EpisodeOutcome, leaderboard

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_report() -> RunReport:
    rng = random.Random(0)
    outcomes = [
        EpisodeOutcome(i, {"greedy": rng.gauss(4.5, 1.0), "random": rng.gauss(3.5, 1.5), "noop": rng.gauss(0.1, 0.05)})
        for i in range(12)
    ]
    entries = leaderboard("elo", ["greedy", "random", "noop", "idle"], outcomes, seed=0)
    return RunReport.model_validate(
        {
            "evaluation": "default/foraging-demo",
            "seed": 0,
            "progress": {"episodesCompleted": 12, "episodesTotal": 12, "agentSteps": 1_200_000},
            "results": {
                "leaderboard": [e.to_wire() for e in entries],
                "stepLatencyMs": {"p50": 1.234, "p99": 6.5},
                "agentStepsPerSecond": 254321.7,
            },
            "recoveries": [
                {"time": "2025-01-01T00:00:00Z", "reason": "NodeLost", "actorsRestarted": ["a"], "seconds": 1.5}
            ],
        }
    )


def render(report: RunReport, method: str | None = "elo") -> str:
    console = Console(file=io.StringIO(), record=True, width=140, color_system=None)
    console.print(leaderboard_table(report, method))
    return console.export_text()


def test_table_lists_policies_in_leaderboard_order_with_ratings_and_intervals() -> None:
    report = make_report()
    text = render(report)
    lines = text.splitlines()
    rows = [next(i for i, line in enumerate(lines) if f" {p} " in line) for p in ("greedy", "random", "noop", "idle")]
    assert rows == sorted(rows)
    top = report.results.leaderboard[0]
    greedy_line = lines[rows[0]]
    assert greedy_line.split()[1] == "1"  # rank column (after the border)
    assert f"{top.rating:,.1f}" in greedy_line
    assert f"[{top.ci_low:,.1f}, {top.ci_high:,.1f}]" in greedy_line
    assert f"{top.mean_return:.3f}" in greedy_line  # returns ~4: three decimals
    idle_line = lines[rows[3]]
    assert idle_line.split()[1] == "-" and idle_line.rstrip(" │").endswith("0")
    assert "default/foraging-demo leaderboard (elo)" in text


def test_caption_has_latency_throughput_episodes_and_recoveries() -> None:
    report = make_report()
    line = summary_line(report)
    assert line == "episodes 12/12 · step latency p50 1.23 ms, p99 6.50 ms · 254,322 agent-steps/s · 1 recovery"
    assert "p99 6.50 ms" in render(report)


def test_caption_shows_the_tail_when_the_run_reports_it() -> None:
    report = make_report()
    latency = report.results.step_latency_ms.model_copy(update={"p99_9": 9.5, "max": 11.25})
    report = report.model_copy(update={"results": report.results.model_copy(update={"step_latency_ms": latency})})
    assert "step latency p50 1.23 ms, p99 6.50 ms, p99.9 9.50 ms, max 11.25 ms ·" in summary_line(report)


def test_summary_without_performance_figures() -> None:
    report = make_report().model_copy(update={"results": make_report().results.model_copy(
        update={"step_latency_ms": None, "agent_steps_per_second": None})})
    assert summary_line(report) == "episodes 12/12 · 1 recovery"


def test_plot_is_a_png_with_one_row_per_policy(tmp_path: Path) -> None:
    path = tmp_path / "leaderboard.png"
    plot_leaderboard(make_report(), path, "elo")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert width == 960 and height > 250
    assert pixels.std() > 0.05  # not a blank canvas
