"""Who plays whom, with which agents, on how many shards: the evaluation's plan as pure functions.

Everything here is derived from the spec alone (plus the environment's agent ids), so the
coordinator, a resumed coordinator and a test all compute the same plan, the same per-episode
seeds and the same agent split, with no state to carry across a restart.

- `fixed`: one pairing, played `spec.episodes` times. With a single team (the default `all`
  matching `*`) and no assignment for it, the team is shared by *every* policy: a mixed
  population, its agents split evenly between them.
- `round-robin`: every ordered pairing of distinct policies over the teams
  (`itertools.permutations(policies, len(teams))`), `spec.episodes` episodes per pairing,
  pairing-major.

`Match.pairing` maps each team to the tuple of policies sharing its agents: one policy for a
plain assignment, several for a mixed population. `pairing_label` flattens it to the
`team -> "p1,p2"` strings of `EpisodeRecord.pairing`.

The number of shard actors a policy needs depends only on how many agents it controls, never on
which ones, so `max_shards_per_policy` can size the named shard actors once for the whole plan
and the runtime keeps them alive across episodes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from swarm_arena.api.spec import MatchmakingMode, PolicySpec, SwarmEvaluationSpec, TeamSpec

# How many agent ids an error message names before it says "and N more".
_NAMED_IN_ERRORS = 8


@dataclass(frozen=True)
class Match:
    """One episode of the plan."""

    index: int
    """Episode index in the plan, 0..total-1 (the `episode` of `EpisodeRecord`)."""
    pairing: Mapping[str, tuple[str, ...]]
    """Team name -> the policies sharing that team's agents (one, or several for a mixed population)."""
    seed: int
    """Seed of this episode (environment reset, agent split, policies), derived from spec.seed and index."""

    @property
    def policies(self) -> tuple[str, ...]:
        """The policies taking part, each once, in order of first appearance over the teams."""
        return tuple(dict.fromkeys(p for team in self.pairing.values() for p in team))

    def pairing_label(self) -> dict[str, str]:
        """`team -> "p1,p2"`: the flat form stored in `EpisodeRecord.pairing`."""
        return {team: ",".join(policies) for team, policies in self.pairing.items()}


@dataclass(frozen=True)
class ShardSlot:
    """The agents one policy shard actor serves."""

    policy: str
    shard: int
    """0..k-1 within the policy."""
    agent_indices: tuple[int, ...]
    """Indices into the environment's `possible_agents`, ascending."""


# ---- the plan ------------------------------------------------------------------------------


def pairings(spec: SwarmEvaluationSpec) -> list[dict[str, tuple[str, ...]]]:
    """The distinct pairings of the plan, in plan order."""
    teams = [t.name for t in spec.effective_teams]
    policies = spec.policy_names
    assignments = spec.matchmaking.assignments
    if spec.matchmaking.mode is MatchmakingMode.ROUND_ROBIN:
        return [
            {team: (policy,) for team, policy in zip(teams, chosen, strict=True)}
            for chosen in itertools.permutations(policies, len(teams))
        ]
    if len(teams) == 1 and teams[0] not in assignments:
        return [{teams[0]: tuple(policies)}]
    # The spec refuses `fixed` with several teams unless every team is assigned.
    return [{team: (assignments[team],) for team in teams}]


def count_matches(spec: SwarmEvaluationSpec) -> int:
    """How many episodes the plan holds, without building it."""
    return spec.planned_episodes


def episode_seed(run_seed: int, index: int) -> int:
    """A 32-bit seed for episode `index`, independent of every other episode's."""
    sequence = np.random.SeedSequence(entropy=run_seed, spawn_key=(index,))
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def _pairing_at(spec: SwarmEvaluationSpec, number: int) -> dict[str, tuple[str, ...]]:
    """Pairing `number` of `pairings(spec)` without listing them (they grow as P!/(P-T)!)."""
    if spec.matchmaking.mode is not MatchmakingMode.ROUND_ROBIN:
        return pairings(spec)[number]
    teams = [t.name for t in spec.effective_teams]
    pool = list(spec.policy_names)
    chosen = []
    for position in range(len(teams)):
        # Each choice at this position heads a block of perm(remaining - 1, teams left) pairings.
        block = math.perm(len(pool) - 1, len(teams) - position - 1)
        pick, number = divmod(number, block)
        chosen.append(pool.pop(pick))
    return {team: (policy,) for team, policy in zip(teams, chosen, strict=True)}


