"""The CRD installed into a real kube-apiserver (tests/controlplane): bad manifests are refused
with the field named, a good one is stored with the defaults the models run, and the printer
columns show phase, progress and leader."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarm_arena.api import SwarmEvaluation
from swarm_arena.api.status import LeaderboardEntry, Progress, Results, SwarmEvaluationStatus
from tests.api.manifests import BAD, GOOD

pytestmark = pytest.mark.controlplane

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "arena.swarm.dev_swarmevaluations.yaml"
CRD_NAME = "swarmevaluations.arena.swarm.dev"


@pytest.fixture(scope="module")
def crd_installed(control_plane, wait_until) -> None:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    wait_until(f"CRD {CRD_NAME} Established", lambda: control_plane.crds_established(CRD_NAME), timeout=60)


def _create(control_plane, namespace: str, doc: dict[str, Any]):
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = namespace
    return control_plane.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(doc), check=False)


@pytest.mark.parametrize("case", [b for b in BAD if b.layer in ("schema", "cel")], ids=lambda b: b.id)
def test_bad_manifest_is_refused_naming_the_field(control_plane, crd_installed, namespace, case) -> None:
    result = _create(control_plane, namespace, case.manifest())
    assert result.returncode != 0, f"{case.id} was accepted:\n{result.stdout}"
    assert case.api_path in result.stderr, f"expected `{case.api_path}` in:\n{result.stderr}"


def test_good_manifest_is_stored_with_the_defaults_the_models_run(control_plane, crd_installed, namespace) -> None:
    result = _create(control_plane, namespace, GOOD)
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)
    assert stored["spec"] == SwarmEvaluation.model_validate(GOOD).spec.to_wire()


def test_printer_columns_show_phase_progress_and_leader(control_plane, crd_installed, namespace) -> None:
    assert _create(control_plane, namespace, GOOD).returncode == 0
    status = SwarmEvaluationStatus(
        phase="Running",
        progress=Progress(episodes_completed=7, episodes_total=20),
        results=Results(leaderboard=[
            LeaderboardEntry(policy="greedy", rating=3.0, ci_low=2.0, ci_high=4.0, mean_return=1.0, episodes=7),
        ]),
    )
    control_plane.kubectl(
        "patch", "swe", GOOD["metadata"]["name"], "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status.to_wire()}),
    )
    table = control_plane.kubectl("get", "swe", GOOD["metadata"]["name"], "-n", namespace).stdout.split("\n")
    assert table[0].split() == ["NAME", "PHASE", "PROGRESS", "LEADER", "AGE"]
    assert table[1].split()[:4] == ["table", "Running", "7/20", "greedy"]
    stored = yaml.safe_load(control_plane.kubectl("get", "sweval", "table", "-n", namespace, "-o", "yaml").stdout)
    assert SwarmEvaluationStatus.model_validate(stored["status"]).progress.summary == "7/20"


def _started(control_plane, namespace: str) -> None:
    control_plane.kubectl(
        "patch", "swe", GOOD["metadata"]["name"], "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Running", "startTime": "2026-11-23T10:00:00Z"}}),
    )


@pytest.mark.parametrize(
    ("field", "patch"),
    [
        ("spec.episodes", {"episodes": 9}),
        ("spec.environment", {"environment": {"params": {"agents": 41}}}),
        ("spec.policies", {"policies": [{"name": "greedy", "factory": "greedy"}]}),
        ("spec.cluster", {"cluster": {"workerGroups": [{"name": "cpu", "replicas": 3}]}}),
        ("spec.runtimeEnv", {"runtimeEnv": {"pip": ["numpy"]}}),
        ("spec.checkpoint", {"checkpoint": None}),
    ],
)
def test_a_started_evaluation_refuses_spec_edits_naming_the_field(
    control_plane, crd_installed, namespace, field, patch
) -> None:
    assert _create(control_plane, namespace, GOOD).returncode == 0
    _started(control_plane, namespace)
    result = control_plane.kubectl(
        "patch", "swe", GOOD["metadata"]["name"], "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": patch}), check=False,
    )
    assert result.returncode != 0, f"edit of {field} accepted after start"
    assert f"{field}: Invalid value" in result.stderr and "cannot change once the evaluation has started" in result.stderr


def test_a_started_evaluation_still_takes_suspend_deadline_and_ttl(control_plane, crd_installed, namespace) -> None:
    assert _create(control_plane, namespace, GOOD).returncode == 0
    _started(control_plane, namespace)
    patch = {"spec": {"suspend": True, "activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 30}}
    control_plane.kubectl("patch", "swe", GOOD["metadata"]["name"], "-n", namespace, "--type=merge",
                          "-p", json.dumps(patch))


def test_a_pending_evaluation_can_still_be_edited(control_plane, crd_installed, namespace) -> None:
    assert _create(control_plane, namespace, GOOD).returncode == 0
    control_plane.kubectl("patch", "swe", GOOD["metadata"]["name"], "-n", namespace, "--type=merge",
                          "-p", json.dumps({"spec": {"episodes": 9}}))
