"""docs/install.md's kind quickstart, run as it is written, on the test plane (issue 23 §3).

kind runs the images a user built and loaded; here `make images` builds them into buildah's local
store and the process nodes run pods from there (tests/controlplane/images.py), so nothing of the
operator runs on the host: every `helm` and `kubectl` line of the quickstart's block runs as
written (the lines about kind, Docker and KubeRay's chart are what the plane stands in for, and
are named in STANDS_IN). The chart installs with its default values (the operator image at the
chart's appVersion); the example ends Succeeded with the leaderboard of `swarm-arena run`, on
RayCluster pods that ran the Ray image. Then a node holding the Ray workers of a longer run is
lost, and the run recovers with every episode counted once.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarm_arena.controller import build_results, names
from tests.controlplane.plane import GPU_LABEL
from tests.operator.conftest import Evaluations, run_locally
from tests.packaging.chart import ROOT, run

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(1500)]

INSTALL_MD = ROOT / "docs" / "install.md"
# What the test plane stands in for: the kind cluster, Docker builds and loads (make images and the
# process nodes' image store), KubeRay's chart (the plane runs KubeRay's operator).
STANDS_IN = ("kind ", "docker ", "helm repo add kuberay ", "helm install kuberay-operator ")


def quickstart() -> list[str]:
    """The commands of install.md's kind quickstart block, continuation lines joined."""
    text = INSTALL_MD.read_text()
    section = text[text.index("## Quickstart on kind"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "docs/install.md: no ```sh block under '## Quickstart on kind'"
    commands, current = [], ""
    for line in block.group(1).splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            commands.append(re.sub(r"\s+#.*$", "", current.strip()))
            current = ""
    return commands


def pods(cp, ns: str, selector: str) -> list[dict[str, Any]]:
    return json.loads(cp.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout)["items"]


def events_of(cp, ns: str, pod: str) -> dict[str, str]:
    out = json.loads(cp.kubectl("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={pod}",
                                "-o", "json").stdout)["items"]
    return {e["reason"]: e["message"] for e in out}


def ran_from(cp, ns: str, pod: dict[str, Any], image: str) -> None:
    events = events_of(cp, ns, pod["metadata"]["name"])
    assert "HostFallback" not in events, (pod["metadata"]["name"], events)
    assert f"'{image}'" in events.get("Pulled", ""), (pod["metadata"]["name"], events)


@pytest.fixture(scope="module")
def plane(images_on, process_nodes, helm):
    """The plane with images on; afterwards the release and the quickstart's namespaces removed."""
    cp = process_nodes
    yield cp
    run([helm, "--kubeconfig", str(cp.kubeconfig), "uninstall", "swarm-arena-operator", "-n", "swarm-arena-system",
         "--wait", "--timeout", "120s"], check=False, timeout=180)
    for ns in ("arena", "swarm-arena-system"):
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_kind_quickstart_as_written_runs_on_the_images(plane, images_on, helm, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cp = plane
    monkeypatch.chdir(ROOT)  # the quickstart's paths are relative to the checkout
    commands = quickstart()
    ours = [c for c in commands if not c.startswith(STANDS_IN)]
    assert all(c.split()[0] in ("helm", "kubectl") for c in ours), ours
    assert any(c.startswith("helm install swarm-arena-operator ") for c in ours), ours

    evaluations = Evaluations(cp, "arena", lambda: cp.kubectl("logs", "-n", "swarm-arena-system",
                                                             "deployment/swarm-arena-operator", "--tail=80",
                                                             check=False).stdout)
    example = yaml.safe_load((ROOT / "manifests" / "examples" / "foraging-local.yaml").read_text())
    for command in ours:
        argv = shlex.split(command)
        if argv[0] == "helm":
            run([helm, "--kubeconfig", str(cp.kubeconfig), *argv[1:]], timeout=600)
        elif "-w" in argv:  # a watch: wait for what the comment says it shows
            evaluations.wait_phase(example["metadata"]["name"], "Succeeded", timeout=600)
        else:
            cp.kubectl(*argv[1:], timeout=120)

    status = evaluations.status(example["metadata"]["name"])
    assert status["phase"] == "Succeeded"
    reference = run_locally(example, tmp_path)
    assert status["results"]["leaderboard"] == reference["results"]["leaderboard"]
    assert status["progress"]["agentSteps"] == reference["progress"]["agentSteps"]

    # Nothing ran on the host's environment: the operator from its image, Ray from the Ray image.
    (operator,) = pods(cp, "swarm-arena-system", "app.kubernetes.io/instance=swarm-arena-operator")
    ran_from(cp, "swarm-arena-system", operator, images_on["operator"])
    ray_pods = pods(cp, "arena", "ray.io/cluster=foraging-mixed")
    assert {p["metadata"]["labels"]["ray.io/node-type"] for p in ray_pods} == {"head", "worker"}, ray_pods
    for pod in ray_pods:
        assert pod["spec"]["containers"][0]["image"] == images_on["ray"]
        ran_from(cp, "arena", pod, images_on["ray"])


def holding(cp, ns: str, name: str, actor: str) -> dict[str, Any]:
    """The Ray pod whose node runs the named actor ``<ns>/<name>/<actor>``, read from the head's
    dashboard with the cluster's token (derived from the chart's key, as the operator does)."""
    secret = json.loads(cp.kubectl("get", "secret", "swarm-arena-operator-ray-auth", "-n", "swarm-arena-system",
                                   "-o", "json").stdout)
    key = base64.b64decode(secret["data"]["key"]).strip()
    uid = json.loads(cp.kubectl("get", "swe", name, "-n", ns, "-o", "json").stdout)["metadata"]["uid"]
    token = names.ray_auth_token(key, ns, name, uid)
    rc = json.loads(cp.kubectl("get", "raycluster", name, "-n", ns, "-o", "json").stdout)

    def get(path: str) -> Any:
        req = urllib.request.Request(cp.pod_url(rc["status"]["head"]["podIP"], 8265, path),
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())["data"]["result"]["result"]
    actors = get("/api/v0/actors?limit=1000&detail=true")
    ips = {n["node_id"]: n["node_ip"] for n in get("/api/v0/nodes?limit=100")}
    found = next(a for a in actors if a.get("name") == f"{ns}/{name}/{actor}" and a.get("state") == "ALIVE")
    return next(p for p in pods(cp, ns, f"ray.io/cluster={name}") if p["status"].get("podIP") == ips[found["node_id"]])


def test_a_lost_node_on_the_images_is_recovered_with_every_episode_counted_once(plane, images_on) -> None:
    cp = plane
    evaluations = Evaluations(cp, "arena", lambda: cp.kubectl("logs", "-n", "swarm-arena-system",
                                                             "deployment/swarm-arena-operator", "--tail=80",
                                                             check=False).stdout)
    cp.kubectl("delete", "swe", "foraging-mixed", "-n", "arena", "--wait=true", "--timeout=120s")
    (operator,) = pods(cp, "swarm-arena-system", "app.kubernetes.io/instance=swarm-arena-operator")
    operator_node = operator["spec"]["nodeName"]

    # The example, long enough to lose a node in the middle: 600 agents step at about 0.7 M
    # agent-steps/s here, so 160 short episodes take a minute or two.
    doc = yaml.safe_load((ROOT / "manifests" / "examples" / "foraging-local.yaml").read_text())
    doc["metadata"]["name"] = name = "foraging-lost-node"
    doc["spec"].update(episodes=160)
    doc["spec"]["execution"]["parallelEpisodes"] = 1
    # The head on the GPU process node and no Ray pod beside the operator: the lost node takes
    # Ray workers only (a lost head and a lost operator are tests/operator's).
    doc["spec"]["cluster"]["head"] = {"nodeSelector": {GPU_LABEL: "true"}, "tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    cp.kubectl("cordon", operator_node)
    try:
        evaluations.apply(doc)
        evaluations.wait(name, "5 episodes counted", lambda s: s if s.get("phase") == "Running" and (
            s.get("progress") or {}).get("episodesCompleted", 0) >= 5 else None, timeout=420)
        victim = holding(cp, "arena", name, "env-0")
        node = victim["spec"]["nodeName"]
        assert victim["metadata"]["labels"]["ray.io/node-type"] == "worker" and node != operator_node, victim
        cp.kill_node(node)
        cp.add_process_node(f"{node}-replaced")  # a replacement machine joins
        evaluations.wait(name, "a recovery", lambda s: (s.get("recoveries") or 0) >= 1 or s.get("phase") == "Succeeded",
                         timeout=300)
    finally:
        cp.kubectl("uncordon", operator_node, check=False, timeout=120)
    status = evaluations.wait_phase(name, "Succeeded", timeout=900)
    assert status["recoveries"] >= 1 and status["attempts"] == 1, status
    assert status["progress"]["episodesCompleted"] == status["progress"]["episodesTotal"] == 160
    records = build_results.episodes_from_configmap(evaluations.configmap(f"{name}-results"))
    assert sorted(r.episode for r in records) == list(range(160))
    for pod in pods(cp, "arena", f"ray.io/cluster={name}"):
        ran_from(cp, "arena", pod, images_on["ray"])
