"""One slot's trouble never stalls the others (issue 22 §4): while slot 0 waits in revival for an
actor that does not answer (a policy shard holding the interpreter for seconds after slot 0's
environment actor was lost), slot 1 keeps finishing episodes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from swarm_arena.api.report import RunReport
from swarm_arena.api.status import Progress
from swarm_arena.arena.matchmaking import episode_seed
from swarm_arena.arena.naming import RAY_NAMESPACE, env_name
from swarm_arena.arena.recovery import ping_ref
from swarm_arena.arena.runner import run_evaluation
from swarm_arena.arena.scheduler import shard_seed
from tests.arena.conftest import foraging_evaluation, fresh_local_ray, wait_until

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SEED = 7
BUSY_S = 15
EPISODES = 40  # slot 1 must have episodes left once slot 0's loss is noticed (~1 s after the kill)


@pytest.fixture(scope="module")
def local_ray_with_test_code() -> Iterator[None]:
    yield from fresh_local_ray(num_cpus=8, runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"}})


def test_a_slot_in_revival_does_not_stall_the_other(local_ray_with_test_code, tmp_path: Path) -> None:
    busy_seed = shard_seed(episode_seed(SEED, 0), 0, 0)  # the busy policy's shard in episode 0 (slot 0)
    evaluation = foraging_evaluation(
        "slots",
        environment={"factory": "foraging", "params": {"agents": 20}, "maxSteps": 60},
        policies=[{"name": "busy", "factory": "tests.arena.busy_policy:BusyPolicy",
                   "params": {"marker": str(tmp_path), "busy_s": BUSY_S, "busy_step": 5, "busy_seed": busy_seed},
                   "resources": {"cpu": 0.25}},
                  {"name": "random", "factory": "random", "resources": {"cpu": 0.25}}],
        episodes=EPISODES,
        seed=SEED,
        execution={"parallelEpisodes": 2},
        checkpoint={"intervalSteps": 10},
    )  # fmt: skip
    completed: list[int] = [0]
    reports: list[RunReport] = []
    errors: list[BaseException] = []

    def on_progress(progress: Progress) -> None:
        completed[0] = progress.episodes_completed

    def main() -> None:
        try:
            reports.append(run_evaluation(evaluation, on_progress=on_progress))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    wait_until(lambda: (tmp_path / "busy").exists() or not thread.is_alive(), "the busy call in episode 0")
    assert thread.is_alive(), errors
    # Slot 0 loses its environment actor (Ray restarts it in place); its busy shard cannot answer
    # the revival's pings until its call ends, so slot 0 waits in revival for seconds.
    env = ray.get_actor(env_name(evaluation.qualified_name, 0), namespace=RAY_NAMESPACE)
    first = _instance(env)
    ray.kill(env, no_restart=False)
    # Ray restarts it in place, the failed chunk surfaces and slot 0's revival begins.
    wait_until(lambda: _instance(env) not in (None, first), "Ray's restart of env-0")
    before = completed[0]
    wait_until(lambda: completed[0] >= before + 3 or (tmp_path / "done").exists(), "slot 1 going on")
    assert not (tmp_path / "done").exists(), (
        f"slot 1 counted {completed[0] - before} episodes while slot 0 was in revival for {BUSY_S} s"
    )
    thread.join(240)
    assert not thread.is_alive() and not errors, errors
    report = reports[0]
    assert sorted(e.episode for e in report.episodes) == list(range(EPISODES))
    assert [(r.actors_restarted, r.episode) for r in report.recoveries] == [
        ([env_name(evaluation.qualified_name, 0)], 0)
    ]


def _instance(handle) -> str | None:
    try:
        return ray.get(ping_ref(handle), timeout=1).instance
    except Exception:  # noqa: BLE001 - not answering (yet)
        return None
