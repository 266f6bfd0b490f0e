"""The channel between the operator and the arena job it submits: one definition for both sides.

Ray gives a running job no way to publish structured progress (ray #36638), and the operator
must never connect to Ray in-process. So the operator passes the evaluation in the submission's
`runtime_env.env_vars` and the job answers through two JSON-lines files in the Ray session logs
directory of the node it runs on, which the dashboard serves over HTTP
(`GET /api/v0/logs/file?node_id=<driver node>&filename=<name>&lines=N`):

- `swarm-arena-<sid>.status.jsonl`: one self-contained `JobStatusRecord` per line; the newest
  line is the whole truth, so a poll reads only the last line (bounded work however long the run).
- `swarm-arena-<sid>.episodes.jsonl`: one `EpisodeRecord` per episode counted in this attempt, in
  counting order; `episodesThisAttempt` of a status line says how many lines the file had when it
  was written (the episode lines go first), so a reader tails exactly the new ones and unions
  them by episode index.

Every line is written with one write of the full line and flushed; a reader still drops a
trailing piece without a newline (`complete_lines`), never parsing half a line.

This module is imported by the operator: no Ray, no arena runtime, only the standard library and
the API models.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
from enum import Enum
from typing import Any

from pydantic import Field, ValidationError, field_serializer, field_validator

from swarm_arena.api import episode_codec
from swarm_arena.api.base import ApiModel
from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.status import Progress, Recovery, Results

# Environment variables of the submission (`runtime_env.env_vars`).
EVALUATION_ENV = "SWARM_ARENA_EVALUATION"
"""base64(gzip(JSON)) of the SwarmEvaluation: apiVersion, kind, metadata {name, namespace}, spec with defaults."""
SUBMISSION_ID_ENV = "SWARM_ARENA_SUBMISSION_ID"
"""The Ray job submission id the operator chose; it names the job's files."""
RESUME_ENV = "SWARM_ARENA_RESUME"
"""Optional base64(gzip(JSON)) of a `ResumePayload`: what earlier attempts already counted."""
RESUME_FILE_ENV = "SWARM_ARENA_RESUME_FILE"
"""Optional, instead of SWARM_ARENA_RESUME when the counted episodes are too many for a variable:
the path, below an entry of `sys.path` (a `py_modules` package of the submission), of a file
holding what SWARM_ARENA_RESUME would."""
ATTEMPT_ENV = "SWARM_ARENA_ATTEMPT"
"""Optional: the attempt number (1, 2, ...) the operator counts; echoed in every status line."""

REPAIR_PORT_ENV = "SWARM_ARENA_REPAIR_PORT"
"""Optional: the port on which the job (its driver, on the head) takes the operator's repair
requests, `POST /repair` with the cluster's Ray token (arena/repair_endpoint.py)."""
REPAIR_PORT = 8275
"""The port the operator asks for: next to the dashboard's 8265, clear of Ray's other defaults."""
REPAIR_PATH = "/repair"

ENTRYPOINT = "python -m swarm_arena.arena.job"
"""The job's entrypoint as the operator submits it."""

EXIT_FAILED = 1
"""The job's exit code when the evaluation failed (its status file says why)."""

_SUBMISSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class PayloadError(ValueError):
    """A payload that is not base64 of gzip of JSON (the message says which step failed)."""


def encode_payload(obj: Any) -> str:
    """base64 (standard alphabet) of gzip of the compact JSON of `obj`."""
    raw = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def decode_payload(text: str) -> Any:
    """The inverse of `encode_payload`; PayloadError naming what was wrong."""
    try:
        packed = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError(f"not base64 (standard alphabet): {exc}") from None
    try:
        raw = gzip.decompress(packed)
    except (OSError, EOFError) as exc:
        raise PayloadError(f"not gzip data: {exc}") from None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise PayloadError(f"not JSON: {exc}") from None


