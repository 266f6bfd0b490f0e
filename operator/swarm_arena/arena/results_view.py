"""`swarm-arena results`: a finished (or running) evaluation's results, read and shown.

Two sources, one shape: the results ConfigMap the operator keeps (`results.json`, with the
counted episodes in `episodes.xz`, and in `<name>-results-<i>` for a big evaluation) and the JSON `swarm-arena run --output` writes. Both
carry `evaluation`, `progress` and `results` with the same keys as status. Shown as tables
(leaderboard, pairwise matrix, return aggregates), as JSON / YAML / CSV, as a plot (leaderboard
with intervals beside a win-probability heatmap), or exported in marl-eval's JSON layout.
Nothing here computes a statistic: every number comes from the results.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.table import Table

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.status import Progress, Results


@dataclass(frozen=True)
class ResultsDocument:
    evaluation: str
    results: Results
    progress: Progress | None = None
    seed: int | None = None
    episodes: list[EpisodeRecord] = field(default_factory=list)


def from_json(text: str, source: str) -> ResultsDocument:
    """A `swarm-arena run --output` file or a results ConfigMap's `results.json`."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        raise ValueError(f"{source}: no `results` object; expected a results.json or a `swarm-arena run --output` file")
    return ResultsDocument(
        evaluation=str(doc.get("evaluation", source)),
        results=Results.model_validate(doc["results"]),
        progress=Progress.model_validate(doc["progress"]) if doc.get("progress") else None,
        seed=doc.get("seed"),
        episodes=[EpisodeRecord.model_validate(e) for e in doc.get("episodes") or []],
    )


def from_configmap(configmap: dict[str, Any], source: str,
                   shards: list[dict[str, Any] | None] | None = None) -> ResultsDocument:
    """The results ConfigMap as the API server returns it (`data`, `binaryData`), with the
    ConfigMaps of its further record shards (`<name>-results-<i>`, None where absent)."""
    from swarm_arena.controller.build_results import RESULTS_KEY, shards_named
    from swarm_arena.controller.results_shards import read_back

    text = (configmap.get("data") or {}).get(RESULTS_KEY)
    if not text:
        raise ValueError(f"{source}: the ConfigMap has no {RESULTS_KEY} yet (the run has reported nothing)")
    document = from_json(text, source)
    found = read_back([configmap, *(shards or [])], shards_named(configmap))
    episodes = [found.records[e] for e in sorted(found.records)]
    return ResultsDocument(document.evaluation, document.results, document.progress, document.seed, episodes)


