"""A repair without node ids (`repair(None)`) restarts what was lost and nothing else (issue 22
§5): an actor that misses a 1 s ping because it is busy (a policy holding the interpreter for 3 s,
tests/arena/busy_policy.py) lives on a live node, so it is busy, not lost; an actor Ray reports
dead is lost."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from swarm_arena.api.report import RunReport
from swarm_arena.arena.naming import RAY_NAMESPACE, shard_name
from swarm_arena.arena.recovery import PING_TIMEOUT_S, request_repair
from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation, fresh_local_ray, wait_until

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
BUSY_S = 4


@pytest.fixture(scope="module")
def local_ray_with_test_code() -> Iterator[None]:
    yield from fresh_local_ray(num_cpus=8, runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"}})


def test_a_busy_shard_that_misses_pings_is_not_repaired(local_ray_with_test_code, tmp_path: Path) -> None:
    assert BUSY_S > 2 * PING_TIMEOUT_S
    evaluation = foraging_evaluation(
        "liveness",
        environment={"factory": "foraging", "params": {"agents": 20}, "maxSteps": 20},
        policies=[{"name": "busy", "factory": "tests.arena.busy_policy:BusyPolicy",
                   "params": {"marker": str(tmp_path), "busy_s": BUSY_S, "busy_step": 5}, "resources": {"cpu": 0.25}},
                  {"name": "random", "factory": "random", "resources": {"cpu": 0.25}}],
        episodes=1,
        checkpoint={"intervalSteps": 10},
    )  # fmt: skip
    reports: list[RunReport] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            reports.append(run_evaluation(evaluation))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    wait_until(lambda: (tmp_path / "busy").exists() or not thread.is_alive(), "the busy call")
    busy = ray.get_actor(shard_name(evaluation.qualified_name, "busy", 0), namespace=RAY_NAMESPACE)
    missed = False
    with pytest.raises(ray.exceptions.GetTimeoutError):  # it really misses a ping
        ray.get(busy.ping.options(concurrency_group="liveness").remote(), timeout=PING_TIMEOUT_S)
        missed = True
    assert not missed
    replaced = request_repair(evaluation.qualified_name, None)
    assert not (tmp_path / "done").exists(), "the busy call ended before the repair looked: raise BUSY_S"
    assert replaced == []
    thread.join(240)
    assert not thread.is_alive() and not errors, errors
    assert reports[0].recoveries == []  # no healthy episode was rolled back
    assert reports[0].progress.episodes_completed == 1


def test_a_dead_shard_is_repaired(local_ray_with_test_code, tmp_path: Path) -> None:
    """The other half: an actor Ray reports dead is lost, and repair(None) replaces it."""
    evaluation = foraging_evaluation(
        "liveness-dead",
        environment={"factory": "foraging", "params": {"agents": 20}, "maxSteps": 20},
        policies=[{"name": "busy", "factory": "tests.arena.busy_policy:BusyPolicy",
                   "params": {"marker": str(tmp_path), "busy_s": BUSY_S, "busy_step": 5}, "resources": {"cpu": 0.25}},
                  {"name": "random", "factory": "random", "resources": {"cpu": 0.25}}],
        episodes=1,
        checkpoint={"intervalSteps": 10},
    )  # fmt: skip
    reports: list[RunReport] = []
    thread = threading.Thread(target=lambda: reports.append(run_evaluation(evaluation)), daemon=True)
    thread.start()
    wait_until(lambda: (tmp_path / "busy").exists(), "the busy call")
    # While the busy shard holds the episode, its partner dies for good: the chunk cannot see it yet.
    name = shard_name(evaluation.qualified_name, "random", 0)
    handle = ray.get_actor(name, namespace=RAY_NAMESPACE)
    ray.kill(handle, no_restart=True)
    wait_until(lambda: _dead(handle), f"Ray reporting {name} dead")
    assert request_repair(evaluation.qualified_name, None) == [name]
    thread.join(240)
    assert not thread.is_alive() and reports, "the run did not finish"
    assert [r.actors_restarted for r in reports[0].recoveries] == [[name]]
    assert reports[0].progress.episodes_completed == 1


def _dead(handle) -> bool:
    try:
        ray.get(handle.ping.options(concurrency_group="liveness").remote(), timeout=PING_TIMEOUT_S)
    except ray.exceptions.RayActorError:
        return True
    except Exception:  # noqa: BLE001 - not answering yet
        return False
    return False