def match_at(spec: SwarmEvaluationSpec, index: int) -> Match:
    """Episode `index` of the plan (random access, e.g. to resume from a checkpoint)."""
    total = count_matches(spec)
    if not 0 <= index < total:
        raise IndexError(f"episode {index} is outside the plan (0..{total - 1})")
    pairing = _pairing_at(spec, index // spec.episodes)
    return Match(index=index, pairing=pairing, seed=episode_seed(spec.seed, index))


def iter_matches(spec: SwarmEvaluationSpec, start: int = 0) -> Iterator[Match]:
    """The plan from episode `start` on, lazily: pairing-major, `spec.episodes` per pairing."""
    pairing_number = -1
    pairing: dict[str, tuple[str, ...]] = {}
    for index in range(max(0, start), count_matches(spec)):
        if index // spec.episodes != pairing_number:
            pairing_number = index // spec.episodes
            pairing = _pairing_at(spec, pairing_number)
        yield Match(index=index, pairing=pairing, seed=episode_seed(spec.seed, index))


def plan_matches(spec: SwarmEvaluationSpec) -> list[Match]:
    """The whole plan, in order. `iter_matches` is the lazy form for very large plans."""
    return list(iter_matches(spec))


# ---- agents --------------------------------------------------------------------------------


def _some(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMED_IN_ERRORS])
    more = len(names) - _NAMED_IN_ERRORS
    return f"{shown} (and {more} more)" if more > 0 else shown


def _globs(teams: Sequence[TeamSpec]) -> str:
    return ", ".join(f"{t.name}={t.agents!r}" for t in teams)


def team_members(spec: SwarmEvaluationSpec, possible_agents: Sequence[str]) -> dict[str, list[int]]:
    """Team name -> ascending indices into `possible_agents` of the agents its glob selects.

    An agent matched by several teams belongs to the first team listed in `spec.teams`. Every
    agent must belong to a team and every team must select at least one agent: anything else is
    a spec that does not fit the environment, reported with the globs and the agent ids.
    """
    teams = spec.effective_teams
    members: dict[str, list[int]] = {t.name: [] for t in teams}
    unassigned: list[str] = []
    for index, agent in enumerate(possible_agents):
        team = next((t for t in teams if t.matches(agent)), None)
        if team is None:
            unassigned.append(agent)
        else:
            members[team.name].append(index)
    if unassigned:
        raise ValueError(
            f"environment agents {_some(unassigned)} are matched by no team in spec.teams "
            f"({_globs(teams)}); widen a team's `agents` glob or add a team that selects them"
        )
    empty = [t for t in teams if not members[t.name]]
    if empty:
        raise ValueError(
            f"spec.teams {_globs(empty)} select none of the environment's agents "
            f"({_some(list(possible_agents))}); fix the `agents` glob"
        )
    return members


def _split(members: list[int], policies: tuple[str, ...], seed: int) -> dict[str, list[int]]:
    """Deal a shuffled team round-robin to its policies: sizes differ by at most one."""
    order = np.random.default_rng(seed).permutation(len(members))
    dealt = [members[i] for i in order]
    return {policy: dealt[k :: len(policies)] for k, policy in enumerate(policies)}


def assign_agents(
    spec: SwarmEvaluationSpec, match: Match, possible_agents: Sequence[str]
) -> dict[str, list[int]]:
    """Policy -> ascending indices into `possible_agents` that the policy controls in `match`.

    A team shared by P policies is shuffled with the episode's seed and dealt round-robin, so
    each policy gets floor(n/P) or ceil(n/P) of its n agents (the first policies listed get the
    extra ones), a different but reproducible subset in every episode. Keys follow
    `Match.policies`. A policy assigned to several teams controls all their agents.
    """
    members = team_members(spec, possible_agents)
    controlled: dict[str, list[int]] = {p: [] for p in match.policies}
    for team, policies in match.pairing.items():
        if len(policies) > len(members[team]):
            raise ValueError(
                f"team {team!r} has {len(members[team])} agents but is shared by {len(policies)} "
                f"policies ({', '.join(policies)}); give the environment more agents "
                f"(environment.params) or list fewer policies"
            )
        if len(policies) == 1:
            controlled[policies[0]].extend(members[team])
        else:
            for policy, indices in _split(members[team], policies, match.seed).items():
                controlled[policy].extend(indices)
    return {policy: sorted(indices) for policy, indices in controlled.items()}


