"""A brand-new evaluation gets its status at once: observedGeneration and Ready=False are written
before the operator creates anything for it, so that kstatus (Flux) and Argo CD never read an
evaluation the operator has not acted on as Current / Healthy. A ResourceQuota that refuses every
RayCluster makes "before" observable without a race: the status must appear all the same."""

from __future__ import annotations

import json

import pytest

from tests.operator.conftest import Evaluations, manifest

pytestmark = pytest.mark.controlplane


def test_a_new_evaluation_gets_observed_generation_before_its_raycluster(control_plane, namespace,
                                                                         operator_factory) -> None:
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-rayclusters"},
             "spec": {"hard": {"count/rayclusters.ray.io": "0"}}}
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(quota))
    op = operator_factory([namespace]).start()
    evals = Evaluations(control_plane, namespace, op.tail)
    doc = manifest("first")
    doc["spec"]["cluster"] = {"workerGroups": [{"name": "cpu"}]}

    evals.apply(doc)
    status = evals.wait("first", "a status with observedGeneration",
                        lambda s: s if s.get("observedGeneration") else None, timeout=60)

    assert status["observedGeneration"] == evals.get("first")["metadata"]["generation"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["observedGeneration"] == status["observedGeneration"]
    assert control_plane.kubectl("get", "raycluster", "first", "-n", namespace, check=False).returncode != 0
