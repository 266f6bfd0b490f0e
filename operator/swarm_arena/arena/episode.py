"""The environment actor: owns one ArrayEnv and steps episodes against the policy shards.

The coordinator hands it an episode a chunk at a time (up to the next checkpoint boundary), so
the coordinator sees one round trip per `checkpoint.intervalSteps` steps, not per step. Inside a
chunk every step is one parallel round trip to all shards, straight from here:

    observe(shard's live agents) -> shard.act.remote(...) for every shard -> ray.get(all) -> env.step

At a boundary the chunk returns an `EpisodeCheckpoint` (environment state, every shard's policy
state, the returns so far); from it any environment actor, with any shard actors, continues the
episode exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swarm_arena.arena.array_env import ArrayEnv, make_array_env
from swarm_arena.arena.shard import ActorInfo, actor_info


@dataclass(frozen=True)
class ShardPart:
    """One shard actor's part in an episode."""

    name: str
    handle: Any  # ray.actor.ActorHandle of a PolicyShard
    policy: str
    agent_indices: tuple[int, ...]
    seed: int


@dataclass
class EpisodeCheckpoint:
    """Everything needed to resume an episode at `step`."""

    episode: int
    step: int
    env_state: Any
    shard_states: dict[str, Any]
    returns: np.ndarray  # float64 [N]: each agent's return so far
    agent_steps: int


@dataclass(frozen=True)
class EpisodeTask:
    """Step episode `episode` from `start_step` until `stop_at` (or its end)."""

    episode: int
    seed: int
    pairing: dict[str, str]
    policy_agents: dict[str, tuple[int, ...]]
    shards: tuple[ShardPart, ...]
    start_step: int
    stop_at: int


@dataclass
class ChunkResult:
    """What one chunk produced; `record` is set once the episode is over."""

    episode: int
    step: int
    done: bool
    checkpoint: EpisodeCheckpoint | None
    record: dict[str, Any] | None
    latencies_s: list[float] = field(default_factory=list)
    agent_steps: int = 0


class EnvironmentWorker:
    """Steps one episode at a time; wrapped with `ray.remote` by the coordinator."""

    def __init__(self, name: str, factory: str, params: dict[str, Any], max_steps: int) -> None:
        self._info = actor_info(name)
        self._env: ArrayEnv = make_array_env(factory, params, max_steps)
        self._episode: int | None = None
        self._returns = np.zeros(self._env.num_agents, dtype=np.float64)
        self._agent_steps = 0

    def ping(self) -> ActorInfo:
        return self._info

    def begin(self, task: EpisodeTask) -> None:
        """Start `task.episode` from its seed (environment and every shard)."""
        import ray

        env = self._env
        env.reset(task.seed)
        ray.get([part.handle.begin_episode.remote(part.seed, *self._shard_setup(part)) for part in task.shards])
        self._episode, self._agent_steps = task.episode, 0
        self._returns[:] = 0.0

    def restore(self, task: EpisodeTask, checkpoint: EpisodeCheckpoint) -> None:
        """Put the environment and every shard of `task` back to `checkpoint`."""
        import ray

        self._env.set_state(checkpoint.env_state)
        refs = []
        for part in task.shards:
            refs.append(part.handle.begin_episode.remote(part.seed, *self._shard_setup(part)))
            refs.append(part.handle.set_state.remote(checkpoint.shard_states[part.name]))
        ray.get(refs)
        self._episode, self._agent_steps = checkpoint.episode, checkpoint.agent_steps
        self._returns[:] = checkpoint.returns

    def run(self, task: EpisodeTask) -> ChunkResult:
        """Step until `task.stop_at` or the episode's end; checkpoint at the boundary."""
        import ray

        env = self._env
        if task.start_step == 0 and (self._episode != task.episode or env.steps != 0):
            self.begin(task)
        if self._episode != task.episode or env.steps != task.start_step:
            raise RuntimeError(
                f"{self._info.name} holds episode {self._episode} at step {env.steps}, but was asked to "
                f"continue episode {task.episode} from step {task.start_step}; the coordinator must restore it first"
            )
        parts = [(part, np.asarray(part.agent_indices, dtype=np.int64)) for part in task.shards]
        latencies: list[float] = []
        chunk_agent_steps = 0
        while not env.done and env.steps < task.stop_at:
            started = time.perf_counter()
            alive = env.alive
            calls = []
            for part, indices in parts:
                live = alive[indices]
                if not live.any():
                    continue
                if live.all():
                    calls.append((indices, part.handle.act.remote(env.observe(indices), None)))
                else:
                    calls.append((indices[live], part.handle.act.remote(env.observe(indices[live]), np.flatnonzero(live))))
            results = ray.get([ref for _, ref in calls])
            actions = np.zeros((env.num_agents, *results[0].shape[1:]), dtype=results[0].dtype)
            for (indices, _), result in zip(calls, results, strict=True):
                actions[indices] = result
            outcome = env.step(actions)
            self._returns += outcome.rewards
            acted = int(alive.sum())
            chunk_agent_steps += acted
            latencies.append(time.perf_counter() - started)
        self._agent_steps += chunk_agent_steps
        result = ChunkResult(
            episode=task.episode,
            step=env.steps,
            done=env.done,
            checkpoint=None,
            record=None,
            latencies_s=latencies,
            agent_steps=chunk_agent_steps,
        )
        if env.done:
            result.record = self._record(task)
        else:
            result.checkpoint = self.checkpoint(task)
        return result

    def checkpoint(self, task: EpisodeTask) -> EpisodeCheckpoint:
        import ray

        states = ray.get([part.handle.get_state.remote() for part in task.shards])
        return EpisodeCheckpoint(
            episode=task.episode,
            step=self._env.steps,
            env_state=self._env.get_state(),
            shard_states={part.name: state for part, state in zip(task.shards, states, strict=True)},
            returns=self._returns.copy(),
            agent_steps=self._agent_steps,
        )

    def _shard_setup(self, part: ShardPart) -> tuple[list[str], Any, Any]:
        env = self._env
        first = part.agent_indices[0]
        return [env.possible_agents[i] for i in part.agent_indices], env.observation_space(first), env.action_space(first)

    def _record(self, task: EpisodeTask) -> dict[str, Any]:
        returns = {
            policy: float(self._returns[list(indices)].mean()) if indices else 0.0
            for policy, indices in task.policy_agents.items()
        }
        return {
            "episode": task.episode,
            "pairing": dict(task.pairing),
            "returns": returns,
            "agents": {policy: len(indices) for policy, indices in task.policy_agents.items()},
            "steps": self._env.steps,
            "agent_steps": self._agent_steps,
        }
