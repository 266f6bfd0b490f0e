"""Leader election against the real API server (controller/leader.py): expiry judged on our own
clock whatever the clocks of the machines say, requests that hang, and two real operators whose
clocks disagree by 30 s."""

from __future__ import annotations

import json
import signal
import socket
import threading
from typing import Iterator

import pytest

from swarm_arena.controller.leader import CLOCK_OFFSET_ENV, LeaderElector
from tests.controlplane.plane import wait_for

pytestmark = pytest.mark.controlplane


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _elector(api, ns: str, who: str, lost: list[str], **kw) -> LeaderElector:
    return LeaderElector(api, ns, name="lead", who=who, on_lost=lost.append, **kw)


@pytest.mark.parametrize("skew_s", [-30, 30, -3600])
def test_expiry_is_judged_on_our_own_clock_never_on_the_times_in_the_lease(
        kube_api, namespace, monkeypatch: pytest.MonkeyPatch, skew_s: int) -> None:
    lost: list[str] = []
    a_clock, b_clock = Clock(), Clock()
    a = _elector(kube_api, namespace, "a", lost, clock=a_clock)
    b = _elector(kube_api, namespace, "b", lost, clock=b_clock)
    monkeypatch.setenv(CLOCK_OFFSET_ENV, str(skew_s))  # a's clock is off: its renewTime says so
    assert a.try_acquire()
    monkeypatch.delenv(CLOCK_OFFSET_ENV)

    assert not b.try_acquire()  # first seen now: a renewTime 30 s (or an hour) old means nothing
    b_clock.t += 14
    assert not b.try_acquire()
    monkeypatch.setenv(CLOCK_OFFSET_ENV, str(skew_s))
    assert a.try_acquire()  # a renews: b counts again from when it sees that
    monkeypatch.delenv(CLOCK_OFFSET_ENV)
    b_clock.t += 2
    assert not b.try_acquire()
    b_clock.t += 14
    assert not b.try_acquire()
    b_clock.t += 1  # 15 s on b's clock without a change: expired, whatever the Lease's times say
    assert b.try_acquire()
    assert not a.try_acquire()  # a sees b hold it and does not take it back
    lease = kube_api_lease(kube_api, namespace)
    assert lease.spec.holder_identity == "b" and lease.spec.lease_transitions == 1
    assert lost == []


def kube_api_lease(api, namespace: str):
    from kubernetes import client

    return client.CoordinationV1Api(api).read_namespaced_lease("lead", namespace)


def test_a_released_lease_is_taken_at_once(kube_api, namespace) -> None:
    lost: list[str] = []
    a = _elector(kube_api, namespace, "a", lost, clock=Clock())
    b = _elector(kube_api, namespace, "b", lost, clock=Clock())
    assert a.try_acquire() and not b.try_acquire()
    a.release()
    assert b.try_acquire() and lost == []


class FreezableProxy:
    """A TCP proxy to the API server that can stop passing bytes while keeping every connection
    open: requests through it hang, as behind a dead network path."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [conn, upstream]
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.frozen.is_set():  # frozen: swallowed, the caller waits for an answer
                    dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()


@pytest.fixture
def proxy(control_plane) -> Iterator[FreezableProxy]:
    from urllib.parse import urlsplit

    api = control_plane.api_client()
    target = urlsplit(api.configuration.host)
    api.close()
    p = FreezableProxy(target.hostname, target.port)
    yield p
    p.close()


def test_a_leader_whose_requests_hang_stops_before_its_lease_can_be_taken(control_plane, kube_api, namespace,
                                                                         proxy: FreezableProxy) -> None:
    api = control_plane.api_client()
    api.configuration.host = f"https://127.0.0.1:{proxy.port}"
    lost_a: list[str] = []
    a = LeaderElector(api, namespace, name="lead", who="a", on_lost=lost_a.append, lease_s=4, renew_deadline_s=2,
                      retry_s=0.5)
    b = LeaderElector(kube_api, namespace, name="lead", who="b", on_lost=lambda why: None, lease_s=4,
                      renew_deadline_s=2, retry_s=0.5)
    a.acquire()
    assert not b.try_acquire()
    proxy.frozen.set()  # every request of a's hangs from now on
    wait_for("b takes the Lease", b.try_acquire, 30, interval=0.2)
    # a stopped on its own clock, before b could take its place
    assert lost_a and "not renewed within 2s" in lost_a[0]
    api.close()


def _holder(cp, ns: str) -> str:
    lease = json.loads(cp.kubectl("get", "lease", "swarm-arena-operator", "-n", ns, "-o", "json").stdout)
    return lease["spec"].get("holderIdentity") or ""


def _leads(op) -> bool:
    return op.log is not None and "leading: Lease" in op.log.read_text()


def test_two_operators_whose_clocks_disagree_by_30s_never_both_lead(control_plane, namespace, operator_factory) -> None:
    first = operator_factory([namespace])
    first.start()
    wait_for("the first operator leads", lambda: _leads(first), 60, on_timeout=first.tail)
    renewed = json.loads(control_plane.kubectl("get", "lease", "swarm-arena-operator", "-n", namespace, "-o",
                                               "json").stdout)["spec"]["renewTime"]

    ahead = operator_factory([namespace], env={CLOCK_OFFSET_ENV: "30"})  # thinks the Lease is 30 s stale
    ahead.start()  # healthy as a standby
    started_renewals = renewed

    def renewed_for_a_whole_lease() -> bool:
        # the leader renews every 2 s: 10 renewals seen since the standby started is more than
        # the 15 s a standby waits on its own clock before it may take an unrenewed Lease
        nonlocal started_renewals
        now = json.loads(control_plane.kubectl("get", "lease", "swarm-arena-operator", "-n", namespace, "-o",
                                               "json").stdout)["spec"]
        if now["renewTime"] != started_renewals:
            started_renewals = now["renewTime"]
            seen.append(now["renewTime"])
        assert now["holderIdentity"].endswith(f"-{first.proc.pid}"), now
        return len(seen) >= 10

    seen: list[str] = []
    wait_for("the leader renews through a whole Lease duration", renewed_for_a_whole_lease, 90,
             on_timeout=lambda: first.tail() + ahead.tail())
    assert first.proc.poll() is None and not _leads(ahead), ahead.tail()

    behind = operator_factory([namespace], env={CLOCK_OFFSET_ENV: "-30"})
    first.kill(signal.SIGKILL)
    behind.start()
    wait_for("a standby takes over from the dead leader", lambda: _leads(ahead) or _leads(behind), 90,
             on_timeout=lambda: ahead.tail() + behind.tail())
    holder = _holder(control_plane, namespace)
    leaders = [op for op in (ahead, behind) if _leads(op)]
    assert len(leaders) == 1 and holder.endswith(f"-{leaders[0].proc.pid}")
    other = behind if leaders[0] is ahead else ahead
    leaders[0].kill(signal.SIGKILL)
    wait_for("the other takes over in turn", lambda: _leads(other), 90, on_timeout=other.tail)
    assert _holder(control_plane, namespace).endswith(f"-{other.proc.pid}")
