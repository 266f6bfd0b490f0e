"""ArrayEnv: foraging (native path) and real PettingZoo envs (pursuit, magent2 battle) as arrays."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import numpy as np
import pytest

from swarm_arena.arena.array_env import ArrayEnv, KeyPositions, make_array_env
from swarm_arena.arena.policies.builtin import RandomPolicy

BATTLE = "magent2.environments.battle_v4:parallel_env"
PURSUIT = "pettingzoo.sisl.pursuit_v5:parallel_env"


class ChargePolicy:
    """A user policy for magent2 battle that makes fights happen quickly: red walks right, blue
    walks left (moves 7 and 5 are x+1 and x-1), otherwise attack a random neighbour (13..20)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, observations: np.ndarray, agent_ids: Sequence[str]) -> np.ndarray:
        red = np.array([agent.startswith("red") for agent in agent_ids])
        walk = np.where(red, 7, 5)
        attack = self.rng.integers(13, 21, size=len(agent_ids))
        return np.where(self.rng.random(len(agent_ids)) < 0.3, walk, attack).astype(np.int64)

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def _step_all(env: ArrayEnv, policy, steps: int) -> list[np.ndarray]:
    """Drive every agent with one policy; returns the rewards of each step."""
    everyone = np.arange(env.num_agents)
    ids = env.possible_agents
    rewards = []
    for _ in range(steps):
        if env.done:
            break
        actions = policy.act(env.observe(everyone), ids)
        rewards.append(env.step(actions).rewards)
    return rewards


def _restore_then_continue(factory: str, params: dict, make_policy, seed: int, before: int, after: int) -> None:
    """Uninterrupted run vs. checkpoint (pickled) + restore into a fresh env and policy."""
    env = make_array_env(factory, params, max_steps=1000)
    policy = make_policy()
    env.reset(seed)
    _step_all(env, policy, before)
    checkpoint = pickle.dumps({"env": env.get_state(), "policy": policy.get_state()})
    expected = _step_all(env, policy, after)
    env.close()

    restored = make_array_env(factory, params, max_steps=1000)
    restored_policy = make_policy()
    saved = pickle.loads(checkpoint)
    restored.set_state(saved["env"])
    restored_policy.set_state(saved["policy"])
    assert restored.steps == before
    actual = _step_all(restored, restored_policy, after)
    assert len(actual) == len(expected) == after
    assert all(np.array_equal(e, a) for e, a in zip(expected, actual))
    restored.close()


def test_foraging_uses_the_native_path() -> None:
    env = make_array_env("foraging", {"agents": 64}, max_steps=10)
    assert env.native and env.num_agents == 64
    env.reset(3)
    assert env.alive.all() and not env.done and env.steps == 0
    obs = env.observe(np.array([5, 2]))
    assert obs.shape == (2, 75) and obs.dtype == np.float32
    assert np.array_equal(obs, env.env.observe_arrays(np.array([5, 2])))


def test_foraging_restore_then_continue_is_identical() -> None:
    _restore_then_continue(
        "foraging", {"agents": 500}, lambda: RandomPolicy(None, _foraging_actions(), seed=4), seed=9, before=30, after=40
    )


def _foraging_actions():
    return make_array_env("foraging", {"agents": 1}, 1).action_space(0)


def test_max_steps_truncates_live_agents() -> None:
    env = make_array_env("foraging", {"agents": 10, "max_cycles": 100}, max_steps=5)
    env.reset(0)
    for step in range(5):
        outcome = env.step(np.zeros(10, dtype=np.int64))
        assert outcome.truncated.all() == (step == 4)
    assert env.done and env.steps == 5 and not env.alive.any()
    assert not outcome.terminated.any()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(10, dtype=np.int64))


def test_pursuit_runs_unchanged_with_random_policy() -> None:
    env = make_array_env(PURSUIT, {"max_cycles": 500}, max_steps=40)
    assert not env.native
    assert env.num_agents == 8 and env.possible_agents[0] == "pursuer_0"
    policy = RandomPolicy(env.observation_space(0), env.action_space(0), seed=1)
    env.reset(2)
    rewards = _step_all(env, policy, 100)
    assert len(rewards) == 40 and env.done and env.steps == 40
    assert all(r.shape == (8,) and r.dtype == np.float32 for r in rewards)
    assert any(r.any() for r in rewards)  # pursuit gives shaped rewards along the way
    obs = env.observe(np.arange(8))
    assert not obs.any()  # everyone truncated: no live agent, zero observations
    env.close()


