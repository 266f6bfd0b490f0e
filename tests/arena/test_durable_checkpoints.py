"""Durable checkpoints (checkpoint.storageURI): written atomically and durably, read back in a
form that cannot run code, refused at save time when a state cannot be stored that way."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from swarm_arena.arena.checkpoint import DurableStore, StorageUnavailable, open_store, spec_fingerprint
from swarm_arena.arena.checkpoint_codec import CheckpointFormatError, decode_checkpoint, encode_checkpoint
from swarm_arena.arena.episode import EpisodeCheckpoint
from swarm_arena.arena.errors import InvalidSpec
from tests.arena.conftest import foraging_evaluation


def _checkpoint(episode: int = 3) -> EpisodeCheckpoint:
    rng = np.random.default_rng(7)
    return EpisodeCheckpoint(
        episode=episode,
        step=20,
        env_state={"seed": 11, "steps": 20, "alive": np.ones(5, dtype=bool), "done": False,
                   "native": {"pos": rng.integers(0, 9, (5, 2)), "rng": rng.bit_generator.state}},
        shard_states={"ns/e/shard-greedy-0": {"policy": {"rng": rng.bit_generator.state}, "agents": ("a0", "a1")},
                      "ns/e/shard-noop-0": {"policy": None, "agents": ("a2",)}},
        returns=np.array([0.5, 1.25, -3.0, 0.0, 2.0]),
        agent_steps=100,
    )  # fmt: skip


def _store(tmp_path: Path) -> DurableStore:
    evaluation = foraging_evaluation("dur", checkpoint={"intervalSteps": 10, "storageURI": f"file://{tmp_path}"})
    store = open_store(evaluation.spec, evaluation.qualified_name)
    assert isinstance(store, DurableStore)
    return store


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_a_checkpoint_survives_the_safe_format_exactly() -> None:
    original = _checkpoint()
    original.env_state["odd keys"] = {1: "int key", ("a", 2): np.float32(0.5), "__array__": "a user string"}
    back = decode_checkpoint(encode_checkpoint(original))
    for name in ("episode", "step", "env_state", "shard_states", "returns", "agent_steps"):
        assert _equal(getattr(original, name), getattr(back, name)), name


def test_a_state_the_format_cannot_hold_is_refused_naming_where(tmp_path: Path) -> None:
    checkpoint = _checkpoint()
    checkpoint.shard_states["ns/e/shard-greedy-0"]["policy"]["model"] = object()
    with pytest.raises(CheckpointFormatError, match=r"shard-greedy-0'\]\['policy'\]\['model'\] is a builtins.object"):
        encode_checkpoint(checkpoint)
    with pytest.raises(InvalidSpec, match=r"^spec.checkpoint.storageURI: .*get_state\(\)"):
        _store(tmp_path).save_checkpoint(checkpoint)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_in_the_store_runs_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save_checkpoint(_checkpoint(episode=1))
    inflight = Path(tmp_path, store.prefix, "inflight")
    marker = tmp_path / "pwned"
    _Exploit.marker = marker
    (inflight / "000002.pkl").write_bytes(pickle.dumps(_Exploit()))
    (inflight / "000003.npz").write_bytes(pickle.dumps(_Exploit()))  # a pickle under the new name
    reopened = _store(tmp_path)
    assert not marker.exists()
    assert sorted(reopened.checkpoints()) == [1]  # the planted files are ignored, the real one kept


def test_a_checkpoint_is_on_disk_before_it_is_in_place(tmp_path: Path, monkeypatch) -> None:
    """fsync before the rename: a crash right after cannot leave an empty or torn checkpoint."""
    store = _store(tmp_path)
    store.save_checkpoint(_checkpoint(episode=1))
    target = Path(tmp_path, store.prefix, "inflight", "000001.npz")
    before = target.read_bytes()

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    changed = _checkpoint(episode=1)
    changed.step = 30
    store.retry_s = 0.3  # retried with backoff (tests/arena/test_storage_faults.py), then fatal
    with pytest.raises(StorageUnavailable, match="Input/output error"):
        store.save_checkpoint(changed)
    # The failed write committed nothing: the old checkpoint is intact and no temp file is left.
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["000001.npz"]
    monkeypatch.undo()
    assert decode_checkpoint(target.read_bytes()).step == 20


def test_records_and_checkpoints_come_back_after_a_restart(tmp_path: Path) -> None:
    from swarm_arena.api.report import EpisodeRecord

    store = _store(tmp_path)
    record = EpisodeRecord(episode=0, pairing={"all": "greedy"}, returns={"greedy": 1.5}, agents={"greedy": 5},
                           steps=30, agent_steps=150)  # fmt: skip
    store.save_record(record)
    store.save_checkpoint(_checkpoint(episode=1))
    store.save_checkpoint(_checkpoint(episode=0))  # superseded by the record of episode 0
    reopened = _store(tmp_path)
    assert reopened.records() == {0: record}
    assert sorted(reopened.checkpoints()) == [1]
    assert spec_fingerprint(foraging_evaluation("dur").spec) in reopened.prefix


def test_episodes_only_the_durable_store_knows_are_reported_once_on_resume(tmp_path: Path) -> None:
    """An attempt counted episode 1 into the durable store, then lost its head before its report
    reached the operator; the next attempt is resumed with episode 0 only. It must not play
    episode 1 again, and must report it, so the operator's results hear of it."""
    from swarm_arena.api.job_channel import ResumePayload
    from swarm_arena.api.report import EpisodeRecord
    from swarm_arena.arena.run_ledger import RunLedger

    def rec(i: int) -> EpisodeRecord:
        return EpisodeRecord(episode=i, pairing={"all": "greedy"}, returns={"greedy": 1.0 + i},
                             agents={"greedy": 5}, steps=30, agent_steps=150)

    earlier = _store(tmp_path)
    earlier.save_record(rec(0))
    earlier.save_record(rec(1))
    ledger = RunLedger(_store(tmp_path), ResumePayload(episodes=[rec(0)]))
    ledger.adopt_resumed()
    counted = [e.counted for e in ledger.poll(0).events if e.counted is not None]
    assert counted == [rec(1)]
    assert not ledger.count(rec(1))  # a replayed finish would not count twice
    assert ledger.poll(0).events == []


