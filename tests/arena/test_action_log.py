"""Checkpoints of generic PettingZoo environments cost O(steps), not O(steps²): each chunk's
checkpoint carries only its own actions, in the smallest integer type the action space allows,
and the store joins the pieces back for a restore (memory and durable `file://` stores)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from swarm_arena.arena.array_env import ActionLog, compact_action_dtype, make_array_env
from swarm_arena.arena.checkpoint import DurableStore, MemoryStore, open_store
from swarm_arena.arena.checkpoint_codec import decode_checkpoint
from swarm_arena.arena.episode import EpisodeCheckpoint
from tests.arena.conftest import foraging_evaluation
from tests.arena.test_array_env import BATTLE, ChargePolicy, _step_all

import gymnasium


def _checkpoint(env, since: int, policy) -> EpisodeCheckpoint:
    return EpisodeCheckpoint(episode=0, step=env.steps, env_state=env.get_state(since=since),
                             shard_states={"charge/0": {"policy": copy.deepcopy(policy.get_state()), "agents": ()}},
                             returns=np.zeros(env.num_agents), agent_steps=0)  # fmt: skip


def _play_in_chunks(store, chunks: int = 3, interval: int = 10):
    """Battle (map 15) in chunks of `interval` steps, each checkpoint saved to `store`; returns the
    environment, the policy, and the rewards of the `interval` steps after the last checkpoint."""
    env = make_array_env(BATTLE, {"map_size": 15}, max_steps=1000)
    policy = ChargePolicy(3)
    env.reset(5)
    for _ in range(chunks):
        start = env.steps
        _step_all(env, policy, interval)
        checkpoint = _checkpoint(env, start, policy)
        actions = checkpoint.env_state["actions"]
        assert checkpoint.env_state["actions_from"] == start
        assert actions.shape == (interval, env.num_agents) and actions.dtype == np.int8  # 21 actions
        store.save_checkpoint(checkpoint)
    return env, policy, _step_all(env, policy, interval)


def _restored_rewards(store, interval: int = 10) -> list[np.ndarray]:
    whole = store.checkpoint(0)
    assert whole is not None and whole.env_state["actions_from"] == 0 and len(whole.env_state["actions"]) == whole.step
    env = make_array_env(BATTLE, {"map_size": 15}, max_steps=1000)
    policy = ChargePolicy(0)
    env.set_state(whole.env_state)
    policy.set_state(whole.shard_states["charge/0"]["policy"])
    return _step_all(env, policy, interval)


def test_a_chunks_checkpoint_carries_its_own_actions_and_the_store_joins_them() -> None:
    store = MemoryStore()
    env, _, expected = _play_in_chunks(store)
    assert env.steps == 40
    actual = _restored_rewards(store)
    assert len(actual) == len(expected) == 10 and all(np.array_equal(e, a) for e, a in zip(expected, actual))
    assert store.checkpoints()[0].step == 30


def test_the_durable_store_writes_each_action_once(tmp_path: Path) -> None:
    evaluation = foraging_evaluation("log", checkpoint={"intervalSteps": 10, "storageURI": f"file://{tmp_path}"})
    store = open_store(evaluation.spec, evaluation.qualified_name)
    assert isinstance(store, DurableStore)
    _, _, expected = _play_in_chunks(store)
    segments = sorted(tmp_path.rglob("actions/000000/*.npy"))
    assert [p.name for p in segments] == ["000000.npy", "000010.npy", "000020.npy"]
    assert all(np.load(p).shape[0] == 10 for p in segments)
    (inflight,) = tmp_path.rglob("inflight/*.npz")
    assert decode_checkpoint(inflight.read_bytes()).env_state["actions"] is None  # no action twice
    reopened = open_store(evaluation.spec, evaluation.qualified_name)  # a later attempt
    actual = _restored_rewards(reopened)
    assert all(np.array_equal(e, a) for e, a in zip(expected, actual))
    reopened.drop_checkpoint(0)
    assert not list(tmp_path.rglob("actions/000000/*"))


def test_a_missing_segment_replays_its_episode_from_the_start(tmp_path: Path) -> None:
    evaluation = foraging_evaluation("log", checkpoint={"intervalSteps": 10, "storageURI": f"file://{tmp_path}"})
    _play_in_chunks(open_store(evaluation.spec, evaluation.qualified_name))
    next(tmp_path.rglob("actions/000000/000010.npy")).unlink()
    assert open_store(evaluation.spec, evaluation.qualified_name).checkpoints() == {}


def test_a_replay_from_an_earlier_checkpoint_supersedes_later_actions() -> None:
    store = MemoryStore()
    _play_in_chunks(store, chunks=3)
    env, _, _ = _play_in_chunks(store, chunks=2)  # the same episode again from its start: steps 0..20
    whole = store.checkpoint(0)
    assert whole is not None and whole.step == 20 and len(whole.env_state["actions"]) == 20


@pytest.mark.parametrize(
    ("space", "dtype"),
    [(gymnasium.spaces.Discrete(21), np.int8), (gymnasium.spaces.Discrete(300), np.int16),
     (gymnasium.spaces.MultiDiscrete([5, 40000]), np.int32), (gymnasium.spaces.MultiBinary(4), np.int8),
     (gymnasium.spaces.Box(-1, 1, (2,)), np.float32)],
)  # fmt: skip
def test_the_action_log_takes_the_smallest_type_the_space_allows(space, dtype) -> None:
    assert compact_action_dtype([space, space], np.dtype(np.float32)) == dtype


def test_the_action_log_grows_by_doubling_and_refuses_what_does_not_fit() -> None:
    log = ActionLog(np.dtype(np.int8))
    for step in range(100):
        log.append(np.full(3, step % 21, dtype=np.int64))
    assert log.length == 100 and log.since(98).tolist() == [[14] * 3, [15] * 3]
    with pytest.raises(ValueError, match="outside the action space"):
        log.append(np.full(3, 300))


@pytest.mark.ray
def test_an_environment_actor_restores_a_generic_episode_from_the_joined_log(local_ray) -> None:
    """Through the environment actor, as the coordinator drives it: chunks of pursuit (a generic
    PettingZoo env), their checkpoints into a store, and a fresh actor restored from the store
    continues exactly as the first one does."""
    import ray

    from swarm_arena.arena.episode import EnvironmentWorker, EpisodeTask, ShardPart
    from tests.arena.test_array_env import PURSUIT

    def task(start: int) -> EpisodeTask:
        part = ShardPart(name="t/shard-random-0", handle=None, policy="random", agent_indices=tuple(range(8)),
                         seed=1, factory="random")  # fmt: skip
        return EpisodeTask(episode=0, seed=3, pairing={}, policy_agents={"random": part.agent_indices},
                           shards=(part,), start_step=start, stop_at=start + 10)  # fmt: skip

    actor = ray.remote(EnvironmentWorker)
    first = actor.remote("t/env-0", PURSUIT, {}, 100)
    store = MemoryStore()
    for start in (0, 10, 20):
        checkpoint = ray.get(first.run.remote(task(start))).checkpoint
        assert checkpoint.env_state["actions_from"] == start and len(checkpoint.env_state["actions"]) == 10
        store.save_checkpoint(checkpoint)
    expected = ray.get(first.run.remote(task(30))).checkpoint
    second = actor.remote("t/env-1", PURSUIT, {}, 100)
    ray.get(second.restore.remote(task(30), store.checkpoint(0)))
    actual = ray.get(second.run.remote(task(30))).checkpoint
    assert actual.step == expected.step == 40
    assert np.array_equal(actual.returns, expected.returns)
    assert np.array_equal(actual.env_state["actions"], expected.env_state["actions"])
    assert actual.shard_states == expected.shard_states
