"""Recovery when things go wrong twice: an actor lost again while its episode is being restored,
and a repair requested while a restore is slow. A real local Ray; the environment is a user
environment whose first restore misbehaves (tests/arena/crashing_env.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from swarm_arena.api.report import RunReport
from swarm_arena.api.status import Progress
from swarm_arena.arena.naming import RAY_NAMESPACE, env_name
from swarm_arena.arena.recovery import request_repair
from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation, fresh_local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray_with_test_code() -> Iterator[None]:
    """Workers import tests.arena.crashing_env, as users' own code would arrive through runtime_env."""
    yield from fresh_local_ray(num_cpus=8, runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"}})


def _evaluation(name: str, marker: Path, **misbehave):
    return foraging_evaluation(
        name,
        environment={"factory": "tests.arena.crashing_env:parallel_env",
                     "params": {"marker": str(marker), "agents": 40, **misbehave}, "maxSteps": 400},
        policies=[{"name": p, "factory": p, "resources": {"cpu": 0.5}} for p in ("greedy", "random")],
        episodes=2,
        execution={"agentsPerShard": 20},
        checkpoint={"intervalSteps": 20},
        faultTolerance={"maxActorRestarts": 3},
    )  # fmt: skip


class _RunWithEnvLoss:
    """Run in a thread; two checkpoints into episode 0, the environment actor is lost (Ray restarts it)."""

    def __init__(self, evaluation) -> None:
        self.evaluation = evaluation
        checkpointed = threading.Event()
        self.reports: list[RunReport] = []

        def on_progress(progress: Progress) -> None:
            if progress.agent_steps >= 40 * 40:
                checkpointed.set()

        self.thread = threading.Thread(
            target=lambda: self.reports.append(run_evaluation(evaluation, on_progress=on_progress))
        )
        self.thread.start()
        assert checkpointed.wait(120)
        ray.kill(ray.get_actor(env_name(evaluation.qualified_name, 0), namespace=RAY_NAMESPACE), no_restart=False)

    def result(self) -> RunReport:
        self.thread.join(240)
        assert not self.thread.is_alive() and self.reports, "the run did not finish"
        return self.reports[0]


def test_a_loss_during_the_restore_is_one_recovery(local_ray_with_test_code, tmp_path: Path) -> None:
    evaluation = _evaluation("rp-nested", tmp_path / "crashed", crash=True)
    report = _RunWithEnvLoss(evaluation).result()
    assert (tmp_path / "crashed").exists(), "the restore never ran"
    assert [e.episode for e in report.episodes] == [0, 1]
    assert report.progress.agent_steps == 2 * 40 * 400
    assert len(report.recoveries) == 1, report.recoveries  # one loss, however often it struck
    (recovery,) = report.recoveries
    assert recovery.actors_restarted == [env_name(evaluation.qualified_name, 0)]
    assert recovery.episode == 0 and recovery.resumed_from_step and recovery.resumed_from_step % 20 == 0


def test_a_repair_does_not_wait_for_a_slow_restore(local_ray_with_test_code, tmp_path: Path) -> None:
    """The run thread restoring for 30 s holds nothing a repair needs: the repair answers at once."""
    marker = tmp_path / "slow"
    evaluation = _evaluation("rp-slow", marker, slow=30.0)
    run = _RunWithEnvLoss(evaluation)
    deadline = time.monotonic() + 60
    while not marker.exists():  # the restore has begun (and sleeps)
        assert time.monotonic() < deadline, "the restore never began"
        time.sleep(0.1)
    assert request_repair(evaluation.qualified_name, None, timeout=15) == []
    report = run.result()
    assert [e.episode for e in report.episodes] == [0, 1] and len(report.recoveries) == 1
