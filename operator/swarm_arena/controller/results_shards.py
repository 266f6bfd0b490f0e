"""Counted episode records over several ConfigMaps, owned by the evaluation (pure).

One ConfigMap holds at most 1 MiB: the records of a big evaluation (20,000 episodes of 8 policies
are about 5 MiB compressed) are kept in shards. Shard 0 is the results ConfigMap itself
(`<name>-results`, next to results.json); shard i >= 1 is `<name>-results-<i>`, holding only
`episodes.jsonl.gz`. Shards fill in counting order and are cut by their compressed size (the bytes
that count against the limit), never by what a record holds, so the record's format can change
freely. A full shard is sealed: its members never change, so a pass rewrites only the open (last)
shard and any new ones.

Reading back is a union by episode index over every shard found: a record written twice (a shard
written, the operator restarted before the next) counts once, a shard written past the last one
the main ConfigMap names is still found (the reader asks for the next names until one is absent),
and a shard that is missing only loses its records to a replay (the job plays what it was not told
was counted), never counts one twice.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from swarm_arena.controller import names

EPISODES_KEY = "episodes.jsonl.gz"
CONFIGMAP_LIMIT_BYTES = 1024 * 1024
"""What the API server lets one ConfigMap's data and binaryData hold together (binaryData counted decoded)."""
MAIN_RECORDS_BUDGET_BYTES = 512 * 1024
"""Compressed records in the results ConfigMap itself (shard 0): results.json and the summary share the rest."""
SHARD_BUDGET_BYTES = 960 * 1024
"""Compressed records in a shard ConfigMap of its own (keys and metadata get the rest)."""
MAX_SHARDS = 16
"""At most this many ConfigMaps of records (about 14.5 MiB compressed, held in the operator's memory
while the evaluation runs): a plan that needs more is refused without a durable store."""
CAPACITY_BYTES = MAIN_RECORDS_BUDGET_BYTES + (MAX_SHARDS - 1) * SHARD_BUDGET_BYTES
COMPRESS_LEVEL = 6


class TooManyEpisodes(ValueError):
    """The counted episode records no longer fit in `MAX_SHARDS` ConfigMaps (and there is no durable store)."""


def budget(index: int) -> int:
    return MAIN_RECORDS_BUDGET_BYTES if index == 0 else SHARD_BUDGET_BYTES


def _compressor() -> Any:
    return zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 31)  # 31: the gzip format


def compress_lines(lines: Iterable[str]) -> bytes:
    """gzip of the JSON lines (one record each, newline-terminated), deterministic (no mtime)."""
    comp = _compressor()
    return b"".join(comp.compress((line + "\n").encode()) for line in lines) + comp.flush()


def decompress_lines(packed: bytes) -> list[str]:
    return [line for line in gzip.decompress(packed).decode().splitlines() if line.strip()]


@dataclass(frozen=True)
class Shard:
    """One shard as placed: its members (episode indices, counting order) and their compressed bytes."""

    members: tuple[int, ...]
    packed: bytes


