"""The results ConfigMap of an evaluation, owned by it: a pure builder, and its reader.

It is where the operator keeps what was counted (docs/operator.md "What was counted"):
`episodes.jsonl.gz` holds the counted episode records (the first shard of them: the rest are in
`<name>-results-<i>`, results_shards.py), so a re-submission after suspend, a failed run or a lost
head resumes without replaying them, with or without a durable checkpoint store, and the final
results survive the Ray cluster. `results.json` holds the full leaderboard and the run's figures;
`episodes-summary.json` a per-episode summary trimmed to a size budget.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from swarm_arena.api.report import EpisodeRecord, EpisodeSocial, SocialMetrics, significant
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.api.status import Progress, Recovery, Results
from swarm_arena.controller import names
from swarm_arena.controller import results_shards as shards
from swarm_arena.controller.results_shards import (  # noqa: F401 (the names callers know)
    CONFIGMAP_LIMIT_BYTES,
    EPISODES_KEY,
    TooManyEpisodes,
)

RESULTS_KEY = "results.json"
SUMMARY_KEY = "episodes-summary.json"
# The summary gets what the records and results.json leave of the limit, at most this.
SUMMARY_BUDGET_BYTES = 256 * 1024
# Estimated sizes get this margin: real returns compress a little worse or better than the sample.
SIZE_MARGIN = 1.25
RECORDS_KEPT_KEY = "episodeRecords"
METADATA_ALLOWANCE_BYTES = 16 * 1024
"""Keys, metadata and labels: what the three values leave of the limit is theirs."""


def _sample_records(spec: SwarmEvaluationSpec, n: int) -> list[EpisodeRecord]:
    """`n` records as large as this spec's can be: every policy it may field, full-precision returns."""
    teams = [t.name for t in spec.effective_teams]
    policies = spec.policy_names
    rng = random.Random(spec.seed)
    total = spec.planned_episodes
    steps = spec.environment.max_steps or 100_000
    out = []
    for i in range(n):
        if spec.matchmaking.mode.value == "round-robin":
            chosen = rng.sample(policies, len(teams)) if len(policies) >= len(teams) else policies
            pairing = dict(zip(teams, chosen))
            fielded = list(chosen)
        else:
            pairing = {t: ",".join(policies) for t in teams}
            fielded = policies
        def metrics() -> SocialMetrics:  # every social metric at the precision a record carries (social_tally.py)
            return SocialMetrics(efficiency=significant(rng.uniform(-1e3, 1e3)), equality=significant(rng.random()),
                                 sustainability=significant(rng.uniform(1, steps)), peace=significant(rng.random()))

        social = EpisodeSocial(policies={p: metrics() for p in fielded}, teams={t: metrics() for t in teams})
        out.append(EpisodeRecord(
            episode=max(total - n, 0) + i, pairing=pairing, returns={p: rng.uniform(-1e3, 1e3) for p in fielded},
            agents={p: rng.randrange(1, 100_000) for p in fielded}, steps=steps, agent_steps=steps * 99_999,
            social=social,
        ))
    return out


def record_bytes(spec: SwarmEvaluationSpec) -> float:
    """Estimated compressed bytes of one episode record of this plan (its largest kind), with margin."""
    sample = min(spec.planned_episodes, 256)
    lines = [r.model_dump_json(by_alias=True) for r in _sample_records(spec, sample)]
    return len(shards.compress_lines(lines)) / sample * SIZE_MARGIN


def size_problems(spec: SwarmEvaluationSpec) -> list[str]:
    """Why the operator cannot keep every counted episode of this plan without a durable store.

    Without `spec.checkpoint.storageURI` the records live in the results ConfigMap and at most
    `MAX_SHARDS - 1` more (results_shards.py); a plan whose records cannot fit even so is refused
    before it starts, naming the fields, instead of failing after hours of work."""
    if spec.checkpoint.storage_uri:
        return []
    total = spec.planned_episodes
    per_record = record_bytes(spec)
    budget = shards.CAPACITY_BYTES
    if per_record * total <= budget:
        return []
    fits = int(budget / per_record)
    per = f" ({spec.episodes} × {total // spec.episodes} pairings)" if total != spec.episodes else ""
    return [
        f"spec.episodes: {total} planned episodes{per} need about {per_record * total / 2**20:.1f} MiB of "
        f"compressed episode records; without spec.checkpoint.storageURI the operator keeps them in at most "
        f"{shards.MAX_SHARDS} ConfigMaps ({budget / 2**20:.1f} MiB), about {fits} episodes here. Set "
        "spec.checkpoint.storageURI (the durable store keeps every record) or plan fewer episodes"
    ]


def record_line(record: EpisodeRecord) -> str:
    return record.model_dump_json(by_alias=True)


