"""The environment actor: owns one ArrayEnv and steps episodes against the policy shards.

The coordinator hands it an episode a chunk at a time (up to the next checkpoint boundary), so
the coordinator sees one round trip per `checkpoint.intervalSteps` steps, not per step. Inside a
chunk a step costs no round trip for the policies stepped here (those without resources of their
own, the default) and one parallel round trip to the shard actors of the others:

    observe(shard's live agents) -> shard.act.remote(...) for every shard actor
        -> hosted policy.act(...) for every shard stepped here -> ray.get(all) -> env.step

A policy that declares it does not read observations (`random`, `noop`) gets none built.

The coordinator queues each chunk's successor on this actor while the chunk runs (scheduler.py,
"chunks ahead"), so at a boundary this actor takes its snapshot, returns it, and goes straight on
with the next chunk: the trip to the coordinator, the store write and the next dispatch happen
while it steps. A queued chunk whose episode ended early (every agent gone) returns at once,
changing nothing. A step's latency runs from the end of the step before it, so the first step of
a chunk that continues the previous one on this actor also counts the stall between them (the
snapshot, and whatever wait remains for the next chunk). The first step of an episode, or after a
restore, counts from its own start.

At a boundary the chunk returns an `EpisodeCheckpoint` (environment state, every shard's policy
state, the returns so far); from it any environment actor, with any shard actors, continues the
episode exactly as the uninterrupted one would have. A shard's state is keyed by what it belongs
to, `<policy>/<shard index within the policy>` (`state_key`), never by the actor or slot that
played it: a resumed episode goes to whichever slot is free.

Each `begin`/`restore` gives the episode's state a fresh token, sent with every shard actor's
`act` and `get_state`; a shard actor that no longer holds it (restarted while idle) refuses with
`ShardStateLost` instead of acting on a fresh policy (see shard.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

import numpy as np

from swarm_arena.arena.array_env import ArrayEnv, make_array_env
from swarm_arena.arena.recording.buffer import RecordedSegment, StepBuffer
from swarm_arena.arena.shard import ActorInfo, HostedPolicy, actor_info
from swarm_arena.arena.social_tally import SocialTally, episode_social


def _in_an_actor() -> bool:
    """Whether this process is a Ray actor's (what `freeze_heap` and `steady_allocator` change is
    the whole process's: never a driver's, a task's, a test's or a benchmark's)."""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


def freeze_heap() -> None:
    """In an actor's process: keep what the process holds once set up (Ray, the imported modules,
    the environment: about 100,000 objects in a Ray worker stepping MAgent2) out of the garbage
    collector's full passes.

    MAgent2's step allocates thousands of objects (per-agent dicts and arrays), so the collector
    runs every step and now and then a full pass, which walks every tracked object: 136 ms once in
    a battle run's first 100 steps (shared machine, load 44), where the plain loop's small process
    pays little. Frozen objects are never collected (they live as long as the actor anyway); what
    the episodes allocate later is collected as before. Not done outside an actor (a benchmark or
    test stepping `EnvironmentWorker` in its own process keeps its collector as it is)."""
    import gc

    if not _in_an_actor():
        return
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
ALLOCATOR_MMAP_THRESHOLD = 64 << 20  # one step's biggest buffers (MAgent2 battle: ~4 MiB each) are below it
ALLOCATOR_TRIM_THRESHOLD = 256 << 20  # free memory the process keeps before giving it back


def steady_allocator() -> bool:
    """In an actor's process on glibc: fix malloc's thresholds, so a step's large buffers come
    from memory the process already holds instead of fresh pages every step.

    glibc serves allocations above a moving threshold with mmap and returns them with munmap on
    free; where it settles depends on the process's history. An environment that allocates a few
    MiB of observations per step (MAgent2 battle: every agent's view as new arrays) then either
    reuses its heap or maps and faults in hundreds of new pages every step. In an environment
    actor stepping MAgent2 battle (map 120) that was its first episode: 227 faults a step, mean
    step 3.84 ms, against 40 and 3.35 ms with fixed thresholds (later episodes: 42 against 0-7
    faults, the same time); in a plain process, after a `reset` of a reused environment, 730 a
    step and 20-50 % slower. Fixed thresholds keep the heap warm: the actor holds up to
    ALLOCATOR_TRIM_THRESHOLD of freed memory above what it uses (there: 6-9 MiB more resident).
    Returns whether it applied (not on other C libraries, and not outside an actor, as
    `freeze_heap`). End to end: docs/performance.md."""
    import ctypes

    if not _in_an_actor():
        return False
    process = ctypes.CDLL(None)  # the interpreter and the C library it runs on
    mallopt = getattr(process, "mallopt", None)
    if mallopt is None or getattr(process, "gnu_get_libc_version", None) is None:
        return False  # musl and others: no such knobs
    return bool(mallopt(M_MMAP_THRESHOLD, ALLOCATOR_MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, ALLOCATOR_TRIM_THRESHOLD)
    )


