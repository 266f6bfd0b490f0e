"""SeaweedFS (`weed`), the S3-compatible server the durable checkpoint tests write to, built from
its Go module and cached like the control plane, but under a key of its own.

``SEAWEEDFS_VERSION`` in versions.env pins it (the module proxy serves SeaweedFS as pseudo-
versions). The binary lands in ``<cache>/controlplane/seaweedfs-<key>/bin/weed`` where ``<key>``
hashes the recipe, the Go version and that pin only, so bumping SeaweedFS never rebuilds the
plane and bumping the plane never rebuilds SeaweedFS. Go's build cache for it is
``<cache>/go-build`` (``$GOCACHE`` wins), beside the outputs. ``python -m tests.controlplane build``
builds it with the plane (or alone: ``build seaweedfs``); the ``s3_server`` fixture
(tests/arena/s3server.py) builds it if a test run finds it missing.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from tests.controlplane import build as cpbuild

MODULE = "github.com/seaweedfs/seaweedfs"
PACKAGE = "./weed"
VERSION_KEY = "SEAWEEDFS_VERSION"
RECIPE = "1"


def version(versions: dict[str, str] | None = None) -> str:
    value = (versions or cpbuild.load_versions()).get(VERSION_KEY)
    if not value:
        raise cpbuild.BuildError(f"{cpbuild.VERSIONS_FILE}: {VERSION_KEY} is missing")
    return value


def cache_key(seaweedfs_version: str, gover: str) -> str:
    h = hashlib.sha256(f"recipe={RECIPE}\ngo={gover}\n{VERSION_KEY}={seaweedfs_version}\n".encode())
    return f"seaweedfs-{h.hexdigest()[:12]}"


def binary_path(go: str | None = None, versions: dict[str, str] | None = None) -> Path:
    go = go or cpbuild.find_go()
    return cpbuild.cache_root() / cache_key(version(versions), cpbuild.go_version(go)) / "bin" / "weed"


def go_build_cache() -> Path:
    return cpbuild.cache_root().parent / "go-build"


def build(force: bool = False) -> Path:
    """The `weed` binary, built if missing (a cached hit is a stat); returns its path."""
    go = cpbuild.find_go()
    versions = cpbuild.load_versions()
    target = binary_path(go, versions)
    if target.exists() and not force:
        cpbuild.log(f"seaweedfs: up to date: {target}")
        return target
    env = cpbuild.go_env(go)
    env.setdefault("GOCACHE", str(go_build_cache()))
    cpbuild.log(f"seaweedfs: building {MODULE}@{version(versions)} with {cpbuild.go_version(go)} into "
                f"{target.parent} (GOCACHE={env['GOCACHE']}; ~10 CPU-minutes with an empty Go build cache)")
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    # Built inside the downloaded module with its own go.mod/go.sum (what `go install` would do).
    cpbuild.build_in_module_cache(go, "seaweedfs", MODULE, version(versions), PACKAGE, target.parent, "weed", env=env)
    cpbuild.log(f"seaweedfs: built in {time.monotonic() - t0:.0f}s: {target}")
    os.chmod(target, 0o755)
    return target
