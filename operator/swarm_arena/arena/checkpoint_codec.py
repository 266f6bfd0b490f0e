"""Episode checkpoints as bytes that cannot run code when read back.

A durable checkpoint is read by a later job (after the head was lost), from a place others may
be able to write (`checkpoint.storageURI`). `pickle` would run whatever such a writer put there,
so checkpoints are stored as an `.npz` archive instead, read with `allow_pickle=False`: numpy
arrays (never of dtype object) plus one JSON document (the `tree` entry) holding everything else
— None, bools, ints (any size: RNG states), floats, strings, lists, tuples, dicts — with arrays
and numpy scalars referenced by name. Anything else (a policy state holding a custom object) is
refused at save time, naming where in the checkpoint it sits.
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import numpy as np

from swarm_arena.arena.episode import EpisodeCheckpoint

_TREE = "tree"
FORMAT = "swarm-arena-checkpoint/1"


class CheckpointFormatError(ValueError):
    """A checkpoint holds something the safe format cannot carry, or bytes that are not one."""


def encode_checkpoint(checkpoint: EpisodeCheckpoint) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    fields = {f.name: getattr(checkpoint, f.name) for f in dataclasses.fields(checkpoint)}
    tree = {"format": FORMAT, "fields": _encode(fields, "checkpoint", arrays)}
    arrays[_TREE] = np.frombuffer(json.dumps(tree, separators=(",", ":")).encode(), dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def decode_checkpoint(data: bytes) -> EpisodeCheckpoint:
    """The checkpoint in `data`; any bytes that are not one (truncated, corrupted, another shape)
    raise `CheckpointFormatError`, never another error."""
    try:
        return _checked(_decode_tree(data))
    except CheckpointFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - bytes from storage: whatever fails to decode is not a checkpoint
        raise CheckpointFormatError(f"not a {FORMAT} archive: {type(exc).__name__}: {exc}") from None


def _decode_tree(data: bytes) -> EpisodeCheckpoint:
    archive = np.load(io.BytesIO(data), allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CheckpointFormatError(f"not a {FORMAT} archive: a bare array, not an archive")
    with archive:
        arrays = {name: archive[name] for name in archive.files}
    if _TREE not in arrays:
        raise CheckpointFormatError(f"not a {FORMAT} archive: no {_TREE!r} entry")
    tree = json.loads(arrays.pop(_TREE).tobytes())
    if not isinstance(tree, dict) or tree.get("format") != FORMAT:
        found = tree.get("format") if isinstance(tree, dict) else f"a JSON {type(tree).__name__}"
        raise CheckpointFormatError(f"not a {FORMAT} archive (format {found!r})")
    if not isinstance(tree.get("fields"), dict):
        raise CheckpointFormatError("the checkpoint has no 'fields' object")
    fields = _decode(tree["fields"], arrays)
    names = {f.name for f in dataclasses.fields(EpisodeCheckpoint)}
    if set(fields) != names:
        raise CheckpointFormatError(
            f"the checkpoint's fields {sorted(fields)} do not match this version's {sorted(names)}"
        )
    return EpisodeCheckpoint(**fields)


def _checked(checkpoint: EpisodeCheckpoint) -> EpisodeCheckpoint:
    """`checkpoint` if every field has the shape a restore relies on."""

    def count(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0

    problems = [name for name in ("episode", "step", "agent_steps") if not count(getattr(checkpoint, name))]
    returns = checkpoint.returns
    if not (isinstance(returns, np.ndarray) and returns.ndim == 1 and returns.dtype.kind == "f"):
        problems.append("returns")
    shards = checkpoint.shard_states
    if not isinstance(shards, dict) or not all(
        isinstance(k, str)
        and isinstance(v, dict)
        and "policy" in v
        and isinstance(v.get("agents"), (list, tuple))
        and all(isinstance(a, str) for a in v["agents"])
        for k, v in shards.items()
    ):
        problems.append("shard_states")
    state = checkpoint.env_state
    if isinstance(state, dict) and "actions_from" in state:  # a generic environment's action log
        actions = state.get("actions")
        if not (
            count(state["actions_from"])
            and count(state.get("steps"))
            and (actions is None or isinstance(actions, np.ndarray) and actions.ndim >= 1)
        ):
            problems.append("env_state")
    if problems:
        raise CheckpointFormatError(f"the checkpoint's {', '.join(problems)} do not have the shape of one")
    return checkpoint


def _encode(value: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)) and not isinstance(value, np.generic):
        return value
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise CheckpointFormatError(f"{path}: a numpy array of Python objects cannot be stored safely")
        name = f"a{len(arrays)}"
        arrays[name] = array
        return {"__array__" if isinstance(value, np.ndarray) else "__scalar__": name}
    if isinstance(value, list):
        return [_encode(v, f"{path}[{i}]", arrays) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{path}[{i}]", arrays) for i, v in enumerate(value)]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, f"{path}[{k!r}]", arrays) for k, v in value.items()}
        return {"__items__": [[_encode(k, f"{path} key", arrays), _encode(v, f"{path}[{k!r}]", arrays)]
                              for k, v in value.items()]}  # fmt: skip
    raise CheckpointFormatError(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__}: durable checkpoints "
        "(spec.checkpoint.storageURI) hold only None, bool, int, float, str, lists, tuples, dicts and "
        "numpy arrays; make the policy's or environment's get_state() return those"
    )


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, inner), = value.items()
        if key == "__array__":
            return _array(inner, arrays)
        if key == "__scalar__":
            return _array(inner, arrays)[()]
        if key == "__tuple__":
            return tuple(_decode(v, arrays) for v in inner)
        if key == "__items__":
            if not isinstance(inner, list) or not all(isinstance(kv, list) and len(kv) == 2 for kv in inner):
                raise CheckpointFormatError("a mapping's '__items__' is not a list of [key, value] pairs")
            return {_hashable(_decode(k, arrays)): _decode(v, arrays) for k, v in inner}
    return {k: _decode(v, arrays) for k, v in value.items()}


def _array(name: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
    if not isinstance(name, str) or name not in arrays:
        raise CheckpointFormatError(f"the checkpoint refers to an array {name!r} it does not hold")
    return arrays[name]


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, tuple)):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, (dict, np.ndarray)):
        raise CheckpointFormatError(f"a {type(key).__name__} is used as a mapping key")
    return key