class _Filling:
    """One shard being filled: a streaming compressor, so that its exact compressed size is known
    after every record without compressing the shard again."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.comp = _compressor()
        self.pieces: list[bytes] = []
        self.emitted = 0
        for line in lines:
            self._add(self.comp, line)

    def _add(self, comp: Any, line: str) -> None:
        piece = comp.compress((line + "\n").encode())
        self.pieces.append(piece)
        self.emitted += len(piece)

    def size_with(self, lines: Sequence[str]) -> tuple[int, Any, list[bytes]]:
        comp = self.comp.copy()
        pieces = [comp.compress((line + "\n").encode()) for line in lines]
        return self.emitted + sum(map(len, pieces)) + len(comp.copy().flush()), comp, pieces

    def take(self, comp: Any, pieces: list[bytes]) -> None:
        self.comp = comp
        self.pieces += pieces
        self.emitted += sum(map(len, pieces))

    def packed(self) -> bytes:
        return b"".join(self.pieces) + self.comp.copy().flush()


_CHUNK = 64


def place(shards: Sequence[Shard], new: Sequence[int], line: Callable[[int], str],
          budget_of: Callable[[int], int] = budget) -> list[Shard]:
    """The shards after counting `new` episodes (indices not placed yet, in counting order).

    Sealed shards (all but the last) are returned as they are; the last one takes new members
    while its compressed size stays within its budget, then new shards are opened. A single record
    larger than a whole shard still gets a shard of its own (the caller's size check refuses it)."""
    out = list(shards) or [Shard((), compress_lines(()))]
    rest, pos = list(new), 0
    while pos < len(rest):
        index = len(out) - 1
        limit = budget_of(index)
        members = list(out[index].members)
        filling = _Filling(line(e) for e in members)
        while pos < len(rest):
            chunk = rest[pos : pos + _CHUNK]
            size, comp, pieces = filling.size_with([line(e) for e in chunk])
            if size <= limit:
                filling.take(comp, pieces)
                members += chunk
                pos += len(chunk)
                continue
            for e in chunk:  # the chunk overflows: one record at a time up to the limit
                size, comp, pieces = filling.size_with([line(e)])
                if size > limit and members:
                    break
                filling.take(comp, pieces)  # (a record alone bigger than a shard gets one of its own)
                members.append(e)
                pos += 1
                if size > limit:
                    break
            break
        out[index] = Shard(tuple(members), filling.packed())
        if pos < len(rest):
            out.append(Shard((), compress_lines(())))
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


def lines_of(configmap: dict[str, Any] | None) -> list[str]:
    """The record lines a ConfigMap (the results one or a shard) holds."""
    packed = ((configmap or {}).get("binaryData") or {}).get(EPISODES_KEY)
    return decompress_lines(base64.b64decode(packed)) if packed else []


def union(shards: Iterable[Sequence[tuple[int, str]]]) -> dict[int, tuple[int, str]]:
    """episode -> (shard index, line) over shards given in order; an episode found twice keeps its
    first place (a record is never counted twice)."""
    out: dict[int, tuple[int, str]] = {}
    for index, shard in enumerate(shards):
        for episode, line in shard:
            out.setdefault(episode, (index, line))
    return out


def episode_of(line: str) -> int:
    """The episode index of a record line, whatever else the record holds."""
    import json

    return int(json.loads(line)["episode"])


@dataclass(frozen=True)
class Found:
    """What the results ConfigMap and its shards held, as read back."""

    shards: list[Shard]
    """In shard order; a missing shard is an empty one (sealed: it is not written again)."""
    lines: dict[int, str]
    """episode -> its record line, each episode once."""
    missing: list[int]
    """Shards the main ConfigMap named that were not found (their records will be played again)."""


def read_back(configmaps: Sequence[dict[str, Any] | None], named: int) -> Found:
    """The shards read back: `configmaps[i]` is shard i as the API server returned it (None: absent),
    `named` how many the results ConfigMap says it wrote. Shards past `named` that exist (written
    before an operator restart, the main ConfigMap not yet) count too."""
    shards: list[Shard] = []
    per_shard: list[list[tuple[int, str]]] = []
    missing = []
    for index, cm in enumerate(configmaps):
        if cm is None:
            if index < named:
                missing.append(index)
            shards.append(Shard((), compress_lines(())))
            per_shard.append([])
            continue
        lines = lines_of(cm)
        pairs = [(episode_of(line), line) for line in lines]
        per_shard.append(pairs)
        packed = ((cm.get("binaryData") or {}).get(EPISODES_KEY))
        shards.append(Shard(tuple(e for e, _ in pairs), base64.b64decode(packed) if packed else compress_lines(())))
    while len(shards) > 1 and not shards[-1].members and (len(shards) - 1) not in missing:
        shards.pop()  # trailing absent names probed past the end
        per_shard.pop()
    return Found(shards, {e: line for e, (_, line) in union(per_shard).items()}, missing)
