"""A real Ray head with its dashboard, started by the test module, to submit the arena job to.

The head is `ray start --head --block` in a session of its own, as a KubeRay head pod runs it, in
a private temp dir and on 127.0.0.1, with the venv's `bin` first on PATH so the job's
`python -m swarm_arena.arena.job` is this checkout's. `ray start` matters: it records the GCS
address in its temp dir, where the job supervisor looks it up for the driver's RAY_ADDRESS; a
head from `ray.init` records none, and the supervisor then hands the driver whichever GCS it
finds running on the machine (another test's cluster, on this shared machine). Jobs are
submitted with `JobSubmissionClient` exactly as the operator does (entrypoint + env_vars), and
their files are read back through the dashboard's log HTTP API.

Ray's token authentication is on (Ray >= 2.5x turns it on for a new local cluster anyway), with
a token of this fixture's own (`RAY_AUTH_TOKEN` in the head's environment, never the shared
`~/.ray/auth_token`); every dashboard call sends it as `Authorization: Bearer <token>`, as the
operator must.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HEAD_START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RayHead:
    dashboard_url: str
    gcs_address: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self):  # type: ignore[no-untyped-def]
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard_url, headers=self.headers)

    def submit(self, **request: Any) -> str:
        """`submit_job`, retried while a new head has no job agent yet (Ray answers 500 "No available
        agent to submit job, please try again later" for a few seconds after it starts)."""
        deadline = time.monotonic() + HEAD_START_TIMEOUT_S
        while True:
            try:
                return self.client().submit_job(**request)
            except RuntimeError as exc:
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def read_log(self, node_id: str, filename: str, lines: int) -> str:
        """What the dashboard's log API serves of `filename` (its last `lines` lines)."""
        query = urllib.parse.urlencode({"node_id": node_id, "filename": filename, "lines": lines})
        request = urllib.request.Request(f"{self.dashboard_url}/api/v0/logs/file?{query}", headers=self.headers)
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.read().decode()

    def wait_job(self, submission_id: str, timeout: float) -> Any:
        """The job's final JobStatus (deadline: `timeout`)."""
        from ray.job_submission import JobStatus

        client = self.client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = client.get_job_status(submission_id)
            if status in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
                return status
            time.sleep(0.5)
        logs = client.get_job_logs(submission_id)
        raise AssertionError(f"job {submission_id} still {status} after {timeout:.0f} s; its log:\n{logs[-4000:]}")


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    temp = tempfile.mkdtemp(prefix="sa-job-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    token = secrets.token_hex(32)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    gcs_port = _free_port()
    ray = str(Path(sys.executable).parent / "ray")
    # Every port of its own: Ray's fixed defaults (the dashboard agent's 52365, ...) may be taken by
    # another Ray on this shared machine, and a head whose agent cannot bind accepts no job.
    ports = {flag: _free_port() for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                             "metrics-export-port", "runtime-env-agent-port", "node-manager-port",
                                             "object-manager-port", "ray-client-server-port")}  # fmt: skip
    argv = [ray, "start", "--head", "--block", f"--port={gcs_port}", "--node-ip-address=127.0.0.1",
            "--num-cpus=8", "--dashboard-host=127.0.0.1", f"--dashboard-port={port}", f"--temp-dir={temp}",
            "--disable-usage-stats", *(f"--{flag}={p}" for flag, p in ports.items())]  # fmt: skip
    log = open(Path(temp) / "ray-start.log", "w")  # noqa: SIM115 - closed in the finally below
    head = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_dashboard(url, token, head)
        yield RayHead(dashboard_url=url, gcs_address=f"127.0.0.1:{gcs_port}", token=token)
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever the head left behind in its own session (raylet, dashboard, workers)
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_dashboard(url: str, token: str, head: subprocess.Popen) -> None:
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    last: Exception | None = None
    request = urllib.request.Request(f"{url}/api/version", headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise AssertionError(f"`ray start --head` exited with {head.returncode}")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"the dashboard at {url} did not answer within {HEAD_START_TIMEOUT_S:.0f} s: {last}")
