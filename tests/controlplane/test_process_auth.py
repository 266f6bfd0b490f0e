"""Ray's token authentication (KubeRay ``authOptions``) on clusters of process-backed pods.

In a module of its own so that the 4-node cluster of test_process_nodes.py is gone (its
namespace deleted) before these two clusters start on the shared machine.
"""

from __future__ import annotations

import base64
import contextlib

import pytest

from tests.controlplane.plane import wait_for
from tests.controlplane.ray_on_pods import DASHBOARD, http_json, raycluster, run_job, wait_formed

pytestmark = pytest.mark.controlplane


def test_token_authentication(process_nodes, core, custom, module_ns):
    """KubeRay's ``authOptions: {mode: token}``: KubeRay makes the Secret, the pods get it through
    ``secretKeyRef``, the cluster forms, and its dashboard refuses requests without the token."""
    cp = process_nodes
    name = "authed"
    custom.create_namespaced_custom_object("ray.io", "v1", module_ns, "rayclusters",
                                           raycluster(name, cpu_workers=1, gpu_workers=0, auth={"mode": "token"}))
    secret = wait_for("KubeRay's auth Secret", lambda: core.read_namespaced_secret(name, module_ns), 60)
    token = base64.b64decode(secret.data["auth_token"]).decode()
    head, _ = wait_formed(cp, core, module_ns, name, 2, token)
    env = {e.name: e for e in head.spec.containers[0].env}
    assert env["RAY_AUTH_MODE"].value == "token"
    assert env["RAY_AUTH_TOKEN"].value_from.secret_key_ref.name == name
    status, _ = http_json(cp.pod_url(head.status.pod_ip, DASHBOARD, "/api/v0/nodes"))
    assert status in (401, 403), status
    status, _ = http_json(cp.pod_url(head.status.pod_ip, DASHBOARD, "/api/v0/nodes"), token="not-the-token")
    assert status in (401, 403), status
    logs = run_job(cp, head.status.pod_ip, "import ray; ray.init(); print('ALIVE=%d' % len([n for n in ray.nodes() "
                   "if n['Alive']]))", token=token)
    assert "ALIVE=2" in logs.splitlines()
    custom.delete_namespaced_custom_object("ray.io", "v1", module_ns, "rayclusters", name)


def test_kubernetes_token_authentication(process_nodes, core, custom, kube_api, module_ns):
    """``authOptions: {mode: token, enableK8sTokenAuth: true}``: Ray delegates authentication to
    the API server (TokenReview, then SubjectAccessReview for verb ``ray:write`` on the
    RayCluster). The pods need their service-account tokens (the projected ``ray-token`` volume
    and the automounted one) and a route to the API server; no Secret is involved."""
    from kubernetes import client

    cp, ns, name = process_nodes, module_ns, "k8sauth"
    rbac = client.RbacAuthorizationV1Api(kube_api)
    for sa in ("ray", "allowed", "denied"):
        core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})
    # the head checks tokens with the API server; the pods and the allowed client may write to the cluster
    rbac.create_cluster_role_binding({
        "metadata": {"name": f"{ns}-ray-auth-delegator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "ray", "namespace": ns}]})
    rbac.create_namespaced_role(ns, {"metadata": {"name": "ray-write"}, "rules": [
        {"apiGroups": ["ray.io"], "resources": ["rayclusters"], "resourceNames": [name], "verbs": ["ray:write"]}]})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "ray-write"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ray-write"},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns} for sa in ("ray", "allowed")]})
    try:
        body = raycluster(name, cpu_workers=1, gpu_workers=0, auth={"mode": "token", "enableK8sTokenAuth": True})
        for tpl in (body["spec"]["headGroupSpec"]["template"], body["spec"]["workerGroupSpecs"][0]["template"]):
            tpl["spec"]["serviceAccountName"] = "ray"
        custom.create_namespaced_custom_object("ray.io", "v1", ns, "rayclusters", body)

        def token(sa: str) -> str:
            return core.create_namespaced_service_account_token(sa, ns, {"spec": {"expirationSeconds": 3600}}).status.token

        allowed, denied = token("allowed"), token("denied")
        head, _ = wait_formed(cp, core, ns, name, 2, allowed)
        assert "ray-token" in {v.name for v in head.spec.volumes}
        assert not [s for s in core.list_namespaced_secret(ns).items if s.metadata.name == name]
        url = cp.pod_url(head.status.pod_ip, DASHBOARD, "/api/v0/nodes")
        assert http_json(url)[0] in (401, 403)
        assert http_json(url, token=denied)[0] in (401, 403)  # a valid identity without ray:write
        assert http_json(url, token=allowed)[0] == 200
    finally:
        with contextlib.suppress(Exception):
            custom.delete_namespaced_custom_object("ray.io", "v1", ns, "rayclusters", name)
        with contextlib.suppress(Exception):
            rbac.delete_cluster_role_binding(f"{ns}-ray-auth-delegator")
