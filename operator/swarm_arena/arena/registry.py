"""Turning `factory` strings into callables: built-in names first, then `module:callable`.

Resolution is the only thing `swarm-arena validate` cannot learn from the schema: an import
path that does not resolve is reported against the field that names it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

BUILTIN_ENVIRONMENTS: dict[str, str] = {
    "foraging": "swarm_arena.arena.envs.foraging:parallel_env",
}

BUILTIN_POLICIES: dict[str, str] = {
    "random": "swarm_arena.arena.policies.builtin:RandomPolicy",
    "noop": "swarm_arena.arena.policies.builtin:NoopPolicy",
    "greedy": "swarm_arena.arena.policies.builtin:GreedyForagingPolicy",
}


class FactoryError(ValueError):
    """A factory string that names nothing callable."""


def _load(target: str, builtins: dict[str, str], what: str) -> Callable[..., Any]:
    path = builtins.get(target, target)
    if ":" not in path:
        known = ", ".join(sorted(builtins))
        raise FactoryError(f"{target!r} is neither a built-in {what} ({known}) nor `module:callable`")
    module_name, _, attr_path = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise FactoryError(
            f"cannot import module {module_name!r} ({exc}); is the package installed where the arena runs?"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FactoryError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise FactoryError(f"{path!r} is not callable")
    return obj


def load_environment_factory(factory: str) -> Callable[..., Any]:
    """The callable behind `spec.environment.factory`."""
    return _load(factory, BUILTIN_ENVIRONMENTS, "environment")


def load_policy_factory(factory: str) -> Callable[..., Any]:
    """The callable behind `spec.policies[].factory`."""
    return _load(factory, BUILTIN_POLICIES, "policy")
