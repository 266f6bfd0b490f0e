"""An async client for the Ray dashboard's REST API: jobs and log files (aiohttp).

The operator never connects to Ray in-process (Ray Client pins one Ray version per process, and an
operator serves many clusters): everything goes through the dashboard over HTTP, authenticated
with the cluster's Ray token when it has one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from swarm_arena.api import job_channel

DEFAULT_TIMEOUT_S = 5.0
# Submitting waits for Ray to start the job's supervisor actor: seconds on a busy head.
SUBMIT_TIMEOUT_S = 60.0
# The job's repair endpoint answers once the coordinator has swapped the actors (well under 1 s).
HEAD_REPAIR_TIMEOUT_S = 10.0


class DashboardError(RuntimeError):
    """The dashboard could not be reached or refused the request (the message says which)."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class DashboardUnauthorized(DashboardError):
    pass


@dataclass(frozen=True)
class JobInfo:
    submission_id: str
    status: str
    message: str | None
    driver_node_id: str | None
    raw: dict[str, Any]


class Dashboard:
    """One dashboard (`http://host:8265`); cheap to create, sessions are shared."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self._session = session
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _request(self, method: str, path: str, *, json: Any = None, ok: tuple[int, ...] = (200,),
                       timeout_s: float | None = None, data: bytes | None = None) -> tuple[int, str]:
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else self._timeout
        try:
            async with self._session.request(
                method, self.url + path, json=json, data=data, headers=self._headers, timeout=timeout
            ) as response:
                text = await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise DashboardError(f"{method} {self.url}{path}: {type(exc).__name__}: {exc}") from None
        if response.status in (401, 403):
            raise DashboardUnauthorized(
                f"{method} {self.url}{path}: HTTP {response.status} {text.strip()[:200]} (the Ray token is wrong or missing)"
            )
        if response.status not in ok:
            last = text.strip().splitlines()[-1:] or [""]
            raise DashboardError(f"{method} {self.url}{path}: HTTP {response.status} {last[0][:300]}",
                                 response.status, text)
        return response.status, text

    async def version(self) -> dict[str, Any]:
        import json

        _, text = await self._request("GET", "/api/version")
        return json.loads(text)

    async def submit(self, body: dict[str, Any]) -> str:
        """Submit a job; an id Ray already has counts as submitted (the operator re-submits after a restart)."""
        import json

        try:
            _, text = await self._request("POST", "/api/jobs/", json=body, timeout_s=SUBMIT_TIMEOUT_S)
        except DashboardUnauthorized:
            raise
        except DashboardError as exc:
            # "already exists", or a timeout after Ray took it: either way it is there.
            if "already exists" in exc.body or await self.job(body["submission_id"]) is not None:
                return body["submission_id"]
            raise
        return json.loads(text).get("submission_id", body["submission_id"])

    async def upload_package(self, uri: str, data: bytes) -> bool:
        """Put a runtime_env package (`gcs://<name>.zip`) into the cluster unless it has it, as
        `ray job submit` does for a working_dir; True when it was uploaded. The GET also pins it
        for a while, so it is not collected before the submission that names it."""
        protocol, _, name = uri.partition("://")
        path = f"/api/packages/{protocol}/{name}"
        status, _ = await self._request("GET", path, ok=(200, 404))
        if status == 200:
            return False
        await self._request("PUT", path, data=data, timeout_s=SUBMIT_TIMEOUT_S)
        return True

    async def job(self, submission_id: str) -> JobInfo | None:
        """The job, or None when the dashboard does not know it."""
        import json

        status, text = await self._request("GET", f"/api/jobs/{submission_id}", ok=(200, 404))
        if status == 404:
            return None
        raw = json.loads(text)
        return JobInfo(
            submission_id=submission_id,
            status=raw.get("status", "PENDING"),
            message=raw.get("message"),
            driver_node_id=raw.get("driver_node_id"),
            raw=raw,
        )

    async def stop(self, submission_id: str) -> bool:
        """Ask the job to stop; False when it was not running (or is unknown)."""
        import json

        status, text = await self._request("POST", f"/api/jobs/{submission_id}/stop", ok=(200, 404))
        return status == 200 and bool(json.loads(text).get("stopped"))

    async def tail_file(self, node_id: str, filename: str, lines: int) -> str:
        """The last `lines` lines of a file in a node's Ray logs directory ('' when it does not exist yet)."""
        query = urlencode({"node_id": node_id, "filename": filename, "lines": lines})
        try:
            _, text = await self._request("GET", f"/api/v0/logs/file?{query}")
        except DashboardUnauthorized:
            raise
        except DashboardError as exc:
            if "HTTP 500" in str(exc) and ("not found" in str(exc).lower() or "does not exist" in str(exc).lower()):
                return ""
            raise
        return text

    async def nodes(self) -> list[dict[str, Any]]:
        """Ray nodes (id, ip, alive) from the state API."""
        import json

        _, text = await self._request("GET", "/api/v0/nodes?limit=10000&detail=false")
        data = json.loads(text)
        result = data.get("data", {}).get("result", {})
        return list(result.get("result", result) if isinstance(result, dict) else result)


async def repair_on_head(session: aiohttp.ClientSession, host: str, token: str, node_ids: tuple[str, ...],
                         timeout_s: float = HEAD_REPAIR_TIMEOUT_S, port: int = job_channel.REPAIR_PORT) -> list[str]:
    """Ask the running job itself, on its head, to replace the actors of `node_ids` now
    (arena/repair_endpoint.py): the names it replaced. DashboardError when it did not take the
    request (no job listening yet, an older job, the head unreachable): submit a repair job then."""
    import json

    door = Dashboard(session, f"http://{host}:{port}", token, timeout_s)
    _, text = await door._request("POST", job_channel.REPAIR_PATH, json={"nodeIds": list(node_ids) or None})
    try:
        replaced = json.loads(text)["replaced"]
    except (ValueError, KeyError, TypeError):
        raise DashboardError(f"the repair endpoint on {host} answered {text[:200]!r}") from None
    return [str(name) for name in replaced]
