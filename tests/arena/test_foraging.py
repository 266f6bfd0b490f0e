"""The built-in foraging environment: PettingZoo API, rules, determinism.

Its speed is measured by benchmarks/arena_step.py (docs/performance.md), not asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from swarm_arena.arena.envs.foraging import ForagingEnv, parallel_env
from swarm_arena.arena.registry import load_environment_factory


@pytest.mark.parametrize(("agents", "cycles"), [(3, 200), (1000, 30)])
def test_passes_pettingzoo_parallel_api_test(agents: int, cycles: int) -> None:
    parallel_api_test(parallel_env(agents=agents), num_cycles=cycles)


def test_builtin_name_resolves_to_this_env() -> None:
    env = load_environment_factory("foraging")(agents=4)
    assert isinstance(env, ForagingEnv)
    assert env.possible_agents == ["agent_0", "agent_1", "agent_2", "agent_3"]


def test_grid_scales_with_agents_by_default() -> None:
    assert parallel_env(agents=100).grid_size == 20
    assert parallel_env(agents=10_000).grid_size == 200
    assert parallel_env(agents=1).grid_size == 8


def _rollout(env: ForagingEnv, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    env.reset_arrays(seed)
    rng = np.random.default_rng(99)
    rewards, observations = [], []
    for _ in range(steps):
        observations.append(env.observe_arrays())
        reward, _, _ = env.step_arrays(rng.integers(0, 5, size=env.num_total))
        rewards.append(reward)
    return np.stack(rewards), np.stack(observations)


def test_same_seed_same_trajectory_and_other_seed_differs() -> None:
    env = parallel_env(agents=200)
    first = _rollout(env, seed=5, steps=40)
    again = _rollout(env, seed=5, steps=40)
    other = _rollout(env, seed=6, steps=40)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])
    assert first[0].sum() > 0  # food is eaten at all


def test_dict_api_and_array_path_agree() -> None:
    env = parallel_env(agents=50)
    observations, _ = env.reset(seed=3)
    assert np.array_equal(np.stack([observations[a] for a in env.possible_agents]), env.observe_arrays())
    actions = {agent: i % 5 for i, agent in enumerate(env.agents)}
    twin = parallel_env(agents=50)
    twin.reset_arrays(3)
    observations, rewards, _, _, _ = env.step(actions)
    twin_rewards, _, _ = twin.step_arrays(np.arange(50) % 5)
    assert np.array_equal(np.array([rewards[a] for a in env.possible_agents]), twin_rewards)
    assert np.array_equal(np.stack([observations[a] for a in env.possible_agents]), twin.observe_arrays())


def _place(env: ForagingEnv, positions: list[tuple[int, int]], food: list[tuple[int, int]]) -> None:
    env.reset_arrays(0)
    state = env.get_state()
    state["pos"] = np.array(positions, dtype=np.int64)
    state["food"] = np.zeros(env.grid_size**2, dtype=bool)
    for row, col in food:
        state["food"][row * env.grid_size + col] = True
    env.set_state(state)


def test_observation_window_channels() -> None:
    env = parallel_env(agents=3, grid_size=5, view_radius=1, food=2, regrowth=0.0)
    _place(env, positions=[(0, 0), (0, 1), (0, 1)], food=[(1, 1), (4, 4)])
    window = env.observe_arrays(np.array([0])).reshape(3, 3, 3)
    food, others, wall = window
    assert food.tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert others.tolist() == [[0, 0, 0], [0, 0, 2], [0, 0, 0]]  # two agents to the right, self excluded
    assert wall.tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0]]  # top-left corner of the grid
    shared = env.observe_arrays(np.array([1])).reshape(3, 3, 3)[1]
    assert shared[1, 1] == 1  # the other agent on the same cell
    assert env.observation_space("agent_0").contains(env.observe_arrays()[0])


def test_moves_and_walls() -> None:
    env = parallel_env(agents=5, grid_size=3, food=0)
    _place(env, positions=[(1, 1)] * 5, food=[])
    env.step_arrays(np.array([0, 1, 2, 3, 4]))
    assert env.get_state()["pos"].tolist() == [[1, 1], [0, 1], [2, 1], [1, 0], [1, 2]]
    env.step_arrays(np.array([0, 1, 2, 3, 4]))  # into the walls: nobody moves
    assert env.get_state()["pos"].tolist() == [[1, 1], [0, 1], [2, 1], [1, 0], [1, 2]]


def test_one_eater_per_food_cell_and_step_cost() -> None:
    env = parallel_env(agents=3, grid_size=5, food=1, regrowth=0.0, step_cost=0.01)
    _place(env, positions=[(2, 1), (2, 3), (0, 0)], food=[(2, 2)])
    rewards, terminated, truncated = env.step_arrays(np.array([4, 3, 0]))  # both step onto the food
    assert sorted(rewards.tolist()) == pytest.approx([-0.01, -0.01, 0.99])
    assert not env.get_state()["food"].any()
    assert not terminated.any() and not truncated.any()


def test_regrowth_restores_food() -> None:
    env = parallel_env(agents=1, grid_size=10, food=20, regrowth=1.0)
    _place(env, positions=[(0, 0)], food=[(0, 1)])  # 19 items missing
    env.step_arrays(np.array([0]))
    assert env.get_state()["food"].sum() > 10


def test_truncates_everyone_at_max_cycles() -> None:
    env = parallel_env(agents=4, max_cycles=3)
    env.reset(seed=0)
    for _ in range(2):
        _, _, _, truncated, _ = env.step(dict.fromkeys(env.agents, 0))
        assert not any(truncated.values())
    _, _, _, truncated, _ = env.step(dict.fromkeys(env.agents, 0))
    assert all(truncated.values()) and env.agents == []


def test_snapshot_restores_the_future() -> None:
    env = parallel_env(agents=300)
    env.reset_arrays(11)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 5, size=(60, 300))
    for a in actions[:25]:
        env.step_arrays(a)
    snapshot = env.get_state()
    expected = [env.step_arrays(a)[0] for a in actions[25:]]
    restored = parallel_env(agents=300)
    restored.set_state(snapshot)
    assert all(np.array_equal(e, restored.step_arrays(a)[0]) for e, a in zip(expected, actions[25:]))


@pytest.mark.parametrize("bad", [{"agents": 0}, {"agents": 5, "regrowth": 2.0}, {"agents": 5, "view_radius": -1}])
def test_bad_params_name_the_field(bad: dict) -> None:
    field = [k for k in bad if k != "agents"] or ["agents"]
    with pytest.raises(ValueError, match=f"environment.params.{field[-1]}"):
        parallel_env(**bad)


def test_rejects_out_of_range_actions() -> None:
    env = parallel_env(agents=2)
    env.reset_arrays(0)
    with pytest.raises(ValueError, match="actions must be integers"):
        env.step_arrays(np.array([0, 5]))


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"agents": 2_000_000_000}, "spec.environment.params.agents: must be an integer in [1, 1,000,000]"),
        ({"agents": 10, "grid_size": 10**9}, "spec.environment.params.grid_size: must be an integer in [1, 5,000]"),
        ({"agents": 1_000_000, "view_radius": 20}, "spec.environment.params.view_radius: 20 with 1,000,000 agents"),
        ({"agents": 10, "viewRadius": 3}, "spec.environment.params.viewRadius: is not a foraging parameter; did you mean `view_radius`?"),
        ({"grid_size": 10}, "spec.environment.params.agents: is required"),
    ],
)
def test_validate_refuses_absurd_params_naming_the_param(params: dict, problem: str) -> None:
    from swarm_arena.api.validation import ManifestError, validate_manifest

    doc = {
        "apiVersion": "arena.swarm.dev/v1alpha1",
        "kind": "SwarmEvaluation",
        "metadata": {"name": "absurd"},
        "spec": {"environment": {"factory": "foraging", "params": params}, "policies": [{"name": "g", "factory": "greedy"}]},
    }
    with pytest.raises(ManifestError) as refused:
        validate_manifest(doc, check_imports=False)
    assert any(p.startswith(problem) for p in refused.value.problems), refused.value.problems


def test_the_environment_itself_refuses_what_validate_refuses() -> None:
    with pytest.raises(ValueError, match=r"environment\.params\.agents must be an integer in \[1, 1,000,000\]"):
        parallel_env(agents=2_000_000_000)
