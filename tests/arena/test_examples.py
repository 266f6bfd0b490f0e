"""Every example manifest in manifests/examples/ runs on a real local Ray, shrunk to a few steps.

The examples are what users copy, so each one is played as written — its environment (the
built-in foraging, MAgent2 battle with 1,152 agents, SISL pursuit, MPE2 predator-prey), policies,
teams, matchmaking, rating, execution layout and checkpointing — with fewer episodes and steps,
on a Ray that has one logical GPU so the GPU example's fractional-GPU shards can be placed.

What a local run cannot do as the cluster would, and what stands in for it:
- `cluster.address` names a remote Ray cluster: the evaluation runs on the local Ray instead.
- `runtimeEnv.pip` installs packages for the job on the cluster: locally they must already be
  installed (the `test` extra has them), at the pinned version.
- `runtimeEnv.py_modules` ships the user's own code: examples in a subdirectory keep that code
  next to their manifest, and here Ray's own runtime_env ships it from that directory to the
  workers (the same mechanism as on the cluster, a local path instead of the URI).
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.validation import load_and_validate
from swarm_arena.arena.naming import RAY_NAMESPACE
from swarm_arena.arena.runner import run_evaluation

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "manifests" / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))
# Examples with the user's own code beside them (one directory each).
OWN_CODE_EXAMPLES = sorted(EXAMPLES_DIR.glob("*/*.yaml"))


def _shrink(evaluation: SwarmEvaluation, tmp_path: Path) -> None:
    spec = evaluation.spec
    spec.episodes = 1
    spec.environment.max_steps = min(spec.environment.max_steps, 12)
    spec.checkpoint.interval_steps = min(spec.checkpoint.interval_steps, 5)
    if spec.checkpoint.storage_uri:
        spec.checkpoint.storage_uri = f"file://{tmp_path}"


def _check_report(evaluation: SwarmEvaluation, report) -> None:
    total = report.progress.episodes_total
    assert total >= 1 and report.progress.episodes_completed == total
    assert [e.episode for e in report.episodes] == list(range(total))
    assert all(0 < e.steps <= 12 for e in report.episodes)
    assert report.progress.agent_steps == sum(e.agent_steps for e in report.episodes) > 0
    board = report.results.leaderboard
    assert sorted(row.policy for row in board) == sorted(evaluation.spec.policy_names)
    assert all(row.ci_low <= row.rating <= row.ci_high for row in board)


def _check_pip_pins(evaluation: SwarmEvaluation) -> None:
    """`runtimeEnv.pip` is what the cluster installs; the local stand-in must be the same release."""
    runtime_env = evaluation.spec.runtime_env
    for requirement in (runtime_env.pip or []) if runtime_env else []:
        name, _, version = requirement.partition("==")
        assert version, f"{requirement!r}: pin examples' runtimeEnv.pip requirements with ==, so runs repeat"
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"runtimeEnv.pip names {name}, which is not installed locally; add it to the `test` "
                        "extra in pyproject.toml so the example's evaluation can run here", pytrace=False)
        assert installed == version, f"runtimeEnv.pip pins {requirement}, but {name} {installed} is installed"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(example: Path, local_ray_with_one_gpu, tmp_path: Path) -> None:
    evaluation = load_and_validate(example, check_imports=True)
    _check_pip_pins(evaluation)
    # A `cluster.address` example names someone's Ray cluster; the local Ray stands in for it.
    _shrink(evaluation, tmp_path)

    report = run_evaluation(evaluation)

    _check_report(evaluation, report)


@pytest.fixture
def own_code_ray(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A local Ray whose runtime_env ships the example's own modules, as runtimeEnv.py_modules does."""
    example: Path = request.param
    modules = sorted(str(p) for p in example.parent.glob("*.py"))
    assert modules, f"{example.parent}: an own-code example keeps its modules next to the manifest"
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", include_dashboard=False, namespace=RAY_NAMESPACE, logging_level=logging.WARNING, num_cpus=8,
             runtime_env={"py_modules": modules})
    # Only now, so Ray's workers cannot inherit it: they get the modules through the runtime_env.
    # The driver resolves factories itself before it starts actors, as `swarm-arena run` does.
    sys.path.insert(0, str(example.parent))
    try:
        yield example
    finally:
        ray.shutdown()
        sys.path.remove(str(example.parent))


@pytest.mark.parametrize("own_code_ray", OWN_CODE_EXAMPLES, ids=lambda p: p.stem, indirect=True)
def test_own_code_example_runs_with_its_modules_shipped_by_ray(own_code_ray: Path, tmp_path: Path) -> None:
    example = own_code_ray
    evaluation = load_and_validate(example, check_imports=True)
    assert evaluation.spec.runtime_env and evaluation.spec.runtime_env.py_modules, (
        f"{example}: an example with its own code ships it through spec.runtimeEnv.py_modules")
    _shrink(evaluation, tmp_path)

    report = run_evaluation(evaluation)

    _check_report(evaluation, report)