def state_key(policy: str, shard: int) -> str:
    """Where a shard's state sits in a checkpoint: its policy and its index within the policy."""
    return f"{policy}/{shard}"


@dataclass(frozen=True)
class ShardPart:
    """One shard's part in an episode: an actor of its own (`handle`) or, with `handle` None, a
    `HostedPolicy` the environment actor builds from `factory` and `params` and steps itself."""

    name: str
    handle: Any  # ray.actor.ActorHandle of a PolicyShard; None: stepped inside the environment actor
    policy: str
    agent_indices: tuple[int, ...]
    seed: int
    factory: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    shard: int = 0  # the shard's index within its policy in this episode

    @property
    def key(self) -> str:
        return state_key(self.policy, self.shard)


@dataclass
class EpisodeCheckpoint:
    """Everything needed to resume an episode at `step`."""

    episode: int
    step: int
    env_state: Any
    shard_states: dict[str, Any]  # state_key(policy, shard) -> that shard's state
    returns: np.ndarray  # float64 [N]: each agent's return so far
    agent_steps: int
    tally: np.ndarray | None = None  # float64 [3, N]: SocialTally's sums so far


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
    team_agents: dict[str, tuple[int, ...]] = field(default_factory=dict)
    recording: tuple[int, ...] | None = None
    """None: not recorded; else the chunk records every step, with the observations of these agents."""


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
    recording: RecordedSegment | None = None


