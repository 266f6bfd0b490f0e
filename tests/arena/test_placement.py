"""`execution.placementStrategy` decides where the policy shards land, on a real multi-node Ray.

Two workers with 2 CPUs each next to the 1-CPU head; two policies with one 1-CPU shard each, in
one placement group: STRICT_PACK must put both shards on one node, STRICT_SPREAD on two.
"""

from __future__ import annotations

import pytest
import ray

from swarm_arena.api.status import Progress
from swarm_arena.arena.naming import RAY_NAMESPACE, shard_name
from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation

pytestmark = [pytest.mark.ray, pytest.mark.multinode, pytest.mark.timeout(240)]


def _shard_nodes(ray_cluster, strategy: str) -> dict[str, str]:
    for _ in range(2):
        ray_cluster.add_node(num_cpus=2)
    ray_cluster.wait_for_nodes()
    evaluation = foraging_evaluation(
        f"pl-{strategy.lower().replace('_', '-')}",
        environment={"factory": "foraging", "params": {"agents": 40}, "maxSteps": 10},
        policies=[{"name": p, "factory": p, "resources": {"cpu": 1}} for p in ("greedy", "random")],
        episodes=1,
        execution={"agentsPerShard": 20, "placementStrategy": strategy},
    )
    names = [shard_name(evaluation.qualified_name, p, 0) for p in ("greedy", "random")]
    nodes: dict[str, str] = {}

    def on_progress(progress: Progress) -> None:
        if not nodes and progress.agent_steps > 0:
            for name in names:
                nodes[name] = ray.get(ray.get_actor(name, namespace=RAY_NAMESPACE).ping.remote()).node_id

    report = run_evaluation(evaluation, on_progress=on_progress)
    assert report.progress.episodes_completed == 1
    assert set(nodes) == set(names)
    return nodes


def test_strict_pack_puts_every_shard_on_one_node(ray_cluster) -> None:
    nodes = _shard_nodes(ray_cluster, "STRICT_PACK")
    assert len(set(nodes.values())) == 1


def test_strict_spread_puts_every_shard_on_its_own_node(ray_cluster) -> None:
    nodes = _shard_nodes(ray_cluster, "STRICT_SPREAD")
    assert len(set(nodes.values())) == 2
