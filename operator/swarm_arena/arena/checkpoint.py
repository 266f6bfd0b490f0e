"""Where episode checkpoints and counted episodes are kept.

By default in memory on the coordinator (which lives on the driver's node, the head): that
survives the loss of any worker node, which is what shard and environment recovery needs.
`checkpoint.storageURI` adds a durable copy (`file://` directly, `s3://` / `gs://` through
`pyarrow.fs`, the `s3` extra; an S3-compatible server's endpoint from `AWS_ENDPOINT_URL(_S3)`,
`with_s3_endpoint`) so a re-submitted job resumes after the head itself was lost: finished episodes
are not played again and an interrupted one continues from its last checkpoint.

The durable layout is keyed by the evaluation and a fingerprint of the parts of the spec that
decide results, so a changed spec never resumes someone else's numbers:

    <storageURI>/<namespace>/<name>/<fingerprint>/layout.json               how state is laid out
    <storageURI>/<namespace>/<name>/<fingerprint>/episodes/<index>.json     counted episodes
    <storageURI>/<namespace>/<name>/<fingerprint>/inflight/<index>.npz      latest checkpoint
    <storageURI>/<namespace>/<name>/<fingerprint>/actions/<index>/<step>.npy  generic envs' action log

A generic PettingZoo environment checkpoints as its seed plus every joint action so far
(array_env.py). Each chunk's checkpoint carries only its own actions (`actions_from`); the store
keeps them as segments, one per chunk, written once, and joins them (`join_actions`) when a
checkpoint is read back for a restore: O(steps) written per episode, not O(steps²).

How the policies are hosted and cut into shards (`state_layout`: in the environment actor or in
shard actors, of how many agents, on GPU or not) shapes both the checkpointed state and the
numbers (each shard draws from its own seed), yet is what someone changes to make a run fit a
cluster. It is kept out of the fingerprint and in `layout.json` instead, so a resume under a
spec that lays state out differently finds the old store and is refused, naming what changed
(`InvalidSpec`), rather than silently starting afresh or mixing two layouts' episodes. Resource
amounts and `parallelEpisodes` shape neither: a resume may change them.

Whoever can write to `storageURI` must not be able to run code in the job, so checkpoints are
never pickled: they are `.npz` archives read without pickle (checkpoint_codec.py), and anything
else found there (an old `.pkl`, a file that does not decode: truncated, corrupted, a tree of
another shape) is ignored with a warning — the episode then replays from its start, which gives
the same numbers. So is a checkpoint that decodes but that the environment refuses to restore
(the scheduler drops it and plays its episode from the start). A write is atomic and durable:
a file is written beside its target, fsynced, renamed into place and its folder fsynced; an object
store gets a temporary key first and the final key only once that upload completed, so a failed
write never replaces a good checkpoint. Temporary files a crashed writer left (`.tmp-*`) are
deleted when the store is opened. A write or delete that fails is retried with backoff for
`STORAGE_RETRY_S` (a storage hiccup is not fatal); only then does it fail the run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import numpy as np
from pydantic import ValidationError

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.arena.checkpoint_codec import CheckpointFormatError, decode_checkpoint, encode_checkpoint
from swarm_arena.arena.episode import EpisodeCheckpoint
from swarm_arena.arena.errors import EvaluationFailed, InvalidSpec
from swarm_arena.arena.matchmaking import runs_in_environment

log = logging.getLogger(__name__)
CHECKPOINT_SUFFIX = ".npz"
TMP_PREFIX = ".tmp-"
# A durable write or delete that fails (the storage unreachable, a full or read-only volume, an
# object store's 5xx) is tried again with backoff for this long before it fails the run: a
# storage hiccup is not worth an attempt. Only one slot waits meanwhile (each slot has a thread).
STORAGE_RETRY_S = 120.0
STORAGE_BACKOFF_S = (0.1, 5.0)  # first wait, longest wait (doubling between)
T = TypeVar("T")


class StorageUnavailable(EvaluationFailed):
    """A durable write kept failing for the whole retry window."""


def with_retries(what: str, action: Callable[[], T], retry_s: float, clock: Callable[[], float] = time.monotonic) -> T:
    """`action()`, tried again with doubling backoff while it raises OSError, for `retry_s`."""
    deadline, wait, tries = clock() + retry_s, STORAGE_BACKOFF_S[0], 0
    while True:
        tries += 1
        try:
            return action()
        except OSError as exc:
            if clock() + wait > deadline:
                raise StorageUnavailable(
                    f"spec.checkpoint.storageURI: {what} failed {tries} times over {retry_s:.0f} s, last: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            log.warning("%s failed (%s: %s); trying again in %.1f s", what, type(exc).__name__, exc, wait)
            time.sleep(wait)
            wait = min(wait * 2, STORAGE_BACKOFF_S[1])


class CheckpointStore(Protocol):
    def save_checkpoint(self, checkpoint: EpisodeCheckpoint) -> None: ...
    def drop_checkpoint(self, episode: int) -> None: ...
    def checkpoint(self, episode: int) -> EpisodeCheckpoint | None: ...
    def checkpoints(self) -> dict[int, EpisodeCheckpoint]: ...
    def save_record(self, record: EpisodeRecord) -> None: ...
    def adopt_record(self, record: EpisodeRecord) -> None: ...
    def records(self) -> dict[int, EpisodeRecord]: ...


# What a store of this version holds; another version's store is never read (a new fingerprint).
# 2: shard states keyed by (policy, shard index within the policy), with a layout.json.
STATE_FORMAT = 2
LAYOUT_FILE = "layout.json"


def spec_fingerprint(spec: SwarmEvaluationSpec) -> str:
    """Hash of what decides the results, but for the state layout (`state_layout`, kept beside)."""
    wire = spec.to_wire()
    decisive = {
        "format": STATE_FORMAT,
        "environment": wire["environment"],
        "policies": [{k: v for k, v in p.items() if k != "resources"} for p in wire["policies"]],
        "teams": wire.get("teams", []),
        "matchmaking": wire["matchmaking"],
        "episodes": wire["episodes"],
        "seed": wire["seed"],
    }
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


def state_layout(spec: SwarmEvaluationSpec) -> dict[str, dict[str, Any]]:
    """Policy -> where it runs and how its agents are cut: what shapes a checkpoint's shard states.

    Stepped in the environment actor, a policy is one shard per episode; in shard actors it is cut
    into shards of at most `agentsPerShard` agents, each seeded on its own (the seeds follow the
    shard's index within the policy, never the actor). On GPU or not: the same state, but
    numbers that may differ. Resource amounts are left out: they change neither."""
    layout: dict[str, dict[str, Any]] = {}
    for policy in spec.policies:
        if runs_in_environment(policy):
            layout[policy.name] = {"hosting": "environment"}
        else:
            layout[policy.name] = {
                "hosting": "shards",
                "agentsPerShard": spec.execution.agents_per_shard,
                "gpu": policy.resources.gpu > 0,
            }
    return layout


def _hosting_words(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "absent"
    if entry.get("hosting") == "environment":
        return "in the environment actor"
    gpu = " on GPU" if entry.get("gpu") else ""
    return f"in shard actors of {entry.get('agentsPerShard')} agents{gpu}"


def layout_changes(spec: SwarmEvaluationSpec, stored: dict[str, Any]) -> list[str]:
    """What `spec` lays out differently from the `stored` layout, one `<field path>: ...` each."""
    current = state_layout(spec)
    changes = []
    for i, policy in enumerate(spec.policies):
        was, now = stored.get(policy.name), current[policy.name]
        if was == now:
            continue
        where = "spec.policies[%d].resources" % i
        if was is not None and was.get("hosting") == now.get("hosting") == "shards" and was.get("gpu") == now.get("gpu"):
            where = "spec.execution.agentsPerShard"
        changes.append(f"{where}: policy {policy.name!r} ran {_hosting_words(was)}, this spec puts it {_hosting_words(now)}")
    return changes


def action_segment(checkpoint: EpisodeCheckpoint) -> tuple[int, np.ndarray | None] | None:
    """(first step, actions) a generic environment's checkpoint carries; None for a native one."""
    state = checkpoint.env_state
    if isinstance(state, dict) and "actions_from" in state:
        return int(state["actions_from"]), state.get("actions")
    return None


def is_whole(checkpoint: EpisodeCheckpoint) -> bool:
    """Whether `checkpoint` can be restored as it is (every action from step 0, or a native one)."""
    segment = action_segment(checkpoint)
    if segment is None:
        return True
    first, actions = segment
    return first == 0 and (0 if actions is None else len(actions)) == int(checkpoint.env_state["steps"])


def join_actions(checkpoint: EpisodeCheckpoint, segments: dict[int, np.ndarray]) -> EpisodeCheckpoint | None:
    """`checkpoint` with every action from step 0, from the episode's `segments` (first step ->
    actions); None when they do not join up to its step."""
    steps = int(checkpoint.env_state["steps"])
    pieces, at = [], 0
    while at < steps and at in segments:
        pieces.append(segments[at])
        at += len(segments[at])
    if at != steps:
        return None
    actions = np.concatenate(pieces) if pieces else None
    return dataclasses.replace(checkpoint, env_state={**checkpoint.env_state, "actions": actions, "actions_from": 0})


class MemoryStore:
    """Checkpoints in the coordinator's memory (the default)."""

    def __init__(self) -> None:
        self._checkpoints: dict[int, EpisodeCheckpoint] = {}  # generic envs': without their actions
        self._segments: dict[int, dict[int, np.ndarray]] = {}  # episode -> first step -> actions
        self._records: dict[int, EpisodeRecord] = {}

    def save_checkpoint(self, checkpoint: EpisodeCheckpoint) -> None:
        segment = action_segment(checkpoint)
        if segment is not None:
            first, actions = segment
            # A replay from an earlier checkpoint supersedes what was logged after it.
            kept = {k: v for k, v in self._segments.get(checkpoint.episode, {}).items() if k < first}
            if actions is not None:
                kept[first] = actions
            self._segments[checkpoint.episode] = kept
            checkpoint = dataclasses.replace(checkpoint, env_state={**checkpoint.env_state, "actions": None})
        self._checkpoints[checkpoint.episode] = checkpoint

    def drop_checkpoint(self, episode: int) -> None:
        self._checkpoints.pop(episode, None)
        self._segments.pop(episode, None)

    def checkpoint(self, episode: int) -> EpisodeCheckpoint | None:
        """The latest checkpoint of `episode`, whole (ready to restore); None when there is none."""
        checkpoint = self._checkpoints.get(episode)
        if checkpoint is None or action_segment(checkpoint) is None:
            return checkpoint
        return join_actions(checkpoint, self._segments.get(episode, {}))

    def checkpoints(self) -> dict[int, EpisodeCheckpoint]:
        return {e: c for e in sorted(self._checkpoints) if (c := self.checkpoint(e)) is not None}

    def save_record(self, record: EpisodeRecord) -> None:
        self._records[record.episode] = record

    def adopt_record(self, record: EpisodeRecord) -> None:
        """Count a record another attempt counted (kept in memory only; its checkpoint is moot)."""
        self._records[record.episode] = record
        self._checkpoints.pop(record.episode, None)
        self._segments.pop(record.episode, None)

    def records(self) -> dict[int, EpisodeRecord]:
        return dict(self._records)


class _LocalFiles:
    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def write(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before it is in place
            os.replace(tmp, target)  # atomic: a reader never sees half a checkpoint
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a crash
        finally:
            os.close(folder)

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def list(self, folder: str) -> list[str]:
        base = self.root / folder
        return sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) if base.is_dir() else []

    def delete(self, path: str) -> None:
        (self.root / path).unlink(missing_ok=True)

    def temporaries(self, folder: str) -> list[str]:
        """Paths of the temporary files under `folder` (any depth) a crashed writer left behind."""
        base = self.root / folder
        return sorted(str(p.relative_to(self.root)) for p in base.rglob(f"{TMP_PREFIX}*")) if base.is_dir() else []


S3_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def with_s3_endpoint(uri: str, environ: Mapping[str, str] | None = None) -> str:
    """`uri` with the S3 endpoint the environment names, as pyarrow's URI options.

    The AWS SDKs and CLI read a custom endpoint (MinIO, SeaweedFS, Ceph, R2, ...) from
    `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`; pyarrow's S3 filesystem does not (it reads
    the credentials and region variables only), so they become `endpoint_override` and `scheme`.
    An endpoint already in the URI (`s3://bucket/path?endpoint_override=host:port&scheme=http`)
    wins; `gs://` URIs are returned as they are."""
    environ = os.environ if environ is None else environ
    parts = urlsplit(uri)
    if parts.scheme != "s3" or "endpoint_override" in parse_qs(parts.query):
        return uri
    name = next((n for n in S3_ENDPOINT_VARIABLES if environ.get(n)), None)
    if name is None:
        return uri
    endpoint = urlsplit(environ[name].strip())
    if endpoint.scheme not in ("http", "https") or not endpoint.netloc or endpoint.path.strip("/"):
        raise ValueError(
            f"spec.checkpoint.storageURI {uri!r}: {name}={environ[name]!r} must be http(s)://host[:port] "
            "(the S3 endpoint, without a path)"
        )
    query = urlencode({"endpoint_override": endpoint.netloc, "scheme": endpoint.scheme})
    return urlunsplit(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))


