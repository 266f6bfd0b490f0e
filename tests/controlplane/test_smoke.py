"""Smoke tests: the control plane is real enough for the operator's tests."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.controlplane.plane import (CPU_NODES, GPU_LABEL, GPU_NODE, GPU_RESOURCE, KWOK_NODE_SELECTOR, KWOK_TAINT,
                                      KWOK_TOLERATION)

pytestmark = pytest.mark.controlplane

RAY_IMAGE = "rayproject/ray:2.49.0"


@pytest.fixture
def core(kube_api):
    from kubernetes import client

    return client.CoreV1Api(kube_api)


@pytest.fixture
def custom(kube_api):
    from kubernetes import client

    return client.CustomObjectsApi(kube_api)


def test_version_is_pinned(control_plane):
    status, body = control_plane.get("/version")
    assert status == 200, body
    info = json.loads(body)
    want = control_plane.versions["KUBERNETES_VERSION"]
    assert info["gitVersion"] == want
    assert (info["major"], info["minor"]) == tuple(want.lstrip("v").split(".")[:2])
    client_version = json.loads(control_plane.kubectl("version", "--client", "-o", "json").stdout)
    assert client_version["clientVersion"]["gitVersion"] == want
    etcd = subprocess.run([control_plane.bin("etcd"), "--version"], capture_output=True, text=True, check=True)
    assert control_plane.versions["ETCD_VERSION"].lstrip("v") in etcd.stdout
    helm = subprocess.run([control_plane.bin("helm"), "version", "--template", "{{.Version}}"],
                          capture_output=True, text=True, check=True)
    assert helm.stdout.strip() == control_plane.versions["HELM_VERSION"]


def test_rbac_is_enforced(control_plane, namespace):
    # RBAC on: a ServiceAccount with no bindings may not list pods.
    out = control_plane.kubectl("auth", "can-i", "list", "pods", "-n", namespace,
                                f"--as=system:serviceaccount:{namespace}:default", check=False)
    assert out.stdout.strip() == "no", out


def test_fake_nodes(control_plane, core):
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert {*CPU_NODES, GPU_NODE} <= set(nodes)
    gpu = nodes[GPU_NODE]
    assert gpu.metadata.labels[GPU_LABEL] == "true"
    assert gpu.status.allocatable[GPU_RESOURCE] == "4"
    kwok_taint = [(KWOK_TAINT["key"], KWOK_TAINT["value"], KWOK_TAINT["effect"])] if control_plane.network else []
    assert [(t.key, t.value, t.effect) for t in gpu.spec.taints] == [(GPU_RESOURCE, "present", "NoSchedule"),
                                                                     *kwok_taint]
    for name in CPU_NODES:
        assert [(t.key, t.value, t.effect) for t in nodes[name].spec.taints or []] == kwok_taint


def test_deployment_becomes_available_on_kwok_node(kube_api, core, namespace, wait_until):
    from kubernetes import client

    apps = client.AppsV1Api(kube_api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 2, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                                  "resources": {"requests": {"cpu": "100m"}}}],
                                  # with process nodes kwok's nodes are tainted: a pod meant for them says so
                                  "tolerations": [KWOK_TOLERATION], "nodeSelector": KWOK_NODE_SELECTOR}},
        },
    })

    def available():
        d = apps.read_namespaced_deployment("web", namespace)
        conds = {c.type: c.status for c in (d.status.conditions or [])}
        return d.status.available_replicas == 2 and conds.get("Available") == "True"

    wait_until("Deployment web Available with 2 replicas", available, timeout=60)
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    for p in pods:
        assert p.status.phase == "Running"
        # untolerated pods never land on the tainted GPU node
        assert p.spec.node_name in CPU_NODES


def _raycluster(name: str, gpu_workers: int = 1, cpu_workers: int = 2) -> dict:
    def container(name: str, resources: dict) -> dict:
        return {"name": name, "image": RAY_IMAGE, "resources": {"requests": resources, "limits": resources}}

    kwok = {"tolerations": [KWOK_TOLERATION], "nodeSelector": KWOK_NODE_SELECTOR}  # fake pods: kwok's nodes
    worker_groups = []
    if cpu_workers:
        worker_groups.append({
            "groupName": "cpu-workers", "replicas": cpu_workers, "minReplicas": 0, "maxReplicas": 4,
            "rayStartParams": {},
            "template": {"spec": {"containers": [container("ray-worker", {"cpu": "1", "memory": "1Gi"})], **kwok}},
        })
    if gpu_workers:
        worker_groups.append({
            "groupName": "gpu-workers", "replicas": gpu_workers, "minReplicas": 0, "maxReplicas": 2,
            "rayStartParams": {},
            "template": {"spec": {
                "containers": [container("ray-worker", {"cpu": "2", "memory": "4Gi", GPU_RESOURCE: "1"})],
                "tolerations": [{"key": GPU_RESOURCE, "operator": "Equal", "value": "present",
                                 "effect": "NoSchedule"}, KWOK_TOLERATION],
                "nodeSelector": {GPU_LABEL: "true", **KWOK_NODE_SELECTOR},
            }},
        })
    return {
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": name},
        "spec": {
            "headGroupSpec": {
                "rayStartParams": {"dashboard-host": "0.0.0.0"},
                "template": {"spec": {"containers": [container("ray-head", {"cpu": "1", "memory": "2Gi"})], **kwok}},
            },
            "workerGroupSpecs": worker_groups,
        },
    }


def _ray_pods(core, namespace: str, cluster: str):
    return core.list_namespaced_pod(namespace, label_selector=f"ray.io/cluster={cluster}").items


def test_raycluster_is_reconciled_by_kuberay(core, custom, namespace, wait_until):
    custom.create_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters", _raycluster("swarm"))

    def all_running():
        pods = _ray_pods(core, namespace, "swarm")
        return len(pods) == 4 and all(p.status.phase == "Running" for p in pods) and pods

    pods = wait_until("RayCluster swarm: head + 3 worker pods Running", all_running, timeout=90)
    by_type: dict[str, list] = {}
    for p in pods:
        by_type.setdefault(p.metadata.labels.get("ray.io/node-type"), []).append(p)
    assert len(by_type["head"]) == 1
    groups = sorted(p.metadata.labels["ray.io/group"] for p in by_type["worker"])
    assert groups == ["cpu-workers", "cpu-workers", "gpu-workers"]
    for p in by_type["worker"]:
        if p.metadata.labels["ray.io/group"] == "gpu-workers":
            assert p.spec.node_name == GPU_NODE
        else:
            assert p.spec.node_name in CPU_NODES
    assert by_type["head"][0].spec.node_name in CPU_NODES

    wait_until("RayCluster swarm status.state == ready",
               lambda: (custom.get_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters", "swarm")
                        .get("status", {}).get("state") == "ready"), timeout=60)
    # KubeRay also made the head service
    svcs = [s.metadata.name for s in core.list_namespaced_service(namespace).items]
    assert any(s.startswith("swarm-head") for s in svcs), svcs


def test_garbage_collection_of_owned_configmap(core, namespace, wait_until):
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}, "data": {"a": "1"}})
    core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "dependent", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]},
        "data": {"b": "2"},
    })
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    def gone():
        names = {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
        return "dependent" not in names and "owner" not in names

    wait_until("garbage collector to delete ConfigMap dependent", gone, timeout=60)


def test_deleting_raycluster_removes_its_pods(core, custom, namespace, wait_until):
    custom.create_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters",
                                           _raycluster("short", gpu_workers=0, cpu_workers=1))
    wait_until("RayCluster short pods Running",
               lambda: len(pods := _ray_pods(core, namespace, "short")) == 2
               and all(p.status.phase == "Running" for p in pods), timeout=90)
    custom.delete_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters", "short")
    wait_until("pods of deleted RayCluster short to go away",
               lambda: not _ray_pods(core, namespace, "short"), timeout=60)


def test_crd_schema_violation_is_refused(custom, namespace):
    from kubernetes.client.exceptions import ApiException

    bad = _raycluster("bad", gpu_workers=0, cpu_workers=1)
    bad["spec"]["workerGroupSpecs"][0]["replicas"] = "three"
    with pytest.raises(ApiException) as info:
        custom.create_namespaced_custom_object("ray.io", "v1", namespace, "rayclusters", bad)
    assert info.value.status == 422, info.value.body
    assert "spec.workerGroupSpecs[0].replicas" in info.value.body
    assert "integer" in info.value.body
