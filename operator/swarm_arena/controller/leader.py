"""Leader election on a coordination.k8s.io Lease: of several operator processes, one acts.

kopf's own peering pauses operators of equal priority against each other, so it cannot give a
hot standby. This is the client-go pattern instead: the holder renews the Lease every
RENEW_S; a standby takes it over once it has not been renewed for LEASE_S. A holder that cannot
renew within LEASE_S exits at once (crash-only: its Deployment restarts it as a standby), so two
processes never act at the same time. Takeover after the holder dies: at most LEASE_S + RETRY_S.

Runs in a thread with the synchronous client: it must keep renewing even if the event loop is busy.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

LEASE_S = 15
RENEW_S = 5
RETRY_S = 2


def _now() -> datetime:
    return datetime.now(timezone.utc)


def identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class LeaderElector:
    def __init__(self, api: client.ApiClient, namespace: str, name: str = "swarm-arena-operator",
                 who: str | None = None, lease_s: int = LEASE_S) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.namespace, self.name = namespace, name
        self.who = who or identity()
        self.lease_s = lease_s
        self._renewed = 0.0
        self._stop = threading.Event()

    def _body(self, transitions: int, acquired: datetime | None = None) -> client.V1Lease:
        now = _now()
        return client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(holder_identity=self.who, lease_duration_seconds=self.lease_s,
                                    acquire_time=acquired or now, renew_time=now, lease_transitions=transitions),
        )

    def try_acquire(self) -> bool:
        """One attempt to take or keep the Lease; True when this process holds it."""
        try:
            lease = self.leases.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            try:
                self.leases.create_namespaced_lease(self.namespace, self._body(0))
            except ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
            return True
        spec = lease.spec
        mine = spec.holder_identity == self.who
        renewed = spec.renew_time or spec.acquire_time
        expired = renewed is None or (_now() - renewed).total_seconds() > (spec.lease_duration_seconds or self.lease_s)
        if not mine and not expired:
            return False
        body = self._body((spec.lease_transitions or 0) + (0 if mine else 1), spec.acquire_time if mine else None)
        body.metadata.resource_version = lease.metadata.resource_version
        try:
            self.leases.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:  # someone else renewed or took it first
                return False
            raise
        return True

    def acquire(self) -> None:
        """Block until this process holds the Lease, then keep renewing it in a thread."""
        log.info("waiting to lead: Lease %s/%s (identity %s)", self.namespace, self.name, self.who)
        while not self.try_acquire():
            time.sleep(RETRY_S)
        self._renewed = time.monotonic()
        log.info("leading: Lease %s/%s held by %s", self.namespace, self.name, self.who)
        threading.Thread(target=self._keep, name="lease-renewal", daemon=True).start()

    def _keep(self) -> None:
        while not self._stop.wait(RENEW_S):
            try:
                if self.try_acquire():
                    self._renewed = time.monotonic()
                    continue
                lost = "another process holds it"
            except Exception as exc:  # noqa: BLE001 - any failure to renew is a failure to renew
                lost = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - self._renewed >= self.lease_s - RENEW_S or "another" in lost:
                log.critical("lost the Lease %s/%s (%s); exiting so that only one operator acts",
                             self.namespace, self.name, lost)
                os._exit(3)

    def release(self) -> None:
        """Give the Lease up on a clean shutdown, so a standby takes over at once."""
        self._stop.set()
        try:
            lease = self.leases.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.who:
                lease.spec.renew_time = datetime(1970, 1, 1, tzinfo=timezone.utc)
                lease.spec.lease_duration_seconds = 1
                self.leases.replace_namespaced_lease(self.name, self.namespace, lease)
        except Exception:  # noqa: BLE001 - best effort; the Lease expires anyway
            log.debug("could not release the Lease", exc_info=True)
