"""`run_evaluation`: one SwarmEvaluation, start to leaderboard, on an embedded or existing Ray.

The driver is thin on purpose: it checks what can be checked before Ray starts (factories
resolve, the environment builds), starts the named coordinator next to itself, and then only
relays — progress to `on_progress`, step statistics to the Prometheus metrics — until the
coordinator hands back the episodes and the leaderboard. Everything that must survive a lost
worker node lives in the coordinator (see coordinator.py, recovery.py, docs/runtime.md).

Ray addresses: `auto`, `ray://host:10001` (Ray Client) or a GCS `host:6379`. A dashboard URL
(`http://host:8265`, what `cluster.address` holds) is for job submission, which the operator
does; the arena job it submits then runs here with `auto`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from swarm_arena.api.job_channel import ResumePayload
from swarm_arena.api.report import EpisodeRecord, RunReport
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.status import Progress, Recovery, Results
from swarm_arena.arena.connection import join_cluster
from swarm_arena.arena.coordinator import ENV_ACTOR_CPUS, Coordinator
from swarm_arena.arena.metrics import ArenaMetrics
from swarm_arena.arena.naming import RAY_NAMESPACE, coordinator_name
from swarm_arena.arena.errors import EvaluationFailed, InvalidSpec
from swarm_arena.arena.run_models import PollBatch, RunOutcome
from swarm_arena.arena.registry import FactoryError, load_environment_factory, load_policy_factory

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.25
# The coordinator answers poll/repair while `run` drives the episodes.
COORDINATOR_CONCURRENCY = 8

__all__ = ["EvaluationFailed", "InvalidSpec", "PlanDemand", "RunListener", "plan_demand", "run_evaluation"]


def check_factories(evaluation: SwarmEvaluation) -> None:
    """Fail before starting Ray when a factory string names nothing, naming the field."""
    spec = evaluation.spec
    try:
        load_environment_factory(spec.environment.factory)
    except FactoryError as exc:
        raise InvalidSpec(f"spec.environment.factory: {exc}") from None
    for i, policy in enumerate(spec.policies):
        try:
            load_policy_factory(policy.factory)
        except FactoryError as exc:
            raise InvalidSpec(f"spec.policies[{i}].factory: {exc}") from None


@dataclass(frozen=True)
class PlanDemand:
    """What the plan asks Ray for: every shard of every parallel episode, plus the env actors."""

    cpus: float
    gpus_by_policy: dict[int, float]
    """Index in spec.policies -> GPUs of all that policy's shards (policies without GPUs left out)."""

    @property
    def gpus(self) -> float:
        return sum(self.gpus_by_policy.values())


def plan_demand(evaluation: SwarmEvaluation) -> PlanDemand:
    """The logical CPUs and GPUs the run's actors ask for, from the spec and the environment's agents."""
    from swarm_arena.arena.array_env import make_array_env
    from swarm_arena.arena.matchmaking import count_matches, max_shards_per_policy

    spec = evaluation.spec
    try:
        probe = make_array_env(spec.environment.factory, spec.environment.params, spec.environment.max_steps)
    except Exception as exc:
        raise InvalidSpec(f"spec.environment.factory {spec.environment.factory!r}: {exc}") from None
    agents = list(probe.possible_agents)
    probe.close()
    try:
        shards = max_shards_per_policy(spec, agents)
    except ValueError as exc:
        raise InvalidSpec(f"spec.teams: {exc}") from None
    slots = min(spec.execution.parallel_episodes, count_matches(spec))
    per_slot = sum(shards[p.name] * p.resources.cpu for p in spec.policies)
    gpus = {
        i: slots * shards[p.name] * p.resources.gpu for i, p in enumerate(spec.policies) if p.resources.gpu > 0
    }
    return PlanDemand(cpus=slots * (per_slot + ENV_ACTOR_CPUS), gpus_by_policy=gpus)