def _spec(**overrides):
    return foraging_evaluation("dur", checkpoint={"intervalSteps": 10, "storageURI": "file:///unused"}, **overrides).spec


def _policies(**resources):
    return [{"name": p, "factory": p, "resources": resources.get(p, {"cpu": 0.25})} for p in ("greedy", "random", "noop")]


def test_the_fingerprint_ignores_what_shapes_neither_state_nor_numbers() -> None:
    base = spec_fingerprint(_spec())
    assert spec_fingerprint(_spec(policies=_policies(greedy={"cpu": 2, "memory": "1Gi"}))) == base
    assert spec_fingerprint(_spec(execution={"agentsPerShard": 50, "parallelEpisodes": 3})) == base
    assert spec_fingerprint(_spec(seed=8)) != base
    assert spec_fingerprint(_spec(policies=_policies()[:2])) != base


def _reopen(tmp_path: Path, **overrides) -> DurableStore:
    evaluation = foraging_evaluation("dur", checkpoint={"intervalSteps": 10, "storageURI": f"file://{tmp_path}"}, **overrides)
    store = open_store(evaluation.spec, evaluation.qualified_name)
    assert isinstance(store, DurableStore)
    return store


@pytest.mark.parametrize(
    ("overrides", "refusal"),
    [
        ({"policies": _policies(random={})}, r"^spec\.policies\[1\]\.resources: policy 'random' ran in shard actors of 50 "
                                             r"agents, this spec puts it in the environment actor\..*Put those fields back"),
        ({"policies": _policies(noop={"gpu": 0.5}),
          "cluster": {"workerGroups": [{"name": "cpu"}, {"name": "gpu", "resources": {"cpu": 4, "gpu": 1}}]}},
         r"^spec\.policies\[2\]\.resources: .*noop.*of 50 agents on GPU"),
        ({"execution": {"agentsPerShard": 25}}, r"^spec\.execution\.agentsPerShard: policy 'greedy' ran in shard actors of "
                                                r"50 agents, this spec puts it in shard actors of 25 agents; "
                                                r"spec\.execution\.agentsPerShard: policy 'random'"),
    ],
)
def test_a_resume_under_another_state_layout_is_refused(tmp_path: Path, overrides, refusal) -> None:
    _store(tmp_path).save_checkpoint(_checkpoint(episode=1))
    with pytest.raises(InvalidSpec, match=refusal):
        _reopen(tmp_path, **overrides)
    assert sorted(_store(tmp_path).checkpoints()) == [1]  # the refusal touched nothing


def test_a_resume_may_change_what_shapes_no_state(tmp_path: Path) -> None:
    _store(tmp_path).save_checkpoint(_checkpoint(episode=1))
    store = _reopen(tmp_path, policies=_policies(greedy={"cpu": 1}), execution={"agentsPerShard": 50, "parallelEpisodes": 4})
    assert sorted(store.checkpoints()) == [1]


def test_a_store_with_nothing_to_resume_takes_the_new_layout(tmp_path: Path) -> None:
    _store(tmp_path)  # a first attempt that counted nothing
    assert _reopen(tmp_path, execution={"agentsPerShard": 25}).checkpoints() == {}
    _reopen(tmp_path, execution={"agentsPerShard": 25}).save_checkpoint(_checkpoint(episode=1))
    with pytest.raises(InvalidSpec, match=r"agentsPerShard"):
        _store(tmp_path)
