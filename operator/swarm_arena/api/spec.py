"""The `SwarmEvaluation` spec: the single source of truth for the contract in API.md.

The CRD schema (crds/) is generated from these models, so every bound, enum, default and
description written here is what the API server enforces and `kubectl explain` shows.
Cross-field rules live twice by necessity: as Python validators (for `swarm-arena validate`
and local runs) and as CEL `x-kubernetes-validations` (for the API server); a test checks that
both refuse the same manifests.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from swarm_arena.api.base import ApiModel
from swarm_arena.api.pods import RayPodsSpec

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# `package.module:callable.attr` or a built-in name such as `foraging` / `random`.
FACTORY_PATTERN = r"^([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*|[a-z][a-z0-9_-]*)$"
# Kubernetes resource.Quantity without a sign (e.g. 512Mi, 2Gi, 1.5G, .5Gi, 1e9): Kubernetes' own
# OpenAPI pattern (integer exponents), and the project's one quantity pattern; values are read with
# `kubernetes.utils.parse_quantity` (arena/shard.py).
QUANTITY_PATTERN = r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"
STORAGE_URI_PATTERN = r"^(file|s3|gs)://.+$"
RAY_ADDRESS_PATTERN = r"^(https?|ray)://[^\s]+$"
# The Ray release this package is built and tested with (pyproject pins it; a test checks the
# installed Ray is this one). The default `cluster.rayVersion` and the default image follow it.
RAY_VERSION = "2.60.0"
# The project's Ray image: the swarm-arena package on the matching Ray release (helm/../images).
RAY_IMAGE_REPOSITORY = "ghcr.io/swarm-arena/swarm-arena-ray"
# Environment variables the operator sets on the arena job; users' runtimeEnv may not set them.
RESERVED_ENV_PREFIX = "SWARM_ARENA_"

# Bounds on names and free strings keep the API server's estimated CEL cost under its budget.
NAME_MAX_LENGTH = 63

Loc = tuple[str | int, ...]


def format_path(loc: Sequence[str | int]) -> str:
    """`("spec", "policies", 1, "name")` -> `spec.policies[1].name` (wire names, indices in brackets)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class SpecError(ValueError):
    """Cross-field problems, each with its wire path relative to the model that found it.

    Pydantic keeps the exception in the error's `ctx`, so `swarm_arena.api.validation` can
    report every problem against the field it concerns instead of against the whole object.
    """

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{format_path(loc) or '<object>'}: {msg}" for loc, msg in problems))


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry: the API server's twin of a Python cross-field check."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def _validations(*rules: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    return {"x-kubernetes-validations": list(rules)}


def _repeated(names: list[str]) -> list[int]:
    """Indices of names already seen earlier in the list."""
    seen: set[str] = set()
    out = []
    for i, n in enumerate(names):
        if n in seen:
            out.append(i)
        seen.add(n)
    return out


def _unique_by_name(what: str) -> dict[str, list[dict[str, str]]]:
    return _validations(
        cel("self.all(x, self.exists_one(y, y.name == x.name))", f"{what}[].name must be unique")
    )


class PlacementStrategy(str, Enum):
    PACK = "PACK"
    SPREAD = "SPREAD"
    STRICT_PACK = "STRICT_PACK"
    STRICT_SPREAD = "STRICT_SPREAD"


class MatchmakingMode(str, Enum):
    FIXED = "fixed"
    ROUND_ROBIN = "round-robin"


class PolicyRole(str, Enum):
    FOCAL = "focal"
    BACKGROUND = "background"


class RatingMethod(str, Enum):
    MEAN_RETURN = "mean-return"
    BRADLEY_TERRY = "bradley-terry"
    ELO = "elo"
    OPENSKILL = "openskill"


class EnvironmentSpec(ApiModel):
    """Which multi-agent environment every episode runs in."""

    factory: str = Field(
        min_length=1,
        max_length=256,
        pattern=FACTORY_PATTERN,
        description=(
            "`module:callable` returning a PettingZoo ParallelEnv (for example "
            "`magent2.environments.battle_v4:parallel_env`), or a built-in name (`foraging`)."
        ),
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for the factory. The built-in `foraging` takes at least `agents`.",
    )
    max_steps: int = Field(
        default=500, ge=1, le=1_000_000, description="Truncation: the most steps one episode runs."
    )