# ---- shards --------------------------------------------------------------------------------


def shards_needed(agents: int, agents_per_shard: int) -> int:
    """How many shard actors serve `agents` agents, none serving more than `agents_per_shard`."""
    if agents_per_shard < 1:
        raise ValueError(f"execution.agentsPerShard must be >= 1, got {agents_per_shard}")
    return -(-agents // agents_per_shard)


def runs_in_environment(policy: PolicySpec) -> bool:
    """Whether the policy is stepped inside the environment actor's process.

    A policy that asks for no resources of its own (`cpu: 0`, `gpu: 0`, no `memory`: the
    default) costs no round trip per step there; one that asks for any gets shard actors of its
    own with those resources (docs/performance.md measures both).
    """
    resources = policy.resources
    return resources.cpu == 0 and resources.gpu == 0 and not resources.memory


def in_environment(spec: SwarmEvaluationSpec) -> frozenset[str]:
    """Names of the policies stepped inside the environment actor (see `runs_in_environment`)."""
    return frozenset(p.name for p in spec.policies if runs_in_environment(p))


def shard_layout(
    agent_indices: Mapping[str, Sequence[int]], agents_per_shard: int, whole: frozenset[str] = frozenset()
) -> list[ShardSlot]:
    """Cut each policy's agents into the fewest shards of at most `agents_per_shard`, balanced.

    Shards of one policy differ in size by at most one agent (300 agents at 256 per shard is
    150 + 150, not 256 + 44): a step waits for the slowest shard. Contiguous runs of the sorted
    indices, so each shard's batch is a slice. Policies with no agents get no slot. Policies in
    `whole` (stepped inside the environment actor, where cutting only adds calls) get one shard.
    """
    slots: list[ShardSlot] = []
    for policy, indices in agent_indices.items():
        ordered = sorted(indices)
        count = min(1, len(ordered)) if policy in whole else shards_needed(len(ordered), agents_per_shard)
        for shard, part in enumerate(np.array_split(np.asarray(ordered, dtype=np.int64), count) if count else []):
            slots.append(ShardSlot(policy=policy, shard=shard, agent_indices=tuple(int(i) for i in part)))
    return slots


def max_shards_per_policy(
    spec: SwarmEvaluationSpec, possible_agents: Sequence[str], whole: frozenset[str] = frozenset()
) -> dict[str, int]:
    """Policy -> the most shards it needs in any episode of the plan (0: it never plays).

    Policies in `whole` (see `shard_layout`) need at most one.

    Counts only depend on how many agents a policy controls, which depends on the pairing but
    not on the episode seed, so this looks at each distinct pairing once (for round-robin, every
    policy can sit on every team, so the largest team bounds it).
    """
    sizes = {team: len(indices) for team, indices in team_members(spec, possible_agents).items()}
    per_shard = spec.execution.agents_per_shard
    needed = {p: 0 for p in spec.policy_names}
    if spec.matchmaking.mode is MatchmakingMode.ROUND_ROBIN:
        most = shards_needed(max(sizes.values()), per_shard)
        return {p: min(1, most) if p in whole else most for p in needed}
    for pairing in pairings(spec):
        agents = {p: 0 for p in needed}
        for team, policies in pairing.items():
            share, extra = divmod(sizes[team], len(policies))
            for k, policy in enumerate(policies):
                agents[policy] += share + (1 if k < extra else 0)
        for policy, count in agents.items():
            needed[policy] = max(needed[policy], shards_needed(count, per_shard))
    return {p: min(1, n) if p in whole else n for p, n in needed.items()}
