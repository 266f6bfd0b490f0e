"""The chart and the kustomize install against the real control plane (tests/controlplane).

helm lint and rendering are in test_chart.py; here the API server judges what they render
(server-side dry runs), `helm install` makes a Deployment that becomes Available on a kwok node,
the chart's own ServiceAccount token is refused what it must not do (Secrets, spec writes, and
with a namespaced install every namespace but its own), `helm upgrade` rolls it and keeps the
Ray auth key, and `helm uninstall` leaves nothing behind.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.packaging.chart import CHART, MANIFESTS, ROOT, kube_version, template
from tests.packaging.conftest import decode, deployment_available, release_label_selector, unique

pytestmark = pytest.mark.timeout(600)

# Kinds a release can leave behind (namespaced, then cluster-scoped).
NAMESPACED_KINDS = ("deployments", "replicasets", "pods", "serviceaccounts", "secrets", "services",
                    "configmaps", "roles", "rolebindings")
CLUSTER_KINDS = ("clusterroles", "clusterrolebindings")


def _server_dry_run(control_plane, manifest: str) -> str:
    out = control_plane.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=packaging-test",
                                "-f", "-", input=manifest)
    return out.stdout


def _objects(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


# ---- rendering judged by the API server -------------------------------------------------------


@pytest.mark.parametrize("sets", [
    (),
    ("grafanaDashboard.enabled=true", "replicas=2", "rayTokens.existingSecret=t"),
    ("leaderElection.enabled=false",),
], ids=["defaults", "options", "no-leader-election"])
def test_helm_template_is_accepted_by_a_server_side_dry_run(control_plane, helm, make_namespace, sets) -> None:
    ns = make_namespace("dry-run")
    out = subprocess.run([helm, "template", "dry", str(CHART), "-n", ns, "--include-crds", "--kube-version",
                          kube_version(), *sum((["--set", s] for s in sets), [])],
                         capture_output=True, text=True, check=True).stdout
    accepted = _server_dry_run(control_plane, out)
    kinds = {line.split("/")[0] for line in accepted.splitlines()}
    assert {"deployment.apps", "serviceaccount", "clusterrole.rbac.authorization.k8s.io",
            "customresourcedefinition.apiextensions.k8s.io"} <= kinds, accepted


def test_namespaced_template_is_accepted_by_a_server_side_dry_run(control_plane, helm, make_namespace) -> None:
    ns, watched = make_namespace("dry-run"), make_namespace("watched")
    out = subprocess.run([helm, "template", "dry", str(CHART), "-n", ns, "--kube-version", kube_version(),
                          "--set", f"watchNamespaces={{{watched}}}"],
                         capture_output=True, text=True, check=True).stdout
    accepted = _server_dry_run(control_plane, out)
    assert f"role.rbac.authorization.k8s.io/dry-swarm-arena-operator serverside-applied (server dry run)" in accepted


def test_kustomize_files_are_generated_from_the_chart(helm) -> None:
    out = subprocess.run([sys.executable, str(MANIFESTS / "generate.py"), "--helm", helm, "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("overlay, sets", [
    ("base", ()),
    ("overlays/namespaced", ("watchNamespaces={arena}",)),
], ids=["base", "namespaced"])
def test_kustomize_build_equals_the_chart(control_plane, helm, overlay, sets) -> None:
    built = _objects(control_plane.kubectl("kustomize", str(MANIFESTS / overlay)).stdout)
    rendered = template(helm, "rayAuth.existingSecret=swarm-arena-ray-auth", *sets,
                        extra=("--include-crds", "--skip-tests"))

    def key(o):
        return o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]

    def normal(o):
        text = yaml.safe_dump(o, sort_keys=True).replace("app.kubernetes.io/managed-by: Helm",
                                                         "app.kubernetes.io/managed-by: kustomize")
        return yaml.safe_load(text)

    built_by_key = {key(o): o for o in built if o["kind"] != "Namespace"}
    rendered_by_key = {key(o): normal(o) for o in rendered}
    assert sorted(built_by_key) == sorted(rendered_by_key)
    for k, obj in built_by_key.items():
        assert obj == rendered_by_key[k], k


@pytest.fixture(scope="module")
def kustomize_namespaces(control_plane):
    """The namespaces the kustomizations put objects in, made for the module (a dry run cannot
    create objects in a namespace that does not exist yet), removed after it when made here."""
    made = []
    for overlay in ("base", "overlays/namespaced"):
        for doc in _objects(control_plane.kubectl("kustomize", str(MANIFESTS / overlay)).stdout):
            name = doc["metadata"]["name"]
            if doc["kind"] == "Namespace" and control_plane.kubectl("get", "namespace", name, check=False).returncode:
                control_plane.kubectl("create", "namespace", name)
                made.append(name)
    yield
    for name in made:
        control_plane.kubectl("delete", "namespace", name, "--wait=false")


@pytest.mark.parametrize("overlay", ["base", "overlays/namespaced"])
def test_kubectl_apply_k_is_accepted_by_a_server_side_dry_run(control_plane, kustomize_namespaces, overlay) -> None:
    out = control_plane.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=packaging-test",
                                "-k", str(MANIFESTS / overlay))
    assert "deployment.apps/swarm-arena-operator serverside-applied (server dry run)" in out.stdout, out.stdout
    if overlay == "overlays/namespaced":
        assert "role.rbac.authorization.k8s.io/swarm-arena-operator serverside-applied (server dry run)" in out.stdout
        assert "clusterrole.rbac.authorization.k8s.io/swarm-arena-operator serverside-applied" not in out.stdout


# ---- a cluster-wide install ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def wide(chart_release):
    return chart_release


def test_install_makes_an_available_deployment_with_the_restricted_pod(wide, kube_api) -> None:
    from kubernetes import client

    pods = client.CoreV1Api(kube_api).list_namespaced_pod(
        wide.namespace, label_selector=f"app.kubernetes.io/instance={wide.name},app.kubernetes.io/component=operator")
    [pod] = pods.items
    assert pod.status.phase == "Running"
    container = pod.spec.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.service_account_name == wide.service_account


def test_chart_token_cannot_read_secrets(wide, make_namespace) -> None:
    other = make_namespace("other")
    for ns in (wide.namespace, other):
        listed = wide.as_operator("get", "secrets", "-n", ns)
        assert listed.returncode != 0 and "Forbidden" in listed.stderr, listed
        got = wide.as_operator("get", "secret", f"{wide.fullname}-ray-auth", "-n", ns)
        assert got.returncode != 0 and "Forbidden" in got.stderr, got
        assert not wide.can_i("watch", "secrets", ns)
        assert wide.can_i("create", "secrets", ns)  # each RayCluster's token Secret
    assert not wide.can_i("list", "secrets")


def test_chart_token_has_what_the_operator_uses_everywhere(wide, make_namespace) -> None:
    ns = make_namespace("anywhere")
    assert wide.as_operator("get", "swarmevaluations", "-A").returncode == 0
    assert wide.as_operator("get", "rayclusters.ray.io", "-A").returncode == 0
    assert wide.as_operator("get", "nodes").returncode == 0
    for verb, resource in [("watch", "swarmevaluations.arena.swarm.dev"), ("patch", "swarmevaluations.arena.swarm.dev"),
                           ("patch", "swarmevaluations.arena.swarm.dev/status"), ("create", "rayclusters.ray.io"),
                           ("delete", "rayclusters.ray.io"), ("create", "configmaps"), ("watch", "pods"),
                           ("create", "events")]:
        assert wide.can_i(verb, resource, ns), (verb, resource)
    # GitOps owns spec: the operator may not create, replace or delete evaluations.
    for verb in ("create", "update", "delete"):
        assert not wide.can_i(verb, "swarmevaluations.arena.swarm.dev", ns), verb
    assert not wide.can_i("create", "pods", ns)
    # Leader election: its own Lease, in its own namespace only.
    assert wide.can_i("create", "leases.coordination.k8s.io", wide.namespace)
    assert wide.can_i("update", f"leases.coordination.k8s.io/{wide.name}", wide.namespace)
    assert not wide.can_i("update", "leases.coordination.k8s.io/someone-elses", wide.namespace)
    assert not wide.can_i("create", "leases.coordination.k8s.io", ns)


def test_upgrade_rolls_the_deployment_and_keeps_the_ray_auth_key(wide, kube_api, wait_until) -> None:
    from kubernetes import client

    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    secret = f"{wide.fullname}-ray-auth"
    key_before = decode(core.read_namespaced_secret(secret, wide.namespace).data, "key")
    generation = apps.read_namespaced_deployment(wide.fullname, wide.namespace).metadata.generation

    wide.helm_cmd("upgrade", wide.name, str(CHART), "-n", wide.namespace, "--reuse-values", "--set", "logFormat=text")

    deploy = wait_until("the upgraded Deployment Available",
                        deployment_available(kube_api, wide.namespace, wide.fullname), timeout=120)
    assert deploy.metadata.generation > generation
    assert "--log-format=text" in deploy.spec.template.spec.containers[0].args
    assert decode(core.read_namespaced_secret(secret, wide.namespace).data, "key") == key_before
    history = wide.helm_cmd("history", wide.name, "-n", wide.namespace, "-o", "yaml")
    assert [h["status"] for h in yaml.safe_load(history)] == ["superseded", "deployed"]


# ---- a namespaced install ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def narrow(chart_install, make_namespace, kube_api, wait_until):
    ns, watched = make_namespace("sa-ns"), make_namespace("team")
    release = chart_install(unique("narrow"), ns, f"watchNamespaces={{{watched}}}")
    release.watched = watched
    wait_until(f"Deployment {release.fullname} Available", deployment_available(kube_api, ns, release.fullname),
               timeout=120)
    return release


def test_namespaced_install_reaches_only_its_namespace(narrow, make_namespace) -> None:
    unwatched = make_namespace("unwatched")
    assert narrow.as_operator("get", "swarmevaluations", "-n", narrow.watched).returncode == 0
    refused = narrow.as_operator("get", "swarmevaluations", "-n", unwatched)
    assert refused.returncode != 0 and "Forbidden" in refused.stderr, refused
    cm = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}})
    refused = narrow.as_operator("create", "-n", unwatched, "-f", "-", input=cm)
    assert refused.returncode != 0 and "Forbidden" in refused.stderr, refused
    for verb, resource in [("watch", "swarmevaluations.arena.swarm.dev"), ("create", "rayclusters.ray.io"),
                           ("create", "configmaps"), ("watch", "pods"), ("create", "events")]:
        assert narrow.can_i(verb, resource, narrow.watched), (verb, resource)
        assert not narrow.can_i(verb, resource, unwatched), (verb, resource)
    assert not narrow.can_i("list", "swarmevaluations.arena.swarm.dev")  # not cluster-wide
    assert not narrow.can_i("list", "namespaces")
    assert narrow.as_operator("get", "nodes").returncode == 0  # the one cluster-scoped read
    assert not narrow.can_i("get", "secrets", narrow.watched)


def test_notes_name_the_namespaces_the_release_serves(control_plane, helm) -> None:
    """NOTES.txt (what `helm install` prints) applies the example where the operator serves it."""
    for sets, ns in [((), "swarm-arena-system"), (("watchNamespaces={team-a}",), "team-a")]:
        argv = [helm, "--kubeconfig", str(control_plane.kubeconfig), "install", "notes", str(CHART),
                "-n", "swarm-arena-system", "--dry-run=server", *sum((["--set", s] for s in sets), [])]
        notes = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout.split("NOTES:", 1)[1]
        assert f"kubectl apply -n {ns} -f manifests/examples/foraging-local.yaml" in notes, notes
        assert "default" not in notes.replace("by default", ""), notes


# ---- uninstall --------------------------------------------------------------------------------


def test_uninstall_leaves_only_the_ray_key_which_a_reinstall_adopts(chart_install, make_namespace, kube_api, control_plane,
                                                     wait_until) -> None:
    ns, watched = make_namespace("sa-gone"), make_namespace("team-gone")
    release = chart_install(unique("gone"), ns, f"watchNamespaces={{{watched}}}", "grafanaDashboard.enabled=true")
    wait_until("Deployment Available", deployment_available(kube_api, ns, release.fullname), timeout=120)
    selector = release_label_selector(release.name)

    def leftovers() -> list[str]:
        out = control_plane.kubectl("get", ",".join(NAMESPACED_KINDS), "-A", "-l", selector, "-o", "name")
        cluster = control_plane.kubectl("get", ",".join(CLUSTER_KINDS), "-l", selector, "-o", "name")
        return sorted((out.stdout + cluster.stdout).split())

    before = leftovers()
    assert {f"clusterrole.rbac.authorization.k8s.io/{release.fullname}-nodes",
            f"deployment.apps/{release.fullname}", f"secret/{release.fullname}-ray-auth",
            f"role.rbac.authorization.k8s.io/{release.fullname}"} <= set(before), before

    key = control_plane.kubectl("get", "secret", f"{release.fullname}-ray-auth", "-n", ns,
                                "-o", "jsonpath={.data.key}").stdout
    release.uninstall()

    # Everything goes but the Ray key (helm.sh/resource-policy: keep): clusters made with it outlive the release.
    wait_until("every object of the release but its Ray key gone (pods by garbage collection)",
               lambda: leftovers() == [f"secret/{release.fullname}-ray-auth"], timeout=90)
    assert "swarmevaluations.arena.swarm.dev" in control_plane.kubectl("get", "crd", "-o", "name").stdout  # kept
    again = chart_install(release.name, ns, f"watchNamespaces={{{watched}}}")
    assert control_plane.kubectl("get", "secret", f"{again.fullname}-ray-auth", "-n", ns,
                                 "-o", "jsonpath={.data.key}").stdout == key