def _check_gpus(evaluation: SwarmEvaluation, demand: PlanDemand, available: float) -> None:
    """An embedded Ray cannot grow: fail now, naming the field, when the plan needs more GPUs than it has."""
    if demand.gpus <= available + 1e-9:
        return
    first = min(demand.gpus_by_policy)
    policies = evaluation.spec.policies
    wanted = ", ".join(f"{policies[i].name}: {g:g}" for i, g in sorted(demand.gpus_by_policy.items()))
    raise EvaluationFailed(
        f"spec.policies[{first}].resources.gpu: the plan's policy shards need {demand.gpus:g} GPUs ({wanted}; "
        f"shards x parallelEpisodes x resources.gpu) but the local Ray has {available:g}; run it where "
        "there are GPUs (`kubectl apply` with a GPU worker group, or --ray-address), lower resources.gpu "
        "(fractions share a GPU) or raise execution.agentsPerShard, or set resources.gpu to 0 to run on CPU"
    )


# A shard's stacked observations (~300 kB at 1,000 foraging agents) travel inline with the call
# instead of through the object store: that halves a step's p99 (docs/performance.md). On a
# cluster the operator sets the same through `RAY_max_direct_call_object_size` on the pods.
INLINE_ARG_BYTES = 1 << 20
EMBEDDED_RAY_SYSTEM_CONFIG = {"max_direct_call_object_size": INLINE_ARG_BYTES}
AUTH_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"


class RunListener:
    """Hears what a run does, on the thread that called `run_evaluation`; override what you need."""

    def progress(self, progress: Progress) -> None:
        """A progress snapshot (after every checkpoint and every counted episode)."""

    def episode(self, record: EpisodeRecord) -> None:
        """An episode this run counted (each index once, in counting order)."""

    def recovery(self, recovery: Recovery) -> None:
        """A recovery finished."""

    def polled(self) -> None:
        """The end of one poll's batch (about every POLL_INTERVAL_S, also when nothing happened)."""


class _DefaultAuthNotice(logging.Filter):
    """Drops Ray's "Token authentication is enabled for this Ray cluster" notice, and only it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def _quiet_default_auth_notice() -> None:
    """The embedded Ray keeps Ray's default, token authentication on (its ports listen on this
    machine; only processes holding the token in ~/.ray/auth_token get in). Ray announces that
    default on every start; docs/runtime.md states it once instead. RAY_AUTH_MODE=disabled in the
    environment still opts out (and Ray then warns, as it should)."""
    notices = logging.getLogger(AUTH_NOTICE_LOGGER)
    if not any(isinstance(f, _DefaultAuthNotice) for f in notices.filters):
        notices.addFilter(_DefaultAuthNotice())


def _connect(evaluation: SwarmEvaluation, ray_address: str | None) -> bool:
    """Connect or start Ray; True when this call started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    if ray_address:
        if ray_address.startswith(("http://", "https://")):
            raise EvaluationFailed(
                f"ray address {ray_address!r} is a dashboard URL (for job submission); run_evaluation "
                "needs `auto`, `ray://host:10001` or a GCS `host:6379`"
            )
        try:
            join_cluster(ray_address)
        except ConnectionError as exc:
            raise EvaluationFailed(f"{exc}, or leave --ray-address out to run on an embedded Ray") from None
        return True
    demand = plan_demand(evaluation)
    cpus = max(os.cpu_count() or 1, math.ceil(demand.cpus) + 1)
    log.info(
        "starting an embedded Ray with %d logical CPUs (the plan's shards and environments ask for %.1f; "
        "this machine has %d cores, so actors share them)",
        cpus, demand.cpus, os.cpu_count() or 1,
    )  # fmt: skip
    _quiet_default_auth_notice()
    ray.init(
        # "local": always a fresh embedded Ray, never whatever `ray start` left running here.
        address="local",
        num_cpus=cpus,
        _system_config=EMBEDDED_RAY_SYSTEM_CONFIG,
        namespace=RAY_NAMESPACE,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
        configure_logging=True,
    )
    try:
        _check_gpus(evaluation, demand, ray.cluster_resources().get("GPU", 0.0))
    except EvaluationFailed:
        ray.shutdown()
        raise
    return True


def _unwrap(exc: BaseException) -> BaseException:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, EvaluationFailed):
        return type(cause)(str(cause))
    return exc


