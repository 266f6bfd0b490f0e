"""Bad checkpoint files are skipped as documented: every decoding failure is a
`CheckpointFormatError`, and a durable store holding such files opens with a warning for each and
without its checkpoint (the episode replays from its start), never with another error.

A seeded fuzz over corrupted bytes (truncations, flipped and overwritten bytes) and corrupted
trees (the JSON document re-packed with parts replaced, dropped or re-typed)."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swarm_arena.arena.checkpoint import DurableStore, open_store
from swarm_arena.arena.checkpoint_codec import CheckpointFormatError, decode_checkpoint, encode_checkpoint
from swarm_arena.arena.episode import EpisodeCheckpoint
from tests.arena.conftest import foraging_evaluation

SEED = 20261207
CASES = 300


def _native() -> EpisodeCheckpoint:
    rng = np.random.default_rng(7)
    return EpisodeCheckpoint(
        episode=3,
        step=20,
        env_state={"seed": 11, "steps": 20, "alive": np.ones(5, dtype=bool),
                   "native": {"pos": rng.integers(0, 9, (5, 2)), "rng": rng.bit_generator.state,
                              "odd": {1: "int key", ("a", 2): np.float32(0.5)}}},
        shard_states={"greedy/0": {"policy": {"rng": rng.bit_generator.state}, "agents": ("a0", "a1")},
                      "noop/0": {"policy": None, "agents": ("a2",)}},
        returns=np.array([0.5, 1.25, -3.0, 0.0, 2.0]),
        agent_steps=100,
    )  # fmt: skip


def _generic() -> EpisodeCheckpoint:
    """A generic PettingZoo environment's: its seed and a segment of its action log."""
    return EpisodeCheckpoint(
        episode=1,
        step=10,
        env_state={"seed": 5, "steps": 10, "actions_from": 0, "actions": np.arange(40, dtype=np.int8).reshape(10, 4)},
        shard_states={"random/0": {"policy": None, "agents": ["a0", "a1", "a2", "a3"]}},
        returns=np.zeros(4),
        agent_steps=40,
    )


def _decodes_or_refuses(data: bytes) -> EpisodeCheckpoint | None:
    """The checkpoint in `data`, or None when it is refused as a `CheckpointFormatError`; any other
    error fails the test."""
    try:
        return decode_checkpoint(data)
    except CheckpointFormatError:
        return None


def _unpack(data: bytes) -> tuple[dict[str, np.ndarray], Any]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return arrays, json.loads(arrays.pop("tree").tobytes())


def _pack(arrays: dict[str, np.ndarray], tree: Any) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays, tree=np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8))
    return out.getvalue()


