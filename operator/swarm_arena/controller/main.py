"""`swarm-arena operator`: configure kopf and run it (blocking, until SIGTERM/SIGINT)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import kopf

from swarm_arena.controller import metrics
from swarm_arena.controller.settings import OperatorSettings, read_auth_key

log = logging.getLogger(__name__)


def run(
    *,
    namespaces: list[str],
    liveness_port: int | None,
    metrics_port: int | None,
    log_format: str,
    dashboard_via: str,
    poll_s: float,
    ray_auth_key_file: str | None,
    ray_tokens_dir: str | None,
    verbose: bool = False,
) -> int:
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.PLAIN,
    )
    import os

    key_given = bool(ray_auth_key_file or os.environ.get("SWARM_ARENA_RAY_AUTH_KEY"))
    settings = OperatorSettings(
        namespaces=tuple(namespaces),
        dashboard_via=dashboard_via,  # type: ignore[arg-type]
        poll_s=poll_s,
        ray_auth_key=read_auth_key(ray_auth_key_file),
        ray_tokens_dir=Path(ray_tokens_dir) if ray_tokens_dir else None,
        liveness_port=liveness_port,
        metrics_port=metrics_port,
    )
    if not key_given:
        log.warning(
            "no --ray-auth-key-file (or SWARM_ARENA_RAY_AUTH_KEY): using a random key, so after a restart this "
            "operator cannot authenticate to the Ray clusters it made before; give it a persistent key"
        )
    from swarm_arena.controller import handlers  # noqa: F401 - registers the handlers
    from swarm_arena.controller.handlers.lifecycle import configure

    configure(settings)
    if metrics_port:
        metrics.serve(metrics_port)
    liveness = f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=liveness,
        )
    )
    return 0
