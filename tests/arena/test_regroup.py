"""After a fast repair, shards run outside their placement group (their bundle on the lost node is
only rescheduled once Ray notices the node is gone). They must not stay outside: once Ray has
placed the bundles again, the next episode boundary moves them back, so STRICT_PACK holds again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util import placement_group_table

from swarm_arena.api.report import RunReport
from swarm_arena.api.status import Progress
from swarm_arena.arena.recovery import request_repair
from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation, multinode_cluster

pytestmark = [pytest.mark.ray, pytest.mark.multinode, pytest.mark.timeout(400)]


def _bundles_used_on(node_id: str) -> bool:
    """Ray's own view: the run's placement group sits on `node_id` and shards use every bundle."""
    groups = [g for g in placement_group_table().values() if g["state"] == "CREATED"]
    if len(groups) != 1:
        return False
    group = groups[0]
    if set(group["bundles_to_node_id"].values()) != {node_id}:
        return False
    available = ray.available_resources()
    return all(available.get(f"CPU_group_{i}_{group['placement_group_id']}", 0.0) == 0.0 for i in group["bundles"])


@pytest.fixture
def quick_detection_cluster() -> Iterator[Cluster]:
    """Ray declares a killed node dead after ~3 s instead of its default ~15-30 s, so the bundles
    are placed again early in the run whatever the machine's load: the run (~25 s) must have
    episodes left after that for the shards to move back into. The repair still comes first: it is
    asked for right after the kill and swaps the actors in about a second."""
    yield from multinode_cluster(
        health_check_initial_delay_ms=0, health_check_period_ms=1000, health_check_timeout_ms=1000,
        health_check_failure_threshold=3,
    )  # fmt: skip


def test_repaired_shards_return_to_their_placement_group(quick_detection_cluster: Cluster) -> None:
    ray_cluster = quick_detection_cluster
    worker_a = ray_cluster.add_node(num_cpus=4)
    ray_cluster.wait_for_nodes()
    evaluation = foraging_evaluation(
        "rg-pack",
        environment={"factory": "foraging", "params": {"agents": 40}, "maxSteps": 300},
        policies=[{"name": p, "factory": p, "resources": {"cpu": 1}} for p in ("greedy", "random")],
        episodes=10,
        execution={"agentsPerShard": 10, "placementStrategy": "STRICT_PACK"},
        checkpoint={"intervalSteps": 5},
        faultTolerance={"maxActorRestarts": 2},
    )
    stepping = threading.Event()
    reports: list[RunReport] = []

    def on_progress(progress: Progress) -> None:
        if progress.agent_steps >= 40 * 10:
            stepping.set()

    thread = threading.Thread(target=lambda: reports.append(run_evaluation(evaluation, on_progress=on_progress)))
    thread.start()
    assert stepping.wait(120)
    worker_b = ray_cluster.add_node(num_cpus=8)
    ray_cluster.wait_for_nodes()
    ray_cluster.remove_node(worker_a, allow_graceful=False)
    lost = time.monotonic()
    assert len(request_repair(evaluation.qualified_name, [worker_a.node_id])) == 4

    back = False
    while thread.is_alive() and not back:
        back = _bundles_used_on(worker_b.node_id)
        time.sleep(0.5)
    if back:
        print(f"\nthe repaired shards were back in their placement group {time.monotonic() - lost:.1f} s after the loss")
    thread.join(300)
    assert not thread.is_alive() and reports, "the run did not finish"
    assert back, "the repaired shards never went back into their placement group"
    report = reports[0]
    assert [e.episode for e in report.episodes] == list(range(10))
    assert report.progress.agent_steps == 10 * 40 * 300
