"""Process-backed nodes: KubeRay's own pods form a real Ray cluster (issue #8's "must show").

One RayCluster (head, two CPU workers, one GPU worker) is shared by the tests of this module;
they run in file order: the cluster forms, a deleted worker pod takes its Ray node with it and
KubeRay's replacement joins, a killed node loses its Ray node the same way. The authentication
test makes its own small cluster with KubeRay's ``authOptions``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shlex
import time
import urllib.error
import urllib.request
import uuid

import pytest

from tests.controlplane.plane import GPU_LABEL, GPU_RESOURCE, KWOK_ANNOTATION, wait_for

pytestmark = pytest.mark.controlplane

RAY_VERSION = "2.60.0"  # the Ray the venv runs (the image is not used by process nodes)
IMAGE = f"rayproject/ray:{RAY_VERSION}"
DASHBOARD = 8265


def raycluster(name: str, cpu_workers: int = 2, gpu_workers: int = 1, auth: dict | None = None) -> dict:
    def group(container: str, cpu: str, memory: str, extra: dict | None = None) -> dict:
        res = {"cpu": cpu, "memory": memory, **(extra or {})}
        return {"containers": [{"name": container, "image": IMAGE, "resources": {"requests": res, "limits": res}}]}

    params = {"object-store-memory": str(100 * 2**20)}  # keep the object store small: several clusters share a machine
    workers = [{"groupName": "cpu", "replicas": cpu_workers, "minReplicas": 0, "maxReplicas": 4,
                "rayStartParams": dict(params), "template": {"spec": group("ray-worker", "1", "1Gi")}}]
    if gpu_workers:
        spec = group("ray-worker", "1", "1Gi", {GPU_RESOURCE: "1"})
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Equal", "value": "present", "effect": "NoSchedule"}]
        spec["nodeSelector"] = {GPU_LABEL: "true"}
        workers.append({"groupName": "gpu", "replicas": gpu_workers, "minReplicas": 0, "maxReplicas": 2,
                        "rayStartParams": dict(params), "template": {"spec": spec}})
    body = {
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": name},
        "spec": {
            "rayVersion": RAY_VERSION,
            "headGroupSpec": {"rayStartParams": {"dashboard-host": "0.0.0.0", **params},
                              "template": {"spec": group("ray-head", "1", "2Gi")}},
            "workerGroupSpecs": workers,
        },
    }
    if auth is not None:
        body["spec"]["authOptions"] = auth
    return body


def http_json(url: str, token: str | None = None, timeout: float = 10) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            body = r.read()
            return r.status, json.loads(body) if body.strip().startswith((b"{", b"[")) else body.decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def ray_nodes(cp, head_ip: str, token: str | None = None) -> list[dict]:
    """Ray's own view of its nodes, from the host through the head's dashboard (state API)."""
    status, body = http_json(cp.pod_url(head_ip, DASHBOARD, "/api/v0/nodes?limit=100&detail=true"), token)
    assert status == 200, body
    return body["data"]["result"]["result"]


def alive_ips(nodes: list[dict]) -> set[str]:
    return {n["node_ip"] for n in nodes if n["state"] == "ALIVE"}


def pods_of(core, ns: str, cluster: str, group: str | None = None) -> list:
    sel = f"ray.io/cluster={cluster}" + (f",ray.io/group={group}" if group else "")
    return core.list_namespaced_pod(ns, label_selector=sel).items


def ready(pod) -> bool:
    conds = {c.type: c.status for c in (pod.status.conditions or [])}
    return (pod.metadata.deletion_timestamp is None and pod.status.phase == "Running" and bool(pod.status.pod_ip)
            and conds.get("Ready") == "True")


def wait_formed(cp, core, ns: str, cluster: str, pods: int, token: str | None = None, timeout: float = 240):
    """Wait until the RayCluster's ``pods`` pods are Running and Ready and Ray (asked through the
    head's dashboard from the host) has as many alive nodes; returns (head pod, pods)."""
    def formed():
        found = pods_of(core, ns, cluster)
        if len(found) != pods or not all(ready(p) for p in found):
            return False
        head = next(p for p in found if p.metadata.labels["ray.io/node-type"] == "head")
        return (head, found) if len(alive_ips(ray_nodes(cp, head.status.pod_ip, token))) == pods else False

    return wait_for(f"RayCluster {cluster}: {pods} pods Ready and {pods} alive Ray nodes", formed, timeout=timeout,
                    interval=1, on_timeout=lambda: _debug(cp, core, ns))


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
    process_nodes.kubectl("wait", "--for=jsonpath={.metadata.name}=default", f"serviceaccount/default", "-n", name,
                          "--timeout=30s", check=False)
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def swarm(process_nodes, core, custom, module_ns):
    """The shared RayCluster, formed: every pod Running and Ready, Ray sees 4 alive nodes."""
    cp = process_nodes
    t0 = time.monotonic()
    custom.create_namespaced_custom_object("ray.io", "v1", module_ns, "rayclusters", raycluster("swarm"))
    head, pods = wait_formed(cp, core, module_ns, "swarm", 4)
    print(f"\nRayCluster swarm formed in {time.monotonic() - t0:.1f}s")
    return {"ns": module_ns, "head": head, "pods": pods}


