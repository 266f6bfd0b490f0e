"""The RayCluster (KubeRay `ray.io/v1`) and its auth Secret for an evaluation: pure builders.

The operator creates these once (create-if-absent) and afterwards only checks they are still
its own: the spec is immutable once the evaluation started, and never re-applying means nobody
fights over fields others own (`replicas` under the autoscaler, or Argo CD; KubeRay #1120/#4149).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.spec import RAY_IMAGE_REPOSITORY, ClusterSpec, WorkerGroupSpec
from swarm_arena.controller import names

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


def default_image(ray_version: str) -> str:
    """The project's Ray image: the swarm-arena package on that Ray release (images/ray.Dockerfile)."""
    return f"{RAY_IMAGE_REPOSITORY}:{package_version()}-ray{ray_version}"


def _cluster(evaluation: SwarmEvaluation) -> ClusterSpec:
    return evaluation.spec.cluster or ClusterSpec(worker_groups=[DEFAULT_WORKER_GROUP])


def _env() -> list[dict[str, str]]:
    return [{"name": "RAY_max_direct_call_object_size", "value": str(RAY_INLINE_ARG_BYTES)}]


def _container(name: str, image: str, cpu: float, memory: str, gpu: int = 0) -> dict[str, Any]:
    amount = {"cpu": f"{cpu:g}", "memory": memory}
    if gpu:
        amount[GPU_RESOURCE] = str(gpu)
    return {
        "name": name,
        "image": image,
        "env": _env(),
        "resources": {"requests": dict(amount), "limits": dict(amount)},
    }


def _pod_template(evaluation: str, component: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": names.labels(evaluation, component)},
        "spec": {"containers": [container], **{k: v for k, v in spec.items() if v}},
    }


def _worker_group(evaluation: str, group: WorkerGroupSpec, image: str) -> dict[str, Any]:
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
            _container("ray-worker", image, resources.cpu, resources.memory, resources.gpu),
            nodeSelector=dict(group.node_selector),
            tolerations=tolerations,
        ),
    }


def build_ray_cluster(evaluation: SwarmEvaluation, uid: str) -> dict[str, Any]:
    """The RayCluster for an evaluation without `cluster.address`."""
    name = evaluation.metadata.name
    cluster = _cluster(evaluation)
    image = cluster.image or default_image(cluster.ray_version)
    head = cluster.head.resources
    spec: dict[str, Any] = {
        "rayVersion": cluster.ray_version,
        "enableInTreeAutoscaling": cluster.autoscaling,
        # Ray's token authentication: an open dashboard lets anyone who reaches it submit code.
        "authOptions": {"mode": "token", "secretName": names.auth_secret_name(name)},
        "headGroupSpec": {
            # The head runs the job driver and the coordinator (0 CPUs); shards and environments
            # go to the workers, so losing a worker never takes the bookkeeping with it.
            "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
            "template": _pod_template(
                name, "ray-head", _container("ray-head", image, head.cpu, head.memory),
                nodeSelector=dict(cluster.head.node_selector),
                tolerations=[t.to_wire() for t in cluster.head.tolerations],
            ),
        },
        "workerGroupSpecs": [_worker_group(name, g, image) for g in cluster.worker_groups],
    }
    if cluster.autoscaling:
        spec["autoscalerOptions"] = {"upscalingMode": "Default", "idleTimeoutSeconds": 60}
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
            "name": names.auth_secret_name(name),
            "namespace": evaluation.metadata.namespace,
            "labels": names.labels(name, "ray-auth"),
            "ownerReferences": [names.owner_reference(name, uid)],
        },
        "stringData": {"auth_token": token},
    }
