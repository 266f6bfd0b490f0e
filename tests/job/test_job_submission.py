"""The arena job as the operator runs it: submitted to a real Ray head through the dashboard's jobs
API (entrypoint + env_vars), its status and episodes read back through the dashboard's log API."""

from __future__ import annotations

import json
import time
import urllib.error
import uuid
from typing import Any

import pytest
from ray.job_submission import JobStatus

from swarm_arena.api.job_channel import (
    ENTRYPOINT,
    EVALUATION_ENV,
    RESUME_ENV,
    SUBMISSION_ID_ENV,
    FailureReason,
    JobState,
    JobStatusRecord,
    encode_payload,
    episode_records,
    episodes_file_name,
    last_status,
    status_file_name,
)
from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.resource import SwarmEvaluation
from tests.arena.conftest import foraging_evaluation
from tests.job.conftest import RayHead

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

JOB_TIMEOUT_S = 240.0


def _evaluation(name: str, **spec: Any) -> SwarmEvaluation:
    base: dict[str, Any] = {
        "environment": {"factory": "foraging", "params": {"agents": 40}, "maxSteps": 40},
        "policies": [{"name": p, "factory": p, "resources": {"cpu": 0.5}} for p in ("greedy", "random")],
        "episodes": 6,
        "execution": {"agentsPerShard": 20},
        "checkpoint": {"intervalSteps": 10},
    }
    base.update(spec)
    return foraging_evaluation(name, **base)


def _payload(evaluation: SwarmEvaluation) -> str:
    """What the operator sends: apiVersion, kind, metadata {name, namespace} and the defaulted spec."""
    wire = evaluation.to_wire()
    return encode_payload({k: wire[k] for k in ("apiVersion", "kind", "metadata", "spec")})


class _Submitted:
    """One submission and what the dashboard serves of it."""

    def __init__(self, head: RayHead, evaluation: SwarmEvaluation, resume: dict | None = None) -> None:
        self.head = head
        self.sid = f"swe-{evaluation.metadata.name}-{uuid.uuid4().hex[:8]}"
        env = {EVALUATION_ENV: _payload(evaluation), SUBMISSION_ID_ENV: self.sid}
        if resume is not None:
            env[RESUME_ENV] = encode_payload(resume)
        head.submit(entrypoint=ENTRYPOINT, submission_id=self.sid, runtime_env={"env_vars": env})
        self.status = head.wait_job(self.sid, JOB_TIMEOUT_S)
        self.info = head.client().get_job_info(self.sid)
        self.logs = head.client().get_job_logs(self.sid)

    def last_status(self) -> JobStatusRecord:
        """What the operator reads: the last line only."""
        record = last_status(self.head.read_log(self.info.driver_node_id, status_file_name(self.sid), lines=1))
        assert record is not None, f"no complete status line; job log:\n{self.logs[-4000:]}"
        return record

    def all_status(self) -> list[JobStatusRecord]:
        text = self.head.read_log(self.info.driver_node_id, status_file_name(self.sid), lines=100_000)
        return [JobStatusRecord.model_validate_json(line) for line in text.splitlines() if line.strip()]

    def episodes(self, lines: int = 100_000) -> list[EpisodeRecord]:
        return episode_records(self.head.read_log(self.info.driver_node_id, episodes_file_name(self.sid), lines))


@pytest.fixture(scope="module")
def uninterrupted(ray_head: RayHead) -> _Submitted:
    return _Submitted(ray_head, _evaluation("job-full"))


