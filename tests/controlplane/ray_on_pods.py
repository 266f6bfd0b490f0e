"""Helpers for tests that run Ray on process-backed pods (KubeRay RayClusters on the test plane).

Everything reaches Ray from the host, as the operator does: the head pod's dashboard at
``http://<podIP>:8265`` (state API, Jobs REST API).
"""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.request

from tests.controlplane.plane import GPU_LABEL, GPU_RESOURCE, wait_for

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
                    interval=1, on_timeout=lambda: debug_dump(cp, core, ns))


def debug_dump(cp, core, ns: str) -> str:
    """The pods of ``ns`` with their container states, the agent's and KubeRay's log tails, every
    container log and the tails of Ray's own logs (GCS, raylet) in each pod's /tmp/ray."""
    out = []
    for p in core.list_namespaced_pod(ns).items:
        cs = [(c.name, c.ready, c.restart_count, c.state.to_dict() if c.state else None)
              for c in (p.status.container_statuses or [])]
        out.append(f"{p.metadata.name} on {p.spec.node_name}: {p.status.phase} ip={p.status.pod_ip} {cs}")
    out.append(cp._tails("node-agent", "ray-operator")())
    logs = sorted((cp.workdir / "process-nodes" / "pods").glob(f"{ns}_*/*.log"))
    for f in logs:
        out.append(f"--- {f.relative_to(cp.workdir)}:\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
    if cp.network is not None:
        for f in sorted(cp.network.files.glob(f"pods/{ns}_*/tmp/ray/session_latest/logs/*")):
            if f.name in ("gcs_server.out", "gcs_server.err", "raylet.out", "raylet.err") and f.stat().st_size:
                out.append(f"--- {f}:\n" + "\n".join(f.read_text(errors="replace").splitlines()[-10:]))
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
