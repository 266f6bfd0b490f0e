"""The CRD and the bad-manifest table through the API server's own validation code.

`kubecheck/` is a small Go program over k8s.io/apiextensions-apiserver at the version the test
control plane pins (it is built with that wrapper module's go.mod, so no second dependency
set): CRD validation exactly as `kubectl apply -f crds/` gets it (structural schema, CEL
compilation and *cost estimates*), then for each manifest what a create does: pruning of
unknown fields, defaulting, OpenAPI validation and the CEL rules. No server process is needed,
so this runs wherever Go and the module cache are (as for tests/controlplane).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarm_arena.api import SwarmEvaluation
from tests.api.manifests import BAD, GOOD

pytestmark = pytest.mark.controlplane

ROOT = Path(__file__).resolve().parents[2]
KUBECHECK = Path(__file__).resolve().parent / "kubecheck"
KUBE_GOMOD = ROOT / "tests" / "controlplane" / "go" / "kube" / "go.mod"
CRD_FILE = ROOT / "crds" / "arena.swarm.dev_swarmevaluations.yaml"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def kubecheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    assert go, "the Go toolchain is needed (as for tests/controlplane); install Go >= 1.25"
    binary = tmp_path_factory.mktemp("kubecheck") / "kubecheck"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    build = subprocess.run(
        [go, "build", f"-modfile={KUBE_GOMOD}", "-o", str(binary), "."],
        cwd=KUBECHECK, env=env, capture_output=True, text=True, timeout=1200,
    )
    assert build.returncode == 0, f"building kubecheck failed:\n{build.stderr[-4000:]}"
    return binary


@pytest.fixture(scope="module")
def verdicts(kubecheck: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    objects = [{"name": "good", "object": GOOD}]
    objects += [{"name": b.id, "object": b.manifest()} for b in BAD]
    for example in EXAMPLES:
        for i, doc in enumerate(d for d in yaml.safe_load_all(example.read_text()) if d):
            objects.append({"name": f"{example.name}#{i}", "object": doc})
    path = tmp_path_factory.mktemp("objects") / "objects.json"
    path.write_text(json.dumps(objects))
    run = subprocess.run([str(kubecheck), str(CRD_FILE), str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    return {"crd_errors": out["crdErrors"], "objects": {o["name"]: o for o in out["objects"]}}


def test_the_api_server_accepts_the_crd(verdicts: dict[str, Any]) -> None:
    assert verdicts["crd_errors"] == []


@pytest.mark.parametrize("name", ["good", *(f"{e.name}#0" for e in EXAMPLES)])
def test_good_manifests_are_accepted_and_defaulted_like_the_models(verdicts: dict[str, Any], name: str) -> None:
    verdict = verdicts["objects"][name]
    assert verdict["errors"] == []
    model = SwarmEvaluation.model_validate(verdict["defaulted"])
    assert verdict["defaulted"]["spec"] == model.spec.to_wire()


@pytest.mark.parametrize("case", [b for b in BAD if b.layer in ("schema", "cel")], ids=lambda b: b.id)
def test_bad_manifests_are_refused_naming_the_field(verdicts: dict[str, Any], case) -> None:
    errors = verdicts["objects"][case.id]["errors"]
    assert any(case.api_path in e for e in errors), f"expected `{case.api_path}` in {errors}"


@pytest.mark.parametrize("case", [b for b in BAD if b.layer in ("import", "envelope")], ids=lambda b: b.id)
def test_what_only_the_operator_can_know_passes_the_schema(verdicts: dict[str, Any], case) -> None:
    assert verdicts["objects"][case.id]["errors"] == []