def test_job_reports_progress_and_results_through_the_dashboard(uninterrupted: _Submitted) -> None:
    job = uninterrupted
    assert job.status == JobStatus.SUCCEEDED, job.logs[-4000:]
    final = job.last_status()
    assert final.state is JobState.SUCCEEDED and final.reason is None and final.message is None
    assert final.progress.episodes_completed == final.progress.episodes_total == 6
    assert final.progress.agent_steps == 6 * 40 * 40
    assert final.episodes_this_attempt == 6 and final.recoveries == 0 and final.last_recovery is None
    assert final.results is not None and [e.policy for e in final.results.leaderboard] == ["greedy", "random"]
    assert final.results.step_latency_ms is not None and final.results.agent_steps_per_second

    episodes = job.episodes()
    assert sorted(e.episode for e in episodes) == list(range(6))
    assert sum(e.agent_steps for e in episodes) == final.progress.agent_steps
    assert [e.episode for e in job.episodes(lines=2)] == [e.episode for e in episodes[-2:]]  # tailing works

    history = job.all_status()
    assert [r.seq for r in history] == list(range(len(history)))
    assert history[0].state is JobState.RUNNING and history[0].progress.episodes_completed == 0
    assert all(r.state is JobState.RUNNING for r in history[:-1])
    # A line is written at every counted episode, and counts it.
    assert {r.episodes_this_attempt for r in history} == set(range(7))
    assert all(r.progress.episodes_completed >= r.episodes_this_attempt for r in history)
    # What `ray job logs` shows people.
    assert "episode 5 counted" in job.logs or "episode" in job.logs
    assert "succeeded" in job.logs


@pytest.mark.parametrize(
    ("environment", "field"),
    [({"factory": "no_such_module_anywhere:make_env"}, "spec.environment.factory"),
     ({"factory": "foraging", "params": {"agents": 40, "no_such_param": 1}}, "spec.environment.params.no_such_param")],
    ids=["factory-does-not-import", "params-refused"],
)  # fmt: skip
def test_an_invalid_spec_fails_the_job_once_naming_the_field(ray_head: RayHead, environment, field: str) -> None:
    job = _Submitted(ray_head, _evaluation(f"job-bad-{uuid.uuid4().hex[:4]}", environment=environment))
    assert job.status == JobStatus.FAILED
    final = job.last_status()
    assert final.state is JobState.FAILED and final.reason is FailureReason.INVALID_SPEC, final
    assert final.message is not None and final.message.startswith(field), final.message
    assert final.episodes_this_attempt == 0 and job.episodes() == []
    assert "Traceback" not in job.logs, job.logs[-3000:]  # an invalid spec is not a crash


def test_a_resumed_job_plays_only_what_was_not_counted(ray_head: RayHead, uninterrupted: _Submitted) -> None:
    full = {e.episode: e for e in uninterrupted.episodes()}
    counted = [full[i] for i in (0, 2, 4)]
    resume = {
        "episodes": [e.to_wire() for e in counted],
        "recoveries": [{"time": "2026-11-23T00:00:00.000Z", "reason": "NodeLost", "actorsRestarted": ["x"], "seconds": 2.0}],
    }
    job = _Submitted(ray_head, _evaluation("job-full"), resume=resume)
    assert job.status == JobStatus.SUCCEEDED, job.logs[-4000:]

    played = job.episodes()
    assert sorted(e.episode for e in played) == [1, 3, 5]  # the others are not played again
    assert [e.model_dump() for e in sorted(played, key=lambda e: e.episode)] == [
        full[i].model_dump() for i in (1, 3, 5)
    ]
    final = job.last_status()
    assert final.episodes_this_attempt == 3
    assert final.progress.episodes_completed == final.progress.episodes_total == 6
    assert final.progress.agent_steps == uninterrupted.last_status().progress.agent_steps
    assert final.recoveries == 1 and final.last_recovery is not None and final.last_recovery.reason == "NodeLost"
    assert job.all_status()[0].progress.episodes_completed == 3  # resumed ones count from the first line
    # Exactly the leaderboard of the uninterrupted run with the same seed.
    assert final.results is not None and uninterrupted.last_status().results is not None
    assert [e.model_dump() for e in final.results.leaderboard] == [
        e.model_dump() for e in uninterrupted.last_status().results.leaderboard
    ]


