"""The results ConfigMap of an evaluation, owned by it: a pure builder, and its reader.

It is where the operator keeps what was counted (docs/operator.md "What was counted"):
`episodes.jsonl.gz` holds every counted episode record, so a re-submission after suspend, a
failed run or a lost head resumes without replaying them, with or without a durable checkpoint
store, and the final results survive the Ray cluster. `results.json` holds the full leaderboard
and the run's figures; `episodes-summary.json` a per-episode summary trimmed to a size budget.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.status import Progress, Recovery, Results
from swarm_arena.controller import names

EPISODES_KEY = "episodes.jsonl.gz"
RESULTS_KEY = "results.json"
SUMMARY_KEY = "episodes-summary.json"
# A ConfigMap holds at most 1 MiB; the summary gets what the records leave, within this budget.
CONFIGMAP_LIMIT_BYTES = 1024 * 1024
SUMMARY_BUDGET_BYTES = 256 * 1024
METADATA_ALLOWANCE_BYTES = 16 * 1024
"""Keys, metadata and labels: what the three values leave of the limit is theirs."""


class TooManyEpisodes(ValueError):
    """The counted episode records no longer fit in one ConfigMap."""


def pack_episodes(records: list[EpisodeRecord]) -> str:
    lines = "".join(r.model_dump_json(by_alias=True) + "\n" for r in sorted(records, key=lambda r: r.episode))
    return base64.b64encode(gzip.compress(lines.encode(), mtime=0)).decode("ascii")


def unpack_episodes(packed: str | None) -> list[EpisodeRecord]:
    if not packed:
        return []
    text = gzip.decompress(base64.b64decode(packed)).decode()
    return [EpisodeRecord.model_validate_json(line) for line in text.splitlines() if line.strip()]


def episodes_from_configmap(configmap: dict[str, Any] | None) -> list[EpisodeRecord]:
    if not configmap:
        return []
    return unpack_episodes((configmap.get("binaryData") or {}).get(EPISODES_KEY))


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
) -> dict[str, Any]:
    name = evaluation.metadata.name
    packed = pack_episodes(records)
    document = {
        "evaluation": f"{evaluation.metadata.namespace}/{name}",
        "final": final,
        "progress": progress.to_wire() if progress else None,
        "results": results.for_configmap().to_wire() if results else None,
        "recoveries": [r.to_wire() for r in recoveries],
    }
    # Compact: the pairwise matrix of 64 policies is ~4,000 cells a table.
    results_json = json.dumps(document, separators=(",", ":"), sort_keys=True)
    room = CONFIGMAP_LIMIT_BYTES - SUMMARY_BUDGET_BYTES - METADATA_ALLOWANCE_BYTES - len(results_json)
    if len(packed) > room:
        raise TooManyEpisodes(
            f"{len(records)} counted episodes take {len(packed) // 1024} KiB compressed, more than the results "
            "ConfigMap holds; set spec.checkpoint.storageURI (the durable store keeps them)"
        )
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
        "binaryData": {EPISODES_KEY: packed},
    }