class PolicyResources(ApiModel):
    """What one policy shard actor asks Ray for; none (the default) steps the policy inside the
    environment actor, with no round trip per step."""

    cpu: float = Field(
        default=0.0,
        ge=0,
        le=512,
        description="CPUs per policy shard actor (fractions allowed). 0 with gpu 0 and no memory (the default): "
        "the policy has no actors of its own and is stepped inside the environment actor, the fastest for "
        "policies cheaper than a Ray round trip (about 1 ms) per step; set cpu, gpu or memory to give each "
        "shard an actor of its own.",
    )
    gpu: float = Field(
        default=0.0,
        ge=0,
        le=16,
        description="GPUs per policy shard actor; fractional values (e.g. 0.25) share one GPU.",
    )
    memory: str | None = Field(
        default=None,
        pattern=QUANTITY_PATTERN,
        description="Memory per policy shard actor as a Kubernetes quantity (e.g. `512Mi`).",
    )


class PolicySpec(ApiModel):
    """One contestant."""

    name: str = Field(
        min_length=1, max_length=63, pattern=DNS1123_LABEL, description="Unique DNS-1123 label."
    )
    factory: str = Field(
        min_length=1,
        max_length=256,
        pattern=FACTORY_PATTERN,
        description="`module:callable` building a batched policy, or a built-in (`random`, `noop`, `greedy`).",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the factory.")
    resources: PolicyResources = Field(
        default_factory=PolicyResources,
        description="Resources per policy shard actor; none (the default): stepped inside the environment actor.",
    )
    role: PolicyRole = Field(
        default=PolicyRole.FOCAL,
        description=(
            "`focal` (the default: ranked on the leaderboard) or `background` (Melting Pot's background "
            "population: plays, is not ranked; results report each focal policy's per-capita return beside "
            "the background's in the same episodes)."
        ),
    )


class TeamSpec(ApiModel):
    """A group of environment agents, selected by a glob over agent ids."""

    name: str = Field(min_length=1, max_length=63, pattern=DNS1123_LABEL, description="Unique team name.")
    agents: str = Field(
        min_length=1, max_length=256, description="Glob over environment agent ids, e.g. `red_*`."
    )

    def matches(self, agent_id: str) -> bool:
        return fnmatch.fnmatchcase(agent_id, self.agents)


class MatchmakingSpec(ApiModel):
    """Who plays whom."""

    mode: MatchmakingMode = Field(
        default=MatchmakingMode.FIXED,
        description=(
            "`fixed`: `assignments` maps team -> policy (a single team is split evenly between "
            "all policies); `round-robin`: every ordered pairing of distinct policies over the teams."
        ),
    )
    assignments: dict[str, Annotated[str, Field(min_length=1, max_length=NAME_MAX_LENGTH)]] = Field(
        default_factory=dict,
        max_length=64,
        description="For `fixed`: team name -> policy name.",
    )


class RatingSpec(ApiModel):
    """How the leaderboard ranks policies and how sure it is (docs/ratings-and-matchmaking.md)."""

    method: RatingMethod | None = Field(
        default=None,
        description=(
            "`bradley-terry` (maximum-likelihood fit over all pairwise results, Elo scale, independent of "
            "episode order), `mean-return`, `elo` (sequential, depends on episode order) or `openskill` "
            "(Plackett-Luce; its interval is a posterior band, not a confidence interval). Unset: "
            "`mean-return` when a policy has role background, else `bradley-terry` for `round-robin` plans and "
            "`mean-return` for `fixed` ones (resolved by the arena, shown in the results)."
        ),
    )
    resamples: int = Field(
        default=1000,
        ge=100,
        le=100_000,
        description="Bootstrap resamples (episodes resampled within each pairing) behind every interval.",
    )
    confidence_level: float = Field(
        default=0.95,
        ge=0.5,
        le=0.999,
        description="Coverage of the intervals, and the level at which two policies count as separated.",
    )
    optimality_target: float | None = Field(
        default=None,
        description="Per-episode return counted as optimal; when set, results report the optimality gap.",
    )


class StoppingSpec(ApiModel):
    """When to stop scheduling episodes because the leaderboard is decided (docs/ratings-and-matchmaking.md).

    The rule looks at the leaderboard at fixed points of the plan (every `checkEvery` episodes per
    pairing, episodes taken round by round), on the counted episodes before that point only, so
    the decision depends on the counted episodes and never on when parallel episodes finished.
    """

    model_config = {
        **ApiModel.model_config,
        "json_schema_extra": _validations(
            cel(
                "(has(self.separated) && self.separated) || has(self.halfWidth) || has(self.maxEpisodes)",
                "stopping: set at least one of stopping.separated, stopping.halfWidth or stopping.maxEpisodes",
                ".separated",
            ),
        ),
    }

    separated: bool = Field(
        default=False,
        description=(
            "Stop once every adjacent pair of the leaderboard is separated at rating.confidenceLevel "
            "(Bonferroni-corrected over the looks the plan allows, so looking often does not inflate "
            "the chance of a wrong stop)."
        ),
    )
    half_width: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Stop once every leaderboard interval is at most this wide on each side ((ciHigh - ciLow) / 2, "
            "in rating units: Elo points for bradley-terry and elo, return for mean-return)."
        ),
    )
    max_episodes: int | None = Field(
        default=None,
        ge=1,
        le=100_000_000,
        description="Play at most this many episodes in all (the first ones in round order); none: the whole plan.",
    )
    check_every: int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="Episodes per pairing between two looks at the leaderboard (a look needs every earlier one counted).",
    )

    @model_validator(mode="after")
    def _some_criterion(self) -> StoppingSpec:
        if not self.separated and self.half_width is None and self.max_episodes is None:
            raise SpecError([(
                ("separated",),
                "stopping: set at least one of stopping.separated, stopping.halfWidth or stopping.maxEpisodes",
            )])
        return self


