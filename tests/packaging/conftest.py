"""Fixtures for the chart on the real control plane (tests/controlplane).

* ``helm`` (session): the helm binary of the control plane's build.
* ``chart_install`` (factory, module): ``chart_install(release, namespace, *sets)`` runs
  ``helm install`` (the operator pod pinned to a kwok node) and returns a :class:`Release`;
  every release still installed is uninstalled after the module.
* ``chart_release`` (module): the chart installed cluster-wide in a fresh namespace, Available.
* ``Release.kubeconfig()``: a kubeconfig whose user is the chart's own ServiceAccount (a token
  from the TokenRequest API): run the operator with it to prove the chart's RBAC is enough.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from tests.controlplane.plane import GPU_LABEL, KWOK_ANNOTATION, ControlPlane
from tests.packaging.chart import CHART, run

CHART_NAME = "swarm-arena-operator"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def kwok_placement(core) -> dict[str, Any]:
    """Values that put the operator pod on a CPU kwok node (kwok makes its pods Ready).

    The taints are read from the nodes themselves, so a taint added to the kwok nodes (to keep
    other pods off them) is tolerated here without this file knowing its name.
    """
    nodes = [n for n in core.list_node().items
             if (n.metadata.annotations or {}).get(KWOK_ANNOTATION) == "fake"
             and GPU_LABEL not in (n.metadata.labels or {})]
    assert nodes, "no CPU kwok node in the control plane"
    hostnames = sorted(n.metadata.labels["kubernetes.io/hostname"] for n in nodes)
    taints = {(t.key, t.value, t.effect) for n in nodes for t in (n.spec.taints or [])}
    tolerations = [{"key": k, "operator": "Equal", "value": v, "effect": e} if v else
                   {"key": k, "operator": "Exists", "effect": e} for k, v, e in sorted(taints, key=str)]
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": hostnames}]}
    return {"tolerations": tolerations,
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [term]}}}}


@dataclass
class Release:
    name: str
    namespace: str
    control_plane: ControlPlane
    helm: str
    workdir: Path
    installed: bool = True
    _kubeconfigs: dict[str, Path] = field(default_factory=dict)

    @property
    def fullname(self) -> str:
        return self.name if CHART_NAME in self.name else f"{self.name}-{CHART_NAME}"

    @property
    def service_account(self) -> str:
        return self.fullname

    def helm_cmd(self, *args: str, timeout: float = 180) -> str:
        return run([self.helm, "--kubeconfig", str(self.control_plane.kubeconfig), *args], timeout=timeout).stdout

    def token(self, seconds: int = 3600) -> str:
        out = self.control_plane.kubectl("create", "token", self.service_account, "-n", self.namespace,
                                         f"--duration={seconds}s")
        return out.stdout.strip()

    def kubeconfig(self) -> Path:
        """A kubeconfig authenticating as the chart's ServiceAccount (TokenRequest token, 1 h)."""
        if "sa" not in self._kubeconfigs:
            admin = yaml.safe_load(self.control_plane.kubeconfig.read_text())
            cluster = admin["clusters"][0]["cluster"]
            cfg = {
                "apiVersion": "v1", "kind": "Config", "current-context": "chart",
                "clusters": [{"name": "plane", "cluster": cluster}],
                "users": [{"name": self.service_account, "user": {"token": self.token()}}],
                "contexts": [{"name": "chart", "context": {"cluster": "plane", "user": self.service_account,
                                                           "namespace": self.namespace}}],
            }
            path = self.workdir / f"{self.name}-sa.kubeconfig"
            path.write_text(yaml.safe_dump(cfg))
            path.chmod(0o600)
            self._kubeconfigs["sa"] = path
        return self._kubeconfigs["sa"]

    def as_operator(self, *args: str, input: str | None = None):
        """kubectl with the chart's ServiceAccount token (check=False: the caller reads the outcome)."""
        import subprocess

        return subprocess.run([self.control_plane.bin("kubectl"), "--kubeconfig", str(self.kubeconfig()), *args],
                              input=input, capture_output=True, text=True, timeout=60)

    def can_i(self, verb: str, resource: str, namespace: str | None = None) -> bool:
        """SelfSubjectAccessReview as the operator."""
        args = ["auth", "can-i", verb, resource] + (["-n", namespace] if namespace else ["--all-namespaces"])
        out = self.as_operator(*args)
        answer = out.stdout.strip()
        assert answer in ("yes", "no"), out
        return answer == "yes"

    def uninstall(self) -> None:
        if self.installed:
            self.helm_cmd("uninstall", self.name, "-n", self.namespace, "--wait", "--timeout", "120s")
            self.installed = False


@pytest.fixture(scope="session")
def helm(control_plane: ControlPlane) -> str:
    return control_plane.bin("helm")


@pytest.fixture(scope="module")
def make_namespace(control_plane: ControlPlane, kube_api) -> Iterator[Callable[[str], str]]:
    """Module-scoped namespaces (the plugin's `namespace` is per test), deleted after the module."""
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    made: list[str] = []

    def make(prefix: str) -> str:
        name = unique(prefix)
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        made.append(name)
        return name

    yield make
    for name in made:
        core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def chart_install(control_plane: ControlPlane, kube_api, helm: str, tmp_path_factory) -> Iterator[Callable[..., Release]]:
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    workdir = tmp_path_factory.mktemp("chart")
    placement = workdir / "kwok-placement.yaml"
    placement.write_text(yaml.safe_dump(kwok_placement(core)))
    releases: list[Release] = []

    def install(release: str, namespace: str, *sets: str) -> Release:
        r = Release(release, namespace, control_plane, helm, workdir)
        args = ["install", release, str(CHART), "-n", namespace, "-f", str(placement)]
        for s in sets:
            args += ["--set", s]
        r.helm_cmd(*args)
        releases.append(r)
        return r

    yield install
    for r in releases:
        try:
            r.uninstall()
        except AssertionError as exc:  # report, but uninstall the others
            print(f"uninstall of {r.name} failed: {exc}")


def deployment_available(kube_api, namespace: str, name: str) -> Callable[[], Any]:
    from kubernetes import client

    apps = client.AppsV1Api(kube_api)

    def check():
        d = apps.read_namespaced_deployment(name, namespace)
        conds = {c.type: c.status for c in (d.status.conditions or [])}
        return (conds.get("Available") == "True" and d.status.observed_generation == d.metadata.generation
                and d.status.updated_replicas == d.spec.replicas and d.status.ready_replicas == d.spec.replicas
                and not d.status.unavailable_replicas and d)
    return check


def decode(secret_data: dict[str, str], key: str) -> str:
    return base64.b64decode(secret_data[key]).decode()


def release_label_selector(release: str) -> str:
    assert re.fullmatch(r"[a-z0-9-]+", release)
    return f"app.kubernetes.io/instance={release}"


@pytest.fixture(scope="module")
def chart_release(chart_install, make_namespace, kube_api, wait_until) -> Release:
    """The chart installed cluster-wide in a fresh namespace, its Deployment Available.

    For running the operator with the chart's RBAC:
        env = {**os.environ, "KUBECONFIG": str(chart_release.kubeconfig())}
        subprocess.Popen(["swarm-arena", "operator", "--all-namespaces", ...], env=env)
    """
    ns = make_namespace("sa-system")
    release = chart_install(unique("wide"), ns)
    wait_until(f"Deployment {release.fullname} Available", deployment_available(kube_api, ns, release.fullname),
               timeout=120)
    return release
