"""Driving the episodes: chunks on environment slots, checkpoints, and recovery of lost actors.

The coordinator's `run` thread waits for the slots' chunks and hands each slot's work to a
thread of that slot's own: finishing a chunk (the durable checkpoint write, retried through a
storage hiccup), dispatching the next one, and, when a chunk failed because an actor was lost,
bringing the slot's actors back (revival.py decides, ping by ping) and restoring the episode from
its last checkpoint. So one slot's trouble (a revival that waits minutes for a node, a blocking
restore, a slow write) never stalls the others: they go on finishing episodes meanwhile. A repair (another thread, see coordinator.py) only swaps actors in the
table; it never waits for this thread, nor this thread for it. They meet through each actor's
generation: a slot remembers the generations that hold its state, and before every chunk it
checks them, restoring first when an actor behind a name is new. No lock is held across a
remote call.

Chunks ahead: when a slot dispatches a chunk that does not reach the episode's last step, it
queues the chunk after it on the same environment actor at once (`Slot.ahead`; an actor runs its
calls in the order they were sent). At the boundary the environment actor returns its checkpoint
and goes straight on with that chunk, so the round trip to the coordinator, the store write
(durable: encode, write, fsync) and the dispatch are off the step path. The slot's thread then
stores the checkpoint and, only once it is stored, queues the chunk after next: at most one
checkpoint is ever waiting to be stored, a checkpoint is used (restores, progress) only once
stored, and results are taken in order. A chunk ahead is promoted only if every actor it was sent
to is still the one in the table (no repair, restart or regroup since); otherwise, and whenever
its predecessor failed or ended the episode, it is dropped: it either fails, changes nothing (an
episode that already ended, a start that does not match) or steps state that the restore queued
behind it on the same actor puts back to the stored checkpoint, so recovery stays exact.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.api.status import Recovery
from swarm_arena.arena.checkpoint import is_whole
from swarm_arena.arena.episode import EpisodeCheckpoint, EpisodeTask, ShardPart
from swarm_arena.arena.errors import EvaluationFailed
from swarm_arena.arena.matchmaking import Match, assign_agents, shard_layout, team_members
from swarm_arena.arena.naming import shard_name
from swarm_arena.arena.recording.recorder import EpisodeRecorder
from swarm_arena.arena.recovery import RAY_RESTART_WAIT_S, REPLACEMENT_START_WAIT_S, ActorTable, Noted, is_actor_loss
from swarm_arena.arena.revival import Answer, Revival
from swarm_arena.arena.run_ledger import RunLedger
from swarm_arena.arena.run_setup import RunLayout, Slot
from swarm_arena.arena.shard import ActorInfo, ShardStateLost

if TYPE_CHECKING:
    from swarm_arena.arena.scoring.stopping import StoppingRule

log = logging.getLogger(__name__)

REVIVAL_PING_INTERVAL_S = 0.1
# While a slot revives, once a replacement has been silent this long, the slot's shards outside
# their placement group whose bundles Ray placed again are re-created in them. Not at once: a
# start that is merely slow (a loaded node) would be thrown away and paid again.
INTO_BUNDLE_AFTER_S = 10.0


def shard_seed(episode_seed: int, policy_index: int, shard: int) -> int:
    """The seed of one shard in one episode: depends on the episode, never on which actor plays it."""
    sequence = np.random.SeedSequence(entropy=episode_seed, spawn_key=(policy_index, shard))
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RepairMarks:
    """Actors a repair replaced, with when it began, until the slot that restores them records it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: dict[str, float] = {}

    def mark(self, names: list[str], began: float) -> None:
        with self._lock:
            for name in names:
                self._marks.setdefault(name, began)

    def take(self, names: list[str]) -> dict[str, float]:
        with self._lock:
            return {n: self._marks.pop(n) for n in names if n in self._marks}