class ExecutionSpec(ApiModel):
    """How the arena is laid out on Ray."""

    agents_per_shard: int = Field(
        default=256, ge=1, le=1_000_000, description="Environment agents served by one policy shard actor."
    )
    placement_strategy: PlacementStrategy = Field(
        default=PlacementStrategy.SPREAD, description="Ray placement group strategy for the shards."
    )
    parallel_episodes: int = Field(default=1, ge=1, le=256, description="Episodes stepped concurrently.")


class CheckpointSpec(ApiModel):
    """How often, and where, shard and environment state is saved."""

    interval_steps: int = Field(
        default=100, ge=1, le=1_000_000, description="Environment steps between checkpoints."
    )
    storage_uri: str | None = Field(
        default=None,
        alias="storageURI",
        pattern=STORAGE_URI_PATTERN,
        description=(
            "Durable place for checkpoints (`file://`, `s3://`, `gs://`); needed to survive loss of the head node. "
            "`s3://`/`gs://` need pyarrow (the `s3` extra) and take the endpoint and credentials from the job's "
            "environment: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ... (docs/runtime.md, object stores)."
        ),
    )


RECORDING_MAX_PAIRINGS = 64
RECORDING_MAX_OBSERVED_AGENTS = 64


class RecordingEpisodes(ApiModel):
    """Which episodes are recorded, after gymnasium's RecordVideo triggers; an episode is recorded
    when any selector given picks it, and every episode when none is given."""

    first: int | None = Field(
        default=None, ge=1, le=100_000, description="The first n episodes of the plan (indices 0..n-1)."
    )
    every: int | None = Field(
        default=None, ge=1, le=100_000, description="Every k-th episode of the plan (indices 0, k, 2k, ...)."
    )
    pairings: list[Annotated[dict[str, Annotated[str, Field(max_length=NAME_MAX_LENGTH)]], Field(max_length=64)]] = (
        Field(
            default_factory=list,
            max_length=RECORDING_MAX_PAIRINGS,
            description=(
                "Episodes of these pairings, each a map team -> policy (e.g. `{red: greedy, blue: random}`); an "
                "episode matches when each team named plays that policy (a team shared by several policies "
                "matches any of them); teams left out match anything."
            ),
        )
    )

    @property
    def everything(self) -> bool:
        return self.first is None and self.every is None and not self.pairings

    def selects(self, index: int, pairing: dict[str, str]) -> bool:
        """Whether episode `index`, with `pairing` (team -> "p1,p2", `EpisodeRecord.pairing`), is recorded."""
        if self.everything:
            return True
        if self.first is not None and index < self.first:
            return True
        if self.every is not None and index % self.every == 0:
            return True
        return any(
            all(policy in pairing.get(team, "").split(",") for team, policy in wanted.items())
            for wanted in self.pairings
        )