class _ArrowFiles:
    def __init__(self, uri: str) -> None:
        try:
            from pyarrow import fs
        except ImportError:
            raise ValueError(
                f"spec.checkpoint.storageURI {uri!r} needs pyarrow for s3:// and gs:// "
                "(`pip install 'swarm-arena[s3]'` where the arena runs), or use a file:// path"
            ) from None
        self.uri = uri
        try:
            with self._named():  # on AWS without a region, from_uri asks S3 for the bucket's
                self._fs, self.root = fs.FileSystem.from_uri(with_s3_endpoint(uri))
        except ValueError as exc:
            raise ValueError(f"spec.checkpoint.storageURI {uri!r}: {exc}") from None
        self._selector = fs.FileSelector
        self._not_found = fs.FileType.NotFound

    @contextmanager
    def _named(self) -> Iterator[None]:
        """pyarrow's errors (no such bucket, access denied, a wrong endpoint) name the key, not
        the field that chose the store: add it. Still an OSError, so a transient one is retried."""
        try:
            yield
        except OSError as exc:
            raise OSError(f"spec.checkpoint.storageURI {self.uri!r}: {exc}") from exc

    def write(self, path: str, data: bytes) -> None:
        with self._named():
            self._write(path, data)

    def _write(self, path: str, data: bytes) -> None:
        # A stream's close completes the upload even when the write failed: upload to a temporary
        # key (listings skip dot names) and copy it into place only after that upload succeeded.
        folder, _, name = f"{self.root}/{path}".rpartition("/")
        tmp = f"{folder}/{TMP_PREFIX}{uuid.uuid4().hex}-{name}"
        try:
            out = self._fs.open_output_stream(tmp)
            try:
                out.write(data)
            finally:
                out.close()
            self._fs.move(tmp, f"{folder}/{name}")
        except BaseException:
            try:
                self._fs.delete_file(tmp)
            except OSError:
                pass
            raise

    def read(self, path: str) -> bytes:
        with self._named(), self._fs.open_input_stream(f"{self.root}/{path}") as src:
            return src.read()

    def list(self, folder: str) -> list[str]:
        with self._named():
            infos = self._fs.get_file_info(self._selector(f"{self.root}/{folder}", allow_not_found=True))
        return sorted(i.base_name for i in infos if not i.base_name.startswith("."))

    def delete(self, path: str) -> None:
        with self._named():
            if self._fs.get_file_info(f"{self.root}/{path}").type != self._not_found:
                self._fs.delete_file(f"{self.root}/{path}")

    def temporaries(self, folder: str) -> list[str]:
        infos = self._fs.get_file_info(self._selector(f"{self.root}/{folder}", allow_not_found=True, recursive=True))
        return sorted(i.path.removeprefix(f"{self.root}/") for i in infos if i.base_name.startswith(TMP_PREFIX))


