"""A checkpoint's store write is off the step path: the environment actor steps on while it runs.

The coordinator queues each chunk's successor on the environment actor while the chunk runs
(scheduler.py, "chunks ahead"), so at a boundary the environment returns its snapshot and goes
straight on. The proof needs no clock: a store whose write of the checkpoint of step 10 blocks
until the environment has reached its next boundary (step 20, where tests/arena/gated_env.py
writes `<gate>/held`). If the environment waited for the write, that never happens and the
store's wait fails at its deadline. The numbers stay those of a run whose store never blocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import swarm_arena.arena.coordinator as coordinator_module
from swarm_arena.arena.checkpoint import MemoryStore
from swarm_arena.arena.coordinator import Coordinator
from swarm_arena.arena.episode import EpisodeCheckpoint
from swarm_arena.arena.matchmaking import episode_seed
from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation, fresh_local_ray, wait_until

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SEED = 7


@pytest.fixture(scope="module")
def local_ray_with_test_code() -> Iterator[None]:
    """Workers import tests.arena.gated_env, as users' own code would arrive through runtime_env."""
    yield from fresh_local_ray(num_cpus=8, runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"}})


def _evaluation(name: str, gate: Path) -> Any:
    """One episode of 30 steps, a checkpoint every 10, policies stepped in the environment actor;
    the environment holds at its snapshot of step 20 until `<gate>/open` exists."""
    return foraging_evaluation(
        name,
        environment={"factory": "tests.arena.gated_env:parallel_env", "maxSteps": 30,
                     "params": {"gate": str(gate), "hold_seed": episode_seed(SEED, 0), "hold_at": 20, "agents": 40}},
        policies=[{"name": p, "factory": p} for p in ("greedy", "random")],
        episodes=1,
        seed=SEED,
    )  # fmt: skip


class BlockedStore(MemoryStore):
    """Storing the checkpoint of step 10 waits until the environment holds at step 20, then opens the gate."""

    def __init__(self, gate: Path) -> None:
        super().__init__()
        self.gate = gate
        self.stored: list[int] = []

    def save_checkpoint(self, checkpoint: EpisodeCheckpoint) -> None:
        if checkpoint.step == 10:
            wait_until(lambda: (self.gate / "held").exists(),
                       "the environment stepping to its next checkpoint while this one was being stored")  # fmt: skip
            (self.gate / "open").touch()
        super().save_checkpoint(checkpoint)
        self.stored.append(checkpoint.step)


def test_the_environment_steps_on_while_its_checkpoint_is_stored(
    local_ray_with_test_code, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    store = BlockedStore(gate)
    monkeypatch.setattr(coordinator_module, "open_store", lambda spec, evaluation: store)
    evaluation = _evaluation("ahead-blocked", gate)
    coordinator = Coordinator(evaluation.model_dump(by_alias=True, mode="json"))  # in this process: its store is ours
    try:
        coordinator.setup()
        outcome = coordinator.run()
    finally:
        coordinator.shutdown()
    assert store.stored == [10, 20]  # in order, each once
    assert not outcome.recoveries

    monkeypatch.undo()
    opened = tmp_path / "open-gate"
    opened.mkdir()
    (opened / "open").touch()
    reference = run_evaluation(_evaluation("ahead-reference", opened))
    assert [e.model_dump() for e in outcome.episodes] == [e.model_dump() for e in reference.episodes]


def test_an_episode_that_ends_before_its_chunk_ahead_counts_once(local_ray_with_test_code) -> None:
    """Foraging ends at its own horizon (step 15) inside the chunk of steps 10-20, while the chunk of
    20-30 is already queued behind it: that chunk changes nothing, the next episode begins afresh
    on the same environment actor, and each episode counts once with its 15 steps."""
    evaluation = foraging_evaluation(
        "ahead-early-end",
        environment={"factory": "foraging", "params": {"agents": 40, "max_cycles": 15}, "maxSteps": 30},
        policies=[{"name": p, "factory": p} for p in ("greedy", "random")],
        episodes=2,
        seed=SEED,
    )
    report = run_evaluation(evaluation)
    assert [(e.episode, e.steps) for e in report.episodes] == [(0, 15), (1, 15)]
    assert report.progress.agent_steps == 2 * 40 * 15
    assert not report.recoveries
