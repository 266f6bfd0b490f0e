"""A durable store survives storage trouble (issue 22 §4): a write that fails for a while (here a
real `file://` store whose folder is, for a moment, not a folder) is retried with backoff and
lands; one that keeps failing fails the run saying so, naming the field; temporary files a
crashed writer left are deleted when the store is opened."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from swarm_arena.arena.checkpoint import DurableStore, StorageUnavailable, spec_fingerprint
from swarm_arena.arena.checkpoint_codec import decode_checkpoint
from swarm_arena.arena.episode import EpisodeCheckpoint
from tests.arena.conftest import foraging_evaluation


def _checkpoint(episode: int, step: int = 10) -> EpisodeCheckpoint:
    return EpisodeCheckpoint(
        episode=episode, step=step, env_state={"seed": 1, "steps": step, "actions_from": 0,
                                               "actions": np.zeros((step, 4), dtype=np.int8)},
        shard_states={"random/0": {"policy": None, "agents": ["a0", "a1", "a2", "a3"]}},
        returns=np.zeros(4), agent_steps=4 * step,
    )  # fmt: skip


def _store(root: Path, retry_s: float) -> DurableStore:
    evaluation = foraging_evaluation("faults", checkpoint={"intervalSteps": 10, "storageURI": f"file://{root}"})
    spec = evaluation.spec
    return DurableStore(f"file://{root}", evaluation.qualified_name, spec_fingerprint(spec), spec, retry_s=retry_s)


def _unwritable(folder: Path) -> Path:
    """Make `folder` unwritable for real, as root too: move it aside and put a plain file in its
    place (every write below it fails with NotADirectoryError). Returns where it went."""
    aside = folder.with_name(folder.name + ".aside")
    folder.rename(aside)
    folder.write_bytes(b"")
    return aside


def _writable(folder: Path, aside: Path) -> None:
    folder.unlink()
    aside.rename(folder)


def test_a_transient_storage_error_is_retried_until_the_write_lands(tmp_path: Path, caplog) -> None:
    store = _store(tmp_path, retry_s=60)
    store.save_checkpoint(_checkpoint(1, 10))
    inflight = tmp_path / store.prefix / "inflight"
    aside = _unwritable(inflight)
    healed = threading.Timer(0.8, _writable, (inflight, aside))
    healed.start()
    with caplog.at_level(logging.WARNING, logger="swarm_arena.arena.checkpoint"):
        store.save_checkpoint(_checkpoint(1, 20))  # blocks through the outage, then lands
    healed.join()
    assert decode_checkpoint((inflight / "000001.npz").read_bytes()).step == 20
    assert any("trying again" in r.getMessage() for r in caplog.records)
    assert _store(tmp_path, retry_s=60).checkpoints()[1].step == 20


def test_storage_that_stays_unwritable_fails_the_run_naming_the_field(tmp_path: Path) -> None:
    store = _store(tmp_path, retry_s=0.5)
    store.save_checkpoint(_checkpoint(1, 10))
    inflight = tmp_path / store.prefix / "inflight"
    aside = _unwritable(inflight)
    try:
        with pytest.raises(StorageUnavailable, match=r"spec\.checkpoint\.storageURI: writing .*000001\.npz failed \d+ times"):
            store.save_checkpoint(_checkpoint(1, 20))
    finally:
        _writable(inflight, aside)
    assert decode_checkpoint((inflight / "000001.npz").read_bytes()).step == 10  # the good one stays


def test_orphaned_temporary_files_are_deleted_when_the_store_opens(tmp_path: Path) -> None:
    store = _store(tmp_path, retry_s=5)
    store.save_checkpoint(_checkpoint(1, 10))
    root = tmp_path / store.prefix
    orphans = [root / "inflight" / ".tmp-abc123", root / "actions" / "000001" / ".tmp-9f-000010.npy",
               root / "episodes" / ".tmp-x-000002.json"]  # fmt: skip
    for orphan in orphans:
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"half a write")
    reopened = _store(tmp_path, retry_s=5)
    assert not [p for p in orphans if p.exists()]
    assert reopened.checkpoints()[1].step == 10  # what is not temporary stays
    assert not list(root.rglob(".tmp-*"))
