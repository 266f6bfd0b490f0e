"""Counted episode records over several ConfigMaps, owned by the evaluation (pure).

One ConfigMap holds at most 1 MiB. Shard 0 is the results ConfigMap itself (`<name>-results`,
next to results.json): an evaluation whose records fit it has no other, and its ConfigMap is what
it always was. Shard i >= 1 is `<name>-results-<i>`, holding only `episodes.xz`. Every shard's
records are one payload of the packing the results ConfigMap has always used
(api/episode_codec.py). Shards fill in counting order and are cut by their packed (compressed)
size, the bytes that count against the limit, never by what a record holds. A full shard is
sealed: its members never change, so a pass packs and writes only the open (last) shard and any
new ones.

Reading back is a union by episode index over every shard found: a record written twice (a shard
written, the operator restarted before the next) counts once, a shard written past the last one
the results ConfigMap names is still found (the reader asks for the next names, at most
`MAX_SHARDS`), and a shard that is missing only loses its records to a replay (the job plays what
it was not told was counted), never counts one twice.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from swarm_arena.api import episode_codec
from swarm_arena.api.report import EpisodeRecord
from swarm_arena.controller import names

EPISODES_KEY = "episodes.xz"
EARLIER_EPISODES_KEY = "episodes.jsonl.gz"
"""Where an operator before the compact packing kept the records (gzip of JSON lines): still read."""
CONFIGMAP_LIMIT_BYTES = 1024 * 1024
"""What the API server lets one ConfigMap's data and binaryData hold together (binaryData counted decoded)."""
MAIN_RECORDS_BUDGET_BYTES = 512 * 1024
"""Packed records in the results ConfigMap itself (shard 0): results.json and the summary share the rest."""
SHARD_BUDGET_BYTES = 960 * 1024
"""Packed records in a shard ConfigMap of its own (keys and metadata get the rest)."""
MAX_SHARDS = 16
"""At most this many ConfigMaps of records (about 14.6 MiB packed, held in the operator's memory,
unpacked, while the evaluation runs): a plan that needs more is refused without a durable store."""
CAPACITY_BYTES = MAIN_RECORDS_BUDGET_BYTES + (MAX_SHARDS - 1) * SHARD_BUDGET_BYTES


class TooManyEpisodes(ValueError):
    """The counted episode records no longer fit in `MAX_SHARDS` ConfigMaps (and there is no durable store)."""


def budget(index: int) -> int:
    return MAIN_RECORDS_BUDGET_BYTES if index == 0 else SHARD_BUDGET_BYTES


@dataclass(frozen=True)
class Shard:
    """One shard as placed: its members (episode indices) and their packed bytes (episode_codec.pack)."""

    members: tuple[int, ...]
    packed: bytes


EMPTY = Shard((), episode_codec.pack(()))


def _fit(shard: Shard, rest: Sequence[int], record: Callable[[int], EpisodeRecord], limit: int) -> tuple[int, bytes]:
    """How many of `rest` (a prefix) the shard takes within `limit` packed bytes, and its bytes
    then; at least one for an empty shard (a record bigger than a whole shard gets one of its own).

    The packing is not incremental (columns, then xz) and costs about 0.15 ms a record, so the
    count is guessed from the bytes a record takes, aiming a record short of the limit, and the
    guess packed: a pass adding a few records to a shard with room packs once. A shard is full
    when less than two records' bytes are left (a guess that overshot narrows the next one; after
    three, halving)."""

    def pack(k: int) -> bytes:
        return episode_codec.pack([record(e) for e in (*shard.members, *rest[:k])])

    if shard.members:
        per = len(shard.packed) / len(shard.members)
    else:
        probe = min(len(rest), 64)
        per = len(pack(probe)) / probe
    lo, lo_bytes = 0, shard.packed  # fits (the empty shard: any count >= 1 is taken)
    hi = len(rest) + 1  # the least count known not to fit (more than there are: none known)
    guesses = 0
    while hi - lo > 1 and not ((lo or shard.members) and limit - len(lo_bytes) < 2 * per):
        if guesses < 3:
            mid = lo + int((limit - len(lo_bytes)) / per) - 1
        else:
            mid = (lo + hi) // 2
        mid = min(max(mid, lo + 1), hi - 1)
        packed = pack(mid)
        guesses += 1
        per = max(len(packed) / (len(shard.members) + mid), 1.0)
        if len(packed) <= limit:
            lo, lo_bytes = mid, packed
        else:
            hi = mid
    if lo == 0 and not shard.members:
        return 1, pack(1)
    return lo, lo_bytes