def episodes_from_configmap(configmap: dict[str, Any] | None) -> list[EpisodeRecord]:
    """The records one ConfigMap holds (the results ConfigMap's first shard, or a shard)."""
    return [EpisodeRecord.model_validate_json(line) for line in shards.lines_of(configmap)]


def shards_named(configmap: dict[str, Any] | None) -> int:
    """How many record shards the results ConfigMap says were written (1: only itself)."""
    try:
        kept = json.loads(((configmap or {}).get("data") or {}).get(RESULTS_KEY) or "{}").get(RECORDS_KEPT_KEY) or {}
        return max(int(kept.get("shards", 1)), 1)
    except (ValueError, TypeError, AttributeError):
        return 1


def is_final(configmap: dict[str, Any]) -> bool:
    """Whether the ConfigMap holds the evaluation's final results (`final: true` in results.json)."""
    try:
        return json.loads((configmap.get("data") or {}).get(RESULTS_KEY) or "{}").get("final") is True
    except ValueError:
        return False


def _summary(records: list[EpisodeRecord], budget: int) -> dict[str, Any]:
    rows = [
        {"episode": r.episode, "pairing": r.pairing, "returns": r.returns, "steps": r.steps}
        for r in sorted(records, key=lambda r: r.episode)
    ]
    kept = rows
    while kept and len(json.dumps(kept, separators=(",", ":"))) > budget:
        kept = kept[len(kept) // 4 or 1 :]  # keep the newest; the full records are in episodes.jsonl.gz
    return {"episodes": len(rows), "shown": len(kept), "truncated": len(kept) < len(rows), "rows": kept}


def build_results_configmap(
    evaluation: SwarmEvaluation,
    uid: str,
    *,
    records: list[EpisodeRecord],
    progress: Progress | None,
    results: Results | None,
    recoveries: list[Recovery],
    final: bool,
    drop_records: bool = False,
    layout: list[shards.Shard] | None = None,
) -> dict[str, Any]:
    """The results ConfigMap: shard 0 of the records (`layout`, as `results_shards.place` made it
    from `records` in counting order; placed here from `records` by episode when not given).

    More than one shard: with `spec.checkpoint.storageURI` the records are left to the durable
    store (`episodeRecords.in` says so) and the ConfigMap keeps none; without one they stay in the
    shard ConfigMaps (`episodeRecords.shards` says how many), at most `MAX_SHARDS`, else
    `TooManyEpisodes` (or, with `drop_records`, for an evaluation that failed for that very reason,
    they are left out)."""
    name = evaluation.metadata.name
    store = evaluation.spec.checkpoint.storage_uri
    if layout is None:
        by_episode = {r.episode: record_line(r) for r in records}
        layout = shards.place([], sorted(by_episode), by_episode.__getitem__)
    kept: dict[str, Any] = {"count": len(records), "in": "configMap"}
    packed: bytes | None = layout[0].packed if layout else None
    if len(layout) > 1:
        packed = None
        if drop_records:
            kept["in"] = "nowhere: too many"
        elif store:
            kept["in"] = "spec.checkpoint.storageURI"
        elif len(layout) > shards.MAX_SHARDS:
            raise TooManyEpisodes(
                f"{len(records)} counted episodes need {len(layout)} ConfigMaps of records, more than the "
                f"{shards.MAX_SHARDS} the operator keeps; set spec.checkpoint.storageURI (the durable store "
                "keeps every record) or plan fewer spec.episodes"
            )
        else:
            packed = layout[0].packed
            kept.update({"in": "configMaps", "shards": len(layout)})
    document = {
        "evaluation": f"{evaluation.metadata.namespace}/{name}",
        "final": final,
        "progress": progress.to_wire() if progress else None,
        "results": results.for_configmap().to_wire() if results else None,
        "recoveries": [r.to_wire() for r in recoveries],
        RECORDS_KEPT_KEY: kept,
    }
    # Compact: the pairwise matrix of 64 policies is ~4,000 cells a table.
    results_json = json.dumps(document, separators=(",", ":"), sort_keys=True)
    left = (CONFIGMAP_LIMIT_BYTES - METADATA_ALLOWANCE_BYTES - len(results_json)
            - (shards.MAIN_RECORDS_BUDGET_BYTES if packed is not None else 0))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names.results_configmap_name(name),
            "namespace": evaluation.metadata.namespace,
            "labels": names.labels(name, "results"),
            "ownerReferences": [names.owner_reference(name, uid)],
        },
        "data": {
            RESULTS_KEY: results_json,
            SUMMARY_KEY: json.dumps(_summary(records, max(min(SUMMARY_BUDGET_BYTES, left), 0)),
                                    separators=(",", ":")),
        },
        **({"binaryData": {EPISODES_KEY: base64.b64encode(packed).decode("ascii")}} if packed is not None else {}),
    }
