"""The batched policy interface: one object serves a whole shard of agents, one call per step.

A policy shard actor owns many agents; calling a Python function per agent per step would cost
more than the environment itself at swarm sizes. So there is exactly one protocol: `act` takes
the stacked observations of all the shard's live agents and returns their stacked actions. A
per-agent policy is written as a loop inside `act` (see docs/environments-and-policies.md).

Optional methods, used when present:
- `reset(seed)` at the start of every episode (reseed, clear memory);
- `get_state()` -> picklable / `set_state(state)`, for checkpoints: a restored policy must act
  exactly as the uninterrupted one would (save RNG state, recurrent state, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import gymnasium
import numpy as np

from swarm_arena.arena.registry import FactoryError, load_policy_factory


@runtime_checkable
class BatchedPolicy(Protocol):
    """One instance serves one policy shard: many agents, one call per step."""

    def act(self, observations: np.ndarray, agent_ids: Sequence[str]) -> np.ndarray:
        """observations: [n, *obs_shape] -> actions [n, *act_shape] (Discrete: int64 [n])."""
        ...


def make_policy(
    factory: str,
    params: dict[str, Any],
    observation_space: gymnasium.Space,
    action_space: gymnasium.Space,
    seed: int,
) -> BatchedPolicy:
    """Build a policy: `factory(observation_space=, action_space=, seed=, **params)`.

    Raises FactoryError (naming the factory) when the factory rejects its arguments or returns
    something without an `act` method.
    """
    build = load_policy_factory(factory)
    try:
        policy = build(observation_space=observation_space, action_space=action_space, seed=seed, **params)
    except TypeError as exc:
        raise FactoryError(
            f"policy factory {factory!r} rejected its arguments ({exc}); it is called as "
            f"factory(observation_space=..., action_space=..., seed=..., **params) with params "
            f"{sorted(params)}: check the policy's params"
        ) from exc
    if not callable(getattr(policy, "act", None)):
        raise FactoryError(
            f"policy factory {factory!r} returned {type(policy).__name__}, which has no "
            "act(observations, agent_ids) method; see docs/environments-and-policies.md"
        )
    return policy


def check_actions(actions: Any, action_space: gymnasium.Space, count: int) -> np.ndarray:
    """The policy's output as an array of `count` actions of `action_space`'s shape, or a clear error."""
    array = np.asarray(actions)
    expected = (count, *(action_space.shape or ()))
    if array.shape != expected:
        raise ValueError(
            f"policy returned actions of shape {array.shape}, expected {expected} "
            f"({count} agents, action space {action_space})"
        )
    return array
