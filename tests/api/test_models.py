"""The API models: defaults, and the wire (camelCase) <-> Python (snake_case) round trip."""

from __future__ import annotations

import copy

from swarm_arena.api import SwarmEvaluation
from swarm_arena.api.spec import MatchmakingMode, PlacementStrategy, RatingMethod, format_path
from swarm_arena.api.status import Progress, SwarmEvaluationStatus
from tests.api.manifests import GOOD

MINIMAL = {
    "apiVersion": "arena.swarm.dev/v1alpha1",
    "kind": "SwarmEvaluation",
    "metadata": {"name": "minimal"},
    "spec": {
        "environment": {"factory": "foraging"},
        "policies": [{"name": "random", "factory": "random"}],
    },
}


def test_minimal_manifest_gets_the_documented_defaults() -> None:
    spec = SwarmEvaluation.model_validate(MINIMAL).spec
    assert spec.environment.max_steps == 500
    assert spec.environment.params == {}
    assert spec.episodes == 10
    assert spec.seed == 0
    assert spec.matchmaking.mode is MatchmakingMode.FIXED
    assert spec.matchmaking.assignments == {}
    assert spec.rating.method is None  # resolved per plan, see below
    assert spec.rating_method is RatingMethod.MEAN_RETURN  # a fixed plan
    assert spec.model_copy(update={"matchmaking": spec.matchmaking.model_copy(update={"mode": MatchmakingMode.ROUND_ROBIN})}).rating_method is RatingMethod.BRADLEY_TERRY
    assert (spec.rating.resamples, spec.rating.confidence_level, spec.rating.optimality_target) == (1000, 0.95, None)
    assert spec.execution.agents_per_shard == 256
    assert spec.execution.placement_strategy is PlacementStrategy.SPREAD
    assert spec.execution.parallel_episodes == 1
    assert spec.checkpoint.interval_steps == 100
    assert spec.checkpoint.storage_uri is None
    assert spec.fault_tolerance.max_actor_restarts == 3
    assert spec.cluster is None
    assert (spec.suspend, spec.backoff_limit) == (False, 2)
    assert spec.active_deadline_seconds is None and spec.ttl_seconds_after_finished is None
    assert [(t.name, t.agents) for t in spec.effective_teams] == [("all", "*")]
    resources = spec.policies[0].resources
    assert (resources.cpu, resources.gpu, resources.memory) == (0.0, 0.0, None)


def test_metadata_namespace_defaults_and_qualified_name() -> None:
    evaluation = SwarmEvaluation.model_validate(MINIMAL)
    assert evaluation.qualified_name == "default/minimal"


def test_wire_round_trip_keeps_every_field() -> None:
    evaluation = SwarmEvaluation.model_validate(GOOD)
    wire = evaluation.to_wire()
    assert SwarmEvaluation.model_validate(wire) == evaluation
    # what the user wrote survives unchanged inside the defaulted wire form
    spec = wire["spec"]
    assert spec["checkpoint"]["storageURI"] == "file:///tmp/swarm-arena-table"
    assert spec["cluster"]["workerGroups"][0]["minReplicas"] == 1
    assert spec["matchmaking"]["assignments"] == {"red": "greedy", "blue": "random"}
    assert spec["environment"]["maxSteps"] == 20


def test_python_names_serialise_to_the_api_md_wire_names() -> None:
    evaluation = SwarmEvaluation.model_validate(GOOD)
    spec = evaluation.spec.model_copy(
        update={"active_deadline_seconds": 60, "ttl_seconds_after_finished": 30}
    )
    wire = spec.to_wire()
    for key in ("faultTolerance", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"):
        assert key in wire
    assert set(wire["execution"]) == {"agentsPerShard", "placementStrategy", "parallelEpisodes"}
    assert "storageURI" in wire["checkpoint"]


def test_snake_case_input_is_accepted_too() -> None:
    doc = copy.deepcopy(MINIMAL)
    doc["spec"]["environment"] = {"factory": "foraging", "max_steps": 7}
    assert SwarmEvaluation.model_validate(doc).spec.environment.max_steps == 7


def test_status_wire_names_and_progress_summary() -> None:
    status = SwarmEvaluationStatus(
        dashboard_url="http://ray-head:8265", progress=Progress(episodes_completed=7, episodes_total=20)
    )
    wire = status.to_wire()
    assert wire["dashboardURL"] == "http://ray-head:8265"
    assert wire["progress"]["summary"] == "7/20"
    # the derived summary comes back from the API server and is recomputed, never trusted
    echoed = {**wire, "progress": {**wire["progress"], "summary": "stale", "episodesCompleted": 8}}
    assert SwarmEvaluationStatus.model_validate(echoed).progress.summary == "8/20"


def test_format_path_writes_indices_in_brackets() -> None:
    assert format_path(("spec", "policies", 1, "name")) == "spec.policies[1].name"
    assert format_path(("spec", "matchmaking", "assignments", "red")) == "spec.matchmaking.assignments.red"
    assert format_path(()) == ""


def test_default_ray_version_is_the_installed_ray() -> None:
    """The default cluster.rayVersion is the release this package is tested with."""
    import ray

    from swarm_arena.api.spec import RAY_VERSION

    assert ray.__version__ == RAY_VERSION


def test_runtime_env_keeps_rays_own_keys() -> None:
    from swarm_arena.api.spec import RuntimeEnvSpec

    env = RuntimeEnvSpec.model_validate(
        {"pip": ["magent2==0.3.4"], "working_dir": "s3://b/code.zip", "py_modules": ["s3://b/m.zip"],
         "env_vars": {"OMP_NUM_THREADS": "1"}}
    )
    assert env.to_ray() == {"pip": ["magent2==0.3.4"], "working_dir": "s3://b/code.zip",
                            "py_modules": ["s3://b/m.zip"], "env_vars": {"OMP_NUM_THREADS": "1"}}
