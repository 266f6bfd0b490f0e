"""The chart's RBAC is enough, proven the only way that counts: `swarm-arena operator`, run with a
token of the chart's own ServiceAccount (TokenRequest), carries an evaluation on a RayCluster of
process-backed pods (real Ray) to Succeeded, and no request it makes is refused."""

from __future__ import annotations

import pytest

from tests.operator.conftest import Evaluations, crd, manifest, operator_factory  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(900)]


def small_evaluation(name: str) -> dict:
    """tests/operator's small foraging evaluation on a RayCluster with one worker."""
    doc = manifest(name)
    doc["spec"]["cluster"] = {
        "head": {"resources": {"cpu": 1, "memory": "2Gi"}},
        "workerGroups": [{"name": "cpu", "replicas": 1, "resources": {"cpu": 2, "memory": "3Gi"}}],
    }
    return doc


def test_operator_with_the_charts_token_carries_an_evaluation_to_succeeded(
        process_nodes, chart_release, namespace, operator_factory) -> None:  # noqa: F811
    # The Lease lives in the release namespace and is named after the release, the only one the
    # chart lets the operator keep.
    op = operator_factory([namespace], extra=["--lease-namespace", chart_release.namespace,
                                              "--lease-name", chart_release.name])
    op.start(kubeconfig=chart_release.kubeconfig())
    evaluations = Evaluations(process_nodes, namespace, op.tail)
    doc = small_evaluation("charted")

    evaluations.apply(doc)
    status = evaluations.wait_phase("charted", "Succeeded", timeout=480)

    assert status["progress"]["episodesCompleted"] == status["progress"]["episodesTotal"] == 4
    assert {row["policy"] for row in status["results"]["leaderboard"]} == {"greedy", "random"}
    assert evaluations.configmap("charted-results")
    log = op.log.read_text()
    assert "Forbidden" not in log and "forbidden" not in log, op.tail(120)


def test_operator_with_a_namespaced_install_token_runs_an_evaluation_in_its_namespace(
        process_nodes, chart_install, make_namespace, kube_api, wait_until, operator_factory) -> None:  # noqa: F811
    from tests.packaging.conftest import deployment_available, unique

    system, watched = make_namespace("sa-ns-op"), make_namespace("team-op")
    release = chart_install(unique("narrow-op"), system, f"watchNamespaces={{{watched}}}")
    wait_until("Deployment Available", deployment_available(kube_api, system, release.fullname), timeout=120)
    op = operator_factory([watched], extra=["--lease-namespace", system, "--lease-name", release.name])
    op.start(kubeconfig=release.kubeconfig())
    evaluations = Evaluations(process_nodes, watched, op.tail)
    doc = small_evaluation("narrow")

    evaluations.apply(doc)
    status = evaluations.wait_phase("narrow", "Succeeded", timeout=480)

    assert status["progress"]["episodesCompleted"] == 4
    log = op.log.read_text()
    assert "Forbidden" not in log and "forbidden" not in log, op.tail(120)
