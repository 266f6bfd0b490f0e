"""The Ray job submission for one attempt of an evaluation: a pure builder.

The body is what `POST /api/jobs/` of the Ray dashboard takes. The evaluation travels in the
submission itself (`runtime_env.env_vars`), so the job needs nothing but its cluster; episodes
that earlier attempts counted travel the same way (SWARM_ARENA_RESUME), so they are not played
again even when there is no `checkpoint.storageURI` to resume from. Counted episodes too many for
one environment variable travel as a package the operator uploads to the cluster first (the
dashboard's `PUT /api/packages/gcs/...`, as `ray job submit` uploads a working_dir), named in the
submission's `py_modules` (SWARM_ARENA_RESUME_FILE says where the job finds it).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from typing import Any

from swarm_arena.api import job_channel
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.spec import RAY_VERSION

# One environment string may hold at most 128 KiB on Linux (MAX_ARG_STRLEN); keep a margin.
MAX_ENV_VALUE_BYTES = 120 * 1024


class ResumeTooLarge(ValueError):
    """The counted episodes do not fit into the submission and no package carries them."""


@dataclass(frozen=True)
class ResumePackage:
    """Counted episodes as a Ray runtime_env package: uploaded once, named by its content."""

    uri: str
    """`gcs://_ray_pkg_<hash>.zip`, what `py_modules` names."""
    data: bytes
    """The zip: `swarm_arena_resume_<hash>/resume.b64` (the same text SWARM_ARENA_RESUME would hold)."""
    path: str
    """Where the job finds the file below a `sys.path` entry (SWARM_ARENA_RESUME_FILE)."""


def resume_text(resume: job_channel.ResumePayload) -> str:
    return job_channel.encode_payload(resume.model_dump(by_alias=True, mode="json"))


def build_resume_package(resume: job_channel.ResumePayload, encoded: str | None = None) -> ResumePackage:
    """The package of counted episodes (deterministic: the same episodes give the same package);
    `encoded`: `resume_text(resume)` when the caller has it already (packing 20,000 records takes seconds)."""
    text = (resume_text(resume) if encoded is None else encoded).encode("ascii")
    digest = hashlib.sha256(text).hexdigest()[:32]
    path = f"swarm_arena_resume_{digest}/resume.b64"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), text)  # already gzip
    return ResumePackage(uri=f"gcs://_ray_pkg_{digest}.zip", data=buffer.getvalue(), path=path)


def needs_package(evaluation: SwarmEvaluation, resume: job_channel.ResumePayload | None,
                  encoded: str | None = None) -> bool:
    """Whether the counted episodes must travel as a package: too many for the environment
    variable and no durable store to resume them from."""
    if resume is None or not resume.episodes or evaluation.spec.checkpoint.storage_uri:
        return False
    return len(resume_text(resume) if encoded is None else encoded) > MAX_ENV_VALUE_BYTES


def evaluation_payload(evaluation: SwarmEvaluation) -> dict[str, Any]:
    return {
        "apiVersion": evaluation.api_version,
        "kind": evaluation.kind,
        "metadata": {"name": evaluation.metadata.name, "namespace": evaluation.metadata.namespace},
        "spec": evaluation.spec.to_wire(),
    }


def build_submission(
    evaluation: SwarmEvaluation,
    submission_id: str,
    attempt: int,
    resume: job_channel.ResumePayload | None = None,
    package: ResumePackage | None = None,
    resume_encoded: str | None = None,
) -> dict[str, Any]:
    """The JSON body of `POST /api/jobs/` for this attempt; `package`: the counted episodes,
    uploaded already, when `needs_package`; `resume_encoded`: `resume_text(resume)`, when known."""
    spec = evaluation.spec
    runtime_env = spec.runtime_env.to_ray() if spec.runtime_env else {}
    env_vars = dict(runtime_env.get("env_vars", {}))
    env_vars[job_channel.EVALUATION_ENV] = job_channel.encode_payload(evaluation_payload(evaluation))
    env_vars[job_channel.SUBMISSION_ID_ENV] = submission_id
    env_vars[job_channel.ATTEMPT_ENV] = str(attempt)
    if spec.cluster is None or not spec.cluster.address:
        # A cluster the operator made: the job also takes repair requests on the head, the fast
        # way in (arena/repair_endpoint.py). Never opened on someone else's existing cluster.
        env_vars[job_channel.REPAIR_PORT_ENV] = str(job_channel.REPAIR_PORT)
    if package is not None:
        runtime_env["py_modules"] = [*runtime_env.get("py_modules", []), package.uri]
        env_vars[job_channel.RESUME_FILE_ENV] = package.path
    elif resume is not None and (resume.episodes or resume.recoveries):
        packed = resume_text(resume) if resume_encoded is None else resume_encoded
        if len(packed) > MAX_ENV_VALUE_BYTES and spec.checkpoint.storage_uri:
            # The durable store has every counted record: the job resumes from it.
            packed = resume_text(job_channel.ResumePayload(recoveries=resume.recoveries))
        if len(packed) > MAX_ENV_VALUE_BYTES:
            raise ResumeTooLarge(
                f"{len(resume.episodes)} counted episodes take {len(packed) // 1024} KiB, more than an "
                f"environment variable carries ({MAX_ENV_VALUE_BYTES // 1024} KiB): upload them as a package "
                "(build_resume_package) and pass it"
            )
        env_vars[job_channel.RESUME_ENV] = packed
    runtime_env["env_vars"] = env_vars
    return {
        "entrypoint": job_channel.ENTRYPOINT,
        "submission_id": submission_id,
        "runtime_env": runtime_env,
        # The driver only waits on the coordinator; it must not take a CPU a shard needs.
        "entrypoint_num_cpus": 0,
        "metadata": {
            "arena.swarm.dev/evaluation": f"{evaluation.metadata.namespace}/{evaluation.metadata.name}",
            "arena.swarm.dev/attempt": str(attempt),
            "arena.swarm.dev/ray-version": RAY_VERSION,
        },
    }


def build_repair_submission(
    evaluation: SwarmEvaluation, job_submission_id: str, repair_id: str, node_ids: tuple[str, ...]
) -> dict[str, Any]:
    """A short job that tells the running evaluation to restart the actors of lost Ray nodes now.

    The operator has no `pods/exec` and no in-process Ray; the dashboard's job API is its way in.
    Without node ids the evaluation replaces whatever does not answer a ping.
    """
    qualified = f"{evaluation.metadata.namespace}/{evaluation.metadata.name}"
    nodes = "".join(f" --node-id {node}" for node in node_ids)
    return {
        "entrypoint": f"swarm-arena repair {qualified} --json --ray-address auto{nodes}",
        "submission_id": repair_id,
        "entrypoint_num_cpus": 0,
        "metadata": {"arena.swarm.dev/evaluation": qualified, "arena.swarm.dev/repair-of": job_submission_id},
    }
