"""Process-backed nodes: KubeRay's own pods form a real Ray cluster (issue #8's "must show").

One RayCluster (head, two CPU workers, one GPU worker) is shared by the tests of this module;
they run in file order: the cluster forms, a deleted worker pod takes its Ray node with it and
KubeRay's replacement joins, a killed node loses its Ray node the same way; then the kubelet
duties Ray's pods do not exercise (restarts, exit codes, exec probes). Authentication:
test_process_auth.py.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.controlplane.plane import GPU_LABEL, KWOK_ANNOTATION, wait_for
from tests.controlplane.ray_on_pods import (DASHBOARD, RAY_VERSION, alive_ips, debug_dump, http_json, pods_of, ray_nodes,
                                            raycluster, ready, run_job, wait_formed)

pytestmark = pytest.mark.controlplane


@pytest.fixture(scope="module")
def swarm(process_nodes, core, custom, module_ns):
    """The shared RayCluster, formed: every pod Running and Ready, Ray sees 4 alive nodes."""
    cp = process_nodes
    t0 = time.monotonic()
    custom.create_namespaced_custom_object("ray.io", "v1", module_ns, "rayclusters", raycluster("swarm"))
    head, pods = wait_formed(cp, core, module_ns, "swarm", 4)
    print(f"\nRayCluster swarm formed in {time.monotonic() - t0:.1f}s")
    return {"ns": module_ns, "head": head, "pods": pods}


# --------------------------------------------------------------------------------------------


def test_ray_pods_land_on_process_nodes_only(swarm, core, process_nodes):
    names = {n["name"] for n in process_nodes.process_nodes()}
    for p in swarm["pods"]:
        assert p.spec.node_name in names, f"{p.metadata.name} landed on {p.spec.node_name}"
        node = core.read_node(p.spec.node_name)
        assert KWOK_ANNOTATION not in (node.metadata.annotations or {})
        if p.metadata.labels["ray.io/group"] == "gpu":
            assert node.metadata.labels[GPU_LABEL] == "true"


def test_raycluster_is_a_real_ray_cluster(swarm, process_nodes):
    cp = process_nodes
    head_ip = swarm["head"].status.pod_ip
    status, version = http_json(cp.pod_url(head_ip, DASHBOARD, "/api/version"))
    assert status == 200 and version["ray_version"] == RAY_VERSION, version
    pods = {p.status.pod_ip: p for p in swarm["pods"]}
    gpu_pod = next(p for p in swarm["pods"] if p.metadata.labels["ray.io/group"] == "gpu")
    script = f"""
import json, socket, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
nodes = [n for n in ray.nodes() if n["Alive"]]
@ray.remote(num_cpus=0)
def where():
    return {{"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}}
gpu_node = next(n["NodeID"] for n in nodes if n["NodeManagerAddress"] == "{gpu_pod.status.pod_ip}")
on_gpu = ray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(gpu_node, soft=False)).remote())
@ray.remote(num_gpus=1)
def gpu_ids():
    return ray.get_gpu_ids(), socket.gethostname()
print("RESULT=" + json.dumps({{"nodes": [{{"ip": n["NodeManagerAddress"], "resources": n["Resources"]}} for n in nodes],
                            "on_gpu": on_gpu, "gpu_node": gpu_node, "gpu_task": ray.get(gpu_ids.remote())}}))
