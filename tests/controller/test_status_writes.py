"""Status writes are exact: the merge patch nulls what became empty at every depth, condition
messages carry no terminal escapes, and suspended time is neither a start nor run time (pure)."""

from __future__ import annotations

from datetime import timedelta

from swarm_arena.api.status import Phase, SwarmEvaluationStatus
from swarm_arena.controller import conditions as cond
from swarm_arena.controller import names
from swarm_arena.controller.decide import JobView, StopJob, decide
from swarm_arena.controller.kube import merge_patch
from tests.controller.test_decide import NOW, UID, condition, obs, record


def _apply(target: dict, patch: dict) -> dict:
    """RFC 7386, as the API server applies it."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _apply(out[key], value)
        else:
            out[key] = value
    return out


def test_the_merge_patch_nulls_nested_fields_that_became_empty() -> None:
    old = {"phase": "Running", "lastRecovery": {"reason": "WorkerLost", "episode": 3, "nodesLost": ["n1"]},
           "results": {"stepLatencyMs": {"p50": 1.0}, "leaderboard": [{"policy": "a"}]}, "jobId": "x"}
    new = {"phase": "Running", "lastRecovery": {"reason": "HeadLost", "nodesLost": []},
           "results": {"leaderboard": [{"policy": "b"}]}}
    patch = merge_patch(old, new)
    assert patch == {"lastRecovery": {"reason": "HeadLost", "episode": None, "nodesLost": []},
                     "results": {"stepLatencyMs": None, "leaderboard": [{"policy": "b"}]}, "jobId": None}
    assert _apply(old, patch) == new
    assert merge_patch(new, new) == {}


def test_condition_messages_carry_no_terminal_escapes() -> None:
    ray = "\x1b[31mRuntimeError\x1b[0m: boom \x1b[1;33mat step 3\x1b[39m\x1b]8;;http://x\x07link\x1b]8;;\x07"
    assert cond.plain(ray) == "RuntimeError: boom at step 3link"
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    d = decide(obs(status, job=JobView(sid, True, "FAILED", message=ray), backoff_limit=0))
    assert all("\x1b" not in (c.message or "") for c in d.status.conditions)
    assert "RuntimeError: boom at step 3" in cond.get(d.status.conditions, cond.FAILED).message


def test_created_suspended_gets_no_start_time_until_it_runs() -> None:
    d = decide(obs(suspend=True))
    assert d.status.phase is Phase.SUSPENDED and d.status.start_time is None and d.status.suspended_since is None
    resumed = decide(obs(d.status, now=NOW + timedelta(hours=1)))
    assert resumed.status.start_time == "2026-11-23T13:00:00Z" and not resumed.status.suspended_seconds


def test_the_deadline_does_not_count_suspended_time() -> None:
    sid = names.submission_id(UID, 1)
    running = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1, start_time="2026-11-23T11:59:00Z")
    job = JobView(sid, True, "RUNNING", record=record())
    # Ran 60 s of a 120 s deadline, then suspended for an hour.
    suspended = decide(obs(running, job=job, suspend=True, active_deadline_seconds=120))
    assert suspended.status.suspended_since == "2026-11-23T12:00:00Z"
    later = NOW + timedelta(hours=1)
    still = decide(obs(suspended.status, job=JobView(sid, True, "STOPPED", record=record()), now=later, suspend=True,
                       active_deadline_seconds=120))
    assert still.status.phase is Phase.SUSPENDED
    resumed = decide(obs(still.status, now=later, active_deadline_seconds=120))
    assert resumed.status.phase is not Phase.FAILED and resumed.status.suspended_seconds == 3600
    assert resumed.status.suspended_since is None and resumed.requeue_s == 60.0
    # 61 s of run time later the deadline is past.
    back = resumed.status.model_copy(update={"phase": Phase.RUNNING, "job_id": names.submission_id(UID, 2)})
    late = decide(obs(back, job=JobView(back.job_id, True, "RUNNING", record=record()), now=later + timedelta(seconds=61),
                      active_deadline_seconds=120))
    assert late.status.phase is Phase.FAILED and StopJob(back.job_id) in late.actions
    assert condition(late.status, cond.FAILED) == ("True", "DeadlineExceeded")
