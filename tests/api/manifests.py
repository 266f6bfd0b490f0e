"""One good manifest and a table of bad ones, shared by the validate, CEL and API-server tests.

Each bad case says where the problem is: `path` is what `swarm-arena validate` names;
`server_path` is what the API server names when it differs (CEL rules can only point at a
fixed field, not at `policies[1]` or a map key); `layer` says which check catches it:

* `schema`: bounds, enums, patterns, unknown fields (OpenAPI schema; no CEL rule involved);
* `cel`: cross-field rules (CEL `x-kubernetes-validations` on the server, model validators here);
* `import`: factories that do not resolve (only the operator / `validate` can know);
* `envelope`: apiVersion / kind (a different resource to the API server).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

GOOD: dict[str, Any] = {
    "apiVersion": "arena.swarm.dev/v1alpha1",
    "kind": "SwarmEvaluation",
    "metadata": {"name": "table", "namespace": "default"},
    "spec": {
        "environment": {"factory": "foraging", "params": {"agents": 40}, "maxSteps": 20},
        "policies": [
            {"name": "greedy", "factory": "greedy", "resources": {"cpu": 0.5, "memory": "512Mi"}},
            {"name": "random", "factory": "random"},
        ],
        "teams": [{"name": "red", "agents": "agent_1*"}, {"name": "blue", "agents": "agent_*"}],
        "matchmaking": {"mode": "fixed", "assignments": {"red": "greedy", "blue": "random"}},
        "episodes": 2,
        "checkpoint": {"storageURI": "file:///tmp/swarm-arena-table"},
        "cluster": {
            "workerGroups": [
                {"name": "cpu", "replicas": 2, "minReplicas": 1, "maxReplicas": 3,
                 "resources": {"cpu": 2, "memory": "4Gi"}},
            ]
        },
    },
}


@dataclass(frozen=True)
class Bad:
    id: str
    mutate: Callable[[dict[str, Any]], None]
    path: str
    layer: str
    server_path: str | None = None
    tags: tuple[str, ...] = field(default=())

    def manifest(self) -> dict[str, Any]:
        doc = copy.deepcopy(GOOD)
        self.mutate(doc)
        return doc

    @property
    def api_path(self) -> str:
        return self.server_path or self.path


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """`_set("spec.cluster.workerGroups.0.minReplicas", 5)`: assign one value deep in the doc."""

    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = copy.deepcopy(value)

    return mutate


_DELETE = object()


def _round_robin(teams: int, policies: int, assignments: dict[str, str] | None = None):
    def mutate(doc: dict[str, Any]) -> None:
        spec = doc["spec"]
        spec["teams"] = [{"name": f"team-{i}", "agents": f"agent_{i}*"} for i in range(teams)]
        spec["policies"] = [{"name": f"p{i}", "factory": "random"} for i in range(policies)]
        spec["matchmaking"] = {"mode": "round-robin", **({"assignments": assignments} if assignments else {})}

    return mutate


def _rename_policy(index: int, new: str) -> Callable[[dict[str, Any]], None]:
    """Rename a policy and the assignment naming it, so only the name itself is wrong."""

    def mutate(doc: dict[str, Any]) -> None:
        spec = doc["spec"]
        old = spec["policies"][index]["name"]
        spec["policies"][index]["name"] = new
        spec["matchmaking"]["assignments"] = {
            team: new if policy == old else policy for team, policy in spec["matchmaking"]["assignments"].items()
        }

    return mutate


def _no_policies(doc: dict[str, Any]) -> None:
    spec = doc["spec"]
    spec["policies"] = []
    del spec["teams"], spec["matchmaking"]


def _gpu_policy_without_gpu_group(doc: dict[str, Any]) -> None:
    doc["spec"]["policies"][0]["resources"]["gpu"] = 0.25


def _both_targets(doc: dict[str, Any]) -> None:
    doc["spec"]["cluster"]["address"] = "http://ray-head:8265"


def _recording_without_storage(doc: dict[str, Any]) -> None:
    del doc["spec"]["checkpoint"]
    doc["spec"]["recording"] = {"episodes": {"first": 1}}


BAD: list[Bad] = [
    Bad("episodes-above-max", _set("spec.episodes", 100_001), "spec.episodes", "schema"),
    Bad("episodes-zero", _set("spec.episodes", 0), "spec.episodes", "schema"),
    Bad("max-steps-zero", _set("spec.environment.maxSteps", 0), "spec.environment.maxSteps", "schema"),
    Bad("max-steps-above-max", _set("spec.environment.maxSteps", 1_000_001), "spec.environment.maxSteps", "schema"),
    Bad("agents-per-shard-zero", _set("spec.execution", {"agentsPerShard": 0}), "spec.execution.agentsPerShard", "schema"),
    Bad("seed-negative", _set("spec.seed", -1), "spec.seed", "schema"),
    Bad("head-cpu-zero", _set("spec.cluster.head", {"resources": {"cpu": 0}}), "spec.cluster.head.resources.cpu", "schema"),
    Bad("rating-method-unknown", _set("spec.rating", {"method": "trueskill"}), "spec.rating.method", "schema"),
    Bad("rating-resamples-too-few", _set("spec.rating", {"resamples": 20}), "spec.rating.resamples", "schema"),
    Bad("rating-confidence-above-one", _set("spec.rating", {"confidenceLevel": 1.5}), "spec.rating.confidenceLevel",
        "schema"),
    Bad("stopping-half-width-zero", _set("spec.stopping", {"halfWidth": 0}), "spec.stopping.halfWidth", "schema"),
    Bad("stopping-check-every-zero", _set("spec.stopping", {"maxEpisodes": 5, "checkEvery": 0}),
        "spec.stopping.checkEvery", "schema"),
    Bad("stopping-without-criterion", _set("spec.stopping", {"checkEvery": 5}), "spec.stopping.separated", "cel"),
    Bad("policy-role-unknown", _set("spec.policies.1.role", "bot"), "spec.policies[1].role", "schema"),
    Bad("no-focal-policy", _set("spec.policies", [{"name": "greedy", "factory": "greedy", "role": "background"},
                                                  {"name": "random", "factory": "random", "role": "background"}]),
        "spec.policies", "cel"),
    Bad("placement-lowercase", _set("spec.execution", {"placementStrategy": "spread"}),
        "spec.execution.placementStrategy", "schema"),
    Bad("matchmaking-mode-unknown", _set("spec.matchmaking.mode", "league"), "spec.matchmaking.mode", "schema"),
    Bad("policy-name-uppercase", _rename_policy(0, "Greedy"), "spec.policies[0].name", "schema"),
    Bad("policy-name-underscore", _rename_policy(1, "my_random"), "spec.policies[1].name", "schema"),
    Bad("factory-malformed", _set("spec.environment.factory", "not a factory"), "spec.environment.factory", "schema"),
    Bad("storage-uri-http", _set("spec.checkpoint.storageURI", "http://bucket/x"), "spec.checkpoint.storageURI", "schema"),
    Bad("memory-not-a-quantity", _set("spec.policies.0.resources.memory", "8GB"),
        "spec.policies[0].resources.memory", "schema"),
    Bad("unknown-field-typo", _set("spec.episdoes", 3), "spec.episdoes", "schema"),
    Bad("policies-empty", _no_policies, "spec.policies", "schema"),
    Bad("environment-missing", _set("spec.environment", _DELETE), "spec.environment", "schema"),
    Bad("policy-names-repeated", _set("spec.policies.1.name", "greedy"), "spec.policies[1].name", "cel",
        server_path="spec.policies"),
    Bad("team-names-repeated", _set("spec.teams.1.name", "red"), "spec.teams[1].name", "cel",
        server_path="spec.teams"),
    Bad("assignment-unknown-team", _set("spec.matchmaking.assignments.green", "random"),
        "spec.matchmaking.assignments.green", "cel", server_path="spec.matchmaking.assignments"),
    Bad("assignment-unknown-policy", _set("spec.matchmaking.assignments.red", "ghost"),
        "spec.matchmaking.assignments.red", "cel", server_path="spec.matchmaking.assignments"),
    Bad("fixed-team-without-policy", _set("spec.matchmaking.assignments", {"red": "greedy"}),
        "spec.matchmaking.assignments", "cel"),
    Bad("round-robin-one-team", _round_robin(teams=1, policies=2), "spec.teams", "cel"),
    Bad("round-robin-fewer-policies", _round_robin(teams=3, policies=2), "spec.policies", "cel"),
    Bad("round-robin-with-assignments", _round_robin(teams=2, policies=2, assignments={"team-0": "p0"}),
        "spec.matchmaking.assignments", "cel"),
    Bad("cluster-address-and-worker-groups", _both_targets, "spec.cluster.address", "cel"),
    Bad("cluster-neither", _set("spec.cluster", {"autoscaling": True}), "spec.cluster", "cel"),
    Bad("worker-group-names-repeated",
        _set("spec.cluster.workerGroups", [{"name": "cpu"}, {"name": "cpu"}]),
        "spec.cluster.workerGroups[1].name", "cel", server_path="spec.cluster.workerGroups"),
    Bad("min-replicas-above-replicas", _set("spec.cluster.workerGroups.0.minReplicas", 5),
        "spec.cluster.workerGroups[0].minReplicas", "cel"),
    Bad("max-replicas-below-replicas", _set("spec.cluster.workerGroups.0.maxReplicas", 1),
        "spec.cluster.workerGroups[0].maxReplicas", "cel"),
    Bad("gpu-policy-without-gpu-group", _gpu_policy_without_gpu_group, "spec.cluster.workerGroups", "cel"),
    Bad("recording-every-zero", _set("spec.recording", {"episodes": {"every": 0}}), "spec.recording.episodes.every",
        "schema"),
    Bad("recording-observations-too-many", _set("spec.recording", {"observations": {"agents": 65}}),
        "spec.recording.observations.agents", "schema"),
    Bad("recording-storage-uri-http", _set("spec.recording", {"storageURI": "http://bucket/x"}),
        "spec.recording.storageURI", "schema"),
    Bad("recording-without-storage", _recording_without_storage, "spec.recording.storageURI", "cel"),
    Bad("recording-pairing-unknown-team", _set("spec.recording", {"episodes": {"pairings": [{"green": "greedy"}]}}),
        "spec.recording.episodes.pairings[0].green", "cel", server_path="spec.recording.episodes.pairings"),
    Bad("recording-pairing-unknown-policy", _set("spec.recording", {"episodes": {"pairings": [{"red": "ghost"}]}}),
        "spec.recording.episodes.pairings[0].red", "cel", server_path="spec.recording.episodes.pairings"),
    Bad("runtime-env-reserved-env-var", _set("spec.runtimeEnv", {"env_vars": {"SWARM_ARENA_EVALUATION": "x"}}),
        "spec.runtimeEnv.env_vars.SWARM_ARENA_EVALUATION", "cel", server_path="spec.runtimeEnv.env_vars"),
    Bad("runtime-env-unknown-key", _set("spec.runtimeEnv", {"conda": {"dependencies": ["numpy"]}}),
        "spec.runtimeEnv.conda", "schema"),
    Bad("metadata-name-not-a-label", _set("metadata.name", "Table.v2"), "metadata.name", "cel"),
    Bad("environment-module-missing", _set("spec.environment.factory", "swarm_arena_no_such_module:parallel_env"),
        "spec.environment.factory", "import"),
    Bad("policy-attribute-missing", _set("spec.policies.1.factory", "json:no_such_policy"),
        "spec.policies[1].factory", "import"),
    Bad("api-version-wrong", _set("apiVersion", "arena.swarm.dev/v1"), "apiVersion", "envelope"),
    Bad("kind-wrong", _set("kind", "SwarmEvaluations"), "kind", "envelope"),
]
