"""Recovery is exact in every layout: parallel episodes with shard actors resumed after the head
was lost (on whichever slot is free), and a shard actor that Ray restarted while it was idle.

A real local Ray; the environment is foraging that holds still at a chosen checkpoint until the
test lets it go (tests/arena/gated_env.py), so a loss lands at a known point. Every run is
compared with the same evaluation played without a loss.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from swarm_arena.api.report import RunReport
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.arena.checkpoint_codec import decode_checkpoint, encode_checkpoint
from swarm_arena.arena.errors import InvalidSpec
from swarm_arena.arena.matchmaking import episode_seed
from swarm_arena.arena.naming import RAY_NAMESPACE, coordinator_name, env_name, shard_name
from swarm_arena.arena.recovery import ping_ref
from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation, fresh_local_ray, wait_until

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
SEED = 7
NAME = "exact"


def ray_with_test_code() -> Iterator[None]:
    """Workers import tests.arena.gated_env, as users' own code would arrive through runtime_env."""
    yield from fresh_local_ray(num_cpus=8, runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"}})


@pytest.fixture(scope="module")
def local_ray_with_test_code() -> Iterator[None]:
    yield from ray_with_test_code()


def _evaluation(gate: Path, hold: tuple[int, int], store: Path | str | None = None, **overrides: Any) -> SwarmEvaluation:
    """Two parallel episodes of 40 agents: `greedy` and `random` in shard actors of 10 agents (two
    each per slot), `noop` stepped in the environment actor. The environment of episode
    `hold[0]` holds at its checkpoint of step `hold[1]` until `<gate>/open` exists. `store` is a
    folder (a `file://` store) or a storage URI."""
    episode, step = hold
    spec: dict[str, Any] = {
        "environment": {"factory": "tests.arena.gated_env:parallel_env", "maxSteps": 30,
                        "params": {"gate": str(gate), "hold_seed": episode_seed(SEED, episode), "hold_at": step,
                                   "agents": 40}},
        "policies": [{"name": "greedy", "factory": "greedy", "resources": {"cpu": 0.25}},
                     {"name": "random", "factory": "random", "resources": {"cpu": 0.25}},
                     {"name": "noop", "factory": "noop"}],
        "episodes": 2,
        "seed": SEED,
        "execution": {"agentsPerShard": 10, "parallelEpisodes": 2},
        "checkpoint": {"intervalSteps": 10, **({"storageURI": _storage_uri(store)} if store else {})},
    }  # fmt: skip
    spec.update(overrides)
    return foraging_evaluation(NAME, **spec)


def _storage_uri(store: Path | str) -> str:
    return store if isinstance(store, str) else f"file://{store}"


class _Run:
    """run_evaluation in a background thread."""

    def __init__(self, evaluation: SwarmEvaluation) -> None:
        self.report: RunReport | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(evaluation,), daemon=True)
        self.thread.start()

    def _main(self, evaluation: SwarmEvaluation) -> None:
        try:
            self.report = run_evaluation(evaluation)
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self.error = exc

    def result(self, timeout: float = 240) -> RunReport:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish"
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


def _same_numbers(report: RunReport, reference: RunReport) -> None:
    assert [e.model_dump() for e in report.episodes] == [e.model_dump() for e in reference.episodes]
    assert [e.model_dump() for e in report.results.leaderboard] == [
        e.model_dump() for e in reference.results.leaderboard
    ]


@pytest.fixture(scope="module")
def reference(local_ray_with_test_code, tmp_path_factory) -> RunReport:
    """The evaluation played without a loss (the gate is open from the start)."""
    gate = tmp_path_factory.mktemp("gate-open")
    (gate / "open").touch()
    report = run_evaluation(_evaluation(gate, hold=(1, 20)))
    assert [e.episode for e in report.episodes] == [0, 1] and not report.recoveries
    return report


