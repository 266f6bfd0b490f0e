"""The fast repair path against a running evaluation on a real local Ray: what a caller gets back
when the coordinator is slow to answer, and what a repair without node ids may and may not touch."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import ray

from swarm_arena.api.report import RunReport
from swarm_arena.api.status import Progress
from swarm_arena.arena.recovery import RepairTimedOut, request_repair
from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation, fresh_local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def local_ray_for_repairs() -> Iterator[None]:
    yield from fresh_local_ray(num_cpus=8)


class _Background:
    """run_evaluation in a thread; `stepping` is set once agent-steps were counted."""

    def __init__(self, evaluation) -> None:
        self.evaluation = evaluation
        self.stepping = threading.Event()
        self.report: RunReport | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _on_progress(self, progress: Progress) -> None:
        if progress.agent_steps > 0:
            self.stepping.set()

    def _main(self) -> None:
        try:
            self.report = run_evaluation(self.evaluation, on_progress=self._on_progress)
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self.error = exc
        finally:
            self.stepping.set()

    def result(self, timeout: float = 240) -> RunReport:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish"
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


def _long_evaluation(name: str, **spec):
    """Long chunks: 1,500 foraging agents, a checkpoint every 400 steps."""
    base = {
        "environment": {"factory": "foraging", "params": {"agents": 1500}, "maxSteps": 800},
        "policies": [{"name": p, "factory": p, "resources": {"cpu": 1}} for p in ("greedy", "random")],
        "episodes": 2,
        "execution": {"agentsPerShard": 750},
        "checkpoint": {"intervalSteps": 400},
    }
    base.update(spec)
    return foraging_evaluation(name, **base)


def test_a_repair_that_times_out_says_so_without_a_traceback(local_ray_for_repairs) -> None:
    run = _Background(_long_evaluation("rp-timeout", episodes=4))  # long enough for a CLI to start
    assert run.stepping.wait(120)
    name = run.evaluation.qualified_name
    with pytest.raises(RepairTimedOut, match=r"did not answer .* within 0 s.*idempotent"):
        request_repair(name, None, timeout=0)
    address = ray.get_runtime_context().gcs_address
    cli = subprocess.run(
        [sys.executable, "-m", "swarm_arena.cli", "repair", name, "--timeout", "0", "--ray-address", address],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr
    assert "did not answer" in cli.stderr
    run.result()


def test_a_repair_without_node_ids_leaves_a_busy_environment_alone(local_ray_for_repairs) -> None:
    """An environment actor in the middle of a long chunk is busy, not lost: its ping still answers."""
    # Each episode is one chunk of 800 steps (seconds long); episode 1's chunk runs when episode 0 is counted.
    evaluation = _long_evaluation("rp-busy", episodes=3, checkpoint={"intervalSteps": 1000})
    counted = threading.Event()
    report: list[RunReport] = []

    def on_progress(progress: Progress) -> None:
        if progress.episodes_completed >= 1:
            counted.set()

    thread = threading.Thread(target=lambda: report.append(run_evaluation(evaluation, on_progress=on_progress)))
    thread.start()
    assert counted.wait(180), "episode 0 was never counted"
    replaced = [request_repair(evaluation.qualified_name, None) for _ in range(3)]
    thread.join(240)
    assert not thread.is_alive() and report, "the run did not finish"
    assert replaced == [[], [], []]
    assert report[0].recoveries == []  # no healthy episode was rolled back
    assert [e.episode for e in report[0].episodes] == [0, 1, 2]
