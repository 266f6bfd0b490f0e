"""Policies with `resources.gpu > 0` get (fractions of) GPUs from Ray.

This machine has no GPU, so the tests give a real local Ray one *logical* GPU
(`ray.init(num_gpus=1)`): Ray schedules and accounts for it exactly as for a physical one —
placement-group bundles, `ray.get_gpu_ids()`, `CUDA_VISIBLE_DEVICES` in the actor — which is
what the arena relies on. Whether a user's policy then computes on the device is up to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import ray

from swarm_arena.api.status import Progress
from swarm_arena.arena.naming import RAY_NAMESPACE, shard_name
from swarm_arena.arena.recovery import EvaluationFailed
from swarm_arena.arena.runner import plan_demand, run_evaluation
from tests.arena.conftest import foraging_evaluation, fresh_local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

GPU_GROUP = {"workerGroups": [{"name": "cpu"}, {"name": "gpu", "resources": {"cpu": 4, "gpu": 1}}]}


@pytest.fixture
def ray_with_one_gpu() -> Iterator[None]:
    # Per test: the last test needs no Ray running, so that run_evaluation starts its own.
    yield from fresh_local_ray(num_cpus=6, num_gpus=1)


def _quarter_gpu_evaluation(name: str, gpu: float = 0.25):
    # 400 agents split between two policies: 200 each, 4 shards of 50 each.
    return foraging_evaluation(
        name,
        environment={"factory": "foraging", "params": {"agents": 400}, "maxSteps": 20},
        policies=[
            {"name": "greedy", "factory": "greedy", "resources": {"cpu": 0.25, "gpu": gpu}},
            {"name": "random", "factory": "random", "resources": {"cpu": 0.25}},
        ],
        episodes=2,
        execution={"agentsPerShard": 50, "placementStrategy": "PACK"},
        cluster=GPU_GROUP,
    )


def test_plan_demand_counts_gpus_per_policy() -> None:
    demand = plan_demand(_quarter_gpu_evaluation("gpu-demand"))
    assert demand.gpus_by_policy == {0: 1.0}
    assert demand.cpus == 8 * 0.25 + 1  # 8 shards and one environment actor
    parallel = _quarter_gpu_evaluation("gpu-demand").model_copy(deep=True)
    parallel.spec.execution.parallel_episodes = 2
    assert plan_demand(parallel).gpus == 2.0


def test_fractional_gpu_shards_share_one_gpu(ray_with_one_gpu) -> None:
    evaluation = _quarter_gpu_evaluation("gpu-quarter")
    qualified = evaluation.qualified_name
    seen: dict[str, object] = {}

    def on_progress(progress: Progress) -> None:
        if seen or progress.agent_steps == 0:
            return
        for policy in ("greedy", "random"):
            for i in range(4):
                name = shard_name(qualified, policy, i)
                seen[name] = ray.get(ray.get_actor(name, namespace=RAY_NAMESPACE).ping.remote()).gpu_ids
        seen["available"] = ray.available_resources().get("GPU", 0.0)

    report = run_evaluation(evaluation, on_progress=on_progress)

    assert report.progress.episodes_completed == report.progress.episodes_total == 2
    # Four quarter-GPU shards on the one GPU: all of it reserved, every greedy shard sees GPU 0.
    assert {seen[shard_name(qualified, "greedy", i)] for i in range(4)} == {("0",)}
    assert {seen[shard_name(qualified, "random", i)] for i in range(4)} == {()}
    assert seen["available"] == 0.0
    # Released when the run ends (removing a placement group is asynchronous in Ray).
    deadline = time.monotonic() + 30
    while ray.available_resources().get("GPU", 0.0) != 1.0:
        assert time.monotonic() < deadline, f"the GPU was not released: {ray.available_resources()}"
        time.sleep(0.1)


def test_more_gpus_than_the_local_ray_has_fails_at_once_naming_the_field() -> None:
    assert not ray.is_initialized()
    evaluation = _quarter_gpu_evaluation("gpu-too-many", gpu=16)  # 4 shards x 16 GPUs
    with pytest.raises(EvaluationFailed, match=r"spec\.policies\[0\]\.resources\.gpu: .*need 64 GPUs.*local Ray has 0"):
        run_evaluation(evaluation)
    assert not ray.is_initialized()  # the embedded Ray it started is shut down again
