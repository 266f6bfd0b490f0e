"""The RayCluster the operator creates, reconciled by the real KubeRay operator: head, a CPU group
and a GPU group; the worker pods land on kwok's fake nodes (GPU pods on the tainted GPU node) and
look Running there, the head on a process-backed node where Ray really starts, with the
authentication token the operator derived."""

from __future__ import annotations

import json

import pytest

from tests.controlplane.plane import GPU_LABEL, GPU_NODE, KWOK_NODE_SELECTOR, KWOK_TOLERATION
from tests.operator.conftest import Evaluations, manifest

pytestmark = pytest.mark.controlplane


def test_cpu_and_gpu_worker_groups_become_a_ready_cluster(control_plane, namespace, operator_factory) -> None:
    op = operator_factory([namespace]).start()
    evals = Evaluations(control_plane, namespace, op.tail)
    doc = manifest("groups", cluster={
        "head": {"resources": {"cpu": 1, "memory": "2Gi"}},
        "workerGroups": [
            {"name": "cpu", "replicas": 2, "resources": {"cpu": 2, "memory": "2Gi"},
             "nodeSelector": dict(KWOK_NODE_SELECTOR), "tolerations": [dict(KWOK_TOLERATION)]},
            {"name": "gpu", "replicas": 1, "resources": {"cpu": 2, "memory": "4Gi", "gpu": 1},
             "nodeSelector": {GPU_LABEL: "true"}, "tolerations": [dict(KWOK_TOLERATION)]},
        ],
    })
    doc["spec"]["policies"][0]["resources"]["gpu"] = 0.5
    evals.apply(doc)
    evals.wait("groups", "ClusterReady", lambda s: any(
        c["type"] == "ClusterReady" and c["status"] == "True" for c in s.get("conditions", [])), timeout=240)

    rc = json.loads(control_plane.kubectl("get", "raycluster", "groups", "-n", namespace, "-o", "json").stdout)
    assert rc["metadata"]["ownerReferences"][0]["name"] == "groups"
    assert rc["spec"]["authOptions"]["mode"] == "token"
    pods = json.loads(control_plane.kubectl("get", "pods", "-n", namespace, "-l", "ray.io/cluster=groups",
                                            "-o", "json").stdout)["items"]
    by_group = {}
    for pod in pods:
        by_group.setdefault(pod["metadata"]["labels"].get("ray.io/group"), []).append(pod)
    assert len(by_group["cpu"]) == 2 and len(by_group["gpu"]) == 1
    assert all(p["status"]["phase"] == "Running" for p in pods)
    assert by_group["gpu"][0]["spec"]["nodeName"] == GPU_NODE
    assert all(p["spec"]["nodeName"] != GPU_NODE for p in by_group["cpu"])
    gpu_container = by_group["gpu"][0]["spec"]["containers"][0]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e for e in gpu_container["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"].startswith("groups-ray-auth-")
    assert env["RAY_max_direct_call_object_size"]["value"] == "1048576"

    table = control_plane.kubectl("get", "swe", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "PROGRESS", "LEADER", "AGE"]
    control_plane.kubectl("delete", "swe", "groups", "-n", namespace, "--wait=true", timeout=90)
