"""Start and stop a real Kubernetes control plane on loopback for tests and for people.

Components (binaries from ``build.py``'s cache): etcd, kube-apiserver (throwaway CA, client-cert
auth, ``--authorization-mode=Node,RBAC``), kube-controller-manager, kube-scheduler, kwok (fake
nodes, one of them a GPU node), optionally the process node agent (``nodeagent.py``: nodes whose
pods really run, as host processes in their own network namespaces) and the KubeRay operator
with its CRDs. Every component runs in its own process group, logs to
``<workdir>/logs/<name>.log`` and is killed on ``stop()``, on interpreter exit (atexit) and,
through ``PR_SET_PDEATHSIG``, if this Python process dies.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from tests.controlplane import build as cpbuild
from tests.controlplane import procnet
from tests.controlplane.nodeagent import PROCESS_NODE_LABEL, NodeSpec

GPU_NODE = "kwok-gpu-0"
CPU_NODES = ("kwok-cpu-0", "kwok-cpu-1")
GPU_LABEL = "nvidia.com/gpu.present"
GPU_RESOURCE = "nvidia.com/gpu"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/24"
POD_CIDR = "10.244.0.0/16"  # kwok's fake pod IPs; process-backed pods get 10.251.<k>.0/24 (procnet.py)

# With process nodes, kwok's fake nodes carry this taint so that no pod lands there by accident;
# a pod meant for a kwok node (scale tests) adds KWOK_TOLERATION and KWOK_NODE_SELECTOR.
KWOK_TAINT = {"key": "swarm-arena.test/kwok", "value": "fake", "effect": "NoSchedule"}
KWOK_TOLERATION = {"key": "swarm-arena.test/kwok", "operator": "Equal", "value": "fake", "effect": "NoSchedule"}
KWOK_NODE_SELECTOR = {"type": "kwok"}
PROCESS_NODE_SELECTOR = {PROCESS_NODE_LABEL: "true"}
# The session plane's process nodes: two CPU nodes and one GPU node (same GPU label and taint as
# kwok-gpu-0). Capacity is what the scheduler sees; the processes share this machine.
DEFAULT_PROCESS_NODES = (NodeSpec("proc-cpu-0", "8", "32Gi"), NodeSpec("proc-cpu-1", "8", "32Gi"),
                         NodeSpec("proc-gpu-0", "8", "32Gi", gpus=2))


class ControlPlaneError(RuntimeError):
    pass


class ComponentExited(ControlPlaneError):
    """A component process died: waiting any longer is pointless."""


# --------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _child_setup() -> None:  # runs in the child between fork and exec
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the parent


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text[-lines:])


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2,
             on_timeout: Callable[[], str] | None = None) -> Any:
    """Poll ``check`` until it returns a truthy value or ``timeout`` passes.

    Other exceptions (a request refused while a component restarts) count as "not yet" and the
    last one is reported at the deadline; an ``AssertionError`` (a condition that has failed and
    will not turn true: e.g. the evaluation went ``Failed``) and ``ComponentExited`` go through at
    once, so a failed run fails its test now instead of waiting out the timeout."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (ComponentExited, AssertionError):
            raise
        except Exception as exc:  # noqa: BLE001 - polling
            last_exc = exc
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:.0f}s waiting for {what}"
            if last_exc is not None:
                msg += f" (last error: {type(last_exc).__name__}: {last_exc})"
            if on_timeout is not None:
                msg += "\n" + on_timeout()
            raise ControlPlaneError(msg)
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# PKI


@dataclass
class _Pki:
    dir: Path
    ca_cert: bytes = b""
    files: dict[str, Path] = field(default_factory=dict)

    def path(self, name: str) -> str:
        return str(self.files[name])


