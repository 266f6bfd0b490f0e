"""`python -m swarm_arena.arena.job`: the arena job the operator submits to a Ray cluster.

The operator cannot hand the job a file nor talk to it in-process, so everything travels in the
submission's `runtime_env.env_vars` (names and encoding in api/job_channel.py): the evaluation,
the submission id, and optionally what earlier attempts already counted. The job connects to the
cluster it was submitted to (`auto`), runs the evaluation through the normal runner, and reports
through the status and episodes files in the session logs directory of its node (job_status.py),
which the dashboard's log API serves. Exit code 0 when the evaluation succeeded, 1 when it failed
(the last status line says why: `InvalidSpec`, which no retry fixes, or `RunFailed`).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from swarm_arena.api.job_channel import (
    ATTEMPT_ENV,
    EVALUATION_ENV,
    EXIT_FAILED,
    REPAIR_PORT_ENV,
    RESUME_ENV,
    RESUME_FILE_ENV,
    SUBMISSION_ID_ENV,
    FailureReason,
    PayloadError,
    ResumePayload,
    decode_payload,
    status_file_name,
)
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.validation import ManifestError, validate_manifest
from swarm_arena.arena.errors import EvaluationFailed, InvalidSpec
from swarm_arena.arena.repair_endpoint import RepairEndpoint

log = logging.getLogger(__name__)

# Exit code when the job cannot even say why it failed in its status file (no submission id).
EXIT_UNREPORTABLE = 2
# How long a repair request over HTTP waits for the coordinator (it answers in well under a second).
REPAIR_TIMEOUT_S = 20.0


def session_logs_dir() -> Path:
    """The Ray session logs directory of this node: what the dashboard's log API serves.

    Built from public runtime-context calls (temp dir + session name); Ray lays a session out as
    `<temp dir>/<session name>/logs`.
    """
    import ray

    context = ray.get_runtime_context()
    logs = Path(context.get_temp_dir()) / context.get_session_name() / "logs"
    if not logs.is_dir():
        raise RuntimeError(f"the Ray session logs directory {logs} does not exist on this node")
    return logs


def read_evaluation(environ: Mapping[str, str]) -> SwarmEvaluation:
    """The SwarmEvaluation of the submission; InvalidSpec naming the variable or the field."""
    raw = environ.get(EVALUATION_ENV)
    if not raw:
        raise InvalidSpec(f"{EVALUATION_ENV} is not set: the submission must carry the evaluation")
    try:
        document = decode_payload(raw)
    except PayloadError as exc:
        raise InvalidSpec(f"{EVALUATION_ENV}: {exc}") from None
    try:
        # Factories are imported here, where the job's runtime_env (users' code) is installed.
        return validate_manifest(document, check_imports=True)
    except ManifestError as exc:
        raise InvalidSpec("; ".join(exc.problems)) from None


def _resume_file(relative: str, search: list[str]) -> str:
    """The text of the resume file below the first `sys.path` entry holding it (a `py_modules`
    package of the submission, which Ray puts on the driver's path)."""
    for entry in search:
        candidate = Path(entry or ".") / relative
        if candidate.is_file():
            return candidate.read_text()
    raise InvalidSpec(f"{RESUME_FILE_ENV}: {relative} is on no entry of sys.path (the submission's py_modules "
                      "package of counted episodes was not installed)")


def read_resume(environ: Mapping[str, str], search: list[str] | None = None) -> ResumePayload | None:
    source = RESUME_ENV
    raw = environ.get(RESUME_ENV)
    if environ.get(RESUME_FILE_ENV):
        source = RESUME_FILE_ENV
        raw = _resume_file(environ[RESUME_FILE_ENV], sys.path if search is None else search)
    if not raw:
        return None
    try:
        return ResumePayload.model_validate(decode_payload(raw))
    except PayloadError as exc:
        raise InvalidSpec(f"{source}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidSpec(f"{source}: {where}: {first['msg']} ({exc.error_count()} problems)") from None


def read_attempt(environ: Mapping[str, str]) -> int | None:
    raw = environ.get(ATTEMPT_ENV)
    if raw is None or not raw.strip().isdigit() or int(raw) < 1:
        return None
    return int(raw)


def ray_token(environ: Mapping[str, str]) -> str:
    """The cluster's Ray token as Ray itself finds it: `RAY_AUTH_TOKEN`, else `RAY_AUTH_TOKEN_PATH`."""
    token = environ.get("RAY_AUTH_TOKEN", "").strip()
    path = environ.get("RAY_AUTH_TOKEN_PATH", "")
    if not token and path:
        try:
            token = Path(path).read_text().strip()
        except OSError:
            token = ""
    return token


def open_repair_endpoint(environ: Mapping[str, str], evaluation: str) -> RepairEndpoint | None:
    """Listen for the operator's repair requests when it asked for a port and Ray's token is set."""
    from swarm_arena.arena.recovery import request_repair

    port_text = environ.get(REPAIR_PORT_ENV)
    if not port_text:
        return None
    token = ray_token(environ)
    if not token:
        print(f"{REPAIR_PORT_ENV} is set but Ray's authentication is off (no RAY_AUTH_TOKEN): not listening "
              "for repair requests; the operator uses a repair job instead", flush=True)
        return None
    try:
        endpoint = RepairEndpoint(token, lambda ids: request_repair(evaluation, ids, timeout=REPAIR_TIMEOUT_S),
                                  port=int(port_text))
    except (ValueError, OSError) as exc:
        print(f"{REPAIR_PORT_ENV}={port_text}: cannot listen ({exc}); the operator uses a repair job instead",
              flush=True)
        return None
    print(f"taking repair requests on port {endpoint.port}", flush=True)
    return endpoint.start()


def main(environ: Mapping[str, str] | None = None) -> int:
    import ray

    from swarm_arena.arena.connection import join_cluster
    from swarm_arena.arena.job_status import JobReporter
    from swarm_arena.arena.matchmaking import count_matches
    from swarm_arena.arena.runner import run_evaluation

    environ = os.environ if environ is None else environ
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    submission_id = environ.get(SUBMISSION_ID_ENV, "")
    try:
        status_file_name(submission_id)
    except ValueError as exc:
        print(f"{SUBMISSION_ID_ENV}: {exc}; the job cannot report without it", file=sys.stderr)
        return EXIT_UNREPORTABLE
    try:
        join_cluster("auto", log_to_driver=True)
    except ConnectionError as exc:
        print(f"the arena job cannot reach its Ray cluster: {exc}", file=sys.stderr)
        return EXIT_UNREPORTABLE
    reporter = JobReporter(session_logs_dir(), submission_id, attempt=read_attempt(environ))
    print(
        f"reporting to {reporter.status_path} and {reporter.episodes_path} on Ray node "
        f"{ray.get_runtime_context().get_node_id()}",
        flush=True,
    )
    try:
        evaluation = read_evaluation(environ)
        resume = read_resume(environ)
        reporter.start(evaluation, resume, count_matches(evaluation.spec))
        endpoint = open_repair_endpoint(environ, evaluation.qualified_name)
        try:
            report = run_evaluation(evaluation, ray_address="auto", listener=reporter, resume=resume)
        finally:
            if endpoint is not None:
                endpoint.close()
        reporter.succeeded(report)
        return 0
    except InvalidSpec as exc:
        reporter.failed(FailureReason.INVALID_SPEC, str(exc))
    except EvaluationFailed as exc:
        reporter.failed(FailureReason.RUN_FAILED, str(exc))
    except Exception as exc:  # noqa: BLE001 - whatever broke, the operator must read that it did
        traceback.print_exc()
        reporter.failed(FailureReason.RUN_FAILED, f"the arena job crashed: {type(exc).__name__}: {exc}")
    finally:
        reporter.close()
        ray.shutdown()
    return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
