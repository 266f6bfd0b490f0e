"""The policy shard: one policy instance serving many agents with one call per step.

A shard lives inside the environment actor (`HostedPolicy`, for policies without resources of
their own: no round trip per step) or is an actor of its own (`PolicyShard`). A shard actor
is created once per evaluation (named `<ns>/<eval>/shard-<policy>-<i>`) and kept across
episodes; what changes per episode (the agents it serves, the seed) is set by `begin_episode`,
so a step's call carries only the stacked observations and which of those agents are alive.
Its whole checkpointable state is the policy's own `get_state()`.

A shard actor can lose that state without anyone calling it: Ray restarts an actor whose worker
died while it was idle, and the new instance holds what its constructor made (no agents, the
spec's seed). Built-in policies ignore agent ids, so it would act on, and results would change
without an error. So the environment actor gives each episode's state a token when it puts that
state in (`begin_episode`, `set_state`) and sends it with every `act` and `get_state`; a shard
that does not hold that token raises `ShardStateLost`, and the coordinator restores the episode
from its last checkpoint.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from kubernetes.utils.quantity import parse_quantity

from swarm_arena.api.spec import QUANTITY_PATTERN, PolicyResources
from swarm_arena.arena.policies.base import check_actions, make_policy

def quantity_bytes(quantity: str) -> int:
    """A Kubernetes quantity (`512Mi`, `.5Gi`, `2G`, `1e9`, `100m`) in whole bytes, rounded up as
    Kubernetes rounds memory (`100m` is 1 byte, never 0). It accepts what the API accepts."""
    if not re.fullmatch(QUANTITY_PATTERN, quantity):
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity (e.g. 512Mi, .5Gi, 2G)")
    return math.ceil(parse_quantity(quantity))


def actor_resources(resources: PolicyResources) -> dict[str, Any]:
    """`policies[].resources` as Ray actor options (`num_cpus`, `num_gpus`, `memory`)."""
    options: dict[str, Any] = {"num_cpus": resources.cpu, "num_gpus": resources.gpu}
    if resources.memory:
        options["memory"] = quantity_bytes(resources.memory)
    return options


def bundle(resources: PolicyResources) -> dict[str, float]:
    """The placement-group bundle of one shard (Ray refuses empty bundles: a token CPU then)."""
    out: dict[str, float] = {}
    if resources.cpu:
        out["CPU"] = resources.cpu
    if resources.gpu:
        out["GPU"] = resources.gpu
    if resources.memory:
        out["memory"] = float(quantity_bytes(resources.memory))
    return out or {"CPU": 0.001}


class ShardStateLost(RuntimeError):
    """A shard actor was asked to act on (or checkpoint) an episode's state it does not hold: it
    was restarted, or replaced, since that state was put in. The episode must be restored."""


@dataclass(frozen=True)
class ActorInfo:
    """What a liveness ping returns: where the actor runs and which incarnation it is."""

    name: str
    node_id: str
    instance: str
    """A fresh id per constructor run: a different one means the actor was restarted."""
    gpu_ids: tuple[str, ...] = ()
    """The GPUs Ray assigned to this actor (it also sets `CUDA_VISIBLE_DEVICES` to them)."""


def actor_info(name: str) -> ActorInfo:
    import ray

    return ActorInfo(
        name=name,
        node_id=ray.get_runtime_context().get_node_id(),
        instance=uuid.uuid4().hex,
        gpu_ids=tuple(str(i) for i in ray.get_gpu_ids()),
    )


class HostedPolicy:
    """One policy instance serving the agents of one (policy, shard) slot, wherever it lives:
    inside the environment actor (policies without resources of their own) or as its own
    `PolicyShard` actor."""

    def __init__(
        self,
        factory: str,
        params: dict[str, Any],
        seed: int,
        spaces: tuple[gymnasium.Space, gymnasium.Space],
    ) -> None:
        observation_space, action_space = spaces
        self._factory, self._params = factory, params
        self._spaces = (observation_space, action_space)
        # Built eagerly so a bad factory or params fails the run at start, not mid-episode.
        self._policy = make_policy(factory, params, observation_space, action_space, seed)
        self._agent_ids: tuple[str, ...] = ()

    @property
    def reads_observations(self) -> bool:
        """False when the policy declares `reads_observations = False` (`random`, `noop`): then the
        environment skips building its observations and `act` gets only how many agents act."""
        return bool(getattr(self._policy, "reads_observations", True))

    def begin_episode(
        self,
        seed: int,
        agent_ids: Sequence[str],
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
    ) -> bool:
        """Serve `agent_ids` from now on, reseeded: the episode alone decides what the policy does.

        Returns `reads_observations`, so the environment knows what to send each step.
        """
        self._agent_ids = tuple(agent_ids)
        reset = getattr(self._policy, "reset", None)
        if (observation_space, action_space) != self._spaces or not callable(reset):
            self._spaces = (observation_space, action_space)
            self._policy = make_policy(self._factory, self._params, observation_space, action_space, seed)
        else:
            reset(seed)
        return self.reads_observations

    def act(self, observations: np.ndarray | int, live: np.ndarray | None = None) -> np.ndarray:
        """Actions of the agents at positions `live` of this episode's agents (None: all of them).

        `observations` is an int (how many agents act) for a policy that does not read them: it
        then gets a zero-copy array of zeros of the right shape.
        """
        if isinstance(observations, (int, np.integer)):
            space = self._spaces[0]
            observations = np.broadcast_to(np.zeros((), dtype=space.dtype), (int(observations), *(space.shape or ())))
        ids = self._agent_ids if live is None else [self._agent_ids[i] for i in live.tolist()]
        actions = self._policy.act(observations, ids)
        return check_actions(actions, self._spaces[1], len(observations))

    def get_state(self) -> Any:
        get_state = getattr(self._policy, "get_state", None)
        return {"policy": get_state() if callable(get_state) else None, "agents": self._agent_ids}

    def set_state(self, state: Any) -> None:
        """Put a checkpointed state back, after `begin_episode` for the same agents."""
        agents = tuple(state["agents"])
        if self._agent_ids and agents != self._agent_ids:
            raise ValueError(
                f"the checkpointed shard served {len(agents)} agents ({', '.join(agents[:3])}, ...), this layout "
                f"gives it {len(self._agent_ids)} ({', '.join(self._agent_ids[:3])}, ...): the checkpoint was made "
                "under a spec that laid the shards out differently"
            )
        self._agent_ids = agents
        set_state = getattr(self._policy, "set_state", None)
        if state["policy"] is not None and callable(set_state):
            set_state(state["policy"])


class PolicyShard(HostedPolicy):
    """A `HostedPolicy` as a named actor of its own; wrapped with `ray.remote` by the coordinator."""

    def __init__(
        self,
        name: str,
        factory: str,
        params: dict[str, Any],
        seed: int,
        spaces: tuple[gymnasium.Space, gymnasium.Space],
    ) -> None:
        self._info = actor_info(name)
        super().__init__(factory, params, seed, spaces)
        self._token: str | None = None  # whose episode state this instance holds (None: its constructor's)

    def ping(self) -> ActorInfo:
        return self._info

    def begin_episode(  # type: ignore[override]
        self,
        seed: int,
        agent_ids: Sequence[str],
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
        token: str | None = None,
    ) -> bool:
        self._token = None  # until this episode's state is all in
        reads = super().begin_episode(seed, agent_ids, observation_space, action_space)
        self._token = token
        return reads

    def set_state(self, state: Any, token: str | None = None) -> None:  # type: ignore[override]
        self._token = None
        super().set_state(state)
        self._token = token

    def act(  # type: ignore[override]
        self, observations: np.ndarray | int, live: np.ndarray | None = None, token: str | None = None
    ) -> np.ndarray:
        self._check(token)
        return super().act(observations, live)

    def get_state(self, token: str | None = None) -> Any:  # type: ignore[override]
        self._check(token)
        return super().get_state()

    def _check(self, token: str | None) -> None:
        if token != self._token:
            raise ShardStateLost(
                f"{self._info.name} (instance {self._info.instance[:8]}) does not hold the state of episode "
                f"{(token or '?').split(':')[0]}: it was restarted or replaced since that state was put in"
            )
