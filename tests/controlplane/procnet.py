"""Host networking for process-backed pods: one bridge per plane, one network namespace per pod.

Everything this module creates carries a name that is unique to this project and to one plane:

* bridge            ``swar<id>br``                 (the host's address on it is the pods' gateway)
* host-side veths   ``swar<id>v<n>``               (the pod side is ``eth0`` inside the namespace)
* network namespaces ``swarena-<id>-<n>-<pod>``    (``/run/netns``), hosts/resolv.conf in
  ``/etc/netns/<namespace>/`` (``ip netns exec`` bind-mounts them over ``/etc``)
* state             ``/run/swarm-arena/<id>/owner`` (pid and start time of the owning process)
* pod files         ``/var/lib/swarm-arena/<id>/`` (each pod's ``/tmp`` and volumes: outside the
  host's ``/tmp``, which a pod's own ``/tmp`` hides)

``<id>`` is 4 hex digits. Pod addresses come from ``10.251.<k>.0/24``, one ``/24`` per plane
(several planes may run at once on one machine), distinct from kwok's fake ``10.244.0.0/16`` and
the Service range. Nothing is routed off the machine: IP forwarding is left as it is, the bridge
has no uplink, and the host reaches pods directly on the bridge.

:func:`sweep_stale` removes what a crashed earlier run left (its owner process is gone).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

STATE_ROOT = Path("/run/swarm-arena")
FILES_ROOT = Path("/var/lib/swarm-arena")
NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
LINK_PREFIX = "swar"
NETNS_PREFIX = "swarena-"
POD_SUPERNET = ipaddress.ip_network("10.251.0.0/16")

_LINK_RE = re.compile(rf"^{LINK_PREFIX}([0-9a-f]{{4}})(?:br|v[0-9a-f]+)$")
_NETNS_RE = re.compile(rf"^{NETNS_PREFIX}([0-9a-f]{{4}})-")


class NetworkError(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise NetworkError(f"`ip {' '.join(args)}` failed ({r.returncode}): {r.stderr.strip()}")
    return r


def available() -> str | None:
    """None when process-backed pods can run here, else why not (what to do)."""
    if os.geteuid() != 0:
        return "process-backed pods need root (network namespaces, bridges, mounts); run the tests as root"
    for tool in ("ip", "unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install iproute2 util-linux)"
    return None


# --------------------------------------------------------------------------------------------
# ownership


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: starttime


def _owner_alive(plane_id: str) -> bool:
    try:
        owner = json.loads((STATE_ROOT / plane_id / "owner").read_text())
    except (OSError, ValueError):
        return False
    return _start_time(int(owner["pid"])) == owner.get("start")


@contextlib.contextmanager
def _lock():
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(STATE_ROOT / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _ids_in_use() -> set[str]:
    ids = {p.name for p in STATE_ROOT.iterdir() if p.is_dir()} if STATE_ROOT.exists() else set()
    ids |= {m.group(1) for m in map(_LINK_RE.match, _links()) if m}
    ids |= {m.group(1) for m in map(_NETNS_RE.match, _netns_names()) if m}
    return ids


def _links() -> list[str]:
    return [line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link", "show").stdout.splitlines()
            if line.count(":") >= 2]


def _netns_names() -> list[str]:
    return sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.exists() else []


# --------------------------------------------------------------------------------------------
# the plane's network


@dataclass
class PlaneNetwork:
    plane_id: str
    subnet: ipaddress.IPv4Network

    @property
    def bridge(self) -> str:
        return f"{LINK_PREFIX}{self.plane_id}br"

    @property
    def files(self) -> Path:
        """Where pods' own files live (their /tmp, volumes)."""
        return FILES_ROOT / self.plane_id

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    def pod_addresses(self) -> list[str]:
        return [str(a) for a in self.subnet.hosts()][1:]  # .1 is the gateway

    def netns_name(self, n: int, pod: str) -> str:
        safe = re.sub(r"[^a-z0-9-]", "-", pod.lower())[:40]
        return f"{NETNS_PREFIX}{self.plane_id}-{n:x}-{safe}"

    def veth_name(self, n: int) -> str:
        return f"{LINK_PREFIX}{self.plane_id}v{n:x}"

    def to_json(self) -> dict:
        return {"plane_id": self.plane_id, "subnet": str(self.subnet)}

    @classmethod
    def from_json(cls, d: dict) -> "PlaneNetwork":
        return cls(d["plane_id"], ipaddress.ip_network(d["subnet"]))

    # -- pods -----------------------------------------------------------------------------

    def add_pod(self, n: int, pod: str, address: str, hosts: str) -> str:
        """Create the pod's network namespace with ``address`` on eth0 (veth to the bridge),
        loopback up, default route via the gateway, and its /etc/netns files. Returns its name."""
        ns, veth = self.netns_name(n, pod), self.veth_name(n)
        etc = ETC_NETNS / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(hosts)
        # no nameserver answers inside the namespace: names not in the hosts file fail at once
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n")
        try:
            ip("netns", "add", ns)
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", veth, "master", self.bridge, "up")
            ip("-n", ns, "addr", "add", f"{address}/{self.prefixlen}", "dev", "eth0")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "route", "add", "default", "via", self.gateway)
        except NetworkError:
            self.remove_pod(n, pod)
            raise
        return ns

    def remove_pod(self, n: int, pod: str) -> None:
        ns = self.netns_name(n, pod)
        _kill_netns_pids(ns)
        ip("link", "del", self.veth_name(n), check=False)
        ip("netns", "del", ns, check=False)
        shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)


