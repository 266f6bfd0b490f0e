"""A stop is confirmed, and deletion is bounded (docs/operator.md): on an existing cluster
(`cluster.address`) a job the operator stops is asked again until Ray says it stopped, also after
the phase is final; a deleted evaluation whose job cannot be stopped is released after a bounded,
visible wait instead of staying in Terminating."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import pytest

from tests.controlplane.plane import wait_for
from tests.operator.conftest import Evaluations, manifest

pytestmark = pytest.mark.controlplane

Route = Callable[[BaseHTTPRequestHandler, bytes], "tuple[int, bytes] | None"]


class Server:
    """An HTTP server on this host answering with `route` (None: pass the request on to `upstream`)."""

    def __init__(self, route: Route, upstream: str | None = None) -> None:
        self.stops = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and self.path.endswith("/stop"):
                    outer.stops += 1
                answer = route(self, body)
                if answer is None:
                    answer = outer._forward(self, body)
                code, data = answer
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _any  # noqa: N815 - http.server's names

            def log_message(self, *args) -> None:
                pass

        self.upstream = upstream
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> tuple[int, bytes]:
        assert self.upstream is not None
        headers = {k: v for k, v in h.headers.items() if k.lower() in ("authorization", "content-type")}
        req = urllib.request.Request(self.upstream + h.path, data=body or None, method=h.command, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(route: Route, upstream: str | None = None) -> Server:
        made.append(Server(route, upstream))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.fixture
def setup(control_plane, namespace, operator_factory):
    op = operator_factory([namespace])
    return Evaluations(control_plane, namespace, op.tail), op


def _jobs_of(head, namespace: str, name: str) -> list[dict]:
    return [j for j in head.jobs() if (j.get("metadata") or {}).get("arena.swarm.dev/evaluation") == f"{namespace}/{name}"]


def _condition(status: dict, type_: str) -> dict:
    return {c["type"]: c for c in status.get("conditions") or []}.get(type_) or {}


def test_a_stop_that_fails_is_sent_again_until_ray_says_the_job_stopped(setup, ray_head, servers) -> None:
    evals, op = setup
    failing = {"left": 3}

    def route(h: BaseHTTPRequestHandler, body: bytes):
        if h.command == "POST" and h.path.endswith("/stop") and failing["left"] > 0:
            failing["left"] -= 1
            return 503, b"Service Unavailable"  # the dashboard was busy: the stop did not happen
        return None

    proxy = servers(route, upstream=ray_head.dashboard)
    op.approve(proxy.url, [evals.ns], ray_head.token)
    op.start()
    evals.apply(manifest("late", episodes=50, max_steps=400, agents=60, activeDeadlineSeconds=15,
                         cluster={"address": proxy.url}))
    status = evals.wait_phase("late", "Failed", timeout=180)
    assert _condition(status, "Failed")["reason"] == "DeadlineExceeded"
    wait_for("Ray says the job stopped", lambda: [j["status"] for j in _jobs_of(ray_head, evals.ns, "late")] == ["STOPPED"],
             120, on_timeout=op.tail)
    assert proxy.stops >= 4  # three refused, then asked again after the phase was final
    confirmed = evals.wait("late", "JobRunning says stopped",
                           lambda s: s if _condition(s, "JobRunning").get("reason") == "Stopped" else None, 60)
    assert _condition(confirmed, "JobRunning")["status"] == "False" and confirmed["phase"] == "Failed"


def test_a_deleted_evaluation_whose_job_cannot_be_stopped_is_released_visibly(setup, servers) -> None:
    evals, op = setup

    def route(h: BaseHTTPRequestHandler, body: bytes):
        if h.path == "/api/version":
            return 200, json.dumps({"ray_version": "2.60.0"}).encode()
        if h.command == "POST" and h.path == "/api/jobs/":
            return 200, json.dumps({"submission_id": json.loads(body)["submission_id"]}).encode()
        if h.command == "GET" and h.path.startswith("/api/jobs/"):
            return 200, json.dumps({"status": "RUNNING"}).encode()
        # what a login page in front of a dashboard answers: 200, and no JSON
        return 200, b"<html><body>Sign in</body></html>"

    dashboard = servers(route)
    op.approve(dashboard.url, [evals.ns], None)
    op.start()
    evals.apply(manifest("stuck", cluster={"address": dashboard.url}))
    evals.wait_phase("stuck", "Running", timeout=120)
    evals.cp.kubectl("delete", "swe", "stuck", "-n", evals.ns, "--wait=false")

    def gone() -> bool:
        return evals.cp.kubectl("get", "swe", "stuck", "-n", evals.ns, check=False).returncode != 0

    wait_for("the deleted evaluation is released", gone, 180, on_timeout=op.tail)
    assert dashboard.stops >= 2  # tried, and tried again
    events = json.loads(evals.cp.kubectl("get", "events", "-n", evals.ns, "--field-selector",
                                         "involvedObject.name=stuck", "-o", "json").stdout)["items"]
    reasons = {e["reason"]: e for e in events}
    assert "StoppingJob" in reasons and "JobNotStopped" in reasons, sorted(reasons)
    assert "ray job stop" in reasons["JobNotStopped"]["message"]
