"""spec.recording on a real local Ray: the tables, exact replay (MAgent2 battle), a non-deterministic
environment named at its first differing step, and each step recorded once after a recovered loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds
import pytest
import ray

from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.arena.matchmaking import episode_seed
from swarm_arena.arena.naming import RAY_NAMESPACE, env_name
from swarm_arena.arena.recording.replay import Recording, replay_episode
from swarm_arena.arena.runner import run_evaluation
from swarm_arena.cli import main
from tests.arena.conftest import foraging_evaluation, fresh_local_ray, wait_until
from tests.arena.test_exact_recovery import _Run

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
BATTLE = "magent2.environments.battle_v4:parallel_env"


@pytest.fixture(scope="module")
def ray_with_test_code():
    """Workers import tests.arena.* environments, as users' own code would arrive through runtime_env."""
    yield from fresh_local_ray(num_cpus=8, runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"}})


def _recorded(report) -> Recording:
    assert report.results.recordings is not None
    return Recording(report.results.recordings.uri)


def _steps(recording: Recording) -> Any:
    return ds.dataset(recording.uri.removeprefix("file://") + "/steps", format="parquet").to_table()


@pytest.fixture(scope="module")
def battle(ray_with_test_code, tmp_path_factory) -> tuple[Any, Recording]:
    """MAgent2 battle on a 30x30 map: red and blue random, 2 episodes of 25 steps, recorded."""
    store = tmp_path_factory.mktemp("battle")
    evaluation = foraging_evaluation(
        "battle",
        environment={"factory": BATTLE, "params": {"map_size": 30}, "maxSteps": 25},
        policies=[{"name": "red", "factory": "random"}, {"name": "blue", "factory": "random"}],
        teams=[{"name": "red", "agents": "red_*"}, {"name": "blue", "agents": "blue_*"}],
        matchmaking={"mode": "fixed", "assignments": {"red": "red", "blue": "blue"}},
        episodes=2,
        checkpoint={"intervalSteps": 10},
        recording={"storageURI": f"file://{store}"},
    )
    report = run_evaluation(evaluation)
    return report, _recorded(report)


def test_a_recorded_battle_holds_every_agent_step_once_with_the_counted_returns(battle) -> None:
    report, recording = battle
    assert (report.results.recordings.episodes, report.results.recordings.count) == ("0-1", 2)
    steps = _steps(recording)
    assert steps.num_rows == report.progress.agent_steps
    keys = set(zip(*(steps.column(c).to_pylist() for c in ("episode", "step", "agent")), strict=True))
    assert len(keys) == steps.num_rows
    assert str(steps.schema.field("action").type) == "int8" and str(steps.schema.field("reward").type) == "float"
    assert set(steps.column("policy").to_pylist()) == {"red", "blue"}
    for record in report.episodes:
        episode = recording.episode(record.episode)
        assert episode.policy_returns == record.returns
        assert episode.seed == episode_seed(report.seed, record.episode)


def test_a_recorded_battle_replays_to_identical_returns(battle, capsys) -> None:
    _, recording = battle
    for episode in recording.episodes():
        assert replay_episode(recording, episode).exact
    assert main(["replay", recording.uri]) == 0
    assert "episode 1: 25 steps, every step and return as recorded" in capsys.readouterr().out


def test_a_non_deterministic_environment_is_named_at_its_first_differing_step(ray_with_test_code, tmp_path, capsys) -> None:
    evaluation = foraging_evaluation(
        "noisy",
        environment={"factory": "tests.arena.nondeterministic_env:parallel_env",
                     "params": {"agents": 20, "at": 7, "agent": 3}, "maxSteps": 12},
        policies=[{"name": "greedy", "factory": "greedy"}],
        episodes=1,
        recording={"storageURI": f"file://{tmp_path}"},
    )  # fmt: skip
    recording = _recorded(run_evaluation(evaluation))
    replay = replay_episode(recording, 0)
    assert replay.divergence is not None
    assert (replay.divergence.step, replay.divergence.agent, replay.divergence.what) == (7, "agent_3", "reward")
    assert main(["replay", recording.uri]) == 1
    out = capsys.readouterr()
    assert "episode 0: the environment is not deterministic given its seed and actions: step 7, agent agent_3: reward" in out.out


def _gated(gate: Path, store: Path) -> SwarmEvaluation:
    """Two episodes of 40 agents, every policy stepped in the environment actor, which holds at
    episode 0's checkpoint of step 20 until `<gate>/open` exists."""
    return foraging_evaluation(
        "recovered",
        environment={"factory": "tests.arena.gated_env:parallel_env", "maxSteps": 30,
                     "params": {"gate": str(gate), "hold_seed": episode_seed(7, 0), "hold_at": 20, "agents": 40}},
        policies=[{"name": p, "factory": p} for p in ("greedy", "random")],
        episodes=2,
        checkpoint={"intervalSteps": 10},
        recording={"storageURI": f"file://{store}", "observations": {"agents": 2}},
    )  # fmt: skip


def test_a_recovered_loss_records_each_step_once(ray_with_test_code, tmp_path) -> None:
    """The environment actor is lost while it holds episode 0 at step 20: the chunk it was in is
    replayed from the checkpoint, and the recording equals that of the run without the loss."""
    gate_open = tmp_path / "open-gate"
    gate_open.mkdir()
    (gate_open / "open").touch()
    reference = _steps(_recorded(run_evaluation(_gated(gate_open, tmp_path / "reference"))))

    gate = tmp_path / "gate"
    gate.mkdir()
    evaluation = _gated(gate, tmp_path / "lossy")
    run = _Run(evaluation)
    wait_until(lambda: (gate / "held").exists(), "the hold at episode 0's checkpoint of step 20")
    ray.kill(ray.get_actor(env_name(evaluation.qualified_name, 0), namespace=RAY_NAMESPACE), no_restart=False)
    (gate / "open").touch()
    report = run.result()
    assert [r.episode for r in report.recoveries] == [0]
    recording = _recorded(report)
    steps = _steps(recording)
    assert steps.num_rows == report.progress.agent_steps == 2 * 40 * 30
    assert steps.to_pylist() == reference.to_pylist()  # each file is step-major, agents in order
    observed = ds.dataset(recording.uri.removeprefix("file://") + "/observations", format="parquet").to_table()
    assert observed.num_rows == 2 * 2 * 30 and sorted(set(observed.column("agent").to_pylist())) == ["agent_0", "agent_39"]
    assert all(replay_episode(recording, e).exact for e in (0, 1))
    assert np.array_equal(recording.episode(0).agent_returns.round(6), recording.episode(0).rewards.sum(0).round(6))


def test_a_recorded_battle_renders_to_a_playable_gif_and_mp4(battle, tmp_path) -> None:
    import imageio.v3 as iio

    _, recording = battle
    gif, mp4 = tmp_path / "battle.gif", tmp_path / "battle.mp4"
    assert main(["render", recording.uri, "--episode", "1", "--video", str(gif)]) == 0
    assert main(["render", recording.uri.removeprefix("file://"), "--video", str(mp4), "--every", "5"]) == 0
    clip = iio.imread(gif, index=None)
    assert clip.ndim == 4 and clip.shape[0] > 1 and clip.std() > 0
    # The reset, then each of the 25 steps, 100 ms a frame (the gif merges frames that do not change).
    durations = [meta["duration"] for meta in (iio.immeta(gif, index=i) for i in range(clip.shape[0]))]
    assert sum(durations) == 26 * 100
    assert iio.imread(mp4, index=None, extension=".mp4").shape[0] == 6


def test_the_foraging_world_is_drawn_coloured_by_policy() -> None:
    from swarm_arena.arena.recording.render import BACKGROUND, FOOD, PALETTE, draw_foraging

    food = np.zeros((4, 4), dtype=bool)
    food[0, 0] = True
    pos = np.array([[1, 1], [2, 3], [3, 3]])
    colours = np.stack([PALETTE[0], PALETTE[1], PALETTE[1]])
    image = draw_foraging(4, food, pos, np.array([True, True, False]), colours)
    cell = image.shape[0] // 4
    assert image.shape == (4 * cell, 4 * cell, 3) and cell == 8
    at = lambda r, c: image[r * cell, c * cell].tolist()  # noqa: E731
    assert at(0, 0) == FOOD.tolist() and at(1, 1) == PALETTE[0].tolist() and at(2, 3) == PALETTE[1].tolist()
    assert at(3, 3) == BACKGROUND.tolist()  # a dead agent is not drawn


def test_run_record_then_render_a_foraging_clip_from_the_folder(ray_with_test_code, tmp_path, capsys) -> None:
    """`swarm-arena run --record DIR` records a manifest without spec.recording; `render DIR` finds it."""
    import imageio.v3 as iio
    import yaml

    manifest = tmp_path / "eval.yaml"
    evaluation = foraging_evaluation(
        "clip", environment={"factory": "foraging", "params": {"agents": 300}, "maxSteps": 8},
        policies=[{"name": p, "factory": p} for p in ("greedy", "random", "noop")], episodes=1,
    )  # fmt: skip
    manifest.write_text(yaml.safe_dump(evaluation.model_dump(by_alias=True, mode="json", exclude_none=True)))
    assert main(["run", str(manifest), "--record", str(tmp_path / "rec"), "-q", "-o", "json"]) == 0
    assert '"recordings"' in capsys.readouterr().out
    clip = tmp_path / "clip.gif"
    assert main(["render", str(tmp_path / "rec"), "--video", str(clip)]) == 0
    frames = iio.imread(clip, index=None)
    colours = {tuple(c) for c in frames[0].reshape(-1, 3).tolist()}
    from swarm_arena.arena.recording.render import PALETTE

    assert {tuple(PALETTE[i].tolist()) for i in range(3)} <= colours  # every policy's agents drawn in its colour


def test_a_lost_head_leaves_each_step_recorded_once(ray_with_test_code, tmp_path) -> None:
    """The coordinator (the head) is lost while episode 1 holds at its checkpoint of step 20 in a
    durable store, episode 0 counted: the re-submitted run records episode 1 from its start (the
    chunks before the checkpoint were in the lost coordinator's memory) and has episode 0 whether
    its write finished before the loss or not. The recording equals that of the run without a loss."""
    from swarm_arena.arena.naming import coordinator_name

    gate_open = tmp_path / "open-gate"
    gate_open.mkdir()
    (gate_open / "open").touch()
    reference = _steps(_recorded(run_evaluation(_head_lost_spec(gate_open, tmp_path / "reference"))))

    gate, store = tmp_path / "gate", tmp_path / "store"
    gate.mkdir()
    evaluation = _head_lost_spec(gate, store)
    run = _Run(evaluation)
    wait_until(lambda: (gate / "held").exists() and any(store.rglob("episodes/000000.json")), "episode 0 counted, 1 held")
    ray.kill(ray.get_actor(coordinator_name(evaluation.qualified_name), namespace=RAY_NAMESPACE), no_restart=True)
    with pytest.raises(ray.exceptions.RayActorError):
        run.result()
    (gate / "open").touch()
    report = run_evaluation(_head_lost_spec(gate, store))
    assert report.results.recordings.episodes == "0-1"
    steps = _steps(_recorded(report))
    assert steps.num_rows == 2 * 40 * 30 and steps.to_pylist() == reference.to_pylist()


def _head_lost_spec(gate: Path, store: Path) -> SwarmEvaluation:
    """Two parallel episodes of 40 agents, a durable store; episode 1 holds at its checkpoint of step 20."""
    return foraging_evaluation(
        "head-lost",
        environment={"factory": "tests.arena.gated_env:parallel_env", "maxSteps": 30,
                     "params": {"gate": str(gate), "hold_seed": episode_seed(7, 1), "hold_at": 20, "agents": 40}},
        policies=[{"name": p, "factory": p} for p in ("greedy", "random")],
        episodes=2,
        execution={"parallelEpisodes": 2},
        checkpoint={"intervalSteps": 10, "storageURI": f"file://{store}"},
        recording={},
    )  # fmt: skip