def read_configmap(namespace: str, name: str) -> ResultsDocument:
    """Read `<name>-results` in `namespace` with the local kubeconfig (or the in-cluster account)."""
    from kubernetes import client, config

    from swarm_arena.controller.names import results_configmap_name

    try:
        config.load_kube_config()
    except config.ConfigException:
        config.load_incluster_config()
    from swarm_arena.controller.build_results import shards_named
    from swarm_arena.controller.results_shards import MAX_SHARDS, shard_name

    api = client.CoreV1Api()
    cm_name = results_configmap_name(name)
    body = api.read_namespaced_config_map(cm_name, namespace)
    main = {"data": body.data, "binaryData": body.binary_data}
    shards: list[dict[str, Any] | None] = []
    index, named = 1, shards_named(main)
    while index < MAX_SHARDS:  # every shard named, and any written after the results ConfigMap was
        try:
            shard = api.read_namespaced_config_map(shard_name(name, index), namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            if index >= named:
                break
            shards.append(None)
        else:
            shards.append({"binaryData": shard.binary_data})
        index += 1
    return from_configmap(main, f"configmap {namespace}/{cm_name}", shards)


# ---- tables --------------------------------------------------------------------------------


def _interval(p: float | None, low: float | None, high: float | None) -> str:
    return "-" if p is None or low is None or high is None else f"{p:.2f} [{low:.2f}, {high:.2f}]"


def leaderboard_rows(doc: ResultsDocument) -> list[dict[str, Any]]:
    board = doc.results.from_configmap().leaderboard
    return [
        {
            "rank": rank if e.episodes else None,
            "policy": e.policy,
            "rating": e.rating,
            "ciLow": e.ci_low,
            "ciHigh": e.ci_high,
            "intervalKind": e.interval_kind.value if e.interval_kind else None,
            "meanReturn": e.mean_return,
            "episodes": e.episodes,
            "separatedFrom": e.separated_from,
        }
        for rank, e in enumerate(board, start=1)
    ]


def pairwise_rows(doc: ResultsDocument) -> list[dict[str, Any]]:
    pw = doc.results.pairwise
    if pw is None:
        return []
    rows = []
    for i, row_policy in enumerate(pw.policies):
        for j, column_policy in enumerate(pw.policies):
            if i != j and pw.probability[i][j] is not None:
                rows.append({"row": row_policy, "column": column_policy, "probability": pw.probability[i][j],
                             "low": pw.low[i][j], "high": pw.high[i][j], "episodes": pw.episodes[i][j],
                             "separated": bool(pw.separated[i][j]) if pw.separated else None})
    return rows


def aggregate_rows(doc: ResultsDocument) -> list[dict[str, Any]]:
    rows = []
    for a in doc.results.return_aggregates or []:
        row: dict[str, Any] = {"policy": a.policy, "episodes": a.episodes}
        for name, est in (("mean", a.mean), ("median", a.median), ("iqm", a.iqm), ("optimalityGap", a.optimality_gap)):
            if est is not None:
                row.update({name: est.value, f"{name}Low": est.low, f"{name}High": est.high})
        rows.append(row)
    return rows


def population_rows(doc: ResultsDocument) -> list[dict[str, Any]]:
    rows = []
    for p in doc.results.populations or []:
        row: dict[str, Any] = {"policy": p.policy, "episodes": p.episodes}
        for name, est in (("focalPerCapitaReturn", p.focal_per_capita_return),
                          ("backgroundPerCapitaReturn", p.background_per_capita_return)):
            row.update({name: est.value if est else None, f"{name}Low": est.low if est else None,
                        f"{name}High": est.high if est else None})
        rows.append(row)
    return rows


SOCIAL_METRICS = ("efficiency", "equality", "sustainability", "peace")


def social_rows(doc: ResultsDocument) -> list[dict[str, Any]]:
    rows = []
    for o in doc.results.social_outcomes or []:
        row: dict[str, Any] = {"kind": o.kind, "name": o.name, "episodes": o.episodes}
        for metric in SOCIAL_METRICS:
            est = getattr(o, metric)
            row.update({metric: est.value if est else None, f"{metric}Low": est.low if est else None,
                        f"{metric}High": est.high if est else None})
        rows.append(row)
    return rows


def tables(doc: ResultsDocument) -> list[Table]:
    method = doc.results.rating_method.value if doc.results.rating_method else "rating"
    level = doc.results.pairwise.confidence_level if doc.results.pairwise else 0.95
    board = Table(title=f"{doc.evaluation} leaderboard ({method})")
    for column in ("#", "policy", "rating", f"{level:.0%} interval", "kind", "mean return", "episodes", "separated from"):
        board.add_column(column, justify="right" if column in ("#", "rating", "mean return", "episodes") else "left")
    for row in leaderboard_rows(doc):
        board.add_row(str(row["rank"] or "-"), row["policy"], f"{row['rating']:,.2f}",
                      f"[{row['ciLow']:,.2f}, {row['ciHigh']:,.2f}]", row["intervalKind"] or "",
                      f"{row['meanReturn']:.4g}", str(row["episodes"]), ", ".join(row["separatedFrom"]))
    early = doc.results.stopped_early
    if early is not None:
        board.caption = f"stopped early ({early.reason}): {early.message}"
    out = [board]
    pw = doc.results.pairwise
    if pw is not None:
        matrix = Table(title=f"P(row beats column), {pw.kind}, {pw.confidence_level:.0%} intervals")
        matrix.add_column("")
        for p in pw.policies:
            matrix.add_column(p, justify="center")
        for i, p in enumerate(pw.policies):
            matrix.add_row(p, *(_interval(pw.probability[i][j], pw.low[i][j], pw.high[i][j])
                                for j in range(len(pw.policies))))
        out.append(matrix)
    if doc.results.return_aggregates:
        agg = Table(title="per-episode returns (stratified bootstrap intervals)")
        gap = any(a.optimality_gap for a in doc.results.return_aggregates)
        for column in ("policy", "episodes", "mean", "median", "IQM") + (("optimality gap",) if gap else ()):
            agg.add_column(column)
        for a in doc.results.return_aggregates:
            cells = [a.mean, a.median, a.iqm] + ([a.optimality_gap] if gap else [])
            agg.add_row(a.policy, str(a.episodes),
                        *(_interval(c.value, c.low, c.high) if c else "-" for c in cells))
        out.append(agg)
    if doc.results.populations:
        pop = Table(title="focal policies among the background population (per-capita return)")
        for column in ("policy", "episodes", "focal", "background"):
            pop.add_column(column)
        for p in doc.results.populations:
            pop.add_row(p.policy, str(p.episodes), *(_interval(e.value, e.low, e.high) if e else "-" for e in
                                                     (p.focal_per_capita_return, p.background_per_capita_return)))
        out.append(pop)
    if doc.results.social_outcomes:
        social = Table(title="social outcomes (Perolat et al. 2017), per policy and team")
        for column in ("kind", "name", "episodes", *SOCIAL_METRICS):
            social.add_column(column)
        for o in doc.results.social_outcomes:
            social.add_row(o.kind, o.name, str(o.episodes), *(
                _interval(e.value, e.low, e.high) if (e := getattr(o, m)) else "-" for m in SOCIAL_METRICS))
        out.append(social)
    recordings = doc.results.recordings
    if recordings is not None:
        recorded = Table(title="recorded episodes (swarm-arena replay URI)")
        for column in ("episodes", "count", "uri"):
            recorded.add_column(column)
        recorded.add_row(recordings.episodes or "-", str(recordings.count), recordings.uri)
        out.append(recorded)
    return out


# ---- machine-readable ----------------------------------------------------------------------


def as_data(doc: ResultsDocument) -> dict[str, Any]:
    return {
        "evaluation": doc.evaluation,
        "ratingMethod": doc.results.rating_method.value if doc.results.rating_method else None,
        "leaderboard": leaderboard_rows(doc),
        "pairwise": pairwise_rows(doc),
        "returnAggregates": aggregate_rows(doc),
        "populations": population_rows(doc),
        "socialOutcomes": social_rows(doc),
        "stoppedEarly": (doc.results.stopped_early.model_dump(by_alias=True, mode="json")
                         if doc.results.stopped_early else None),
        "recordings": doc.results.recordings.to_wire() if doc.results.recordings else None,
    }


def as_csv(doc: ResultsDocument, section: str) -> str:
    rows = {"leaderboard": leaderboard_rows, "pairwise": pairwise_rows, "aggregates": aggregate_rows,
            "populations": population_rows, "social": social_rows}[section](doc)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ";".join(v) if isinstance(v, list) else v for k, v in row.items()})
    return buffer.getvalue()


