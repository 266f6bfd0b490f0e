"""Build both images with buildah, without a container daemon: `make images`.

    python images/build.py [--archive DIR] [--oci]

The Dockerfiles are built unchanged (`buildah build --isolation chroot`; storage driver `vfs` for a
new store, so it runs as root on a machine without Docker or overlay mounts; a store that exists
keeps its own driver, `overlay` on this project's CI machine). Their bases,
`python:3.11-slim-bookworm` and `rayproject/ray:<RAY_VERSION>-py311`, are used when they are in
buildah's local store already (pulled or loaded); otherwise, and only then, they are pulled, and
where no registry can be reached (this project's own machines) the build makes **test stand-ins**
under those exact names:

* `python:3.11-slim-bookworm`: a Debian bookworm root filesystem from `mmdebstrap` (minbase,
  `python3`, `python3-venv`, `ca-certificates`) with `python`/`python3` in `/usr/local/bin` as in
  the official image, trusting this machine's CA bundle (`/etc/ssl/certs/ca-certificates.crt`,
  also named in `/etc/pip.conf`, so pip inside a build reaches PyPI through a proxy that
  re-signs TLS);
* `rayproject/ray:<RAY_VERSION>-py311`: that stand-in plus the official image's user (`ray`, uid
  1000, group `users`, gid 100, home `/home/ray`) owning a Python environment at the official
  image's path (`/home/ray/anaconda3`, first on `PATH`) with `ray[default]==<RAY_VERSION>`, and
  `wget` (in the official image; KubeRay's exec probes of Ray pods call it).

Stand-ins carry the label `dev.swarm-arena.stand-in=true`: they are for testing, never publish an
image built on one (images/README.md).

Everything is cached by content: each image carries a label with the hash of what it was built
from (the Dockerfile, the package sources, its base's own hash), and a build whose label matches
is skipped, so a second `make images` takes seconds. The Debian root filesystem is cached under
`<cache>/images/` (`<cache>`: `$SWARM_ARENA_CACHE` or `~/.cache/swarm-arena`). `--archive DIR`
also writes each image as an archive that `docker load`, `podman load` and
`kind load image-archive` read (Docker's archive format; `--oci` writes OCI archives instead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
# Bump when a stand-in's recipe changes in a way that should rebuild it.
RECIPE = "1"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
KEY_LABEL = "dev.swarm-arena.build-key"
STAND_IN_LABEL = "dev.swarm-arena.stand-in"
NODE_CONTAINER_PREFIX = "swarm-arena-node-"  # tests/controlplane/images.py CONTAINER_PREFIX
TOOLS = {"buildah": "buildah", "mmdebstrap": "mmdebstrap"}  # command -> Debian package

_started = time.monotonic()


class BuildError(RuntimeError):
    pass


def say(message: str) -> None:
    print(f"[images {time.monotonic() - _started:6.1f}s] {message}", flush=True)


def cache_dir() -> Path:
    base = os.environ.get("SWARM_ARENA_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "swarm-arena"
    return Path(base) / "images"


def buildah_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("STORAGE_DRIVER", "vfs")
    env.setdefault("BUILDAH_ISOLATION", "chroot")
    return env


def run(*args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, its output streamed (progress) unless captured."""
    out = subprocess.run(
        list(args), env=buildah_env(), text=True, check=False,
        stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None,
    )  # fmt: skip
    if check and out.returncode != 0:
        detail = (out.stderr or "").strip().splitlines()[-5:] if capture else []
        raise BuildError(f"`{' '.join(args[:4])} ...` failed with exit code {out.returncode}" + "".join(f"\n  {d}" for d in detail))
    return out


def check_tools() -> None:
    missing = [pkg for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None]
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"installing {', '.join(missing)} (apt-get, Debian packages)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env)
        return
    raise BuildError(
        f"building the images needs {' and '.join(missing)}: install them first "
        f"(Debian/Ubuntu: `sudo apt-get install {' '.join(missing)}`), then run `make images` (or `make test`) again"
    )


# ---- versions and keys ------------------------------------------------------------------------