def lose_the_head(gate: Path, store: Path | str, stored: Callable[[], list[str]]) -> None:
    """Leave a durable store as a lost head leaves it: episode 0 (slot 0) counted, episode 1 (slot 1)
    in flight with its checkpoint of step 10; the gate stays closed. `stored()` lists the store's
    files as `<folder>/<name>` (`episodes/000000.json`, `inflight/000001.npz`, ...)."""
    evaluation = _evaluation(gate, hold=(1, 20), store=store)
    run = _Run(evaluation)
    # Counted, then its checkpoint dropped: a listing between the two (an object store's round
    # trips make that window wide on a loaded machine) would still show episode 0's checkpoint.
    # Episode 1's checkpoint of step 10 is stored while its environment steps on to the hold at 20
    # (scheduler.py, "chunks ahead"): it may land just after the hold begins.
    wait_until(
        lambda: (gate / "held").exists() and "episodes/000000.json" in (names := stored())
        and "inflight/000000.npz" not in names and "inflight/000001.npz" in names,
        "episode 0 counted and its checkpoint dropped, 1 held with its checkpoint of step 10 stored",
    )
    assert [f for f in stored() if f.startswith("inflight/")] == ["inflight/000001.npz"]
    # The head is lost: the coordinator with it, and every actor it owns with the coordinator.
    coordinator = ray.get_actor(coordinator_name(evaluation.qualified_name), namespace=RAY_NAMESPACE)
    ray.kill(coordinator, no_restart=True)
    with pytest.raises(ray.exceptions.RayActorError):
        run.result()


def stored_names(keys: list[str]) -> list[str]:
    """`<folder>/<name>` of each file (dot files, an upload in progress, left out), sorted."""
    return sorted("/".join(k.split("/")[-2:]) for k in keys if not k.rsplit("/", 1)[-1].startswith("."))


@pytest.fixture(scope="module")
def head_lost(local_ray_with_test_code, tmp_path_factory) -> tuple[Path, Path]:
    """A file:// store as a lost head leaves it (`lose_the_head`). Returns (gate, store)."""
    gate, store = tmp_path_factory.mktemp("gate"), tmp_path_factory.mktemp("store")
    lose_the_head(gate, store, lambda: stored_names([str(p) for p in store.rglob("*") if p.is_file()]))
    return gate, store


