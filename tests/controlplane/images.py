"""Images for process nodes: a pod's image found in buildah's local store, as a root filesystem.

The process node agent (nodeagent.py) runs a container chrooted in its image's root filesystem
when the image is in the local store (what ``make images`` builds into: buildah's), and falls
back to the host's Python environment otherwise. This module answers the two questions that needs, through the ``buildah`` command line only (no storage internals):

* :meth:`ImageStore.lookup`: is ``ref`` in the store, and what is its configuration (the OCI
  ``config``: ENTRYPOINT, CMD, ENV, USER, WORKDIR)?
* :meth:`ImageStore.rootfs`: a directory holding the image's files, shared read-only by every
  container of that image (each container gets an overlay on top of it, made by the agent).
  It is a buildah working container named ``swarm-arena-node-<image id>`` made once per image
  id and kept across planes (with the store's ``overlay`` driver a mount, instant; with ``vfs`` a
  copy, seconds for the 1.3 GB Ray image), so only the first pod after a rebuild pays for it.
  Working containers of images that are no longer tagged (rebuilt since) are removed when the
  store is opened.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("nodeagent.images")

CONTAINER_PREFIX = "swarm-arena-node-"  # images/build.py removes ours of an image it replaces


def buildah_env() -> dict[str, str]:
    """The store ``make images`` builds into (images/build.py uses the same settings)."""
    return dict(os.environ, STORAGE_DRIVER=os.environ.get("STORAGE_DRIVER", "vfs"),
                BUILDAH_ISOLATION=os.environ.get("BUILDAH_ISOLATION", "chroot"))


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    ref: str
    id: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "NAME=value", in the image's order
    user: str = ""
    workdir: str = ""
    labels: dict = field(default_factory=dict, hash=False, compare=False)

    def env_dict(self) -> dict[str, str]:
        out = {}
        for item in self.env:
            name, _, value = item.partition("=")
            out[name] = value
        return out


def _parse(ref: str, inspected: dict) -> Image:
    config = (inspected.get("OCIv1") or {}).get("config") or {}
    return Image(ref=ref, id=inspected["FromImageID"], entrypoint=tuple(config.get("Entrypoint") or ()),
                 cmd=tuple(config.get("Cmd") or ()), env=tuple(config.get("Env") or ()),
                 user=config.get("User") or "", workdir=config.get("WorkingDir") or "",
                 labels=dict(config.get("Labels") or {}))


def resolve_user(image_user: str, rootfs: Path, run_as_user: int | None, run_as_group: int | None) -> tuple[int, int, str]:
    """(uid, gid, home) as a container runtime picks them: the pod's ``runAsUser``/``runAsGroup``
    over the image's USER (``name``, ``uid``, ``name:group`` or ``uid:gid``); names and the home
    directory from the image's /etc/passwd and /etc/group; an unknown uid gets gid 0 and home /."""
    passwd = _table(rootfs / "etc" / "passwd")
    groups = _table(rootfs / "etc" / "group")
    user, _, group = image_user.partition(":")
    uid, gid, home = 0, None, "/"
    if user:
        uid = _numeric_id(user, passwd, "/etc/passwd")
    if run_as_user is not None:
        uid = run_as_user
    entry = next((e for e in passwd if len(e) > 5 and e[2] == str(uid)), None)
    if entry is not None:
        gid, home = int(entry[3]), entry[5] or "/"
    if group and run_as_user is None:
        gid = _numeric_id(group, groups, "/etc/group")
    if run_as_group is not None:
        gid = run_as_group
    return uid, gid if gid is not None else 0, home


def _numeric_id(name: str, table: list[list[str]], where: str) -> int:
    """A uid or gid as USER gives it: a number, or a name looked up in the image's ``where``."""
    if name.isdigit():
        return int(name)
    entry = next((e for e in table if e[0] == name), None)
    if entry is None:
        raise ImageError(f"the image's USER names {name!r}, which is not in its {where}")
    return int(entry[2])


def in_root(rootfs: Path, path: str) -> str:
    """``path`` inside the image as the container will see it, symlinks resolved against the image's
    root (Debian's /var/run is a link to /run: a mount target under it must land in the image's
    /run, not the host's): the resolved absolute path, for the agent to prefix with the root."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        here = rootfs.joinpath(*done, part)
        if here.is_symlink():
            hops += 1
            if hops > 40:
                raise ImageError(f"too many symbolic links resolving {path} in the image")
            target = os.readlink(here)
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            if target.startswith("/"):
                done = []
            continue
        done.append(part)
    return "/" + "/".join(done)


def _table(path: Path) -> list[list[str]]:
    try:
        return [line.split(":") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    except OSError:
        return []


class ImageStore:
    """buildah's local store, as the node agent uses it (thread-safe)."""

    def __init__(self, buildah: str | None = None) -> None:
        self.buildah = buildah or shutil.which("buildah")
        self._images: dict[str, Image] = {}
        self._rootfs: dict[str, Path] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._cleaned = False

    @property
    def available(self) -> bool:
        return self.buildah is not None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.buildah is not None
        out = subprocess.run([self.buildah, *args], env=buildah_env(), capture_output=True, text=True, check=False,
                             timeout=600)
        if check and out.returncode != 0:
            raise ImageError(f"buildah {' '.join(args[:2])}: {out.stderr.strip()[-400:]}")
        return out

    def lookup(self, ref: str) -> Image | None:
        """The image ``ref`` names in the store, or None (not there, or no buildah)."""
        if not self.available or not ref:
            return None
        with self._lock:
            if ref in self._images:
                return self._images[ref]
        out = self._run("inspect", "--type", "image", ref, check=False)
        if out.returncode != 0:
            return None
        image = _parse(ref, json.loads(out.stdout))
        with self._lock:
            self._images[ref] = image
        return image

    def rootfs(self, image: Image) -> Path:
        """The image's files, read-only by convention (every container overlays it)."""
        with self._lock:
            if image.id in self._rootfs:
                return self._rootfs[image.id]
            lock = self._locks.setdefault(image.id, threading.Lock())
        with lock:
            with self._lock:
                if image.id in self._rootfs:
                    return self._rootfs[image.id]
            self._clean_stale()
            name = CONTAINER_PREFIX + image.id[:12]
            if self._run("inspect", "--type", "container", name, check=False).returncode != 0:
                log.info("image %s: making its root filesystem (buildah from, once per image id)", image.ref)
                self._run("from", "--pull=never", "--name", name, image.id)
            path = Path(self._run("mount", name).stdout.strip())
            if not (path / "etc").is_dir():
                raise ImageError(f"buildah mount {name} gave {path}, which holds no root filesystem")
            with self._lock:
                self._rootfs[image.id] = path
            return path

    def _clean_stale(self) -> None:
        """Remove our working containers of images no tag names any more (rebuilt since)."""
        if self._cleaned:
            return
        self._cleaned = True
        containers = json.loads(self._run("containers", "--json").stdout or "null") or []
        images = json.loads(self._run("images", "--json", "--no-trunc").stdout or "null") or []
        tagged = {i["id"] for i in images if i.get("names")}
        for c in containers:
            if c.get("containername", "").startswith(CONTAINER_PREFIX) and c.get("imageid") not in tagged:
                log.info("removing %s (its image is no longer tagged)", c["containername"])
                self._run("rm", c["containername"], check=False)