class RecordingObservations(ApiModel):
    """Observations are large: they are recorded only for a sample of agents, and only if asked."""

    agents: int = Field(
        default=0,
        ge=0,
        le=RECORDING_MAX_OBSERVED_AGENTS,
        description="How many agents' observations to record per step (spread evenly over the agent list); 0: none.",
    )


class RecordingSpec(ApiModel):
    """Record episodes (actions, rewards, terminations and truncations per agent per step) as Parquet,
    for `swarm-arena replay` and `swarm-arena render` (docs/recording.md). Absent: nothing is recorded."""

    episodes: RecordingEpisodes = Field(
        default_factory=RecordingEpisodes, description="Which episodes; none given: every episode."
    )
    observations: RecordingObservations = Field(
        default_factory=RecordingObservations, description="Observations of a sample of agents (off by default)."
    )
    storage_uri: str | None = Field(
        default=None,
        alias="storageURI",
        pattern=STORAGE_URI_PATTERN,
        description=(
            "Where the recordings go (`file://` directory, `s3://`, `gs://`); unset: `checkpoint.storageURI`, "
            "so one of the two is required."
        ),
    )

    def uri(self, checkpoint: CheckpointSpec) -> str:
        uri = self.storage_uri or checkpoint.storage_uri
        assert uri, "validated: recording.storageURI or checkpoint.storageURI"
        return uri


class FaultToleranceSpec(ApiModel):
    """How hard the arena tries to keep a run alive."""

    max_actor_restarts: int = Field(
        default=3, ge=0, le=1000, description="Restarts allowed per named actor."
    )


class HeadResources(ApiModel):
    """Resources of the Ray head pod."""

    cpu: float = Field(default=1.0, gt=0, le=512, description="CPUs of the head pod.")
    memory: str = Field(default="2Gi", pattern=QUANTITY_PATTERN, description="Memory of the head pod.")


class WorkerResources(ApiModel):
    """Resources of one worker pod."""

    cpu: float = Field(default=1.0, gt=0, le=512, description="CPUs per worker pod.")
    memory: str = Field(default="2Gi", pattern=QUANTITY_PATTERN, description="Memory per worker pod.")
    gpu: int = Field(
        default=0, ge=0, le=16, description="`nvidia.com/gpu` per worker pod; > 0 makes this a GPU group."
    )


class Toleration(ApiModel):
    """A Kubernetes toleration (core/v1)."""

    key: str | None = Field(default=None, description="Taint key.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="`Exists` or `Equal`.")
    value: str | None = Field(default=None, description="Taint value.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect."
    )
    toleration_seconds: int | None = Field(default=None, description="For `NoExecute`.")


class HeadSpec(ApiModel):
    """The Ray head group."""

    resources: HeadResources = Field(default_factory=HeadResources, description="Head pod resources.")
    node_selector: dict[str, str] = Field(default_factory=dict, max_length=64, description="Head pod nodeSelector.")
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64, description="Head pod tolerations.")


class WorkerGroupSpec(ApiModel):
    """One KubeRay worker group."""

    model_config = {
        **ApiModel.model_config,
        "json_schema_extra": _validations(
            cel("self.minReplicas <= self.replicas", "minReplicas must be <= replicas", ".minReplicas"),
            cel(
                "!has(self.maxReplicas) || self.replicas <= self.maxReplicas",
                "maxReplicas must be >= replicas",
                ".maxReplicas",
            ),
        ),
    }

    name: str = Field(min_length=1, max_length=63, pattern=DNS1123_LABEL, description="Unique group name.")
    replicas: int = Field(default=1, ge=0, le=10_000, description="Worker pods.")
    min_replicas: int = Field(default=0, ge=0, le=10_000, description="Lower bound for the autoscaler.")
    max_replicas: int | None = Field(
        default=None, ge=0, le=10_000, description="Upper bound for the autoscaler (default: replicas)."
    )
    resources: WorkerResources = Field(default_factory=WorkerResources, description="Per worker pod.")
    node_selector: dict[str, str] = Field(default_factory=dict, max_length=64, description="Pod nodeSelector.")
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64, description="Pod tolerations.")

    @property
    def is_gpu(self) -> bool:
        return self.resources.gpu > 0

    @model_validator(mode="after")
    def _replica_bounds(self) -> WorkerGroupSpec:
        problems: list[tuple[Loc, str]] = []
        if self.min_replicas > self.replicas:
            problems.append(
                (("minReplicas",), f"minReplicas must be <= replicas ({self.min_replicas} > {self.replicas})")
            )
        if self.max_replicas is not None and self.replicas > self.max_replicas:
            problems.append(
                (("maxReplicas",), f"maxReplicas must be >= replicas ({self.max_replicas} < {self.replicas})")
            )
        if problems:
            raise SpecError(problems)
        return self


