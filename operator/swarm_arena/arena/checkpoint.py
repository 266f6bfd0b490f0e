"""Where episode checkpoints and counted episodes are kept.

By default in memory on the coordinator (which lives on the driver's node, the head): that
survives the loss of any worker node, which is what shard and environment recovery needs.
`checkpoint.storageURI` adds a durable copy (`file://` directly, `s3://` / `gs://` through
`pyarrow.fs`) so a re-submitted job resumes after the head itself was lost: finished episodes
are not played again and an interrupted one continues from its last checkpoint.

The durable layout is keyed by the evaluation and a fingerprint of the parts of the spec that
decide results, so a changed spec never resumes someone else's numbers:

    <storageURI>/<namespace>/<name>/<fingerprint>/episodes/<index>.json     counted episodes
    <storageURI>/<namespace>/<name>/<fingerprint>/inflight/<index>.pkl      latest checkpoint
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Protocol

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.arena.episode import EpisodeCheckpoint


class CheckpointStore(Protocol):
    def save_checkpoint(self, checkpoint: EpisodeCheckpoint) -> None: ...
    def drop_checkpoint(self, episode: int) -> None: ...
    def checkpoints(self) -> dict[int, EpisodeCheckpoint]: ...
    def save_record(self, record: EpisodeRecord) -> None: ...
    def adopt_record(self, record: EpisodeRecord) -> None: ...
    def records(self) -> dict[int, EpisodeRecord]: ...


def spec_fingerprint(spec: SwarmEvaluationSpec) -> str:
    """Hash of what decides the results (not resources, layout of episodes or cluster)."""
    wire = spec.to_wire()
    decisive = {
        "environment": wire["environment"],
        "policies": [{k: v for k, v in p.items() if k != "resources"} for p in wire["policies"]],
        "teams": wire.get("teams", []),
        "matchmaking": wire["matchmaking"],
        "episodes": wire["episodes"],
        "seed": wire["seed"],
        "agentsPerShard": wire["execution"]["agentsPerShard"],
    }
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


class MemoryStore:
    """Checkpoints in the coordinator's memory (the default)."""

    def __init__(self) -> None:
        self._checkpoints: dict[int, EpisodeCheckpoint] = {}
        self._records: dict[int, EpisodeRecord] = {}

    def save_checkpoint(self, checkpoint: EpisodeCheckpoint) -> None:
        self._checkpoints[checkpoint.episode] = checkpoint

    def drop_checkpoint(self, episode: int) -> None:
        self._checkpoints.pop(episode, None)

    def checkpoints(self) -> dict[int, EpisodeCheckpoint]:
        return dict(self._checkpoints)

    def save_record(self, record: EpisodeRecord) -> None:
        self._records[record.episode] = record

    def adopt_record(self, record: EpisodeRecord) -> None:
        """Count a record another attempt counted (kept in memory only; its checkpoint is moot)."""
        self._records[record.episode] = record
        self._checkpoints.pop(record.episode, None)

    def records(self) -> dict[int, EpisodeRecord]:
        return dict(self._records)


class _LocalFiles:
    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def write(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)  # atomic: a reader never sees half a checkpoint

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def list(self, folder: str) -> list[str]:
        base = self.root / folder
        return sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) if base.is_dir() else []

    def delete(self, path: str) -> None:
        (self.root / path).unlink(missing_ok=True)


class _ArrowFiles:
    def __init__(self, uri: str) -> None:
        try:
            from pyarrow import fs
        except ImportError:
            raise ValueError(
                f"spec.checkpoint.storageURI {uri!r} needs pyarrow for s3:// and gs:// "
                "(`pip install pyarrow` where the arena runs), or use a file:// path"
            ) from None
        self._fs, self.root = fs.FileSystem.from_uri(uri)
        self._selector = fs.FileSelector
        self._not_found = fs.FileType.NotFound

    def write(self, path: str, data: bytes) -> None:
        with self._fs.open_output_stream(f"{self.root}/{path}") as out:
            out.write(data)

    def read(self, path: str) -> bytes:
        with self._fs.open_input_stream(f"{self.root}/{path}") as src:
            return src.read()

    def list(self, folder: str) -> list[str]:
        infos = self._fs.get_file_info(self._selector(f"{self.root}/{folder}", allow_not_found=True))
        return sorted(i.base_name for i in infos if not i.base_name.startswith("."))

    def delete(self, path: str) -> None:
        if self._fs.get_file_info(f"{self.root}/{path}").type != self._not_found:
            self._fs.delete_file(f"{self.root}/{path}")


class DurableStore(MemoryStore):
    """Memory store mirrored to `storageURI` (writes through, reads back on start)."""

    def __init__(self, uri: str, evaluation: str, fingerprint: str) -> None:
        super().__init__()
        if uri.startswith("file://"):
            files: _LocalFiles | _ArrowFiles = _LocalFiles(uri[len("file://") :])
        elif uri.startswith(("s3://", "gs://")):
            files = _ArrowFiles(uri)
        else:
            raise ValueError(f"spec.checkpoint.storageURI {uri!r}: use file://, s3:// or gs://")
        self.uri = uri
        self._files = files
        self._prefix = f"{evaluation}/{fingerprint}"
        for name in files.list(f"{self._prefix}/episodes"):
            record = EpisodeRecord.model_validate_json(files.read(f"{self._prefix}/episodes/{name}"))
            self._records[record.episode] = record
        for name in files.list(f"{self._prefix}/inflight"):
            checkpoint: EpisodeCheckpoint = pickle.loads(files.read(f"{self._prefix}/inflight/{name}"))
            if checkpoint.episode not in self._records:
                self._checkpoints[checkpoint.episode] = checkpoint

    def save_checkpoint(self, checkpoint: EpisodeCheckpoint) -> None:
        super().save_checkpoint(checkpoint)
        self._files.write(f"{self._prefix}/inflight/{checkpoint.episode:06d}.pkl", pickle.dumps(checkpoint))

    def drop_checkpoint(self, episode: int) -> None:
        super().drop_checkpoint(episode)
        self._files.delete(f"{self._prefix}/inflight/{episode:06d}.pkl")

    def save_record(self, record: EpisodeRecord) -> None:
        super().save_record(record)
        self._files.write(f"{self._prefix}/episodes/{record.episode:06d}.json", record.model_dump_json(by_alias=True).encode())


def open_store(spec: SwarmEvaluationSpec, evaluation: str) -> CheckpointStore:
    """The store `spec.checkpoint` asks for."""
    uri = spec.checkpoint.storage_uri
    if not uri:
        return MemoryStore()
    return DurableStore(uri, evaluation, spec_fingerprint(spec))
