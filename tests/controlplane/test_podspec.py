"""What the process node agent derives from a Pod, checked without a cluster (podspec.py)."""

from __future__ import annotations

import pytest

from tests.controlplane import podspec
from tests.controlplane.podspec import PodConfigError, ServiceAddresses, Sources


def _pod(**spec) -> dict:
    return {
        "metadata": {"name": "ray-head-abc", "namespace": "team", "uid": "u-1",
                     "labels": {"ray.io/cluster": "swarm"}, "annotations": {"a": "b"}},
        "spec": {"nodeName": "proc-cpu-0", "serviceAccountName": "runner", **spec},
        "status": {"podIP": "10.251.3.7", "hostIP": "10.251.3.1"},
    }


SECRETS = {("team", "swarm"): {"auth_token": "s3cr3t"}}
CONFIGMAPS = {("team", "settings"): {"LEVEL": "debug", "MODE": "fast"}}


def _sources(**alloc) -> Sources:
    return Sources(lambda ns, n: SECRETS.get((ns, n)), lambda ns, n: CONFIGMAPS.get((ns, n)),
                   alloc or {"cpu": "8", "memory": "32Gi"})


def test_env_resolves_like_a_kubelet():
    c = {"name": "ray-head", "resources": {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "500m"}},
         "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
         "env": [
             {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "swarm", "key": "auth_token"}}},
             {"name": "MY_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
             {"name": "CLUSTER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}}},
             {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
             {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
             {"name": "CPU_REQ_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
             {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
             {"name": "ADDR", "value": "$(MY_POD_IP):6379 $(UNDEFINED) $$(NS)"},
             {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
         ]}
    env = podspec.container_env(_pod(containers=[c]), c, _sources(), base={"PATH": "/venv/bin"})
    assert env["PATH"] == "/venv/bin"
    assert env["CM_LEVEL"] == "debug" and env["CM_MODE"] == "fast"
    assert env["RAY_AUTH_TOKEN"] == "s3cr3t"
    assert env["MY_POD_IP"] == "10.251.3.7"
    assert env["CLUSTER"] == "swarm" and env["NS"] == "team"
    assert env["CPU_LIMIT"] == "2" and env["CPU_REQ_M"] == "500" and env["MEM_MI"] == "4096"
    assert env["ADDR"] == "10.251.3.7:6379 $(UNDEFINED) $(NS)"
    assert "OPT" not in env


def test_resource_field_without_limit_is_node_allocatable():
    c = {"name": "w", "env": [{"name": "N", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}
    env = podspec.container_env(_pod(containers=[c]), c, _sources(cpu="6", memory="1Gi"))
    assert env["N"] == "6"


def test_missing_secret_names_it():
    c = {"name": "ray-head", "env": [
        {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "auth_token"}}}]}
    with pytest.raises(PodConfigError, match=r'secret "nope" not found .*RAY_AUTH_TOKEN of container ray-head'):
        podspec.container_env(_pod(containers=[c]), c, _sources())
    c["env"][0]["valueFrom"]["secretKeyRef"]["name"] = "swarm"
    c["env"][0]["valueFrom"]["secretKeyRef"]["key"] = "other"
    with pytest.raises(PodConfigError, match='has no key "other"'):
        podspec.container_env(_pod(containers=[c]), c, _sources())


def test_command_line_and_missing_command():
    c = {"name": "ray-worker", "command": ["/bin/bash", "-c", "--"], "args": ["ray start --address=$(HEAD):6379"]}
    assert podspec.command_line(c, {"HEAD": "swarm-head-svc"})[-1] == "ray start --address=swarm-head-svc:6379"
    with pytest.raises(PodConfigError, match="not in the local store"):
        podspec.command_line({"name": "x", "image": "nginx"}, {})


def test_command_line_over_the_images_entrypoint_and_cmd():
    """A container runtime's rule: command replaces ENTRYPOINT and drops CMD; args replace CMD."""
    entry, cmd = ["swarm-arena"], ["operator", "--all-namespaces"]
    assert podspec.command_line({"name": "x"}, {}, entry, cmd) == ["swarm-arena", "operator", "--all-namespaces"]
    assert podspec.command_line({"name": "x", "args": ["--version"]}, {}, entry, cmd) == ["swarm-arena", "--version"]
    assert podspec.command_line({"name": "x", "command": ["sh"]}, {}, entry, cmd) == ["sh"]
    assert podspec.command_line({"name": "x", "command": ["sh"], "args": ["-c", "$(A)"]}, {"A": "true"}, entry,
                                cmd) == ["sh", "-c", "true"]
    with pytest.raises(PodConfigError, match="neither the pod nor the image"):
        podspec.command_line({"name": "x"}, {}, [], [])


def test_in_root_resolves_symlinks_against_the_image(tmp_path):
    from tests.controlplane.images import in_root

    (tmp_path / "run").mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "run").symlink_to("/run")  # Debian's
    (tmp_path / "opt").symlink_to("usr/opt")
    assert in_root(tmp_path, "/var/run/secrets/kubernetes.io/serviceaccount") == "/run/secrets/kubernetes.io/serviceaccount"
    assert in_root(tmp_path, "/opt/x") == "/usr/opt/x"
    assert in_root(tmp_path, "/../../etc/hosts") == "/etc/hosts"  # never above the root


def test_projected_service_account_volume():
    calls = []

    def token(ns, sa, aud, seconds):
        calls.append((ns, sa, aud, seconds))
        return "tok"
    CONFIGMAPS[("team", "kube-root-ca.crt")] = {"ca.crt": "PEM"}
    vol = {"name": "kube-api-access-x", "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}}
    vf = podspec.volume_files(_pod(), vol, _sources(), token)
    assert vf.files == {"token": "tok", "ca.crt": "PEM", "namespace": "team"}
    assert calls == [("team", "runner", None, 3607)]
    ray_token = {"name": "ray-token", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "audience": "ray.io"}}]}}
    assert podspec.volume_files(_pod(), ray_token, _sources(), token).files == {"token": "tok"}
    assert calls[-1] == ("team", "runner", ["ray.io"], 3600)


def test_unsupported_volume_is_named():
    with pytest.raises(PodConfigError, match=r"volume data: type \['persistentVolumeClaim'\] is not supported"):
        podspec.volume_files(_pod(), {"name": "data", "persistentVolumeClaim": {"claimName": "c"}}, _sources(),
                             lambda *a: "")


def test_hosts_file_gives_service_names():
    text = podspec.hosts_file("10.251.3.9", "swarm-worker-x", "team", [
        ServiceAddresses("team", "swarm-head-svc", ("10.251.3.7",)),
        ServiceAddresses("other", "db", ("10.251.3.8",))])
    lines = text.splitlines()
    assert "10.251.3.9\tswarm-worker-x" in lines
    assert ("10.251.3.7\tswarm-head-svc.team.svc.cluster.local swarm-head-svc.team.svc swarm-head-svc.team "
            "swarm-head-svc") in lines
    # short names only within the pod's own namespace
    assert "10.251.3.8\tdb.other.svc.cluster.local db.other.svc db.other" in lines


def test_probes():
    c = {"name": "ray-head", "ports": [{"name": "dashboard-agent", "containerPort": 52365}],
         "readinessProbe": {"httpGet": {"path": "/api/healthz", "port": "dashboard-agent"}, "periodSeconds": 5,
                            "failureThreshold": 10, "timeoutSeconds": 2},
         "livenessProbe": {"exec": {"command": ["bash", "-c", "wget -q -O- http://localhost:52365/x"]}}}
    r = podspec.probe(c, "readinessProbe")
    assert (r.kind, r.port, r.path, r.period, r.failure_threshold, r.timeout) == ("http", 52365, "/api/healthz", 5, 10, 2)
    live = podspec.probe(c, "livenessProbe")
    assert live.kind == "exec" and live.command[0] == "bash"
    assert podspec.probe(c, "startupProbe") is None
    with pytest.raises(PodConfigError, match="names port 'nope'"):
        podspec.probe({"name": "x", "readinessProbe": {"tcpSocket": {"port": "nope"}}}, "readinessProbe")


@pytest.mark.parametrize("text,value", [("500m", "0.5"), ("2Gi", str(2 * 2**30)), ("1e3", "1000"), (4, "4"),
                                        ("1.5", "1.5"), ("100M", "100000000")])
def test_quantities(text, value):
    assert podspec.parse_quantity(text) == podspec.Decimal(value)
