"""The job's repair endpoint on the head and the operator's client for it, end to end over HTTP
(the coordinator behind it is a recording stand-in: the repair itself is tested on a real Ray in
test_fault_tolerance.py, and through the operator in tests/operator/test_real_clusters.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import pytest

from swarm_arena.api import job_channel
from swarm_arena.arena.errors import EvaluationNotRunning, RepairTimedOut
from swarm_arena.arena.job import open_repair_endpoint, ray_token
from swarm_arena.arena.repair_endpoint import BadRequest, RepairEndpoint, parse_node_ids
from swarm_arena.controller.dashboard import DashboardError, DashboardUnauthorized, repair_on_head

TOKEN = "a" * 64
NODE = "ab12" * 14


class _Coordinator:
    def __init__(self, answer: Any = None) -> None:
        self.calls: list[list[str] | None] = []
        self.answer = answer

    def __call__(self, node_ids: list[str] | None) -> list[str]:
        self.calls.append(node_ids)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer or ["default/e/shard-greedy-0"]


def _post(port: int, body: bytes, token: str | None = TOKEN, path: str = job_channel.REPAIR_PATH) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_authenticated_request_reaches_the_coordinator_with_its_node_ids() -> None:
    coordinator = _Coordinator()
    with RepairEndpoint(TOKEN, coordinator, host="127.0.0.1") as endpoint:
        code, doc = _post(endpoint.port, json.dumps({"nodeIds": [NODE]}).encode())
        assert (code, doc) == (200, {"replaced": ["default/e/shard-greedy-0"]})
        assert _post(endpoint.port, b"")[0] == 200  # no body: replace whatever fails a ping
    assert coordinator.calls == [[NODE], None]


@pytest.mark.parametrize("token", [None, "", "b" * 64, TOKEN[:-1]])
def test_without_the_clusters_token_nothing_is_repaired(token: str | None) -> None:
    coordinator = _Coordinator()
    with RepairEndpoint(TOKEN, coordinator, host="127.0.0.1") as endpoint:
        code, doc = _post(endpoint.port, json.dumps({"nodeIds": [NODE]}).encode(), token=token)
    assert code == 401 and "token" in doc["error"] and coordinator.calls == []


def test_a_bad_body_is_refused_naming_the_field() -> None:
    coordinator = _Coordinator()
    with RepairEndpoint(TOKEN, coordinator, host="127.0.0.1") as endpoint:
        for body, field in [(b"{", "JSON"), (b"[1]", "object"), (b'{"nodes": []}', "nodes"),
                            (b'{"nodeIds": "x"}', "nodeIds"), (b'{"nodeIds": ["zz!"]}', "nodeIds[0]")]:
            code, doc = _post(endpoint.port, body)
            assert code == 400 and field in doc["error"], (body, doc)
        assert _post(endpoint.port, b"{}", path="/other")[0] == 404
    assert coordinator.calls == []


@pytest.mark.parametrize(("error", "code"), [
    (EvaluationNotRunning("no running evaluation default/e-secret-name"), 404),
    (RepairTimedOut("no answer from /srv/secret-path"), 504),
    (RuntimeError("boom: s3://bucket/secret-key"), 500),
])
def test_what_went_wrong_is_answered_not_raised_nor_echoed(error: BaseException, code: int) -> None:
    with RepairEndpoint(TOKEN, _Coordinator(error), host="127.0.0.1") as endpoint:
        got, doc = _post(endpoint.port, json.dumps({"nodeIds": [NODE]}).encode())
        assert got == code and doc["error"]
        assert "secret" not in json.dumps(doc) and type(error).__name__ not in json.dumps(doc)
        assert _post(endpoint.port, b"")[0] == code  # and it keeps serving


def test_parse_node_ids() -> None:
    assert parse_node_ids(b'{"nodeIds": null}') is None
    assert parse_node_ids(json.dumps({"nodeIds": [NODE, NODE.upper()]}).encode()) == [NODE, NODE.upper()]
    with pytest.raises(BadRequest, match="at most 1000"):
        parse_node_ids(json.dumps({"nodeIds": ["ab"] * 1001}).encode())


def _repair_on_head(port: int, token: str, node_ids: tuple[str, ...]) -> list[str]:
    async def go() -> list[str]:
        async with aiohttp.ClientSession() as session:
            return await repair_on_head(session, "127.0.0.1", token, node_ids, timeout_s=5, port=port)

    return asyncio.run(go())


def test_the_operators_client_gets_the_names_or_an_error_to_fall_back_on() -> None:
    coordinator = _Coordinator(["default/e/env-0", "default/e/shard-random-1"])
    with RepairEndpoint(TOKEN, coordinator, host="127.0.0.1") as endpoint:
        assert _repair_on_head(endpoint.port, TOKEN, (NODE,)) == ["default/e/env-0", "default/e/shard-random-1"]
        with pytest.raises(DashboardUnauthorized):
            _repair_on_head(endpoint.port, "wrong", (NODE,))
        port = endpoint.port
    with pytest.raises(DashboardError):  # nobody listening (an older job, or not started yet)
        _repair_on_head(port, TOKEN, (NODE,))
    assert coordinator.calls == [[NODE]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_job_listens_only_when_asked_and_only_with_rays_token(capsys, tmp_path) -> None:
    assert open_repair_endpoint({}, "default/e") is None
    port = _free_port()
    assert open_repair_endpoint({job_channel.REPAIR_PORT_ENV: str(port)}, "default/e") is None
    assert "authentication is off" in capsys.readouterr().out
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert ray_token({"RAY_AUTH_TOKEN_PATH": str(token_file)}) == TOKEN
    endpoint = open_repair_endpoint({job_channel.REPAIR_PORT_ENV: str(port), "RAY_AUTH_TOKEN": TOKEN}, "default/e")
    assert endpoint is not None and endpoint.port == port
    try:
        # The port is taken (say, by an earlier attempt's driver still going): the job runs on without it.
        assert open_repair_endpoint({job_channel.REPAIR_PORT_ENV: str(port), "RAY_AUTH_TOKEN": TOKEN}, "default/e") is None
        assert "cannot listen" in capsys.readouterr().out
    finally:
        endpoint.close()
