"""STRICT_SPREAD holds after a repair, within the episode that was repaired (issue 22 §6).

Two policy shards of 1 CPU in a STRICT_SPREAD group: one on worker A, one on worker B. B is lost;
the operator's repair re-creates B's shard at once outside the group, and Ray places it on A,
which has a CPU to spare: both shards now share a node. Worker C joins, Ray places B's bundle
there, and the shard must move into it at the next checkpoint, not only when the episode ends
(the single, long episode here never ends before the test looks)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util import placement_group_table

from swarm_arena.api.report import RunReport
from swarm_arena.arena.matchmaking import episode_seed
from swarm_arena.arena.naming import RAY_NAMESPACE, shard_name
from swarm_arena.arena.recovery import ping_ref, request_repair
from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation, wait_until
from tests.arena.test_repair_capacity import QUICK_DETECTION

pytestmark = [pytest.mark.ray, pytest.mark.multinode, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
SEED = 7
NAME = "strict"


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, dict[str, object]]]:
    """A head without CPUs, worker A (3 CPUs: its shard, maybe the environment actor, one spare)
    and worker B (1 CPU: its shard)."""
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                           "_system_config": QUICK_DETECTION})  # fmt: skip
    nodes = {"a": cluster.add_node(num_cpus=3), "b": cluster.add_node(num_cpus=1)}
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace=RAY_NAMESPACE, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"}})  # fmt: skip
    yield cluster, nodes
    ray.shutdown()
    cluster.shutdown()


def _node_of(name: str) -> str | None:
    try:
        return ray.get(ping_ref(ray.get_actor(name, namespace=RAY_NAMESPACE)), timeout=1).node_id
    except Exception:  # noqa: BLE001 - not answering (yet)
        return None


def _group() -> dict:
    groups = [g for g in placement_group_table().values() if g["state"] != "REMOVED"]
    assert len(groups) == 1, groups
    return groups[0]


def _spread_in_bundles(names: list[str]) -> bool:
    """Ray's own view: the group is placed on distinct nodes, every bundle is used, and the shards
    run on those nodes."""
    group = _group()
    if group["state"] != "CREATED":
        return False
    bundle_nodes = set(group["bundles_to_node_id"].values())
    available = ray.available_resources()
    used = all(available.get(f"CPU_group_{i}_{group['placement_group_id']}", 0.0) == 0.0 for i in group["bundles"])
    nodes = {_node_of(n) for n in names}
    return used and len(bundle_nodes) == len(names) and nodes == bundle_nodes


def test_a_repaired_shard_returns_to_its_strict_spread_bundle_at_the_next_checkpoint(cluster, tmp_path: Path) -> None:
    cluster_, nodes = cluster
    gate = tmp_path / "gate"
    gate.mkdir()
    evaluation = foraging_evaluation(
        NAME,
        environment={"factory": "tests.arena.gated_env:parallel_env", "maxSteps": 400,
                     "params": {"gate": str(gate), "hold_seed": episode_seed(SEED, 0), "hold_at": 10, "agents": 40}},
        policies=[{"name": p, "factory": p, "resources": {"cpu": 1}} for p in ("greedy", "random")],
        episodes=1,
        seed=SEED,
        execution={"agentsPerShard": 20, "placementStrategy": "STRICT_SPREAD"},
        checkpoint={"intervalSteps": 10},
        faultTolerance={"maxActorRestarts": 1},
    )  # fmt: skip
    shards = [shard_name(evaluation.qualified_name, p, 0) for p in ("greedy", "random")]
    reports: list[RunReport] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            reports.append(run_evaluation(evaluation))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    wait_until(lambda: (gate / "held").exists() or not thread.is_alive(), "the hold at step 10")
    assert thread.is_alive(), errors
    assert _spread_in_bundles(shards)

    lost = nodes["b"]
    on_b = [n for n in shards if _node_of(n) == lost.node_id]
    assert len(on_b) == 1
    cluster_.remove_node(lost, allow_graceful=False)
    assert request_repair(evaluation.qualified_name, [lost.node_id]) == on_b
    wait_until(lambda: _node_of(on_b[0]) == nodes["a"].node_id, "the replacement starting on A")
    assert len({_node_of(n) for n in shards}) == 1  # STRICT_SPREAD broken for now: both on A
    nodes["c"] = cluster_.add_node(num_cpus=1)
    wait_until(lambda: _group()["state"] == "CREATED", "Ray placing B's bundle on C")
    (gate / "open").touch()

    back = False
    while thread.is_alive() and not back:
        back = _spread_in_bundles(shards)
        time.sleep(0.2)
    thread.join(300)
    assert not thread.is_alive(), "the run did not finish"
    assert not errors, errors
    assert back, "the repaired shard did not move into its bundle before the episode ended"
    report = reports[0]
    assert report.progress.episodes_completed == 1
    assert [r.actors_restarted for r in report.recoveries] == [on_b]
