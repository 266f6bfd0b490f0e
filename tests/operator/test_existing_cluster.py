"""The operator end to end on an existing Ray cluster (`cluster.address`): a real local Ray head
with its dashboard and token authentication, a real kube-apiserver, `swarm-arena operator` as a
process. The job path, the reporting channel and the lifecycle, with the numbers checked against
`swarm-arena run` of the same manifest and seed."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from swarm_arena.controller import build_results
from tests.operator.conftest import Evaluations, manifest, run_locally

pytestmark = pytest.mark.controlplane


@pytest.fixture
def evals(control_plane, namespace, ray_head, operator_factory):
    op = operator_factory([namespace])
    (op.tokens_dir / "default").write_text(ray_head.token)
    op.start()
    ev = Evaluations(control_plane, namespace, op.tail)
    ev.operator = op
    ev.head = ray_head
    return ev


def _jobs_of(head, namespace: str, name: str) -> list[dict]:
    return [j for j in head.jobs() if (j.get("metadata") or {}).get("arena.swarm.dev/evaluation") == f"{namespace}/{name}"]


def _episodes(evals: Evaluations, name: str) -> list[int]:
    cm = evals.configmap(f"{name}-results")
    return [r.episode for r in build_results.episodes_from_configmap(cm)]


def test_runs_to_succeeded_with_the_same_numbers_as_swarm_arena_run(evals, tmp_path: Path) -> None:
    doc = manifest("duel", cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    status = evals.wait_phase("duel", "Succeeded", timeout=240)
    reference = run_locally(doc, tmp_path)

    assert status["progress"] == {"episodesCompleted": 4, "episodesTotal": 4,
                                  "agentSteps": reference["progress"]["agentSteps"], "summary": "4/4"}
    assert status["results"]["leaderboard"] == reference["results"]["leaderboard"]
    assert status["results"]["resultsConfigMap"] == "duel-results"
    assert status["attempts"] == 1 and status["jobId"] and status["startTime"] and status["completionTime"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["Complete"]["status"] == "True"
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    assert status["observedGeneration"] == 1

    cm = evals.configmap("duel-results")
    document = json.loads(cm["data"]["results.json"])
    # In full there, with the pairwise matrix (where separatedFrom lives, as `separated`); never in status.
    stored = document["results"]
    assert document["final"] is True
    assert stored["leaderboard"] == [{**e, "separatedFrom": []} for e in reference["results"]["leaderboard"]]
    assert stored["pairwise"]["policies"] == [e["policy"] for e in reference["results"]["leaderboard"]]
    assert stored["returnAggregates"] and "pairwise" not in status["results"]
    assert sorted(_episodes(evals, "duel")) == [0, 1, 2, 3]
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "SwarmEvaluation"

    table = evals.cp.kubectl("get", "swe", "duel", "-n", evals.ns).stdout.splitlines()
    assert table[1].split()[:4] == ["duel", "Succeeded", "4/4", reference["results"]["leaderboard"][0]["policy"]]
    reasons = [e["reason"] for e in evals.events("duel")]
    assert "Running" in reasons and "Succeeded" in reasons
    assert len(_jobs_of(evals.head, evals.ns, "duel")) == 1
    metrics = evals.operator.metrics()
    assert 'swarm_arena_operator_job_submissions_total{outcome="ok"} 1.0' in metrics
    assert 'swarm_arena_operator_evaluations{phase="Succeeded"} 1.0' in metrics


def test_an_import_path_that_does_not_resolve_fails_once_naming_the_field(evals) -> None:
    doc = manifest("typo", cluster={"address": evals.head.dashboard})
    doc["spec"]["environment"]["factory"] = "swarm_arena_no_such_module:parallel_env"
    evals.apply(doc)
    status = evals.wait_phase("typo", "Failed", timeout=120)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec" and "spec.environment.factory" in failed["message"]
    assert status["attempts"] == 1 and len(_jobs_of(evals.head, evals.ns, "typo")) == 1


def test_operator_killed_mid_run_one_job_and_the_run_completes(evals) -> None:
    doc = manifest("restart", episodes=6, max_steps=150, agents=60, cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    evals.wait("restart", "an episode counted",
               lambda s: (s.get("progress") or {}).get("episodesCompleted", 0) >= 1, timeout=180)
    evals.operator.kill(signal.SIGKILL)
    evals.operator.start()
    status = evals.wait_phase("restart", "Succeeded", timeout=300)
    assert status["attempts"] == 1 and len(_jobs_of(evals.head, evals.ns, "restart")) == 1
    assert sorted(_episodes(evals, "restart")) == list(range(6))


def test_suspend_then_unsuspend_counts_every_episode_once(evals, tmp_path: Path) -> None:
    doc = manifest("pause", episodes=6, max_steps=150, agents=60, cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    evals.wait("pause", "an episode counted",
               lambda s: (s.get("progress") or {}).get("episodesCompleted", 0) >= 1, timeout=180)
    evals.patch("pause", {"suspend": True})
    suspended = evals.wait("pause", "suspended with the job stopped",
                           lambda s: s if s.get("phase") == "Suspended" and "jobId" not in s else None, timeout=120)
    first = _jobs_of(evals.head, evals.ns, "pause")
    assert [j["status"] for j in first] == ["STOPPED"]
    kept = sorted(_episodes(evals, "pause"))
    assert kept and len(kept) == suspended["progress"]["episodesCompleted"]

    evals.patch("pause", {"suspend": False})
    status = evals.wait_phase("pause", "Succeeded", timeout=300)
    assert status["attempts"] == 2
    assert sorted(_episodes(evals, "pause")) == list(range(6))
    reference = run_locally(doc, tmp_path)
    assert status["results"]["leaderboard"] == reference["results"]["leaderboard"]
    assert status["progress"]["agentSteps"] == reference["progress"]["agentSteps"]
    assert "Suspended" in [e["reason"] for e in evals.events("pause")]


def test_deadline_stops_the_job_and_fails(evals) -> None:
    doc = manifest("late", episodes=50, max_steps=400, agents=60, activeDeadlineSeconds=15,
                   cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    status = evals.wait_phase("late", "Failed", timeout=120)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DeadlineExceeded"
    evals.wait("late", "the job stopped", lambda s: all(
        j["status"] in ("STOPPED", "FAILED") for j in _jobs_of(evals.head, evals.ns, "late")), timeout=60)


def test_a_run_that_fails_once_is_resubmitted_and_resumes(evals, tmp_path: Path) -> None:
    doc = manifest("flaky", episodes=4, backoffLimit=2, cluster={"address": evals.head.dashboard})
    doc["spec"]["policies"][1]["factory"] = "tests.operator.flaky_policy:FlakyPolicy"
    evals.apply(doc)
    status = evals.wait_phase("flaky", "Succeeded", timeout=300)
    assert status["attempts"] == 2 and status["failures"] == 1
    assert sorted(_episodes(evals, "flaky")) == [0, 1, 2, 3]
    jobs = sorted(_jobs_of(evals.head, evals.ns, "flaky"), key=lambda j: j["metadata"]["arena.swarm.dev/attempt"])
    assert [j["status"] for j in jobs] == ["FAILED", "SUCCEEDED"]
    assert "Resubmitting" in [e["reason"] for e in evals.events("flaky")] or status["failures"] == 1


def test_delete_mid_run_stops_the_job_and_releases_the_finalizer(evals) -> None:
    doc = manifest("gone", episodes=50, max_steps=400, agents=60, cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    evals.wait("gone", "running", lambda s: s.get("phase") == "Running", timeout=120)
    evals.cp.kubectl("delete", "swe", "gone", "-n", evals.ns, "--wait=true", timeout=60)
    from tests.controlplane.plane import wait_for

    wait_for("the deleted evaluation's job stopped", lambda: all(
        j["status"] in ("STOPPED", "FAILED") for j in _jobs_of(evals.head, evals.ns, "gone")), 60)
    assert _jobs_of(evals.head, evals.ns, "gone")


def test_two_operators_one_acts_and_the_standby_takes_over(evals, operator_factory) -> None:
    import time

    from tests.controlplane.plane import wait_for

    standby = operator_factory([evals.ns])
    (standby.tokens_dir / "default").write_text(evals.head.token)
    standby.start()  # healthy, but waiting for the Lease
    lease = json.loads(evals.cp.kubectl("get", "lease", "swarm-arena-operator", "-n", evals.ns, "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"].endswith(f"-{evals.operator.proc.pid}")

    doc = manifest("ha", episodes=6, max_steps=150, agents=60, cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    evals.wait("ha", "an episode counted",
               lambda s: (s.get("progress") or {}).get("episodesCompleted", 0) >= 1, timeout=180)
    killed = time.monotonic()
    evals.operator.kill(signal.SIGKILL)

    def standby_leads() -> bool:
        holder = json.loads(evals.cp.kubectl("get", "lease", "swarm-arena-operator", "-n", evals.ns, "-o",
                                             "json").stdout)["spec"]["holderIdentity"]
        return holder.endswith(f"-{standby.proc.pid}")

    wait_for("the standby holds the Lease", standby_leads, 60)
    took_over = time.monotonic() - killed
    print(f"standby took over {took_over:.1f}s after the leader was killed")
    assert took_over < 30
    status = evals.wait_phase("ha", "Succeeded", timeout=300)
    assert status["attempts"] == 1 and len(_jobs_of(evals.head, evals.ns, "ha")) == 1
    assert sorted(_episodes(evals, "ha")) == list(range(6))