def open_files(uri: str, field: str = "spec.checkpoint.storageURI") -> _LocalFiles | _ArrowFiles:
    """The files under `uri` (`file://` directly, `s3://` / `gs://` through pyarrow.fs): atomic writes,
    reads, listings and deletes by path relative to it."""
    if uri.startswith("file://"):
        return _LocalFiles(uri[len("file://") :])
    if uri.startswith(("s3://", "gs://")):
        try:
            return _ArrowFiles(uri)
        except ValueError as exc:
            raise ValueError(str(exc).replace("spec.checkpoint.storageURI", field)) from None
    raise ValueError(f"{field} {uri!r}: use file://, s3:// or gs://")


class DurableStore(MemoryStore):
    """Memory store mirrored to `storageURI` (writes through, reads back on start)."""

    def __init__(
        self,
        uri: str,
        evaluation: str,
        fingerprint: str,
        spec: SwarmEvaluationSpec | None = None,
        retry_s: float = STORAGE_RETRY_S,
    ) -> None:
        super().__init__()
        self.retry_s = retry_s
        files = open_files(uri)
        self.uri = uri
        self._files = files
        self.prefix = f"{evaluation}/{fingerprint}"
        self._clean_temporaries()
        for name in files.list(f"{self.prefix}/episodes"):
            try:
                record = EpisodeRecord.model_validate_json(files.read(f"{self.prefix}/episodes/{name}"))
            except ValidationError as exc:
                log.warning("%s: ignoring %s/episodes/%s, not an episode record: %s", uri, self.prefix, name, exc)
                continue
            self._records[record.episode] = record
        for name in files.list(f"{self.prefix}/inflight"):
            checkpoint = self._read_checkpoint(name)
            if checkpoint is not None and checkpoint.episode not in self._records:
                self._checkpoints[checkpoint.episode] = checkpoint
                if action_segment(checkpoint) is not None:
                    self._read_segments(checkpoint)
        if spec is not None:
            self._claim_layout(spec)

    def _clean_temporaries(self) -> None:
        """Delete the temporary files a writer that crashed mid-write left (`.tmp-*`, never read).
        A store is written by one attempt at a time, and this one has not written yet."""
        try:
            orphans = self._files.temporaries(self.prefix)
        except OSError as exc:
            log.warning("%s/%s: could not list temporary files to clean: %s", self.uri, self.prefix, exc)
            return
        for path in orphans:
            try:
                self._files.delete(path)
            except OSError as exc:
                log.warning("%s/%s: could not delete an orphaned temporary file: %s", self.uri, path, exc)
        if orphans:
            log.info("%s/%s: deleted %d orphaned temporary files", self.uri, self.prefix, len(orphans))

    def _write(self, path: str, data: bytes) -> None:
        with_retries(f"writing {self.uri}/{path}", lambda: self._files.write(path, data), self.retry_s)

    def _delete(self, path: str) -> None:
        with_retries(f"deleting {self.uri}/{path}", lambda: self._files.delete(path), self.retry_s)

    def _claim_layout(self, spec: SwarmEvaluationSpec) -> None:
        """Record the spec's state layout; refuse a store whose episodes were laid out otherwise.

        A store without episodes or checkpoints holds nothing to resume: it takes the new layout."""
        path = f"{self.prefix}/{LAYOUT_FILE}"
        layout = state_layout(spec)
        stored: Any = None
        if LAYOUT_FILE in self._files.list(self.prefix):
            try:
                stored = json.loads(self._files.read(path))
            except ValueError:
                stored = "unreadable"
        if stored == layout:
            return
        if stored is None or not (self._records or self._checkpoints):
            self._files.write(path, json.dumps(layout, sort_keys=True).encode())
            return
        changes = layout_changes(spec, stored) if isinstance(stored, dict) else []
        if not changes:
            changes = [f"spec.checkpoint.storageURI: {self.uri}/{path} does not record a layout this version reads"]
        if changes:
            raise InvalidSpec(
                f"{'; '.join(changes)}. The durable store {self.uri}/{self.prefix} holds this evaluation's episodes "
                "laid out that other way, so resuming them under this spec would not be exact. Put those fields "
                "back to resume, or start afresh elsewhere (another spec.checkpoint.storageURI, or delete that folder)"
            )

    def _read_checkpoint(self, name: str) -> EpisodeCheckpoint | None:
        where = f"{self.uri}/{self.prefix}/inflight/{name}"
        if not name.endswith(CHECKPOINT_SUFFIX):
            log.warning("%s: ignored (checkpoints are %s archives; older .pkl ones are never unpickled)", where, CHECKPOINT_SUFFIX)
            return None
        try:
            return decode_checkpoint(self._files.read(f"{self.prefix}/inflight/{name}"))
        except (CheckpointFormatError, OSError) as exc:
            log.warning("%s: ignored, its episode replays from the start: %s", where, exc)
            return None

    def _read_segments(self, checkpoint: EpisodeCheckpoint) -> None:
        """The action log of a generic environment's checkpoint; without all of it, its episode
        replays from the start."""
        episode, (first, _) = checkpoint.episode, action_segment(checkpoint) or (0, None)
        folder = self._segments_folder(episode)
        segments: dict[int, np.ndarray] = {}
        for name in self._files.list(folder):
            stem = name.removesuffix(".npy")
            if not stem.isdigit() or int(stem) > first:
                continue  # not ours, or logged after this checkpoint by a chunk that never checkpointed
            try:
                segment = np.load(io.BytesIO(self._files.read(f"{folder}/{name}")), allow_pickle=False)
                if not isinstance(segment, np.ndarray) or segment.ndim < 1 or not len(segment):
                    raise ValueError("not a non-empty array of actions")
                segments[int(stem)] = segment
            except Exception as exc:  # noqa: BLE001 - bytes from storage: whatever fails to load is not a segment
                log.warning("%s/%s/%s: ignored, not an action log segment: %s", self.uri, folder, name, exc)
        self._segments[episode] = segments
        try:
            whole = self.checkpoint(episode)
        except ValueError as exc:  # segments that do not stack (another shape or dtype)
            log.warning("%s/%s: the action log does not join up (%s); episode %d replays from the start",
                        self.uri, folder, exc, episode)  # fmt: skip
            super().drop_checkpoint(episode)
            return
        if whole is None:
            log.warning("%s/%s: the action log does not reach step %d; episode %d replays from the start",
                        self.uri, folder, checkpoint.step, episode)  # fmt: skip
            super().drop_checkpoint(episode)

    def _checkpoint_path(self, episode: int) -> str:
        return f"{self.prefix}/inflight/{episode:06d}{CHECKPOINT_SUFFIX}"

    def _segments_folder(self, episode: int) -> str:
        return f"{self.prefix}/actions/{episode:06d}"

    def save_checkpoint(self, checkpoint: EpisodeCheckpoint) -> None:
        segment = action_segment(checkpoint)
        stored = checkpoint
        if segment is not None:
            first, actions = segment
            if actions is not None:  # the segment first: a checkpoint never points past its log
                out = io.BytesIO()
                np.save(out, actions, allow_pickle=False)
                self._write(f"{self._segments_folder(checkpoint.episode)}/{first:06d}.npy", out.getvalue())
            stored = dataclasses.replace(checkpoint, env_state={**checkpoint.env_state, "actions": None})
        try:
            data = encode_checkpoint(stored)
        except CheckpointFormatError as exc:
            raise InvalidSpec(f"spec.checkpoint.storageURI: cannot store episode {checkpoint.episode}'s checkpoint: {exc}") from None
        self._write(self._checkpoint_path(checkpoint.episode), data)
        super().save_checkpoint(checkpoint)

    def drop_checkpoint(self, episode: int) -> None:
        super().drop_checkpoint(episode)
        self._delete(self._checkpoint_path(episode))
        folder = self._segments_folder(episode)
        names = with_retries(f"listing {self.uri}/{folder}", lambda: self._files.list(folder), self.retry_s)
        for name in names:
            self._delete(f"{folder}/{name}")

    def save_record(self, record: EpisodeRecord) -> None:
        self._write(f"{self.prefix}/episodes/{record.episode:06d}.json", record.model_dump_json(by_alias=True).encode())
        super().save_record(record)


def open_store(spec: SwarmEvaluationSpec, evaluation: str) -> CheckpointStore:
    """The store `spec.checkpoint` asks for."""
    uri = spec.checkpoint.storage_uri
    if not uri:
        return MemoryStore()
    return DurableStore(uri, evaluation, spec_fingerprint(spec), spec)
