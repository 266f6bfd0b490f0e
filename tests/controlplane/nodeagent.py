"""The process node agent: Kubernetes nodes whose pods really run, as host processes.

Started by :class:`~tests.controlplane.plane.ControlPlane` beside kwok
(``python -m tests.controlplane.nodeagent ...``; see docs/testing-controlplane.md). It registers
Node objects and keeps them Ready (Lease heartbeats), and for every pod bound to one of them acts
as a kubelet would, with these means:

* network: a network namespace per pod with an address from the plane's pod /24 on a bridge
  (``procnet.py``); cluster DNS through a per-pod hosts file (``/etc/netns/<ns>/hosts``) listing
  every Service's ready endpoint IPs, rewritten in place when EndpointSlices change;
* containers: ``ip netns exec <ns> unshare --mount --uts --ipc --pid --fork --kill-child`` runs a
  container's command/args with the kubelet's environment, in its own PID namespace (so killing
  its init kills every process it started), with a private tmpfs ``/dev/shm``, the pod's own
  ``/tmp`` (a directory under the plane's workdir) and bind mounts for the pod's volumes; the
  image is NOT used: the host's Python environment (the plane's ``sys.executable`` directory
  first on PATH) stands in for it;
* probes (exec through ``nsenter``, HTTP and TCP from the host), restarts by ``restartPolicy``,
  pod status (podIP, phase, conditions, container statuses with restart counts and exit codes);
* deletion: SIGTERM, SIGKILL after the grace period, namespace removed, pod object released;
* node loss on demand (``POST /nodes/<name>/kill`` on the control port): every process of every
  pod on the node SIGKILLed at once, its network gone, the Node NotReady and then deleted.

Everything started here dies with this process (PR_SET_PDEATHSIG through every wrapper, PID
namespaces) and this process dies with the plane's process.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import faulthandler
import http.client
import http.server
import json
import logging
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.controlplane import images, podspec, procnet

log = logging.getLogger("nodeagent")

GPU_LABEL = "nvidia.com/gpu.present"
GPU_RESOURCE = "nvidia.com/gpu"
PROCESS_NODE_LABEL = "swarm-arena.test/process-node"
LEASE_NS = "kube-node-lease"
LEASE_SECONDS = 40
HEARTBEAT_S = 10.0
SUPERVISE_S = 0.25
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0)  # kubelet: 10 s doubling to 5 min; shorter here

_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup() -> None:
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class NodeSpec:
    name: str
    cpu: str = "8"
    memory: str = "32Gi"
    gpus: int = 0
    pods: int = 110

    @classmethod
    def parse(cls, text: str) -> "NodeSpec":
        """``name[:cpu[:memory[:gpus]]]``"""
        parts = text.split(":")
        kw: dict[str, Any] = {"name": parts[0]}
        for key, value in zip(("cpu", "memory", "gpus"), parts[1:]):
            kw[key] = int(value) if key == "gpus" else value
        return cls(**kw)


# --------------------------------------------------------------------------------------------
# a tiny REST client (dicts in, dicts out) on top of the kubernetes package's ApiClient


class Api:
    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import config

        self.client = config.new_client_from_config(config_file=kubeconfig)

    def _call(self, method: str, path: str, body: Any = None, query: dict | None = None,
              content_type: str = "application/json", timeout: Any = 30):
        m, url, headers, data, post = self.client.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"}, body=body,
            auth_settings=["BearerToken"])
        return self.client.call_api(m, url, header_params=headers, body=data, post_params=post,
                                    _request_timeout=timeout)

    def req(self, method: str, path: str, body: Any = None, query: dict | None = None,
            content_type: str = "application/json", timeout: float = 30) -> Any:
        from kubernetes.client.exceptions import ApiException

        resp = self._call(method, path, body, query, content_type, timeout)
        data = resp.read()
        if not 200 <= resp.status < 300:
            raise ApiException(status=resp.status, reason=f"{method} {path}: {data.decode(errors='replace')[:500]}")
        return json.loads(data) if data else None

    def exists(self, path: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.req("GET", path)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def watch(self, path: str, query: dict, on_list: Callable[[list], None],
              on_event: Callable[[str, dict], None], stop: threading.Event) -> None:
        """List then watch ``path`` until ``stop``; relists after any error (410 Gone included)."""
        while not stop.is_set():
            try:
                listed = self.req("GET", path, query=query)
                on_list(listed.get("items") or [])
                rv = listed["metadata"]["resourceVersion"]
                while not stop.is_set():
                    q = {**query, "watch": "true", "resourceVersion": rv, "timeoutSeconds": "120",
                         "allowWatchBookmarks": "true"}
                    resp = self._call("GET", path, query=q, timeout=(10, 150)).response
                    if resp.status != 200:
                        raise RuntimeError(f"watch {path}: HTTP {resp.status} {resp.data[:300]!r}")
                    buf = b""
                    try:
                        for chunk in resp.stream(65536, decode_content=False):
                            buf += chunk
                            while b"\n" in buf:
                                line, buf = buf.split(b"\n", 1)
                                if not line.strip():
                                    continue
                                ev = json.loads(line)
                                if ev["type"] == "ERROR":
                                    raise RuntimeError(f"watch {path}: {ev['object'].get('message')}")
                                rv = ev["object"]["metadata"].get("resourceVersion", rv)
                                if ev["type"] != "BOOKMARK":
                                    on_event(ev["type"], ev["object"])
                    finally:
                        resp.release_conn()
            except Exception as exc:  # noqa: BLE001 - a watch never gives up while the agent runs
                if stop.is_set():
                    return
                log.info("watch %s: %s: %s; relisting", path, type(exc).__name__, exc)
                stop.wait(1.0)


# --------------------------------------------------------------------------------------------
# containers


# The volume mounts of the container's mounts file (PodWorker._mounts_file), under $root.
_MOUNT_VOLUMES = r"""while IFS='	' read -r kind src dst opt; do
  [ -n "$kind" ] || continue
  dst="$root$dst"
  if [ "$kind" = tmpfs ]; then
    mkdir -p "$dst"; mount -t tmpfs -o "size=$opt,mode=1777" "$src" "$dst"; continue
  fi
  if [ ! -e "$dst" ]; then
    if [ -d "$src" ]; then mkdir -p "$dst"; else mkdir -p "$(dirname "$dst")"; : > "$dst"; fi
  fi
  mount --bind "$src" "$dst"
  if [ "$opt" = ro ]; then mount -o remount,bind,ro "$dst"; fi
