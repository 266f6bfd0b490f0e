"""Keeping the named actors of a run alive: liveness, restarts under the same name, repair.

Two ways back from a lost node, both ending in "restore from the last checkpoint":

- automatic: Ray notices the node is gone (its health checks, ~15 s by default), restarts the
  actor in place (`max_restarts`, same placement-group bundle), and the coordinator restores it
  the moment it answers a ping again with a new incarnation id;
- fast repair: someone who *knows* the node is gone (the operator watching Kubernetes) calls
  `request_repair`; the coordinator kills the actors that lived there (`ray.kill(no_restart=True)`,
  which works with the raylet already gone) and re-creates them at once under the same name,
  outside the placement group, instead of waiting for Ray's detection.

Either way a named actor is replaced at most `faultTolerance.maxActorRestarts` times; one more
loss fails the run with an error that names the actor and the field.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from swarm_arena.arena.connection import join_cluster
from swarm_arena.arena.errors import EvaluationFailed, EvaluationNotRunning, InvalidSpec, RepairTimedOut
from swarm_arena.arena.naming import RAY_NAMESPACE, coordinator_name
from swarm_arena.arena.shard import ActorInfo

# How long one liveness ping may take before the actor counts as not answering.
PING_TIMEOUT_S = 1.0
# Pings run in a concurrency group of their own: an actor busy in a long chunk still answers at once
# (busy is not lost), while calls in the default group keep running one at a time.
LIVENESS_GROUP = "liveness"
# How long a lost actor may take to come back through Ray's own restart before we re-create it.
RAY_RESTART_WAIT_S = 90.0
# How long the run's first actors may take to answer their first ping.
START_TIMEOUT_S = 60.0
# How long a replacement (re-created by a repair or a recovery, or moved back into its placement
# group) may take to answer its first ping. Generous: it may wait for a node to come back (KubeRay
# re-creating a deleted worker pod, an autoscaler adding one) and then for its image and imports.
REPLACEMENT_START_WAIT_S = 180.0
# The label Ray gives every node, its node id: replacements select nodes *not* reported lost.
NODE_ID_LABEL = "ray.io/node-id"


__all__ = [
    "ActorRecipe", "ActorTable", "EvaluationFailed", "EvaluationNotRunning", "InvalidSpec", "Noted",
    "RepairTimedOut", "request_repair",
]  # fmt: skip


class Noted(Enum):
    """What a ping answer told the table (`ActorTable.note_incarnation`)."""

    SAME = "same"  # the incarnation it knew (or the first answer of a new instance)
    RESTARTED = "restarted"  # Ray restarted it in place: its state is gone
    STALE = "stale"  # the answer came from an instance the name no longer refers to


@dataclass
class ActorRecipe:
    """How to (re-)create one named actor."""

    name: str
    cls: Any  # the Ray actor class, from remote_actor_class
    args: tuple[Any, ...]
    options: dict[str, Any]
    placement: dict[str, Any] = field(default_factory=dict)  # scheduling_strategy for the first start
    field_path: str = ""  # the spec field that decides what this actor builds, for errors


@dataclass
class ActorEntry:
    recipe: ActorRecipe
    handle: Any
    info: ActorInfo | None = None
    restarts: int = 0
    lost_on: str | None = None  # the node its last lost incarnation lived on
    generation: int = 0  # +1 whenever a new instance holds no state of the old one (replaced or restarted)
    replacing: bool = False  # a replace() of it is under way
    in_group: bool = True  # False while a replacement runs outside its placement-group bundle
    started_at: float | None = None  # monotonic time a replacement of ours was started (None: the first)


def remote_actor_class(cls: type) -> Any:
    """`cls` as a Ray actor class whose `ping` can answer while another call runs (see `ping_ref`)."""
    import ray

    return ray.remote(concurrency_groups={LIVENESS_GROUP: 1})(cls)


def ping_ref(handle: Any) -> Any:
    """Call `ping` in the liveness group (the actor class from `remote_actor_class`)."""
    return handle.ping.options(concurrency_group=LIVENESS_GROUP).remote()


def is_actor_loss(error: BaseException) -> bool:
    """Whether `error` means an actor (or its node) was lost, as opposed to a bug in user code."""
    from ray import exceptions as rex

    lost = (rex.RayActorError, rex.ObjectLostError, rex.OwnerDiedError, rex.WorkerCrashedError, rex.NodeDiedError)
    if isinstance(error, lost):
        return True
    cause = getattr(error, "cause", None)
    return isinstance(error, rex.RayTaskError) and cause is not None and cause is not error and is_actor_loss(cause)


class ActorTable:
    """The named actors of one run, their handles, where they live and how often they were replaced.

    Its lock guards only the table: no remote call, kill or actor start happens under it, so a
    repair never waits behind a recovery (or the other way round). Each entry's `generation`
    changes whenever the actor behind the name lost its state; whoever restores state compares it.
    """

    def __init__(self, max_restarts: int) -> None:
        self.max_restarts = max_restarts
        self._entries: dict[str, ActorEntry] = {}
        self._lock = threading.RLock()
        # Nodes a repair was told are gone. Until Ray's own health checks agree (~15-60 s, longer when
        # a vanished node's packets are dropped rather than refused), Ray still counts their
        # resources as free, and would place a replacement right back on one: it would hang there.
        self._lost_nodes: set[str] = set()

    # ---- creation ----------------------------------------------------------------------------

    def create(self, recipe: ActorRecipe) -> Any:
        handle = self._start(recipe, recipe.placement, self.max_restarts)
        with self._lock:
            self._entries[recipe.name] = ActorEntry(recipe=recipe, handle=handle)
        return handle

    def _start(self, recipe: ActorRecipe, placement: dict[str, Any], max_restarts: int) -> Any:
        deadline = time.monotonic() + 30
        while True:
            try:
                return recipe.cls.options(
                    name=recipe.name,
                    namespace=RAY_NAMESPACE,
                    max_restarts=max_restarts,
                    max_task_retries=0,  # a lost call must surface: the episode rolls back to its checkpoint
                    **recipe.options,
                    **placement,
                ).remote(*recipe.args)
            except ValueError as exc:  # the killed actor's name is released asynchronously
                if "already taken" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def wait_started(self, names: Iterable[str], timeout: float = START_TIMEOUT_S) -> None:
        """Block until every actor in `names` answers; a constructor error fails the run, naming the field."""
        import ray
        from ray import exceptions as rex

        names = list(names)
        refs = {name: ping_ref(self.handle(name)) for name in names}
        try:
            infos = ray.get(list(refs.values()), timeout=timeout)
        except rex.GetTimeoutError:
            raise EvaluationFailed(
                f"actors did not start within {timeout:.0f} s ({', '.join(names[:4])}...); the cluster "
                "lacks the resources they ask for (spec.policies[].resources) or is still scaling up"
            ) from None
        except rex.RayActorError as exc:
            failed = next((n for n, r in refs.items() if _failed(r)), names[0])
            path = self._entries[failed].recipe.field_path
            raise InvalidSpec(f"{path}: actor {failed} could not start: {_root_message(exc)}") from None
        with self._lock:
            for name, info in zip(names, infos, strict=True):
                self._entries[name].info = info

    # ---- queries -----------------------------------------------------------------------------

    def handle(self, name: str) -> Any:
        with self._lock:
            return self._entries[name].handle

    def handle_and_generation(self, name: str) -> tuple[Any, int]:
        with self._lock:
            entry = self._entries[name]
            return entry.handle, entry.generation

    def generation(self, name: str) -> int:
        with self._lock:
            return self._entries[name].generation

    def names(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def restarts(self, name: str) -> int:
        with self._lock:
            return self._entries[name].restarts

    def on_nodes(self, node_ids: Iterable[str]) -> list[str]:
        """Actors whose current instance lives on one of `node_ids` (not those being replaced)."""
        lost = set(node_ids)
        with self._lock:
            return [
                n for n, e in self._entries.items() if not e.replacing and e.info is not None and e.info.node_id in lost
            ]

    def ping(self, names: Iterable[str], timeout: float = PING_TIMEOUT_S) -> dict[str, tuple[Any, ActorInfo | BaseException]]:
        """Each actor's (handle pinged, answer), the answer being the error / timeout when it did not."""
        import ray
        from ray import exceptions as rex

        handles = {name: self.handle(name) for name in names}
        refs = {name: ping_ref(handle) for name, handle in handles.items()}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
        done = set(ready)
        out: dict[str, tuple[Any, ActorInfo | BaseException]] = {}
        for name, ref in refs.items():
            if ref not in done:
                out[name] = (handles[name], rex.GetTimeoutError(f"{name} did not answer a ping within {timeout} s"))
                continue
            try:
                out[name] = (handles[name], ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - reported to the caller as "not alive"
                out[name] = (handles[name], exc)
        return out

    def starting(self, names: Iterable[str]) -> dict[str, float]:
        """Those of `names` that are replacements started by us (a repair, a recovery, a move back
        into the placement group) and have not answered a ping yet -> when each was started."""
        with self._lock:
            return {
                n: e.started_at
                for n in names
                if (e := self._entries[n]).info is None and e.started_at is not None and not e.replacing
            }

    def lost(self, names: Iterable[str] | None = None, timeout: float = PING_TIMEOUT_S) -> list[str]:
        """The actors (of `names`, None: all) that are gone, and only those.

        An actor is lost when Ray says so (its ping fails with an actor error: died, or its worker
        or node is gone), or when its ping goes unanswered and the node its instance lives on is
        no longer alive in Ray's view. An actor that misses a ping on a live node is busy (a long
        call holding the interpreter) or still starting, never lost: killing it would throw away
        a healthy episode. A replacement that has not answered yet is left to whoever started it."""
        import ray
        from ray import exceptions as rex

        answers = self.ping(self.names() if names is None else names, timeout)
        alive_nodes: set[str] | None = None
        out = []
        for name, (_, answer) in answers.items():
            if isinstance(answer, ActorInfo):
                continue
            if isinstance(answer, rex.GetTimeoutError):
                with self._lock:
                    entry = self._entries[name]
                    node = entry.info.node_id if entry.info is not None else None
                    if entry.replacing or node is None:
                        continue  # being replaced, or a replacement still starting
                if alive_nodes is None:
                    alive_nodes = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
                if node in alive_nodes:
                    continue  # busy, not lost
            out.append(name)
        return out

    def bundle_placed(self, name: str) -> bool:
        """Whether `name` runs (or starts) outside its placement-group bundle while Ray has placed
        that bundle again, on a live node other than the one the actor was lost on: then the bundle
        holds resources the actor could use, and it should move into it."""
        import ray
        from ray.util import placement_group_table

        found = self.outside_group([name])
        if not found:
            return False
        _, group, bundle = found[0]
        info = placement_group_table(group)
        node = info.get("bundles_to_node_id", {}).get(bundle)
        if info.get("state") != "CREATED" or node is None or node == self.lost_on(name):
            return False
        return node in {n["NodeID"] for n in ray.nodes() if n.get("Alive")}

    # ---- restarts ----------------------------------------------------------------------------

    def note_incarnation(self, name: str, handle: Any, info: ActorInfo) -> Noted:
        """Record the answer `handle` gave to a ping. RESTARTED when it comes from a new incarnation
        (Ray restarted it in place); STALE, and ignored, when `handle` no longer holds the name.

        A stale answer is real: a replaced actor's process can outlive its killed node for a moment
        and still answer calls made straight to it. Recording it would put the replacement back on
        the lost node, and the next repair would replace it a second time."""
        with self._lock:
            entry = self._entries[name]
            if handle is not entry.handle:
                return Noted.STALE
            restarted = entry.info is not None and entry.info.instance != info.instance
            if restarted:
                self._count(entry)
                entry.generation += 1
            entry.info = info
            return Noted.RESTARTED if restarted else Noted.SAME

    def replace(
        self, names: Iterable[str], expected: dict[str, Any] | None = None, lost_nodes: Iterable[str] = ()
    ) -> list[str]:
        """Kill each of `names` for good and start it again now, under the same name, outside the
        placement group and off every node reported lost (`lost_nodes`, and those of earlier
        calls). Skips a name being replaced by another caller, or whose handle is no longer
        `expected[name]` (replaced already). Returns the names replaced (started, not yet
        answering); raises EvaluationFailed when one was lost more than maxActorRestarts times."""
        import ray

        claimed: list[tuple[ActorEntry, Any, int]] = []
        replaced = []
        try:
            with self._lock:
                self._lost_nodes.update(lost_nodes)
                away = self._away_from_lost_nodes()
                for name in names:
                    entry = self._entries[name]
                    if entry.replacing or (expected is not None and entry.handle is not expected.get(name)):
                        continue
                    self._count(entry)
                    entry.replacing, entry.info = True, None
                    claimed.append((entry, entry.handle, max(self.max_restarts - entry.restarts, 0)))
            for entry, old, left in claimed:
                try:
                    ray.kill(old, no_restart=True)
                except Exception:  # noqa: BLE001 - already dead is fine
                    pass
                handle = self._start(entry.recipe, away, left)
                with self._lock:
                    entry.handle, entry.replacing = handle, False
                    entry.generation += 1
                    entry.in_group = not entry.recipe.placement
                    entry.started_at = time.monotonic()
                replaced.append(entry.recipe.name)
        finally:
            with self._lock:
                for entry, _, _ in claimed:
                    entry.replacing = False
        return replaced

    def _away_from_lost_nodes(self) -> dict[str, Any]:
        """Scheduling options that prefer every node but those reported lost (none: anywhere).

        Preferred, not required: a node reported lost that is in fact alive (a wrong report, or a
        cluster of one node) may still take the replacement when no other node can."""
        if not self._lost_nodes:
            return {}
        lost = ",".join(sorted(self._lost_nodes))
        return {
            "label_selector": {NODE_ID_LABEL: f"!in({lost})"},
            "fallback_strategy": [{"label_selector": {NODE_ID_LABEL: f"in({lost})"}}],
        }

    def outside_group(self, names: Iterable[str]) -> list[tuple[str, Any, int]]:
        """(name, placement group, bundle index) of each of `names` running outside its bundle."""
        out = []
        with self._lock:
            for name in names:
                entry = self._entries[name]
                strategy = entry.recipe.placement.get("scheduling_strategy")
                if not entry.in_group and not entry.replacing and strategy is not None:
                    out.append((name, strategy.placement_group, strategy.placement_group_bundle_index))
        return out

    def regroup(self, name: str) -> bool:
        """Re-create `name` inside its placement-group bundle (not a loss: no restart is counted).
        The new instance holds no state: call it only where the slot begins afresh."""
        import ray

        with self._lock:
            entry = self._entries[name]
            if entry.in_group or entry.replacing:
                return False
            entry.replacing, entry.info, old = True, None, entry.handle
        try:
            try:
                ray.kill(old, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead is fine
                pass
            handle = self._start(entry.recipe, entry.recipe.placement, max(self.max_restarts - entry.restarts, 0))
            with self._lock:
                entry.handle, entry.in_group = handle, True
                entry.generation += 1
                entry.started_at = time.monotonic()
        finally:
            with self._lock:
                entry.replacing = False
        return True

    def lost_on(self, name: str) -> str | None:
        """The node id the actor's previous incarnation lived on, once it was replaced or restarted."""
        with self._lock:
            return self._entries[name].lost_on

    def _count(self, entry: ActorEntry) -> None:
        if entry.info is not None:
            entry.lost_on = entry.info.node_id
        entry.restarts += 1
        if entry.restarts > self.max_restarts:
            raise EvaluationFailed(
                f"actor {entry.recipe.name} was lost {entry.restarts} times, more than "
                f"spec.faultTolerance.maxActorRestarts={self.max_restarts}; raise it or fix what keeps "
                "killing its node"
            )

    def kill_all(self) -> None:
        import ray

        with self._lock:
            for entry in self._entries.values():
                try:
                    ray.kill(entry.handle, no_restart=True)
                except Exception:  # noqa: BLE001 - best effort at teardown
                    pass


def _failed(ref: Any) -> bool:
    """Whether a ping failed (waits for it: the one that failed first may not be the first listed)."""
    import ray
    from ray import exceptions as rex

    try:
        ray.get(ref, timeout=START_TIMEOUT_S)
    except rex.GetTimeoutError:
        return False
    except Exception:  # noqa: BLE001
        return True
    return False


def _root_message(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or getattr(error, "error_msg", None)
    text = str(cause if isinstance(cause, BaseException) else error)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def request_repair(
    evaluation: str,
    lost_node_ids: list[str] | None = None,
    ray_address: str | None = None,
    timeout: float = 120.0,
) -> list[str]:
    """Ask the coordinator of `evaluation` (`<namespace>/<name>`) to replace, now, every named actor
    that lived on `lost_node_ids` (or, with None, every actor `ActorTable.lost` finds gone, never a
    busy one).

    Returns the names replaced; raises EvaluationNotRunning, ConnectionError or RepairTimedOut.
    Idempotent: a second call while a repair is running waits for it and replaces nothing twice.
    Connects to `ray_address` when this process is not connected yet.
    """
    import ray
    from ray import exceptions as rex

    if not ray.is_initialized():
        join_cluster(ray_address or "auto", log_to_driver=False)
    try:
        coordinator = ray.get_actor(coordinator_name(evaluation), namespace=RAY_NAMESPACE)
    except ValueError:  # Ray's answer for "no actor by that name"
        raise EvaluationNotRunning(
            f"no running evaluation {evaluation} on this Ray cluster: it has finished, has not started, "
            "or runs elsewhere (check the Ray address and NAMESPACE/NAME)"
        ) from None
    try:
        return ray.get(coordinator.repair.remote(lost_node_ids), timeout=timeout)
    except rex.GetTimeoutError:
        raise RepairTimedOut(
            f"the coordinator of {evaluation} did not answer the repair request within {timeout:g} s; it may "
            "still be repairing: ask again (a repair is idempotent) or allow more time"
        ) from None
