"""The chart's RBAC is exactly what the operator uses, proven the only way that counts:
`swarm-arena operator`, run with a token of the chart's own ServiceAccount (TokenRequest), carries
an evaluation on a RayCluster of process-backed pods (real Ray) through its whole life (Succeeded,
its RayCluster deleted after the TTL, the evaluation deleted), no request it makes is refused, and
every verb the chart grants is one the API server's audit log saw it use (tests/controlplane keeps
that log), but the few listed in UNEXERCISED with the reason this run cannot reach them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.operator.conftest import Evaluations, crd, manifest, operator_factory  # noqa: F401 (fixtures)
from tests.packaging.conftest import Release

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(900)]

Grant = tuple[str, str, str]  # (API group, resource[/subresource], verb)
UNEXERCISED: dict[Grant, str] = {
    ("", "pods", "delete"): "only after a lost head leaves a worker behind (rbac.podDelete; "
                            "tests/operator/test_real_clusters.py exercises it)",
    ("ray.io", "rayclusters", "get"): "only when creating an evaluation's RayCluster answers 409 (an earlier "
                                      "evaluation's of the same name, or someone else's): kube.create_if_absent",
}


def small_evaluation(name: str) -> dict:
    """tests/operator's small foraging evaluation on a RayCluster with one worker, removed after it ends."""
    doc = manifest(name, ttlSecondsAfterFinished=1)
    doc["spec"]["cluster"] = {
        "head": {"resources": {"cpu": 1, "memory": "2Gi"}},
        "workerGroups": [{"name": "cpu", "replicas": 1, "resources": {"cpu": 2, "memory": "3Gi"}}],
    }
    return doc


def granted(release: Release) -> set[Grant]:
    """Every (group, resource, verb) the release's Roles and ClusterRoles grant."""
    docs = [d for d in yaml.safe_load_all(release.helm_cmd("get", "manifest", release.name, "-n", release.namespace)) if d]
    return {(group, resource, verb) for d in docs if d["kind"] in ("Role", "ClusterRole") for rule in d["rules"]
            for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}


def used(audit_log, user: str) -> set[Grant]:
    """Every (group, resource, verb) the API server's audit log saw `user` ask for."""
    out = set()
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef")
        if event["user"]["username"] != user or not ref:
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        out.add((ref.get("apiGroup", ""), resource, event["verb"]))
        if event["verb"] == "patch" and event.get("responseStatus", {}).get("code") == 201:
            # A server-side apply that made the object (201): the API server also authorized `create`
            # for it (k8s.io/apiserver endpoints/handlers/patch.go, createAuthorizerAttributes).
            out.add((ref.get("apiGroup", ""), resource, "create"))
    return out


def live_its_whole_life(evaluations: Evaluations, name: str) -> dict[str, Any]:
    """Succeeded, its RayCluster deleted after the TTL, then the evaluation deleted (finalizer released)."""
    evaluations.apply(small_evaluation(name))
    status = evaluations.wait_phase(name, "Succeeded", timeout=480)
    evaluations.wait(name, "the RayCluster deleted after the TTL", lambda s: evaluations.cp.kubectl(
        "get", "raycluster", name, "-n", evaluations.ns, check=False).returncode != 0, timeout=120)
    evaluations.cp.kubectl("delete", "swe", name, "-n", evaluations.ns, "--wait=true", "--timeout=120s")
    return status


def assert_grants_are_what_was_used(control_plane, release: Release, op) -> None:
    user = f"system:serviceaccount:{release.namespace}:{release.service_account}"
    asked, allowed = used(control_plane.audit_log, user), granted(release)
    assert asked, f"the audit log {control_plane.audit_log} has no request of {user}"
    log = op.log.read_text()
    assert "Forbidden" not in log and "forbidden" not in log, op.tail(120)
    assert asked <= allowed, asked - allowed
    unused = allowed - asked - set(UNEXERCISED)
    assert not unused, f"the chart grants what the operator never asked for: {sorted(unused)}"


def test_operator_with_the_charts_token_carries_an_evaluation_to_succeeded(
        process_nodes, chart_release, namespace, operator_factory) -> None:  # noqa: F811
    # The Lease lives in the release namespace and is named after the release, the only one the
    # chart lets the operator keep.
    op = operator_factory([namespace], extra=["--lease-namespace", chart_release.namespace,
                                              "--lease-name", chart_release.name])
    op.start(kubeconfig=chart_release.kubeconfig())
    evaluations = Evaluations(process_nodes, namespace, op.tail)

    status = live_its_whole_life(evaluations, "charted")

    assert status["progress"]["episodesCompleted"] == status["progress"]["episodesTotal"] == 4
    assert {row["policy"] for row in status["results"]["leaderboard"]} == {"greedy", "random"}
    assert_grants_are_what_was_used(process_nodes, chart_release, op)


def test_operator_with_a_namespaced_install_token_without_nodes_runs_an_evaluation_in_its_namespace(
        process_nodes, chart_install, make_namespace, kube_api, wait_until, operator_factory) -> None:  # noqa: F811
    from tests.packaging.conftest import deployment_available, unique

    system, watched = make_namespace("sa-ns-op"), make_namespace("team-op")
    # Nothing cluster-scoped (rbac.nodes=false): what a namespace admin may install.
    release = chart_install(unique("narrow-op"), system, f"watchNamespaces={{{watched}}}", "rbac.nodes=false")
    wait_until("Deployment Available", deployment_available(kube_api, system, release.fullname), timeout=120)
    assert not [d for d in yaml.safe_load_all(release.helm_cmd("get", "manifest", release.name, "-n", system))
                if d and d["kind"].startswith("Cluster")]
    op = operator_factory([watched], extra=["--lease-namespace", system, "--lease-name", release.name,
                                                "--no-watch-nodes"])
    op.start(kubeconfig=release.kubeconfig())
    evaluations = Evaluations(process_nodes, watched, op.tail)

    status = live_its_whole_life(evaluations, "narrow")

    assert status["progress"]["episodesCompleted"] == 4
    assert_grants_are_what_was_used(process_nodes, release, op)
