"""Operator start and stop: settings for kopf, the shared clients, metrics."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import kopf

from swarm_arena.controller.kube import Kube, load_client
from swarm_arena.controller.reconciler import Reconciler
from swarm_arena.controller.settings import OperatorSettings

FINALIZER = "arena.swarm.dev/finalizer"
API_REQUESTS_IN_FLIGHT = 32
"""kopf's own API requests (finalizers, Events, progress) at once, besides its watch streams. kopf's
default session has no limit: 1,000 new evaluations opened about 650 TLS connections to the API
server, a handshake on both sides and ~100 kB held by the operator for each."""
_settings: OperatorSettings | None = None


class LeanDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base (the "essence": spec, labels, annotations), without first deep-copying the
    managedFields and status it then throws away. kopf builds it on every watch event of every
    object (pods and RayClusters too); the copy was 7% of the operator's CPU at 1,000 evaluations."""

    KEPT_METADATA = ("labels", "annotations", "ownerReferences")

    def build(self, *, body: kopf.Body, extra_fields=None):
        if extra_fields:  # a handler that watches some status field: kopf's own way
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata") or {}
        lean = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        lean["metadata"] = {k: meta[k] for k in self.KEPT_METADATA if k in meta}
        return super().build(body=kopf.Body(lean))


def configure(settings: OperatorSettings) -> None:
    """Called by `swarm-arena operator` before kopf starts."""
    global _settings
    _settings = settings


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="arena.swarm.dev")
    settings.persistence.diffbase_storage = LeanDiffBaseStorage(
        prefix="arena.swarm.dev", key="last-handled-configuration"
    )
    # Events are posted on purpose (phase changes, recoveries), not for every log line.
    settings.posting.level = logging.ERROR
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    # No runtime scanning of CRDs and namespaces: the resources are fixed and the namespaces are
    # named exactly, so the chart grants neither (scanning would retry 403s for ~1.5 min first).
    settings.scanning.disabled = True
    memo.kube = Kube(load_client())
    memo.session = aiohttp.ClientSession()
    memo.reconciler = Reconciler(_settings or OperatorSettings(), memo.kube, memo.session)
    memo.pokes = {}
    memo.memories = {}


def api_connections(settings: OperatorSettings) -> int:
    """Connections kopf may hold to the API server: one watch stream per namespaced kind
    (evaluations, RayClusters, pods) in each namespace, one for nodes, and the requests."""
    return 3 * max(1, len(settings.namespaces)) + 1 + API_REQUESTS_IN_FLIGHT


@kopf.on.login()
async def login(**kwargs) -> kopf.AiohttpSession | None:
    """kopf's usual login (the kubernetes client's in-cluster or kubeconfig credentials), on a
    session with a bounded connection pool."""
    info = await asyncio.to_thread(kopf.login_via_client, **kwargs)  # reads token and kubeconfig files
    if info is None:
        return None
    ssl = await asyncio.to_thread(info.as_ssl_context)  # reads the CA and client certificate
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=api_connections(_settings or OperatorSettings()), ssl=ssl),
        headers=info.as_http_headers(), proxy=info.proxy_url, trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(server=info.server, default_namespace=info.default_namespace,
                               expiration=info.expiration, priority=info.priority, aiohttp_session=session)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_) -> None:
    session = getattr(memo, "session", None)
    if session is not None:
        await session.close()
    kube = getattr(memo, "kube", None)
    if kube is not None:
        kube.close()