done < "$mounts"
"""

_SETUP = r"""
set -e
hn=$1; podtmp=$2; shm=$3; wd=$4; mounts=$5; keep=$6; hosttmp=$7; shift 7
root=
hostname "$hn"
mount -t tmpfs -o "size=$shm,mode=1777" shm /dev/shm
# The pod gets its own /tmp; host paths under /tmp that stand in for the image (the Python
# environment, the checkout it was installed from) stay visible at the same path.
if [ -n "$keep" ]; then mkdir -p "$hosttmp"; mount --bind /tmp "$hosttmp"; fi
mount --bind "$podtmp" /tmp
if [ -n "$keep" ]; then
  IFS=:; for p in $keep; do
    rel=${p#/tmp/}; mkdir -p "/tmp/$rel"; mount --bind "$hosttmp/$rel" "/tmp/$rel"
  done; unset IFS
  umount -l "$hosttmp"
fi
""" + _MOUNT_VOLUMES + r"""mkdir -p "$wd" 2>/dev/null || true
cd "$wd"
exec "$@"
"""


# A container from its image: an overlay on the image's root filesystem (shared read-only by every
# container of the image; the writes go to the container's own upper directory, fresh at each start
# as a runtime's writable layer is), the kernel file systems, the pod's hosts file (cluster DNS),
# the volume mounts, then the command chrooted as the image's (or the pod's) user.
_SETUP_IMAGE = r"""
set -e
cpath=$PATH; PATH=/usr/sbin:/usr/bin:/sbin:/bin
hn=$1; shm=$2; wd=$3; mounts=$4; lower=$5; cdir=$6; ro=$7; uid=$8; gid=$9; shift 9
hostname "$hn"
root=$cdir/root
mkdir -p "$root" "$cdir/upper" "$cdir/work"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$cdir/upper,workdir=$cdir/work" "$root"
mkdir -p "$root/proc" "$root/dev" "$root/sys" "$root/etc" "$root/tmp"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=755,size=65536k tmpfs "$root/dev"
for d in null zero full random urandom tty; do : > "$root/dev/$d"; mount --bind "/dev/$d" "$root/dev/$d"; done
mkdir -p "$root/dev/shm" "$root/dev/pts" "$root/dev/mqueue"
mount -t tmpfs -o "size=$shm,mode=1777" shm "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"; ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"; ln -s /proc/self/fd/2 "$root/dev/stderr"
mount --rbind /sys "$root/sys"; mount -o remount,bind,ro "$root/sys" 2>/dev/null || true
for f in hosts resolv.conf; do
  if [ -e "/etc/$f" ]; then rm -f "$root/etc/$f"; : > "$root/etc/$f"; mount --bind "/etc/$f" "$root/etc/$f"; fi
done
""" + _MOUNT_VOLUMES + r"""mkdir -p "$root$wd"
if [ "$ro" = 1 ]; then mount -o remount,bind,ro "$root"; fi
PATH=$cpath; export PATH
exec /usr/bin/unshare --root="$root" --wd="$wd" --setgid "$gid" --setuid "$uid" -- "$@"
"""


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _signal(pid: int | None, sig: int) -> None:
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


@dataclass
class ContainerRun:
    name: str
    init: bool
    proc: subprocess.Popen | None = None
    started_at: str = ""
    finished_at: str = ""
    restarts: int = 0
    exit_code: int | None = None
    last_terminated: dict | None = None  # this run's end
    previous: dict | None = None  # the end of the run before a restart (status lastState)
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    ready: bool = False
    started: bool = False  # startup probe passed (or none)
    next_start: float = 0.0
    probe_state: dict = field(default_factory=dict)
    # from its image (None: the host's environment stands in): the image, user and environment
    image: images.Image | None = None
    user: tuple[int, int] = (0, 0)
    env: dict = field(default_factory=dict)

    def pid1(self) -> int | None:
        """The container's init (the first process of its PID namespace), as seen from the host."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        kids = _children(self.proc.pid)
        return kids[0] if kids else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _exit_code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc


_UNSHARE_SIGKILL = b"unshare: sigprocmask unblock failed: Invalid argument\n"


def _killed_init(log: Path) -> bool:
    """unshare (util-linux 2.38) re-raises its child's fatal signal on itself; for SIGKILL that
    fails with this message and exit status 1. A kubelet reports such a container as 137."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - len(_UNSHARE_SIGKILL)))
            return f.read() == _UNSHARE_SIGKILL
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# pods


class PodWorker(threading.Thread):
    """Runs one pod from sandbox to removal. Its processes are spawned from this thread, which
    lives until they are gone (PR_SET_PDEATHSIG follows the spawning thread)."""

    def __init__(self, agent: "Agent", node: str, pod: dict, slot: int, address: str) -> None:
        super().__init__(name=f"pod-{pod['metadata']['namespace']}/{pod['metadata']['name']}", daemon=True)
        self.agent = agent
        self.node = node
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        self.ns = pod["metadata"]["namespace"]
        self.pod_name = pod["metadata"]["name"]
        self.slot = slot
        self.address = address
        self.netns = agent.net.netns_name(slot, self.pod_name)
        self.dir = agent.net.files / "pods" / f"{self.ns}_{self.pod_name}_{self.uid[:8]}"  # not under /tmp
        self.logdir = agent.workdir / "pods" / f"{self.ns}_{self.pod_name}_{self.uid[:8]}"
        self.stop_requested = threading.Event()
        self.grace = 30.0
        self.killed = threading.Event()  # node lost: no more API writes
        self.release_object = False  # delete the pod object (grace 0) once stopped
        self.runs: dict[str, ContainerRun] = {}
        self.phase = "Pending"
        self.start_time = now()
        self.conditions: dict[str, dict] = {}
        self._last_status: dict | None = None
        self.message = ""
        self.reason = ""
        self.lock = threading.Lock()
        spec = pod.get("spec", {})
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.init_specs = spec.get("initContainers") or []
        self.specs = spec.get("containers") or []
        self.volume_dirs: dict[str, Path] = {}
        self.memory_volumes: dict[str, str] = {}  # emptyDir medium Memory: name -> sizeLimit
        self.events_said: set[tuple[str, str]] = set()

    # -- public (other threads) -------------------------------------------------------------

    def request_stop(self, grace: float, release: bool = True) -> None:
        self.grace = grace
        self.release_object = release
        self.stop_requested.set()

    def kill_now(self) -> None:
        """Node crash: SIGKILL every process at once, drop the network, write nothing."""
        self.killed.set()
        with self.lock:
            for run in self.runs.values():
                _signal(run.pid1(), signal.SIGKILL)
                if run.proc is not None:
                    _signal(run.proc.pid, signal.SIGKILL)
        self.agent.net.remove_pod(self.slot, self.pod_name)
        self.stop_requested.set()

    def pids(self) -> dict[str, int]:
        with self.lock:
            return {n: r.proc.pid for n, r in self.runs.items() if r.running()}

    def update_hosts(self, text: str) -> None:
        path = procnet.ETC_NETNS / self.netns / "hosts"
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, text.encode())
                os.ftruncate(fd, len(text.encode()))
            finally:
                os.close(fd)

    def hosts_text(self) -> str:
        spec = self.pod.get("spec", {})
        return podspec.hosts_file(self.address, self.pod_name, self.ns, self.agent.service_list(),
                                  hostname=spec.get("hostname", ""), subdomain=spec.get("subdomain", ""))

    # -- the pod's life ---------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - report, never kill the agent
            log.exception("pod %s/%s: %s", self.ns, self.pod_name, exc)
            self.phase, self.reason, self.message = "Failed", "NodeAgentError", f"{type(exc).__name__}: {exc}"
            self._write_status(force=True)
        finally:
            self._stop_all(0 if self.killed.is_set() else self.grace)
            if not self.killed.is_set():
                self.agent.net.remove_pod(self.slot, self.pod_name)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.agent.pod_gone(self)
            if self.release_object and not self.killed.is_set():
                self.agent.release_pod(self.ns, self.pod_name, self.uid)

    def _run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        (self.dir / "tmp").chmod(0o1777)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.agent.net.add_pod(self.slot, self.pod_name, self.address, self.hosts_text())
        if self.agent.is_cut(self.node):  # cut off while its sandbox was made
            procnet.ip("link", "set", self.agent.net.veth_name(self.slot), "down", check=False)
        self.pod.setdefault("status", {}).update(
            podIP=self.address, podIPs=[{"ip": self.address}], hostIP=self.agent.host_ip,
            hostIPs=[{"ip": self.agent.host_ip}])
        for c in self.init_specs:
            self.runs[c["name"]] = ContainerRun(c["name"], init=True)
        for c in self.specs:
            self.runs[c["name"]] = ContainerRun(c["name"], init=False)
        self._set_condition("PodScheduled", True)
        self._set_condition("PodReadyToStartContainers", True)
        self._set_condition("Initialized", not self.init_specs)
        self._set_condition("ContainersReady", False, "ContainersNotReady")
        self._set_condition("Ready", False, "ContainersNotReady")
        self._write_status(force=True)

        # volumes: retried until they can be made (a missing Secret may appear later)
        while not self.stop_requested.is_set():
            try:
                self._make_volumes()
                break
            except podspec.PodConfigError as exc:
                self._all_waiting("ContainerCreating", str(exc))
                self._write_status()
                self.stop_requested.wait(2.0)

        # init containers, one after another
        for c in self.init_specs:
            run = self.runs[c["name"]]
            while not self.stop_requested.is_set():
                if run.proc is not None and not run.running():
                    code = self._reap(run)
                    if code == 0:
                        self._write_status()
                        break
                    if self.restart_policy == "Never":
                        self.phase, self.reason = "Failed", "InitContainerFailed"
                        self._write_status()
                        self._idle()
                        return
                    self._backoff(run)
                if run.proc is None and time.monotonic() >= run.next_start:
                    self._start(c, run)
                self._write_status()
                self.stop_requested.wait(SUPERVISE_S)
            if self.stop_requested.is_set():
                return
        if self.init_specs:
            self._set_condition("Initialized", True)

        # containers
        while not self.stop_requested.is_set():
            for c in self.specs:
                run = self.runs[c["name"]]
                if run.proc is not None and not run.running() and run.exit_code is None:
                    code = self._reap(run)
                    if self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0):
                        self._backoff(run)
                if run.proc is None:
                    if time.monotonic() >= run.next_start:
                        self._start(c, run)
                if run.running():
                    self._probe(c, run)
            self._fold_phase()
            self._write_status()
            if self.phase in ("Succeeded", "Failed"):
                self._idle()
                return
            self.stop_requested.wait(SUPERVISE_S)

    def _idle(self) -> None:
        """A finished pod keeps its namespace until deleted, as a kubelet keeps the sandbox."""
        self.stop_requested.wait()

    def _backoff(self, run: ContainerRun) -> None:
        delay = RESTART_BACKOFF[min(run.restarts, len(RESTART_BACKOFF) - 1)]
        run.restarts += 1
        run.previous, run.last_terminated = run.last_terminated, None
        run.next_start = time.monotonic() + delay
        run.waiting = ("CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container={run.name} "
                                           f"pod={self.pod_name}")
        run.proc = None
        run.exit_code = None

    def _all_waiting(self, reason: str, message: str) -> None:
        for run in self.runs.values():
            if not run.running():
                run.waiting = (reason, message)

    def _fold_phase(self) -> None:
        runs = [self.runs[c["name"]] for c in self.specs]
        if self.restart_policy != "Always" and runs and all(r.exit_code is not None for r in runs):
            ok = all(r.exit_code == 0 for r in runs)
            if self.restart_policy == "Never" or ok:
                self.phase = "Succeeded" if ok else "Failed"
        elif any(r.running() or r.exit_code is not None or r.restarts for r in runs):
            self.phase = "Running"
        ready = bool(runs) and all(r.running() and r.ready for r in runs)
        self._set_condition("ContainersReady", ready, "" if ready else "ContainersNotReady")
        self._set_condition("Ready", ready, "" if ready else "ContainersNotReady")

    # -- volumes ----------------------------------------------------------------------------

    def _make_volumes(self) -> None:
        sources = self.agent.sources(self.node)
        vroot = self.dir / "volumes"
        for vol in self.pod.get("spec", {}).get("volumes") or []:
            vf = podspec.volume_files(self.pod, vol, sources, self.agent.token_for(self.pod))
            if vf.kind == "hostPath":
                self.volume_dirs[vf.name] = Path(vf.host_path)
                continue
            if vf.kind == "emptyDir" and vf.medium == "Memory":
                self.memory_volumes[vf.name] = vf.size_limit
                self.volume_dirs[vf.name] = Path("/dev/null")  # a tmpfs per container, see _mounts_file
                continue
            d = vroot / vf.name
            d.mkdir(parents=True, exist_ok=True)
            if vf.kind == "emptyDir":
                d.chmod(0o777)  # as a kubelet makes it: writable by any container user
            for rel, text in vf.files.items():
                p = d / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
            self.volume_dirs[vf.name] = d

    def _mounts_file(self, c: dict, rootfs: Path | None = None) -> Path:
        """The container's mounts for the setup script; with ``rootfs`` (the image's), each target
        is resolved against it (images.in_root)."""
        lines = []
        target = (lambda p: images.in_root(rootfs, p)) if rootfs is not None else (lambda p: p)
        for m in c.get("volumeMounts") or []:
            if m["name"] not in self.volume_dirs:
                raise podspec.PodConfigError(f"container {c['name']}: volumeMount {m['name']!r} names no volume")
            if m["name"] in self.memory_volumes:
                # emptyDir medium Memory (KubeRay's /dev/shm): a tmpfs, one per container (not shared
                # between a pod's containers), sized by sizeLimit or the container's memory limit
                limit = self.memory_volumes[m["name"]]
                size = str(int(podspec.parse_quantity(limit))) if limit else _shm_size(c)
                lines.append(f"tmpfs\t{m['name']}\t{target(m['mountPath'])}\t{size}")
                continue
            src = self.volume_dirs[m["name"]]
            if m.get("subPath"):
                src = src / m["subPath"]
                if not src.exists():
                    src.mkdir(parents=True)
            lines.append(f"bind\t{src}\t{target(m['mountPath'])}\t{'ro' if m.get('readOnly') else 'rw'}")
        path = self.dir / f"{c['name']}.mounts"
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- processes --------------------------------------------------------------------------

    def _start(self, c: dict, run: ContainerRun) -> None:
        try:
            image = self._image(c)
            if image is not None:
                argv, env, cmd = self._image_command(c, run, image)
            else:
                env = podspec.container_env(self.pod, c, self.agent.sources(self.node), self.agent.base_env(self))
                argv = podspec.command_line(c, env)
                cmd = self._host_command(c, argv)
        except (podspec.PodConfigError, images.ImageError) as exc:
            run.waiting = ("CreateContainerConfigError", str(exc))
            run.next_start = time.monotonic() + 2.0
            return
        run.image, run.env = image, env
        logf = self.logdir / f"{c['name']}.log"
        with open(logf, "ab") as out:
            out.write(f"--- {now()} start (restart {run.restarts}){' from ' + image.ref if image else ''}: {argv}\n"
                      .encode())
            out.flush()
            with self.lock:
                run.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, start_new_session=True, preexec_fn=_child_setup,
                                            close_fds=True)
        run.started_at, run.finished_at, run.exit_code = now(), "", None
        run.waiting = None
        run.ready = False
        run.started = c.get("startupProbe") is None
        run.probe_state = {"t0": time.monotonic()}

    def _wrapper(self) -> list[str]:
        return [self.agent.tools["ip"], "netns", "exec", self.netns,
                self.agent.tools["unshare"], "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child",
                "--mount-proc", "--propagation", "private", "--"]

    def _host_command(self, c: dict, argv: list[str]) -> list[str]:
        return [*self._wrapper(), "/bin/sh", "-c", _SETUP, "podinit", self.pod_name, str(self.dir / "tmp"),
                _shm_size(c), c.get("workingDir") or "/tmp", str(self._mounts_file(c)),
                ":".join(self.agent.keep_paths), str(self.dir / "host-tmp"), *argv]

    def _image(self, c: dict) -> images.Image | None:
        """The container's image from the local store, or None for the host fallback (said once
        per container in the pod's events, as a kubelet reports what it did about an image)."""
        if not self.agent.run_images:
            return None
        image = self.agent.images.lookup(c.get("image", ""))
        said = self.events_said
        if image is None:
            if ("fallback", c["name"]) not in said:
                said.add(("fallback", c["name"]))
                why = "no buildah on this machine" if not self.agent.images.available else "not in the local image store"
                self.agent.event(self, c["name"], "Normal", "HostFallback",
                                 f"Image {c.get('image')!r} is {why} (make images builds ours): running the host's "
                                 "Python environment in its place")
            return None
        if ("image", c["name"]) not in said:
            said.add(("image", c["name"]))
            self.agent.images.rootfs(image)
            self.agent.event(self, c["name"], "Normal", "Pulled",
                             f"Container image {image.ref!r} ({image.id[:12]}) is in the local image store: running "
                             "from its root filesystem")
        return image

    def _image_command(self, c: dict, run: ContainerRun, image: images.Image) -> tuple[list[str], dict, list[str]]:
        rootfs = self.agent.images.rootfs(image)
        pod_sc = self.pod.get("spec", {}).get("securityContext") or {}
        sc = {**pod_sc, **(c.get("securityContext") or {})}
        uid, gid, home = images.resolve_user(image.user, rootfs, sc.get("runAsUser"), sc.get("runAsGroup"))
        if sc.get("runAsNonRoot") and uid == 0:
            raise podspec.PodConfigError("container has runAsNonRoot and image will run as root "
                                         f"(pod: {self.ns}/{self.pod_name}, container: {c['name']})")
        base = {**image.env_dict(), **self.agent.kube_env(self)}
        base.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        base.setdefault("HOME", home)
        env = podspec.container_env(self.pod, c, self.agent.sources(self.node), base)
        argv = podspec.command_line(c, env, image.entrypoint, image.cmd)
        wd = c.get("workingDir") or image.workdir or "/"
        cdir = self.dir / "containers" / c["name"]
        shutil.rmtree(cdir, ignore_errors=True)  # a restarted container starts from its image again
        cdir.mkdir(parents=True)
        ro = "1" if sc.get("readOnlyRootFilesystem") else "0"
        run.user = (uid, gid)
        cmd = [*self._wrapper(), "/bin/sh", "-c", _SETUP_IMAGE, "podinit", self.pod_name, _shm_size(c), wd,
               str(self._mounts_file(c, rootfs)), str(rootfs), str(cdir), ro, str(uid), str(gid), *argv]
        return argv, env, cmd

    def _reap(self, run: ContainerRun) -> int:
        assert run.proc is not None
        code = _exit_code(run.proc.returncode)
        if code == 1 and _killed_init(self.logdir / f"{run.name}.log"):
            code = 137  # the container's init died of SIGKILL (see _killed_init)
        run.exit_code = code
        run.finished_at = now()
        run.last_terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                               "startedAt": run.started_at, "finishedAt": run.finished_at}
        run.ready = False
        return code

    def _stop_all(self, grace: float) -> None:
        with self.lock:
            live = [r for r in self.runs.values() if r.running()]
        if not live:
            return
        if grace > 0:
            for r in live:
                init = r.pid1()
                # the container's main process gets SIGTERM; its init (a shell, usually) forwards nothing,
                # so its direct children get it too, as with `docker run --init`
                for pid in [init, *(_children(init) if init else [])]:
                    _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(r.running() for r in live):
                time.sleep(0.1)
        for r in live:
            _signal(r.pid1(), signal.SIGKILL)  # ends the PID namespace: every process in it
            if r.proc is not None:
                _signal(r.proc.pid, signal.SIGKILL)
        for r in live:
            if r.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    r.proc.wait(10)
                if r.exit_code is None and r.proc.returncode is not None:
                    self._reap(r)

    # -- probes -----------------------------------------------------------------------------

    def _probe(self, c: dict, run: ContainerRun) -> None:
        t = time.monotonic()
        st = run.probe_state
        for which in ("startupProbe", "livenessProbe", "readinessProbe"):
            if which != "startupProbe" and not run.started:
                continue
            if which == "startupProbe" and run.started:
                continue
            p = podspec.probe(c, which)
            if p is None:
                if which == "readinessProbe":
                    run.ready = True
                continue
            key = which
            last = st.get(key + ".t", st["t0"] + p.initial_delay - p.period)
            if t - last < p.period or t - st["t0"] < p.initial_delay:
                continue
            st[key + ".t"] = t
            ok = self._probe_once(p, run)
            succ, fail = st.get(key + ".s", 0), st.get(key + ".f", 0)
            succ, fail = (succ + 1, 0) if ok else (0, fail + 1)
            st[key + ".s"], st[key + ".f"] = succ, fail
            if which == "readinessProbe":
                if ok and succ >= p.success_threshold:
                    run.ready = True
                elif not ok and fail >= p.failure_threshold:
                    run.ready = False
            elif which == "startupProbe":
                if ok:
                    run.started = True
                elif fail >= p.failure_threshold:
                    self._kill_container(run, f"startup probe failed {fail} times")
            elif not ok and fail >= p.failure_threshold:
                self._kill_container(run, f"liveness probe failed {fail} times")

    def _kill_container(self, run: ContainerRun, why: str) -> None:
        log.info("pod %s/%s container %s: %s; killing it", self.ns, self.pod_name, run.name, why)
        _signal(run.pid1(), signal.SIGKILL)

    def _probe_once(self, p: podspec.Probe, run: ContainerRun) -> bool:
        try:
            if p.kind == "http":
                scheme = "https" if p.scheme == "HTTPS" else "http"
                req = urllib.request.Request(f"{scheme}://{self.address}:{p.port}{p.path}",
                                             headers=dict(p.headers))
                with urllib.request.urlopen(req, timeout=p.timeout) as r:
                    return 200 <= r.status < 400
            if p.kind == "tcp":
                with socket.create_connection((self.address, p.port), timeout=p.timeout):
                    return True
            init = run.pid1()
            if init is None:
                return False
            enter = [self.agent.tools["nsenter"], "-t", str(init), "-n", "-m", "-u", "-i", "-p"]
            if run.image is not None:  # into the container's root, working directory and user
                env = run.env
                enter += ["-r", "-w", "-G", str(run.user[1]), "-S", str(run.user[0])]
            else:
                env = podspec.container_env(self.pod, self._spec(run.name), self.agent.sources(self.node),
                                            self.agent.base_env(self))
            r = subprocess.run([*enter, "--", *p.command], env=env, capture_output=True, timeout=p.timeout + 1,
                               preexec_fn=_child_setup)
            if r.returncode != 0:
                log.debug("pod %s/%s container %s: exec probe exited %d: %s", self.ns, self.pod_name, run.name,
                          r.returncode, r.stderr.decode(errors="replace")[-300:])
            return r.returncode == 0
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired, podspec.PodConfigError,
                http.client.HTTPException):
            return False

    def _spec(self, name: str) -> dict:
        return next(c for c in [*self.specs, *self.init_specs] if c["name"] == name)

    # -- status -----------------------------------------------------------------------------

    def _set_condition(self, kind: str, ok: bool, reason: str = "") -> None:
        status = "True" if ok else "False"
        cur = self.conditions.get(kind)
        if cur and cur["status"] == status:
            return
        self.conditions[kind] = {"type": kind, "status": status, "lastTransitionTime": now(),
                                 "lastProbeTime": None, **({"reason": reason} if reason else {})}

    def _container_status(self, c: dict, init: bool) -> dict:
        run = self.runs[c["name"]]
        if run.running():
            state = {"running": {"startedAt": run.started_at}}
        elif run.waiting:
            state = {"waiting": {"reason": run.waiting[0], **({"message": run.waiting[1]} if run.waiting[1] else {})}}
        elif run.last_terminated:
            state = {"terminated": run.last_terminated}
        else:
            state = {"waiting": {"reason": "PodInitializing"}}
        out = {
            "name": c["name"], "image": c.get("image", ""), "imageID": "",
            "containerID": f"process://{run.proc.pid}" if run.proc is not None else None,
            "ready": bool(run.running() and run.ready) if not init else (run.exit_code == 0),
            "started": bool(run.running() and run.started), "restartCount": run.restarts, "state": state,
            "lastState": {"terminated": run.previous} if run.previous else {},
        }
        if out["containerID"] is None:
            del out["containerID"]
        return out

    def _write_status(self, force: bool = False) -> None:
        if self.killed.is_set() or self.agent.is_cut(self.node):  # cut off: written after the reconnect
            return
        order = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
        status = {
            "phase": self.phase, "podIP": self.address, "podIPs": [{"ip": self.address}],
            "hostIP": self.agent.host_ip, "hostIPs": [{"ip": self.agent.host_ip}], "startTime": self.start_time,
            "conditions": [self.conditions[k] for k in order if k in self.conditions],
            "containerStatuses": [self._container_status(c, False) for c in self.specs],
            "qosClass": self.pod.get("status", {}).get("qosClass", "BestEffort"),
        }
        if self.init_specs:
            status["initContainerStatuses"] = [self._container_status(c, True) for c in self.init_specs]
        if self.reason:
            status["reason"], status["message"] = self.reason, self.message
        if not force and status == self._last_status:
            return
        try:
            self.agent.api.req("PATCH", f"/api/v1/namespaces/{self.ns}/pods/{self.pod_name}/status",
                               {"metadata": {"uid": self.uid}, "status": status},
                               content_type="application/merge-patch+json")
            self._last_status = status
        except Exception as exc:  # noqa: BLE001 - the pod may be gone; the watch tells us
            log.info("pod %s/%s: status write failed: %s", self.ns, self.pod_name, exc)


