"""Fixtures for the operator on the real control plane: the CRD installed, `swarm-arena operator`
as a real process (as operators are developed), a real local Ray head with its dashboard and
token authentication, and helpers to wait on an evaluation's status with deadlines."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from tests.controlplane.plane import ComponentExited, ControlPlane, free_port, log_tail, wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "arena.swarm.dev_swarmevaluations.yaml"
CRD_NAME = "swarmevaluations.arena.swarm.dev"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    wait_for(f"CRD {CRD_NAME} Established", lambda: control_plane.crds_established(CRD_NAME), 60)


@dataclass
class OperatorProcess:
    """`swarm-arena operator` running against the test plane."""

    cp: ControlPlane
    workdir: Path
    namespaces: list[str]
    key_file: Path
    tokens_dir: Path
    extra: list[str] = field(default_factory=list)
    addresses_file: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    label: str = ""
    """Tells the logs of several operators of one test apart."""
    user: int | None = None
    """Run as this uid and gid, with no login name in the environment, as a container does (a user
    namespace that maps this machine's root to it: the process still reads root's files, such as
    the interpreter under /root)."""
    proc: subprocess.Popen | None = None
    metrics_port: int = 0
    liveness_port: int = 0
    log: Path | None = None
    starts: int = 0

    def start(self, kubeconfig: Path | None = None) -> "OperatorProcess":
        self.starts += 1
        self.metrics_port, self.liveness_port = free_port(), free_port()
        self.log = self.workdir / f"operator{self.label}-{self.starts}.log"
        argv = [str(BIN / "swarm-arena"), "operator", "--log-format", "text", "--dashboard-via", "pod-ip",
                "--poll-seconds", "1", "--metrics-port", str(self.metrics_port),
                "--liveness-port", str(self.liveness_port), "--ray-auth-key-file", str(self.key_file),
                "--ray-tokens-dir", str(self.tokens_dir), *self.extra]
        if self.addresses_file is not None:
            if not self.addresses_file.exists():
                self.addresses_file.write_text("clusters: []\n")  # nothing approved yet
            argv += ["--cluster-addresses-file", str(self.addresses_file)]
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        if self.namespaces and "--lease-namespace" not in self.extra:
            argv += ["--lease-namespace", self.namespaces[0]]  # each test its own Lease
        env = dict(os.environ, KUBECONFIG=str(kubeconfig or self.cp.kubeconfig), **self.env)
        if self.user is not None:
            argv = ["unshare", "--user", f"--map-user={self.user}", f"--map-group={self.user}", *argv]
            for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # what getpass.getuser() reads first
                env.pop(name, None)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        wait_for("operator /healthz", self._healthy, 60, on_timeout=self.tail)
        return self

    def approve(self, address: str, namespaces: list[str], token: str | None) -> None:
        """As the admin: let `namespaces` use the existing cluster at `address` (with `token`).
        The operator reads the file again when it changes, running or not."""
        assert self.addresses_file is not None
        doc = yaml.safe_load(self.addresses_file.read_text()) if self.addresses_file.exists() else None
        clusters = [c for c in (doc or {}).get("clusters") or [] if c["address"] != address]
        entry: dict[str, Any] = {"address": address, "namespaces": namespaces}
        if token is not None:
            entry["tokenFile"] = f"token-{len(clusters)}-{secrets.token_hex(2)}"
            (self.tokens_dir / entry["tokenFile"]).write_text(token)
        tmp = self.addresses_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"clusters": [*clusters, entry]}))
        tmp.replace(self.addresses_file)  # atomically, as the kubelet updates a mounted ConfigMap

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ComponentExited(f"operator exited {self.proc.returncode}:\n{self.tail()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2) as r:
            return r.status == 200

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def tail(self, lines: int = 60) -> str:
        return f"--- operator log {self.log}:\n{log_tail(self.log, lines)}" if self.log else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None


@pytest.fixture
def operator_factory(control_plane: ControlPlane, crd: None, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    made: list[OperatorProcess] = []
    key = tmp_path / "ray-auth.key"
    key.write_text(secrets.token_hex(32))
    tokens = tmp_path / "ray-tokens"
    tokens.mkdir()

    def make(namespaces: list[str], extra: list[str] | None = None, env: dict[str, str] | None = None) -> OperatorProcess:
        op = OperatorProcess(control_plane, tmp_path, namespaces, key, tokens, extra or [],
                             addresses_file=tmp_path / "cluster-addresses.yaml", env=env or {},
                             label=f"-{len(made) + 1}" if made else "")
        made.append(op)
        return op

    yield make
    for op in made:
        op.kill(signal.SIGTERM)


@dataclass
class RayHead:
    """A real Ray head on this machine with its dashboard and token authentication on."""

    proc: subprocess.Popen
    dashboard: str
    token: str
    temp_dir: Path

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.dashboard + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def jobs(self) -> list[dict[str, Any]]:
        return self.get("/api/jobs/")


def private_ports() -> list[str]:
    """Every fixed port a Ray node binds, made free ones: another Ray on this host (a test, a
    developer's) otherwise takes e.g. the dashboard agent's 52365 and job submission never works."""
    flags = ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
             "--runtime-env-agent-port", "--node-manager-port", "--object-manager-port", "--ray-client-server-port")
    return [f"{flag}={free_port()}" for flag in flags]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    token = secrets.token_hex(32)
    log = tmp_path_factory.mktemp("ray-head") / "ray-head.log"
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, PYTHONPATH=f"{ROOT}:{ROOT / 'operator'}",
               PATH=f"{BIN}:{os.environ.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0")
    # `ray start` gives its raylet a fixed 30 s to register; on a loaded machine that can pass, and
    # then it exits: start again (fresh ports and directory) rather than fail the module.
    for attempt in range(3):
        temp = Path("/tmp") / f"swa-{secrets.token_hex(3)}"  # short: Ray's socket paths have a length limit
        port, dash = free_port(), free_port()
        argv = [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--num-cpus=4",
                "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--temp-dir={temp}",
                "--include-dashboard=true", "--disable-usage-stats", *private_ports()]
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        head = RayHead(proc, f"http://127.0.0.1:{dash}", token, temp)

        def up() -> bool:
            if proc.poll() is not None:
                raise ComponentExited(f"ray start exited {proc.returncode}")
            head.get("/api/version")
            # job submission needs the head's dashboard agent, which comes up after the dashboard
            return any(n.get("state") == "ALIVE" for n in head.get("/api/v0/nodes")["data"]["result"]["result"])

        try:
            wait_for("Ray head dashboard", up, 180, interval=1.0, on_timeout=lambda: log_tail(log))
            break
        except Exception:
            _stop_head(head)
            if attempt == 2:
                raise RuntimeError(f"the Ray head did not start three times; log {log}:\n{log_tail(log)}") from None
    try:
        yield head
    finally:
        _stop_head(head)


def _stop_head(head: RayHead) -> None:
    import shutil

    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.proc.wait(20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.proc.wait(10)
    shutil.rmtree(head.temp_dir, ignore_errors=True)


class Evaluations:
    """kubectl on SwarmEvaluations in one namespace, and waits on their status with deadlines."""

    def __init__(self, cp: ControlPlane, namespace: str, on_timeout: Callable[[], str]) -> None:
        self.cp, self.ns, self.on_timeout = cp, namespace, on_timeout

    def apply(self, doc: dict[str, Any]) -> None:
        self.cp.kubectl("apply", "--server-side", "-n", self.ns, "-f", "-", input=json.dumps(doc))

    def get(self, name: str) -> dict[str, Any]:
        return json.loads(self.cp.kubectl("get", "swe", name, "-n", self.ns, "-o", "json").stdout)

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def patch(self, name: str, spec: dict[str, Any]) -> None:
        self.cp.kubectl("patch", "swe", name, "-n", self.ns, "--type=merge", "-p", json.dumps({"spec": spec}))

    def wait(self, name: str, what: str, check: Callable[[dict[str, Any]], Any], timeout: float = 180) -> Any:
        def probe() -> Any:
            return check(self.status(name))

        def explain() -> str:
            return f"status: {json.dumps(self.status(name), indent=1)[:3000]}\n{self.on_timeout()}"

        return wait_for(f"{self.ns}/{name}: {what}", probe, timeout, interval=0.5, on_timeout=explain)

    def wait_phase(self, name: str, phase: str, timeout: float = 180) -> dict[str, Any]:
        def check(s: dict[str, Any]) -> Any:
            if s.get("phase") == "Failed" and phase != "Failed":
                raise AssertionError(f"evaluation failed: {json.dumps(s.get('conditions'), indent=1)}")
            return s if s.get("phase") == phase else None

        return self.wait(name, f"phase {phase}", check, timeout)

    def configmap(self, name: str) -> dict[str, Any]:
        return json.loads(self.cp.kubectl("get", "configmap", name, "-n", self.ns, "-o", "json").stdout)

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.cp.kubectl("get", "events", "-n", self.ns, "--field-selector",
                              f"involvedObject.name={name},involvedObject.kind=SwarmEvaluation", "-o", "json").stdout
        return json.loads(out)["items"]


def manifest(name: str, *, episodes: int = 4, agents: int = 40, max_steps: int = 20, **spec: Any) -> dict[str, Any]:
    """A small, fast evaluation: built-in foraging, two policies sharing one team."""
    doc = {
        "apiVersion": "arena.swarm.dev/v1alpha1",
        "kind": "SwarmEvaluation",
        "metadata": {"name": name},
        "spec": {
            "environment": {"factory": "foraging", "params": {"agents": agents}, "maxSteps": max_steps},
            "policies": [{"name": "greedy", "factory": "greedy", "resources": {"cpu": 0.5}},
                         {"name": "random", "factory": "random", "resources": {"cpu": 0.5}}],
            "episodes": episodes,
            "seed": 7,
            "checkpoint": {"intervalSteps": 10},
        },
    }
    doc["spec"].update(spec)
    return doc


def run_locally(doc: dict[str, Any], tmp_path: Path, timeout: float = 600) -> dict[str, Any]:
    """`swarm-arena run` of the same manifest (embedded Ray): the reference numbers."""
    local = json.loads(json.dumps(doc))
    local["spec"].pop("cluster", None)
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(local))
    out = tmp_path / "local-results.json"
    for attempt in range(2):  # an embedded Ray can time out starting on a loaded machine: once more
        result = subprocess.run([str(BIN / "swarm-arena"), "run", str(path), "--output", str(out), "--quiet"],
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode == 0:
            return json.loads(out.read_text())
    raise AssertionError(f"swarm-arena run {path} exited {result.returncode}:\n{result.stderr[-3000:]}")