def _nodes(tree: Any, path: tuple = ()) -> list[tuple]:
    """The path of every node of a JSON tree."""
    found = [path]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _nodes(value, (*path, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found += _nodes(value, (*path, i))
    return found


_REPLACEMENTS: list[Any] = [
    None, 0, -1, 1.5, "x", True, [], {}, [1, 2], {"a": 1}, {"__array__": "missing"}, {"__array__": 3},
    {"__scalar__": "a0"}, {"__tuple__": 5}, {"__items__": [[{"k": 1}, 1]]}, {"__items__": [[[{}], 1]]},
    {"__items__": 7}, {"__items__": [[1]]}, {"__tuple__": [{"__array__": "a0"}]}, {"policy": None},
]  # fmt: skip


def _mutate(tree: Any, rng: np.random.Generator) -> Any:
    """`tree` with one node replaced by something of another shape, or one key dropped."""
    tree = copy.deepcopy(tree)
    paths = _nodes(tree)
    path = paths[int(rng.integers(len(paths)))]
    replacement = _REPLACEMENTS[int(rng.integers(len(_REPLACEMENTS)))]
    if not path:
        return replacement
    parent = tree
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(replacement)
    return tree


@pytest.mark.parametrize("make", [_native, _generic])
def test_corrupted_bytes_are_refused_as_a_format_error(make) -> None:
    rng = np.random.default_rng(SEED)
    data = encode_checkpoint(make())
    refused = 0
    for _ in range(CASES):
        kind = rng.integers(4)
        corrupted = bytearray(data)
        if kind == 0:  # truncated
            corrupted = corrupted[: int(rng.integers(len(data)))]
        elif kind == 1:  # a few bytes flipped
            for at in rng.integers(len(data), size=int(rng.integers(1, 4))):
                corrupted[at] ^= int(rng.integers(1, 256))
        elif kind == 2:  # a stretch overwritten
            at = int(rng.integers(len(data)))
            corrupted[at : at + 64] = rng.bytes(64)
        else:  # not a checkpoint at all
            corrupted = bytearray(rng.bytes(int(rng.integers(0, 512))))
        refused += _decodes_or_refuses(bytes(corrupted)) is None
    assert refused > CASES // 2  # most corruptions are caught (a flip in stored padding may not be)


@pytest.mark.parametrize("make", [_native, _generic])
def test_corrupted_trees_decode_as_a_checkpoint_or_are_refused(make) -> None:
    rng = np.random.default_rng(SEED)
    arrays, tree = _unpack(encode_checkpoint(make()))
    refused = 0
    for _ in range(CASES):
        checkpoint = _decodes_or_refuses(_pack(arrays, _mutate(tree, rng)))
        if checkpoint is None:
            refused += 1
            continue
        # What decodes has the shape a restore relies on.
        assert isinstance(checkpoint.step, int) and isinstance(checkpoint.shard_states, dict)
        assert isinstance(checkpoint.returns, np.ndarray) and checkpoint.returns.ndim == 1
    assert refused > CASES // 3


@pytest.mark.parametrize(
    "change,refusal",
    [
        (lambda t: [t], "format 'a JSON list'"),
        (lambda t: {k: v for k, v in t.items() if k != "fields"}, "no 'fields'"),
        (lambda t: {**t, "fields": [1, 2]}, "no 'fields'"),
        (lambda t: {**t, "fields": {**t["fields"], "shard_states": {"__items__": [[{"a": 1}, 1]]}}}, "dict is used as a mapping key"),
        (lambda t: {**t, "fields": {**t["fields"], "env_state": {"__items__": [[[[{}]], 1]]}}}, "dict is used as a mapping key"),
        (lambda t: {**t, "fields": {**t["fields"], "returns": {"__array__": "nope"}}}, "array 'nope'"),
        (lambda t: {**t, "fields": {**t["fields"], "step": "20"}}, "step"),
        (lambda t: {**t, "fields": {**t["fields"], "returns": [1.0, 2.0]}}, "returns"),
        (lambda t: {**t, "fields": {k: v for k, v in t["fields"].items() if k != "episode"}}, "do not match"),
        (lambda t: {**t, "fields": {**t["fields"], "extra": 1}}, "do not match"),
        (lambda t: {**t, "fields": {**t["fields"], "shard_states": {"greedy/0": {"policy": None}}}}, "shard_states"),
    ],
)  # fmt: skip
def test_each_known_kind_of_bad_tree_is_a_format_error(change, refusal: str) -> None:
    arrays, tree = _unpack(encode_checkpoint(_native()))
    with pytest.raises(CheckpointFormatError, match=refusal):
        decode_checkpoint(_pack(arrays, change(tree)))


def test_a_truncated_archive_is_a_format_error() -> None:
    data = encode_checkpoint(_native())
    for length in (0, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(CheckpointFormatError, match="not a swarm-arena-checkpoint/1 archive"):
            decode_checkpoint(data[:length])
    out = io.BytesIO()
    np.save(out, np.arange(3))  # an .npy, not an .npz
    with pytest.raises(CheckpointFormatError, match="not an archive"):
        decode_checkpoint(out.getvalue())


def _store(root: Path) -> DurableStore:
    evaluation = foraging_evaluation("bad", checkpoint={"intervalSteps": 10, "storageURI": f"file://{root}"})
    store = open_store(evaluation.spec, evaluation.qualified_name)
    assert isinstance(store, DurableStore)
    return store


def test_a_store_of_corrupted_files_opens_without_them_and_warns(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(SEED)
    store = _store(tmp_path)
    good = _generic()
    store.save_checkpoint(good)  # episode 1: its segment and its checkpoint
    inflight = tmp_path / store.prefix / "inflight"
    native = encode_checkpoint(_native())
    arrays, tree = _unpack(native)
    bad = {
        "000003.npz": native[: len(native) // 2],
        "000004.npz": _pack(arrays, [tree]),
        "000005.npz": _pack(arrays, {k: v for k, v in tree.items() if k != "fields"}),
        "000006.npz": b"",
    }
    for name, data in bad.items():
        (inflight / name).write_bytes(data)
    fuzz_arrays, fuzz_tree = _unpack(encode_checkpoint(dataclasses.replace(_native(), episode=50)))
    for i in range(20):  # fuzzed ones too (episode 50 where they still decode)
        data = _pack(fuzz_arrays, _mutate(fuzz_tree, rng)) if i % 2 else bytes(rng.bytes(int(rng.integers(1, 300))))
        (inflight / f"{100 + i:06d}.npz").write_bytes(data)
    (inflight / "000007.npz").mkdir()  # not even a file
    segments = tmp_path / store.prefix / "actions"
    (segments / "000008").mkdir(parents=True)
    (segments / "000008" / "000000.npy").write_bytes(b"\x93NUMPY garbage")
    generic8 = _generic()
    (inflight / "000008.npz").write_bytes(encode_checkpoint(
        EpisodeCheckpoint(8, 10, {**generic8.env_state, "actions": None}, generic8.shard_states, generic8.returns, 40)
    ))  # fmt: skip
    (segments / "000009").mkdir()
    np.save(segments / "000009" / "000000.npy", np.zeros((4, 4), dtype=np.int8))
    np.save(segments / "000009" / "000004.npy", np.zeros((6, 3), dtype=np.float32))  # does not stack
    (inflight / "000009.npz").write_bytes(encode_checkpoint(
        EpisodeCheckpoint(9, 10, {**generic8.env_state, "actions": None, "actions_from": 4}, generic8.shard_states,
                          generic8.returns, 40)
    ))  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="swarm_arena.arena.checkpoint"):
        reopened = _store(tmp_path)
    kept = reopened.checkpoints()
    assert 1 in kept and np.array_equal(kept[1].env_state["actions"], good.env_state["actions"])
    for episode in (3, 4, 5, 6, 7, 8, 9):
        assert episode not in kept
        assert any(f"{episode:06d}" in r.getMessage() for r in caplog.records), episode
    for checkpoint in kept.values():
        assert isinstance(checkpoint, EpisodeCheckpoint)