def versions() -> tuple[str, str]:
    """(package version, Ray version of the Ray image's ARG)."""
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    match = re.search(r"^ARG RAY_VERSION=(\S+)$", (IMAGES / "ray.Dockerfile").read_text(), re.M)
    if not match:
        raise BuildError("images/ray.Dockerfile has no `ARG RAY_VERSION=...` line")
    return package, match.group(1)


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def tree_digest(paths: list[Path]) -> str:
    """A hash of the build context the Dockerfiles copy (sources only, no caches)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
        else:
            files.append(path)
    parts: list[str | bytes] = []
    for f in sorted(files):
        parts += [str(f.relative_to(ROOT)), f.read_bytes()]
    return digest(*parts)


# ---- the local store --------------------------------------------------------------------------


def labels(image: str) -> dict[str, str] | None:
    """The labels of `image` in buildah's store, None when it is not there."""
    out = run("buildah", "inspect", "--type", "image", image, capture=True, check=False)
    if out.returncode != 0:
        return None
    config = json.loads(out.stdout)
    return (config.get("OCIv1", {}).get("config", {}) or {}).get("Labels") or {}


def pulled(image: str) -> bool:
    """Try a registry once (quietly): where none can be reached the build makes a stand-in."""
    say(f"trying to pull {image}")
    return run("buildah", "pull", "--quiet", image, capture=True, check=False).returncode == 0


def debian_rootfs() -> Path:
    key = digest(RECIPE, SUITE, *BASE_PACKAGES)
    tar = cache_dir() / f"debian-{SUITE}-{key}.tar"
    if tar.exists():
        say(f"Debian {SUITE} root filesystem: cached ({tar})")
        return tar
    tar.parent.mkdir(parents=True, exist_ok=True)
    say(f"Debian {SUITE} root filesystem: mmdebstrap (about a minute or two)")
    partial = tar.with_name(tar.stem + ".partial.tar")  # the .tar suffix makes mmdebstrap write a tarball
    run("mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", "--mode=root", SUITE, str(partial))
    partial.rename(tar)
    return tar


def base_in_store(image: str, key: str) -> str | None:
    """The key to build on when `image` needs no stand-in made: a real one in the store or pulled
    ('store:<image>'), or our stand-in of `key` already there; None when a stand-in must be made."""
    found = labels(image)
    if found is not None and found.get(STAND_IN_LABEL) != "true":
        say(f"{image}: in the local store (a real one), used as it is")
        return "store:" + image
    if found is not None and found.get(KEY_LABEL) == key:
        say(f"{image}: stand-in up to date")
        return key
    if found is None and pulled(image):
        return "store:" + image
    return None


def python_stand_in(image: str) -> str:
    """The key of the python base: a stand-in's, or 'store' for a real image already there."""
    key = digest(RECIPE, "python", debian_key := digest(RECIPE, SUITE, *BASE_PACKAGES), HOST_CA_BUNDLE.read_bytes())
    if (ready := base_in_store(image, key)) is not None:
        return ready
    say(f"{image}: making a test stand-in (Debian {SUITE}, key {debian_key})")
    tar = debian_rootfs()
    ctr = run("buildah", "from", "scratch", capture=True).stdout.strip()
    try:
        run("buildah", "add", "--quiet", ctr, str(tar), "/")
        run("buildah", "copy", "--quiet", ctr, str(HOST_CA_BUNDLE), "/etc/ssl/certs/ca-certificates.crt")
        run("buildah", "run", ctr, "--", "sh", "-c",
            "ln -sf /usr/bin/python3 /usr/local/bin/python && ln -sf /usr/bin/python3 /usr/local/bin/python3 && "
            "printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > /etc/pip.conf")  # fmt: skip
        run("buildah", "config", "--env", "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "LANG=C.UTF-8", "--cmd", "python3",
            "--label", f"{STAND_IN_LABEL}=true", "--label", f"{KEY_LABEL}={key}", ctr)  # fmt: skip
        run("buildah", "commit", "--quiet", "--rm", ctr, image)
    except BaseException:
        run("buildah", "rm", ctr, capture=True, check=False)
        raise
    return key


def ray_stand_in(image: str, ray_version: str, python_image: str, python_key: str) -> str:
    key = digest(RECIPE, "ray", "wget", ray_version, python_key)
    if (ready := base_in_store(image, key)) is not None:
        return ready
    say(f"{image}: making a test stand-in (ray[default]=={ray_version} for uid 1000 in /home/ray/anaconda3; pip, a few minutes)")
    ctr = run("buildah", "from", "--pull=never", python_image, capture=True).stdout.strip()
    try:
        # wget: the official image has it, and KubeRay's exec probes of Ray pods call it
        run("buildah", "run", ctr, "--", "sh", "-c",
            "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wget && "
            "rm -rf /var/lib/apt/lists/* && "
            "useradd --create-home --uid 1000 --gid 100 --shell /bin/bash ray && "
            "python3 -m venv /home/ray/anaconda3 && chown -R 1000:100 /home/ray")  # fmt: skip
        run("buildah", "run", "--user", "1000:100", ctr, "--",
            "/home/ray/anaconda3/bin/pip", "install", "--no-cache-dir", "--progress-bar", "off", f"ray[default]=={ray_version}")  # fmt: skip
        run("buildah", "config", "--user", "1000:100", "--workingdir", "/home/ray",
            "--env", "HOME=/home/ray",
            "--env", "PATH=/home/ray/anaconda3/bin:/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--cmd", "bash", "--label", f"{STAND_IN_LABEL}=true", "--label", f"{KEY_LABEL}={key}", ctr)  # fmt: skip
        run("buildah", "commit", "--quiet", "--rm", ctr, image)
    except BaseException:
        run("buildah", "rm", ctr, capture=True, check=False)
        raise
    return key


