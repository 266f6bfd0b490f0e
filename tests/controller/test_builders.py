"""The operator's children, built without a cluster: RayCluster, auth Secret, job submission, results."""

from __future__ import annotations

import copy
import json

import pytest

from swarm_arena.api import job_channel
from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.spec import RAY_VERSION
from swarm_arena.controller import build_cluster, build_job, build_results, names
from swarm_arena.controller.render import render_children
from swarm_arena.controller.settings import RayPodDefaults

UID = "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"
DOC = {
    "apiVersion": "arena.swarm.dev/v1alpha1",
    "kind": "SwarmEvaluation",
    "metadata": {"name": "duel", "namespace": "team-a"},
    "spec": {
        "environment": {"factory": "foraging", "params": {"agents": 64}, "maxSteps": 20},
        "policies": [
            {"name": "greedy", "factory": "greedy"},
            {"name": "big", "factory": "random", "resources": {"gpu": 0.5}},
        ],
        "episodes": 4,
        "runtimeEnv": {"pip": ["magent2==0.3.4"], "env_vars": {"OMP_NUM_THREADS": "1"}},
        "cluster": {
            "head": {"resources": {"cpu": 2, "memory": "4Gi"}},
            "workerGroups": [
                {"name": "cpu", "replicas": 2, "resources": {"cpu": 4, "memory": "8Gi"},
                 "nodeSelector": {"pool": "cpu"}},
                {"name": "gpu", "replicas": 1, "resources": {"cpu": 4, "memory": "16Gi", "gpu": 1},
                 "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]},
            ],
        },
    },
}


def evaluation(**spec_changes) -> SwarmEvaluation:
    doc = copy.deepcopy(DOC)
    doc["spec"].update(spec_changes)
    return SwarmEvaluation.model_validate(doc)


def test_ray_cluster_has_head_and_every_worker_group_owned_and_labelled() -> None:
    rc = build_cluster.build_ray_cluster(evaluation(), UID)
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    assert rc["metadata"]["name"] == "duel" and rc["metadata"]["namespace"] == "team-a"
    assert rc["metadata"]["labels"][names.LABEL_EVALUATION] == "duel"
    owner = rc["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("SwarmEvaluation", "duel", UID, True)
    groups = {g["groupName"]: g for g in rc["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    assert groups["cpu"]["replicas"] == 2 and groups["cpu"]["template"]["spec"]["nodeSelector"] == {"pool": "cpu"}
    head = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert rc["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_gpu_group_requests_gpus_tolerates_the_gpu_taint_and_tells_ray() -> None:
    rc = build_cluster.build_ray_cluster(evaluation(), UID)
    gpu = next(g for g in rc["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu")
    container = gpu["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    tolerations = gpu["template"]["spec"]["tolerations"]
    assert build_cluster.GPU_TOLERATION in tolerations
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in tolerations
    cpu = next(g for g in rc["spec"]["workerGroupSpecs"] if g["groupName"] == "cpu")
    assert "nvidia.com/gpu" not in cpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "tolerations" not in cpu["template"]["spec"] and "num-gpus" not in cpu["rayStartParams"]


def test_ray_version_image_inline_limit_and_auth_are_set() -> None:
    rc = build_cluster.build_ray_cluster(evaluation(), UID)
    assert rc["spec"]["rayVersion"] == RAY_VERSION
    assert rc["spec"]["authOptions"] == {"mode": "token", "secretName": f"duel-ray-auth-{UID[:8]}"}
    for template in [rc["spec"]["headGroupSpec"]["template"]] + [g["template"] for g in rc["spec"]["workerGroupSpecs"]]:
        container = template["spec"]["containers"][0]
        assert container["image"].endswith(f"-ray{RAY_VERSION}")
        assert {"name": "RAY_max_direct_call_object_size", "value": "1048576"} in container["env"]
        assert template["metadata"]["labels"][names.LABEL_EVALUATION] == "duel"


def test_inline_limit_is_the_one_swarm_arena_run_uses() -> None:
    from swarm_arena.arena.runner import INLINE_ARG_BYTES

    assert build_cluster.RAY_INLINE_ARG_BYTES == INLINE_ARG_BYTES


def test_autoscaling_turns_on_kuberays_autoscaler_with_the_groups_bounds() -> None:
    doc = copy.deepcopy(DOC["spec"]["cluster"])
    doc["autoscaling"] = True
    doc["workerGroups"][0].update(minReplicas=1, maxReplicas=6)
    rc = build_cluster.build_ray_cluster(evaluation(cluster=doc), UID)
    assert rc["spec"]["enableInTreeAutoscaling"] is True
    cpu = rc["spec"]["workerGroupSpecs"][0]
    assert (cpu["minReplicas"], cpu["replicas"], cpu["maxReplicas"]) == (1, 2, 6)


def test_no_cluster_section_gets_one_default_cpu_group() -> None:
    ev = SwarmEvaluation.model_validate({**DOC, "spec": {k: v for k, v in DOC["spec"].items() if k != "cluster"}})
    rc = build_cluster.build_ray_cluster(ev, UID)
    assert [g["groupName"] for g in rc["spec"]["workerGroupSpecs"]] == ["cpu"]


def test_custom_image_wins() -> None:
    cluster = {**DOC["spec"]["cluster"], "image": "registry.example/me/ray:mine"}
    rc = build_cluster.build_ray_cluster(evaluation(cluster=cluster), UID)
    assert rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/me/ray:mine"


def _pod_templates(rc: dict) -> list[dict]:
    return [rc["spec"]["headGroupSpec"]["template"], *(g["template"] for g in rc["spec"]["workerGroupSpecs"])]


def test_every_ray_pod_passes_the_restricted_pod_security_standard_by_default() -> None:
    rc = build_cluster.build_ray_cluster(evaluation(), UID)
    for template in _pod_templates(rc):
        pod = template["spec"]["securityContext"]
        assert pod == {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
        (container,) = template["spec"]["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False, "capabilities": {"drop": ["ALL"]}}
        assert "serviceAccountName" not in template["spec"] and "imagePullSecrets" not in template["spec"]


def test_pod_settings_reach_every_ray_pod_and_the_operators_defaults_come_first() -> None:
    cluster = {**DOC["spec"]["cluster"], "autoscaling": True, "pods": {
        "serviceAccountName": "ray-runner", "imagePullSecrets": [{"name": "team"}, {"name": "shared"}],
        "labels": {"team": "a", names.LABEL_EVALUATION: "spoofed"}, "annotations": {"cost-center": "42"},
        "priorityClassName": "batch-low",
        "securityContext": {"runAsUser": 2000, "runAsGroup": 3000, "fsGroup": 3000, "readOnlyRootFilesystem": True},
    }}
    defaults = RayPodDefaults(image_repository="mirror.example/ray", image_pull_secrets=("shared", "mirror"))
    rc = build_cluster.build_ray_cluster(evaluation(cluster=cluster), UID, defaults)
    for template in _pod_templates(rc):
        spec = template["spec"]
        assert spec["serviceAccountName"] == "ray-runner" and spec["priorityClassName"] == "batch-low"
        assert spec["imagePullSecrets"] == [{"name": "shared"}, {"name": "mirror"}, {"name": "team"}]
        assert template["metadata"]["labels"]["team"] == "a"
        assert template["metadata"]["labels"][names.LABEL_EVALUATION] == "duel"  # the operator's own label wins
        assert template["metadata"]["annotations"] == {"cost-center": "42"}
        assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 2000, "runAsGroup": 3000,
                                           "fsGroup": 3000, "seccompProfile": {"type": "RuntimeDefault"}}
        assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        assert spec["containers"][0]["image"] == f"mirror.example/ray:{build_cluster.package_version()}-ray{RAY_VERSION}"
    assert rc["spec"]["autoscalerOptions"]["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_auth_secret_carries_the_derived_token_under_kuberays_key() -> None:
    token = names.ray_auth_token(b"k", "team-a", "duel", UID)
    secret = build_cluster.build_auth_secret(evaluation(), UID, token)
    assert secret["stringData"] == {"auth_token": token}
    assert secret["metadata"]["ownerReferences"][0]["uid"] == UID
    assert token == names.ray_auth_token(b"k", "team-a", "duel", UID)  # derived again after a restart
    assert token != names.ray_auth_token(b"other", "team-a", "duel", UID)
    assert token != names.ray_auth_token(b"k", "team-a", "duel", "another-uid")


def test_submission_carries_the_evaluation_the_users_runtime_env_and_a_deterministic_id() -> None:
    ev = evaluation()
    sid = names.submission_id(UID, 3)
    assert sid == names.submission_id(UID, 3) != names.submission_id(UID, 4)
    body = build_job.build_submission(ev, sid, 3)
    assert body["submission_id"] == sid and body["entrypoint"] == job_channel.ENTRYPOINT
    env = body["runtime_env"]["env_vars"]
    assert env["OMP_NUM_THREADS"] == "1" and body["runtime_env"]["pip"] == ["magent2==0.3.4"]
    assert env[job_channel.SUBMISSION_ID_ENV] == sid and env[job_channel.ATTEMPT_ENV] == "3"
    payload = job_channel.decode_payload(env[job_channel.EVALUATION_ENV])
    assert SwarmEvaluation.model_validate(payload).spec == ev.spec
    assert job_channel.RESUME_ENV not in env
    # A cluster the operator made: the job takes the operator's repair requests on the head.
    assert env[job_channel.REPAIR_PORT_ENV] == str(job_channel.REPAIR_PORT)


def test_a_job_on_someone_elses_cluster_opens_no_repair_port() -> None:
    body = build_job.build_submission(evaluation(cluster={"address": "http://ray-head.lab:8265"}), "swe-x-1", 1)
    assert job_channel.REPAIR_PORT_ENV not in body["runtime_env"]["env_vars"]


def _record(i: int) -> EpisodeRecord:
    return EpisodeRecord(episode=i, pairing={"all": "greedy"}, returns={"greedy": float(i)},
                         agents={"greedy": 64}, steps=20, agent_steps=1280)


def test_submission_resumes_counted_episodes_and_refuses_what_a_variable_cannot_carry() -> None:
    resume = job_channel.ResumePayload(episodes=[_record(0), _record(2)])
    body = build_job.build_submission(evaluation(), "swe-x-2", 2, resume)
    packed = body["runtime_env"]["env_vars"][job_channel.RESUME_ENV]
    back = job_channel.ResumePayload.model_validate(job_channel.decode_payload(packed))
    assert [r.episode for r in back.episodes] == [0, 2]
    import random

    rng = random.Random(0)
    huge = job_channel.ResumePayload(episodes=[
        EpisodeRecord(episode=i, pairing={"all": "greedy"}, returns={"greedy": rng.random()},
                      agents={"greedy": 64}, steps=20, agent_steps=1280) for i in range(20_000)
    ])
    assert build_job.needs_package(evaluation(), huge)
    with pytest.raises(build_job.ResumeTooLarge, match="package"):
        build_job.build_submission(evaluation(), "swe-x-2", 2, huge)


def test_results_configmap_round_trips_every_counted_episode_and_stays_small() -> None:
    records = [_record(i) for i in range(3000)]
    cm = build_results.build_results_configmap(evaluation(), UID, records=records, progress=None, results=None,
                                               recoveries=[], final=True)
    size = sum(len(v) for v in cm["data"].values()) + sum(len(v) for v in cm["binaryData"].values())
    assert size < build_results.CONFIGMAP_LIMIT_BYTES
    assert [r.episode for r in build_results.episodes_from_configmap(cm)] == list(range(3000))
    assert cm["metadata"]["name"] == "duel-results"


def test_render_prints_secret_raycluster_and_submission_but_no_cluster_for_an_address() -> None:
    titles = [t for t, _ in render_children(evaluation())]
    assert any("RayCluster" in t for t in titles) and any("submission" in t for t in titles)
    address = {"address": "http://ray-head.shared:8265"}
    docs = render_children(evaluation(cluster=address))
    assert len(docs) == 1 and "http://ray-head.shared:8265/api/jobs/" in docs[0][0]


def test_long_names_fit_kubernetes_limits() -> None:
    name = "e" * 63
    assert len(names.results_configmap_name(name)) <= 63 and len(names.auth_secret_name(name, "0" * 36)) <= 63


def test_results_of_the_largest_allowed_field_fit_the_configmap_with_its_pairwise_matrix() -> None:
    """64 policies with 63-character names, far apart (every pair separated): the worst case."""
    import random

    from swarm_arena.api.crd import openapi_schema
    from swarm_arena.api.status import Results
    from swarm_arena.arena.scoring import EpisodeOutcome, RatingOptions, score

    most = openapi_schema()["properties"]["spec"]["properties"]["policies"]["maxItems"]
    policies = [f"p{i:02d}-" + "x" * 59 for i in range(most)]
    rng = random.Random(1)
    records, outcomes = [], []
    for a in policies:
        for b in policies:
            for _ in range(3 if a != b else 0):
                i, returns = len(records), {a: float(a < b) + rng.random() / 10, b: float(b < a) + rng.random() / 10}
                records.append(EpisodeRecord(episode=i, pairing={"red": a, "blue": b}, returns=returns,
                                             agents={a: 32, b: 32}, steps=200, agent_steps=12800))
                outcomes.append(EpisodeOutcome(i, returns, {"red": a, "blue": b}))
    board = score("bradley-terry", policies, outcomes, seed=0, options=RatingOptions(resamples=100, optimality_target=1.0))
    assert sum(len(e.separated_from) for e in board.leaderboard) >= 0.9 * most * (most - 1)
    results = Results(leaderboard=board.leaderboard, pairwise=board.pairwise, return_aggregates=board.return_aggregates)
    cm = build_results.build_results_configmap(evaluation(), UID, records=records, progress=None, results=results,
                                               recoveries=[], final=True)
    text = cm["data"][build_results.RESULTS_KEY]
    size = sum(len(v) for v in cm["data"].values()) + sum(len(v) for v in cm["binaryData"].values())
    print(f"64 policies, {len(records)} episodes: results.json {len(text) // 1024} KiB, ConfigMap {size // 1024} KiB")
    assert size < build_results.CONFIGMAP_LIMIT_BYTES - build_results.METADATA_ALLOWANCE_BYTES
    stored = json.loads(text)["results"]
    assert len(stored["pairwise"]["probability"]) == most
    assert sum(map(sum, stored["pairwise"]["separated"])) == sum(len(e.separated_from) for e in board.leaderboard)
    assert "pairwise" not in results.for_status().to_wire() and "returnAggregates" not in results.for_status().to_wire()
