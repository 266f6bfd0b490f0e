"""How a person sees a run's results: a terminal table (rich) and a PNG plot (matplotlib).

Pure rendering of a `RunReport`: nothing here computes ratings, so the table printed by
`swarm-arena run`, the plot in the docs and `status.results` always show the same numbers. The
plot uses matplotlib's object API on an Agg canvas (no pyplot state, no display), so it is safe
in a Ray driver, a thread or a headless CI job.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.table import Table

from swarm_arena.api.report import RunReport
from swarm_arena.api.spec import RatingMethod
from swarm_arena.api.status import LeaderboardEntry


def _decimals(values: list[float]) -> int:
    """Decimals for a column: about four significant digits of its largest value (Elo ~1500: 1,
    mean returns ~0.05: 4), the same for every row so the column lines up."""
    largest = max((abs(v) for v in values if math.isfinite(v) and v != 0), default=1.0)
    return min(6, max(1, 3 - math.floor(math.log10(largest))))


def _method(rating_method: str | RatingMethod | None) -> str | None:
    return None if rating_method is None else RatingMethod(rating_method).value


def summary_line(report: RunReport) -> str:
    """Episodes, latency, throughput and recoveries in one line."""
    results, progress = report.results, report.progress
    parts = [f"episodes {progress.episodes_completed}/{progress.episodes_total}"]
    latency = results.step_latency_ms
    if latency is not None:
        tail = "".join(
            f", {name} {value:.2f} ms" for name, value in (("p99.9", latency.p99_9), ("max", latency.max)) if value is not None
        )
        parts.append(f"step latency p50 {latency.p50:.2f} ms, p99 {latency.p99:.2f} ms{tail}")
    if results.agent_steps_per_second is not None:
        parts.append(f"{results.agent_steps_per_second:,.0f} agent-steps/s")
    parts.append(f"{len(report.recoveries)} recover{'y' if len(report.recoveries) == 1 else 'ies'}")
    return " · ".join(parts)


def leaderboard_table(report: RunReport, rating_method: str | RatingMethod | None = None) -> Table:
    """Rank, policy, rating, 95% CI, mean return, episodes; the run's figures as the caption."""
    method = _method(rating_method)
    table = Table(
        title=f"{report.evaluation} leaderboard" + (f" ({method})" if method else ""),
        caption=summary_line(report),
        caption_justify="left",
    )
    table.add_column("#", justify="right")
    table.add_column("policy")
    table.add_column("rating", justify="right")
    table.add_column("95% CI", justify="right")
    table.add_column("mean return", justify="right")
    table.add_column("episodes", justify="right")
    entries = report.results.leaderboard
    r = _decimals([v for e in entries for v in (e.rating, e.ci_low, e.ci_high)])
    m = _decimals([e.mean_return for e in entries if e.episodes])
    for rank, entry in enumerate(entries, start=1):
        played = entry.episodes > 0
        table.add_row(
            str(rank) if played else "-",
            entry.policy,
            f"{entry.rating:,.{r}f}",
            f"[{entry.ci_low:,.{r}f}, {entry.ci_high:,.{r}f}]",
            f"{entry.mean_return:,.{m}f}" if played else "-",
            str(entry.episodes),
            style=None if played else "dim",
        )
    return table


def plot_leaderboard(report: RunReport, path: str | Path, rating_method: str | RatingMethod | None = None) -> None:
    """Write a PNG: one row per policy (best on top), its rating with the 95% CI as an error bar."""
    method = _method(rating_method)
    entries: list[LeaderboardEntry] = report.results.leaderboard
    height = 1.6 + 0.42 * max(1, len(entries))
    figure = Figure(figsize=(8, height), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    rows = list(range(len(entries)))[::-1]  # best on top
    for row, entry in zip(rows, entries):
        played = entry.episodes > 0
        color = "tab:blue" if played else "tab:gray"
        axes.errorbar(
            entry.rating,
            row,
            xerr=[[entry.rating - entry.ci_low], [entry.ci_high - entry.rating]],
            fmt="o" if played else "x",
            color=color,
            ecolor=color,
            elinewidth=2,
            capsize=4,
        )
    axes.set_yticks(rows, [e.policy if e.episodes else f"{e.policy} (no episodes)" for e in entries])
    axes.set_ylim(-0.7, len(entries) - 0.3)
    axes.margins(x=0.06)
    axes.set_xlabel(f"{method or 'rating'} (point and 95% confidence interval)")
    axes.grid(axis="x", alpha=0.3)
    title = report.evaluation + (f": {method} leaderboard" if method else ": leaderboard")
    axes.set_title(f"{title}\n{summary_line(report)}", fontsize=10)
    figure.savefig(path, format="png")
