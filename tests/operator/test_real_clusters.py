"""The operator on RayClusters it creates, whose pods really run Ray (process-backed nodes,
tests/controlplane): the whole path to Succeeded, TTL, and recovery from lost workers, a lost
node and a lost head, each with every episode counted exactly once and the leaderboard of an
uninterrupted run with the same seed."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from swarm_arena.controller import build_results, names
from tests.controlplane.plane import wait_for
from tests.operator.conftest import Evaluations, manifest, run_locally

pytestmark = pytest.mark.controlplane


@pytest.fixture
def real(process_nodes, namespace, operator_factory):
    op = operator_factory([namespace]).start()
    ev = Evaluations(process_nodes, namespace, op.tail)
    ev.operator = op
    return ev


def real_manifest(name: str, workers: int = 1, **kw: Any) -> dict[str, Any]:
    doc = manifest(name, **kw)
    doc["spec"].setdefault("cluster", {
        "head": {"resources": {"cpu": 1, "memory": "2Gi"}},
        "workerGroups": [{"name": "cpu", "replicas": workers, "resources": {"cpu": 2, "memory": "3Gi"}}],
    })
    return doc


def _uid(evals: Evaluations, name: str) -> str:
    return evals.get(name)["metadata"]["uid"]


def dashboard(evals: Evaluations, name: str, path: str) -> Any:
    rc = json.loads(evals.cp.kubectl("get", "raycluster", name, "-n", evals.ns, "-o", "json").stdout)
    ip = rc["status"]["head"]["podIP"]
    token = names.ray_auth_token(evals.operator.key_file.read_bytes().strip(), evals.ns, name, _uid(evals, name))
    req = urllib.request.Request(evals.cp.pod_url(ip, 8265, path), headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def pods(evals: Evaluations, name: str) -> list[dict[str, Any]]:
    return json.loads(evals.cp.kubectl("get", "pods", "-n", evals.ns, "-l", f"ray.io/cluster={name}",
                                       "-o", "json").stdout)["items"]


def pod_holding(evals: Evaluations, name: str, actor_suffix: str) -> dict[str, Any]:
    """The worker pod whose Ray node runs the named actor `<ns>/<name>/<actor_suffix>`."""
    actors = dashboard(evals, name, "/api/v0/actors?limit=1000&detail=true")["data"]["result"]["result"]
    nodes = {n["node_id"]: n["node_ip"] for n in dashboard(evals, name, "/api/v0/nodes?limit=100")["data"]["result"]["result"]}
    wanted = f"{evals.ns}/{name}/{actor_suffix}"
    actor = next(a for a in actors if a.get("name") == wanted and a.get("state") == "ALIVE")
    ip = nodes[actor["node_id"]]
    return next(p for p in pods(evals, name) if p["status"].get("podIP") == ip)


def _episodes(evals: Evaluations, name: str) -> list[int]:
    return sorted(r.episode for r in build_results.episodes_from_configmap(evals.configmap(f"{name}-results")))


def _running_with_progress(evals: Evaluations, name: str, at_least: int = 1) -> dict[str, Any]:
    return evals.wait(name, f"{at_least} episode(s) counted", lambda s: s if s.get("phase") == "Running" and (
        s.get("progress") or {}).get("episodesCompleted", 0) >= at_least else None, timeout=300)


def test_runs_to_succeeded_on_a_cluster_it_made_then_ttl_removes_the_cluster(real, tmp_path: Path) -> None:
    doc = real_manifest("made", ttlSecondsAfterFinished=5)
    real.apply(doc)
    status = real.wait_phase("made", "Succeeded", timeout=420)
    reference = run_locally(doc, tmp_path)
    assert status["results"]["leaderboard"] == reference["results"]["leaderboard"]
    assert status["progress"]["agentSteps"] == reference["progress"]["agentSteps"]
    assert _episodes(real, "made") == [0, 1, 2, 3]
    real.wait("made", "the RayCluster deleted after the TTL", lambda s: real.cp.kubectl(
        "get", "raycluster", "made", "-n", real.ns, check=False).returncode != 0, timeout=120)
    status = real.status("made")
    assert status["phase"] == "Succeeded" and status["results"]["leaderboard"] == reference["results"]["leaderboard"]
    ready = next(c for c in status["conditions"] if c["type"] == "ClusterReady")
    assert (ready["status"], ready["reason"]) == ("False", "DeletedAfterTTL")
    assert real.configmap("made-results")


def test_a_deleted_worker_pod_is_repaired_and_every_episode_counts_once(real, tmp_path: Path) -> None:
    doc = real_manifest("loss", workers=2, episodes=4, max_steps=300, agents=60)
    doc["spec"]["execution"] = {"parallelEpisodes": 1}
    real.apply(doc)
    _running_with_progress(real, "loss")
    victim = pod_holding(real, "loss", "env-0")
    killed = datetime.now().astimezone()
    real.cp.kubectl("delete", "pod", victim["metadata"]["name"], "-n", real.ns, "--grace-period=0", "--force",
                    "--wait=false")
    seen = real.wait("loss", "Degraded or recovered", lambda s: s if any(
        c["type"] == "Degraded" and c["status"] == "True" for c in s.get("conditions", [])) or
        (s.get("recoveries") or 0) >= 1 else None, timeout=60)
    degraded = next((c for c in seen["conditions"] if c["type"] == "Degraded"), {"status": "False"})
    if degraded["status"] == "True":  # caught while it was repaired: it names the loss
        assert degraded["reason"] == "WorkerLost" and victim["metadata"]["name"] in degraded["message"], degraded
    else:  # already repaired: the recovery is recorded
        assert seen["recoveries"] >= 1 and seen["lastRecovery"]["actorsRestarted"], seen
    status = real.wait_phase("loss", "Succeeded", timeout=420)
    assert status["recoveries"] >= 1
    last = status["lastRecovery"]
    assert last["actorsRestarted"], last
    resumed = datetime.fromisoformat(last["time"].replace("Z", "+00:00"))
    print(f"loss -> stepping resumed: {(resumed - killed).total_seconds():.1f}s ({last})")
    assert _episodes(real, "loss") == [0, 1, 2, 3]
    reference = run_locally(doc, tmp_path)
    assert status["results"]["leaderboard"] == reference["results"]["leaderboard"]
    reasons = [e["reason"] for e in real.events("loss")]
    assert "WorkerLost" in reasons and "Recovering" in reasons
    lost = next(e for e in real.events("loss") if e["reason"] == "WorkerLost")
    assert victim["metadata"]["name"] in lost["message"] and victim["spec"]["nodeName"] in lost["message"]
    # The fast way in: the job on the head took the request itself (no repair job was needed).
    assert _repairs(real, "head", "ok") >= 1, real.operator.tail()


def _repairs(real, route: str, outcome: str) -> float:
    """The operator's swarm_arena_operator_repairs_total{route, outcome}."""
    prefix = f'swarm_arena_operator_repairs_total{{outcome="{outcome}",route="{route}"}} '
    lines = [line for line in real.operator.metrics().splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_a_killed_node_twice_in_one_run_still_counts_every_episode_once(real, tmp_path: Path) -> None:
    doc = real_manifest("crash", workers=2, episodes=6, max_steps=2000, agents=60)
    # The head sits on a GPU process node (tainted: no worker lands there), so each kill takes
    # workers only; a lost head is the next test.
    doc["spec"]["cluster"]["head"].update({
        "nodeSelector": {"nvidia.com/gpu.present": "true"},  # a GPU process node (kwok's is tainted too)
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    })
    real.apply(doc)
    for round_ in (1, 2):
        _running_with_progress(real, "crash", at_least=round_)
        victim = pod_holding(real, "crash", "env-0")
        node = victim["spec"]["nodeName"]
        head = next(p for p in pods(real, "crash") if p["metadata"]["labels"].get("ray.io/node-type") == "head")
        assert node != head["spec"]["nodeName"], (victim, head)
        real.cp.kill_node(node)
        real.wait("crash", f"recovery {round_}", lambda s: (s.get("recoveries") or 0) >= round_, timeout=180)
        real.cp.add_process_node(f"{node}-r{round_}")  # a replacement machine joins
    status = real.wait_phase("crash", "Succeeded", timeout=600)
    assert status["recoveries"] >= 2 and status["attempts"] == 1, status
    assert _repairs(real, "head", "ok") >= 1, real.operator.tail()
    assert _episodes(real, "crash") == list(range(6))
    reference = run_locally(doc, tmp_path)
    assert status["results"]["leaderboard"] == reference["results"]["leaderboard"]
    assert status["progress"]["agentSteps"] == reference["progress"]["agentSteps"]


def test_a_lost_head_is_resubmitted_and_resumes_from_the_durable_checkpoint(real, tmp_path: Path) -> None:
    store = Path("/var/tmp") / f"swarm-arena-test-{real.ns}"
    doc = real_manifest("headless", episodes=6, max_steps=200, agents=60,
                        checkpoint={"intervalSteps": 20, "storageURI": f"file://{store}"})
    real.apply(doc)
    _running_with_progress(real, "headless", at_least=2)
    head = next(p for p in pods(real, "headless") if p["metadata"]["labels"].get("ray.io/node-type") == "head")
    real.cp.kubectl("delete", "pod", head["metadata"]["name"], "-n", real.ns, "--grace-period=0", "--force",
                    "--wait=false")
    real.wait("headless", "Recovering", lambda s: s.get("phase") == "Recovering" or (s.get("attempts") or 0) >= 2,
              timeout=120)
    status = real.wait_phase("headless", "Succeeded", timeout=600)
    assert status["attempts"] == 2 and status["headRestarts"] == 1 and not status.get("failures")
    assert _episodes(real, "headless") == list(range(6))
    reference = run_locally(doc, tmp_path)
    assert status["results"]["leaderboard"] == reference["results"]["leaderboard"]
    import shutil

    shutil.rmtree(store, ignore_errors=True)
