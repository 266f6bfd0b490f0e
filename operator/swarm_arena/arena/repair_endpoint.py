"""The job's door for the operator's fast repair: `POST /repair` on the head, with the Ray token.

The operator's other way in is a Ray job (`swarm-arena repair ...`): the dashboard starts a job
supervisor, which starts a Python process that imports Ray and joins the cluster as a driver,
all before the coordinator hears of the loss. That costs about 3 s of the few seconds a repair
should take. The job's own driver is already connected, so it listens for the same request:

    POST /repair      Authorization: Bearer <the cluster's Ray token>
    {"nodeIds": ["<ray node id>", ...]}       (omitted or null: every actor failing a ping)
    -> 200 {"replaced": [...]}   401 wrong token   400 bad body   404 no run yet   504 no answer

It only ever asks this evaluation's coordinator to replace this evaluation's actors, which is
what the token's holder could already do through the dashboard (and much more). Without a token
in the environment (Ray's authentication off) it never listens: an open door that kills actors
is not one to leave about. The operator falls back to the job whenever this answers otherwise.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from swarm_arena.api.job_channel import REPAIR_PATH
from swarm_arena.arena.errors import EvaluationNotRunning, RepairTimedOut

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_NODES = 1000
_NODE_ID = re.compile(r"^[0-9a-fA-F]{1,128}$")

Repair = Callable[[list[str] | None], list[str]]


class BadRequest(ValueError):
    """A request body the endpoint refuses; the message names the field."""


def parse_node_ids(body: bytes) -> list[str] | None:
    """The `nodeIds` of a request body (None: ping-based repair); BadRequest naming what is wrong."""
    if not body.strip():
        return None
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest('the body must be a JSON object, e.g. {"nodeIds": ["<ray node id>"]}')
    unknown = sorted(set(doc) - {"nodeIds"})
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; the only one is nodeIds")
    ids = doc.get("nodeIds")
    if ids is None:
        return None
    if not isinstance(ids, list) or len(ids) > MAX_NODES:
        raise BadRequest(f"nodeIds must be a list of at most {MAX_NODES} Ray node ids")
    for i, node in enumerate(ids):
        if not isinstance(node, str) or not _NODE_ID.match(node):
            raise BadRequest(f"nodeIds[{i}] is not a Ray node id (hex): {str(node)[:80]!r}")
    return ids


class RepairEndpoint:
    """A small threaded HTTP server that hands authenticated repair requests to `repair`."""

    def __init__(self, token: str, repair: Repair, host: str = "0.0.0.0", port: int = 0) -> None:
        if not token:
            raise ValueError("a repair endpoint needs a token")
        self._token = token.encode()
        self._repair = repair
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="repair-endpoint", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> RepairEndpoint:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RepairEndpoint:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _authorized(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self._token)

    def _answer(self, path: str, authorization: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        if path != REPAIR_PATH:
            return 404, {"error": f"no such path {path[:80]!r}; POST {REPAIR_PATH}"}
        if not self._authorized(authorization):
            return 401, {"error": "missing or wrong bearer token (the cluster's Ray token)"}
        try:
            node_ids = parse_node_ids(body)
        except BadRequest as exc:
            return 400, {"error": str(exc)}
        # What went wrong is logged (the job's log), never echoed: an exception's text can carry
        # paths, addresses or values of the evaluation that the caller has no business reading.
        try:
            replaced = self._repair(node_ids)
        except EvaluationNotRunning:
            log.info("repair request: no running evaluation", exc_info=True)
            return 404, {"error": "no running evaluation to repair here"}
        except RepairTimedOut:
            log.warning("repair request timed out", exc_info=True)
            return 504, {"error": "the coordinator did not answer in time (it may still be repairing)"}
        except Exception:  # noqa: BLE001 - reported to the caller, who falls back to a repair job
            log.exception("repair request failed")
            return 500, {"error": "the repair failed; the job's log says why"}
        log.warning("repair requested over HTTP for %s: replaced %s", node_ids or "unanswering actors",
                    ", ".join(replaced) or "nothing")
        return 200, {"replaced": replaced}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "swarm-arena-repair"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY:
                    self._send(413, {"error": f"the body must be 0 to {MAX_BODY} bytes"})
                    return
                body = self.rfile.read(length)
                self._send(*endpoint._answer(self.path, self.headers.get("Authorization"), body))

            def do_GET(self) -> None:  # noqa: N802
                self._send(405, {"error": f"POST {REPAIR_PATH}"})

            def _send(self, code: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                log.debug("repair endpoint: " + format, *args)

        return Handler