def place(shards: Sequence[Shard], new: Sequence[int], record: Callable[[int], EpisodeRecord],
          budget_of: Callable[[int], int] = budget) -> list[Shard]:
    """The shards after counting `new` episodes (indices not placed yet, in counting order;
    `record` gives each one's record).

    Sealed shards (all but the last) are returned as they are; the last one takes new members
    while its packed size stays within its budget, then new shards are opened."""
    out = list(shards) or [EMPTY]
    rest = list(new)
    while rest:
        index = len(out) - 1
        taken, packed = _fit(out[index], rest, record, budget_of(index))
        out[index] = Shard((*out[index].members, *rest[:taken]), packed)
        rest = rest[taken:]
        if rest:
            out.append(EMPTY)
    return out


def shard_name(evaluation: str, index: int) -> str:
    """Shard 0 is the results ConfigMap; shard i its i-th companion."""
    base = names.results_configmap_name(evaluation)
    return base if index == 0 else f"{base}-{index}"


def build_shard_configmap(namespace: str, evaluation: str, uid: str, index: int, shard: Shard) -> dict[str, Any]:
    """Shard `index` >= 1: a ConfigMap owned by the evaluation, holding only its records."""
    if index < 1:
        raise ValueError("shard 0 is the results ConfigMap (build_results.build_results_configmap)")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": shard_name(evaluation, index),
            "namespace": namespace,
            "labels": names.labels(evaluation, "results"),
            "annotations": {"arena.swarm.dev/shard": f"{index}"},
            "ownerReferences": [names.owner_reference(evaluation, uid)],
        },
        "binaryData": {EPISODES_KEY: base64.b64encode(shard.packed).decode("ascii")},
    }


def read_shard(configmap: dict[str, Any] | None) -> tuple[list[EpisodeRecord], bytes]:
    """The records a ConfigMap (the results one or a shard) holds and their packed bytes (packed
    anew when an earlier operator kept them as JSON lines)."""
    binary = (configmap or {}).get("binaryData") or {}
    if binary.get(EPISODES_KEY):
        raw = base64.b64decode(binary[EPISODES_KEY])
        return episode_codec.unpack(raw), raw
    if binary.get(EARLIER_EPISODES_KEY):
        records = episode_codec.unpack(base64.b64decode(binary[EARLIER_EPISODES_KEY]))
        return records, episode_codec.pack(records)
    return [], EMPTY.packed


def union(shards: Iterable[Sequence[EpisodeRecord]]) -> dict[int, tuple[int, EpisodeRecord]]:
    """episode -> (shard index, record) over shards given in order; an episode found twice keeps
    its first place (a record is never counted twice)."""
    out: dict[int, tuple[int, EpisodeRecord]] = {}
    for index, shard in enumerate(shards):
        for record in shard:
            out.setdefault(record.episode, (index, record))
    return out


@dataclass(frozen=True)
class Found:
    """What the results ConfigMap and its shards held, as read back."""

    shards: list[Shard]
    """In shard order; a missing shard is an empty one (sealed: it is not written again)."""
    records: dict[int, EpisodeRecord]
    """episode -> its record, each episode once."""
    missing: list[int]
    """Shards the results ConfigMap named that were not found (their records will be played again)."""


def read_back(configmaps: Sequence[dict[str, Any] | None], named: int) -> Found:
    """The shards read back: `configmaps[i]` is shard i as the API server returned it (None: absent),
    `named` how many the results ConfigMap says it wrote. Shards past `named` that exist (written
    before an operator restart, the results ConfigMap not yet) count too."""
    shards: list[Shard] = []
    per_shard: list[list[EpisodeRecord]] = []
    missing = []
    for index, cm in enumerate(configmaps):
        if cm is None:
            if index < named:
                missing.append(index)
            shards.append(EMPTY)
            per_shard.append([])
            continue
        records, packed = read_shard(cm)
        per_shard.append(records)
        shards.append(Shard(tuple(r.episode for r in records), packed))
    while len(shards) > 1 and not shards[-1].members and (len(shards) - 1) not in missing:
        shards.pop()  # trailing absent names probed past the end
        per_shard.pop()
    return Found(shards, {e: record for e, (_, record) in union(per_shard).items()}, missing)
