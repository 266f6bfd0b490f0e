"""Setting a run up: the plan, the environment slots, the placement group and every named actor.

Everything here happens once, before the first episode, and every spec problem it can find is
an `InvalidSpec` naming the field (the environment's factory or params, a hosted policy that
cannot be built, teams that do not fit, resumed episodes that are not this plan's).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from swarm_arena.api.job_channel import ResumePayload
from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.arena.episode import EnvironmentWorker
from swarm_arena.arena.errors import EvaluationFailed, InvalidSpec
from swarm_arena.arena.matchmaking import Match, in_environment, max_shards_per_policy, plan_matches
from swarm_arena.arena.naming import env_name, shard_name
from swarm_arena.arena.recovery import ActorRecipe, ActorTable, remote_actor_class
from swarm_arena.arena.shard import PolicyShard, actor_resources, bundle

log = logging.getLogger(__name__)

# An environment actor steps the world: one CPU. The coordinator itself only waits: zero.
ENV_ACTOR_CPUS = 1.0
PLACEMENT_TIMEOUT_S = 60.0


@dataclass
class Slot:
    """One environment actor and the shards it steps with, and the state they hold."""

    index: int
    env: str
    shards: dict[tuple[str, int], str]  # (policy, k) -> shard actor name
    task: Any = None  # the EpisodeTask of the chunk in flight
    ref: Any = None  # its ObjectRef
    holds: tuple[int, int] | None = None
    """(episode, step) whose state the slot's actors hold (None: unknown, e.g. after a failed chunk)."""
    state_generations: dict[str, int] = field(default_factory=dict)
    """The generation of each actor when that state was put into it (a different one holds nothing)."""
    dispatched: dict[str, int] = field(default_factory=dict)
    """The generation of each actor the chunk in flight uses."""
    ahead: Any = None
    """(EpisodeTask, ObjectRef) of the chunk queued on the environment actor behind the one in
    flight (same actors, same generations), or None; see scheduler.py, "chunks ahead"."""

    @property
    def actors(self) -> list[str]:
        return [self.env, *self.shards.values()]


@dataclass
class RunLayout:
    agents: list[str]
    spaces: tuple[gymnasium.Space, gymnasium.Space]
    matches: list[Match]
    hosted: set[str]
    """Policies without resources of their own, stepped inside the environment actors."""
    slots: list[Slot]
    placement_group: Any


def plan_run(spec: SwarmEvaluationSpec, evaluation: str, resume: ResumePayload) -> tuple[RunLayout, dict[str, int]]:
    """The plan and the slots (no actors yet); InvalidSpec naming the field when the spec cannot run."""
    from swarm_arena.arena.array_env import make_array_env

    env_spec = spec.environment
    try:
        probe = make_array_env(env_spec.factory, env_spec.params, env_spec.max_steps)
    except Exception as exc:
        raise InvalidSpec(f"spec.environment.factory {env_spec.factory!r}: {exc}") from None
    agents = list(probe.possible_agents)
    spaces = (probe.observation_space(0), probe.action_space(0))
    probe.close()
    matches = plan_matches(spec)
    hosted = in_environment(spec)
    _check_hosted_policies(spec, hosted, spaces)
    try:
        per_policy = max_shards_per_policy(spec, agents, hosted)
    except ValueError as exc:
        raise InvalidSpec(f"spec.teams: {exc}") from None
    _check_resumed(resume, matches)
    slots = []
    for j in range(min(spec.execution.parallel_episodes, len(matches))):
        names = {
            (policy.name, k): shard_name(evaluation, policy.name, j * per_policy[policy.name] + k)
            for policy in spec.policies
            if policy.name not in hosted
            for k in range(per_policy[policy.name])
        }
        slots.append(Slot(index=j, env=env_name(evaluation, j), shards=names))
    layout = RunLayout(agents=agents, spaces=spaces, matches=matches, hosted=hosted, slots=slots, placement_group=None)
    return layout, per_policy


def start_actors(spec: SwarmEvaluationSpec, layout: RunLayout, table: ActorTable) -> None:
    """The placement group of the shards, then every named actor; returns once all answer."""
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    # Constructor inputs are small and passed inline, deliberately not via ray.put: a replacement
    # actor would otherwise wait on an object location lookup that still lists the lost node
    # (measured: ~30 s instead of ~3-5 s for a fast repair).
    index = {p.name: i for i, p in enumerate(spec.policies)}
    shard_recipes: list[tuple[ActorRecipe, dict[str, float]]] = []
    for slot in layout.slots:
        for (policy_name, _), name in slot.shards.items():
            pi = index[policy_name]
            policy = spec.policies[pi]
            recipe = ActorRecipe(
                name=name,
                cls=remote_actor_class(PolicyShard),
                args=(name, policy.factory, policy.params, spec.seed, layout.spaces),
                options=actor_resources(policy.resources),
                field_path=f"spec.policies[{pi}].factory",
            )
            shard_recipes.append((recipe, bundle(policy.resources)))

    strategy = spec.execution.placement_strategy.value
    if shard_recipes:
        layout.placement_group = placement_group([b for _, b in shard_recipes], strategy=strategy)
        if not layout.placement_group.wait(timeout_seconds=PLACEMENT_TIMEOUT_S):
            raise EvaluationFailed(
                f"the placement group of {len(shard_recipes)} policy shards (strategy {strategy}) could not "
                f"be placed within {PLACEMENT_TIMEOUT_S:.0f} s: the cluster lacks what "
                "spec.policies[].resources asks for per shard, or spec.execution.placementStrategy cannot be "
                "met by its nodes; ask for less, raise spec.execution.agentsPerShard, or add nodes"
            )
    for b, (recipe, _) in enumerate(shard_recipes):
        recipe.placement = {
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                placement_group=layout.placement_group, placement_group_bundle_index=b
            )
        }
        table.create(recipe)
    env_spec = spec.environment
    for slot in layout.slots:
        table.create(
            ActorRecipe(
                name=slot.env,
                cls=remote_actor_class(EnvironmentWorker),
                args=(slot.env, env_spec.factory, env_spec.params, env_spec.max_steps),
                options={"num_cpus": ENV_ACTOR_CPUS},
                field_path="spec.environment.factory",
            )
        )
    table.wait_started(table.names())


def _check_hosted_policies(
    spec: SwarmEvaluationSpec, hosted: set[str], spaces: tuple[gymnasium.Space, gymnasium.Space]
) -> None:
    """Build each policy stepped inside the environment actors once here, so a bad factory or
    params fails the run at start naming the field, as a shard actor's constructor would."""
    from swarm_arena.arena.policies.base import make_policy

    for pi, policy in enumerate(spec.policies):
        if policy.name in hosted:
            try:
                make_policy(policy.factory, policy.params, *spaces, seed=spec.seed)
            except Exception as exc:  # noqa: BLE001 - user code: report it, naming the field
                raise InvalidSpec(f"spec.policies[{pi}].factory: policy {policy.name!r} could not be built: {exc}") from None


def _check_resumed(resume: ResumePayload, matches: list[Match]) -> None:
    """What earlier attempts counted must be episodes of this plan."""
    for record in resume.episodes:
        index = record.episode
        if index >= len(matches) or matches[index].pairing_label() != record.pairing:
            raise InvalidSpec(
                f"resumed episode {index} (pairing {record.pairing}) is not episode {index} of this spec's "
                f"plan of {len(matches)} episodes: the resume payload was counted under another spec; "
                "submit without it (or with the records of this spec)"
            )