def test_pursuit_restore_by_replay_is_identical() -> None:
    space = make_array_env(PURSUIT, {}, 1).action_space(0)
    _restore_then_continue(PURSUIT, {}, lambda: RandomPolicy(None, space, seed=5), seed=7, before=15, after=20)


def test_battle_at_map_size_120_has_over_a_thousand_agents_and_steps() -> None:
    env = make_array_env(BATTLE, {"map_size": 120}, max_steps=30)
    assert env.num_agents > 1000  # 1,152 at map_size 120
    policy = RandomPolicy(env.observation_space(0), env.action_space(0), seed=0)
    env.reset(1)
    red = np.flatnonzero([agent.startswith("red") for agent in env.possible_agents])
    assert env.observe(red).shape == (red.size, 13, 13, 5)
    rewards = _step_all(env, policy, 30)
    assert len(rewards) == 30 and env.done
    env.close()


def test_battle_deaths_follow_the_alive_mask() -> None:
    env = make_array_env(BATTLE, {"map_size": 30}, max_steps=200)
    policy = ChargePolicy(seed=0)
    env.reset(0)
    everyone = np.arange(env.num_agents)
    deaths_seen = False
    for _ in range(120):
        was_alive = env.alive.copy()
        outcome = env.step(policy.act(env.observe(everyone), env.possible_agents))
        live = {env.possible_agents[i] for i in np.flatnonzero(env.alive)}
        assert live == set(env.env.agents)
        died = was_alive & ~env.alive
        assert np.array_equal(died, outcome.terminated)
        if died.any():
            deaths_seen = True
            dead = np.flatnonzero(~env.alive)
            assert not env.observe(dead).any()
    assert deaths_seen, "the charge policy should kill someone within 120 steps"
    # Dead agents' actions are ignored and they get nothing: no reward, no done flag again.
    dead_before = ~env.alive
    outcome = env.step(np.full(env.num_agents, 6, dtype=np.int64))
    assert not outcome.rewards[dead_before].any()
    assert not (outcome.terminated | outcome.truncated)[dead_before].any()
    env.close()


def test_battle_restore_by_replay_is_identical_across_deaths() -> None:
    _restore_then_continue(BATTLE, {"map_size": 30}, lambda: ChargePolicy(seed=3), seed=0, before=60, after=30)


def test_heterogeneous_observations_cannot_share_a_shard() -> None:
    """magent2 adversarial pursuit: predators see 10x10, prey 9x9; each kind stacks, mixed does not."""
    env = make_array_env("magent2.environments.adversarial_pursuit_v4:parallel_env", {"map_size": 20}, 10)
    env.reset(0)
    predators = np.flatnonzero([a.startswith("predator") for a in env.possible_agents])
    prey = np.flatnonzero([a.startswith("prey") for a in env.possible_agents])
    assert env.observe(predators).shape[1:] != env.observe(prey).shape[1:]
    with pytest.raises(ValueError, match="different shapes"):
        env.observe(np.arange(env.num_agents))
    env.close()


def test_key_positions_follow_the_keys_as_agents_leave_and_unknown_ones_are_dropped() -> None:
    keys = KeyPositions({"a": 0, "b": 1, "c": 2})
    out = keys.gather({"a": 1.5, "b": 2.5, "c": 3.5}, np.zeros(3, dtype=np.float32))
    assert out.tolist() == [1.5, 2.5, 3.5]
    # "b" left, the order changed and an agent the arena does not know ("x") reports too.
    out = keys.gather({"c": 7.0, "x": 9.0, "a": 5.0}, np.zeros(3, dtype=np.float32))
    assert out.tolist() == [5.0, 0.0, 7.0]
    assert keys.gather({"b": True}, np.zeros(3, dtype=bool)).tolist() == [False, True, False]
    assert keys.gather({}, np.zeros(3, dtype=bool)).tolist() == [False, False, False]
