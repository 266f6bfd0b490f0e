"""A real S3-compatible server for the durable checkpoint tests: SeaweedFS (`weed server -filer
-s3`), built from its Go module by tests/controlplane/seaweedfs.py, on loopback ports of its own,
with one identity (access key + secret) and one bucket.

It talks to nothing outside this machine: telemetry is off, every listener is on 127.0.0.1, and
the clients get `AWS_EC2_METADATA_DISABLED` so the AWS SDK inside pyarrow never looks for an
instance-metadata service.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.controlplane import seaweedfs

READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:<port>
    access_key: str
    secret_key: str
    bucket: str
    log: Path

    def env(self) -> dict[str, str]:
        """What a user exports for an S3-compatible store (the AWS SDKs' own variable names)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def filesystem(self, secret_key: str | None = None):
        from pyarrow import fs

        host = self.endpoint.removeprefix("http://")
        return fs.S3FileSystem(access_key=self.access_key, secret_key=secret_key or self.secret_key,
                               endpoint_override=host, scheme="http", region="us-east-1",
                               allow_bucket_creation=True)  # fmt: skip

    def keys(self, prefix: str) -> list[str]:
        """Every object under `<bucket>/<prefix>`, relative to it, sorted."""
        from pyarrow import fs

        root = f"{self.bucket}/{prefix.strip('/')}"
        infos = self.filesystem().get_file_info(fs.FileSelector(root, recursive=True, allow_not_found=True))
        return sorted(i.path.removeprefix(root + "/") for i in infos if i.type == fs.FileType.File)


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def seaweedfs_s3(workdir: Path, bucket: str = "arena") -> Iterator[S3Server]:
    """Start SeaweedFS with its S3 gateway in `workdir`, create `bucket`, yield; stop it after."""
    weed = seaweedfs.build()  # a cached hit is a stat; a cold build prints its progress
    data, log = workdir / "data", workdir / "weed.log"
    data.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = f"arena{secrets.token_hex(4)}", secrets.token_hex(16)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "arena", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))  # fmt: skip
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    argv = [
        str(weed), "server", "-filer", "-s3", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=8",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}", f"-filer.localSocket={workdir}/filer.sock",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.localSocket={workdir}/s3.sock",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{s3}", access_key, secret_key, bucket, log)
    # Where weed puts its local gRPC sockets, whatever -dir says (server.go: /tmp/seaweedfs-<svc>-grpc-<port>.sock).
    grpc_sockets = [Path(f"/tmp/seaweedfs-{svc}-grpc-{port}.sock") for svc, port in
                    (("master", master_grpc), ("volume", volume_grpc), ("filer", filer_grpc), ("s3", s3_grpc))]  # fmt: skip
    try:
        _create_bucket(server, proc)
        yield server
    finally:
        _stop(proc)
        for sock in grpc_sockets:
            sock.unlink(missing_ok=True)


def _create_bucket(server: S3Server, proc: subprocess.Popen) -> None:
    """Create the bucket as soon as the gateway answers (it starts after master, volume and filer)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with code {proc.returncode} before serving S3:\n{_tail(server.log)}")
        try:
            filesystem = server.filesystem()
            filesystem.create_dir(server.bucket)
            filesystem.get_file_info(server.bucket)  # answers with the identity's rights
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS's S3 gateway did not come up within {READY_TIMEOUT_S:.0f} s "
                                   f"({exc}):\n{_tail(server.log)}") from None
            time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after a short grace: its data is a temporary folder, and a graceful
    stop of all four servers takes ~15 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