def make_pki(directory: Path, extra_ips: tuple[str, ...] = ()) -> _Pki:
    """A throwaway CA, the apiserver's serving cert, client certs per component and the
    service-account signing key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    pki = _Pki(directory)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    later = now + dt.timedelta(days=7)

    def write(name: str, data: bytes, private: bool = False) -> None:
        p = directory / name
        p.write_bytes(data)
        if private:
            p.chmod(0o600)
        pki.files[name] = p

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swarm-arena-test-ca")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pki.ca_cert = ca.public_bytes(serialization.Encoding.PEM)
    write("ca.crt", pki.ca_cert)
    write("ca.key", key_pem(ca_key), private=True)

    def issue(name: str, cn: str, orgs: tuple[str, ...] = (), server: bool = False) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        b = (
            x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            svc_ip = next(ipaddress.ip_network(SERVICE_CIDR).hosts())
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default"),
                x509.DNSName("kubernetes.default.svc"), x509.DNSName("kubernetes.default.svc.cluster.local"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(svc_ip),
                *(x509.IPAddress(ipaddress.ip_address(a)) for a in extra_ips),
            ]), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        write(f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        write(f"{name}.key", key_pem(key), private=True)

    issue("apiserver", "kube-apiserver", server=True)
    issue("admin", "swarm-arena-admin", ("system:masters",))
    issue("controller-manager", "system:kube-controller-manager")
    issue("scheduler", "system:kube-scheduler")
    issue("kwok", "kwok", ("system:masters",))  # kwok writes node/pod status for many nodes
    issue("ray-operator", "kuberay-operator", ("system:masters",))
    issue("node-agent", "swarm-arena-node-agent", ("system:masters",))  # registers nodes, writes pod status

    sa_key = ec.generate_private_key(ec.SECP256R1())
    write("sa.key", key_pem(sa_key), private=True)
    write("sa.pub", sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki


def write_kubeconfig(path: Path, server: str, pki: _Pki, user: str) -> Path:
    def b64(name: str) -> str:
        return base64.b64encode(pki.files[name].read_bytes()).decode()

    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "swarm-arena-test",
        "clusters": [{"name": "swarm-arena-test",
                      "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(f"{user}.crt"),
                                          "client-key-data": b64(f"{user}.key")}}],
        "contexts": [{"name": "swarm-arena-test", "context": {"cluster": "swarm-arena-test", "user": user}}],
    }
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------------------------
# processes


_LIVE: set["ControlPlane"] = set()


@atexit.register
def _stop_all() -> None:
    for cp in list(_LIVE):
        with contextlib.suppress(Exception):
            cp.stop()


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"$ {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_child_setup, env=self.env, close_fds=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ComponentExited(
                f"{self.name} exited with code {self.proc.returncode}; log {self.log}:\n{log_tail(self.log)}")

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the child leads its own process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # stragglers in the group, or a stuck leader
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


# --------------------------------------------------------------------------------------------
# the plane

# What the API server's audit log keeps: every request of a ServiceAccount outside kube-system (the
# controllers' own), once, at Metadata level (verb, resource, user; no bodies).
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
"""


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok + KubeRay.

    >>> with ControlPlane() as cp:          # doctest: +SKIP
    ...     print(cp.kubeconfig)
    """

    def __init__(self, workdir: str | os.PathLike | None = None, build_dir: str | os.PathLike | None = None,
                 kuberay: bool = True, timeout: float = 120.0, keep_workdir: bool | None = None,
                 process_nodes: "tuple[NodeSpec | str, ...] | list[NodeSpec | str]" = ()) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="swarm-arena-cp-"))
        self.keep_workdir = keep_workdir if keep_workdir is not None else bool(os.environ.get("SWARM_ARENA_KEEP_CP"))
        self._build_dir = Path(build_dir) if build_dir else None
        self.kuberay = kuberay
        self.timeout = timeout
        self.components: dict[str, Component] = {}
        self.ports: dict[str, int] = {}
        self.kubeconfig: Path = self.workdir / "admin.kubeconfig"
        self.audit_log: Path = self.workdir / "audit" / "audit.log"
        """One JSON line per request of a ServiceAccount outside kube-system (AUDIT_POLICY)."""
        self.server = ""
        self.versions: dict[str, str] = cpbuild.load_versions()
        self.started_in: float | None = None
        self.timings: dict[str, float] = {}
        self._crd_names: list[str] | None = None  # seconds spent in each wait during start()
        self._pki: _Pki | None = None
        self._ssl: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        self.process_node_specs: list[NodeSpec] = [
            n if isinstance(n, NodeSpec) else NodeSpec.parse(n) for n in process_nodes]
        self.network: procnet.PlaneNetwork | None = None  # the process nodes' pod network

    # -- public -----------------------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        return self.build_dir / "bin"

    @property
    def crd_dir(self) -> Path:
        return self.build_dir / "crds"

    @property
    def build_dir(self) -> Path:
        if self._build_dir is None:
            found = cpbuild.find_build()
            if found is None:
                raise ControlPlaneError(
                    "control plane binaries are not built; run `python -m tests.controlplane build`")
            self._build_dir = found
        return self._build_dir

    def bin(self, name: str) -> str:
        return str(self.bindir / name)

    def logs(self) -> dict[str, Path]:
        return {n: c.log for n, c in self.components.items()}

    def __enter__(self) -> "ControlPlane":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "ControlPlane":
        t0 = time.monotonic()
        _LIVE.add(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - t0
        return self

    def stop(self) -> None:
        with self._lock:
            # reverse start order: operators first, etcd last
            for comp in reversed(list(self.components.values())):
                comp.stop()
            if self.network is not None:
                # the agent removes what it made; this also covers an agent that was SIGKILLed
                procnet.remove_plane(self.network.plane_id)
            _LIVE.discard(self)
            if self._own_workdir and not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        return {n: c.proc.pid for n, c in self.components.items() if c.proc is not None}

    def api_client(self):
        """A fresh ``kubernetes.client.ApiClient`` for the admin kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        """Run kubectl as admin; with ``check``, a non-zero exit raises ControlPlaneError with its stderr."""
        result = subprocess.run([self.bin("kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
                                input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET a raw API path as admin; returns (status, body)."""
        req = urllib.request.Request(self.server + path)
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    # -- process nodes ----------------------------------------------------------------------

    def _agent(self, method: str, path: str, body: dict | None = None, timeout: float = 60) -> Any:
        if self.network is None or "node-agent" not in self.components:
            raise ControlPlaneError("this plane has no process nodes (ControlPlane(process_nodes=...), "
                                    "or `python -m tests.controlplane up --process-nodes N`)")
        self.components["node-agent"].check_alive()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.ports['node-agent']}{path}", data=data,
                                     method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise ControlPlaneError(f"node agent {method} {path}: {e.code} {e.read().decode(errors='replace')}") from None

    def process_nodes(self) -> list[dict]:
        """The process nodes as the agent sees them: ``name``, ``cpu``, ``memory``, ``gpus``,
        ``alive`` and ``pods`` (``namespace``, ``name``, ``uid``, ``ip``, ``netns``, ``pids``)."""
        return self._agent("GET", "/nodes")

    def kill_node(self, name: str, remove_after: float = 1.0) -> list[str]:
        """Lose process node ``name`` abruptly, as a machine crash would: every process of every pod
        on it is SIGKILLed at once and its pods' networks vanish; the Node turns NotReady (Unknown) and
        is deleted ``remove_after`` seconds later. Its pods stay bound to the gone node until the
        pod garbage collector removes them (~40 s). Returns the killed pods as ``ns/name``."""
        return self._agent("POST", f"/nodes/{name}/kill", {"remove_after": remove_after})["pods"]

    def cut_node(self, name: str) -> list[str]:
        """Cut process node ``name`` off the network, as a partition would: the host side of each of
        its pods' veths goes down (its pods reach nothing and nothing reaches them, but their
        processes keep running), and the node agent stops talking to the API server for that node
        (no Lease renewals: the node lifecycle controller marks it NotReady (Unknown) after its
        grace period; no pod status writes; pod deletions wait for the reconnect). Undo with
        ``reconnect_node``. Returns its pods as ``ns/name``."""
        return self._agent("POST", f"/nodes/{name}/cut", {})["pods"]

    def reconnect_node(self, name: str) -> list[str]:
        """Bring a node cut off by ``cut_node`` back: links up, Lease renewed, Ready posted again,
        its pods listed afresh (what was deleted meanwhile is stopped now) and their status
        written. Returns its pods as ``ns/name``."""
        return self._agent("POST", f"/nodes/{name}/reconnect", {})["pods"]

    def restart_apiserver(self, down_for: float = 0.0, grace: float = 10.0) -> None:
        """Stop kube-apiserver (SIGTERM, SIGKILL after ``grace`` s), keep it down ``down_for``
        seconds, then start it again with the same flags: the same port, certificates and etcd, so
        every object is still there and every client's kubeconfig still works once it answers.
        Clients see refused connections and broken watches meanwhile, as in a control-plane
        upgrade. Returns once /readyz answers again."""
        comp = self.components["kube-apiserver"]
        comp.stop(grace)
        if down_for > 0:
            time.sleep(down_for)  # the outage itself: how long the API server stays away
        comp.start()
        self._wait("kube-apiserver /readyz after a restart", ("etcd", "kube-apiserver"),
                   lambda: self.get("/readyz", timeout=2)[0] == 200, timeout=90)

    def run_images(self, enabled: bool = True) -> None:
        """From now on, process nodes start containers whose image is in buildah's local store (what
        `make images` builds) from that image's root filesystem, and the others, as before, on the
        host's Python environment (a ``HostFallback`` event on the pod says so). Off by default:
        most tests run code from this checkout that the images do not hold."""
        self._agent("POST", "/images", {"enabled": enabled})

    def add_process_node(self, name: str, cpu: str = "8", memory: str = "32Gi", gpus: int = 0) -> None:
        """Register one more process node (e.g. to replace a killed one; use a fresh name)."""
        self._agent("POST", "/nodes", {"name": name, "cpu": cpu, "memory": memory, "gpus": gpus})

    def pod_url(self, pod_ip: str, port: int, path: str = "/") -> str:
        """A URL for a process-backed pod's port, reachable from this host (it is on the pods' bridge)."""
        if self.network is None or ipaddress.ip_address(pod_ip) not in self.network.subnet:
            raise ControlPlaneError(f"{pod_ip} is not a process-backed pod's address "
                                    f"({self.network.subnet if self.network else 'no process nodes'}); kwok pods "
                                    "have no real address")
        return f"http://{pod_ip}:{port}{path}"

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        """A process-backed container's stdout/stderr, every restart (``kubectl logs`` is not served)."""
        found = sorted((self.workdir / "process-nodes" / "pods").glob(f"{namespace}_{pod}_*/{container}.log"),
                       key=lambda p: p.stat().st_mtime)
        if not found:
            raise ControlPlaneError(f"no log of container {container} of pod {namespace}/{pod} on a process node")
        return found[-1].read_text(errors="replace")

    def leftovers(self) -> dict[str, list[str]]:
        """What of this plane's pod network still exists (namespaces, links, /etc/netns dirs)."""
        return procnet.leftovers(self.network.plane_id) if self.network else {}

    # -- start ------------------------------------------------------------------------------

    def _component(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Component:
        comp = Component(name, argv, self.workdir / "logs" / f"{name}.log", env)
        self.components[name] = comp
        comp.start()
        return comp

    def _tails(self, *names: str) -> Callable[[], str]:
        def render() -> str:
            out = []
            for n in names or tuple(self.components):
                c = self.components.get(n)
                if c is not None:
                    state = "running" if c.alive() else f"exited {c.proc.returncode if c.proc else '?'}"
                    out.append(f"--- {n} ({state}), log {c.log}:\n{log_tail(c.log)}")
            return "\n".join(out)
        return render

    def _alive_and(self, names: tuple[str, ...], check: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            for n in names:
                self.components[n].check_alive()
            return check()
        return run

    def _wait(self, what: str, names: tuple[str, ...], check: Callable[[], Any], timeout: float | None = None) -> Any:
        t0 = time.monotonic()
        try:
            return wait_for(what, self._alive_and(names, check), timeout or self.timeout,
                            on_timeout=self._tails(*names))
        except ComponentExited as exc:
            raise ComponentExited(f"while waiting for {what}: {exc}") from None
        finally:
            self.timings[what] = round(time.monotonic() - t0, 2)

    def _start(self) -> None:
        wd = self.workdir
        wd.mkdir(parents=True, exist_ok=True)
        bindir = self.bindir
        needed = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl",
                  *(("ray-operator",) if self.kuberay else ()))
        missing = [b for b in needed if not (bindir / b).exists()]
        if missing:
            raise ControlPlaneError(f"missing binaries {missing} in {bindir}; run `python -m tests.controlplane build`")
        if self.process_node_specs:
            t = time.monotonic()
            self.network = procnet.create_network()  # sweeps what crashed earlier runs left
            self.timings["pod network"] = round(time.monotonic() - t, 2)
        extra_ips = (self.network.gateway,) if self.network else ()
        self._pki = pki = make_pki(wd / "pki", extra_ips)
        for name in ("etcd-client", "etcd-peer", "apiserver", "controller-manager", "scheduler",
                     "kwok", "ray-metrics", "ray-probe", "node-agent"):
            self.ports[name] = free_port()
        self.server = f"https://127.0.0.1:{self.ports['apiserver']}"
        self._ssl = ssl.create_default_context(cafile=pki.path("ca.crt"))
        self._ssl.load_cert_chain(pki.path("admin.crt"), pki.path("admin.key"))
        write_kubeconfig(self.kubeconfig, self.server, pki, "admin")
        kcfg = {u: write_kubeconfig(wd / f"{u}.kubeconfig", self.server, pki, u)
                for u in ("controller-manager", "scheduler", "kwok", "ray-operator", "node-agent")}

        # etcd
        ec, ep = self.ports["etcd-client"], self.ports["etcd-peer"]
        self._component("etcd", [
            self.bin("etcd"), "--name=default", f"--data-dir={wd / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{ec}", f"--advertise-client-urls=http://127.0.0.1:{ec}",
            f"--listen-peer-urls=http://127.0.0.1:{ep}", f"--initial-advertise-peer-urls=http://127.0.0.1:{ep}",
            f"--initial-cluster=default=http://127.0.0.1:{ep}", "--unsafe-no-fsync=true",
            "--log-level=warn", "--quota-backend-bytes=4294967296",
        ])
        self._wait("etcd /health", ("etcd",), lambda: b'"health":"true"' in urllib.request.urlopen(
            f"http://127.0.0.1:{ec}/health", timeout=2).read(), timeout=30)

        # kube-apiserver, with an audit log of what ServiceAccounts ask (a runtime flag: the build
        # and its cache key do not change); tests/packaging derives the operator's RBAC from it.
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)
        (wd / "audit-policy.yaml").write_text(AUDIT_POLICY)
        self._component("kube-apiserver", [
            self.bin("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{ec}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={pki.path('apiserver.crt')}", f"--tls-private-key-file={pki.path('apiserver.key')}",
            f"--client-ca-file={pki.path('ca.crt')}",
            f"--service-account-key-file={pki.path('sa.pub')}",
            f"--service-account-signing-key-file={pki.path('sa.key')}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--anonymous-auth=false",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            f"--cert-dir={wd / 'apiserver-certs'}",
            f"--audit-policy-file={wd / 'audit-policy.yaml'}", f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json", "--audit-log-mode=blocking",
            "--v=1",
        ])
        self._wait("kube-apiserver /readyz", ("etcd", "kube-apiserver"),
                   lambda: self.get("/readyz", timeout=2)[0] == 200, timeout=90)

        # kube-controller-manager, kube-scheduler and kwok start together
        self._component("kube-controller-manager", [
            self.bin("kube-controller-manager"),
            f"--kubeconfig={kcfg['controller-manager']}",
            f"--authentication-kubeconfig={kcfg['controller-manager']}",
            f"--authorization-kubeconfig={kcfg['controller-manager']}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['controller-manager']}",
            f"--cert-dir={wd / 'kcm-certs'}",
            "--leader-elect=false",
            "--controllers=*",
            f"--service-account-private-key-file={pki.path('sa.key')}",
            f"--root-ca-file={pki.path('ca.crt')}",
            f"--cluster-signing-cert-file={pki.path('ca.crt')}",
            f"--cluster-signing-key-file={pki.path('ca.key')}",
            "--use-service-account-credentials=true",  # each controller with its own RBAC role, as kubeadm does
            "--concurrent-gc-syncs=10",
            "--profiling=false", "--v=1",
        ])
        self._component("kube-scheduler", [
            self.bin("kube-scheduler"),
            f"--kubeconfig={kcfg['scheduler']}",
            f"--authentication-kubeconfig={kcfg['scheduler']}",
            f"--authorization-kubeconfig={kcfg['scheduler']}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['scheduler']}",
            f"--cert-dir={wd / 'scheduler-certs'}",
            "--leader-elect=false", "--profiling=false", "--v=1",
        ])
        self._component("kwok", [
            self.bin("kwok"),
            f"--kubeconfig={kcfg['kwok']}",
            f"--config={self.build_dir / 'kwok-stages.yaml'}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            "--manage-nodes-with-label-selector=",
            f"--cidr={POD_CIDR}", "--node-ip=127.0.0.1",
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
            "--node-lease-duration-seconds=40",
        ])
        if self.process_node_specs:
            assert self.network is not None
            repo_root = str(Path(__file__).resolve().parents[2])
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo_root, os.environ.get("PYTHONPATH")])))
            self._component("node-agent", [
                sys.executable, "-m", "tests.controlplane.nodeagent",
                f"--kubeconfig={kcfg['node-agent']}", f"--workdir={wd / 'process-nodes'}",
                f"--network={json.dumps(self.network.to_json())}",
                f"--python-bin={Path(sys.executable).parent}",
                f"--apiserver-port={self.ports['apiserver']}", f"--control-port={self.ports['node-agent']}",
                f"--kubernetes-version={self.versions['KUBERNETES_VERSION']}",
                *(f"--node={n.name}:{n.cpu}:{n.memory}:{n.gpus}" for n in self.process_node_specs),
            ], env=env)
        t = time.monotonic()
        core = self._core()
        self._create_nodes(core)
        self.timings["create nodes"] = round(time.monotonic() - t, 2)
        if self.kuberay:
            t = time.monotonic()
            self._apply_crds()
            self.timings["create KubeRay CRDs"] = round(time.monotonic() - t, 2)

        self._wait_https_health("kube-controller-manager", self.ports["controller-manager"])
        self._wait_https_health("kube-scheduler", self.ports["scheduler"])
        self._wait("all nodes Ready and untainted (kwok, process node agent, node lifecycle controller)",
                   ("kwok", "kube-controller-manager", *(("node-agent",) if self.network else ())),
                   lambda: self._nodes_ready(core), timeout=90)
        self._wait("ServiceAccount default/default (controller-manager)", ("kube-controller-manager",),
                   lambda: core.read_namespaced_service_account("default", "default"), timeout=60)

        if self.kuberay:
            self._wait("KubeRay CRDs served", ("kube-apiserver",), self._crds_served, timeout=60)
            self._wait("KubeRay CRDs Established", ("kube-apiserver",), self._crds_established, timeout=30)
            env = dict(os.environ, KUBECONFIG=str(kcfg["ray-operator"]))
            self._component("ray-operator", [
                self.bin("ray-operator"),  # reads KUBECONFIG (controller-runtime)
                f"-metrics-addr=127.0.0.1:{self.ports['ray-metrics']}",
                f"-health-probe-bind-address=127.0.0.1:{self.ports['ray-probe']}",
                "-enable-leader-election=false",
                "-log-stdout-encoder=console",
            ], env=env)
            self._wait("ray-operator /readyz", ("ray-operator",),
                       lambda: urllib.request.urlopen(
                           f"http://127.0.0.1:{self.ports['ray-probe']}/readyz", timeout=2).status == 200)

    def _core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api_client())

    def _wait_https_health(self, name: str, port: int) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the component's self-signed serving cert, on loopback

        def ok() -> bool:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=2) as r:
                return r.status == 200
        self._wait(f"{name} /healthz", (name,), ok, timeout=60)

    # -- nodes ------------------------------------------------------------------------------

    @staticmethod
    def node_manifest(name: str, gpu: bool = False, kwok_taint: bool = False) -> dict:
        labels = {
            "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux", "kubernetes.io/hostname": name,
            "node-role.kubernetes.io/agent": "", "type": "kwok",
        }
        capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "500Gi"}
        taints = []
        if gpu:
            labels[GPU_LABEL] = "true"
            labels["nvidia.com/gpu.product"] = "NVIDIA-H100-80GB-HBM3"
            capacity[GPU_RESOURCE] = "4"
            taints.append({"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"})
        if kwok_taint:
            taints.append(dict(KWOK_TAINT))
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels,
                         "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"taints": taints} if taints else {},
            "status": {"capacity": capacity, "allocatable": dict(capacity)},  # kwok fills in the rest
        }

    def _create_nodes(self, core) -> None:
        taint = bool(self.process_node_specs)
        for name in CPU_NODES:
            core.create_node(self.node_manifest(name, kwok_taint=taint))
        core.create_node(self.node_manifest(GPU_NODE, gpu=True, kwok_taint=taint))

    def _nodes_ready(self, core) -> bool:
        nodes = core.list_node().items
        names = {n.metadata.name for n in nodes}
        if names != {*CPU_NODES, GPU_NODE, *(n.name for n in self.process_node_specs)}:
            return False
        for n in nodes:
            conds = {c.type: c.status for c in (n.status.conditions or [])}
            if conds.get("Ready") != "True":
                return False
            # the node lifecycle controller lifts node.kubernetes.io/not-ready once it saw Ready
            if any(t.key.startswith("node.kubernetes.io/") for t in (n.spec.taints or [])):
                return False
        return True

    # -- KubeRay ----------------------------------------------------------------------------

    def crd_names(self) -> list[str]:
        if self._crd_names is None:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are megabytes of YAML
            names = []
            for f in sorted(self.crd_dir.glob("*.yaml")):
                for doc in yaml.load_all(f.read_text(), Loader=loader):
                    if doc and doc.get("kind") == "CustomResourceDefinition":
                        names.append(doc["metadata"]["name"])
            self._crd_names = names
        return self._crd_names

    def _apply_crds(self) -> None:
        # kubectl: fast for megabyte-sized objects (the Python client validates every field)
        self.kubectl("create", "-f", str(self.crd_dir), timeout=120)

    def _crds_served(self) -> bool:
        """Cheap poll: discovery lists a CRD's resource only once it is Established (GETting the
        megabyte-sized CRDs in a tight loop would starve the API server of CPU)."""
        served: set[str] = set()
        for group_version in {f"{n.split('.', 1)[1]}" for n in self.crd_names()}:
            status, body = self.get(f"/apis/{group_version}/v1")
            if status != 200:
                return False
            served |= {f"{r['name']}.{group_version}" for r in json.loads(body)["resources"]}
        return set(self.crd_names()) <= served

    def _crds_established(self) -> bool:
        return self.crds_established(*self.crd_names())

    def crds_established(self, *names: str) -> bool:
        """Whether every named CRD has the condition Established=True (one GET each)."""
        for name in names:
            status, body = self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            if status != 200:
                return False
            conds = {c["type"]: c["status"] for c in json.loads(body).get("status", {}).get("conditions", [])}
            if conds.get("Established") != "True":
                return False
        return True


