"""Operator start and stop: settings for kopf, the shared clients, metrics."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

import aiohttp
import kopf

from swarm_arena.api.resource import API_VERSION, KIND
from swarm_arena.api.validation import ManifestError, validate_manifest
from swarm_arena.controller.kube import Kube, load_client
from swarm_arena.controller.reconciler import Reconciler
from swarm_arena.controller.settings import OperatorSettings

log = logging.getLogger(__name__)
FINALIZER = "arena.swarm.dev/finalizer"
PREFIX = "arena.swarm.dev"
"""kopf's annotations (the progress of an on-delete handler being retried) are under this prefix."""
API_REQUESTS_IN_FLIGHT = 32
"""kopf's own API requests (finalizers, Events, progress) at once, besides its watch streams. kopf's
default session has no limit: 1,000 new evaluations opened about 650 TLS connections to the API
server, a handshake on both sides and ~100 kB held by the operator for each."""
_settings: OperatorSettings | None = None


class MemoryDiffBaseStorage(kopf.DiffBaseStorage):
    """kopf's diff base, kept as a digest in the operator's memory instead of an annotation.

    kopf compares each event's "essence" (spec, labels, annotations, owners) with the last one it
    handled to tell creations and updates from events that changed nothing essential. The operator
    has no creation or update handlers, so the diff base only ever answers "nothing essential
    changed"; in an annotation it cost a PATCH of every new evaluation, with the watch events and
    reconcile passes that PATCH set off, in the very burst where RayClusters are being created.
    Losing it costs nothing: after a restart kopf sees each evaluation as new once, which with no
    creation handlers only takes its digest again.

    Other kinds (the pods and RayClusters the operator indexes) get none: kopf built (deep-copied)
    one on each of their events and never used it. No handler watches fields (`extra_fields`).
    """

    KEPT_METADATA = ("labels", "annotations", "ownerReferences")

    def __init__(self, kind: str = KIND, prefix: str = PREFIX) -> None:
        super().__init__()
        self.kind, self.prefix = kind, prefix
        self._digests: dict[str, bytes] = {}

    def build(self, *, body: kopf.Body, extra_fields=None):
        if body.get("kind") != self.kind:
            return None
        meta = body.get("metadata") or {}
        lean = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        lean["metadata"] = {k: meta[k] for k in self.KEPT_METADATA if k in meta}
        essence = super().build(body=kopf.Body(lean), extra_fields=extra_fields)
        annotations = essence.get("metadata", {}).get("annotations", {})
        # kopf's own bookkeeping (progress of a retried handler), as its progress storage clears it
        self.remove_annotations(essence, {a for a in annotations if a.startswith(f"{self.prefix}/")})
        self.remove_empty_stanzas(essence)
        return essence

    def fetch(self, *, body: kopf.Body):
        if body.get("kind") != self.kind:
            return None
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):  # being deleted: forgotten (kopf decides by the timestamp)
            self._digests.pop(meta.get("uid"), None)
            return None
        digest = self._digests.get(meta.get("uid"))
        if digest is None:
            return None
        essence = self.build(body=body)
        return essence if _digest(essence) == digest else {}  # {}: an essential change (an update)

    def store(self, *, body: kopf.Body, patch, essence) -> None:
        meta = body.get("metadata") or {}
        if body.get("kind") == self.kind and not meta.get("deletionTimestamp"):
            self._digests[meta.get("uid")] = _digest(essence)

    def __len__(self) -> int:
        return len(self._digests)


def _digest(essence) -> bytes:
    return hashlib.blake2b(json.dumps(essence, sort_keys=True, default=str).encode(), digest_size=16).digest()


def configure(settings: OperatorSettings) -> None:
    """Called by `swarm-arena operator` before kopf starts."""
    global _settings
    _settings = settings


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = MemoryDiffBaseStorage()
    # Events are posted on purpose (phase changes, recoveries), not for every log line.
    settings.posting.level = logging.ERROR
    # Every API request has a timeout: a watch is ended by the server after 300 s and by kopf
    # 30 s later if the server does not; other requests, connecting included, end within 30 s
    # (10 s to connect). A 429 waits the server's Retry-After, even when shorter than kopf's backoff.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.networking.enforce_retry_after = True
    # No runtime scanning of CRDs and namespaces: the resources are fixed and the namespaces are
    # named exactly, so the chart grants neither (scanning would retry 403s for ~1.5 min first).
    settings.scanning.disabled = True
    memo.kube = Kube(load_client())
    memo.session = aiohttp.ClientSession()
    memo.reconciler = Reconciler(_settings or OperatorSettings(), memo.kube, memo.session)
    await _warm_up(memo.kube)
    memo.pokes = {}  # uid -> the event that wakes its loop
    memo.uids = {}  # (namespace, name) -> the uid whose loop runs under that name now
    memo.memories = {}
    memo.running = set()  # uids of Running/Recovering evaluations: their pods wake them
    memo.generations = {}  # (namespace, name) -> the generation that last woke the loop


WARM_UP_DOC = {
    "apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "warm-up", "namespace": "default"},
    "spec": {"environment": {"factory": "foraging", "params": {"agents": 2}},
             "policies": [{"name": "random", "factory": "random"}]},
}


async def _warm_up(kube: Kube) -> None:
    """What the first evaluation after a start would otherwise pay for: building the validators
    (0.3 s) and the API server's TLS handshake. Without it the first evaluation took 0.9 s to its
    RayCluster, the next ones 0.1 s."""
    try:
        await asyncio.to_thread(validate_manifest, WARM_UP_DOC, check_imports=False)
    except ManifestError as exc:  # still warm; says the warm-up document fell behind the API
        log.warning("warm-up manifest no longer validates: %s", exc)
    try:
        await kube.warm_up()
    except Exception as exc:  # noqa: BLE001 - the first real request will say what is wrong
        log.warning("could not reach the API server yet: %s: %s", type(exc).__name__, exc)


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
