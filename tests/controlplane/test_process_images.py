"""Process nodes run pods from the images `make images` builds (issue 23 §2).

With images on (``ControlPlane.run_images``), a container whose image is in buildah's local store
runs chrooted in that image's root filesystem: its ENTRYPOINT/CMD, USER, ENV and WORKDIR, the
pod's command/args/env and securityContext over them, volume mounts (the projected
ServiceAccount token at the standard path), the API server reachable at
KUBERNETES_SERVICE_HOST/PORT from the pod's network namespace, readOnlyRootFilesystem honoured,
exec probes inside the container. An image not in the store runs on the host's environment as
before, and the pod's events say so.
"""

from __future__ import annotations

import pytest

from tests.controlplane.plane import wait_for
from tests.controlplane.ray_on_pods import RAY_VERSION, ready

pytestmark = pytest.mark.controlplane

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# What the Ray image's container reports about itself; each line is checked below.
RAY_PROBE = f"""
set -e
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
echo "home=$HOME pwd=$(pwd)"
echo "debian=$(cat /etc/debian_version)"
echo "python=$(command -v python)"
python -c 'import ray, swarm_arena; print("ray=" + ray.__version__)'
echo "from-pod=$FROM_POD"
test ! -e {__file__} && echo "no-host-checkout"
touch /home/ray/written && echo "root-writable"
python - <<'PY'
import json, os, ssl, urllib.request
sa = "{SA_DIR}"
ctx = ssl.create_default_context(cafile=f"{{sa}}/ca.crt")
req = urllib.request.Request(
    f"https://{{os.environ['KUBERNETES_SERVICE_HOST']}}:{{os.environ['KUBERNETES_SERVICE_PORT']}}/api/v1/namespaces/"
    + open(f"{{sa}}/namespace").read() + "/pods/" + os.environ["HOSTNAME"],
    headers={{"Authorization": "Bearer " + open(f"{{sa}}/token").read()}})
try:
    print("api=" + json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["metadata"]["name"])
except urllib.error.HTTPError as e:  # the default ServiceAccount may not read pods: authenticated all the same
    print(f"api=HTTP {{e.code}}")
PY
"""


def _events(core, ns: str, pod: str) -> dict[str, str]:
    return {e.reason: e.message for e in core.list_namespaced_event(ns, field_selector=f"involvedObject.name={pod}").items}


def _finished(cp, core, ns: str, name: str):
    def check():
        p = core.read_namespaced_pod(name, ns)
        if p.status.phase == "Failed":
            raise AssertionError(f"pod {name} Failed: {p.status.container_statuses[0].state}\n"
                                 f"{cp.pod_log(ns, name, 'main')}")
        return p if p.status.phase == "Succeeded" else None
    return check


def test_a_pod_runs_from_its_image(images_on, process_nodes, core, module_ns):
    ns = module_ns
    core.create_namespaced_pod(ns, {"metadata": {"name": "ray-image"}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": images_on["ray"], "command": ["bash", "-c", RAY_PROBE],
                        "env": [{"name": "FROM_POD", "value": "yes"}]}]}})
    wait_for("pod ray-image Succeeded", _finished(process_nodes, core, ns, "ray-image"), 120)
    out = process_nodes.pod_log(ns, "ray-image", "main")
    # the image's USER (1000:100, no supplementary groups), HOME and WORKDIR, its Debian, its Python
    assert "uid=1000 gid=100 groups=100" in out, out
    assert "home=/home/ray pwd=/home/ray" in out, out
    assert "debian=12." in out and "python=/home/ray/anaconda3/bin/python" in out, out
    assert f"ray={RAY_VERSION}" in out and "from-pod=yes" in out, out
    assert "no-host-checkout" in out and "root-writable" in out, out
    # the projected token and CA at the standard path, the API server at KUBERNETES_SERVICE_HOST
    assert "api=ray-image" in out or "api=HTTP 403" in out, out
    events = _events(core, ns, "ray-image")
    assert "in the local image store" in events.get("Pulled", ""), events
    assert "HostFallback" not in events


def test_image_entrypoint_read_only_root_run_as_user_and_exec_probes(images_on, process_nodes, core, module_ns):
    ns = module_ns
    # no command: the operator image's ENTRYPOINT (swarm-arena) with the pod's args over its CMD
    core.create_namespaced_pod(ns, {"metadata": {"name": "entrypoint"}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": images_on["operator"], "args": ["--version"]}]}})
    # readOnlyRootFilesystem with an emptyDir for /tmp, a runAsUser the image has no passwd entry for
    script = ("id -u; if touch /etc/x 2>/dev/null; then echo root-writable; else echo root-read-only; fi; "
              "touch /tmp/ready && echo tmp-writable; exec sleep 3000")
    core.create_namespaced_pod(ns, {"metadata": {"name": "locked"}, "spec": {
        "securityContext": {"runAsUser": 4242, "runAsGroup": 4242, "runAsNonRoot": True},
        "containers": [{"name": "main", "image": images_on["operator"], "command": ["/bin/sh", "-c", script],
                        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        # /tmp/ready exists only inside the container's mount and root
                        "readinessProbe": {"exec": {"command": ["/bin/sh", "-c", "test -f /tmp/ready && test $(id -u) = 4242"]},
                                           "periodSeconds": 1}}],
        "volumes": [{"name": "tmp", "emptyDir": {}}]}})

    wait_for("pod entrypoint Succeeded", _finished(process_nodes, core, ns, "entrypoint"), 60)
    assert "swarm-arena 0.1.0" in process_nodes.pod_log(ns, "entrypoint", "main")

    def is_ready():
        p = core.read_namespaced_pod("locked", ns)
        return p if ready(p) else None
    wait_for("pod locked Ready (exec probe in the container's root, as its user)", is_ready, 60)
    out = process_nodes.pod_log(ns, "locked", "main")
    assert "4242" in out and "root-read-only" in out and "tmp-writable" in out, out
    core.delete_namespaced_pod("locked", ns, grace_period_seconds=0)


def test_run_as_non_root_refuses_a_root_image_and_unknown_images_fall_back_to_the_host(
        images_on, process_nodes, core, module_ns):
    ns = module_ns
    core.create_namespaced_pod(ns, {"metadata": {"name": "rooted"}, "spec": {
        "securityContext": {"runAsNonRoot": True},
        "containers": [{"name": "main", "image": "docker.io/library/python:3.11-slim-bookworm",
                        "command": ["true"]}]}})
    core.create_namespaced_pod(ns, {"metadata": {"name": "elsewhere"}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "registry.invalid/nothing:1", "command": ["python", "-c",
                        "import sys; print(sys.prefix)"]}]}})

    def refused():
        p = core.read_namespaced_pod("rooted", ns)
        w = (p.status.container_statuses or [None])[0]
        return w if w and w.state.waiting and w.state.waiting.reason == "CreateContainerConfigError" else None
    waiting = wait_for("pod rooted refused (runAsNonRoot, image runs as root)", refused, 60)
    assert "runAsNonRoot" in waiting.state.waiting.message
    wait_for("pod elsewhere Succeeded", _finished(process_nodes, core, ns, "elsewhere"), 60)
    assert "not in the local image store" in _events(core, ns, "elsewhere").get("HostFallback", "")
    core.delete_namespaced_pod("rooted", ns, grace_period_seconds=0)
