"""After a fast repair, shards run outside their placement group (their bundle on the lost node is
only rescheduled once Ray notices the node is gone). They must not stay outside: once Ray has
placed the bundles again, the next episode boundary moves them back, so STRICT_PACK holds again."""

from __future__ import annotations

import threading
import time

import pytest
import ray
from ray.util import placement_group_table

from swarm_arena.api.report import RunReport
from swarm_arena.api.status import Progress
from swarm_arena.arena.recovery import request_repair
from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation

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


def test_repaired_shards_return_to_their_placement_group(ray_cluster) -> None:
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
    assert len(request_repair(evaluation.qualified_name, [worker_a.node_id])) == 4

    back = False
    while thread.is_alive() and not back:
        back = _bundles_used_on(worker_b.node_id)
        time.sleep(0.5)
    thread.join(300)
    assert not thread.is_alive() and reports, "the run did not finish"
    assert back, "the repaired shards never went back into their placement group"
    report = reports[0]
    assert [e.episode for e in report.episodes] == list(range(10))
    assert report.progress.agent_steps == 10 * 40 * 300
