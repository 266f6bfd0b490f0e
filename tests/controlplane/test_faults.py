"""The plane's fault primitives (what benchmarks/soak.py injects): an API server restart that
clients survive, and a process node cut off from the network and brought back."""

from __future__ import annotations

import secrets
import urllib.request
from datetime import datetime, timezone

import pytest

from tests.controlplane.plane import ControlPlane, ControlPlaneError, wait_for

pytestmark = pytest.mark.controlplane

SERVE = ["python", "-c", "import http.server as h; h.ThreadingHTTPServer(('', 8080), h.SimpleHTTPRequestHandler)"
         ".serve_forever()"]


def _pod(name: str, node: str) -> dict:
    return {"metadata": {"name": name}, "spec": {
        "nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": "unused", "command": SERVE}]}}


def _running(core, ns: str, name: str):
    p = core.read_namespaced_pod(name, ns)
    return p if p.status.phase == "Running" and p.status.pod_ip else None


def _answers(cp: ControlPlane, ip: str) -> bool:
    try:
        with urllib.request.urlopen(cp.pod_url(ip, 8080, "/"), timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _ready(core, node: str) -> str:
    return next(c.status for c in core.read_node(node).status.conditions if c.type == "Ready")


def _pids(cp: ControlPlane, node: str) -> dict[str, dict[str, int]]:
    found = next(n for n in cp.process_nodes() if n["name"] == node)
    return {p["name"]: p["pids"] for p in found["pods"]}


def test_a_restarted_api_server_keeps_its_objects_and_its_clients(process_nodes, core, module_ns):
    cp = process_nodes
    ns = module_ns
    core.create_namespaced_config_map(ns, {"metadata": {"name": "before"}, "data": {"k": "v"}})
    pid = cp.components["kube-apiserver"].proc.pid
    cp.restart_apiserver(down_for=2)
    assert cp.components["kube-apiserver"].proc.pid != pid
    # the same client (its pooled connections broke) reads what was there and writes anew
    assert wait_for("the old client reads again", lambda: core.read_namespaced_config_map("before", ns), 30).data == {
        "k": "v"}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "after"}})
    for name in ("etcd", "kube-controller-manager", "kube-scheduler", "kwok", "node-agent", "ray-operator"):
        cp.components[name].check_alive()
    # the node agent's watches came back: a pod created now runs
    node = next(n["name"] for n in cp.process_nodes() if n["alive"] and not n["cut"] and not n["gpus"])
    core.create_namespaced_pod(ns, _pod("after-restart", node))
    pod = wait_for("a pod made after the restart Running", lambda: _running(core, ns, "after-restart"), 90)
    assert wait_for("it answers", lambda: _answers(cp, pod.status.pod_ip), 60)
    core.delete_namespaced_pod("after-restart", ns, grace_period_seconds=0)


def test_a_cut_off_node_goes_unknown_keeps_its_processes_and_comes_back(process_nodes, core, module_ns):
    cp = process_nodes
    ns = module_ns
    node = f"cut-{secrets.token_hex(2)}"
    cp.add_process_node(node)
    try:
        for name in ("kept", "deleted-while-cut"):
            core.create_namespaced_pod(ns, _pod(name, node))
        kept = wait_for("pod kept Running", lambda: _running(core, ns, "kept"), 90)
        wait_for("pod deleted-while-cut Running", lambda: _running(core, ns, "deleted-while-cut"), 90)
        ip = kept.status.pod_ip
        assert wait_for("kept answers from the host", lambda: _answers(cp, ip), 60)
        before = _pids(cp, node)
        assert before["kept"]

        assert sorted(cp.cut_node(node)) == [f"{ns}/deleted-while-cut", f"{ns}/kept"]
        cut_at = datetime.now(timezone.utc)
        assert not _answers(cp, ip)  # nothing reaches its pods
        # the control plane sees a partition: no Lease renewals, then Ready Unknown (node lifecycle controller)
        wait_for(f"{node} Ready Unknown", lambda: _ready(core, node) == "Unknown", 150)
        from kubernetes import client

        lease = client.CoordinationV1Api(core.api_client).read_namespaced_lease(node, "kube-node-lease")
        assert lease.spec.renew_time < cut_at
        # a deletion while cut off is not acted on: the process runs on, the object stays
        core.delete_namespaced_pod("deleted-while-cut", ns, grace_period_seconds=1)
        assert core.read_namespaced_pod("deleted-while-cut", ns).metadata.deletion_timestamp
        assert _pids(cp, node) == before  # the same processes, nothing restarted or stopped

        cp.reconnect_node(node)
        wait_for(f"{node} Ready again", lambda: _ready(core, node) == "True", 60)
        assert wait_for("kept answers again", lambda: _answers(cp, ip), 60)
        assert _pids(cp, node)["kept"] == before["kept"]  # the very same process

        def gone() -> bool:
            return not any(p.metadata.name == "deleted-while-cut" for p in core.list_namespaced_pod(ns).items)
        wait_for("the pod deleted while cut off stopped and removed", gone, 60)
        lease = client.CoordinationV1Api(core.api_client).read_namespaced_lease(node, "kube-node-lease")
        assert lease.spec.renew_time > cut_at
    finally:
        cp.kill_node(node)


def test_a_killed_nodes_name_is_refused_for_a_new_node(process_nodes):
    cp = process_nodes
    node = f"gone-{secrets.token_hex(2)}"
    cp.add_process_node(node)
    cp.kill_node(node)
    wait_for(f"{node} removed", lambda: node not in {n["name"] for n in cp.process_nodes()}, 30)
    with pytest.raises(ControlPlaneError, match="fresh name"):  # its pods would never start
        cp.add_process_node(node)


def test_a_node_marked_unknown_is_posted_ready_again_as_a_kubelet_does(process_nodes, core):
    """After an API server outage longer than the node grace period the node lifecycle controller
    marks every node Ready Unknown; a kubelet's status loop sets it back, and so must the agent."""
    cp = process_nodes
    node = f"unknown-{secrets.token_hex(2)}"
    cp.add_process_node(node)
    try:
        wait_for(f"{node} Ready", lambda: _ready(core, node) == "True", 60)
        t = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        core.patch_node_status(node, {"status": {"conditions": [  # what the node lifecycle controller writes
            {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
             "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": t, "lastTransitionTime": t}]}})
        assert _ready(core, node) == "Unknown"
        wait_for(f"{node} Ready again", lambda: _ready(core, node) == "True", 60)
    finally:
        cp.kill_node(node)
