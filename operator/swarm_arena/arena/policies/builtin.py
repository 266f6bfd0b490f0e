"""Built-in policies (`random`, `noop`, `greedy`): baselines every evaluation can rank against.

All are vectorised over the shard (one numpy call per step, whatever the agent count) and their
only state is a seeded RNG, which `get_state`/`set_state` save and restore so a checkpointed run
continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

_SUPPORTED = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Box)


def _require_array_space(action_space: gymnasium.Space, policy: str) -> None:
    if not isinstance(action_space, _SUPPORTED):
        raise ValueError(
            f"the {policy} policy supports Discrete, MultiDiscrete, MultiBinary and Box action "
            f"spaces, not {action_space}; write your own policy for this environment"
        )


class _SeededPolicy:
    """A policy whose whole state is one numpy Generator."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def get_state(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]


def sample_actions(space: gymnasium.Space, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` independent uniform samples of `space`, stacked (Box follows gymnasium's `sample`)."""
    if isinstance(space, spaces.Discrete):
        return rng.integers(space.start, space.start + space.n, size=count, dtype=np.int64)
    if isinstance(space, spaces.MultiDiscrete):
        draws = rng.integers(0, space.nvec, size=(count, *space.nvec.shape))
        return (draws + space.start).astype(space.dtype)
    if isinstance(space, spaces.MultiBinary):
        return rng.integers(0, 2, size=(count, *space.shape), dtype=space.dtype)
    if isinstance(space, spaces.Box):
        shape = (count, *space.shape)
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        if space.dtype.kind in "iu":
            high = high + 1.0
        bounded_low, bounded_high = np.isfinite(low), np.isfinite(high)
        out = rng.normal(size=shape)
        both = bounded_low & bounded_high
        out = np.where(both, rng.uniform(np.where(both, low, 0.0), np.where(both, high, 1.0), size=shape), out)
        only_low = bounded_low & ~bounded_high
        out = np.where(only_low, np.where(only_low, low, 0.0) + rng.exponential(size=shape), out)
        only_high = bounded_high & ~bounded_low
        out = np.where(only_high, np.where(only_high, high, 0.0) - rng.exponential(size=shape), out)
        if space.dtype.kind in "iu":
            out = np.floor(out)
        return np.clip(out, space.low, space.high).astype(space.dtype)
    raise ValueError(f"cannot sample {space} in a batch")


class RandomPolicy(_SeededPolicy):
    """Uniformly random actions from the action space, seeded."""

    reads_observations = False  # the environment builds none for it

    def __init__(self, observation_space: gymnasium.Space, action_space: gymnasium.Space, seed: int = 0) -> None:
        _require_array_space(action_space, "random")
        super().__init__(seed)
        self.action_space = action_space

    def act(self, observations: np.ndarray, agent_ids: Sequence[str]) -> np.ndarray:
        return sample_actions(self.action_space, len(observations), self._rng)


class NoopPolicy:
    """Does nothing: the first action for Discrete/MultiDiscrete (`start`, usually 0), zeros for
    MultiBinary, and zeros (clipped into the bounds) for Box. A floor for the leaderboard."""

    reads_observations = False  # the environment builds none for it

    def __init__(self, observation_space: gymnasium.Space, action_space: gymnasium.Space, seed: int = 0) -> None:
        _require_array_space(action_space, "noop")
        if isinstance(action_space, spaces.Discrete):
            action = np.asarray(action_space.start, dtype=np.int64)
        elif isinstance(action_space, spaces.MultiDiscrete):
            action = np.asarray(action_space.start, dtype=action_space.dtype)
        elif isinstance(action_space, spaces.MultiBinary):
            action = np.zeros(action_space.shape, dtype=action_space.dtype)
        else:
            action = np.clip(np.zeros(action_space.shape), action_space.low, action_space.high).astype(action_space.dtype)
        self._action = action

    def act(self, observations: np.ndarray, agent_ids: Sequence[str]) -> np.ndarray:
        return np.broadcast_to(self._action, (len(observations), *self._action.shape)).copy()

    def get_state(self) -> None:
        return None

    def set_state(self, state: None) -> None:
        return None


class GreedyForagingPolicy(_SeededPolicy):
    """For the `foraging` environment: step toward the nearest visible food.

    Reads the food channel of the egocentric window, picks the nearest food cell (Manhattan
    distance; ties broken at random), and moves along one axis toward it (the axis chosen at
    random when both reduce the distance); food that regrew under the agent is eaten by staying.
    With no food in view it moves at random (exploring beats standing still).
    """

    def __init__(self, observation_space: gymnasium.Space, action_space: gymnasium.Space, seed: int = 0) -> None:
        super().__init__(seed)
        if not (isinstance(action_space, spaces.Discrete) and action_space.n == 5):
            raise ValueError(f"the greedy policy needs foraging's Discrete(5) actions, got {action_space}")
        size = int(np.prod(observation_space.shape or (0,)))
        window = math.isqrt(size // 3) if size % 3 == 0 else 0
        if not (isinstance(observation_space, spaces.Box) and window % 2 == 1 and 3 * window * window == size):
            raise ValueError(
                f"the greedy policy needs foraging's observation (3 channels x odd square window, "
                f"flattened), got {observation_space}"
            )
        radius = window // 2
        offsets = np.arange(window) - radius
        dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
        self._dy, self._dx = dy.reshape(-1), dx.reshape(-1)
        self._distance = (np.abs(self._dy) + np.abs(self._dx)).astype(np.float64)
        self._cells = window * window

    def act(self, observations: np.ndarray, agent_ids: Sequence[str]) -> np.ndarray:
        count = len(observations)
        food = np.asarray(observations).reshape(count, 3, self._cells)[:, 0, :] > 0.5
        # Random jitter below 1 breaks distance ties without changing the distance order.
        score = np.where(food, self._distance + 0.5 * self._rng.random((count, self._cells)), np.inf)
        target = np.argmin(score, axis=1)
        seen = food.any(axis=1)
        dy, dx = self._dy[target], self._dx[target]
        vertical = np.where(dy < 0, 1, 2)  # up, down
        horizontal = np.where(dx < 0, 3, 4)  # left, right
        prefer_vertical = self._rng.random(count) < 0.5
        move = np.where(
            dy == 0, horizontal, np.where(dx == 0, vertical, np.where(prefer_vertical, vertical, horizontal))
        )
        move = np.where((dy == 0) & (dx == 0), 0, move)
        explore = self._rng.integers(1, 5, size=count)
        return np.where(seen, move, explore).astype(np.int64)
