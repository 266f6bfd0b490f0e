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
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        tree = json.loads(arrays.pop(_TREE).tobytes())
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointFormatError(f"not a {FORMAT} archive: {exc}") from None
    if not isinstance(tree, dict) or tree.get("format") != FORMAT:
        raise CheckpointFormatError(f"not a {FORMAT} archive (format {tree.get('format')!r})")
    fields = _decode(tree["fields"], arrays)
    try:
        return EpisodeCheckpoint(**fields)
    except TypeError as exc:
        raise CheckpointFormatError(f"the checkpoint's fields do not match this version: {exc}") from None


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
            return {_hashable(_decode(k, arrays)): _decode(v, arrays) for k, v in inner}
    return {k: _decode(v, arrays) for k, v in value.items()}


def _array(name: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
    if not isinstance(name, str) or name not in arrays:
        raise CheckpointFormatError(f"the checkpoint refers to an array {name!r} it does not hold")
    return arrays[name]


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key
