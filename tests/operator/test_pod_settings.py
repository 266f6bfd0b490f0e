"""Ray pods on a real cluster's terms: in a namespace that enforces the `restricted` Pod Security
Standard (the real API server's PodSecurity admission), with the evaluation's ServiceAccount and
labels, an evaluation runs to Succeeded on KubeRay's pods (process-backed nodes, real Ray)."""

from __future__ import annotations

import json

import pytest

from tests.operator.conftest import Evaluations
from tests.operator.test_real_clusters import pods, real_manifest

pytestmark = pytest.mark.controlplane


def test_succeeds_in_a_namespace_enforcing_the_restricted_pod_security_standard(
        process_nodes, namespace, operator_factory) -> None:
    cp = process_nodes
    cp.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
               "pod-security.kubernetes.io/enforce-version=latest")
    # What the label means here: a pod without the restricted settings is refused.
    plain = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
             "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    refused = cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(plain), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr
    cp.kubectl("create", "serviceaccount", "ray-runner", "-n", namespace)
    op = operator_factory([namespace]).start()
    evals = Evaluations(cp, namespace, op.tail)
    doc = real_manifest("restricted")
    doc["spec"]["cluster"]["pods"] = {"serviceAccountName": "ray-runner", "labels": {"team": "arena"},
                                      "annotations": {"example.com/owner": "arena"}}

    evals.apply(doc)
    status = evals.wait_phase("restricted", "Succeeded", timeout=480)

    assert status["progress"]["episodesCompleted"] == status["progress"]["episodesTotal"]
    ray_pods = pods(evals, "restricted")
    assert {p["metadata"]["labels"]["ray.io/node-type"] for p in ray_pods} == {"head", "worker"}
    for pod in ray_pods:
        assert pod["spec"]["serviceAccountName"] == "ray-runner"
        assert pod["metadata"]["labels"]["team"] == "arena"
        assert pod["metadata"]["annotations"]["example.com/owner"] == "arena"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