class EnvironmentWorker:
    """Steps one episode at a time; wrapped with `ray.remote` by the coordinator."""

    def __init__(self, name: str, factory: str, params: dict[str, Any], max_steps: int) -> None:
        self._info = actor_info(name)
        self._env: ArrayEnv = make_array_env(factory, params, max_steps)
        self._episode: int | None = None
        self._returns = np.zeros(self._env.num_agents, dtype=np.float64)
        self._tally = SocialTally(self._env.num_agents)
        self._agent_steps = 0
        self._hosted: dict[str, HostedPolicy] = {}  # state key -> the policy stepped here
        self._reads: dict[str, bool] = {}  # state key -> whether its policy reads observations
        self._token: str | None = None  # the state of the episode held now, as the shard actors know it
        # (token, step, perf_counter) at the end of the last step: where the next chunk's first step starts
        self._step_end: tuple[str | None, int, float] | None = None
        steady_allocator()
        freeze_heap()

    def ping(self) -> ActorInfo:
        return self._info

    def begin(self, task: EpisodeTask) -> None:
        """Start `task.episode` from its seed (environment and every shard)."""
        self._episode = None
        self._env.reset(task.seed)
        self._begin_shards(task)
        self._episode, self._agent_steps = task.episode, 0
        self._returns[:] = 0.0
        self._tally.reset()

    def restore(self, task: EpisodeTask, checkpoint: EpisodeCheckpoint) -> None:
        """Put the environment and every shard of `task` back to `checkpoint`."""
        import ray

        wanted, held = {p.key for p in task.shards}, set(checkpoint.shard_states)
        if wanted != held:
            raise ValueError(
                f"the checkpoint of episode {checkpoint.episode} holds the shards {sorted(held)}, this spec lays "
                f"the episode out as {sorted(wanted)}: it was made under a spec that placed or cut the policies "
                "differently (spec.policies[].resources, spec.execution.agentsPerShard)"
            )
        self._episode = None
        self._env.set_state(checkpoint.env_state)
        self._begin_shards(task)
        refs = []
        for part in task.shards:
            state = checkpoint.shard_states[part.key]
            if part.handle is None:
                self._hosted[part.key].set_state(state)
            else:
                refs.append(part.handle.set_state.remote(state, self._token))
        ray.get(refs)
        self._episode, self._agent_steps = checkpoint.episode, checkpoint.agent_steps
        self._returns[:] = checkpoint.returns
        self._tally.reset(checkpoint.tally)

    def _begin_shards(self, task: EpisodeTask) -> None:
        import ray

        if len({p.key for p in task.shards}) != len(task.shards):
            raise ValueError(f"two shards of episode {task.episode} share a state key: {[p.key for p in task.shards]}")
        self._token = f"{task.episode}:{uuid.uuid4().hex}"
        remote = {}
        for part in task.shards:
            setup = self._shard_setup(part)
            if part.handle is None:
                self._reads[part.key] = self._host(part, setup[1:]).begin_episode(part.seed, *setup)
            else:
                remote[part.key] = part.handle.begin_episode.remote(part.seed, *setup, self._token)
        for name, reads in zip(remote, ray.get(list(remote.values())), strict=True):
            self._reads[name] = reads is not False  # None from an older shard: it reads them

    def _host(self, part: ShardPart, spaces: tuple[Any, Any]) -> HostedPolicy:
        hosted = self._hosted.get(part.key)
        if hosted is None:
            hosted = self._hosted[part.key] = HostedPolicy(part.factory, dict(part.params), part.seed, spaces)
        return hosted

    def run(self, task: EpisodeTask) -> ChunkResult:
        """Step until `task.stop_at` or the episode's end; checkpoint at the boundary.

        Each step sends every shard actor its agents' observations first, then steps the shards
        hosted here while those calls run, then gathers. Policies that do not read observations
        get only how many agents act.
        """
        import ray

        env = self._env
        if task.start_step == 0 and (self._episode != task.episode or env.steps != 0):
            self.begin(task)
        if self._episode == task.episode and env.done and env.steps < task.start_step:
            # A chunk the coordinator queued ahead (see the module's docstring) of an episode that
            # ended early (every agent gone): nothing to step, and nothing changes here.
            return ChunkResult(episode=task.episode, step=env.steps, done=True, checkpoint=None, record=None)
        if self._episode != task.episode or env.steps != task.start_step:
            raise RuntimeError(
                f"{self._info.name} holds episode {self._episode} at step {env.steps}, but was asked to "
                f"continue episode {task.episode} from step {task.start_step}; the coordinator must restore it first"
            )
        remote = [(p, np.asarray(p.agent_indices, dtype=np.int64), self._reads[p.key]) for p in task.shards if p.handle is not None]
        hosted = [
            (self._hosted[p.key], np.asarray(p.agent_indices, dtype=np.int64), self._reads[p.key])
            for p in task.shards
            if p.handle is None
        ]
        token = self._token
        latencies: list[float] = []
        chunk_agent_steps = 0
        actions: np.ndarray | None = None
        # Continuing the chunk that ended here: its first step counts the stall since that chunk's last step.
        ended = self._step_end[2] if self._step_end and self._step_end[:2] == (token, task.start_step) else None
        chunk = min(task.stop_at, env.max_steps) - env.steps
        recorder = None if task.recording is None else StepBuffer(env.steps, task.recording, chunk)
        while not env.done and env.steps < task.stop_at:
            started = time.perf_counter() if ended is None else ended
            alive = env.alive
            if recorder is not None:
                recorder.observe(env)
            everyone = bool(alive.all())
            calls = []
            for part, indices, reads in remote:
                picked, live = self._live(indices, alive, everyone)
                if picked.size:
                    payload = env.observe(picked) if reads else int(picked.size)
                    calls.append((picked, part.handle.act.remote(payload, live, token)))
            results = []
            for policy, indices, reads in hosted:
                picked, live = self._live(indices, alive, everyone)
                if picked.size:
                    results.append((picked, policy.act(env.observe(picked) if reads else int(picked.size), live)))
            if calls:
                results.extend(zip((picked for picked, _ in calls), ray.get([ref for _, ref in calls]), strict=True))
            first = results[0][1]
            if actions is None or actions.dtype != first.dtype or actions.shape[1:] != first.shape[1:]:
                actions = np.zeros((env.num_agents, *first.shape[1:]), dtype=first.dtype)
            elif not everyone:
                actions[~alive] = 0
            for picked, result in results:
                actions[picked] = result
            outcome = env.step(actions)
            if recorder is not None:
                recorder.append(actions, outcome, alive)
            self._returns += outcome.rewards
            self._tally.add(env.steps, outcome.rewards, alive)  # social outcome metrics (social_tally.py)
            chunk_agent_steps += int(alive.sum())
            ended = time.perf_counter()
            latencies.append(ended - started)
        if ended is not None:
            self._step_end = (token, env.steps, ended)
        self._agent_steps += chunk_agent_steps
        result = ChunkResult(
            episode=task.episode,
            step=env.steps,
            done=env.done,
            checkpoint=None,
            record=None,
            latencies_s=latencies,
            agent_steps=chunk_agent_steps,
            recording=None if recorder is None else recorder.segment(),
        )
        if env.done:
            result.record = self._record(task)
        else:
            result.checkpoint = self.checkpoint(task)
        return result

    @staticmethod
    def _live(indices: np.ndarray, alive: np.ndarray, everyone: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The shard's agents that act this step, and their positions in the shard (None: all)."""
        if everyone:
            return indices, None
        live = alive[indices]
        if live.all():
            return indices, None
        return indices[live], np.flatnonzero(live)

    def checkpoint(self, task: EpisodeTask) -> EpisodeCheckpoint:
        import ray

        remote = [part for part in task.shards if part.handle is not None]
        refs = [p.handle.get_state.remote(self._token) for p in remote]
        states = dict(zip((p.key for p in remote), ray.get(refs), strict=True))
        states.update({p.key: self._hosted[p.key].get_state() for p in task.shards if p.handle is None})
        return EpisodeCheckpoint(
            episode=task.episode,
            step=self._env.steps,
            env_state=self._env.get_state(since=task.start_step),  # generic envs: this chunk's actions
            shard_states={part.key: states[part.key] for part in task.shards},
            returns=self._returns.copy(),
            agent_steps=self._agent_steps,
            tally=self._tally.state(),
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
            "social": episode_social(self._returns, self._tally.sums, self._env.steps,
                                     {"policies": task.policy_agents, "teams": task.team_agents}),
        }