"""
    logs = run_job(cp, head_ip, script)
    result = json.loads(next(line for line in logs.splitlines() if line.startswith("RESULT="))[len("RESULT="):])
    assert sorted(n["ip"] for n in result["nodes"]) == sorted(pods), result
    by_ip = {n["ip"]: n["resources"] for n in result["nodes"]}
    assert by_ip[gpu_pod.status.pod_ip].get("GPU") == 1.0
    assert all("GPU" not in r for ip, r in by_ip.items() if ip != gpu_pod.status.pod_ip)
    # a task pinned to the GPU worker's Ray node runs in that pod (its UTS namespace has the pod's name)
    assert result["on_gpu"] == {"node": result["gpu_node"], "host": gpu_pod.metadata.name}
    ids, host = result["gpu_task"]
    assert host == gpu_pod.metadata.name and len(ids) == 1


def test_deleting_a_worker_pod_kills_its_ray_node_and_the_replacement_joins(swarm, core, process_nodes):
    cp, ns = process_nodes, swarm["ns"]
    head_ip = swarm["head"].status.pod_ip
    victim = next(p for p in pods_of(core, ns, "swarm", "cpu") if ready(p))
    before = {p.metadata.uid for p in pods_of(core, ns, "swarm", "cpu")}
    t0 = time.monotonic()
    core.delete_namespaced_pod(victim.metadata.name, ns)

    def dead():
        n = [x for x in ray_nodes(cp, head_ip) if x["node_ip"] == victim.status.pod_ip]
        return n and all(x["state"] == "DEAD" for x in n)
    wait_for(f"Ray to report the node of deleted pod {victim.metadata.name} dead", dead, timeout=90, interval=1)
    t_dead = time.monotonic() - t0

    def replaced():
        pods = [p for p in pods_of(core, ns, "swarm", "cpu") if p.metadata.uid not in before and ready(p)]
        return pods and pods[0].status.pod_ip in alive_ips(ray_nodes(cp, head_ip)) and pods[0]
    new = wait_for("KubeRay's replacement worker to join the Ray cluster", replaced, timeout=180, interval=1,
                   on_timeout=lambda: debug_dump(cp, core, ns))
    assert len(alive_ips(ray_nodes(cp, head_ip))) == 4
    print(f"\nworker pod deleted: Ray node dead after {t_dead:.1f}s, replacement {new.metadata.name} joined after "
          f"{time.monotonic() - t0:.1f}s")


def test_killing_a_node_loses_its_ray_nodes(swarm, core, process_nodes):
    cp, ns = process_nodes, swarm["ns"]
    head_ip = swarm["head"].status.pod_ip
    gpu_pod = next(p for p in pods_of(core, ns, "swarm", "gpu") if ready(p))
    node = gpu_pod.spec.node_name
    # keep the session's capacity: a fresh GPU node first (pods never come back to a crashed node's name)
    spare = f"proc-gpu-{uuid.uuid4().hex[:4]}"
    cp.add_process_node(spare, gpus=2)
    wait_for(f"node {spare} Ready", lambda: any(c.type == "Ready" and c.status == "True"
                                                  for c in core.read_node(spare).status.conditions or []), 30)
    on_node = [p for n in cp.process_nodes() if n["name"] == node for p in n["pods"]]
    pids = [pid for p in on_node for pid in p["pids"].values()]
    t0 = time.monotonic()
    killed = cp.kill_node(node)
    assert f"{ns}/{gpu_pod.metadata.name}" in killed
    for pid in pids:  # every wrapper process is gone at once (and with it its PID namespace)
        wait_for(f"pid {pid} gone", lambda pid=pid: not _running(pid), 5, 0.05)

    def not_ready_or_gone():
        try:
            conds = {c.type: c.status for c in core.read_node(node).status.conditions or []}
        except Exception as exc:  # noqa: BLE001
            return getattr(exc, "status", None) == 404
        return conds.get("Ready") != "True"
    wait_for(f"node {node} NotReady", not_ready_or_gone, 15, 0.2)

    def dead():
        n = [x for x in ray_nodes(cp, head_ip) if x["node_ip"] == gpu_pod.status.pod_ip]
        return n and all(x["state"] == "DEAD" for x in n)
    wait_for(f"Ray to report the GPU worker's node dead after {node} was killed", dead, timeout=90, interval=1)
    t_dead = time.monotonic() - t0
    wait_for(f"node {node} deleted", lambda: node not in {n.metadata.name for n in core.list_node().items}, 30)
    assert node not in {n["name"] for n in cp.process_nodes()}
    print(f"\nnode {node} killed: Ray node dead after {t_dead:.1f}s")


def _running(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_restarts_exit_codes_and_exec_probes(process_nodes, core, module_ns):
    """The kubelet duties that Ray's pods above do not exercise: restartPolicy OnFailure with the
    exit code and restart count in the status, an emptyDir that outlives a container restart, exec
    readiness and liveness probes (a failing liveness probe kills the container: 137)."""
    ns = module_ns
    core.create_namespaced_pod(ns, {"metadata": {"name": "twice"}, "spec": {
        "restartPolicy": "OnFailure",
        "containers": [{"name": "main", "image": "unused", "command": ["bash", "-c",
                        "if [ -f /data/ran ]; then exit 0; fi; touch /data/ran; exit 3"],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "emptyDir": {}}]}})
    core.create_namespaced_pod(ns, {"metadata": {"name": "probed"}, "spec": {"containers": [{
        "name": "main", "image": "unused",
        "command": ["bash", "-c", "sleep 1; touch /tmp/ready; exec sleep 3000"],
        "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1},
        # alive while /tmp/ready exists; the test removes it through the pod's own /tmp below
        "livenessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "initialDelaySeconds": 3,
                          "periodSeconds": 1, "failureThreshold": 2}}]}})

    def finished():
        p = core.read_namespaced_pod("twice", ns)
        return p if p.status.phase == "Succeeded" else None
    twice = wait_for("pod twice Succeeded after one restart", finished, 60)
    cs = twice.status.container_statuses[0]
    assert cs.restart_count == 1
    assert cs.state.terminated.exit_code == 0 and cs.last_state.terminated.exit_code == 3
    assert process_nodes.pod_log(ns, "twice", "main").count(" start (restart ") == 2

    def is_ready():
        p = core.read_namespaced_pod("probed", ns)
        return p if ready(p) else None
    probed = wait_for("pod probed Ready (exec readiness probe)", is_ready, 60)
    assert probed.status.container_statuses[0].restart_count == 0
    pod_dir = next(d for n in process_nodes.process_nodes() for d in n["pods"] if d["name"] == "probed")
    tmp = next(process_nodes.network.files.glob(f"pods/{ns}_probed_{pod_dir['uid'][:8]}/tmp"))
    (tmp / "ready").unlink()

    def restarted():
        p = core.read_namespaced_pod("probed", ns)
        cs = p.status.container_statuses[0]
        return p if cs.restart_count >= 1 and cs.last_state.terminated else None
    probed = wait_for("liveness probe failure to restart the container", restarted, 60)
    assert probed.status.container_statuses[0].last_state.terminated.exit_code == 137
    wait_for("pod probed Ready again after its restart", is_ready, 60)
