"""pytest fixtures for the real control plane (see docs/testing-controlplane.md).

Enable with ``pytest_plugins = ["tests.controlplane.pytest_plugin"]`` in the root conftest.

* ``control_plane`` (session): builds the binaries if missing (a warm build is a no-op), starts
  etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, the process node agent
  (``DEFAULT_PROCESS_NODES``: pods there really run) and the KubeRay operator on loopback, yields
  the :class:`~tests.controlplane.plane.ControlPlane`, stops it and checks that no process,
  network namespace, bridge or veth is left. ``SWARM_ARENA_PROCESS_NODES=0`` starts it without
  process nodes (kwok only, as before).
* ``process_nodes`` (session): the same plane, failing the test (with what to do) when it has no
  process nodes (not root, tools missing).
* ``kube_api`` (session): a ``kubernetes.client.ApiClient`` for the admin kubeconfig.
* ``namespace`` (function): a fresh namespace (its ``default`` ServiceAccount exists), deleted after.
* ``wait_until`` (session): ``wait_until(what, check, timeout=60)`` polls with a deadline and, on
  timeout, fails with the control-plane components' log tails.

Tests using ``control_plane`` (directly or through the others) are marked ``controlplane``;
for a quick loop without the plane, deselect them: ``pytest -m "not controlplane"``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.controlplane import build as cpbuild
from tests.controlplane import procnet
from tests.controlplane.plane import DEFAULT_PROCESS_NODES, ControlPlane, ControlPlaneError, wait_for

MARKER = "controlplane"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: runs against the real local Kubernetes control plane (tests/controlplane)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(MARKER)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    try:
        out = cpbuild.build()
    except cpbuild.BuildError as exc:
        pytest.fail(f"could not build the control plane: {exc}", pytrace=False)
    want_nodes = os.environ.get("SWARM_ARENA_PROCESS_NODES", "1") != "0"
    nodes = DEFAULT_PROCESS_NODES if want_nodes and procnet.available() is None else ()
    cp = ControlPlane(build_dir=out, process_nodes=nodes)
    try:
        cp.start()
    except ControlPlaneError as exc:
        pytest.fail(f"control plane failed to start: {exc}", pytrace=False)
    print(f"\ncontrol plane up in {cp.started_in:.1f}s: KUBECONFIG={cp.kubeconfig}"
          + (f"; process nodes {[n.name for n in nodes]} on {cp.network.subnet}" if cp.network else ""))
    try:
        yield cp
    finally:
        pids = cp.pids()
        pod_pids = _pod_pids(cp)
        cp.stop()
        alive = {n: p for n, p in pids.items() if _group_alive(p)}
        assert not alive, f"control plane processes left behind: {alive}"
        alive_pods = [p for p in pod_pids if _alive(p)]
        assert not alive_pods, f"process-backed pod processes left behind: {alive_pods}"
        if cp.network is not None:
            left = procnet.leftovers(cp.network.plane_id)
            assert not any(left.values()), f"pod network left behind: {left}"


@pytest.fixture(scope="session")
def process_nodes(control_plane: ControlPlane) -> ControlPlane:
    if control_plane.network is None:
        why = procnet.available() or "SWARM_ARENA_PROCESS_NODES=0 is set"
        pytest.fail(f"this test needs process-backed nodes, and the plane has none: {why}", pytrace=False)
    return control_plane


def _pod_pids(cp: ControlPlane) -> list[int]:
    """Every process of every process-backed pod now (wrappers and everything in their PID namespaces)."""
    if cp.network is None:
        return []
    try:
        nodes = cp.process_nodes()
    except Exception:  # noqa: BLE001 - the agent died: nothing to list, the network check still runs
        return []
    out: list[int] = []
    for node in nodes:
        for pod in node["pods"]:
            r = procnet.ip("netns", "pids", pod["netns"], check=False)
            out += [int(p) for p in r.stdout.split()] + list(pod["pids"].values())
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper does not count)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def built_images() -> dict[str, str]:
    """Both images in buildah's local store, as `make images` builds them (a cache hit, about a
    second, when `make test` built them before pytest started; minutes from cold): their refs."""
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(repo / "images" / "build.py")], capture_output=True, text=True,
                         check=False, timeout=3600)
    if out.returncode != 0:
        pytest.fail(f"`make images` failed (rc {out.returncode}):\n{out.stdout[-3000:]}{out.stderr[-2000:]}",
                    pytrace=False)
    refs = re.findall(r"ready: (\S+)", out.stdout)
    return {("operator" if "-operator:" in r else "ray"): r for r in refs}


@pytest.fixture(scope="module")
def images_on(process_nodes: ControlPlane, built_images: dict[str, str]) -> Iterator[dict[str, str]]:
    """Process nodes run containers from the built images (and go back to the host's environment
    for every image after the module): yields the refs of the operator and Ray images."""
    process_nodes.run_images(True)
    try:
        yield built_images
    finally:
        process_nodes.run_images(False)


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane):
    api = control_plane.api_client()
    yield api
    api.close()


@pytest.fixture(scope="session")
def wait_until(control_plane: ControlPlane) -> Callable[..., Any]:
    def _wait_until(what: str, check: Callable[[], Any], timeout: float = 60, interval: float = 0.2) -> Any:
        try:
            return wait_for(what, check, timeout, interval, on_timeout=control_plane._tails())
        except ControlPlaneError as exc:
            pytest.fail(str(exc), pytrace=False)
    return _wait_until


@pytest.fixture
def namespace(request: pytest.FixtureRequest, control_plane: ControlPlane, kube_api) -> Iterator[str]:
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-") or "t"
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": name, "labels": {"swarm-arena.test/namespace": "true"}}})
    # pods cannot be created before the ServiceAccount controller made `default`
    wait_for(f"ServiceAccount {name}/default", lambda: core.read_namespaced_service_account("default", name),
             30, on_timeout=control_plane._tails("kube-controller-manager"))
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")