class ClusterSpec(ApiModel):
    """Where the arena runs: an existing Ray cluster, or a RayCluster the operator creates."""

    model_config = {
        **ApiModel.model_config,
        "json_schema_extra": _validations(
            cel(
                "!(has(self.address) && size(self.workerGroups) > 0)",
                "set exactly one of cluster.address or cluster.workerGroups, not both",
                ".address",
            ),
            cel(
                "has(self.address) || size(self.workerGroups) > 0",
                "set exactly one of cluster.address (an existing Ray cluster) or cluster.workerGroups "
                "(a RayCluster the operator creates)",
            ),
        ),
    }

    address: str | None = Field(
        default=None,
        pattern=RAY_ADDRESS_PATTERN,
        description="An existing Ray cluster (dashboard URL, e.g. `http://ray-head:8265`); no RayCluster is created.",
    )
    ray_version: str = Field(
        default=RAY_VERSION,
        pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$",
        description=f"Ray version of the RayCluster (default: {RAY_VERSION}, the release swarm-arena is tested with).",
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description=(
            f"Container image of the Ray pods (default: `{RAY_IMAGE_REPOSITORY}:<package version>-ray<rayVersion>`, "
            "the swarm-arena package on that Ray release; the operator's `--ray-image-repository` changes the "
            "repository). A custom image needs swarm-arena installed."
        ),
    )
    head: HeadSpec = Field(default_factory=HeadSpec, description="The head group.")
    worker_groups: list[WorkerGroupSpec] = Field(
        default_factory=list,
        max_length=16,
        description="Worker groups; a GPU group has resources.gpu > 0.",
        json_schema_extra=_unique_by_name("workerGroups"),
    )
    autoscaling: bool = Field(default=False, description="Enable the KubeRay in-tree autoscaler.")
    pods: RayPodsSpec = Field(
        default_factory=RayPodsSpec,
        description="Settings of every Ray pod (serviceAccountName, imagePullSecrets, labels, annotations, "
        "securityContext, priorityClassName); the defaults pass the `restricted` Pod Security Standard.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> ClusterSpec:
        problems: list[tuple[Loc, str]] = []
        if self.address and self.worker_groups:
            problems.append(
                (("address",), "set exactly one of cluster.address or cluster.workerGroups, not both; remove one")
            )
        if not self.address and not self.worker_groups:
            problems.append(
                ((), "set exactly one of cluster.address (an existing Ray cluster) or cluster.workerGroups "
                 "(a RayCluster the operator creates)")
            )
        names = [g.name for g in self.worker_groups]
        for i in _repeated(names):
            problems.append(
                (("workerGroups", i, "name"), f"workerGroups[].name must be unique; {names[i]!r} is repeated")
            )
        if problems:
            raise SpecError(problems)
        return self

    @property
    def has_gpu_group(self) -> bool:
        return any(g.is_gpu for g in self.worker_groups)


class RuntimeEnvSpec(ApiModel):
    """A Ray runtime_env for the arena job: how users' own environment and policy code gets there.

    Keys are Ray's own (`pip`, `py_modules`, `working_dir`, `env_vars`), as in a RayJob's
    `runtimeEnvYAML`, so a snippet from Ray's docs pastes in unchanged.
    """

    model_config = {
        **ApiModel.model_config,
        "json_schema_extra": _validations(
            cel(
                "!has(self.env_vars) || self.env_vars.all(k, !k.startsWith('SWARM_ARENA_'))",
                "runtimeEnv.env_vars: names starting with SWARM_ARENA_ are set by the operator; rename them",
                ".env_vars",
            ),
        ),
    }

    pip: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None, max_length=128, description="pip requirements installed for the job (e.g. `magent2==0.3.4`)."
    )
    py_modules: list[Annotated[str, Field(min_length=1, max_length=1024)]] | None = Field(
        default=None,
        alias="py_modules",
        max_length=32,
        description="URIs of Python modules (zip packages, e.g. `s3://bucket/mypolicies.zip`) importable by the job.",
    )
    working_dir: str | None = Field(
        default=None,
        alias="working_dir",
        min_length=1,
        max_length=1024,
        description="URI of a zip with the job's working directory (its modules are importable).",
    )
    env_vars: dict[str, Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None,
        alias="env_vars",
        max_length=128,
        description="Environment variables of the job and its actors.",
    )

    @model_validator(mode="after")
    def _reserved(self) -> RuntimeEnvSpec:
        reserved = sorted(k for k in (self.env_vars or {}) if k.startswith(RESERVED_ENV_PREFIX))
        if reserved:
            raise SpecError([
                (("env_vars", k), f"names starting with {RESERVED_ENV_PREFIX} are set by the operator; rename it")
                for k in reserved
            ])
        return self

    def to_ray(self) -> dict[str, Any]:
        """The runtime_env dict Ray takes (unset keys left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SwarmEvaluationSpec(ApiModel):
    """What to evaluate, how, and where."""

    # The API server applies defaults before it runs these rules, so defaulted fields (teams,
    # matchmaking.mode, matchmaking.assignments, cluster.workerGroups) are always present.
    model_config = {
        **ApiModel.model_config,
        "json_schema_extra": _validations(
            cel(
                # Keys are counted through team names (bounded strings): comparing the keys
                # themselves would make the estimated cost unbounded.
                "size(self.matchmaking.assignments) == (size(self.teams) > 0"
                " ? size(self.teams.filter(t, t.name in self.matchmaking.assignments))"
                " : ('all' in self.matchmaking.assignments ? 1 : 0))",
                "matchmaking.assignments: every key must name a team of spec.teams (`all` when teams is empty)",
                ".matchmaking.assignments",
            ),
            cel(
                "self.matchmaking.assignments.all(t,"
                " self.policies.exists(p, p.name == self.matchmaking.assignments[t]))",
                "matchmaking.assignments: every value must name a policy of spec.policies",
                ".matchmaking.assignments",
            ),
            cel(
                "self.matchmaking.mode != 'fixed' || size(self.teams) <= 1"
                " || self.teams.all(t, t.name in self.matchmaking.assignments)",
                "matchmaking.assignments: with mode fixed and several teams, every team needs a policy",
                ".matchmaking.assignments",
            ),
            cel(
                "self.matchmaking.mode != 'round-robin' || size(self.matchmaking.assignments) == 0",
                "matchmaking.assignments is only for mode fixed; remove it for round-robin",
                ".matchmaking.assignments",
            ),
            cel(
                "self.matchmaking.mode != 'round-robin' || size(self.teams) >= 2",
                "teams: matchmaking.mode round-robin needs at least 2 teams",
                ".teams",
            ),
            cel(
                "self.matchmaking.mode != 'round-robin' || size(self.policies) >= size(self.teams)",
                "policies: matchmaking.mode round-robin needs at least as many policies as teams",
                ".policies",
            ),
            cel(
                "size(self.policies) == 0 || self.policies.exists(p, p.role == 'focal')",
                "policies: at least one policy must have role focal (the default); background policies are not ranked",
                ".policies",
            ),
            cel(
                "!has(self.recording) || has(self.recording.storageURI) || has(self.checkpoint.storageURI)",
                "recording.storageURI: where recordings go is needed when checkpoint.storageURI is not set "
                "(a file:// directory for local runs)",
                ".recording.storageURI",
            ),
            cel(
                "!has(self.recording) || self.recording.episodes.pairings.all(m, m.all(t,"
                " size(self.teams) > 0 ? self.teams.exists(x, x.name == t) : t == 'all'))",
                "recording.episodes.pairings: every key must name a team of spec.teams (`all` when teams is empty)",
                ".recording.episodes.pairings",
            ),
            cel(
                "!has(self.recording) || self.recording.episodes.pairings.all(m, m.all(t,"
                " self.policies.exists(p, p.name == m[t])))",
                "recording.episodes.pairings: every value must name a policy of spec.policies",
                ".recording.episodes.pairings",
            ),
            cel(
                "!has(self.cluster) || size(self.cluster.workerGroups) == 0"
                " || !self.policies.exists(p, p.resources.gpu > 0.0)"
                " || self.cluster.workerGroups.exists(g, g.resources.gpu > 0)",
                "cluster.workerGroups: policies with resources.gpu > 0 need a GPU worker group "
                "(one with resources.gpu > 0)",
                ".cluster.workerGroups",
            ),
        ),
    }

    environment: EnvironmentSpec = Field(description="The multi-agent environment.")
    policies: list[PolicySpec] = Field(
        min_length=1,
        max_length=64,
        description="The contestants.",
        json_schema_extra=_unique_by_name("policies"),
    )
    teams: list[TeamSpec] = Field(
        default_factory=list,
        max_length=64,
        description="Groups of environment agents; default one team `all` matching `*`.",
        json_schema_extra=_unique_by_name("teams"),
    )
    matchmaking: MatchmakingSpec = Field(default_factory=MatchmakingSpec, description="Who plays whom.")
    episodes: int = Field(
        default=10, ge=1, le=100_000, description="Total episodes (round-robin: per pairing)."
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="The whole run is reproducible from it.")
    rating: RatingSpec = Field(default_factory=RatingSpec, description="How the leaderboard ranks policies.")
    stopping: StoppingSpec | None = Field(
        default=None,
        description=(
            "Stop scheduling episodes once the leaderboard is decided (every adjacent pair separated, every "
            "interval narrow enough) or after maxEpisodes; none: play the whole plan."
        ),
    )
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec, description="Layout on Ray.")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Checkpointing.")
    fault_tolerance: FaultToleranceSpec = Field(
        default_factory=FaultToleranceSpec, description="Actor restarts."
    )
    recording: RecordingSpec | None = Field(
        default=None, description="Record episodes for replay and rendering (docs/recording.md); absent: none."
    )
    cluster: ClusterSpec | None = Field(
        default=None,
        description="Where to run; when absent the operator creates a RayCluster with one default CPU worker group.",
    )
    suspend: bool = Field(default=False, description="Tear the Ray cluster down, keep progress; resume when unset.")
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Fail the evaluation when it runs longer than this."
    )
    backoff_limit: int = Field(
        default=2, ge=0, le=100, description="Job re-submissions after a failed run (each resumes from checkpoint)."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete the Ray cluster (not the evaluation) this long after it finished."
    )
    runtime_env: RuntimeEnvSpec | None = Field(
        default=None,
        description=(
            "A Ray runtime_env for the job (`pip`, `py_modules`, `working_dir`, `env_vars`): users' own "
            "environment and policy code. Used by the operator; `swarm-arena run` uses the local Python."
        ),
    )

    # ---- derived views -------------------------------------------------------------------

    @property
    def effective_teams(self) -> list[TeamSpec]:
        return self.teams or [TeamSpec(name="all", agents="*")]

    @property
    def planned_episodes(self) -> int:
        """How many episodes the plan holds: `episodes` per pairing under round-robin."""
        if self.matchmaking.mode is MatchmakingMode.ROUND_ROBIN:
            return math.perm(len(self.policies), len(self.effective_teams)) * self.episodes
        return self.episodes

    @property
    def rating_method(self) -> RatingMethod:
        """`rating.method`, or the default for this plan: mean return with background policies (Melting
        Pot's focal per-capita return), Bradley-Terry for round-robin, else mean return."""
        if self.rating.method is not None:
            return self.rating.method
        if self.background_policy_names:  # Melting Pot's score: focal per-capita return
            return RatingMethod.MEAN_RETURN
        if self.matchmaking.mode is MatchmakingMode.ROUND_ROBIN:
            return RatingMethod.BRADLEY_TERRY
        return RatingMethod.MEAN_RETURN

    @property
    def policy_names(self) -> list[str]:
        return [p.name for p in self.policies]

    @property
    def focal_policy_names(self) -> list[str]:
        """The policies the leaderboard ranks."""
        return [p.name for p in self.policies if p.role is PolicyRole.FOCAL]

    @property
    def background_policy_names(self) -> list[str]:
        return [p.name for p in self.policies if p.role is PolicyRole.BACKGROUND]

    def policy(self, name: str) -> PolicySpec:
        for p in self.policies:
            if p.name == name:
                return p
        raise KeyError(name)

    # ---- cross-field rules (mirrored by CEL in the CRD) --------------------------------------

    @model_validator(mode="after")
    def _cross_field(self) -> SwarmEvaluationSpec:
        problems: list[tuple[Loc, str]] = []
        names = self.policy_names
        for i in _repeated(names):
            problems.append((("policies", i, "name"), f"policies[].name must be unique; {names[i]!r} is repeated"))
        if not self.focal_policy_names:
            problems.append(
                (("policies",), "at least one policy must have role focal (the default); background policies are not ranked")
            )
        team_names = [t.name for t in self.effective_teams]
        for i in _repeated(team_names):
            problems.append((("teams", i, "name"), f"teams[].name must be unique; {team_names[i]!r} is repeated"))

        assignments = self.matchmaking.assignments
        here: Loc = ("matchmaking", "assignments")
        for team, policy in assignments.items():
            if team not in team_names:
                hint = "spec.teams is empty, so the only team is `all`" if not self.teams else (
                    f"teams are: {', '.join(team_names)}"
                )
                problems.append(((*here, team), f"names team {team!r}, which is not defined; {hint}"))
            if policy not in names:
                problems.append(
                    ((*here, team), f"names policy {policy!r}, which is not defined; policies are: {', '.join(names)}")
                )
        mode = self.matchmaking.mode
        if mode is MatchmakingMode.FIXED and len(team_names) > 1:
            missing = [t for t in team_names if t not in assignments]
            if missing:
                problems.append(
                    (here, f"with mode fixed and several teams every team needs a policy; missing: {', '.join(missing)}")
                )
        if mode is MatchmakingMode.ROUND_ROBIN:
            if assignments:
                problems.append((here, "only for mode fixed; remove it for round-robin"))
            if len(team_names) < 2:
                problems.append(
                    (("teams",), f"matchmaking.mode round-robin needs at least 2 teams, got {len(team_names)}; "
                     "define teams (e.g. red_* and blue_*) or use mode fixed")
                )
            elif len(names) < len(team_names):
                problems.append(
                    (("policies",), f"matchmaking.mode round-robin needs at least as many policies as teams "
                     f"({len(names)} < {len(team_names)})")
                )
        if self.recording is not None:
            problems.extend(self._recording_problems(team_names, names))
        gpu_policies = [p.name for p in self.policies if p.resources.gpu > 0]
        if gpu_policies and self.cluster and self.cluster.worker_groups and not self.cluster.has_gpu_group:
            problems.append(
                (("cluster", "workerGroups"), f"policies {', '.join(gpu_policies)} ask for resources.gpu > 0 "
                 "but no worker group has resources.gpu > 0; add a GPU worker group")
            )
        if problems:
            raise SpecError(problems)
        return self

    def _recording_problems(self, team_names: list[str], names: list[str]) -> list[tuple[Loc, str]]:
        assert self.recording is not None
        problems: list[tuple[Loc, str]] = []
        if not self.recording.storage_uri and not self.checkpoint.storage_uri:
            problems.append(
                (("recording", "storageURI"), "where recordings go is needed when checkpoint.storageURI is not set; "
                 "give a file:// directory for local runs, or s3:// / gs://")
            )
        for i, wanted in enumerate(self.recording.episodes.pairings):
            here: Loc = ("recording", "episodes", "pairings", i)
            for team, policy in wanted.items():
                if team not in team_names:
                    problems.append(((*here, team), f"names team {team!r}, which is not defined; teams are: "
                                     f"{', '.join(team_names)}"))
                if policy not in names:
                    problems.append(((*here, team), f"names policy {policy!r}, which is not defined; policies are: "
                                     f"{', '.join(names)}"))
        return problems