def test_a_resume_from_another_spec_is_refused(ray_head: RayHead, uninterrupted: _Submitted) -> None:
    record = uninterrupted.episodes()[0].to_wire()
    record["episode"] = 99
    job = _Submitted(ray_head, _evaluation("job-full"), resume={"episodes": [record]})
    final = job.last_status()
    assert job.status == JobStatus.FAILED and final.reason is FailureReason.INVALID_SPEC
    assert final.message is not None and "resumed episode 99" in final.message


def _wait_status(job_sid: str, head: RayHead, until, timeout: float = JOB_TIMEOUT_S) -> JobStatusRecord:
    """Poll the job's last status line through the dashboard until `until(record)` (deadline: `timeout`)."""
    deadline = time.monotonic() + timeout
    record = None
    while time.monotonic() < deadline:
        info = head.client().get_job_info(job_sid)
        if info.driver_node_id:
            try:
                record = last_status(head.read_log(info.driver_node_id, status_file_name(job_sid), lines=1))
            except urllib.error.HTTPError:  # the file is not there yet
                record = None
            if record is not None and until(record):
                return record
        time.sleep(0.5)
    raise AssertionError(f"job {job_sid}: condition not met within {timeout:.0f} s; last status {record}")


def test_repair_runs_as_a_ray_job_and_prints_json(ray_head: RayHead) -> None:
    """The operator's fast path without pods/exec: `swarm-arena repair --json` submitted as a job."""
    evaluation = _evaluation("job-repair", episodes=40, environment={
        "factory": "foraging", "params": {"agents": 40}, "maxSteps": 300})  # fmt: skip
    sid = f"swe-job-repair-{uuid.uuid4().hex[:8]}"
    client = ray_head.client()
    ray_head.submit(
        entrypoint=ENTRYPOINT, submission_id=sid,
        runtime_env={"env_vars": {EVALUATION_ENV: _payload(evaluation), SUBMISSION_ID_ENV: sid}},
    )  # fmt: skip
    _wait_status(sid, ray_head, lambda r: r.progress.agent_steps > 0)
    node = client.get_job_info(sid).driver_node_id  # one node: every actor of the run lives there

    command = f"swarm-arena repair {evaluation.qualified_name} --node-id {node} --json"
    repair_sid = f"repair-{uuid.uuid4().hex[:8]}"
    ray_head.submit(entrypoint=command, submission_id=repair_sid)
    assert ray_head.wait_job(repair_sid, JOB_TIMEOUT_S) == JobStatus.SUCCEEDED, client.get_job_logs(repair_sid)
    answer = json.loads(client.get_job_logs(repair_sid).strip().splitlines()[-1])
    assert set(answer) == {"replaced", "seconds"} and answer["seconds"] >= 0
    assert f"{evaluation.qualified_name}/env-0" in answer["replaced"] and len(answer["replaced"]) == 3

    assert ray_head.wait_job(sid, JOB_TIMEOUT_S) == JobStatus.SUCCEEDED, client.get_job_logs(sid)[-4000:]
    final = last_status(ray_head.read_log(node, status_file_name(sid), lines=1))
    assert final is not None and final.state is JobState.SUCCEEDED
    assert final.progress.episodes_completed == final.progress.episodes_total == 40
    assert final.progress.agent_steps == 40 * 40 * 300  # every episode counted exactly once
    assert final.recoveries >= 1 and final.last_recovery is not None
    assert set(answer["replaced"]) <= {n for line in [final.last_recovery] for n in line.actors_restarted}

    # Once the run is over there is nothing to repair: a clear message, exit code 1.
    late_sid = f"repair-{uuid.uuid4().hex[:8]}"
    ray_head.submit(entrypoint=command, submission_id=late_sid)
    assert ray_head.wait_job(late_sid, JOB_TIMEOUT_S) == JobStatus.FAILED
    assert "no running evaluation default/job-repair" in client.get_job_logs(late_sid)
