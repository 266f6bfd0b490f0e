"""The operator's Kubernetes writes, async from the handlers' point of view.

The official client is synchronous, so every call runs in a thread of a bounded pool: kopf's
event loop never waits on a socket. kopf itself does the watching (and posts Events).
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from swarm_arena.api.resource import GROUP, PLURAL, VERSION
from swarm_arena.controller.names import FIELD_MANAGER

log = logging.getLogger(__name__)

RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayclusters"
REQUEST_TIMEOUT_S = 30.0
"""Every request of the operator's own ends within this (connect and read): a hung API server
connection costs one pass, never a pool thread forever."""
THROTTLE_RETRIES = 5
MAX_RETRY_AFTER_S = 60.0


def retry_after_s(exc: ApiException) -> float | None:
    """Seconds to wait before sending a throttled request (HTTP 429) again, as the API server asks
    in Retry-After (at least 1 s, at most MAX_RETRY_AFTER_S); None for any other error."""
    if exc.status != 429:
        return None
    raw = (exc.headers or {}).get("Retry-After") if exc.headers is not None else None
    try:
        wait = float(raw) if raw is not None else 1.0
    except ValueError:  # an HTTP date: the API server sends seconds, anything else waits a second
        wait = 1.0
    return min(max(wait, 1.0), MAX_RETRY_AFTER_S)


class NamespaceTerminating(Exception):
    """The namespace is being deleted: the API server refuses new objects in it (HTTP 403)."""


class NotOurs(Exception):
    """A child's name is taken by an object this evaluation does not own.

    `previous_life`: it belongs to an earlier evaluation of the same name (owned by a
    SwarmEvaluation of that name, or already being deleted): the garbage collector removes it,
    and the evaluation waits for that instead of adopting it. Otherwise it is someone else's.
    """

    def __init__(self, kind: str, name: str, previous_life: bool) -> None:
        super().__init__(f"{kind} {name}")
        self.kind, self.name, self.previous_life = kind, name, previous_life

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


def ownership(obj: dict[str, Any], uid: str, evaluation: str) -> str:
    """'ours', 'previous' (an earlier evaluation of this name's, or being deleted) or 'foreign'."""
    meta = obj.get("metadata") or {}
    owners = meta.get("ownerReferences") or []
    if any(o.get("uid") == uid for o in owners):
        return "ours"
    if meta.get("deletionTimestamp") or any(
        o.get("kind") == "SwarmEvaluation" and o.get("name") == evaluation for o in owners
    ):
        return "previous"
    return "foreign"


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: what is unchanged is left
    out, and a key gone from `new` is null at every depth (a nested object is merged by the
    server, so a field that became empty would otherwise stay)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = merge_patch(before, value)
            if inner:
                patch[key] = inner
        elif key not in old or before != value:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def load_client() -> client.ApiClient:
    """In a pod: its ServiceAccount; elsewhere: KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return api_client(client.Configuration.get_default_copy())


def api_client(configuration: client.Configuration) -> client.ApiClient:
    """The operator's client: urllib3's own retries off. They would resend a throttled request
    from inside a pool thread, sleeping there (up to 3 times per call, each after Retry-After);
    `Kube` waits on the event loop instead, and a failed request fails the pass, which is retried."""
    configuration.retries = False
    return client.ApiClient(configuration)


class Kube:
    def __init__(self, api: client.ApiClient, threads: int = 8, request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.request_timeout_s = request_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.version = client.VersionApi(api)

    async def _call(self, thunk):
        """`thunk()` in the pool; a 429 is sent again after the server's Retry-After (waiting on the
        event loop, not in a thread), up to THROTTLE_RETRIES times."""
        loop = asyncio.get_running_loop()
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                return await loop.run_in_executor(self._pool, thunk)
            except ApiException as exc:
                wait = retry_after_s(exc)
                if wait is None or attempt == THROTTLE_RETRIES:
                    raise
                log.info("API server throttled a request (429); again in %.0fs", wait)
                await asyncio.sleep(wait)

    async def _run(self, fn, *args, **kwargs):
        kwargs.setdefault("_request_timeout", self.request_timeout_s)
        return await self._call(lambda: fn(*args, **kwargs))

    async def _write(self, fn, *args, **kwargs) -> None:
        """A write whose answer is not needed: the response is read (the connection goes back to the
        pool) but not turned into the client's model objects, which cost more than the request."""
        kwargs.setdefault("_request_timeout", self.request_timeout_s)

        def call() -> None:
            response = fn(*args, _preload_content=False, **kwargs)
            try:
                response.read()
            finally:
                response.release_conn()

        await self._call(call)

    async def warm_up(self) -> None:
        """One request (GET /version), so that the first evaluation's writes find a connection
        with its TLS handshake done."""
        await self._run(self.version.get_code, _preload_content=False)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- children ---------------------------------------------------------------------------------

    async def create_if_absent(self, obj: dict[str, Any]) -> bool:
        """Create `obj` (RayCluster, Secret or ConfigMap); False when it already existed and has
        the same owner. One with another owner (an earlier evaluation's of the same name, still
        being deleted) raises `NotOurs`: it is never adopted."""
        ns = obj["metadata"]["namespace"]
        try:
            if obj["kind"] == "RayCluster":
                await self._write(self.custom.create_namespaced_custom_object, RAY_GROUP, RAY_VERSION, ns, RAY_PLURAL,
                                  obj, field_manager=FIELD_MANAGER)
            elif obj["kind"] == "Secret":
                await self._write(self.core.create_namespaced_secret, ns, obj, field_manager=FIELD_MANAGER)
            elif obj["kind"] == "ConfigMap":
                await self._write(self.core.create_namespaced_config_map, ns, obj, field_manager=FIELD_MANAGER)
            else:
                raise ValueError(f"cannot create {obj['kind']}")
        except ApiException as exc:
            if exc.status == 409:
                await self._check_owner(obj)
                return False
            if exc.status == 403 and "being terminated" in (exc.body or ""):
                raise NamespaceTerminating(ns) from None
            raise
        return True

    async def _check_owner(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        owner = (meta.get("ownerReferences") or [{}])[0]
        if not owner.get("uid") or obj["kind"] == "Secret":
            # A Secret's name carries the evaluation's uid (names.auth_secret_name): one that exists
            # is this evaluation's, and the operator has no `get` on Secrets to look.
            return
        existing = await self.read(obj["kind"], meta["namespace"], meta["name"])
        if existing is None:  # gone since the 409: the next pass creates it
            return
        verdict = ownership(existing, owner["uid"], owner.get("name", ""))
        if verdict != "ours":
            raise NotOurs(obj["kind"], meta["name"], previous_life=verdict == "previous")

    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A RayCluster, Secret or ConfigMap as a plain dict; None when there is none."""
        try:
            if kind == "RayCluster":
                response = await self._run(self.custom.get_namespaced_custom_object, RAY_GROUP, RAY_VERSION,
                                           namespace, RAY_PLURAL, name, _preload_content=False)
            elif kind == "Secret":
                response = await self._run(self.core.read_namespaced_secret, name, namespace, _preload_content=False)
            elif kind == "ConfigMap":
                response = await self._run(self.core.read_namespaced_config_map, name, namespace,
                                           _preload_content=False)
            else:
                raise ValueError(f"cannot read {kind}")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return json.loads(response.data)

    async def apply_configmap(self, obj: dict[str, Any]) -> None:
        """Server-side apply with the operator's field manager (the results ConfigMap changes as the run goes)."""
        meta = obj["metadata"]
        await self._write(
            self.core.patch_namespaced_config_map, meta["name"], meta["namespace"], obj,
            field_manager=FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml",
        )

    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.read("ConfigMap", namespace, name)

    async def delete_ray_cluster(self, namespace: str, name: str) -> None:
        try:
            await self._run(self.custom.delete_namespaced_custom_object, RAY_GROUP, RAY_VERSION, namespace,
                            RAY_PLURAL, name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def delete_pod(self, namespace: str, name: str, uid: str) -> bool:
        """Delete that pod (that instance: a precondition on its uid); False when it is gone already."""
        try:
            await self._run(self.core.delete_namespaced_pod, name, namespace,
                            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)))
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    # -- the evaluation's status ----------------------------------------------------------------

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch `status` (keys set to None are removed)."""
        await self._write(
            self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL, name,
            {"status": status},
        )
