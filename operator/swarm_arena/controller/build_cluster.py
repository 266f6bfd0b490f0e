"""The RayCluster (KubeRay `ray.io/v1`) and its auth Secret for an evaluation: pure builders.

The operator creates these once (create-if-absent) and afterwards only checks they are still
its own: the spec is immutable once the evaluation started, and never re-applying means nobody
fights over fields others own (`replicas` under the autoscaler, or Argo CD; KubeRay #1120/#4149).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from swarm_arena.api.pods import RayPodsSpec
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.spec import RAY_IMAGE_REPOSITORY, ClusterSpec, WorkerGroupSpec
from swarm_arena.controller import names
from swarm_arena.controller.settings import RayPodDefaults

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
# What `swarm-arena run` gives its embedded Ray (arena/runner.py INLINE_ARG_BYTES): a shard's
# observations travel inline with the call (docs/performance.md). A test keeps the two equal.
RAY_INLINE_ARG_BYTES = 1 << 20
DEFAULT_WORKER_GROUP = WorkerGroupSpec(name="cpu")


def package_version() -> str:
    try:
        return version("swarm-arena")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0"


def default_image(ray_version: str, repository: str = RAY_IMAGE_REPOSITORY) -> str:
    """The project's Ray image: the swarm-arena package on that Ray release (images/ray.Dockerfile)."""
    return f"{repository}:{package_version()}-ray{ray_version}"


def _cluster(evaluation: SwarmEvaluation) -> ClusterSpec:
    return evaluation.spec.cluster or ClusterSpec(worker_groups=[DEFAULT_WORKER_GROUP])


def _env() -> list[dict[str, str]]:
    return [{"name": "RAY_max_direct_call_object_size", "value": str(RAY_INLINE_ARG_BYTES)}]


def _container(name: str, image: str, pods: RayPodsSpec, cpu: float, memory: str, gpu: int = 0) -> dict[str, Any]:
    amount = {"cpu": f"{cpu:g}", "memory": memory}
    if gpu:
        amount[GPU_RESOURCE] = str(gpu)
    return {
        "name": name,
        "image": image,
        "env": _env(),
        "resources": {"requests": dict(amount), "limits": dict(amount)},
        "securityContext": pods.security_context.container_wire(),
    }


def _pull_secrets(pods: RayPodsSpec, defaults: RayPodDefaults) -> list[dict[str, str]]:
    wanted = [*defaults.image_pull_secrets, *(s.name for s in pods.image_pull_secrets)]
    return [{"name": n} for n in dict.fromkeys(wanted)]


def _pod_template(evaluation: str, component: str, container: dict[str, Any], pods: RayPodsSpec,
                  defaults: RayPodDefaults, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": {**pods.labels, **names.labels(evaluation, component)}}
    if pods.annotations:
        metadata["annotations"] = dict(pods.annotations)
    settings = {
        "serviceAccountName": pods.service_account_name,
        "imagePullSecrets": _pull_secrets(pods, defaults),
        "priorityClassName": pods.priority_class_name,
        "securityContext": pods.security_context.pod_wire(),
        **spec,
    }
    return {"metadata": metadata, "spec": {"containers": [container], **{k: v for k, v in settings.items() if v}}}


def _worker_group(evaluation: str, group: WorkerGroupSpec, image: str, pods: RayPodsSpec,
                  defaults: RayPodDefaults) -> dict[str, Any]:
    resources = group.resources
    tolerations = [t.to_wire() for t in group.tolerations]
    start_params: dict[str, str] = {}
    if group.is_gpu:
        start_params["num-gpus"] = str(resources.gpu)
        if not any(t.get("key") == GPU_RESOURCE for t in tolerations):
            tolerations.append(dict(GPU_TOLERATION))
    return {
        "groupName": group.name,
        "replicas": group.replicas,
        "minReplicas": group.min_replicas,
        "maxReplicas": group.max_replicas if group.max_replicas is not None else group.replicas,
        "rayStartParams": start_params,
        "template": _pod_template(
            evaluation,
            "ray-worker",
            _container("ray-worker", image, pods, resources.cpu, resources.memory, resources.gpu),
            pods,
            defaults,
            nodeSelector=dict(group.node_selector),
            tolerations=tolerations,
        ),
    }


def build_ray_cluster(evaluation: SwarmEvaluation, uid: str, defaults: RayPodDefaults | None = None) -> dict[str, Any]:
    """The RayCluster for an evaluation without `cluster.address`."""
    defaults = defaults or RayPodDefaults()
    name = evaluation.metadata.name
    cluster = _cluster(evaluation)
    pods = cluster.pods
    image = cluster.image or default_image(cluster.ray_version, defaults.image_repository)
    head = cluster.head.resources
    spec: dict[str, Any] = {
        "rayVersion": cluster.ray_version,
        "enableInTreeAutoscaling": cluster.autoscaling,
        # Ray's token authentication: an open dashboard lets anyone who reaches it submit code.
        "authOptions": {"mode": "token", "secretName": names.auth_secret_name(name, uid)},
        "headGroupSpec": {
            # The head runs the job driver and the coordinator (0 CPUs); shards and environments
            # go to the workers, so losing a worker never takes the bookkeeping with it.
            "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
            "template": _pod_template(
                name, "ray-head", _container("ray-head", image, pods, head.cpu, head.memory), pods, defaults,
                nodeSelector=dict(cluster.head.node_selector),
                tolerations=[t.to_wire() for t in cluster.head.tolerations],
            ),
        },
        "workerGroupSpecs": [_worker_group(name, g, image, pods, defaults) for g in cluster.worker_groups],
    }
    if cluster.autoscaling:
        # The autoscaler is a sidecar of the head pod: it gets the Ray containers' security settings.
        spec["autoscalerOptions"] = {"upscalingMode": "Default", "idleTimeoutSeconds": 60,
                                     "securityContext": pods.security_context.container_wire()}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": names.ray_cluster_name(name),
            "namespace": evaluation.metadata.namespace,
            "labels": names.labels(name, "ray-cluster"),
            "ownerReferences": [names.owner_reference(name, uid)],
        },
        "spec": spec,
    }


def build_auth_secret(evaluation: SwarmEvaluation, uid: str, token: str) -> dict[str, Any]:
    """The Secret KubeRay mounts as RAY_AUTH_TOKEN (`auth_token` key); the operator only creates it."""
    name = evaluation.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": names.auth_secret_name(name, uid),
            "namespace": evaluation.metadata.namespace,
            "labels": names.labels(name, "ray-auth"),
            "ownerReferences": [names.owner_reference(name, uid)],
        },
        "stringData": {"auth_token": token},
    }
