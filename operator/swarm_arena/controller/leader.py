"""Leader election on a coordination.k8s.io Lease: of several operator processes, one acts.

kopf's own peering pauses operators of equal priority against each other, so it cannot give a
hot standby. This is client-go's leader election instead, with its rules:

* **Expiry is judged on our own clock, never on the times in the Lease.** A standby notes when it
  first saw the Lease's current record (its resourceVersion) on its own monotonic clock; it may
  take the Lease only once that record has not changed for the Lease's duration. The renewTime
  the holder writes is for people reading the Lease: two machines whose clocks disagree by
  minutes still never both lead, and a clock step changes nothing.
* **Every request has a timeout**, and the holder keeps its promise on its own clock: it renews
  every RETRY_S; when no renewal *sent* in the last RENEW_DEADLINE_S has succeeded, it stops
  acting (the process exits at once, crash-only: its Deployment restarts it as a standby). A
  standby can take over no sooner than LEASE_S after it saw the last renewal, which was sent
  after the holder's clock started counting that renewal's deadline, so the holder has stopped
  (LEASE_S - RENEW_DEADLINE_S) seconds before anyone may take its place. A watchdog thread
  enforces the deadline even if a renewal hangs in a way no timeout catches.

Not `kubernetes.leaderelection`: it follows the same observed-time rule, but its requests have no
timeout (a hung renewal blocks its renew loop, and the leader goes on acting past its lease),
it measures with the wall clock (a clock step shortens or stretches the lease), it builds its
own API client from the default configuration, and it tells the leader it lost only after its
renew loop returns, which a hung request never does.

Runs in threads with the synchronous client: it must keep renewing even if the event loop is busy.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

LEASE_S = 15
"""How long a standby waits, after it last saw the Lease change, before it takes it."""
RENEW_DEADLINE_S = 10
"""How long the holder goes on acting without a successful renewal (sent within this time)."""
RETRY_S = 2
"""How often the holder renews, and a standby looks."""
REQUEST_TIMEOUT_S = 5.0
DEFAULT_LEASE_NAME = "swarm-arena-operator"
CLOCK_OFFSET_ENV = "SWARM_ARENA_TEST_CLOCK_OFFSET_S"
"""Tests only: seconds added to this process's wall clock (the times it writes into the Lease), to
prove that a skewed clock changes nothing."""


def _wall() -> datetime:
    offset = float(os.environ.get(CLOCK_OFFSET_ENV) or 0)
    return datetime.now(timezone.utc) + timedelta(seconds=offset)


def identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def _exit_now(why: str) -> None:  # pragma: no cover - the process ends
    log.critical("%s; exiting so that only one operator acts", why)
    logging.shutdown()
    os._exit(3)


class LeaderElector:
    def __init__(self, api: client.ApiClient, namespace: str, name: str = DEFAULT_LEASE_NAME,
                 who: str | None = None, lease_s: int = LEASE_S, renew_deadline_s: float = RENEW_DEADLINE_S,
                 retry_s: float = RETRY_S, on_lost: Callable[[str], None] = _exit_now,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not renew_deadline_s < lease_s:
            raise ValueError("the renew deadline must be shorter than the lease")
        self.leases = client.CoordinationV1Api(api)
        self.namespace, self.name = namespace, name
        self.who = who or identity()
        self.lease_s, self.renew_deadline_s, self.retry_s = lease_s, renew_deadline_s, retry_s
        self.on_lost = on_lost
        self.clock = clock
        self._observed: tuple[str | None, float] | None = None
        """(resourceVersion of the Lease as last read, our clock when that version was first seen)."""
        self._renewed_sent: float | None = None
        """Our clock when the last successful renewal was sent (what the deadline counts from)."""
        self._stop = threading.Event()
        self._lost = False

    # -- one attempt ---------------------------------------------------------------------------------

    def _timeout(self, deadline: float | None = None) -> float:
        if deadline is None:
            return REQUEST_TIMEOUT_S
        return max(0.1, min(REQUEST_TIMEOUT_S, deadline - self.clock()))

    def _spec(self, transitions: int, acquired: datetime | None) -> client.V1LeaseSpec:
        now = _wall()
        return client.V1LeaseSpec(holder_identity=self.who, lease_duration_seconds=self.lease_s,
                                  acquire_time=acquired or now, renew_time=now, lease_transitions=transitions)

    def try_acquire(self, deadline: float | None = None) -> bool:
        """One attempt to take or keep the Lease; True when this process holds it. Every request
        ends by `deadline` (our clock) or REQUEST_TIMEOUT_S."""
        sent = self.clock()
        try:
            lease = self.leases.read_namespaced_lease(self.name, self.namespace,
                                                      _request_timeout=self._timeout(deadline))
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                                  spec=self._spec(0, None))
            try:
                self.leases.create_namespaced_lease(self.namespace, body, _request_timeout=self._timeout(deadline))
            except ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
            self._renewed_sent = sent
            return True
        spec = lease.spec or client.V1LeaseSpec()
        version = lease.metadata.resource_version
        now = self.clock()
        if self._observed is None or self._observed[0] != version:
            self._observed = (version, now)  # a change: its age counts from now, on our clock
        mine = spec.holder_identity == self.who
        free = not spec.holder_identity  # released by its holder
        duration = spec.lease_duration_seconds or self.lease_s
        expired = now - self._observed[1] >= duration
        if not (mine or free or expired):
            return False
        if not mine and self._renewed_sent is not None:
            return False  # we held it and someone else has it now: never take it back in passing
        transitions = (spec.lease_transitions or 0) + (0 if mine else 1)
        lease.spec = self._spec(transitions, spec.acquire_time if mine else None)
        try:
            # resourceVersion in the body: the write fails (409) if anyone wrote since our read
            replaced = self.leases.replace_namespaced_lease(self.name, self.namespace, lease,
                                                            _request_timeout=self._timeout(deadline))
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._observed = (replaced.metadata.resource_version, self.clock())
        self._renewed_sent = sent
        return True

    # -- leading -------------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Block until this process holds the Lease, then keep renewing it in a thread."""
        log.info("waiting to lead: Lease %s/%s (identity %s)", self.namespace, self.name, self.who)
        while True:
            try:
                if self.try_acquire():
                    break
            except Exception as exc:  # noqa: BLE001 - the API server may be down: keep waiting
                log.warning("could not read the Lease %s/%s: %s: %s", self.namespace, self.name,
                            type(exc).__name__, exc)
            time.sleep(self.retry_s)
        log.info("leading: Lease %s/%s held by %s", self.namespace, self.name, self.who)
        threading.Thread(target=self._keep, name="lease-renewal", daemon=True).start()
        threading.Thread(target=self._watchdog, name="lease-watchdog", daemon=True).start()

    def _deadline(self) -> float:
        assert self._renewed_sent is not None
        return self._renewed_sent + self.renew_deadline_s

    def _lose(self, why: str) -> None:
        if not self._lost and not self._stop.is_set():
            self._lost = True
            self._stop.set()
            self.on_lost(f"lost the Lease {self.namespace}/{self.name}: {why}")

    def _keep(self) -> None:
        while not self._stop.wait(self.retry_s):
            deadline = self._deadline()
            try:
                if self.try_acquire(deadline):
                    continue
                lease = self.leases.read_namespaced_lease(self.name, self.namespace,
                                                          _request_timeout=self._timeout(deadline))
                if (lease.spec.holder_identity if lease.spec else None) != self.who:
                    self._lose(f"{lease.spec.holder_identity if lease.spec else 'nobody'} holds it")
                    return
            except Exception as exc:  # noqa: BLE001 - any failure to renew is a failure to renew
                log.warning("could not renew the Lease %s/%s: %s: %s", self.namespace, self.name,
                            type(exc).__name__, exc)
            if self.clock() >= self._deadline():
                self._lose(f"not renewed within {self.renew_deadline_s:g}s")
                return

    def _watchdog(self) -> None:
        """The deadline, even if a renewal hangs past every timeout."""
        while not self._stop.wait(max(0.05, min(0.5, self._deadline() - self.clock()))):
            if self.clock() >= self._deadline():
                self._lose(f"not renewed within {self.renew_deadline_s:g}s")
                return

    def release(self) -> None:
        """Give the Lease up on a clean shutdown, so a standby takes over at once."""
        self._stop.set()
        if self._lost:
            return
        try:
            lease = self.leases.read_namespaced_lease(self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT_S)
            if lease.spec.holder_identity == self.who:
                lease.spec.holder_identity = None  # client-go's release: no holder, taken at once
                lease.spec.lease_duration_seconds = 1
                lease.spec.renew_time = _wall()
                self.leases.replace_namespaced_lease(self.name, self.namespace, lease,
                                                     _request_timeout=REQUEST_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - best effort; the Lease expires anyway
            log.debug("could not release the Lease", exc_info=True)
