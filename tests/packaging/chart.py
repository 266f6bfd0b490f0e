"""Helpers for the chart tests: the helm binary of the test control plane, and rendering."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "swarm-arena-operator"
CRD_FILE = ROOT / "crds" / "arena.swarm.dev_swarmevaluations.yaml"
MANIFESTS = ROOT / "manifests"


def helm_binary() -> str:
    """helm from the control plane's build (building it first if missing; a warm build is a no-op)."""
    from tests.controlplane import build as cpbuild

    return str(cpbuild.build() / "bin" / "helm")


def kube_version() -> str:
    """The test plane's Kubernetes version, for `helm template`/`lint` (the chart has a kubeVersion)."""
    from tests.controlplane import build as cpbuild

    return cpbuild.load_versions()["KUBERNETES_VERSION"]


def run(argv: list[str], *, input: str | None = None, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {out.returncode}:\n{out.stderr or out.stdout}")
    return out


def template(helm: str, *sets: str, release: str = "swarm-arena-operator", namespace: str = "swarm-arena-system",
             extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """`helm template` of the chart with `--set` values, as objects."""
    argv = [helm, "template", release, str(CHART), "--namespace", namespace, "--kube-version", kube_version(), *extra]
    for s in sets:
        argv += ["--set", s]
    return [d for d in yaml.safe_load_all(run(argv).stdout) if d]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]
