"""The coordinator: one named actor per evaluation that drives the whole run.

It lives next to the driver (on the head in a cluster; scheduled with node affinity to the
driver's node) and owns everything that must outlive a worker node: the plan, the counted
episodes (each index exactly once), the latest checkpoint of every running episode, and the
table of named actors with their restart counts. It creates the shard actors (in a placement
group), the environment actors, hands episodes to environment actors a checkpoint interval at a
time, and brings lost actors back (see recovery.py). It is a threaded actor: `run` drives the
episodes while `poll` (the driver's progress) and `repair` (the operator's fast path) answer
from other threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.job_channel import ResumePayload
from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.status import Progress, Recovery, StepLatency
from swarm_arena.arena.checkpoint import open_store
from swarm_arena.arena.episode import ChunkResult, EnvironmentWorker, EpisodeCheckpoint, EpisodeTask, ShardPart
from swarm_arena.arena.matchmaking import (
    Match,
    assign_agents,
    in_environment,
    max_shards_per_policy,
    plan_matches,
    shard_layout,
)
from swarm_arena.arena.naming import env_name, shard_name
from swarm_arena.arena.errors import EvaluationFailed, InvalidSpec
from swarm_arena.arena.recovery import RAY_RESTART_WAIT_S, ActorRecipe, ActorTable, is_actor_loss, remote_actor_class
from swarm_arena.arena.run_models import PollBatch, ProgressEvent, RunOutcome
from swarm_arena.arena.shard import ActorInfo, PolicyShard, actor_resources, bundle

log = logging.getLogger(__name__)

# An environment actor steps the world: one CPU. The coordinator itself only waits: zero.
ENV_ACTOR_CPUS = 1.0
PLACEMENT_TIMEOUT_S = 60.0
# Step latencies kept for the p50/p99 of the report; beyond this, every other one is dropped.
MAX_LATENCY_SAMPLES = 1_000_000


def shard_seed(episode_seed: int, policy_index: int, shard: int) -> int:
    """The seed of one shard in one episode: depends on the episode, never on which actor plays it."""
    sequence = np.random.SeedSequence(entropy=episode_seed, spawn_key=(policy_index, shard))
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Slot:
    """One environment actor and the shards it steps with."""

    index: int
    env: str
    shards: dict[tuple[str, int], str]  # (policy, k) -> shard actor name
    task: EpisodeTask | None = None
    ref: Any = None


class Coordinator:
    """Wrapped with `ray.remote(max_concurrency=...)` by the runner; named `<ns>/<eval>/coordinator`."""

    def __init__(self, evaluation: dict[str, Any], resume: ResumePayload | None = None) -> None:
        parsed = SwarmEvaluation.model_validate(evaluation)
        # Counted by earlier attempts (the operator's `SWARM_ARENA_RESUME`): never played again.
        self._resume = resume or ResumePayload()
        self.spec = parsed.spec
        self.evaluation = parsed.qualified_name
        self._table = ActorTable(self.spec.fault_tolerance.max_actor_restarts)
        self._store = open_store(self.spec, self.evaluation)
        self._lock = threading.Lock()
        self._repair_lock = threading.RLock()  # held by repair() and while (re)dispatching a slot
        self._pending = PollBatch()
        self._repaired: dict[str, float] = {}  # name -> monotonic time its repair began, until a slot reports it
        self._failure: BaseException | None = None
        self._recoveries: list[Recovery] = []
        self._latencies: list[float] = []
        self._stepped_agent_steps = 0  # this run's, replays after a recovery included
        self._inflight_steps: dict[int, int] = {}
        self._slots: list[Slot] = []
        self._placement_group: Any = None
        self._matches: list[Match] = []

    # ---- setup -------------------------------------------------------------------------------

    def setup(self) -> list[str]:
        """Create the placement group and every named actor; return their names once all answer."""
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from swarm_arena.arena.array_env import make_array_env

        spec = self.spec
        env_spec = spec.environment
        try:
            probe = make_array_env(env_spec.factory, env_spec.params, env_spec.max_steps)
        except Exception as exc:
            raise InvalidSpec(f"spec.environment.factory {env_spec.factory!r}: {exc}") from None
        self._agents = list(probe.possible_agents)
        self._spaces = (probe.observation_space(0), probe.action_space(0))
        probe.close()
        self._matches = plan_matches(spec)
        # Policies without resources of their own are stepped inside the environment actors.
        self._hosted = in_environment(spec)
        self._check_hosted_policies()
        try:
            self._per_policy = max_shards_per_policy(spec, self._agents, self._hosted)
        except ValueError as exc:
            raise InvalidSpec(f"spec.teams: {exc}") from None
        self._adopt_resumed()
        slots = min(spec.execution.parallel_episodes, len(self._matches))

        # Constructor inputs are small and passed inline, deliberately not via ray.put: a replacement
        # actor would otherwise wait on an object location lookup that still lists the lost node
        # (measured: ~30 s instead of ~3-5 s for a fast repair).
        shard_recipes: list[tuple[ActorRecipe, dict[str, float]]] = []
        for j in range(slots):
            names: dict[tuple[str, int], str] = {}
            for pi, policy in enumerate(spec.policies):
                if policy.name in self._hosted:
                    continue
                count = self._per_policy[policy.name]
                for k in range(count):
                    name = shard_name(self.evaluation, policy.name, j * count + k)
                    names[(policy.name, k)] = name
                    recipe = ActorRecipe(
                        name=name,
                        cls=remote_actor_class(PolicyShard),
                        args=(name, policy.factory, policy.params, spec.seed, self._spaces),
                        options=actor_resources(policy.resources),
                        field_path=f"spec.policies[{pi}].factory",
                    )
                    shard_recipes.append((recipe, bundle(policy.resources)))
            self._slots.append(Slot(index=j, env=env_name(self.evaluation, j), shards=names))

        strategy = spec.execution.placement_strategy.value
        if shard_recipes:
            self._placement_group = placement_group([b for _, b in shard_recipes], strategy=strategy)
            if not self._placement_group.wait(timeout_seconds=PLACEMENT_TIMEOUT_S):
                raise EvaluationFailed(
                    f"the placement group of {len(shard_recipes)} policy shards (strategy {strategy}) could not "
                    f"be placed within {PLACEMENT_TIMEOUT_S:.0f} s: the cluster lacks what "
                    "spec.policies[].resources asks for per shard, or spec.execution.placementStrategy cannot be "
                    "met by its nodes; ask for less, raise spec.execution.agentsPerShard, or add nodes"
                )
        for b, (recipe, _) in enumerate(shard_recipes):
            recipe.placement = {
                "scheduling_strategy": PlacementGroupSchedulingStrategy(
                    placement_group=self._placement_group, placement_group_bundle_index=b
                )
            }
            self._table.create(recipe)
        for slot in self._slots:
            self._table.create(
                ActorRecipe(
                    name=slot.env,
                    cls=remote_actor_class(EnvironmentWorker),
                    args=(slot.env, env_spec.factory, env_spec.params, env_spec.max_steps),
                    options={"num_cpus": ENV_ACTOR_CPUS},
                    field_path="spec.environment.factory",
                )
            )
        self._table.wait_started(self._table.names())
        return self._table.names()

    def _adopt_resumed(self) -> None:
        """Count what earlier attempts counted, after checking it belongs to this plan."""
        for record in self._resume.episodes:
            index = record.episode
            if index >= len(self._matches) or self._matches[index].pairing_label() != record.pairing:
                raise InvalidSpec(
                    f"resumed episode {index} (pairing {record.pairing}) is not episode {index} of this spec's "
                    f"plan of {len(self._matches)} episodes: the resume payload was counted under another spec; "
                    "submit without it (or with the records of this spec)"
                )
            self._store.adopt_record(record)

    def _check_hosted_policies(self) -> None:
        """Build each policy stepped inside the environment actors once here, so a bad factory or
        params fails the run at start naming the field, as a shard actor's constructor would."""
        from swarm_arena.arena.policies.base import make_policy

        for pi, policy in enumerate(self.spec.policies):
            if policy.name in self._hosted:
                try:
                    make_policy(policy.factory, policy.params, *self._spaces, seed=self.spec.seed)
                except Exception as exc:  # noqa: BLE001 - user code: report it, naming the field
                    raise InvalidSpec(f"spec.policies[{pi}].factory: policy {policy.name!r} could not be built: {exc}") from None

    # ---- the run -----------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        """Play every episode of the plan once; the report's episodes, leaderboard and timings."""
        try:
            return self._run()
        except BaseException as exc:
            self._failure = exc
            raise

    def _run(self) -> RunOutcome:
        import ray

        started = time.monotonic()
        records = self._store.records()
        resumable = self._store.checkpoints()
        todo = deque(sorted(resumable) + [m.index for m in self._matches if m.index not in records and m.index not in resumable])
        if records or resumable:
            log.info("%s: resuming, %d episodes already counted, %d from a checkpoint", self.evaluation, len(records), len(resumable))
        self._emit_progress()
        while todo or any(s.ref is not None for s in self._slots):
            for slot in self._slots:
                if slot.ref is None and todo:
                    self._start_episode(slot, self._matches[todo.popleft()], resumable)
            busy = {s.ref: s for s in self._slots if s.ref is not None}
            ready, _ = ray.wait(list(busy), num_returns=1, timeout=0.2)
            if self._failure is not None:
                raise self._failure
            for ref in ready:
                self._finish_chunk(busy[ref])
        wall = time.monotonic() - started
        return self._report(wall)

    def _task(self, slot: Slot, match: Match, start_step: int) -> EpisodeTask:
        spec = self.spec
        agents = assign_agents(spec, match, self._agents)
        layout = shard_layout(agents, spec.execution.agents_per_shard, self._hosted)
        index = {p: i for i, p in enumerate(spec.policy_names)}
        parts = tuple(
            ShardPart(
                name=shard_name(self.evaluation, s.policy, slot.index),
                handle=None,
                policy=s.policy,
                agent_indices=s.agent_indices,
                seed=shard_seed(match.seed, index[s.policy], s.shard),
                factory=spec.policies[index[s.policy]].factory,
                params=spec.policies[index[s.policy]].params,
            )
            if s.policy in self._hosted
            else ShardPart(
                name=slot.shards[(s.policy, s.shard)],
                handle=self._table.handle(slot.shards[(s.policy, s.shard)]),
                policy=s.policy,
                agent_indices=s.agent_indices,
                seed=shard_seed(match.seed, index[s.policy], s.shard),
            )
            for s in layout
        )
        interval = spec.checkpoint.interval_steps
        return EpisodeTask(
            episode=match.index,
            seed=match.seed,
            pairing=match.pairing_label(),
            policy_agents={p: tuple(v) for p, v in agents.items()},
            shards=parts,
            start_step=start_step,
            stop_at=(start_step // interval + 1) * interval,
        )

    def _start_episode(self, slot: Slot, match: Match, resumable: dict[int, EpisodeCheckpoint]) -> None:
        checkpoint = resumable.pop(match.index, None)
        if checkpoint is None:
            self._dispatch(slot, self._task(slot, match, 0))
        else:
            self._restore(slot, match.index, checkpoint)

    def _dispatch(self, slot: Slot, task: EpisodeTask) -> None:
        slot.task = task
        slot.ref = self._table.handle(slot.env).run.remote(task)

    def _restore(self, slot: Slot, episode: int, checkpoint: EpisodeCheckpoint | None) -> None:
        """Put the slot's environment and shards back to `checkpoint` (or the episode's start), then go on."""
        import ray

        match = self._matches[episode]
        task = self._task(slot, match, checkpoint.step if checkpoint else 0)
        env = self._table.handle(slot.env)
        if checkpoint is None:
            ray.get(env.begin.remote(task))
        else:
            ray.get(env.restore.remote(task, checkpoint))
        self._dispatch(slot, task)

    def _finish_chunk(self, slot: Slot) -> None:
        import ray

        task, ref = slot.task, slot.ref
        slot.ref = None
        assert task is not None
        try:
            result: ChunkResult = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - sorted below
            if not is_actor_loss(exc):
                raise EvaluationFailed(f"episode {task.episode} failed: {_last_line(exc)}") from None
            self._recover(slot, task, exc)
            return
        with self._lock:
            self._pending.latencies_s.extend(result.latencies_s)
            self._pending.agent_steps += result.agent_steps
            self._latencies.extend(result.latencies_s)
            self._stepped_agent_steps += result.agent_steps
            if len(self._latencies) > MAX_LATENCY_SAMPLES:
                self._latencies = self._latencies[::2]
        # Actors of this slot replaced by a repair while this chunk ran on the old ones: the chunk
        # is good, but the replacements hold no state yet. Holding the repair lock until the next
        # chunk is dispatched means that chunk either uses the old handles (and fails into
        # _recover) or sees the repair here, never unrestored replacements.
        with self._repair_lock:
            counted = self._finish_good_chunk(slot, task, result)
        self._emit_progress(counted)

    def _finish_good_chunk(self, slot: Slot, task: EpisodeTask, result: ChunkResult) -> EpisodeRecord | None:
        """Save what the chunk produced and go on; the record when it counted an episode."""
        counted = None
        with self._lock:
            repaired = {n: self._repaired.pop(n) for n in (slot.env, *slot.shards.values()) if n in self._repaired}
        if result.done:
            assert result.record is not None
            if result.episode not in self._store.records():  # exactly once, whatever was replayed
                counted = EpisodeRecord.model_validate(result.record)
                self._store.save_record(counted)
            self._store.drop_checkpoint(result.episode)
            self._inflight_steps.pop(slot.index, None)
            slot.task = None
            if repaired:  # the next episode begins every actor afresh
                self._record_recovery(set(repaired), repaired, min(repaired.values()), None, None)
        else:
            assert result.checkpoint is not None
            self._store.save_checkpoint(result.checkpoint)
            self._inflight_steps[slot.index] = result.checkpoint.agent_steps
            if repaired:
                try:
                    self._restore(slot, task.episode, result.checkpoint)
                except Exception as exc:  # noqa: BLE001 - lost again while restoring
                    if not is_actor_loss(exc):
                        raise
                    self._recover(slot, task, exc)
                self._record_recovery(set(repaired), repaired, min(repaired.values()), task.episode, result.checkpoint)
            else:
                self._dispatch(slot, self._task(slot, self._matches[task.episode], result.step))
        return counted

    # ---- recovery ----------------------------------------------------------------------------

    def _recover(self, slot: Slot, task: EpisodeTask, error: BaseException) -> None:
        """Bring the slot's actors back (Ray's restart, or ours after RAY_RESTART_WAIT_S), restore, go on."""
        from ray import exceptions as rex

        detected = time.monotonic()
        names = [slot.env, *slot.shards.values()]
        log.warning("%s: episode %d lost an actor (%s); recovering", self.evaluation, task.episode, _last_line(error))
        restarted: set[str] = set()
        while True:
            answers = self._table.ping(names)
            waiting, dead = [], {}
            for name, (handle, answer) in answers.items():
                if isinstance(answer, ActorInfo):
                    if self._table.note_incarnation(name, answer):
                        restarted.add(name)
                elif isinstance(answer, rex.ActorDiedError):
                    dead[name] = handle  # Ray will not restart it (budget spent or killed)
                else:
                    waiting.append(name)
            if time.monotonic() - detected > RAY_RESTART_WAIT_S:
                dead.update({n: answers[n][0] for n in waiting})
                waiting = []
            if dead:
                restarted.update(self._table.replace(dead, expected=dead))
            if not waiting and not dead:
                break
            if self._failure is not None:
                raise self._failure
            time.sleep(0.1)
        # Under the repair lock: a repair either finished before (its replacements are restored
        # here) or starts after (it kills what was restored, and the chunk fails back into here).
        with self._repair_lock:
            with self._lock:
                repaired = {n: self._repaired.pop(n) for n in names if n in self._repaired}
            restarted.update(repaired)
            start = min([detected, *repaired.values()])
            checkpoint = self._store.checkpoints().get(task.episode)
            try:
                self._restore(slot, task.episode, checkpoint)
            except Exception as exc:  # noqa: BLE001 - lost again while restoring: go round once more
                if not is_actor_loss(exc):
                    raise
                self._recover(slot, task, exc)
        if restarted:
            self._record_recovery(restarted, repaired, start, task.episode, checkpoint)

    def _record_recovery(
        self,
        restarted: set[str],
        repaired: dict[str, float],
        start: float,
        episode: int | None,
        checkpoint: EpisodeCheckpoint | None,
    ) -> None:
        """`episode`: the one that was in flight and resumes from `checkpoint` (None: between episodes)."""
        recovery = Recovery(
            time=now_rfc3339(),
            reason="NodeLost" if repaired else "ActorDied",
            actors_restarted=sorted(restarted),
            nodes_lost=sorted({node for name in restarted if (node := self._table.lost_on(name))}),
            episode=episode,
            resumed_from_step=None if episode is None else (checkpoint.step if checkpoint else 0),
            seconds=round(time.monotonic() - start, 3),
        )
        with self._lock:
            self._recoveries.append(recovery)
            self._pending.recoveries.append(recovery)
            self._pending.restarted.extend(sorted(restarted))
        log.warning(
            "%s: recovered %s (lost with node %s) in %.2f s; %s",
            self.evaluation, ", ".join(sorted(restarted)), ", ".join(recovery.nodes_lost) or "?", recovery.seconds,
            "between episodes" if episode is None else f"episode {episode} resumes from step {recovery.resumed_from_step}",
        )  # fmt: skip

    def repair(self, lost_node_ids: list[str] | None = None) -> list[str]:
        """Replace now every actor on `lost_node_ids` (None: every actor failing a short ping).

        Idempotent: repairs are serialised, and an actor already replaced no longer lives on a
        lost node (nor fails its ping), so a second call replaces nothing twice.
        """
        with self._repair_lock:
            began = time.monotonic()
            if lost_node_ids:
                names = self._table.on_nodes(lost_node_ids)
            else:
                answers = self._table.ping(self._table.names())
                names = [n for n, (_, a) in answers.items() if not isinstance(a, ActorInfo)]
            if not names:
                return []
            log.warning("%s: repair requested; replacing %s", self.evaluation, ", ".join(names))
            with self._lock:  # before the kill: the failed chunk it causes must see the mark
                for name in names:
                    self._repaired.setdefault(name, began)
            try:
                return self._table.replace(names)
            except BaseException as exc:
                self._failure = exc
                raise

    # ---- what the driver reads ---------------------------------------------------------------

    def _progress(self) -> Progress:
        records = self._store.records()
        steps = sum(r.agent_steps for r in records.values()) + sum(self._inflight_steps.values())
        return Progress(episodes_completed=len(records), episodes_total=len(self._matches), agent_steps=steps)

    def _emit_progress(self, counted: EpisodeRecord | None = None) -> None:
        """Queue a progress snapshot, with the episode it counted: one poll sees both or neither."""
        event = ProgressEvent(progress=self._progress(), counted=counted)
        with self._lock:
            self._pending.events.append(event)

    def poll(self) -> PollBatch:
        """What happened since the last poll (progress and counted episodes, step stats, restarts)."""
        with self._lock:
            pending, self._pending = self._pending, PollBatch()
        pending.actors = len(self._table.names())
        return pending

    def actor_names(self) -> list[str]:
        return self._table.names()

    def ping(self) -> str:
        return self.evaluation

    def _report(self, wall_seconds: float) -> RunOutcome:
        from swarm_arena.arena.ratings import EpisodeOutcome, leaderboard

        records = [self._store.records()[i] for i in sorted(self._store.records())]
        outcomes = [EpisodeOutcome(episode=r.episode, returns=r.returns) for r in records]
        board = leaderboard(self.spec.rating.method, self.spec.policy_names, outcomes, self.spec.seed)
        latency = None
        if self._latencies:
            p50, p99 = np.percentile(np.asarray(self._latencies) * 1000.0, [50, 99])
            latency = StepLatency(p50=round(float(p50), 4), p99=round(float(p99), 4))
        return RunOutcome(
            episodes=records,
            episodes_total=len(self._matches),
            leaderboard=board,
            step_latency_ms=latency,
            agent_steps=sum(r.agent_steps for r in records),
            agent_steps_per_second=self._stepped_agent_steps / wall_seconds if wall_seconds > 0 else None,
            recoveries=[*self._resume.recoveries, *self._recoveries],
        )

    # ---- teardown ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Kill every actor of the run and free the placement group."""
        from ray.util.placement_group import remove_placement_group

        self._table.kill_all()
        if self._placement_group is not None:
            remove_placement_group(self._placement_group)
            self._placement_group = None


def _last_line(error: BaseException) -> str:
    cause = getattr(error, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else error)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