def _checked_submission_id(submission_id: str) -> str:
    if not _SUBMISSION_ID.match(submission_id):
        raise ValueError(
            f"submission id {submission_id!r} cannot name a file: use letters, digits, '.', '_' and '-' "
            "(at most 128, starting with a letter or digit)"
        )
    return submission_id


def status_file_name(submission_id: str) -> str:
    """The status file of a submission, relative to the Ray session logs directory."""
    return f"swarm-arena-{_checked_submission_id(submission_id)}.status.jsonl"


def episodes_file_name(submission_id: str) -> str:
    """The episodes file of a submission, relative to the Ray session logs directory."""
    return f"swarm-arena-{_checked_submission_id(submission_id)}.episodes.jsonl"


class JobState(str, Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class FailureReason(str, Enum):
    INVALID_SPEC = "InvalidSpec"
    """The evaluation cannot run as written (a factory that does not import, params refused): do not retry."""
    RUN_FAILED = "RunFailed"
    """The run broke (restarts exhausted, a policy raised, the cluster lacks resources): a retry may help."""


class JobStatusRecord(ApiModel):
    """One line of the status file: everything the operator needs, as of `time`."""

    seq: int = Field(ge=0, description="0, 1, 2, ... per attempt: a newer line has a larger seq.")
    time: str = Field(description="RFC 3339 time the line was written.")
    state: JobState = Field(description="`running`, `succeeded` or `failed` (the last line of a finished job).")
    attempt: int | None = Field(default=None, ge=1, description="The operator's attempt number, when it passed one.")
    progress: Progress = Field(description="episodesCompleted counts resumed episodes too.")
    episodes_this_attempt: int = Field(ge=0, description="Lines in the episodes file when this line was written.")
    recoveries: int = Field(ge=0, description="Recoveries so far, resumed ones included.")
    last_recovery: Recovery | None = Field(default=None, description="The latest recovery.")
    results: Results | None = Field(
        default=None, description="Interim leaderboard while running; the final results once succeeded."
    )
    reason: FailureReason | None = Field(default=None, description="Why it failed (state failed only).")
    message: str | None = Field(default=None, description="What failed, naming the field, and what to do.")


class ResumePayload(ApiModel):
    """What earlier attempts counted (`SWARM_ARENA_RESUME`): not played again, reported once."""

    episodes: list[EpisodeRecord] = Field(
        default_factory=list,
        description="Counted episodes; as JSON, base64 of their compact packing (api/episode_codec.py), since "
        "the whole payload must fit one environment variable. A list of records is read too.",
    )
    recoveries: list[Recovery] = Field(default_factory=list, description="Earlier recoveries, in order.")

    @field_serializer("episodes", when_used="json")
    def _pack_episodes(self, episodes: list[EpisodeRecord]) -> str:
        return base64.b64encode(episode_codec.pack(episodes)).decode("ascii")

    @field_validator("episodes", mode="before")
    @classmethod
    def _unpack_episodes(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # records, as the earlier operator sent them
        try:
            return episode_codec.unpack(base64.b64decode(value, validate=True))
        except (binascii.Error, episode_codec.CodecError) as exc:
            raise ValueError(f"not packed episode records: {exc}") from None


def complete_lines(text: str) -> list[str]:
    """The complete (newline-terminated), non-empty lines of `text`; a trailing partial line is dropped."""
    if "\n" not in text:
        return []
    return [line for line in text[: text.rindex("\n")].split("\n") if line.strip()]


def last_status(text: str) -> JobStatusRecord | None:
    """The newest complete status line in `text` (what the log API returned), or None."""
    for line in reversed(complete_lines(text)):
        try:
            return JobStatusRecord.model_validate_json(line)
        except ValidationError:
            continue
    return None


def episode_records(text: str) -> list[EpisodeRecord]:
    """The episode records in the complete lines of `text`, in file order."""
    return [EpisodeRecord.model_validate_json(line) for line in complete_lines(text)]