def _debug(cp, core, ns: str) -> str:
    out = []
    for p in core.list_namespaced_pod(ns).items:
        cs = [(c.name, c.ready, c.restart_count, c.state.to_dict() if c.state else None)
              for c in (p.status.container_statuses or [])]
        out.append(f"{p.metadata.name} on {p.spec.node_name}: {p.status.phase} ip={p.status.pod_ip} {cs}")
    out.append(cp._tails("node-agent", "ray-operator")())
    logs = sorted((cp.workdir / "process-nodes" / "pods").glob(f"{ns}_*/logs/*.log"))
    for f in logs:
        out.append(f"--- {f.relative_to(cp.workdir)}:\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
    return "\n".join(out)


def run_job(cp, head_ip: str, script: str, token: str | None = None, timeout: float = 120) -> str:
    """Submit ``python -c script`` through the head's dashboard (Jobs REST API) and return its logs."""
    url = cp.pod_url(head_ip, DASHBOARD)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url + "api/jobs/", method="POST", headers=headers,
                                 data=json.dumps({"entrypoint": f"python -c {shlex.quote(script)}"}).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        job = json.loads(r.read())["submission_id"]

    def finished():
        status, body = http_json(f"{url}api/jobs/{job}", token)
        return body if status == 200 and body["status"] in ("SUCCEEDED", "FAILED", "STOPPED") else None

    info = wait_for(f"job {job} to finish", finished, timeout=timeout, interval=1)
    _, logs = http_json(f"{url}api/jobs/{job}/logs", token)
    assert info["status"] == "SUCCEEDED", (info, logs)
    return logs["logs"] if isinstance(logs, dict) else str(logs)


# --------------------------------------------------------------------------------------------


def test_ray_pods_land_on_process_nodes_only(swarm, core, process_nodes):
    names = {n["name"] for n in process_nodes.process_nodes()}
    for p in swarm["pods"]:
        assert p.spec.node_name in names, f"{p.metadata.name} landed on {p.spec.node_name}"
        node = core.read_node(p.spec.node_name)
        assert KWOK_ANNOTATION not in (node.metadata.annotations or {})
        if p.metadata.labels["ray.io/group"] == "gpu":
            assert node.metadata.labels[GPU_LABEL] == "true"


def test_raycluster_is_a_real_ray_cluster(swarm, process_nodes):
    cp = process_nodes
    head_ip = swarm["head"].status.pod_ip
    status, version = http_json(cp.pod_url(head_ip, DASHBOARD, "/api/version"))
    assert status == 200 and version["ray_version"] == RAY_VERSION, version
    pods = {p.status.pod_ip: p for p in swarm["pods"]}
    gpu_pod = next(p for p in swarm["pods"] if p.metadata.labels["ray.io/group"] == "gpu")
    script = f"""
import json, socket, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
nodes = [n for n in ray.nodes() if n["Alive"]]
@ray.remote(num_cpus=0)
def where():
    return {{"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}}
gpu_node = next(n["NodeID"] for n in nodes if n["NodeManagerAddress"] == "{gpu_pod.status.pod_ip}")
on_gpu = ray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(gpu_node, soft=False)).remote())
@ray.remote(num_gpus=1)
def gpu_ids():
    return ray.get_gpu_ids(), socket.gethostname()
print("RESULT=" + json.dumps({{"nodes": [{{"ip": n["NodeManagerAddress"], "resources": n["Resources"]}} for n in nodes],
                            "on_gpu": on_gpu, "gpu_node": gpu_node, "gpu_task": ray.get(gpu_ids.remote())}}))
"""
    logs = run_job(cp, head_ip, script)
    result = json.loads(next(line for line in logs.splitlines() if line.startswith("RESULT="))[len("RESULT="):])
    assert sorted(n["ip"] for n in result["nodes"]) == sorted(pods), result
    by_ip = {n["ip"]: n["resources"] for n in result["nodes"]}
    assert by_ip[gpu_pod.status.pod_ip].get("GPU") == 1.0
    assert all("GPU" not in r for ip, r in by_ip.items() if ip != gpu_pod.status.pod_ip)
    # a task pinned to the GPU worker's Ray node runs in that pod (its UTS namespace has the pod's name)
    assert result["on_gpu"] == {"node": result["gpu_node"], "host": gpu_pod.metadata.name}
    ids, host = result["gpu_task"]
    assert host == gpu_pod.metadata.name and len(ids) == 1


def test_deleting_a_worker_pod_kills_its_ray_node_and_the_replacement_joins(swarm, core, process_nodes):
    cp, ns = process_nodes, swarm["ns"]
    head_ip = swarm["head"].status.pod_ip
    victim = next(p for p in pods_of(core, ns, "swarm", "cpu") if ready(p))
    before = {p.metadata.uid for p in pods_of(core, ns, "swarm", "cpu")}
    t0 = time.monotonic()
    core.delete_namespaced_pod(victim.metadata.name, ns)

    def dead():
        n = [x for x in ray_nodes(cp, head_ip) if x["node_ip"] == victim.status.pod_ip]
        return n and all(x["state"] == "DEAD" for x in n)
    wait_for(f"Ray to report the node of deleted pod {victim.metadata.name} dead", dead, timeout=90, interval=1)
    t_dead = time.monotonic() - t0

    def replaced():
        pods = [p for p in pods_of(core, ns, "swarm", "cpu") if p.metadata.uid not in before and ready(p)]
        return pods and pods[0].status.pod_ip in alive_ips(ray_nodes(cp, head_ip)) and pods[0]
    new = wait_for("KubeRay's replacement worker to join the Ray cluster", replaced, timeout=180, interval=1,
                   on_timeout=lambda: _debug(cp, core, ns))
    assert len(alive_ips(ray_nodes(cp, head_ip))) == 4
    print(f"\nworker pod deleted: Ray node dead after {t_dead:.1f}s, replacement {new.metadata.name} joined after "
          f"{time.monotonic() - t0:.1f}s")


def test_killing_a_node_loses_its_ray_nodes(swarm, core, process_nodes):
    cp, ns = process_nodes, swarm["ns"]
    head_ip = swarm["head"].status.pod_ip
    gpu_pod = next(p for p in pods_of(core, ns, "swarm", "gpu") if ready(p))
    node = gpu_pod.spec.node_name
    # keep the session's capacity: a fresh GPU node first (pods never come back to a crashed node's name)
    spare = f"proc-gpu-{uuid.uuid4().hex[:4]}"
    cp.add_process_node(spare, gpus=2)
    wait_for(f"node {spare} Ready", lambda: any(c.type == "Ready" and c.status == "True"
                                                  for c in core.read_node(spare).status.conditions or []), 30)
    on_node = [p for n in cp.process_nodes() if n["name"] == node for p in n["pods"]]
    pids = [pid for p in on_node for pid in p["pids"].values()]
    t0 = time.monotonic()
    killed = cp.kill_node(node)
    assert f"{ns}/{gpu_pod.metadata.name}" in killed
    for pid in pids:  # every wrapper process is gone at once (and with it its PID namespace)
        wait_for(f"pid {pid} gone", lambda pid=pid: not _running(pid), 5, 0.05)

    def not_ready_or_gone():
        try:
            conds = {c.type: c.status for c in core.read_node(node).status.conditions or []}
        except Exception as exc:  # noqa: BLE001
            return getattr(exc, "status", None) == 404
        return conds.get("Ready") != "True"
    wait_for(f"node {node} NotReady", not_ready_or_gone, 15, 0.2)

    def dead():
        n = [x for x in ray_nodes(cp, head_ip) if x["node_ip"] == gpu_pod.status.pod_ip]
        return n and all(x["state"] == "DEAD" for x in n)
    wait_for(f"Ray to report the GPU worker's node dead after {node} was killed", dead, timeout=90, interval=1)
    t_dead = time.monotonic() - t0
    wait_for(f"node {node} deleted", lambda: node not in {n.metadata.name for n in core.list_node().items}, 30)
    assert node not in {n["name"] for n in cp.process_nodes()}
    print(f"\nnode {node} killed: Ray node dead after {t_dead:.1f}s")


def _running(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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