def _copy(head_lost: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The lost head's gate (the environment's params, so the spec, stay the same) and a copy of its store."""
    gate, store = head_lost[0], tmp_path / "store"
    shutil.copytree(head_lost[1], store)
    return gate, store


def test_a_lost_head_with_parallel_episodes_resumes_exactly(head_lost, reference, tmp_path: Path) -> None:
    """The re-submitted job resumes episode 1 on the first free slot, slot 0, whose shard actors
    are not the ones that checkpointed it: state belongs to (policy, shard index), not to an actor."""
    gate, store = _copy(head_lost, tmp_path)
    (gate / "open").touch()
    resumed = run_evaluation(_evaluation(gate, hold=(1, 20), store=store))
    assert resumed.progress.episodes_completed == 2
    assert resumed.progress.agent_steps == 2 * 40 * 30
    assert len(list((store / "default" / NAME).iterdir())) == 1  # it resumed that store, not a fresh one
    assert not list(store.rglob("inflight/*"))
    _same_numbers(resumed, reference)


def test_a_lost_head_resumes_exactly_under_another_parallel_episodes(head_lost, reference, tmp_path: Path) -> None:
    """How many episodes run at once shapes no state: the resume may run them one at a time."""
    gate, store = _copy(head_lost, tmp_path)
    (gate / "open").touch()
    resumed = run_evaluation(_evaluation(gate, hold=(1, 20), store=store, execution={"agentsPerShard": 10}))
    assert len(list((store / "default" / NAME).iterdir())) == 1
    _same_numbers(resumed, reference)


def test_a_resume_under_another_layout_is_refused(head_lost, tmp_path: Path) -> None:
    """`random` in the environment actor instead of shard actors would lay the checkpointed state
    out differently: refused, naming what changed, before anything runs."""
    gate, store = _copy(head_lost, tmp_path)
    (gate / "open").touch()
    hosted = _evaluation(gate, hold=(1, 20), store=store)
    hosted.spec.policies[1].resources.cpu = 0
    with pytest.raises(InvalidSpec, match=r"spec\.policies\[1\]\.resources.*random.*shard actors.*environment actor"):
        run_evaluation(hosted)
    assert sorted(p.name for p in store.rglob("inflight/*")) == ["000001.npz"]  # nothing was touched


def _instance(name: str) -> str | None:
    try:
        return ray.get(ping_ref(ray.get_actor(name, namespace=RAY_NAMESPACE)), timeout=1).instance
    except Exception:  # noqa: BLE001 - not answering (yet)
        return None


def test_a_shard_restarted_while_idle_is_restored(reference, local_ray_with_test_code, tmp_path: Path) -> None:
    """Ray restarts a killed shard actor in place between two chunks, before anyone calls it: the
    new instance holds no state of the episode. It must refuse to act, and the runtime restore it
    from the checkpoint, not step on with a fresh policy."""
    gate = tmp_path / "gate"
    gate.mkdir()
    evaluation = _evaluation(gate, hold=(0, 10))
    run = _Run(evaluation)
    wait_until(lambda: (gate / "held").exists(), "the hold at episode 0's checkpoint of step 10")
    name = shard_name(evaluation.qualified_name, "random", 0)  # slot 0's first random shard
    before = _instance(name)
    assert before is not None
    ray.kill(ray.get_actor(name, namespace=RAY_NAMESPACE), no_restart=False)
    wait_until(lambda: _instance(name) not in (None, before), f"Ray's restart of {name}")
    (gate / "open").touch()
    report = run.result()
    _same_numbers(report, reference)
    assert [(r.actors_restarted, r.episode, r.resumed_from_step) for r in report.recoveries] == [([name], 0, 10)]


def test_a_lost_environment_actor_resumes_hosted_policies_from_the_checkpoint(
    local_ray_with_test_code, tmp_path: Path
) -> None:
    """Every policy stepped in the environment actor: losing that actor mid-episode (while it holds
    at its checkpoint of step 20) rolls the episode, policy state included, back to the checkpoint,
    and the numbers are those of the run without the loss. The gate makes the loss land mid-episode
    whatever the machine's speed (a kill from a progress callback could land after the episode)."""
    hosted = [{"name": p, "factory": p} for p in ("greedy", "random", "noop")]
    layout = {"policies": hosted, "execution": {"agentsPerShard": 10}}
    gate_open = tmp_path / "open-gate"
    gate_open.mkdir()
    (gate_open / "open").touch()
    reference = run_evaluation(_evaluation(gate_open, hold=(0, 20), **layout))
    assert not reference.recoveries

    gate = tmp_path / "gate"
    gate.mkdir()
    evaluation = _evaluation(gate, hold=(0, 20), **layout)
    run = _Run(evaluation)
    wait_until(lambda: (gate / "held").exists(), "the hold at episode 0's checkpoint of step 20")
    name = env_name(evaluation.qualified_name, 0)
    ray.kill(ray.get_actor(name, namespace=RAY_NAMESPACE), no_restart=False)
    (gate / "open").touch()
    report = run.result()
    assert [(r.actors_restarted, r.episode) for r in report.recoveries] == [([name], 0)]
    assert report.recoveries[0].resumed_from_step is not None and report.recoveries[0].resumed_from_step % 10 == 0
    assert report.progress.agent_steps == 2 * 40 * 30
    _same_numbers(report, reference)
def test_a_stored_checkpoint_the_actors_refuse_replays_its_episode(head_lost, reference, tmp_path: Path) -> None:
    """A checkpoint that decodes but does not fit (here: shard states under keys this layout does
    not have, as a corrupted or foreign file might hold) is dropped with a warning, and its episode
    replays from the start: the same numbers, not a crash of every attempt."""
    gate, store = _copy(head_lost, tmp_path)
    (gate / "open").touch()
    path = next(store.rglob("inflight/000001.npz"))
    checkpoint = decode_checkpoint(path.read_bytes())
    renamed = {f"x{key}": state for key, state in checkpoint.shard_states.items()}
    path.write_bytes(encode_checkpoint(dataclasses.replace(checkpoint, shard_states=renamed)))
    resumed = run_evaluation(_evaluation(gate, hold=(1, 20), store=store))  # the coordinator logs the warning
    _same_numbers(resumed, reference)
