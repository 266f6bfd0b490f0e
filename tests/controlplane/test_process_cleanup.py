"""Nothing a process node starts outlives its plane, even when the test process dies.

Each test starts its own small plane (no KubeRay, one process node) so that it can stop or
crash it; a pod whose container forks grandchildren stands in for Ray's daemons.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.controlplane import procnet
from tests.controlplane.plane import wait_for

pytestmark = pytest.mark.controlplane

REPO = Path(__file__).resolve().parents[2]

# Starts a plane with one process node, runs a pod whose container leaves background children,
# prints what runs, then waits for "stop" on stdin (or to be killed).
CHILD = r"""
import json, sys, time
from kubernetes import client
from tests.controlplane import build, procnet
from tests.controlplane.nodeagent import NodeSpec
from tests.controlplane.plane import ControlPlane, wait_for
cp = ControlPlane(build_dir=build.find_build(), kuberay=False, process_nodes=[NodeSpec("proc-solo", "2", "4Gi")])
cp.start()
core = client.CoreV1Api(cp.api_client())
wait_for("default SA", lambda: core.read_namespaced_service_account("default", "default"), 30)
core.create_namespaced_pod("default", {"metadata": {"name": "sleeper"}, "spec": {"containers": [{
    "name": "main", "image": "busybox",
    "command": ["/bin/bash", "-c", "sleep 3000 & (setsid sleep 3001 &) ; sleep 3002"]}]}})
def running():
    p = core.read_namespaced_pod("sleeper", "default")
    return p.status.phase == "Running" and p.status.pod_ip
ip = wait_for("pod sleeper Running", running, 60)
def all_started():
    pods = [p for n in cp.process_nodes() for p in n["pods"]]
    if not pods:
        return None
    pids = [int(x) for x in procnet.ip("netns", "pids", pods[0]["netns"]).stdout.split()]
    return pods if len(pids) >= 4 else None  # sh/bash init, the three sleeps
pods = wait_for("the pod's processes", all_started, 30)
ns_pids = [int(x) for x in procnet.ip("netns", "pids", pods[0]["netns"]).stdout.split()]
print("STATE " + json.dumps({"plane_id": cp.network.plane_id, "pod_ip": ip, "started_in": cp.started_in,
                             "pids": ns_pids + list(pods[0]["pids"].values()),
                             "components": list(cp.pids().values())}), flush=True)
if sys.stdin.readline().strip() == "stop":
    cp.stop()
    print("STOPPED", flush=True)
    time.sleep(3600)
"""


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_child() -> tuple[subprocess.Popen, dict]:
    if procnet.available():
        pytest.fail(f"process nodes cannot run here: {procnet.available()}", pytrace=False)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    lines = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("STATE "):
            return proc, json.loads(line[6:])
    proc.kill()
    pytest.fail("the child plane did not come up:\n" + "".join(lines[-40:]), pytrace=False)


def _left(plane_id: str) -> dict:
    return {k: v for k, v in procnet.leftovers(plane_id).items() if v}


def test_stop_leaves_no_process_namespace_bridge_or_veth(control_plane):
    proc, state = _start_child()
    try:
        assert all(_running(p) for p in state["pids"]), state
        assert _left(state["plane_id"])["netns"]
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "STOPPED"
        gone = [p for p in state["pids"] + state["components"] if _running(p)]
        assert not gone, f"left running after stop(): {gone}"
        assert not _left(state["plane_id"]), _left(state["plane_id"])
        print(f"\nplane with one process node started in {state['started_in']:.1f}s")
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_test_process_takes_every_pod_process_with_it(control_plane):
    proc, state = _start_child()
    try:
        assert all(_running(p) for p in state["pids"]), state
    finally:
        proc.send_signal(signal.SIGKILL)  # no atexit, no stop(): only PR_SET_PDEATHSIG and PID namespaces
        proc.wait()
    wait_for("every pod and component process to die with the test process",
             lambda: not [p for p in state["pids"] + state["components"] if _running(p)], 15, 0.1)
    # its network stays until the next plane sweeps it (its owner is gone)
    assert _left(state["plane_id"]).get("netns")
    assert state["plane_id"] in procnet.sweep_stale()
    assert not _left(state["plane_id"]), _left(state["plane_id"])


def test_sweep_leaves_a_live_plane_alone(process_nodes):
    assert process_nodes.network.plane_id not in procnet.sweep_stale()
    assert procnet.leftovers(process_nodes.network.plane_id)["links"]  # its bridge is still there