def _kill_netns_pids(ns: str) -> None:
    r = ip("netns", "pids", ns, check=False)
    for pid in r.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def create_network() -> PlaneNetwork:
    """Claim a plane id and a free /24 of :data:`POD_SUPERNET`, create the bridge with the
    gateway address, and record this process as the owner."""
    why = available()
    if why:
        raise NetworkError(why)
    sweep_stale()
    with _lock():
        used_ids = _ids_in_use()
        plane_id = next(i for i in (secrets.token_hex(2) for _ in range(1000)) if i not in used_ids)
        taken = set()
        for line in ip("-o", "-4", "addr", "show").stdout.splitlines():
            addr = ipaddress.ip_interface(line.split()[3])
            taken.add(addr.network)
        subnet = next((s for s in POD_SUPERNET.subnets(new_prefix=24)
                       if not any(s.overlaps(t) for t in taken)), None)
        if subnet is None:
            raise NetworkError(f"no free /24 left in {POD_SUPERNET}")
        state = STATE_ROOT / plane_id
        state.mkdir(parents=True)
        (state / "owner").write_text(json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid())}))
        net = PlaneNetwork(plane_id, subnet)
        (state / "network.json").write_text(json.dumps(net.to_json()))
        try:
            ip("link", "add", net.bridge, "type", "bridge")
            ip("addr", "add", f"{net.gateway}/{subnet.prefixlen}", "dev", net.bridge)
            ip("link", "set", net.bridge, "up")
        except NetworkError:
            remove_plane(plane_id)
            raise
    return net


def remove_plane(plane_id: str) -> None:
    """Kill every process in the plane's namespaces and remove namespaces, veths, bridge, files."""
    for ns in _netns_names():
        if ns.startswith(f"{NETNS_PREFIX}{plane_id}-"):
            _kill_netns_pids(ns)
            ip("netns", "del", ns, check=False)
    for link in _links():
        m = _LINK_RE.match(link)
        if m and m.group(1) == plane_id and not link.endswith("br"):
            ip("link", "del", link, check=False)
    ip("link", "del", f"{LINK_PREFIX}{plane_id}br", check=False)
    if ETC_NETNS.exists():
        for d in ETC_NETNS.iterdir():
            if d.name.startswith(f"{NETNS_PREFIX}{plane_id}-"):
                shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(STATE_ROOT / plane_id, ignore_errors=True)
    shutil.rmtree(FILES_ROOT / plane_id, ignore_errors=True)


def leftovers(plane_id: str | None = None) -> dict[str, list[str]]:
    """Namespaces, links and /etc/netns dirs of ``plane_id`` (or of every plane) that exist now."""
    def mine(name: str, rx: re.Pattern) -> bool:
        m = rx.match(name)
        return bool(m) and (plane_id is None or m.group(1) == plane_id)
    etc = sorted(d.name for d in ETC_NETNS.iterdir()) if ETC_NETNS.exists() else []
    files = sorted(d.name for d in FILES_ROOT.iterdir()) if FILES_ROOT.exists() else []
    return {
        "netns": [n for n in _netns_names() if mine(n, _NETNS_RE)],
        "links": [link for link in _links() if mine(link, _LINK_RE)],
        "etc_netns": [d for d in etc if mine(d, _NETNS_RE)],
        "files": [str(FILES_ROOT / d) for d in files if plane_id is None or d == plane_id],
    }


def sweep_stale() -> list[str]:
    """Remove the resources of every plane whose owner process is gone; returns their ids."""
    if available():
        return []
    with _lock():
        found = _ids_in_use()
        if ETC_NETNS.exists():
            found |= {m.group(1) for m in (_NETNS_RE.match(d.name) for d in ETC_NETNS.iterdir()) if m}
        if FILES_ROOT.exists():
            found |= {d.name for d in FILES_ROOT.iterdir() if re.fullmatch(r"[0-9a-f]{4}", d.name)}
        stale = sorted(i for i in found if not _owner_alive(i))
        for plane_id in stale:
            remove_plane(plane_id)
    return stale
