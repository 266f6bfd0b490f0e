"""`swarm-arena operator`: configure kopf and run it (blocking, until SIGTERM/SIGINT)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import kopf

from swarm_arena.controller import metrics
from swarm_arena.controller.leader import identity as operator_identity
from swarm_arena.controller.settings import OperatorSettings, RayPodDefaults, read_auth_key

log = logging.getLogger(__name__)


def _standby_liveness(port: int | None):
    """Answer GET /healthz while waiting for the Lease (kopf serves it once this process leads)."""
    if not port:
        return None
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200 if self.path.startswith("/healthz") else 404)
            self.end_headers()
            self.wfile.write(b'{"standby": true}')

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Health)
    server.allow_reuse_address = True
    threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True).start()
    return server


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
    cluster_addresses_file: str | None = None,
    verbose: bool = False,
    leader_election: bool = True,
    lease_namespace: str | None = None,
    ray_image_repository: str | None = None,
    ray_image_pull_secrets: list[str] | None = None,
    watch_nodes: bool = True,
    delete_pods: bool = True,
    lease_name: str = "swarm-arena-operator",
    results_shard_kib: int = 960,
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
        ray_pods=RayPodDefaults(
            image_repository=ray_image_repository or RayPodDefaults.image_repository,
            image_pull_secrets=tuple(ray_image_pull_secrets or ()),
        ),
        delete_pods=delete_pods,
        cluster_addresses_file=Path(cluster_addresses_file) if cluster_addresses_file else None,
        liveness_port=liveness_port,
        metrics_port=metrics_port,
        results_shard_bytes=results_shard_kib * 1024,
    )
    if not key_given:
        log.warning(
            "no --ray-auth-key-file (or SWARM_ARENA_RAY_AUTH_KEY): using a random key, so after a restart this "
            "operator cannot authenticate to the Ray clusters it made before; give it a persistent key"
        )
    if settings.cluster_addresses_file is not None:
        from swarm_arena.controller.addresses import AddressBook

        AddressBook(settings.cluster_addresses_file, settings.ray_tokens_dir)  # a broken file fails the start
    from swarm_arena.controller import handlers  # noqa: F401 - registers the handlers
    from swarm_arena.controller.handlers.lifecycle import configure

    if watch_nodes:
        from swarm_arena.controller.handlers.pods import watch_nodes as register_node_watch

        register_node_watch()
    else:
        log.info("--no-watch-nodes: a lost node is noticed from its pods and Ray's own node-death detection")

    configure(settings)
    if metrics_port:
        metrics.serve(metrics_port)
    elector = None
    if leader_election:
        from swarm_arena.controller.kube import load_client
        from swarm_arena.controller.leader import LeaderElector

        where = lease_namespace or os.environ.get("POD_NAMESPACE") or (namespaces[0] if namespaces else "default")
        elector = LeaderElector(load_client(), where, name=lease_name)
        standby = _standby_liveness(liveness_port)  # a waiting standby is alive, not stuck
        try:
            elector.acquire()  # a standby waits here, doing nothing
        finally:
            if standby is not None:
                standby.shutdown()
                standby.server_close()
    liveness = f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
    try:
        asyncio.run(
            kopf.operator(
                standalone=True,  # kopf's peering would freeze equal peers; the Lease decides who acts
                clusterwide=not namespaces,
                namespaces=namespaces,
                liveness_endpoint=liveness,
                # kopf would name itself after getpass.getuser(), which raises for a uid without a
                # passwd entry: the image's 65532, or any runAsUser a cluster assigns.
                identity=operator_identity(),
            )
        )
    finally:
        if elector is not None:
            elector.release()
    return 0
