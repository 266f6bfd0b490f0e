"""What `swarm-arena render` prints: the builders' output for a manifest, for reviews and GitOps diffs."""

from __future__ import annotations

from typing import Any

from swarm_arena.api import job_channel
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.controller import build_cluster, build_job, names

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


def render_children(evaluation: SwarmEvaluation) -> list[tuple[str, dict[str, Any]]]:
    """(title, document) pairs; the uid is a placeholder (the API server assigns the real one)."""
    uid = PLACEHOLDER_UID
    out: list[tuple[str, dict[str, Any]]] = []
    if not (evaluation.spec.cluster and evaluation.spec.cluster.address):
        secret = build_cluster.build_auth_secret(evaluation, uid, "<derived by the operator from its key>")
        out.append(("Secret with the cluster's Ray token (created once; the operator never reads it back)", secret))
        out.append(("RayCluster (created once, owned by the evaluation)", build_cluster.build_ray_cluster(evaluation, uid)))
    body = build_job.build_submission(evaluation, names.submission_id(uid, 1), 1)
    # Show the evaluation the job gets, not its base64.
    env = body["runtime_env"]["env_vars"]
    env[job_channel.EVALUATION_ENV] = {"decoded": job_channel.decode_payload(env[job_channel.EVALUATION_ENV])}
    where = evaluation.spec.cluster.address if evaluation.spec.cluster and evaluation.spec.cluster.address else (
        f"http://{names.head_service_name(names.ray_cluster_name(evaluation.metadata.name))}."
        f"{evaluation.metadata.namespace}.svc:8265"
    )
    out.append((f"Ray job submission, attempt 1 (POST {where}/api/jobs/)", body))
    return out
