"""What `swarm-arena operator` is told on its command line, in one frozen value."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from swarm_arena.api.spec import RAY_IMAGE_REPOSITORY

DashboardVia = Literal["service", "pod-ip"]
DEFAULT_POLL_S = 2.0


@dataclass(frozen=True)
class RayPodDefaults:
    """Operator-wide defaults of the Ray pods (the chart's `rayPods` values)."""

    image_repository: str = RAY_IMAGE_REPOSITORY
    """Repository of the default Ray image (a mirror in a private registry); the tag stays
    `<package version>-ray<rayVersion>`. An evaluation's `cluster.image` overrides it."""
    image_pull_secrets: tuple[str, ...] = ()
    """Secrets every Ray pod pulls with, before the evaluation's own `cluster.pods.imagePullSecrets`."""


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()
    """Watched namespaces; empty means all."""
    dashboard_via: DashboardVia = "service"
    """`service`: `<cluster>-head-svc.<ns>.svc:8265` (in the cluster); `pod-ip`: the head pod's IP
    (an operator running outside the cluster on a network that reaches pods, e.g. the test plane)."""
    poll_s: float = DEFAULT_POLL_S
    """How often a running evaluation's job is polled (progress shows in status within this)."""
    ray_auth_key: bytes = field(default=b"", repr=False)
    """Key the per-cluster Ray tokens are derived from (see names.ray_auth_token)."""
    ray_tokens_dir: Path | None = None
    """Tokens of existing clusters (`cluster.address`): the files `cluster_addresses_file` names."""
    ray_pods: RayPodDefaults = field(default_factory=RayPodDefaults)
    delete_pods: bool = True
    """Delete a worker pod a replaced head left behind (KubeRay #1141); else an event asks a person to."""
    cluster_addresses_file: Path | None = None
    """The admin's approved existing clusters: which namespaces may use which address, with which
    token file (addresses.py). None: no `cluster.address` is approved."""
    liveness_port: int | None = 8080
    metrics_port: int | None = 9090
    results_shard_bytes: int = 960 * 1024
    """Compressed episode records one results ConfigMap holds at most (results_shards.py): lower it
    where the API server or etcd takes smaller objects than 1 MiB."""


def read_auth_key(path: str | None) -> bytes:
    """The key for Ray tokens: a mounted file (the chart's), or SWARM_ARENA_RAY_AUTH_KEY.

    Without one the operator makes a random key: clusters it creates work until it restarts,
    after which it could no longer authenticate to them, so it says so.
    """
    if path:
        key = Path(path).read_bytes().strip()
        if not key:
            raise ValueError(f"--ray-auth-key-file {path} is empty")
        return key
    env = os.environ.get("SWARM_ARENA_RAY_AUTH_KEY", "")
    if env:
        return env.encode()
    return secrets.token_bytes(32)
