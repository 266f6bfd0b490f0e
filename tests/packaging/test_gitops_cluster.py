"""GitOps against the real API server: an applied example shows no drift once the operator has
written its status and bookkeeping, and the Argo CD health check reads the status objects the API
server actually stores (pruned and validated by the CRD's status schema)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from swarm_arena.api.status import Phase
from tests.packaging.argocd import health
from tests.packaging.chart import CRD_FILE, MANIFESTS
from tests.packaging.test_argocd_health import EXPECTED, status_of

CRD_NAME = "swarmevaluations.arena.swarm.dev"
EXAMPLE = MANIFESTS / "examples" / "foraging-local.yaml"


@pytest.fixture(scope="module")
def crd(control_plane, wait_until) -> None:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    wait_until(f"CRD {CRD_NAME} Established", lambda: control_plane.crds_established(CRD_NAME), timeout=60)


def _example_in(namespace: str, tmp_path: Path) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["namespace"] = namespace
    path = tmp_path / EXAMPLE.name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _operator_writes(control_plane, namespace: str, name: str, status: dict) -> None:
    """What the operator writes: kopf's finalizer and its bookkeeping annotation (the names
    controller/handlers/lifecycle.py gives them), and the status subresource."""
    from swarm_arena.controller.handlers.lifecycle import FINALIZER

    control_plane.kubectl(
        "patch", "swarmevaluation", name, "-n", namespace, "--type=merge", "--field-manager=kopf",
        "-p", json.dumps({"metadata": {"finalizers": [FINALIZER],
                                       "annotations": {"arena.swarm.dev/evaluation_deleted": "{\"retries\": 1}"}}}))
    control_plane.kubectl(
        "patch", "swarmevaluation", name, "-n", namespace, "--subresource=status", "--type=merge",
        "--field-manager=swarm-arena-operator", "-p", json.dumps({"status": status}))


def _release_finalizer(control_plane, namespace: str, name: str) -> None:
    control_plane.kubectl("patch", "swarmevaluation", name, "-n", namespace, "--type=merge",
                          "-p", '{"metadata":{"finalizers":null}}')


def test_applied_example_shows_no_drift_after_the_operator_wrote_status(control_plane, crd, namespace,
                                                                          tmp_path) -> None:
    path = _example_in(namespace, tmp_path)
    control_plane.kubectl("apply", "--server-side", "--field-manager=argocd-controller", "-f", str(path))
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    live = json.loads(control_plane.kubectl("get", "swarmevaluation", name, "-n", namespace, "-o", "json").stdout)
    assert live["spec"]["execution"]["placementStrategy"] == "SPREAD"  # defaults come from the CRD

    _operator_writes(control_plane, namespace, name, status_of(Phase.SUCCEEDED, live["metadata"]["generation"]))
    try:
        diff = subprocess.run([control_plane.bin("kubectl"), "--kubeconfig", str(control_plane.kubeconfig), "diff",
                               "--server-side", "--field-manager=argocd-controller", "-f", str(path)],
                              capture_output=True, text=True, timeout=60)
        assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr
        again = control_plane.kubectl("apply", "--server-side", "--field-manager=argocd-controller", "-f", str(path))
        assert "serverside-applied" in again.stdout
        after = json.loads(control_plane.kubectl("get", "swarmevaluation", name, "-n", namespace, "-o", "json").stdout)
        assert after["metadata"]["generation"] == live["metadata"]["generation"]  # re-applying changed nothing
        assert after["status"]["phase"] == "Succeeded"
    finally:
        _release_finalizer(control_plane, namespace, name)


@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.value)
def test_argocd_health_of_status_read_back_from_the_api_server(control_plane, crd, namespace, tmp_path,
                                                               phase) -> None:
    path = _example_in(namespace, tmp_path)
    control_plane.kubectl("apply", "--server-side", "-f", str(path))
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    control_plane.kubectl("patch", "swarmevaluation", name, "-n", namespace, "--subresource=status",
                          "--type=merge", "-p", json.dumps({"status": status_of(phase)}))
    stored = json.loads(control_plane.kubectl("get", "swarmevaluation", name, "-n", namespace, "-o", "json").stdout)
    assert stored["status"]["phase"] == phase.value

    status, message = health(stored)

    assert status == EXPECTED[phase], message


# ---- Flux: kstatus, the library Flux's health checks use, on the stored objects ---------------

KSTATUS = Path(__file__).resolve().parent / "kstatus"
# kstatus' verdicts: Current (done), InProgress, Failed (Stalled=True).
KSTATUS_EXPECTED = {phase: "InProgress" for phase in Phase} | {Phase.SUCCEEDED: "Current", Phase.FAILED: "Failed"}


@pytest.fixture(scope="module")
def kstatus(tmp_path_factory) -> Path:
    import os
    import shutil

    go = shutil.which("go")
    assert go, "the Go toolchain is needed (as for tests/controlplane); install Go >= 1.25"
    binary = tmp_path_factory.mktemp("kstatus") / "kstatus"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    build = subprocess.run([go, "build", "-o", str(binary), "."], cwd=KSTATUS, env=env,
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, f"building tests/packaging/kstatus failed:\n{build.stderr[-4000:]}"
    return binary


def test_flux_kstatus_of_every_phase(control_plane, crd, namespace, tmp_path, kstatus) -> None:
    path = _example_in(namespace, tmp_path)
    control_plane.kubectl("apply", "--server-side", "-f", str(path))
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    stored = []
    for phase in Phase:
        control_plane.kubectl("patch", "swarmevaluation", name, "-n", namespace, "--subresource=status",
                              "--type=merge", "-p", json.dumps({"status": status_of(phase)}))
        stored.append(json.loads(
            control_plane.kubectl("get", "swarmevaluation", name, "-n", namespace, "-o", "json").stdout))
    newer_spec = dict(stored[-1], metadata={**stored[-1]["metadata"], "generation": 2})  # not observed yet

    run = subprocess.run([str(kstatus)], input=json.dumps([*stored, newer_spec]), capture_output=True,
                         text=True, timeout=60)

    assert run.returncode == 0, run.stderr
    verdicts = json.loads(run.stdout)
    got = {phase: v["status"] for phase, v in zip(Phase, verdicts)}
    assert got == KSTATUS_EXPECTED, verdicts
    assert verdicts[list(Phase).index(Phase.FAILED)]["message"] == (
        "spec.policies[0].factory: cannot import module 'mine'")
    assert verdicts[-1]["status"] == "InProgress"
