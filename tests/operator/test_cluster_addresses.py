"""Tokens for existing clusters go only to addresses the admin approved (docs/operator.md).

A real HTTP server on this host stands in for a dashboard an evaluation's author controls: it
counts every request and the Authorization headers it got. The operator holds a real Ray
head's token, approved for that head's exact address in this namespace only."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from tests.controlplane.plane import free_port
from tests.operator.conftest import Evaluations, manifest

pytestmark = pytest.mark.controlplane


class Collector:
    """An HTTP server that answers everything `{}` and records (method, path, Authorization)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                seen.append((self.command, self.path, self.headers.get("Authorization")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 - http.server's names

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


@pytest.fixture
def setup(control_plane, namespace, ray_head, operator_factory):
    op = operator_factory([namespace])
    op.approve(ray_head.dashboard, [namespace], ray_head.token)
    op.start()
    return Evaluations(control_plane, namespace, op.tail), op, ray_head


def _refused(evals: Evaluations, name: str, reason: str) -> dict:
    def check(s: dict) -> dict | None:
        ready = {c["type"]: c for c in s.get("conditions") or []}.get("ClusterReady")
        return s if ready and ready["reason"] == reason else None

    return evals.wait(name, f"ClusterReady {reason}", check, timeout=60)


def test_an_unapproved_address_gets_no_request_and_no_token(setup, collector) -> None:
    evals, op, head = setup
    # Same host as the approved head, another port: a different endpoint, so no token and no request.
    evals.apply(manifest("steal", cluster={"address": collector.url}))
    status = _refused(evals, "steal", "AddressNotAllowed")
    ready = {c["type"]: c for c in status["conditions"]}["ClusterReady"]
    assert ready["status"] == "False" and collector.url in ready["message"] and evals.ns in ready["message"]
    assert status["phase"] == "Pending" and "jobId" not in status

    # Approved for another namespace only: still refused here.
    op.approve(collector.url, ["some-other-namespace"], "collector-token")
    evals.apply(manifest("steal2", cluster={"address": collector.url + "/"}))
    _refused(evals, "steal2", "AddressNotAllowed")
    evals.cp.kubectl("delete", "swe", "steal", "steal2", "-n", evals.ns, "--wait=true", timeout=60)
    assert collector.requests == []


def test_an_approved_address_gets_its_own_token_once_the_admin_approves_it(setup, collector) -> None:
    evals, op, head = setup
    evals.apply(manifest("later", cluster={"address": collector.url}))
    _refused(evals, "later", "AddressNotAllowed")
    assert collector.requests == []

    # Approved with a token file that is not there: refused, still no request.
    op.approve(collector.url, [evals.ns], "collector-token")
    token_file = next(p for p in op.tokens_dir.iterdir() if p.read_text() == "collector-token")
    token_file.unlink()
    evals.patch("later", {"activeDeadlineSeconds": 3600})  # a new generation wakes the loop at once
    _refused(evals, "later", "TokenMissing")
    assert collector.requests == []

    token_file.write_text("collector-token")
    evals.patch("later", {"ttlSecondsAfterFinished": 60})
    from tests.controlplane.plane import wait_for

    wait_for("the approved address is asked", lambda: collector.requests, 60, on_timeout=op.tail)
    assert {auth for _, _, auth in collector.requests} == {"Bearer collector-token"}
    assert head.token not in str(collector.requests)