def marl_eval(doc: ResultsDocument, environment: str = "swarm-arena") -> dict[str, Any]:
    """marl-eval's raw layout: env -> task -> algorithm -> run -> {step_0, absolute_metrics}.

    Each policy is an algorithm, the evaluation a task, the run its seed; the per-episode mean
    per-agent returns are the `return` metric (marl-eval's aggregation then does rliable's).
    """
    if not doc.episodes:
        raise ValueError(f"{doc.evaluation}: no per-episode records to export (marl-eval needs the returns of each "
                         "episode: use the ConfigMap or a `swarm-arena run --output` file)")
    run = f"seed_{doc.seed if doc.seed is not None else 0}"
    returns: dict[str, list[float]] = {}
    for record in sorted(doc.episodes, key=lambda r: r.episode):
        for policy, value in record.returns.items():
            returns.setdefault(policy, []).append(value)
    steps = sum(r.steps for r in doc.episodes)
    task = doc.evaluation.replace("/", ".")
    return {
        environment: {
            task: {
                policy: {run: {"step_0": {"step_count": steps, "return": values},
                               "absolute_metrics": {"return": values}}}
                for policy, values in sorted(returns.items())
            }
        }
    }


# ---- plot ----------------------------------------------------------------------------------


def plot(doc: ResultsDocument, path: str | Path) -> None:
    """Leaderboard with its intervals (left) and the P(row beats column) heatmap (right)."""
    entries = doc.results.leaderboard
    pw = doc.results.pairwise
    n = max(1, len(entries))
    figure = Figure(figsize=(12 if pw else 7, max(4.0, 1.8 + 0.4 * n)), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    board, heat = figure.subplots(1, 2, width_ratios=[1, 1.2]) if pw else (figure.add_subplot(), None)
    rows = list(range(len(entries)))[::-1]
    for row, e in zip(rows, entries):
        color = {"prior": "tab:gray", "posterior": "tab:orange"}.get(e.interval_kind.value if e.interval_kind else "",
                                                                    "tab:blue")
        board.errorbar(e.rating, row, xerr=[[e.rating - e.ci_low], [e.ci_high - e.rating]], fmt="o", color=color,
                       capsize=4, elinewidth=2)
    board.set_yticks(rows, [e.policy for e in entries])
    board.set_xlabel(f"{doc.results.rating_method.value if doc.results.rating_method else 'rating'} "
                     "(grey: prior range, orange: posterior band)")
    board.grid(axis="x", alpha=0.3)
    board.set_title(f"{doc.evaluation}: leaderboard", fontsize=10)
    if pw is not None and heat is not None:
        import numpy as np

        values = np.array([[np.nan if v is None else v for v in row] for row in pw.probability], dtype=float)
        image = heat.imshow(values, vmin=0, vmax=1, cmap="RdBu")
        heat.set_xticks(range(len(pw.policies)), pw.policies, rotation=60, ha="right")
        heat.set_yticks(range(len(pw.policies)), pw.policies)
        if len(pw.policies) <= 12:
            for i in range(len(pw.policies)):
                for j in range(len(pw.policies)):
                    if not np.isnan(values[i, j]):
                        mark = "*" if pw.separated and pw.separated[i][j] else ""
                        heat.text(j, i, f"{values[i, j]:.2f}{mark}", ha="center", va="center", fontsize=8)
        heat.set_title(f"P(row beats column), {pw.kind} (* separated)", fontsize=10)
        figure.colorbar(image, ax=heat, shrink=0.8)
    figure.savefig(path, format="png")
