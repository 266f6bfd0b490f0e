"""Built-in policies and the batched policy interface (incl. the documented custom policy)."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest
from gymnasium import spaces

from swarm_arena.arena.array_env import make_array_env
from swarm_arena.arena.policies import BatchedPolicy, make_policy
from swarm_arena.arena.policies.builtin import GreedyForagingPolicy, NoopPolicy, RandomPolicy
from swarm_arena.arena.registry import FactoryError

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "environments-and-policies.md"
BOX_OBS = spaces.Box(0.0, 1.0, (4,), np.float32)

ACTION_SPACES = [
    spaces.Discrete(5),
    spaces.Discrete(3, start=-1),
    spaces.MultiDiscrete([3, 4, 2]),
    spaces.MultiBinary(6),
    spaces.Box(-1.0, 2.0, (2, 3), np.float32),
    spaces.Box(low=np.array([0.0, -np.inf, -np.inf]), high=np.array([np.inf, 1.0, np.inf]), dtype=np.float64),
    spaces.Box(-3, 3, (4,), np.int64),
]


def _mean_return(factory: str, seeds: range, agents: int = 300, steps: int = 80) -> float:
    """Mean per-agent episode return of one policy driving every agent of foraging."""
    returns = []
    for seed in seeds:
        env = make_array_env("foraging", {"agents": agents}, max_steps=steps)
        policy = make_policy(factory, {}, env.observation_space(0), env.action_space(0), seed=seed)
        env.reset(seed)
        everyone = np.arange(env.num_agents)
        total = np.zeros(env.num_agents)
        while not env.done:
            total += env.step(policy.act(env.observe(everyone), env.possible_agents)).rewards
        returns.append(total.mean())
    return float(np.mean(returns))


def test_greedy_beats_random_beats_noop_on_foraging() -> None:
    greedy, random, noop = (_mean_return(name, range(3)) for name in ("greedy", "random", "noop"))
    assert greedy > random * 1.2, (greedy, random)
    assert random > noop * 2, (random, noop)


@pytest.mark.parametrize("space", ACTION_SPACES, ids=str)
def test_random_samples_stay_in_the_space_and_cover_it(space: spaces.Space) -> None:
    policy = RandomPolicy(BOX_OBS, space, seed=0)
    actions = policy.act(np.zeros((500, 4), np.float32), [f"a{i}" for i in range(500)])
    assert actions.shape == (500, *space.shape)
    assert actions.dtype == (np.int64 if isinstance(space, spaces.Discrete) else space.dtype)
    assert all(space.contains(action) for action in actions)
    assert len(np.unique(actions.reshape(500, -1), axis=0)) > 1


@pytest.mark.parametrize("space", ACTION_SPACES, ids=str)
def test_noop_is_the_first_or_zero_action(space: spaces.Space) -> None:
    actions = NoopPolicy(BOX_OBS, space, seed=0).act(np.zeros((7, 4), np.float32), ["a"] * 7)
    assert actions.shape == (7, *space.shape)
    assert all(space.contains(action) for action in actions)
    if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
        expected = space.start
    elif isinstance(space, spaces.Box):
        expected = np.clip(0, space.low, space.high)
    else:
        expected = 0
    assert (actions == expected).all()


@pytest.mark.parametrize("cls", [RandomPolicy, GreedyForagingPolicy])
def test_same_seed_same_actions_and_state_restores_exactly(cls) -> None:
    env = make_array_env("foraging", {"agents": 200}, max_steps=50)
    env.reset(0)
    obs = env.observe(np.arange(200))
    ids = env.possible_agents
    one, two = cls(env.observation_space(0), env.action_space(0), seed=3), cls(env.observation_space(0), env.action_space(0), seed=3)
    assert np.array_equal(one.act(obs, ids), two.act(obs, ids))
    saved = one.get_state()
    expected = [one.act(obs, ids) for _ in range(3)]
    other = cls(env.observation_space(0), env.action_space(0), seed=99)
    other.set_state(saved)
    assert all(np.array_equal(e, other.act(obs, ids)) for e in expected)
    other.reset(3)
    fresh = cls(env.observation_space(0), env.action_space(0), seed=3)
    assert np.array_equal(other.act(obs, ids), fresh.act(obs, ids))


def test_greedy_steps_toward_the_nearest_food() -> None:
    env = make_array_env("foraging", {"agents": 4, "grid_size": 9, "food": 0, "regrowth": 0.0}, max_steps=5)
    env.reset(0)
    native = env.env
    state = native.get_state()
    state["pos"] = np.array([[4, 4], [4, 4], [4, 4], [4, 4]])
    native.set_state(state)
    obs = env.observe(np.arange(4))
    food = np.zeros((4, 5, 5), np.float32)
    food[0, 0, 2] = 1  # two rows up
    food[1, 2, 3] = 1  # one column right
    food[2, 4, 2], food[2, 2, 0] = 1, 1  # down 2 and left 2: a tie, either move is fine
    food[2, 3, 2] = 1  # ... but one down is nearer
    obs.reshape(4, 3, 5, 5)[:, 0] = food
    policy = GreedyForagingPolicy(env.observation_space(0), env.action_space(0), seed=0)
    actions = policy.act(obs, env.possible_agents)
    assert actions[:3].tolist() == [1, 4, 2]
    assert 1 <= actions[3] <= 4  # nothing in view: explore


def test_greedy_rejects_other_environments() -> None:
    with pytest.raises(ValueError, match="greedy policy needs foraging"):
        GreedyForagingPolicy(spaces.Box(0, 1, (13, 13, 5)), spaces.Discrete(5), seed=0)
    with pytest.raises(ValueError, match="Discrete\\(5\\)"):
        GreedyForagingPolicy(BOX_OBS, spaces.Discrete(21), seed=0)


def test_builtins_satisfy_the_protocol_and_load_by_name() -> None:
    env = make_array_env("foraging", {"agents": 2}, max_steps=5)
    for name, cls in (("random", RandomPolicy), ("noop", NoopPolicy), ("greedy", GreedyForagingPolicy)):
        policy = make_policy(name, {}, env.observation_space(0), env.action_space(0), seed=1)
        assert isinstance(policy, cls) and isinstance(policy, BatchedPolicy)


def test_bad_params_and_non_policies_are_reported_with_the_factory() -> None:
    obs, act = BOX_OBS, spaces.Discrete(2)
    with pytest.raises(FactoryError, match="'random' rejected its arguments.*temperature"):
        make_policy("random", {"temperature": 1.0}, obs, act, seed=0)
    with pytest.raises(FactoryError, match="no act"):
        make_policy("builtins:dict", {}, obs, act, seed=0)
    with pytest.raises(ValueError, match="Dict"):
        RandomPolicy(obs, spaces.Dict({"a": spaces.Discrete(2)}), seed=0)


def _documented_policy_source() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- example: custom-policy -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"{DOC} lost its custom-policy example block"
    return match.group(1)


def test_documented_custom_policy_runs_in_foraging_and_beats_noop() -> None:
    namespace: dict = {}
    exec(compile(_documented_policy_source(), str(DOC), "exec"), namespace)
    cls = namespace["MostFoodPolicy"]
    env = make_array_env("foraging", {"agents": 300}, max_steps=60)
    policy = cls(observation_space=env.observation_space(0), action_space=env.action_space(0), seed=0, temperature=0.1)
    assert isinstance(policy, BatchedPolicy)
    env.reset(4)
    policy.reset(4)
    everyone = np.arange(env.num_agents)
    total = 0.0
    while not env.done:
        actions = policy.act(env.observe(everyone), env.possible_agents)
        assert actions.shape == (300,) and all(env.action_space(0).contains(int(a)) for a in actions[:10])
        total += float(env.step(actions).rewards.sum())
    assert total / 300 > 2 * _mean_return("noop", range(4, 5), steps=60)


def test_mlp_policy_is_deterministic_batched_and_stays_in_the_space() -> None:
    from swarm_arena.arena.policies.mlp import MlpPolicy

    observations = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    discrete = make_policy("swarm_arena.arena.policies.mlp:MlpPolicy", {"hidden": [8, 8]}, BOX_OBS, spaces.Discrete(5), 0)
    actions = discrete.act(observations, [])
    assert actions.shape == (64,) and actions.dtype == np.int64 and set(actions.tolist()) <= set(range(5))
    assert len(set(actions.tolist())) > 1  # the observations decide
    again = MlpPolicy(BOX_OBS, spaces.Discrete(5), seed=9, hidden=[8, 8])  # the episode seed changes nothing
    assert np.array_equal(again.act(observations, []), actions)
    box = spaces.Box(-1.0, 2.0, (2, 3), np.float32)
    continuous = MlpPolicy(BOX_OBS, box, hidden=[8])
    assert all(box.contains(a) for a in continuous.act(observations, []))
    with pytest.raises(ValueError, match="params.hidden"):
        MlpPolicy(BOX_OBS, spaces.Discrete(5), hidden=[0])
