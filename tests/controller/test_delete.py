"""The delete handler reads what it needs from any status, however broken (handlers/evaluations.py)."""

from __future__ import annotations

import pytest

from swarm_arena.controller.handlers.evaluations import job_to_stop

STOPPING = [{"type": "JobRunning", "status": "Unknown", "reason": "Stopping"}]


@pytest.mark.parametrize("status,expected", [
    ({"phase": "Running", "jobId": "swe-1"}, "swe-1"),
    ({"phase": "Provisioning", "jobId": "swe-1"}, "swe-1"),  # recorded, maybe sent
    ({"phase": "Succeeded", "jobId": "swe-1"}, None),
    ({"phase": "Failed", "jobId": "swe-1", "conditions": STOPPING}, "swe-1"),  # a stop not yet confirmed
    ({"phase": "Running"}, None),
    # what the operator's model refuses, and must not keep the evaluation in Terminating
    ({"phase": "Running", "jobId": "swe-1", "results": {"leaderboard": [{"policy": "p"}]}}, "swe-1"),
    ({"phase": "Bogus", "jobId": "swe-1", "conditions": "not a list", "attempts": -1}, "swe-1"),
    ({"phase": "Running", "jobId": 7}, None),
    ({"phase": "Failed", "jobId": "swe-1", "conditions": [None, 3, {"type": "JobRunning"}]}, None),
])
def test_job_to_stop_from_any_status(status, expected) -> None:
    assert job_to_stop({"status": status}) == expected


@pytest.mark.parametrize("body", [{}, {"status": None}, {"status": "garbage"}, {"status": []}])
def test_no_status_no_job(body) -> None:
    assert job_to_stop(body) is None
