"""The results ConfigMap of an evaluation, owned by it: a pure builder, and its reader.

It is where the operator keeps what was counted (docs/operator.md "What was counted"):
`episodes.xz` holds every counted episode record (api/episode_codec.py), so a re-submission after suspend, a
failed run or a lost head resumes without replaying them, with or without a durable checkpoint
store, and the final results survive the Ray cluster. `results.json` holds the full leaderboard
and the run's figures; `episodes-summary.json` a per-episode summary trimmed to a size budget.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from swarm_arena.api import episode_codec
from swarm_arena.api.report import EpisodeRecord, EpisodeSocial, SocialMetrics, significant
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.api.status import Progress, Recovery, Results
from swarm_arena.controller import names
from swarm_arena.controller.build_job import MAX_ENV_VALUE_BYTES

EPISODES_KEY = "episodes.xz"
EARLIER_EPISODES_KEY = "episodes.jsonl.gz"
"""Where an operator before the compact packing kept the records (gzip of JSON lines): still read."""
RESULTS_KEY = "results.json"
SUMMARY_KEY = "episodes-summary.json"
# A ConfigMap holds at most 1 MiB; the summary gets what the records leave, within this budget.
CONFIGMAP_LIMIT_BYTES = 1024 * 1024
SUMMARY_BUDGET_BYTES = 256 * 1024
RECORDS_BUDGET_BYTES = CONFIGMAP_LIMIT_BYTES - SUMMARY_BUDGET_BYTES - 64 * 1024
# Estimated sizes get this margin: real returns compress a little worse or better than the sample.
SIZE_MARGIN = 1.25
RECORDS_KEPT_KEY = "episodeRecords"
METADATA_ALLOWANCE_BYTES = 16 * 1024
"""Keys, metadata and labels: what the three values leave of the limit is theirs."""


class TooManyEpisodes(ValueError):
    """The counted episode records no longer fit in one ConfigMap (and there is no durable store)."""


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


def size_problems(spec: SwarmEvaluationSpec) -> list[str]:
    """Why the operator cannot keep every counted episode of this plan without a durable store.

    Without `spec.checkpoint.storageURI` every record lives in the results ConfigMap (1 MiB) and
    travels with a re-submission (one environment variable); a plan whose records cannot fit is
    refused before it starts, naming the fields, instead of failing after hours of work."""
    if spec.checkpoint.storage_uri:
        return []
    total = spec.planned_episodes
    sample = min(total, 256)
    per_record = len(pack_episodes(_sample_records(spec, sample))) / sample * SIZE_MARGIN
    budget = min(RECORDS_BUDGET_BYTES, MAX_ENV_VALUE_BYTES)
    if per_record * total <= budget:
        return []
    fits = int(budget / per_record)
    per = f" ({spec.episodes} × {total // spec.episodes} pairings)" if total != spec.episodes else ""
    return [
        f"spec.episodes: {total} planned episodes{per} need about {per_record * total / 1024:.0f} KiB of episode "
        f"records; without spec.checkpoint.storageURI the operator keeps them in the results ConfigMap and "
        f"re-submits them with a resumed job, which hold about {fits} here ({budget // 1024} KiB). Set "
        "spec.checkpoint.storageURI (the durable store keeps every record) or plan fewer episodes"
    ]


def pack_episodes(records: list[EpisodeRecord]) -> str:
    return base64.b64encode(episode_codec.pack(records)).decode("ascii")


def unpack_episodes(packed: str | None) -> list[EpisodeRecord]:
    """Records packed by `pack_episodes`, or by an earlier operator (gzip of JSON lines)."""
    return episode_codec.unpack(base64.b64decode(packed)) if packed else []


def episodes_from_configmap(configmap: dict[str, Any] | None) -> list[EpisodeRecord]:
    binary = (configmap or {}).get("binaryData") or {}
    return unpack_episodes(binary.get(EPISODES_KEY) or binary.get(EARLIER_EPISODES_KEY))


def is_final(configmap: dict[str, Any]) -> bool:
    """Whether the ConfigMap holds the evaluation's final results (`final: true` in results.json)."""
    try:
        return json.loads((configmap.get("data") or {}).get(RESULTS_KEY) or "{}").get("final") is True
    except ValueError:
        return False


def _summary(records: list[EpisodeRecord]) -> dict[str, Any]:
    rows = [
        {"episode": r.episode, "pairing": r.pairing, "returns": r.returns, "steps": r.steps}
        for r in sorted(records, key=lambda r: r.episode)
    ]
    kept = rows
    while kept and len(json.dumps(kept, separators=(",", ":"))) > SUMMARY_BUDGET_BYTES:
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
) -> dict[str, Any]:
    """The ConfigMap; records that do not fit are left to the durable store when the spec has one
    (`episodeRecords` in results.json says where they are), else `TooManyEpisodes` (or, with
    `drop_records`, for an evaluation that failed for that very reason, they are left out)."""
    name = evaluation.metadata.name
    packed = pack_episodes(records)
    document = {
        "evaluation": f"{evaluation.metadata.namespace}/{name}",
        "final": final,
        "progress": progress.to_wire() if progress else None,
        "results": results.for_configmap().to_wire() if results else None,
        "recoveries": [r.to_wire() for r in recoveries],
        RECORDS_KEPT_KEY: {"count": len(records), "in": "configMap"},
    }
    # Compact: the pairwise matrix of 64 policies is ~4,000 cells a table.
    results_json = json.dumps(document, separators=(",", ":"), sort_keys=True)
    room = min(RECORDS_BUDGET_BYTES,
               CONFIGMAP_LIMIT_BYTES - SUMMARY_BUDGET_BYTES - METADATA_ALLOWANCE_BYTES - len(results_json))
    if len(packed) > room:
        store = evaluation.spec.checkpoint.storage_uri
        if not store and not drop_records:
            raise TooManyEpisodes(
                f"{len(records)} counted episodes take {len(packed) // 1024} KiB compressed, more than the results "
                f"ConfigMap holds ({room // 1024} KiB); set spec.checkpoint.storageURI (the durable "
                "store keeps every record) or plan fewer spec.episodes"
            )
        packed = None
        document[RECORDS_KEPT_KEY] = {"count": len(records),
                                      "in": "spec.checkpoint.storageURI" if store else "nowhere: too many"}
        results_json = json.dumps(document, separators=(",", ":"), sort_keys=True)
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
            SUMMARY_KEY: json.dumps(_summary(records), separators=(",", ":")),
        },
        **({"binaryData": {EPISODES_KEY: packed}} if packed is not None else {}),
    }
