"""The chart without a cluster: its CRD, values and schema, what it renders, and the metrics its
alerts and dashboard read. (tests/packaging/test_chart_cluster.py installs it into the real
control plane.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.chart import CHART, CRD_FILE, MANIFESTS, by_kind, helm_binary, kube_version, one, run, template

RULES = CHART / "templates" / "prometheusrule.yaml"
DASHBOARD = CHART / "dashboards" / "swarm-arena.json"
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
}


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_binary()


def test_chart_crd_is_the_generated_crd() -> None:
    assert (CHART / "crds" / CRD_FILE.name).read_bytes() == CRD_FILE.read_bytes(), (
        "helm/swarm-arena-operator/crds/ differs from crds/: copy it "
        "(cp crds/arena.swarm.dev_swarmevaluations.yaml helm/swarm-arena-operator/crds/)")
    assert [p.name for p in (CHART / "crds").iterdir()] == [CRD_FILE.name]
    assert (CHART.parents[1] / "manifests" / "base" / "crd.yaml").read_bytes() == CRD_FILE.read_bytes(), (
        "manifests/base/crd.yaml differs from crds/: `make crd` copies it")


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out = {}
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        out[path] = sub
        if sub.get("additionalProperties") is False:
            out.update(_schema_paths(sub, path + "."))
    return out


def _value_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        out.append(path)
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and sub.get("additionalProperties") is False:
            out += _value_paths(value, sub, path + ".")
    return out


def test_every_value_is_in_the_schema_with_a_description_and_vice_versa() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    in_schema = _schema_paths(schema)
    in_values = _value_paths(values, schema)
    assert sorted(set(in_values) - set(in_schema)) == []
    assert sorted(set(in_schema) - set(in_values) - {"global"}) == []
    undocumented = [p for p, s in in_schema.items() if s.get("type") != "object" and not s.get("description")]
    assert undocumented == []


def test_every_top_level_value_is_commented_in_values_yaml() -> None:
    # "A values file that reads like documentation": each top-level key has a comment in its
    # paragraph (the lines above it up to a blank line) or among its first children.
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Za-z]", line):
            start = max((j for j in range(i) if not lines[j].strip()), default=-1) + 1
            paragraph = lines[start:i] + lines[i + 1:i + 4]
            assert any(ln.strip().startswith("#") for ln in paragraph), (
                f"values.yaml: `{line}` has no comment saying what it is for")


def test_helm_lint(helm: str) -> None:
    out = run([helm, "lint", "--strict", str(CHART), "--kube-version", kube_version()])
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout
    run([helm, "lint", "--strict", str(CHART), "--kube-version", kube_version(), "--set", "watchNamespaces={a,b}",
         "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true",
         "--set", "grafanaDashboard.enabled=true", "--set", "leaderElection.enabled=true", "--set", "replicas=2"])


def test_values_schema_refuses_a_typo_naming_the_key(helm: str) -> None:
    with pytest.raises(AssertionError) as caught:
        template(helm, "watchNamespace={a}")
    assert "watchNamespace" in str(caught.value) and "additional properties" in str(caught.value).lower()
    with pytest.raises(AssertionError) as caught:
        template(helm, "logFormat=xml")
    assert "logFormat" in str(caught.value)


def test_two_replicas_need_leader_election(helm: str) -> None:
    with pytest.raises(AssertionError, match="leaderElection.enabled"):
        template(helm, "replicas=2", "leaderElection.enabled=false")
    deploy = one(template(helm, "replicas=2", "leaderElection.enabled=true"), "Deployment")
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"


def test_deployment_is_restricted_and_probed(helm: str) -> None:
    deploy = one(template(helm), "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    single = one(template(helm, "leaderElection.enabled=false"), "Deployment")
    assert single["spec"]["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    assert container["securityContext"] == RESTRICTED_CONTAINER
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["image"] == "ghcr.io/swarm-arena/swarm-arena-operator:0.1.0"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def _operator_args(objects: list[dict[str, Any]]) -> list[str]:
    [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["swarm-arena"]
    return container["args"]


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={team-a,team-b}",), ("rayTokens.existingSecret=tokens",),
                                  ("leaderElection.enabled=false",)],
                         ids=["cluster-wide", "namespaced", "ray-tokens", "no-leader-election"])
def test_the_operator_cli_accepts_the_charts_command_line(helm: str, sets: tuple[str, ...]) -> None:
    from swarm_arena.cli import build_parser

    args = _operator_args(template(helm, *sets))
    # $(POD_NAMESPACE) is expanded by the kubelet.
    parsed = build_parser().parse_args([a.replace("$(POD_NAMESPACE)", "swarm-arena-system") for a in args])
    assert parsed.func.__name__ == "_cmd_operator"
    assert parsed.metrics_port == 9090 and parsed.liveness_port == 8080
    assert parsed.ray_auth_key_file == "/etc/swarm-arena/ray-auth/key"
    assert parsed.leader_election is ("leaderElection.enabled=false" not in sets)
    if parsed.leader_election:
        assert parsed.lease_namespace == "swarm-arena-system" and parsed.lease_name == "swarm-arena-operator"
    assert parsed.cluster_addresses_file == "/etc/swarm-arena/clusters/clusters.yaml"
    if sets and sets[0].startswith("watchNamespaces"):
        assert parsed.namespace == ["team-a", "team-b"] and not parsed.all_namespaces
    else:
        assert parsed.all_namespaces and parsed.namespace == []


def test_ray_auth_key_is_mounted_from_a_secret_never_read_through_the_api(helm: str) -> None:
    objects = template(helm)
    secret = one(objects, "Secret", "swarm-arena-operator-ray-auth")
    assert len(secret["data"]["key"]) >= 48
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["ray-auth"]["secret"]["secretName"] == "swarm-arena-operator-ray-auth"
    existing = template(helm, "rayAuth.existingSecret=mine")
    assert by_kind(existing, "Secret") == []
    pod = one(existing, "Deployment")["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["ray-auth"]["secret"]["secretName"] == "mine"


def test_existing_clusters_are_an_admin_owned_configmap_the_operator_reads(helm: str) -> None:
    from swarm_arena.controller.addresses import parse

    objects = template(helm, "existingClusters[0].address=http://ray-head.team-a.svc:8265",
                       "existingClusters[0].namespaces={team-a,team-b}", "existingClusters[0].tokenFile=team-a",
                       "rayTokens.existingSecret=tokens", release="second")
    cm = one(objects, "ConfigMap", "second-swarm-arena-operator-clusters")
    [approved] = parse(cm["data"]["clusters.yaml"])
    assert approved.endpoint == ("http", "ray-head.team-a.svc", 8265)
    assert approved.namespaces == {"team-a", "team-b"} and approved.token_file == "team-a"
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["clusters"]["configMap"]["name"] == cm["metadata"]["name"]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["clusters"]["mountPath"] == "/etc/swarm-arena/clusters" and "subPath" not in mounts["clusters"]
    args = pod["containers"][0]["args"]
    assert "--cluster-addresses-file=/etc/swarm-arena/clusters/clusters.yaml" in args
    assert "--lease-name=second" in args  # two releases in one namespace never share a Lease
    lease_rules = [r for r in _rules(objects) if "leases" in r["resources"] and r.get("resourceNames")]
    assert [r["resourceNames"] for r in lease_rules] == [["second"]]
    # Nothing approved by default: every cluster.address is refused.
    assert parse(one(template(helm), "ConfigMap", "swarm-arena-operator-clusters")["data"]["clusters.yaml"]) == []
    with pytest.raises(AssertionError, match="existingClusters"):
        template(helm, "existingClusters[0].address=ray://h:10001", "existingClusters[0].namespaces={a}")


def _rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for kind in ("ClusterRole", "Role") for o in by_kind(objects, kind) for r in o["rules"]]


def test_rbac_never_reads_secrets_nor_writes_spec(helm: str) -> None:
    for sets in [(), ("watchNamespaces={a}",), ("leaderElection.enabled=false",)]:
        rules = _rules(template(helm, *sets))
        for rule in rules:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["create"]
            if "swarmevaluations" in rule["resources"]:
                assert not {"create", "update", "delete"} & set(rule["verbs"])


def test_namespaced_install_has_nothing_cluster_wide_but_nodes(helm: str) -> None:
    objects = template(helm, "watchNamespaces={team-a,team-b}")
    [cluster_role] = by_kind(objects, "ClusterRole")
    assert cluster_role["metadata"]["name"] == "swarm-arena-operator-nodes"
    assert cluster_role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]}]
    roles = {o["metadata"]["namespace"] for o in by_kind(objects, "Role") if not o["metadata"]["name"].endswith("-leader-election")}
    bindings = {o["metadata"]["namespace"] for o in by_kind(objects, "RoleBinding")
                if not o["metadata"]["name"].endswith("-leader-election")}
    assert roles == bindings == {"team-a", "team-b"}
    # and the Lease, in the operator's own namespace
    lease = one(objects, "Role", "swarm-arena-operator-leader-election")
    assert lease["metadata"]["namespace"] == "swarm-arena-system"
    assert {tuple(r["resources"]) for r in lease["rules"]} == {("leases",)}


def test_a_namespaced_release_without_nodes_has_nothing_cluster_scoped(helm: str) -> None:
    objects = template(helm, "watchNamespaces={team-a}", "rbac.nodes=false")
    assert by_kind(objects, "ClusterRole") == by_kind(objects, "ClusterRoleBinding") == []
    assert "--no-watch-nodes" in _operator_args(objects)
    assert "--no-watch-nodes" not in _operator_args(template(helm, "watchNamespaces={team-a}"))


def test_pod_delete_is_granted_only_with_rbac_pod_delete(helm: str) -> None:
    def pod_verbs(objects: list[dict[str, Any]]) -> set[str]:
        return {v for r in _rules(objects) if "pods" in r["resources"] for v in r["verbs"]}

    assert pod_verbs(template(helm)) == {"list", "watch", "delete"}
    without = template(helm, "rbac.podDelete=false")
    assert pod_verbs(without) == {"list", "watch"} and "--no-delete-pods" in _operator_args(without)


def test_ray_pod_defaults_reach_the_operator(helm: str) -> None:
    from swarm_arena.cli import build_parser

    args = _operator_args(template(helm, "rayPods.imageRepository=mirror.example/ray",
                                   "rayPods.imagePullSecrets[0].name=mirror", "rayPods.imagePullSecrets[1].name=team"))
    parsed = build_parser().parse_args([a.replace("$(POD_NAMESPACE)", "ns") for a in args])
    assert parsed.ray_image_repository == "mirror.example/ray"
    assert parsed.ray_image_pull_secret == ["mirror", "team"]
    assert parsed.watch_nodes and parsed.delete_pods


def test_ray_auth_key_survives_helm_uninstall(helm: str) -> None:
    secret = one(template(helm), "Secret", "swarm-arena-operator-ray-auth")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_chart_states_its_kubernetes_and_has_a_readme(helm: str) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.30.0-0"
    refused = run([helm, "template", "r", str(CHART), "--kube-version", "1.29.0"], check=False)
    assert refused.returncode != 0 and "kubeVersion" in refused.stderr
    readme = run([helm, "show", "readme", str(CHART)]).stdout
    assert "## Values" in readme and "rbac.nodes" in readme


def test_examples_name_no_namespace() -> None:
    for example in sorted((MANIFESTS / "examples").rglob("*.yaml")):
        for doc in yaml.safe_load_all(example.read_text()):
            if doc and doc.get("kind") == "SwarmEvaluation":
                assert "namespace" not in doc["metadata"], f"{example}: names a namespace"


def test_cluster_wide_install_binds_one_cluster_role(helm: str) -> None:
    objects = template(helm)
    assert sorted(o["metadata"]["name"] for o in by_kind(objects, "ClusterRole")) == [
        "swarm-arena-operator", "swarm-arena-operator-nodes"]
    assert [o["metadata"]["name"] for o in by_kind(objects, "Role")] == ["swarm-arena-operator-leader-election"]
    assert by_kind(template(helm, "leaderElection.enabled=false"), "Role") == []
    wide = one(objects, "ClusterRole", "swarm-arena-operator")
    # kopf serving every namespace never lists namespaces (it watches cluster-wide): not granted.
    assert not any("namespaces" in r["resources"] for r in wide["rules"])


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={a}", "leaderElection.enabled=false")],
                         ids=["cluster-wide", "namespaced"])
def test_every_rbac_rule_says_why(helm: str, sets: tuple[str, ...]) -> None:
    argv = [helm, "template", "r", str(CHART), "--show-only", "templates/rbac.yaml", "--kube-version", kube_version()]
    for s in sets:
        argv += ["--set", s]
    lines = [ln.strip() for ln in run(argv).stdout.splitlines() if ln.strip()]
    rules = [i for i, ln in enumerate(lines) if ln.startswith("- apiGroups:")]
    assert len(rules) >= 8
    for i in rules:
        assert lines[i - 1].startswith("#"), f"RBAC rule without its reason in a comment above: {lines[i]}"


def test_optional_monitoring_objects(helm: str) -> None:
    assert {o["kind"] for o in template(helm)} >= {"Service"}
    objects = template(helm, "metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true",
                       "grafanaDashboard.enabled=true", "grafanaDashboard.namespace=monitoring")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    alerts = [r["alert"] for g in one(objects, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    assert {"SwarmEvaluationFailed", "SwarmEvaluationStuckProvisioning", "SwarmEvaluationRepeatedRecoveries"} <= set(alerts)
    dashboard = one(objects, "ConfigMap", "swarm-arena-operator-dashboard")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["swarm-arena.json"])["uid"] == "swarm-arena"
    with pytest.raises(AssertionError, match="metrics.service.enabled"):
        template(helm, "metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false")


def test_helm_test_pod_checks_the_metrics_service(helm: str) -> None:
    out = run([helm, "template", "r", str(CHART), "--namespace", "ns", "--show-only", "templates/tests/test-metrics.yaml",
               "--kube-version", kube_version()])
    pod = yaml.safe_load(out.stdout)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "http://r-swarm-arena-operator-metrics.ns.svc:9090/metrics" in pod["spec"]["containers"][0]["command"][2]
    assert pod["spec"]["containers"][0]["securityContext"] == RESTRICTED_CONTAINER


# ---- the metrics the alerts and the dashboard read exist --------------------------------------


def _exported_names(registry) -> set[str]:
    names = set()
    for metric in registry.collect():
        base = metric.name
        names.add(base)
        if metric.type == "counter":
            names.add(base + "_total")
        if metric.type in ("histogram", "summary"):
            names |= {base + "_bucket", base + "_sum", base + "_count"}
    return names


def test_alerts_and_dashboard_read_only_metrics_that_exist() -> None:
    from swarm_arena.arena.metrics import ArenaMetrics
    from swarm_arena.controller.metrics import REGISTRY

    arena = ArenaMetrics("ns/name")
    exported = _exported_names(REGISTRY) | _exported_names(arena.registry)
    text = RULES.read_text() + DASHBOARD.read_text()
    used = set(re.findall(r"\bswarm_arena_[a-z_]+", text))
    assert used, "no swarm_arena_ metrics found in the alerts and the dashboard"
    assert sorted(used - exported) == []


def test_gitops_docs_install_the_chart_with_values_it_accepts(helm: str, tmp_path: Path) -> None:
    """docs/gitops.md's Argo CD Application and Flux HelmRelease point at this chart with values it takes."""
    docs = [d for block in re.findall(r"```yaml\n(.*?)```", (CHART.parents[1] / "docs" / "gitops.md").read_text(), re.S)
            for d in yaml.safe_load_all(block) if d]
    app = next(d for d in docs if d["kind"] == "Application")
    release = next(d for d in docs if d["kind"] == "HelmRelease")
    assert app["metadata"]["annotations"]["argocd.argoproj.io/compare-options"] == "ServerSideDiff=true"
    assert app["spec"]["source"]["path"] == "helm/swarm-arena-operator"
    assert release["spec"]["chart"]["spec"]["chart"] == "./helm/swarm-arena-operator"
    for values in (app["spec"]["source"]["helm"]["valuesObject"], release["spec"]["values"]):
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        assert one(template(helm, extra=("-f", str(path))), "Deployment")
