"""Step latency counts every step: the ones that cross a checkpoint boundary too.

The stall at a boundary (the environment's snapshot, and any wait for the next chunk; the store
write runs while the next chunk steps, scheduler.py "chunks ahead") happens between two steps of
the environment actor. A step's
latency is the time from the end of the step before it, so that stall lands on the first step
after the boundary, in `stepLatencyMs` (p99.9 and max beside p50/p99) and in the histogram.
"""

from __future__ import annotations

import pytest

from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

STALL_S = 0.25


def test_a_slow_checkpoint_shows_in_the_step_latency(local_ray) -> None:
    # 2 episodes of 30 steps, a checkpoint every 10: 4 of the 60 steps follow a stalled snapshot
    # (the episode's end writes a record, not a checkpoint). Policies stepped in the environment
    # actor (no resources): nothing else between two steps.
    evaluation = foraging_evaluation(
        "lat-stall",
        environment={
            "factory": "tests.arena.slow_snapshot_env:parallel_env",
            "params": {"agents": 50, "stall_s": STALL_S},
            "maxSteps": 30,
        },
        policies=[{"name": p, "factory": p} for p in ("greedy", "random")],
        episodes=2,
    )

    report = run_evaluation(evaluation)

    latency = report.results.step_latency_ms
    assert latency is not None
    stall_ms = STALL_S * 1000
    # Lower bounds only: the snapshot sleeps at least STALL_S, whatever the machine's load.
    assert latency.max >= stall_ms
    assert latency.p99_9 >= stall_ms
    assert latency.p99 >= stall_ms  # 4 of 60 steps, more than 1 %
    assert 0 < latency.p50 <= latency.p99 <= latency.p99_9 <= latency.max


class _HeapProbe:
    def heap(self) -> tuple[int, int]:
        import gc

        return gc.get_freeze_count(), len(gc.get_objects())


def test_the_environment_actor_keeps_its_set_up_heap_out_of_full_collections(local_ray) -> None:
    # A full collection walks every tracked object; in the environment actor, what it holds once set
    # up (Ray, the modules, the environment) is frozen so that those passes stay small. Not in a
    # process that merely builds an EnvironmentWorker (this test's).
    import gc

    import ray

    from swarm_arena.arena.episode import EnvironmentWorker

    probe = ray.remote(type("ProbedWorker", (EnvironmentWorker, _HeapProbe), {}))
    actor = probe.remote("heap-probe", "foraging", {"agents": 50}, 10)
    try:
        frozen, tracked = ray.get(actor.heap.remote(), timeout=120)
        assert frozen > 10_000  # Ray's and numpy's modules at least
        assert tracked < frozen / 10
    finally:
        ray.kill(actor)
    before = gc.get_freeze_count()
    EnvironmentWorker("in-process", "foraging", {"agents": 50}, 10)
    assert gc.get_freeze_count() == before


class _ModuleProbe:
    def imported(self, module: str) -> bool:
        import sys

        return module in sys.modules


def test_the_coordinator_imports_scoring_before_the_run_starts(local_ray) -> None:
    # The run's agent-steps/s is timed over `run`; scoring (scipy: about a second to import) is
    # imported during `setup`, while the actors start, so that the first episode does not wait on it.
    import ray

    from swarm_arena.arena.coordinator import Coordinator

    evaluation = foraging_evaluation(
        "scoring-early", policies=[{"name": p, "factory": p} for p in ("greedy", "random")], episodes=2
    )
    probe = ray.remote(type("ProbedCoordinator", (Coordinator, _ModuleProbe), {}))
    coordinator = probe.options(num_cpus=0).remote(evaluation.model_dump(by_alias=True, mode="json"))
    try:
        assert not ray.get(coordinator.imported.remote("swarm_arena.arena.scoring.board"), timeout=120)
        ray.get(coordinator.setup.remote(), timeout=120)
        assert ray.get(coordinator.imported.remote("swarm_arena.arena.scoring.board"), timeout=120)
    finally:
        ray.get(coordinator.shutdown.remote(), timeout=60)
        ray.kill(coordinator)
