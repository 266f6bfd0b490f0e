"""SeaweedFS is cached under a key of its own: bumping it never rebuilds the plane, and bumping
the plane never rebuilds it (tests/controlplane/seaweedfs.py)."""

from __future__ import annotations

from tests.controlplane import build as cpbuild
from tests.controlplane import seaweedfs


def test_seaweedfs_and_the_plane_do_not_share_a_cache_key() -> None:
    versions = cpbuild.load_versions()
    assert versions[seaweedfs.VERSION_KEY]
    bumped = {**versions, seaweedfs.VERSION_KEY: "v0.0.0-20990101000000-000000000000"}
    assert cpbuild.cache_key(bumped, "go1.26.8") == cpbuild.cache_key(versions, "go1.26.8")
    version = versions[seaweedfs.VERSION_KEY]
    assert seaweedfs.cache_key(bumped[seaweedfs.VERSION_KEY], "go1.26.8") != seaweedfs.cache_key(version, "go1.26.8")
    assert seaweedfs.cache_key(version, "go1.27.0") != seaweedfs.cache_key(version, "go1.26.8")
    plane_bumped = {**versions, "KUBERNETES_VERSION": "v1.34.4"}
    assert cpbuild.cache_key(plane_bumped, "go1.26.8") != cpbuild.cache_key(versions, "go1.26.8")
    assert seaweedfs.version(plane_bumped) == version  # the plane's versions do not enter its key
