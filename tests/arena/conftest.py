"""Ray for the arena tests: a small local Ray per module, or a multi-node `Cluster` per test.

The machine is small and shared, so the local Ray is started once per module with a few logical
CPUs, and every fixture shuts Ray down after itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.arena.naming import RAY_NAMESPACE


def fresh_local_ray(**resources: Any) -> Iterator[None]:
    """A new local Ray with these logical resources (`num_cpus=`, `num_gpus=`) for the fixture's scope."""
    if ray.is_initialized():
        ray.shutdown()
    # "local": a new Ray of our own, never one that `ray start` (another test, another user) left running.
    ray.init(address="local", include_dashboard=False, namespace=RAY_NAMESPACE, logging_level=logging.WARNING, **resources)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    yield from fresh_local_ray(num_cpus=8)


@pytest.fixture(scope="module")
def local_ray_with_one_gpu() -> Iterator[None]:
    """One *logical* GPU: Ray schedules and assigns it exactly as a physical one (CUDA_VISIBLE_DEVICES)."""
    yield from fresh_local_ray(num_cpus=16, num_gpus=1)


def multinode_cluster(**system_config: Any) -> Iterator[Cluster]:
    """A head with one CPU (the coordinator and the environment actor live there); tests add workers.
    `system_config`: Ray's internal settings for the whole cluster (e.g. its node health checks)."""
    if ray.is_initialized():
        ray.shutdown()
    head: dict[str, Any] = {"num_cpus": 1, "include_dashboard": False}
    if system_config:
        head["_system_config"] = system_config
    cluster = Cluster(initialize_head=True, connect=True, head_node_args=head)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def ray_cluster() -> Iterator[Cluster]:
    """Ray's default node health checks: a killed node is declared dead after ~15-30 s."""
    yield from multinode_cluster()


def foraging_evaluation(name: str, **spec: Any) -> SwarmEvaluation:
    """A small foraging evaluation; `spec` keys (wire names) override the defaults."""
    base: dict[str, Any] = {
        "environment": {"factory": "foraging", "params": {"agents": 200}, "maxSteps": 30},
        "policies": [
            {"name": p, "factory": p, "resources": {"cpu": 0.25}} for p in ("greedy", "random", "noop")
        ],
        "episodes": 4,
        "seed": 7,
        "execution": {"agentsPerShard": 50},
        "checkpoint": {"intervalSteps": 10},
        "cluster": {"workerGroups": [{"name": "cpu"}]},
    }
    base.update(spec)
    return SwarmEvaluation.model_validate(
        {"apiVersion": "arena.swarm.dev/v1alpha1", "kind": "SwarmEvaluation", "metadata": {"name": name}, "spec": base}
    )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A real S3-compatible server (SeaweedFS, built from its Go module on first use) with a bucket
    and one identity, on loopback, for the session (tests/arena/s3server.py)."""
    from tests.arena.s3server import seaweedfs_s3
    from tests.controlplane.build import BuildError

    try:
        with seaweedfs_s3(tmp_path_factory.mktemp("seaweedfs")) as server:
            yield server
    except BuildError as exc:
        pytest.fail(f"could not build SeaweedFS: {exc}", pytrace=False)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120.0, interval: float = 0.05) -> None:
    """Poll `condition` until it holds; an assertion naming `what` once `timeout` passes. An
    exception raised by `condition` (an AssertionError included) goes through at once."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f} s"
        time.sleep(interval)
