"""The results ConfigMap of an evaluation, owned by it: a pure builder, and its reader.

It is where the operator keeps what was counted (docs/operator.md "What was counted"):
`episodes.xz` holds the counted episode records (api/episode_codec.py; for a big evaluation the
first shard of them, the rest in `<name>-results-<i>`, results_shards.py), so a re-submission
after suspend, a failed run or a lost head resumes without replaying them, with or without a
durable checkpoint store, and the final results survive the Ray cluster. `results.json` holds the
full leaderboard and the run's figures; `episodes-summary.json` a per-episode summary trimmed to a
size budget.
"""

from __future__ import annotations

import base64
import json
import random
import sys
from typing import Any

from swarm_arena.api import episode_codec
from swarm_arena.api.report import EpisodeRecord, EpisodeSocial, SocialMetrics, significant
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.api.status import Progress, Recovery, Results
from swarm_arena.controller import names
from swarm_arena.controller import results_shards as shards
from swarm_arena.controller.results_shards import (  # noqa: F401 (the names callers know)
    CONFIGMAP_LIMIT_BYTES,
    EARLIER_EPISODES_KEY,
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
        returns = {p: rng.uniform(-1e3, 1e3) for p in fielded}
        agents = {p: rng.randrange(1, 100_000) for p in fielded}

        def own(group: list[str]) -> bool:  # its policies play in no other team
            return all(sum(p in ps.split(",") for ps in pairing.values()) == 1 for p in group)

        def metrics(group: list[str]) -> SocialMetrics:
            # At the precision a record carries (social_tally.py); efficiency is the group's summed
            # return per step, as the arena computes it, where the record's returns tell it.
            efficiency = sum(returns[p] * agents[p] for p in group) / steps if own(group) else rng.uniform(-1e3, 1e3)
            return SocialMetrics(efficiency=significant(efficiency), equality=significant(rng.random()),
                                 sustainability=significant(rng.uniform(1, steps)), peace=significant(rng.random()))

        by_policy = {p: metrics([p]) for p in fielded}  # a team of one policy that plays nowhere else has its metrics
        by_team = {t: by_policy[ps] if ps in by_policy and own([ps]) else metrics(ps.split(","))
                   for t, ps in pairing.items()}
        out.append(EpisodeRecord(
            episode=max(total - n, 0) + i, pairing=pairing, returns=returns, agents=agents, steps=steps,
            agent_steps=steps * 99_999, social=EpisodeSocial(policies=by_policy, teams=by_team),
        ))
    return out


def record_bytes(spec: SwarmEvaluationSpec) -> float:
    """Estimated packed bytes of one episode record of this plan (its largest kind), with margin."""
    sample = min(spec.planned_episodes, 256)
    return len(episode_codec.pack(_sample_records(spec, sample))) / sample * SIZE_MARGIN


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
        f"packed episode records; without spec.checkpoint.storageURI the operator keeps them in at most "
        f"{shards.MAX_SHARDS} ConfigMaps ({budget / 2**20:.1f} MiB), about {fits} episodes here. Set "
        "spec.checkpoint.storageURI (the durable store keeps every record) or plan fewer episodes"
    ]


def episodes_from_configmap(configmap: dict[str, Any] | None) -> list[EpisodeRecord]:
    """The records one ConfigMap holds (the results ConfigMap's first shard, or a shard)."""
    return shards.read_shard(configmap)[0]


def shards_named(configmap: dict[str, Any] | None) -> int:
    """How many record shards the results ConfigMap says were written (1: only itself; at most
    `MAX_SHARDS`, whatever it says: no more are ever written)."""
    try:
        kept = json.loads(((configmap or {}).get("data") or {}).get(RESULTS_KEY) or "{}").get(RECORDS_KEPT_KEY) or {}
        return min(max(int(kept.get("shards", 1)), 1), shards.MAX_SHARDS)
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
        kept = kept[len(kept) // 4 or 1 :]  # keep the newest; the full records are in episodes.xz
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
        by_episode = {r.episode: r for r in records}
        # With a store, only whether the records fit shard 0 matters: the rest stay in the store.
        beyond = shards.SHARD_BUDGET_BYTES if not store else sys.maxsize
        layout = shards.place([], sorted(by_episode), by_episode.__getitem__,
                              lambda index: shards.budget(0) if index == 0 else beyond)
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
