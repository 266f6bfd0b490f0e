"""Foraging: the built-in swarm environment, a PettingZoo `ParallelEnv` vectorised in numpy.

Agents walk a grid with walls at its border and eat food. The world is a few arrays (agent
positions, a food grid, one RNG), so a step for 10,000 agents is a handful of vectorised numpy
operations and a snapshot is a copy of those arrays. Besides the dict-based PettingZoo API it
exposes an array path (`reset_arrays`, `step_arrays`, `observe_arrays`, `get_state`,
`set_state`) that `swarm_arena.arena.array_env.ArrayEnv` uses, so the runtime never builds
per-agent dicts for it.

Rules, per step:
- Actions are Discrete(5): 0 stay, 1 up (row - 1), 2 down (row + 1), 3 left (col - 1),
  4 right (col + 1). A move into the wall leaves the agent where it is. Any number of agents may
  share a cell.
- An agent that ends its move on a cell with food eats it: reward +1. When several agents end
  on the same food cell, one of them (drawn with the environment's seeded RNG) eats it.
- Every agent pays `step_cost` per step (0 by default).
- Each eaten item regrows with probability `regrowth` per step at a uniformly random cell, so the
  amount of food stays near its initial level.
- Nobody terminates; every agent is truncated after `max_cycles` steps.

Observation: an egocentric (2r+1) x (2r+1) window (r = `view_radius`) with three channels,
flattened channel-major to float32 `[3 * (2r+1)**2]`: food (1/0), other agents (how many stand
on the cell, the observer excluded), wall (1 outside the grid).
Same seed, same actions -> same trajectory.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv

#: Row/column offset of each action: stay, up, down, left, right.
MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)
CHANNELS = ("food", "agents", "wall")


from swarm_arena.arena.envs.foraging_params import (  # noqa: E402 - numpy-free, for the operator
    MAX_AGENTS,
    MAX_CELLS,
    MAX_OBSERVATION_BYTES,
    MAX_VIEW_RADIUS,
    PARAMS,
    default_grid_size,
    param_problems,
)

__all__ = [
    "CHANNELS", "MAX_AGENTS", "MAX_CELLS", "MAX_OBSERVATION_BYTES", "MAX_VIEW_RADIUS", "MOVES", "PARAMS",
    "ForagingEnv", "default_grid_size", "param_problems", "parallel_env",
]  # fmt: skip


class ForagingEnv(ParallelEnv):
    """Many agents, one grid, food that regrows. See the module docstring for the rules."""

    metadata = {"name": "foraging_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(
        self,
        agents: int,
        grid_size: int | None = None,
        food: int | None = None,
        regrowth: float = 0.05,
        view_radius: int = 2,
        step_cost: float = 0.0,
        max_cycles: int = 500,
        render_mode: str | None = None,
    ) -> None:
        problems = param_problems(
            {"agents": agents, "grid_size": grid_size, "food": food, "regrowth": regrowth,
             "view_radius": view_radius, "step_cost": step_cost, "max_cycles": max_cycles}
        )  # fmt: skip
        if problems:
            raise ValueError("; ".join(f"environment.params.{name} {message}" for name, message in problems))
        if render_mode is not None:
            raise ValueError("foraging has no rendering; leave render_mode unset")
        self.grid_size = default_grid_size(agents) if grid_size is None else int(grid_size)
        cells = self.grid_size * self.grid_size
        self.food_count = min(cells, agents if food is None else int(food))
        self.regrowth = float(regrowth)
        self.view_radius = int(view_radius)
        self.step_cost = float(step_cost)
        self.max_cycles = int(max_cycles)
        self.render_mode = None
        self.num_total = agents
        self.possible_agents = [f"agent_{i}" for i in range(agents)]
        self.agents: list[str] = []

        window = 2 * self.view_radius + 1
        self._window = window
        self._obs_space = gymnasium.spaces.Box(
            low=0.0, high=float(agents), shape=(len(CHANNELS) * window * window,), dtype=np.float32
        )
        self._act_space = gymnasium.spaces.Discrete(len(MOVES))
        # Flat offsets of the window cells in the padded grid, and the padded wall channel.
        side = self.grid_size + 2 * self.view_radius
        self._padded_side = side
        dy, dx = np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
        self._window_offsets = (dy * side + dx).reshape(-1)
        wall = np.ones((side, side), dtype=np.float32)
        r = self.view_radius
        wall[r : r + self.grid_size, r : r + self.grid_size] = 0.0
        self._padded = np.zeros((len(CHANNELS), side * side), dtype=np.float32)
        self._padded[2] = wall.reshape(-1)

        self._rng = np.random.default_rng(0)
        self._pos = np.zeros((agents, 2), dtype=np.int64)
        self._food = np.zeros(cells, dtype=bool)
        self._steps = 0
        self._running = False
        self._padded_fresh = False

    # --- spaces -------------------------------------------------------------------------------

    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent: str) -> gymnasium.Space:
        return self._obs_space

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent: str) -> gymnasium.Space:
        return self._act_space

    # --- array path ---------------------------------------------------------------------------

    def reset_arrays(self, seed: int | None = None) -> None:
        """Start an episode: random positions, `food` items on distinct random cells."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        cells = self.grid_size * self.grid_size
        self._pos = self._rng.integers(0, self.grid_size, size=(self.num_total, 2), dtype=np.int64)
        self._food = np.zeros(cells, dtype=bool)
        self._food[self._rng.choice(cells, size=self.food_count, replace=False)] = True
        self._steps = 0
        self._running = True
        self._padded_fresh = False
        self.agents = list(self.possible_agents)

    def step_arrays(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance every agent; returns float32 rewards, bool terminated, bool truncated, all [N]."""
        if not self._running:
            raise RuntimeError("foraging: step called before reset (or after the episode ended)")
        actions = np.asarray(actions)
        if actions.shape != (self.num_total,):
            raise ValueError(f"foraging: expected actions of shape ({self.num_total},), got {actions.shape}")
        if actions.dtype.kind not in "iu" or actions.min(initial=0) < 0 or actions.max(initial=0) >= len(MOVES):
            raise ValueError(f"foraging: actions must be integers in [0, {len(MOVES)}), got {actions!r}")
        side = self.grid_size
        np.clip(self._pos + MOVES[actions], 0, side - 1, out=self._pos)
        cell = self._pos[:, 0] * side + self._pos[:, 1]

        rewards = np.full(self.num_total, -self.step_cost, dtype=np.float32)
        on_food = np.flatnonzero(self._food[cell])
        if on_food.size:
            # One eater per food cell: order candidates by cell, then by a seeded random key.
            key = self._rng.random(on_food.size)
            order = np.lexsort((key, cell[on_food]))
            cells_sorted = cell[on_food][order]
            first = np.ones(order.size, dtype=bool)
            first[1:] = cells_sorted[1:] != cells_sorted[:-1]
            eaters = on_food[order[first]]
            rewards[eaters] += 1.0
            self._food[cell[eaters]] = False
        missing = self.food_count - int(np.count_nonzero(self._food))
        if missing > 0 and self.regrowth > 0.0:
            grown = self._rng.binomial(missing, self.regrowth)
            if grown:
                self._food[self._rng.integers(0, side * side, size=grown)] = True

        self._steps += 1
        self._padded_fresh = False
        terminated = np.zeros(self.num_total, dtype=bool)
        truncated = np.full(self.num_total, self._steps >= self.max_cycles, dtype=bool)
        if self._steps >= self.max_cycles:
            self._running = False
            self.agents = []
        return rewards, terminated, truncated

    def observe_arrays(self, indices: np.ndarray | None = None) -> np.ndarray:
        """Observations of the agents at `indices` (all when None), float32 [n, obs_dim]."""
        if not self._padded_fresh:
            g, r = self.grid_size, self.view_radius
            grid = self._padded.reshape(len(CHANNELS), self._padded_side, self._padded_side)[:, r : r + g, r : r + g]
            grid[0] = self._food.reshape(g, g)
            counts = np.bincount(self._pos[:, 0] * g + self._pos[:, 1], minlength=self._food.size)
            grid[1] = counts.reshape(g, g)
            self._padded_fresh = True
        pos = self._pos if indices is None else self._pos[np.asarray(indices)]
        # Top-left corner of each window in the padded grid is the agent's own (unpadded) cell.
        corner = pos[:, 0] * self._padded_side + pos[:, 1]
        cells = corner[:, None] + self._window_offsets[None, :]  # [n, k*k]
        out = np.empty((pos.shape[0], len(CHANNELS), cells.shape[1]), dtype=np.float32)
        for channel in range(len(CHANNELS)):
            # One gather per channel; mode="clip" (indices are in range anyway) avoids the
            # buffered copy that mode="raise" makes of `out`.
            np.take(self._padded[channel], cells, out=out[:, channel, :], mode="clip")
        r = self.view_radius
        out[:, 1, r * self._window + r] -= 1.0  # the observer is not one of the "other agents"
        return out.reshape(pos.shape[0], -1)

    def get_state(self) -> dict[str, Any]:
        """A picklable snapshot; `set_state` restores it exactly."""
        return {
            "pos": self._pos.copy(),
            "food": self._food.copy(),
            "steps": self._steps,
            "running": self._running,
            "rng": self._rng.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._pos = np.array(state["pos"], dtype=np.int64)
        self._food = np.array(state["food"], dtype=bool)
        self._steps = int(state["steps"])
        self._running = bool(state["running"])
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = state["rng"]
        self._padded_fresh = False
        self.agents = list(self.possible_agents) if self._running else []

    # --- PettingZoo ParallelEnv ---------------------------------------------------------------

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        self.reset_arrays(seed)
        obs = self.observe_arrays()
        return dict(zip(self.agents, obs)), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        live = self.agents
        array = np.zeros(self.num_total, dtype=np.int64)
        for agent, action in actions.items():
            array[int(agent.rsplit("_", 1)[1])] = int(action)
        rewards, terminated, truncated = self.step_arrays(array)
        obs = self.observe_arrays()
        index = {agent: int(agent.rsplit("_", 1)[1]) for agent in live}
        return (
            {a: obs[i] for a, i in index.items()},
            {a: float(rewards[i]) for a, i in index.items()},
            {a: bool(terminated[i]) for a, i in index.items()},
            {a: bool(truncated[i]) for a, i in index.items()},
            {a: {} for a in index},
        )

    def render(self) -> None:
        return None

    def close(self) -> None:
        return None


def parallel_env(**params: Any) -> ForagingEnv:
    """The factory behind the built-in name `foraging` (`environment.params` are its kwargs)."""
    return ForagingEnv(**params)