def run_evaluation(
    evaluation: SwarmEvaluation,
    *,
    ray_address: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    metrics_port: int | None = None,
    listener: RunListener | None = None,
    resume: ResumePayload | None = None,
) -> RunReport:
    """Run every episode of `evaluation` and return the report (raises EvaluationFailed, InvalidSpec).

    `on_progress` hears every progress snapshot; `listener` hears that too, every episode this
    run counts (in counting order) and every recovery, all on the calling thread. `resume`: what
    earlier attempts counted; those episodes are not played again and are reported once.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    check_factories(evaluation)
    started = time.monotonic()
    started_ray = _connect(evaluation, ray_address)
    metrics = ArenaMetrics(evaluation.qualified_name)
    coordinator = None
    try:
        if metrics_port is not None:
            log.info("metrics of %s on http://127.0.0.1:%d/metrics", evaluation.qualified_name, metrics.serve(metrics_port))
        coordinator = (
            ray.remote(Coordinator)
            .options(
                name=coordinator_name(evaluation.qualified_name),
                namespace=RAY_NAMESPACE,
                num_cpus=0,
                max_concurrency=COORDINATOR_CONCURRENCY,
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    node_id=ray.get_runtime_context().get_node_id(), soft=False
                ),
            )
            .remote(
                evaluation.model_dump(by_alias=True, mode="json"),
                resume,
            )
        )
        ray.get(coordinator.setup.remote())
        run_ref = coordinator.run.remote()
        while True:
            ready, _ = ray.wait([run_ref], timeout=POLL_INTERVAL_S)
            _relay(ray.get(coordinator.poll.remote()), metrics, on_progress, listener or RunListener())
            if ready:
                break
        outcome = ray.get(run_ref)
    except ray.exceptions.RayTaskError as exc:
        raise _unwrap(exc) from None
    finally:
        if coordinator is not None:
            try:
                ray.get(coordinator.shutdown.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - teardown is best effort; the kill below frees the rest
                log.warning("could not shut the run's actors down cleanly", exc_info=True)
            ray.kill(coordinator, no_restart=True)
        metrics.close()
        if started_ray:
            ray.shutdown()
    return _report(evaluation, outcome, time.monotonic() - started)


def _relay(
    batch: PollBatch,
    metrics: ArenaMetrics,
    on_progress: Callable[[Progress], None] | None,
    listener: RunListener,
) -> None:
    metrics.observe_steps(batch.latencies_s, batch.agent_steps)
    for name in batch.restarted:
        metrics.actor_restarted(name)
    metrics.set_actors_alive(batch.actors)
    for event in batch.events:
        if event.counted is not None:  # metrics first: whoever hears the progress may scrape them
            metrics.episode_completed(event.counted.returns)
        listener.progress(event.progress)
        if on_progress is not None:
            on_progress(event.progress)
        if event.counted is not None:
            listener.episode(event.counted)
    for recovery in batch.recoveries:
        metrics.recovery()
        listener.recovery(recovery)
    listener.polled()


def _report(evaluation: SwarmEvaluation, outcome: RunOutcome, wall_seconds: float) -> RunReport:
    return RunReport(
        evaluation=evaluation.qualified_name,
        seed=evaluation.spec.seed,
        progress=Progress(
            episodes_completed=len(outcome.episodes),
            episodes_total=outcome.episodes_total,
            agent_steps=outcome.agent_steps,
        ),
        results=Results(
            leaderboard=outcome.leaderboard,
            rating_method=outcome.rating_method,
            pairwise=outcome.pairwise,
            return_aggregates=outcome.return_aggregates,
            stopped_early=outcome.stopped_early,
            populations=outcome.populations,
            social_outcomes=outcome.social_outcomes,
            step_latency_ms=outcome.step_latency_ms,
            agent_steps_per_second=outcome.agent_steps_per_second,
            recordings=outcome.recordings,
        ),
        recoveries=outcome.recoveries,
        episodes=outcome.episodes,
        wall_seconds=round(wall_seconds, 3),
    )
