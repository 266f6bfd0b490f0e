"""The Argo CD health check (Lua) gives every phase the health a GitOps user expects.

Status objects come from the API's own models (the same that generate the CRD), one per phase;
tests/packaging/test_gitops_cluster.py feeds it objects read back from a real API server.
"""

from __future__ import annotations

import pytest

from swarm_arena.api.status import (
    Condition, LeaderboardEntry, Phase, Progress, Results, SwarmEvaluationStatus,
)
from tests.packaging.argocd import health

EXPECTED = {
    Phase.PENDING: "Progressing",
    Phase.PROVISIONING: "Progressing",
    Phase.RUNNING: "Progressing",
    Phase.RECOVERING: "Progressing",
    Phase.SUSPENDED: "Suspended",
    Phase.SUCCEEDED: "Healthy",
    Phase.FAILED: "Degraded",
}
T = "2026-11-23T18:00:00Z"
WHY_FAILED = "spec.policies[0].factory: cannot import module 'mine'"


def status_of(phase: Phase, generation: int = 1) -> dict:
    """A status as the operator writes it for `phase` (conditions as in API.md)."""
    def cond(type_: str, status: str, reason: str, message: str) -> Condition:
        return Condition(type=type_, status=status, reason=reason, message=message,
                         last_transition_time=T, observed_generation=generation)

    # As controller/decide.py sets them: Ready only once Succeeded (kstatus: Current), Stalled on
    # Failed (kstatus: Failed), and Complete / Failed beside them.
    done = phase in (Phase.SUCCEEDED, Phase.FAILED)
    failed = phase == Phase.FAILED
    conditions = [
        cond("Ready", "True" if phase == Phase.SUCCEEDED else "False", phase.value, f"phase {phase.value}"),
        cond("Complete", "True" if phase == Phase.SUCCEEDED else "False",
             "Succeeded" if phase == Phase.SUCCEEDED else "NotComplete", f"phase {phase.value}"),
        cond("Stalled", "True", "InvalidSpec", WHY_FAILED) if failed else
        cond("Stalled", "False", "NotStalled", f"phase {phase.value}"),
        cond("ClusterReady", "True" if phase in (Phase.RUNNING, Phase.RECOVERING) else "False",
             "Provisioning" if phase in (Phase.PENDING, Phase.PROVISIONING) else phase.value,
             "RayCluster arena-x: 1/3 pods ready" if phase == Phase.PROVISIONING else "ok"),
    ]
    if phase == Phase.RECOVERING:
        conditions.append(cond("Degraded", "True", "NodeLost", "Ray node 7a3f lost with shard-greedy-0"))
    conditions.append(cond("Failed", "True", "InvalidSpec", WHY_FAILED)
                      if failed else cond("Failed", "False", "NotFailed", f"phase {phase.value}"))
    status = SwarmEvaluationStatus(
        phase=phase, conditions=conditions, observed_generation=generation,
        progress=Progress(episodes_completed=6 if done else 2, episodes_total=6),
        results=Results(leaderboard=[
            LeaderboardEntry(policy="greedy", rating=1.5, ci_low=1.2, ci_high=1.8, mean_return=1.5, episodes=6),
        ]) if phase == Phase.SUCCEEDED else None,
    )
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def evaluation(status: dict | None, generation: int = 1) -> dict:
    obj = {"apiVersion": "arena.swarm.dev/v1alpha1", "kind": "SwarmEvaluation",
           "metadata": {"name": "x", "namespace": "default", "generation": generation}, "spec": {}}
    if status is not None:
        obj["status"] = status
    return obj


def test_every_phase_is_covered() -> None:
    assert set(EXPECTED) == set(Phase)


@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.value)
def test_phase_health(phase: Phase) -> None:
    status, message = health(evaluation(status_of(phase)))
    assert status == EXPECTED[phase], message


def test_messages_say_what_is_going_on() -> None:
    assert health(evaluation(status_of(Phase.SUCCEEDED)))[1] == "Succeeded (6/6 episodes); leader: greedy"
    assert health(evaluation(status_of(Phase.FAILED)))[1] == "spec.policies[0].factory: cannot import module 'mine'"
    assert health(evaluation(status_of(Phase.RECOVERING)))[1] == (
        "Recovering: Ray node 7a3f lost with shard-greedy-0 (2/6 episodes)")
    assert health(evaluation(status_of(Phase.PROVISIONING)))[1] == (
        "Provisioning: RayCluster arena-x: 1/3 pods ready")
    assert health(evaluation(status_of(Phase.RUNNING)))[1] == "Running (2/6 episodes)"


def test_no_status_yet_is_progressing() -> None:
    assert health(evaluation(None)) == (
        "Progressing", "Waiting for the swarm-arena operator to pick the evaluation up")
    assert health(evaluation({}))[0] == "Progressing"


def test_a_status_older_than_the_spec_is_progressing() -> None:
    # e.g. spec.suspend just flipped: status still says Running for generation 1.
    status, message = health(evaluation(status_of(Phase.SUCCEEDED, generation=1), generation=2))
    assert (status, message) == ("Progressing", "Waiting for the operator to observe generation 2")


def test_failed_without_a_condition_still_degrades() -> None:
    status = status_of(Phase.FAILED)
    status["conditions"] = []
    assert health(evaluation(status)) == ("Degraded", "Failed")


def test_an_unknown_phase_is_unknown() -> None:
    assert health(evaluation({"phase": "Exploding"}))[0] == "Unknown"