class EpisodeScheduler:
    def __init__(
        self,
        spec: SwarmEvaluationSpec,
        evaluation: str,
        layout: RunLayout,
        table: ActorTable,
        ledger: RunLedger,
        marks: RepairMarks,
        failure: Callable[[], BaseException | None],
        recorder: EpisodeRecorder | None = None,
    ) -> None:
        self.spec = spec
        self.evaluation = evaluation
        self.layout = layout
        self.table = table
        self.ledger = ledger
        self.marks = marks
        self._failure = failure
        self.recorder = recorder
        self._policy_index = {p: i for i, p in enumerate(spec.policy_names)}
        self._team_agents = {t: tuple(v) for t, v in team_members(spec, layout.agents).items()}

    # ---- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        """Play every episode of the plan not counted yet; those with a checkpoint continue from it."""
        import ray

        from swarm_arena.arena.scoring.stopping import StoppingRule

        store = self.ledger.store
        records, resumable = store.records(), store.checkpoints()
        rule = StoppingRule(self.spec) if self.spec.stopping is not None else None
        order = rule.scheduled() if rule else [m.index for m in self.layout.matches]
        unrecorded = self._unrecorded(records, resumable)  # counted, but their recordings are gone: again
        todo = deque(sorted(resumable) + [
            i for i in order if (i not in records or i in unrecorded) and i not in resumable
        ])  # fmt: skip
        if records or resumable:
            log.info("%s: resuming, %d episodes already counted, %d from a checkpoint", self.evaluation, len(records), len(resumable))
        self._stop_if_decided(rule, todo)
        self.ledger.emit_progress()
        slots = self.layout.slots
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(slots), thread_name_prefix="slot")
        work: dict[int, concurrent.futures.Future[None]] = {}  # slot index -> its work in flight
        try:
            while todo or work or any(s.ref is not None for s in slots):
                for slot in slots:
                    if slot.index not in work and slot.ref is None and todo:
                        episode = todo.popleft()
                        work[slot.index] = pool.submit(self._resume, slot, episode, resumable.pop(episode, None))
                stepping = {s.ref: s for s in slots if s.ref is not None and s.index not in work}
                if stepping:
                    ready, _ = ray.wait(list(stepping), num_returns=1, timeout=0.05 if work else 0.2)
                else:
                    ready = []
                    first = concurrent.futures.FIRST_COMPLETED
                    concurrent.futures.wait(list(work.values()), timeout=0.2, return_when=first)
                self._raise_failure()
                for index, future in list(work.items()):
                    if future.done():
                        del work[index]
                        future.result()  # a slot's failure fails the run
                        self._stop_if_decided(rule, todo)
                for ref in ready:
                    slot = stepping[ref]
                    work[slot.index] = pool.submit(self._finish_chunk, slot)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        if rule is not None:
            rule.finish(store.records())
            self.ledger.stopping = rule

    def _stop_if_decided(self, rule: StoppingRule | None, todo: deque[int]) -> None:
        """spec.stopping: once a look decides, nothing more is dispatched (episodes in flight finish and count)."""
        if rule is None or not todo or rule.decision is not None or rule.advance(self.ledger.store.records()) is None:
            return
        assert rule.decision is not None
        log.info("%s: stopping early, %s; %d episodes left unplayed", self.evaluation, rule.decision.detail, len(todo))
        todo.clear()

    def _unrecorded(self, records: dict[int, Any], resumable: dict[int, EpisodeCheckpoint]) -> set[int]:
        """Recorded episodes whose steps this run does not hold: those resumable from a checkpoint
        replay from their start instead (their earlier chunks were recorded by a lost coordinator),
        and the counted ones whose files are missing are played again (counted once). Returns the latter."""
        if self.recorder is None:
            return set()
        for match in self.layout.matches:
            if match.index in resumable and self.recorder.wants(match):
                del resumable[match.index]
                self.ledger.store.drop_checkpoint(match.index)
        return self.recorder.unwritten(self.layout.matches, set(records))

    def _resume(self, slot: Slot, episode: int, checkpoint: EpisodeCheckpoint | None) -> None:
        """Start `episode`, from `checkpoint` when the store had one. A stored checkpoint that the
        actors refuse to restore (it decoded, but does not fit: a corrupted or foreign file) is
        dropped with a warning and the episode plays from its start, which gives the same numbers."""
        try:
            self._go_on(slot, episode, checkpoint)
        except Exception as exc:  # noqa: BLE001 - sorted below
            if is_actor_loss(exc):
                self._recover(slot, episode, exc)
                return
            if checkpoint is None:
                raise
            log.warning(
                "%s: the stored checkpoint of episode %d (step %d) cannot be restored, ignored; the episode "
                "replays from the start: %s", self.evaluation, episode, checkpoint.step, _last_line(exc),
            )  # fmt: skip
            slot.holds = None
            self.ledger.store.drop_checkpoint(episode)
            self._go_on(slot, episode, None)

    def _raise_failure(self) -> None:
        failure = self._failure() or (self.recorder.failure() if self.recorder else None)
        if failure is not None:
            raise failure

    # ---- chunks ------------------------------------------------------------------------------

    def _task(self, slot: Slot, match: Match, start_step: int) -> tuple[EpisodeTask, Any, dict[str, int]]:
        """The chunk's task, the environment actor's handle, and the generation of every actor it uses."""
        spec = self.spec
        agents = assign_agents(spec, match, self.layout.agents)
        layout = shard_layout(agents, spec.execution.agents_per_shard, self.layout.hosted)
        env, env_generation = self.table.handle_and_generation(slot.env)
        generations = {slot.env: env_generation}
        parts = []
        for s in layout:
            index = self._policy_index[s.policy]
            seed = shard_seed(match.seed, index, s.shard)
            if s.policy in self.layout.hosted:
                policy = spec.policies[index]
                parts.append(ShardPart(
                    name=shard_name(self.evaluation, s.policy, slot.index), handle=None, policy=s.policy,
                    agent_indices=s.agent_indices, seed=seed, factory=policy.factory, params=policy.params,
                    shard=s.shard,
                ))  # fmt: skip
                continue
            name = slot.shards[(s.policy, s.shard)]
            handle, generations[name] = self.table.handle_and_generation(name)
            parts.append(ShardPart(
                name=name, handle=handle, policy=s.policy, agent_indices=s.agent_indices, seed=seed, shard=s.shard
            ))  # fmt: skip
        interval = spec.checkpoint.interval_steps
        task = EpisodeTask(
            episode=match.index,
            seed=match.seed,
            pairing=match.pairing_label(),
            policy_agents={p: tuple(v) for p, v in agents.items()},
            shards=tuple(parts),
            start_step=start_step,
            stop_at=(start_step // interval + 1) * interval,
            team_agents=self._team_agents,
            recording=None if self.recorder is None else self.recorder.request(match),
        )
        return task, env, generations

    def _current(self, generations: dict[str, int]) -> bool:
        return all(self.table.generation(name) == g for name, g in generations.items())

    def _restarted_in_place(self, slot: Slot) -> set[str]:
        """The actors of the slot a ping finds in a new incarnation (each counted as a restart)."""
        answers = self.table.ping(slot.actors)
        return {
            name
            for name, (handle, answer) in answers.items()  # every one noted: no short-circuit
            if isinstance(answer, ActorInfo) and self.table.note_incarnation(name, handle, answer) is Noted.RESTARTED
        }

    def _go_on(
        self, slot: Slot, episode: int, checkpoint: EpisodeCheckpoint | None, *, restore: bool = False
    ) -> dict[str, float]:
        """Dispatch the next chunk of `episode` from `checkpoint` (None: its start), first putting that
        state into the slot's actors unless they hold it. Returns the repair marks it consumed (actors
        a repair replaced, restored here); raises an actor loss met while restoring."""
        import ray

        start = checkpoint.step if checkpoint else 0
        match = self.layout.matches[episode]
        consumed: dict[str, float] = {}
        while True:
            task, env, generations = self._task(slot, match, start)
            holds = slot.holds == (episode, start) and slot.state_generations == generations
            # A fresh start needs no restore: the environment actor begins the episode (and every
            # shard) itself unless it already holds that episode's start.
            fresh = checkpoint is None and slot.holds != (episode, 0)
            if not restore and (holds or fresh):
                break
            if self.table.starting(slot.actors):
                # Replacements (a repair's) that have not started: a restore would wait on them
                # without a deadline. Bring them up first, as after any loss.
                now = time.monotonic()
                self._revive(slot, Revival(tuple(slot.actors), now, RAY_RESTART_WAIT_S, REPLACEMENT_START_WAIT_S), set())
                continue  # the table may have changed meanwhile: build the task again
            consumed.update(self.marks.take(slot.actors))
            slot.holds = None
            if checkpoint is None:
                ray.get(env.begin.remote(task))
            else:
                if not is_whole(checkpoint):  # a chunk's own: its earlier actions are in the store
                    checkpoint = self.ledger.store.checkpoint(episode)
                    if checkpoint is None or checkpoint.step != start:
                        raise EvaluationFailed(f"episode {episode}: its checkpoint of step {start} is not in the store")
                ray.get(env.restore.remote(task, checkpoint))
            slot.holds, slot.state_generations, restore = (episode, start), generations, False
            if self._current(generations):
                break
            # A repair swapped an actor while we restored: the new one holds nothing yet.
        slot.task, slot.dispatched = task, generations
        slot.ref = env.run.remote(task)
        self._queue_ahead(slot, match, env, task, generations)
        return consumed

    def _queue_ahead(self, slot: Slot, match: Match, env: Any, task: EpisodeTask, generations: dict[str, int]) -> None:
        """Queue the chunk after `task` behind it on `env` (see "chunks ahead"), unless `task` runs to
        the episode's last step or an actor was swapped since `generations` were taken."""
        slot.ahead = None
        if task.stop_at >= self.spec.environment.max_steps:
            return
        ahead, _, ahead_generations = self._task(slot, match, task.stop_at)
        if ahead_generations != generations:
            return  # a repair swapped an actor meanwhile: the slot restores after this chunk anyway
        slot.ahead = (ahead, env.run.remote(ahead))

    def _promote_ahead(self, slot: Slot, episode: int, generations: dict[str, int]) -> bool:
        """Make the chunk queued ahead the one in flight, and queue the next; False (it is dropped)
        when there is none for `episode` or an actor it was sent to has been swapped since."""
        ahead, slot.ahead = slot.ahead, None
        if ahead is None or ahead[0].episode != episode or not self._current(generations):
            return False
        task, ref = ahead
        env, _ = self.table.handle_and_generation(slot.env)
        slot.task, slot.ref, slot.dispatched = task, ref, generations
        self._queue_ahead(slot, self.layout.matches[episode], env, task, generations)
        return True

    def _finish_chunk(self, slot: Slot) -> None:
        import ray

        task, ref, generations = slot.task, slot.ref, slot.dispatched
        slot.ref = None
        assert task is not None
        try:
            result = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - sorted below
            slot.holds, slot.ahead = None, None  # the chunk ahead fails, or is put back by the restore
            # An error from an actor that was swapped by a repair, or restarted in place by Ray,
            # while the chunk ran (it held no state) is a loss too, not a bug in the episode; so is
            # a shard refusing to act on state it no longer holds (restarted while idle).
            lost = is_actor_loss(exc) or _shard_state_lost(exc) or not self._current(generations)
            restarted = set() if lost else self._restarted_in_place(slot)
            if not lost and not restarted:
                raise EvaluationFailed(f"episode {task.episode} failed: {_last_line(exc)}") from None
            self._recover(slot, task.episode, exc, restarted)
            return
        self.ledger.chunk_done(result)
        if self.recorder is not None and result.recording is not None:
            self.recorder.add(task.episode, result.recording)
        slot.holds, slot.state_generations = (task.episode, result.step), generations
        counted = None
        if result.done:
            assert result.record is not None
            record = EpisodeRecord.model_validate(result.record)
            if self.recorder is not None and task.recording is not None:
                self.recorder.finish(self.layout.matches[task.episode], task.policy_agents, result.record)
            if self.ledger.count(record):  # exactly once, whatever was replayed
                counted = record
            self.ledger.store.drop_checkpoint(result.episode)
            self.ledger.in_flight(slot.index, None)
            slot.task, slot.ahead = None, None  # a chunk ahead of an episode that ended early changes nothing
            if not self._current(generations):  # the next episode begins every actor afresh
                repaired = self.marks.take(slot.actors)
                if repaired:
                    self._record(set(repaired), repaired, min(repaired.values()), None, None)
            self._regroup(slot)
        else:
            assert result.checkpoint is not None
            self.ledger.store.save_checkpoint(result.checkpoint)
            self.ledger.in_flight(slot.index, result.checkpoint.agent_steps)
            self._regroup(slot)  # the slot restores what moved from the checkpoint just taken
            if self._promote_ahead(slot, task.episode, generations):
                self.ledger.emit_progress(counted)
                return
            # The chunk ahead (if any) was dropped: it may have stepped on, so restore, whatever the slot held.
            slot.holds = None
            try:
                repaired = self._go_on(slot, task.episode, result.checkpoint)
            except Exception as exc:  # noqa: BLE001 - lost while restoring after a repair
                if not is_actor_loss(exc):
                    raise
                self._recover(slot, task.episode, exc)
            else:
                if repaired:
                    self._record(set(repaired), repaired, min(repaired.values()), task.episode, result.checkpoint)
        self.ledger.emit_progress(counted)

    def _regroup(self, slot: Slot) -> None:
        """At every checkpoint, between two episodes and while a revival waits on a silent
        replacement, move shards a fast repair started outside
        the placement group back into their bundles, once Ray has placed those bundles again on a
        live node (not the lost one): STRICT_PACK / STRICT_SPREAD hold again from that checkpoint
        on, not only from the next episode. Not a loss (no restart counted); at a checkpoint the
        moved shard is restored from it, as after a repair."""
        for name in slot.shards.values():
            if self.table.bundle_placed(name) and self.table.regroup(name):
                log.info("%s: %s is back in its placement-group bundle", self.evaluation, name)

    # ---- recovery ----------------------------------------------------------------------------

    def _recover(self, slot: Slot, episode: int, error: BaseException, restarted: set[str] | None = None) -> None:
        """Bring the slot's actors back, restore `episode` from its last checkpoint, go on; one
        recovery is recorded however often the actors are lost again on the way. `restarted`:
        actors already found restarted in place (their new incarnation noted)."""
        detected = time.monotonic()
        log.warning("%s: episode %d lost an actor (%s); recovering", self.evaluation, episode, _last_line(error))
        revival = Revival(tuple(slot.actors), detected, RAY_RESTART_WAIT_S, REPLACEMENT_START_WAIT_S)
        restarted = set(restarted or ())
        repaired: dict[str, float] = {}
        while True:
            self._revive(slot, revival, restarted)
            checkpoint = self.ledger.store.checkpoint(episode)
            try:
                repaired.update(self._go_on(slot, episode, checkpoint, restore=True))
                break
            except Exception as exc:  # noqa: BLE001 - lost again while restoring: round once more
                if not is_actor_loss(exc):
                    raise
                log.warning("%s: lost an actor again while restoring episode %d (%s)", self.evaluation, episode, _last_line(exc))
        restarted.update(repaired)
        if restarted:
            self._record(restarted, repaired, min([detected, *repaired.values()]), episode, checkpoint)

    def _revive(self, slot: Slot, revival: Revival, restarted: set[str]) -> None:
        """Ping the slot's actors until every one answers, re-creating those revival says to."""
        from ray import exceptions as rex

        while True:
            # Replacements a repair (another thread) or a move into the placement group started get
            # their start window from then, never Ray's restart wait: replacing them again would only
            # cost restarts, and a slow start is not a loss.
            revival.replaced_at.update(self.table.starting(slot.actors))
            answers = self.table.ping(slot.actors)
            kinds: dict[str, Answer] = {}
            for name, (handle, answer) in answers.items():
                if isinstance(answer, ActorInfo):
                    noted = self.table.note_incarnation(name, handle, answer)
                    if noted is Noted.RESTARTED:
                        restarted.add(name)  # Ray restarted it in place
                    # A stale answer (a repair swapped the actor meanwhile) says nothing of the new one.
                    kinds[name] = Answer.SILENT if noted is Noted.STALE else Answer.ALIVE
                elif isinstance(answer, rex.ActorDiedError):
                    kinds[name] = Answer.DEAD  # Ray will not restart it (budget spent, or killed)
                else:
                    kinds[name] = Answer.SILENT
            now = time.monotonic()
            # A replacement silent this long may wait for resources that a bundle Ray placed again
            # reserves, or for the only free CPU, held by a shard that started outside its bundle
            # (the environment actor has no bundle): move the slot's shards into their bundles.
            # Nothing of the slot is restored while it revives, so no state is thrown away.
            if any(
                k is Answer.SILENT and now - revival.replaced_at.get(n, now) >= INTO_BUNDLE_AFTER_S
                for n, k in kinds.items()
            ):
                self._regroup(slot)
            decision = revival.decide(kinds, time.monotonic())
            if decision.replace:
                done = self.table.replace(decision.replace, expected={n: answers[n][0] for n in decision.replace})
                revival.replaced(done, time.monotonic())
                restarted.update(done)
            if decision.done:
                return
            self._raise_failure()
            time.sleep(REVIVAL_PING_INTERVAL_S)

    def _record(
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
            nodes_lost=sorted({node for name in restarted if (node := self.table.lost_on(name))}),
            episode=episode,
            resumed_from_step=None if episode is None else (checkpoint.step if checkpoint else 0),
            seconds=round(time.monotonic() - start, 3),
        )
        self.ledger.recovered(recovery)
        log.warning(
            "%s: recovered %s (lost with node %s) in %.2f s; %s",
            self.evaluation, ", ".join(recovery.actors_restarted), ", ".join(recovery.nodes_lost) or "?",
            recovery.seconds,
            "between episodes" if episode is None else f"episode {episode} resumes from step {recovery.resumed_from_step}",
        )  # fmt: skip


def _shard_state_lost(error: BaseException | None) -> bool:
    """Whether `error` is, or was caused by, a shard refusing state it does not hold (a chunk's error
    wraps the shard's as the `cause` of a RayTaskError, once per actor it crossed)."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, ShardStateLost):
            return True
        cause = getattr(error, "cause", None)
        error = cause if isinstance(cause, BaseException) and cause is not error else None
        seen += 1
    return False


def _last_line(error: BaseException) -> str:
    cause = getattr(error, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else error)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
