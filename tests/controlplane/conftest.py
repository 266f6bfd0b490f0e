"""Fixtures for the control plane's own tests (the plane itself comes from pytest_plugin.py)."""

from __future__ import annotations

import uuid

import pytest

from tests.controlplane.plane import wait_for


@pytest.fixture(scope="module")
def core(kube_api):
    from kubernetes import client

    return client.CoreV1Api(kube_api)


@pytest.fixture(scope="module")
def custom(kube_api):
    from kubernetes import client

    return client.CustomObjectsApi(kube_api)


@pytest.fixture(scope="module")
def module_ns(process_nodes, core):
    name = f"procnodes-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(f"ServiceAccount {name}/default", lambda: core.read_namespaced_service_account("default", name), 30)
    yield name
    core.delete_namespace(name, propagation_policy="Background")
