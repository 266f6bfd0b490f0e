"""Losing the node that holds the policy shards, mid-run, on a real multi-node Ray.

The head (1 CPU) hosts the coordinator and the environment actor; worker A holds every shard
(STRICT_PACK). A is killed without warning (`allow_graceful=False`, like a lost VM) while an
episode is in flight, and a fresh worker B joins. The run must finish with every episode
counted exactly once and the same numbers as an uninterrupted run, and record the recovery.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import ray

from swarm_arena.api.report import RunReport
from swarm_arena.api.status import Progress
from swarm_arena.arena.naming import shard_name
from swarm_arena.arena.recovery import request_repair
from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation

pytestmark = [pytest.mark.ray, pytest.mark.multinode, pytest.mark.timeout(300)]


def _evaluation(name: str):
    return foraging_evaluation(
        name,
        environment={"factory": "foraging", "params": {"agents": 40}, "maxSteps": 400},
        policies=[{"name": p, "factory": p, "resources": {"cpu": 1}} for p in ("greedy", "random")],
        episodes=3,
        execution={"agentsPerShard": 10, "placementStrategy": "STRICT_PACK"},
        checkpoint={"intervalSteps": 5},
        faultTolerance={"maxActorRestarts": 2},
    )


class _Run:
    """run_evaluation in a background thread, with timestamps of every progress report."""

    def __init__(self, evaluation) -> None:
        self.evaluation = evaluation
        self.progress: list[tuple[float, Progress]] = []
        self.stepping = threading.Event()
        self.report: RunReport | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _on_progress(self, progress: Progress) -> None:
        self.progress.append((time.monotonic(), progress))
        if progress.agent_steps >= 40 * 10:  # a couple of checkpoints into episode 0
            self.stepping.set()

    def _main(self) -> None:
        try:
            self.report = run_evaluation(self.evaluation, on_progress=self._on_progress)
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self.error = exc

    def result(self, timeout: float = 200) -> RunReport:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish"
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


def _repair_in_process(ray_cluster, evaluation: str, node_id: str) -> list[str]:
    repaired = request_repair(evaluation, [node_id])
    assert request_repair(evaluation, [node_id]) == []  # idempotent
    return repaired


def _repair_from_the_command_line(ray_cluster, evaluation: str, node_id: str) -> list[str]:
    """What an outside caller (the operator, a person) does: another process, another Ray driver."""
    argv = [sys.executable, "-m", "swarm_arena.cli", "repair", evaluation, "--node-id", node_id,
            "--ray-address", ray_cluster.address]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-3000:]
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout == "" and "nothing to repair" in again.stderr, again
    return first.stdout.split()


def _lose_worker_mid_run(
    ray_cluster, name: str, repair: Callable[[Any, str, str], list[str]] | None
) -> tuple[RunReport, dict[str, Any]]:
    worker_a = ray_cluster.add_node(num_cpus=4)
    ray_cluster.wait_for_nodes()
    evaluation = _evaluation(name)
    run = _Run(evaluation)
    assert run.stepping.wait(120), f"the run never started stepping: {run.error!r}"
    # Spare capacity joins first, so what is timed is the recovery, not a node's start-up.
    ray_cluster.add_node(num_cpus=8)
    # ... and is registered: otherwise a replacement that finds no node but the lost one (which Ray
    # still counts as alive for a while) falls back onto it, is lost again, and a second repair
    # request replaces it again (seen once under load: "not idempotent").
    ray_cluster.wait_for_nodes()
    lost = time.time()
    ray_cluster.remove_node(worker_a, allow_graceful=False)
    repaired = repair(ray_cluster, evaluation.qualified_name, worker_a.node_id) if repair else []
    report = run.result()
    assert report.recoveries, "no recovery was recorded"
    # What was lost: the node, with the episode in flight resuming from a checkpoint.
    assert {node for r in report.recoveries for node in r.nodes_lost} == {worker_a.node_id}
    in_flight = [r for r in report.recoveries if r.episode is not None]
    assert in_flight and all(r.resumed_from_step is not None and r.resumed_from_step % 5 == 0 for r in in_flight)
    # Recovery.time is when stepping resumed (RFC 3339, milliseconds).
    resumed = datetime.fromisoformat(report.recoveries[-1].time.replace("Z", "+00:00")).timestamp()
    return report, {"resumed_s": resumed - lost, "repaired": repaired}


def _check_exactly_once(report: RunReport) -> None:
    assert [e.episode for e in report.episodes] == [0, 1, 2]
    assert report.progress.episodes_completed == report.progress.episodes_total == 3
    assert report.progress.agent_steps == sum(e.agent_steps for e in report.episodes) == 3 * 40 * 400


def _shards(evaluation) -> set[str]:
    return {shard_name(evaluation.qualified_name, p, i) for p in ("greedy", "random") for i in range(2)}


def test_node_loss_is_recovered_by_ray_restart(ray_cluster, record_property) -> None:
    report, timing = _lose_worker_mid_run(ray_cluster, "ft-auto", repair=None)
    _check_exactly_once(report)
    assert report.recoveries, "no recovery was recorded"
    restarted = set().union(*(r.actors_restarted for r in report.recoveries))
    assert _shards(_evaluation("ft-auto")) <= restarted
    seconds = sum(r.seconds for r in report.recoveries)
    record_property("automatic_recovery_seconds", seconds)
    record_property("automatic_resumed_after_loss_s", timing["resumed_s"])
    print(f"\nautomatic recovery: {seconds:.2f} s recorded, stepping resumed {timing['resumed_s']:.2f} s after the loss")

    # The interrupted episode resumed from its checkpoint: same numbers as an uninterrupted run.
    reference = run_evaluation(_evaluation("ft-auto-reference"))  # fresh names: nothing left over can clash
    assert [e.model_dump() for e in report.episodes] == [e.model_dump() for e in reference.episodes]
    assert [e.model_dump() for e in report.results.leaderboard] == [
        e.model_dump() for e in reference.results.leaderboard
    ]


def test_fast_repair_does_not_wait_for_ray_detection(ray_cluster, record_property) -> None:
    report, timing = _lose_worker_mid_run(ray_cluster, "ft-fast", repair=_repair_in_process)
    _check_exactly_once(report)
    assert set(timing["repaired"]) == _shards(_evaluation("ft-fast"))
    assert report.recoveries and report.recoveries[0].reason == "NodeLost"
    assert _shards(_evaluation("ft-fast")) <= set(report.recoveries[0].actors_restarted)
    seconds = sum(r.seconds for r in report.recoveries)
    record_property("fast_repair_recovery_seconds", seconds)
    record_property("fast_repair_resumed_after_loss_s", timing["resumed_s"])
    print(f"\nfast repair: {seconds:.2f} s recorded, stepping resumed {timing['resumed_s']:.2f} s after the loss")
    # Repair got there before Ray's own detection (~15 s of failed health checks): had Ray restarted
    # the shards first, the request would have found nothing to repair (asserted above: it repaired
    # every shard). How fast that is, is a benchmark's figure (benchmarks/recovery.py), not asserted.

    # Whether the repair caught a chunk mid-flight or between chunks, the replacements were
    # restored from the checkpoint: same numbers as an uninterrupted run.
    reference = run_evaluation(_evaluation("ft-fast-reference"))
    assert [e.model_dump() for e in report.episodes] == [e.model_dump() for e in reference.episodes]


def test_repair_requested_from_another_process(ray_cluster) -> None:
    report, timing = _lose_worker_mid_run(ray_cluster, "ft-cli", repair=_repair_from_the_command_line)
    _check_exactly_once(report)
    assert set(timing["repaired"]) == _shards(_evaluation("ft-cli"))
    assert report.recoveries[0].reason == "NodeLost"
    print(f"\nrepair from the command line: stepping resumed {timing['resumed_s']:.2f} s after the loss")