def build(dockerfile: str, image: str, base_key: str) -> str:
    key = digest(RECIPE, base_key, tree_digest([IMAGES / dockerfile, IMAGES / "operator-requirements.txt",
                                                ROOT / "pyproject.toml", ROOT / "README.md", ROOT / "operator"]))  # fmt: skip
    found = labels(image)
    if found is not None and found.get(KEY_LABEL) == key:
        say(f"{image}: up to date (key {key})")
        return key
    old = image_id(image)
    say(f"{image}: building images/{dockerfile} (buildah, chroot isolation)")
    run("buildah", "build", "--pull=never", "--layers=false", "--label", f"{KEY_LABEL}={key}",
        "-f", str(IMAGES / dockerfile), "-t", image, str(ROOT))  # fmt: skip
    if old and old != image_id(image):
        # The image it replaced, now untagged, and the test plane's root filesystem of it
        # (tests/controlplane/images.py names it so): gigabytes per rebuild otherwise.
        run("buildah", "rm", NODE_CONTAINER_PREFIX + old[:12], capture=True, check=False)
        if run("buildah", "rmi", old, capture=True, check=False).returncode == 0:
            say(f"removed the image it replaced ({old[:12]})")
    return key


def image_id(image: str) -> str | None:
    out = run("buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", image, capture=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else None


def archive(image: str, key: str, out_dir: Path, oci: bool) -> Path:
    name = image.rsplit("/", 1)[1].replace(":", "_") + (".oci.tar" if oci else ".tar")
    path = out_dir / name
    stamp = path.with_name(path.name + ".key")
    if path.exists() and stamp.exists() and stamp.read_text() == key:
        say(f"{path}: up to date")
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    say(f"writing {path}")
    run("buildah", "push", "--quiet", image, f"{'oci-archive' if oci else 'docker-archive'}:{path}:{image}")
    stamp.write_text(key)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, metavar="DIR", help="also write each image as an archive into DIR")
    parser.add_argument("--oci", action="store_true", help="OCI archives instead of Docker's archive format")
    parser.add_argument("--tools-only", action="store_true",
                        help="only make sure buildah and mmdebstrap are there (install them, or say what to install)")
    args = parser.parse_args(argv)
    if args.tools_only:
        try:
            check_tools()
        except BuildError as exc:
            say(f"error: {exc}")
            return 1
        return 0

    sys.path.insert(0, str(ROOT / "operator"))
    import yaml  # noqa: PLC0415 - the project's venv has it

    from swarm_arena.api.spec import RAY_IMAGE_REPOSITORY  # noqa: PLC0415

    package, ray_version = versions()
    chart = ROOT / "helm" / "swarm-arena-operator"
    # What the chart runs by default: its image.repository at its appVersion.
    operator_repository = yaml.safe_load((chart / "values.yaml").read_text())["image"]["repository"]
    app_version = yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
    try:
        check_tools()
        python_image = "docker.io/library/python:3.11-slim-bookworm"
        ray_base = f"docker.io/rayproject/ray:{ray_version}-py311"
        python_key = python_stand_in(python_image)
        ray_key = ray_stand_in(ray_base, ray_version, python_image, python_key)
        operator_image = f"{operator_repository}:{app_version}"
        ray_image = f"{RAY_IMAGE_REPOSITORY}:{package}-ray{ray_version}"
        built = {
            operator_image: build("operator.Dockerfile", operator_image, python_key),
            ray_image: build("ray.Dockerfile", ray_image, ray_key),
        }
        for image, key in built.items():
            say(f"ready: {image}")
            if args.archive:
                archive(image, key, args.archive, args.oci)
    except BuildError as exc:
        say(f"error: {exc}")
        return 1
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