def _shm_size(c: dict) -> str:
    limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
    size = int(podspec.parse_quantity(limit)) if limit else 2**30
    return str(max(64 * 2**20, min(size, 4 * 2**30)))


# --------------------------------------------------------------------------------------------
# the agent


class Agent:
    def __init__(self, kubeconfig: str, workdir: Path, net: procnet.PlaneNetwork, nodes: list[NodeSpec],
                 python_bin: str, apiserver_port: int, control_port: int, kubernetes_version: str,
                 run_images: bool = False) -> None:
        self.api = Api(kubeconfig)
        self.images = images.ImageStore()
        self.run_images = run_images  # run pods whose image is in the local store from its root filesystem
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.net = net
        self.python_bin = python_bin
        self.apiserver_port = apiserver_port
        self.control_port = control_port
        self.kubernetes_version = kubernetes_version
        self.host_ip = net.gateway
        self.nodes: dict[str, NodeSpec] = {}
        self.dead_nodes: set[str] = set()
        self.cut_nodes: set[str] = set()  # cut off from the network: no heartbeats, no API traffic
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.node_stops: dict[str, threading.Event] = {}
        self.services: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {}  # (ns, svc) -> slice -> ips
        self._hosts_dirty = threading.Event()
        self.free_addresses = net.pod_addresses()
        self.next_slot = 1
        self._tokens: dict[tuple, tuple[str, float]] = {}
        self.tools = {t: shutil.which(t) or t for t in ("ip", "unshare", "nsenter")}
        bins = net.files / "bin"  # not under the host's /tmp, which a pod's own /tmp hides
        bins.mkdir(parents=True, exist_ok=True)
        self.shim_dir = _write_shims(bins)
        self.keep_paths = _host_tmp_paths(python_bin)
        self._initial_nodes = nodes

    # -- environment for pods ---------------------------------------------------------------

    def base_env(self, w: PodWorker) -> dict[str, str]:
        """A host-fallback container's environment before the pod's own: the host's Python
        environment first on PATH, standing in for the image."""
        host_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        return {"PATH": f"{self.python_bin}:{self.shim_dir}:{host_path}", "HOME": "/tmp", "LANG": "C.UTF-8",
                **self.kube_env(w)}

    def kube_env(self, w: PodWorker) -> dict[str, str]:
        """What a kubelet adds to every container's environment."""
        return {
            "HOSTNAME": w.pod_name,
            "KUBERNETES_SERVICE_HOST": self.host_ip, "KUBERNETES_SERVICE_PORT": "443",
            "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": f"tcp://{self.host_ip}:443",
            "KUBERNETES_PORT_443_TCP": f"tcp://{self.host_ip}:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": self.host_ip,
            # gRPC's own DNS resolver does not read the hosts file that stands in for cluster DNS
            "GRPC_DNS_RESOLVER": "native",
        }

    def event(self, w: PodWorker, container: str, kind: str, reason: str, message: str) -> None:
        """An Event about a pod's container, as a kubelet writes (best effort, never raises)."""
        if self.is_cut(w.node):
            return
        stamp = now()
        body = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": f"{w.pod_name}."},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": w.ns, "name": w.pod_name,
                                   "uid": w.uid, "fieldPath": f"spec.containers{{{container}}}"},
                "reason": reason, "message": message, "type": kind,
                "source": {"component": "kubelet", "host": w.node}, "reportingComponent": "kubelet",
                "reportingInstance": w.node, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1}
        try:
            self.api.req("POST", f"/api/v1/namespaces/{w.ns}/events", body)
        except Exception as exc:  # noqa: BLE001 - an event is a courtesy
            log.warning("event %s for %s/%s: %s", reason, w.ns, w.pod_name, exc)

    def sources(self, node: str) -> podspec.Sources:
        def secret(ns: str, name: str):
            obj = self.api.exists(f"/api/v1/namespaces/{ns}/secrets/{name}")
            return None if obj is None else podspec.decode_secret(obj.get("data"))

        def config_map(ns: str, name: str):
            obj = self.api.exists(f"/api/v1/namespaces/{ns}/configmaps/{name}")
            return None if obj is None else dict(obj.get("data") or {})

        spec = self.nodes.get(node) or NodeSpec(node)
        return podspec.Sources(secret, config_map, _capacity(spec))

    def token_for(self, pod: dict) -> podspec.TokenSource:
        def token(ns: str, sa: str, audiences: list[str] | None, seconds: int) -> str:
            body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"expirationSeconds": max(seconds, 600),
                             "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"],
                                                "uid": pod["metadata"]["uid"]}}}
            if audiences:
                body["spec"]["audiences"] = audiences
            out = self.api.req("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", body)
            return out["status"]["token"]
        return token

    def service_list(self) -> list[podspec.ServiceAddresses]:
        with self.lock:
            out = []
            for (ns, name), slices in self.services.items():
                ips = tuple(sorted({ip for s in slices.values() for ip in s}))
                if ips:
                    out.append(podspec.ServiceAddresses(ns, name, ips))
        out.append(podspec.ServiceAddresses("default", "kubernetes", (self.host_ip,)))
        return out

    # -- nodes ------------------------------------------------------------------------------

    def register_node(self, spec: NodeSpec) -> None:
        from kubernetes.client.exceptions import ApiException

        with self.lock:
            if spec.name in self.nodes:
                raise ValueError(f"node {spec.name} is already registered")
            if spec.name in self.dead_nodes:  # its pods would never start: say so now
                raise ValueError(f"node {spec.name} was killed; register the replacement under a fresh name")
            self.nodes[spec.name] = spec
            self.node_stops[spec.name] = threading.Event()
        labels = {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux", "kubernetes.io/hostname": spec.name,
                  "type": "process", PROCESS_NODE_LABEL: "true"}
        taints = []
        if spec.gpus:
            labels[GPU_LABEL] = "true"
            labels["nvidia.com/gpu.product"] = "NVIDIA-H100-80GB-HBM3"
            taints.append({"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"})
        cap = _capacity(spec)
        t = now()
        conds = [{"type": k, "status": v, "reason": r, "message": m, "lastHeartbeatTime": t, "lastTransitionTime": t}
                 for k, v, r, m in (
                     ("MemoryPressure", "False", "KubeletHasSufficientMemory", "process node agent"),
                     ("DiskPressure", "False", "KubeletHasNoDiskPressure", "process node agent"),
                     ("PIDPressure", "False", "KubeletHasSufficientPID", "process node agent"),
                     ("Ready", "True", "KubeletReady", "process node agent is posting ready status"))]
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": spec.name, "labels": labels},
            "spec": {"taints": taints} if taints else {},
            "status": {"capacity": cap, "allocatable": cap, "conditions": conds,
                       "addresses": [{"type": "InternalIP", "address": self.host_ip},
                                     {"type": "Hostname", "address": spec.name}],
                       "nodeInfo": {"kubeletVersion": self.kubernetes_version, "operatingSystem": "linux",
                                    "architecture": "amd64", "containerRuntimeVersion": "process://swarm-arena",
                                    "kernelVersion": os.uname().release, "osImage": "host processes",
                                    "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""}},
        }
        try:
            created = self.api.req("POST", "/api/v1/nodes", node)
        except ApiException as exc:
            if exc.status != 409:
                raise
            created = self.api.req("GET", f"/api/v1/nodes/{spec.name}")
        self.api.req("PATCH", f"/api/v1/nodes/{spec.name}/status", {"status": node["status"]},
                     content_type="application/merge-patch+json")
        self._renew_lease(spec.name, created["metadata"]["uid"])
        stop = self.node_stops[spec.name]
        threading.Thread(target=self._heartbeat, args=(spec.name, created["metadata"]["uid"], stop),
                         name=f"lease-{spec.name}", daemon=True).start()
        threading.Thread(target=self.api.watch, name=f"pods-{spec.name}", daemon=True, args=(
            "/api/v1/pods", {"fieldSelector": f"spec.nodeName={spec.name}"},
            lambda items, n=spec.name: self._pods_listed(n, items),
            lambda kind, obj, n=spec.name: self._pod_event(n, kind, obj), stop)).start()
        log.info("node %s registered (%s)", spec.name, cap)

    def _renew_lease(self, node: str, node_uid: str) -> None:
        from kubernetes.client.exceptions import ApiException

        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases"
        spec = {"holderIdentity": node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now_micro()}
        try:
            self.api.req("PATCH", f"{path}/{node}", {"spec": spec}, content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.api.req("POST", path, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": LEASE_NS, "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}]},
                "spec": spec})

    def _heartbeat(self, node: str, node_uid: str, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            if self.is_cut(node):
                continue
            try:
                self._renew_lease(node, node_uid)
                # As the kubelet's status loop: the node lifecycle controller sets Ready Unknown when
                # the Lease went stale (an API server away longer than its grace period); only the
                # kubelet sets it back.
                found = self.api.req("GET", f"/api/v1/nodes/{node}")
                ready = next((c for c in found["status"].get("conditions") or [] if c["type"] == "Ready"), {})
                if ready.get("status") != "True":
                    self._post_ready(node)
                    log.info("node %s: Ready was %s; posted Ready again", node, ready.get("status"))
            except Exception as exc:  # noqa: BLE001
                log.info("lease %s: %s", node, exc)

    def _post_ready(self, node: str) -> None:
        t = now()
        self.api.req("PATCH", f"/api/v1/nodes/{node}/status", {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "process node agent is posting ready status", "lastHeartbeatTime": t,
             "lastTransitionTime": t}]}}, content_type="application/strategic-merge-patch+json")

    def kill_node(self, name: str, remove_after: float) -> list[str]:
        """Abrupt node loss: every process of every pod on it SIGKILLed at once, its pods'
        networks gone, no more heartbeats; the Node goes NotReady, then is deleted."""
        with self.lock:
            if name not in self.nodes:
                raise KeyError(name)
            self.dead_nodes.add(name)
            self.node_stops[name].set()
            victims = [w for w in self.workers.values() if w.node == name]
        threads = [threading.Thread(target=w.kill_now) for w in victims]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t = now()
        with contextlib.suppress(Exception):
            self.api.req("PATCH", f"/api/v1/nodes/{name}/status", {"status": {"conditions": [
                {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                 "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": t,
                 "lastTransitionTime": t}]}}, content_type="application/strategic-merge-patch+json")

        def remove() -> None:
            time.sleep(remove_after)
            with contextlib.suppress(Exception):
                self.api.req("DELETE", f"/api/v1/nodes/{name}")
            with self.lock:
                self.nodes.pop(name, None)
        threading.Thread(target=remove, daemon=True).start()
        log.info("node %s killed: pods %s", name, [f"{w.ns}/{w.pod_name}" for w in victims])
        return [f"{w.ns}/{w.pod_name}" for w in victims]

    def is_cut(self, node: str) -> bool:
        with self.lock:
            return node in self.cut_nodes

    def cut_node(self, name: str) -> list[str]:
        """A network partition of node ``name``: the host side of every pod's veth on it goes down
        (its pods reach nothing, nothing reaches them; their processes keep running), and the node
        stops talking to the API server as a partitioned kubelet would: no Lease renewals, no pod
        status writes, pod changes not acted on until it is reconnected. Returns its pods as ns/name."""
        with self.lock:
            if name not in self.nodes or name in self.dead_nodes:
                raise KeyError(name)
            if name in self.cut_nodes:
                raise ValueError(f"node {name} is already cut off")
            self.cut_nodes.add(name)
            victims = [w for w in self.workers.values() if w.node == name]
        for w in victims:
            procnet.ip("link", "set", self.net.veth_name(w.slot), "down", check=False)  # gone already: nothing to cut
        log.info("node %s cut off: pods %s", name, [f"{w.ns}/{w.pod_name}" for w in victims])
        return [f"{w.ns}/{w.pod_name}" for w in victims]

    def reconnect_node(self, name: str) -> list[str]:
        """End ``cut_node``: links up, the Lease renewed and the Node's Ready condition posted again
        (the node lifecycle controller set it Unknown if the cut outlasted its grace period), then
        the node's pods listed afresh and acted on (a pod deleted meanwhile is stopped now) and
        every pod's status written. Returns its pods as ns/name."""
        with self.lock:
            if name not in self.cut_nodes:
                raise ValueError(f"node {name} is not cut off")
            if name in self.dead_nodes:  # killed while cut off: nothing comes back
                self.cut_nodes.discard(name)
                return []
            victims = [w for w in self.workers.values() if w.node == name]
        for w in victims:
            procnet.ip("link", "set", self.net.veth_name(w.slot), "up", check=False)
        with self.lock:
            self.cut_nodes.discard(name)
        node = self.api.req("GET", f"/api/v1/nodes/{name}")
        self._renew_lease(name, node["metadata"]["uid"])
        self._post_ready(name)
        listed = self.api.req("GET", "/api/v1/pods", query={"fieldSelector": f"spec.nodeName={name}"})
        self._pods_listed(name, listed.get("items") or [])
        for w in victims:
            w._write_status(force=True)
        log.info("node %s reconnected: pods %s", name, [f"{w.ns}/{w.pod_name}" for w in victims])
        return [f"{w.ns}/{w.pod_name}" for w in victims]

    # -- pods -------------------------------------------------------------------------------

    def _pods_listed(self, node: str, items: list[dict]) -> None:
        if self.is_cut(node):
            return  # relisted when reconnected
        seen = {p["metadata"]["uid"] for p in items}
        with self.lock:
            gone = [w for w in self.workers.values() if w.node == node and w.uid not in seen]
        for w in gone:
            w.request_stop(0, release=False)
        for p in items:
            self._pod_event(node, "ADDED", p)

    def _pod_event(self, node: str, kind: str, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            if node in self.dead_nodes or node in self.cut_nodes:
                return  # a cut-off node learns what changed when it is reconnected (a relist)
            w = self.workers.get(uid)
            if kind == "DELETED":
                if w is not None:
                    w.request_stop(0, release=False)
                return
            if pod["metadata"].get("deletionTimestamp"):
                grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
                if w is not None:
                    w.request_stop(grace)
                else:
                    threading.Thread(target=self.release_pod, args=(pod["metadata"]["namespace"],
                                                                    pod["metadata"]["name"], uid), daemon=True).start()
                return
            if w is not None or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return
            if not self.free_addresses:
                log.error("no pod address left in %s", self.net.subnet)
                return
            slot = self.next_slot
            self.next_slot += 1
            w = PodWorker(self, node, pod, slot, self.free_addresses.pop(0))
            self.workers[uid] = w
        w.start()

    def pod_gone(self, w: PodWorker) -> None:
        with self.lock:
            if self.workers.get(w.uid) is w:
                del self.workers[w.uid]
            self.free_addresses.append(w.address)  # reused last (round robin)

    def release_pod(self, ns: str, name: str, uid: str) -> None:
        with contextlib.suppress(Exception):
            self.api.req("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}",
                         {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})

    # -- services -> hosts files ------------------------------------------------------------

    def _slices_listed(self, items: list[dict]) -> None:
        with self.lock:
            self.services.clear()
        for s in items:
            self._slice_event("ADDED", s, notify=False)
        self._hosts_dirty.set()

    def _slice_event(self, kind: str, s: dict, notify: bool = True) -> None:
        meta = s["metadata"]
        svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not svc:
            return
        key = (meta["namespace"], svc)
        ips = tuple(a for ep in s.get("endpoints") or [] if (ep.get("conditions") or {}).get("ready", True) is not False
                    for a in ep.get("addresses") or [])
        with self.lock:
            slices = self.services.setdefault(key, {})
            if kind == "DELETED":
                slices.pop(meta["name"], None)
            else:
                slices[meta["name"]] = ips
            if not slices:
                del self.services[key]
        if notify:
            self._hosts_dirty.set()

    def _hosts_writer(self) -> None:
        while not self.stop.is_set():
            if not self._hosts_dirty.wait(1.0):
                continue
            self._hosts_dirty.clear()
            with self.lock:
                workers = list(self.workers.values())
            for w in workers:
                w.update_hosts(w.hosts_text())

    # -- run --------------------------------------------------------------------------------

    def run(self) -> None:
        threading.Thread(target=_proxy, args=(self.host_ip, 443, "127.0.0.1", self.apiserver_port, self.stop),
                         name="apiserver-proxy", daemon=True).start()
        threading.Thread(target=self._hosts_writer, name="hosts", daemon=True).start()
        threading.Thread(target=self.api.watch, name="endpointslices", daemon=True, args=(
            "/apis/discovery.k8s.io/v1/endpointslices", {}, self._slices_listed, self._slice_event, self.stop)).start()
        for spec in self._initial_nodes:
            self.register_node(spec)
        server = _control_server(self)
        threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
        log.info("agent ready: control port %d, pods in %s", self.control_port, self.net.subnet)
        print("AGENT READY", flush=True)
        self.stop.wait()
        server.shutdown()
        self.shutdown()

    def shutdown(self) -> None:
        with self.lock:
            workers = list(self.workers.values())
            for ev in self.node_stops.values():
                ev.set()
        threads = [threading.Thread(target=w.kill_now) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w in workers:
            w.join(10)

    def describe(self) -> list[dict]:
        with self.lock:
            out = []
            for name, spec in self.nodes.items():
                pods = [{"namespace": w.ns, "name": w.pod_name, "uid": w.uid, "ip": w.address, "netns": w.netns,
                         "pids": w.pids()} for w in self.workers.values() if w.node == name]
                out.append({**asdict(spec), "alive": name not in self.dead_nodes, "cut": name in self.cut_nodes,
                            "pods": pods})
            return out


def _capacity(spec: NodeSpec) -> dict[str, str]:
    cap = {"cpu": str(spec.cpu), "memory": str(spec.memory), "pods": str(spec.pods), "ephemeral-storage": "100Gi"}
    if spec.gpus:
        cap[GPU_RESOURCE] = str(spec.gpus)
    return cap


_WGET_SHIM = """#!/usr/bin/env python3
# wget stand-in for pods of the process node agent (the host has no wget): supports what probes use,
# `wget [--tries N] [-T SECONDS] [-q] [-O FILE|-O-] URL`.
import sys, urllib.request
args, url, out, timeout = sys.argv[1:], None, None, 10.0
i = 0
while i < len(args):
    a = args[i]
    if a in ("-T", "--timeout", "--tries", "-t", "-O"):
        if a in ("-T", "--timeout"): timeout = float(args[i + 1])
        if a == "-O": out = args[i + 1]
        i += 2; continue
    if a.startswith("-O"): out = a[2:]
    elif not a.startswith("-"): url = a
    i += 1
try:
    body = urllib.request.urlopen(url, timeout=timeout).read()
except Exception as exc:
    print(f"wget: {exc}", file=sys.stderr); sys.exit(4 if not hasattr(exc, "code") else 8)
if out in (None, "-"): sys.stdout.buffer.write(body)
else: open(out, "wb").write(body)
"""


def _host_tmp_paths(python_bin: str) -> list[str]:
    """What a pod's own /tmp would hide that stands in for the image: the Python environment and
    the checkout (an editable install) when they live under the host's /tmp (a clone in /tmp)."""
    env = Path(python_bin).resolve().parent
    checkout = Path(__file__).resolve().parents[2]
    paths = []
    for p in (env, checkout):
        if p.is_relative_to("/tmp") and p != Path("/tmp") and not any(p.is_relative_to(q) for q in paths):
            paths = [q for q in paths if not q.is_relative_to(p)] + [p]
    if any(":" in str(p) or "\n" in str(p) for p in paths):
        raise SystemExit(f"process nodes cannot keep {paths} visible in pods (':' in a path)")
    return [str(p) for p in paths]


def _write_shims(bindir: Path) -> str:
    """Tools KubeRay's containers call that the host may lack (documented): ``wget``."""
    if shutil.which("wget") is None:
        p = bindir / "wget"
        p.write_text(_WGET_SHIM)
        p.chmod(0o755)
    return str(bindir)


# --------------------------------------------------------------------------------------------
# the API server, reachable from pods: TCP relay gateway:443 -> 127.0.0.1:<apiserver port>


def _proxy(listen_host: str, listen_port: int, target_host: str, target_port: int, stop: threading.Event) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((listen_host, listen_port))
    srv.listen(64)
    srv.settimeout(1.0)

    def pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                b.shutdown(socket.SHUT_WR)

    while not stop.is_set():
        try:
            client, _ = srv.accept()
        except socket.timeout:
            continue
        except OSError:
            break
        try:
            upstream = socket.create_connection((target_host, target_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        client.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()
    srv.close()


# --------------------------------------------------------------------------------------------
# control API (127.0.0.1 only): GET /nodes, POST /nodes, POST /nodes/<name>/{kill,cut,reconnect}, POST /images,
# GET /healthz


def _control_server(agent: Agent) -> socketserver.TCPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:
            log.info("control: " + fmt, *args)

        def _reply(self, code: int, obj: Any) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/healthz":
                return self._reply(200, {"ok": True})
            if self.path == "/nodes":
                return self._reply(200, agent.describe())
            self._reply(404, {"error": f"no {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            parts = self.path.strip("/").split("/")
            try:
                if parts == ["images"]:
                    agent.run_images = bool(body["enabled"])
                    return self._reply(200, {"images": agent.run_images, "buildah": agent.images.available})
                if parts == ["nodes"]:
                    agent.register_node(NodeSpec(**body))
                    return self._reply(200, {"registered": body["name"]})
                if len(parts) == 3 and parts[0] == "nodes" and parts[2] == "kill":
                    pods = agent.kill_node(parts[1], float(body.get("remove_after", 1.0)))
                    return self._reply(200, {"killed": parts[1], "pods": pods})
                if len(parts) == 3 and parts[0] == "nodes" and parts[2] == "cut":
                    return self._reply(200, {"cut": parts[1], "pods": agent.cut_node(parts[1])})
                if len(parts) == 3 and parts[0] == "nodes" and parts[2] == "reconnect":
                    return self._reply(200, {"reconnected": parts[1], "pods": agent.reconnect_node(parts[1])})
            except KeyError as exc:
                return self._reply(404, {"error": f"no process node {exc}"})
            except (ValueError, TypeError) as exc:
                return self._reply(400, {"error": str(exc)})
            self._reply(404, {"error": f"no {self.path}"})

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    return Server(("127.0.0.1", agent.control_port), Handler)


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.controlplane.nodeagent", description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--network", required=True, help='JSON: {"plane_id": ..., "subnet": ...}')
    ap.add_argument("--node", action="append", default=[], help="name[:cpu[:memory[:gpus]]], repeatable")
    ap.add_argument("--python-bin", default=str(Path(sys.executable).parent))
    ap.add_argument("--apiserver-port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--kubernetes-version", default="")
    ap.add_argument("--images", action="store_true",
                    help="run containers whose image is in buildah's local store from the image's root filesystem")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(message)s")
    for name in ("urllib3", "kubernetes"):
        logging.getLogger(name).setLevel(logging.WARNING)
    agent = Agent(args.kubeconfig, Path(args.workdir), procnet.PlaneNetwork.from_json(json.loads(args.network)),
                  [NodeSpec.parse(n) for n in args.node], args.python_bin, args.apiserver_port, args.control_port,
                  args.kubernetes_version, run_images=args.images)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: thread dump to the log
    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stop.set())
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