# --------------------------------------------------------------------------------------------
# `python -m tests.controlplane up`


def main_up(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.controlplane up",
                                 description="Build if needed, start the control plane, wait for Ctrl-C.")
    ap.add_argument("--workdir", help="directory for kubeconfig, PKI, etcd data and logs (default: a temp dir)")
    ap.add_argument("--no-kuberay", action="store_true", help="do not start the KubeRay operator")
    ap.add_argument("--process-nodes", type=int, default=0, metavar="N",
                    help="N CPU nodes whose pods really run as host processes (proc-cpu-0...); kwok's "
                         "fake nodes are then tainted so that pods land on them only when they ask")
    ap.add_argument("--process-gpu-nodes", type=int, default=0, metavar="M",
                    help="M process nodes with nvidia.com/gpu (proc-gpu-0...), labelled and tainted like kwok-gpu-0")
    args = ap.parse_args(argv)
    if args.process_nodes < 0 or args.process_gpu_nodes < 0:
        ap.error("--process-nodes and --process-gpu-nodes must be >= 0")
    nodes = [NodeSpec(f"proc-cpu-{i}", "8", "32Gi") for i in range(args.process_nodes)]
    nodes += [NodeSpec(f"proc-gpu-{i}", "8", "32Gi", gpus=2) for i in range(args.process_gpu_nodes)]
    if nodes and (why := procnet.available()):
        print(f"cannot start process nodes: {why}", file=sys.stderr)
        return 2
    out = cpbuild.build()
    cp = ControlPlane(workdir=args.workdir, build_dir=out, kuberay=not args.no_kuberay,
                      keep_workdir=bool(args.workdir), process_nodes=nodes)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cp.start()
    except ControlPlaneError as exc:
        print(f"control plane failed to start: {exc}", file=sys.stderr)
        return 1
    print(f"control plane up in {cp.started_in:.1f}s ({cp.versions['KUBERNETES_VERSION']}); logs in {cp.workdir / 'logs'}")
    print(f"  binaries: {cp.bindir}  (kubectl, helm are there too)")
    print(json.dumps({"ports": cp.ports, "pids": cp.pids()}))
    print(f"export KUBECONFIG={cp.kubeconfig}")
    print(f"export PATH={cp.bindir}:$PATH")
    if cp.network is not None:
        print(f"process nodes {[n.name for n in nodes]}: pods get addresses in {cp.network.subnet}, reachable "
              f"from this host; pod logs in {cp.workdir / 'process-nodes' / 'pods'}")
    print("Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(1.0):
            for comp in cp.components.values():
                if not comp.alive():
                    print(f"{comp.name} exited with code {comp.proc.returncode if comp.proc else '?'}; log tail:\n"
                          f"{log_tail(comp.log)}", file=sys.stderr)
                    stop.set()
                    break
    finally:
        print("stopping control plane...", flush=True)
        cp.stop()
    print("stopped.")
    return 0
