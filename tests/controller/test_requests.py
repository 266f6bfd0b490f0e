"""The operator's requests end and back off as the servers ask (kube.py, reconciler.py), with the
real clients against small real HTTP servers that misbehave on purpose: one that throttles (429
with Retry-After), one that never answers, a dashboard whose log endpoint fails."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import aiohttp
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from swarm_arena.controller.dashboard import Dashboard, DashboardError
from swarm_arena.controller.kube import Kube, api_client, retry_after_s
from swarm_arena.controller.reconciler import Memory, Reconciler
from swarm_arena.controller.settings import OperatorSettings

Answer = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes] | None]


class Server:
    """Answers each request with `answer(handler)`; None: never answers (until closed)."""

    def __init__(self, answer: Answer) -> None:
        self.seen: list[tuple[float, str, str]] = []
        self.closing = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                outer.seen.append((time.monotonic(), self.command, self.path))
                got = answer(self)
                if got is None:
                    outer.closing.wait(30)
                    return
                code, headers, body = got
                self.send_response(code)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = _any  # noqa: N815 - http.server's names

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], Server]]:
    made: list[Server] = []

    def make(answer: Answer) -> Server:
        made.append(Server(answer))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _kube(url: str, timeout_s: float = 5.0) -> Kube:
    config = client.Configuration()
    config.host = url
    return Kube(api_client(config), threads=2, request_timeout_s=timeout_s)


CM = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}}).encode()


def test_a_throttled_request_is_sent_again_after_the_servers_retry_after(serve) -> None:
    def answer(h: BaseHTTPRequestHandler):
        if len(server.seen) == 1:
            return 429, {"Retry-After": "2"}, b'{"kind":"Status","code":429}'
        return 200, {}, CM

    server = serve(answer)
    kube = _kube(server.url)
    cm = asyncio.run(kube.read_configmap("ns", "x"))
    kube.close()
    assert cm["data"] == {"a": "1"} and len(server.seen) == 2
    assert server.seen[1][0] - server.seen[0][0] >= 2.0  # waited what the server asked, not less


def test_throttling_that_does_not_end_is_an_error_not_a_loop(serve) -> None:
    server = serve(lambda h: (429, {"Retry-After": "1"}, b"{}"))
    kube = _kube(server.url)
    import swarm_arena.controller.kube as kube_module

    with pytest.raises(ApiException) as caught:
        asyncio.run(kube.read_configmap("ns", "x"))
    kube.close()
    assert caught.value.status == 429 and len(server.seen) == kube_module.THROTTLE_RETRIES + 1


def test_retry_after_is_bounded_and_only_for_429() -> None:
    def exc(status: int, value: str | None) -> ApiException:
        e = ApiException(status=status)
        e.headers = {"Retry-After": value} if value is not None else {}
        return e

    assert retry_after_s(exc(429, "7")) == 7.0
    assert retry_after_s(exc(429, "0")) == 1.0 and retry_after_s(exc(429, None)) == 1.0
    assert retry_after_s(exc(429, "3600")) == 60.0
    assert retry_after_s(exc(429, "Wed, 21 Oct 2015 07:28:00 GMT")) == 1.0
    assert retry_after_s(exc(500, "7")) is None and retry_after_s(exc(409, None)) is None


def test_a_request_to_an_api_server_that_never_answers_ends(serve) -> None:
    server = serve(lambda h: None)
    kube = _kube(server.url, timeout_s=0.5)

    async def go() -> None:
        await asyncio.wait_for(kube.patch_status("ns", "x", {"phase": "Running"}), 20)

    with pytest.raises(Exception) as caught:  # the client's own timeout, well before wait_for's
        asyncio.run(go())
    kube.close()
    assert not isinstance(caught.value, asyncio.TimeoutError), caught.value
    assert "timed out" in str(caught.value).lower() or "timeout" in type(caught.value).__name__.lower()


def _dashboard_answer(job_status: str):
    def answer(h: BaseHTTPRequestHandler):
        if h.path.startswith("/api/jobs/"):
            return 200, {}, json.dumps({"status": job_status, "driver_node_id": "ab" * 28}).encode()
        if h.path.startswith("/api/v0/logs/file"):
            return 500, {}, b"Internal Server Error: the log agent is restarting"
        return 404, {}, b"{}"
    return answer


def _job_view(url: str):
    async def go():
        async with aiohttp.ClientSession() as session:
            reconciler = Reconciler(OperatorSettings(), None, session)  # type: ignore[arg-type]
            return await reconciler._job_view(Dashboard(session, url), "swe-1")
    return asyncio.run(go())


def test_a_failed_log_read_leaves_a_running_job_running(serve) -> None:
    server = serve(_dashboard_answer("RUNNING"))
    job, info = _job_view(server.url)
    assert job.found and job.status == "RUNNING" and job.record is None and info is None
    # ... and decide keeps it Running: the observation is a reachable dashboard with a running job
    from swarm_arena.api.status import Phase, SwarmEvaluationStatus
    from swarm_arena.controller.decide import decide
    from tests.controller.test_decide import obs

    d = decide(obs(SwarmEvaluationStatus(phase=Phase.RUNNING, job_id="swe-1", attempts=1), job=job))
    assert d.status.phase is Phase.RUNNING and d.actions == []
    assert Memory().run.unreachable_since is None


def test_a_finished_jobs_outcome_waits_for_its_record(serve) -> None:
    server = serve(_dashboard_answer("SUCCEEDED"))
    with pytest.raises(DashboardError):  # not "SUCCEEDED without a record": asked again next pass
        _job_view(server.url)
