"""Any PettingZoo `ParallelEnv` as arrays in one fixed agent order: what the runtime steps.

The runtime thinks in index arrays (shard i serves agents `indices`), never in per-agent dicts,
so this adapter fixes the order to `env.possible_agents`, keeps an `alive` mask (agents that
left `env.agents`, e.g. killed in battle, are masked and read as zero observations), and
enforces `maxSteps` truncation.

Two backends behind one class:
- the generic one speaks PettingZoo's dict API and checkpoints as "seed + the joint actions
  taken so far", restored by `reset(seed)` and replay. That works for C-backed envs that do not
  pickle (magent2), but requires the environment to be deterministic given its seed and actions.
  The actions go into an `ActionLog`: one preallocated array in the smallest integer type the
  action spaces allow (int8 for MAgent2's 21 actions), grown by doubling, so logging is O(1) per
  step; `get_state(since=k)` hands over only the actions from step k (a chunk's own), and the
  checkpoint store keeps the segments (checkpoint.py), so checkpointing an episode costs O(steps)
  in all, not O(steps²);
- the native one is used for envs that expose the array path (`reset_arrays`, `step_arrays`,
  `observe_arrays`, `get_state`, `set_state`; the built-in `foraging`): no dicts, and a
  checkpoint is a copy of the environment's arrays and RNG state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from swarm_arena.arena.registry import load_environment_factory

NATIVE_METHODS = ("reset_arrays", "step_arrays", "observe_arrays", "get_state", "set_state")


def compact_action_dtype(spaces: list[gymnasium.Space], given: np.dtype) -> np.dtype:
    """The smallest integer type holding every action of `spaces` (Discrete, MultiDiscrete,
    MultiBinary); `given` for anything else (Box actions are kept as the policy gave them)."""
    low, high = 0, 0
    for space in spaces:
        if isinstance(space, gymnasium.spaces.Discrete):
            low, high = min(low, int(space.start)), max(high, int(space.start) + int(space.n) - 1)
        elif isinstance(space, gymnasium.spaces.MultiDiscrete):
            start = np.asarray(getattr(space, "start", 0))
            low, high = min(low, int(np.min(start))), max(high, int(np.max(start + space.nvec)) - 1)
        elif isinstance(space, gymnasium.spaces.MultiBinary):
            high = max(high, 1)
        else:
            return np.dtype(given)
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


class ActionLog:
    """The joint actions of one episode, step after step, in one array that doubles when full."""

    def __init__(self, dtype: np.dtype | None = None) -> None:
        self.dtype = dtype
        self._rows: np.ndarray | None = None
        self.length = 0

    def append(self, actions: np.ndarray) -> None:
        if self._rows is None:
            dtype = self.dtype or actions.dtype
            self._rows = np.empty((16, *actions.shape), dtype=dtype)
        elif self.length == len(self._rows):
            grown = np.empty((2 * len(self._rows), *self._rows.shape[1:]), dtype=self._rows.dtype)
            grown[: self.length] = self._rows[: self.length]
            self._rows = grown
        row = self._rows[self.length]
        row[...] = actions
        if row.dtype != actions.dtype and not np.array_equal(row, actions):
            raise ValueError(f"actions {actions.dtype} do not fit the action log's {row.dtype}: outside the action space")
        self.length += 1

    def since(self, step: int) -> np.ndarray | None:
        """A copy of the actions of steps `step`.. (None when there are none)."""
        if self._rows is None or step >= self.length:
            return None
        return self._rows[step : self.length].copy()


class KeyPositions:
    """Where the keys of a per-agent dict sit in `possible_agents`, cached while the keys stay the
    same (the common case: no agent left or joined), so gathering a dict into an array costs one
    C-level tuple comparison and one `np.fromiter`, not a Python lookup per agent."""

    def __init__(self, index: dict[str, int]) -> None:
        self._index = index
        self._keys: tuple[str, ...] | None = None
        self._positions = np.zeros(0, dtype=np.int64)
        self._known: np.ndarray | None = None  # None: every key is one of possible_agents

    def __call__(self, keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray | None]:
        """(positions of the known keys, mask of the known ones among `keys`, None when all are)."""
        if keys != self._keys:
            positions = np.fromiter((self._index.get(key, -1) for key in keys), dtype=np.int64, count=len(keys))
            known = positions >= 0
            self._keys = keys
            self._known = None if known.all() else known
            self._positions = positions if self._known is None else positions[known]
        return self._positions, self._known

    def gather(self, values: dict[str, Any], out: np.ndarray) -> np.ndarray:
        """`out` with each known key's value at its agent's position (the rest untouched)."""
        positions, known = self(tuple(values))
        gathered = np.fromiter(values.values(), dtype=out.dtype, count=len(values))
        out[positions] = gathered if known is None else gathered[known]
        return out


@dataclass(frozen=True)
class StepOutcome:
    rewards: np.ndarray  # float32 [N], aligned with possible_agents (0 for agents not alive)
    terminated: np.ndarray  # bool [N]
    truncated: np.ndarray  # bool [N]


class ArrayEnv:
    """Any PettingZoo ParallelEnv (or the native foraging env, through a fast path) as arrays
    in a fixed agent order."""

    def __init__(self, env: Any, max_steps: int) -> None:
        if max_steps < 1:
            raise ValueError(f"environment.maxSteps must be >= 1, got {max_steps}")
        if not getattr(env, "possible_agents", None):
            raise ValueError(
                f"environment {type(env).__name__} has no possible_agents; the arena needs a "
                "PettingZoo ParallelEnv that lists every agent it may ever have"
            )
        self.env = env
        self.max_steps = int(max_steps)
        self.possible_agents: list[str] = list(env.possible_agents)
        self.num_agents = len(self.possible_agents)
        self.native = all(callable(getattr(env, name, None)) for name in NATIVE_METHODS)
        self._index = {agent: i for i, agent in enumerate(self.possible_agents)}
        self._obs_spaces = [env.observation_space(agent) for agent in self.possible_agents]
        self._act_spaces = [env.action_space(agent) for agent in self.possible_agents]
        self._homogeneous = len({space.shape for space in self._obs_spaces}) == 1
        self.alive = np.zeros(self.num_agents, dtype=bool)
        self.steps = 0
        self.done = True
        self._seed: int | None = None
        self._actions = ActionLog()  # generic backend: the joint actions, for replay
        self._action_dtype: np.dtype | None = None  # compact type of the log, fixed at the first step
        # Generic backend: the latest observation of every agent, as the env returned it (turned into
        # arrays only for the agents a policy reads), and the dicts' keys as positions.
        self._latest: dict[str, Any] = {}
        self._names = np.array(self.possible_agents, dtype=object)
        self._discrete = all(isinstance(space, gymnasium.spaces.Discrete) for space in self._act_spaces)
        self._live_keys = KeyPositions(self._index)
        self._reward_keys = KeyPositions(self._index)
        self._done_keys = KeyPositions(self._index)

    # --- spaces -------------------------------------------------------------------------------

    def observation_space(self, index: int) -> gymnasium.Space:
        return self._obs_spaces[index]

    def action_space(self, index: int) -> gymnasium.Space:
        return self._act_spaces[index]

    # --- episode ------------------------------------------------------------------------------

    def reset(self, seed: int) -> None:
        self._seed = int(seed)
        self._actions = ActionLog(self._action_dtype)
        self.steps = 0
        if self.native:
            self.env.reset_arrays(self._seed)
        else:
            observations, _ = self.env.reset(seed=self._seed)
            self._latest = {}
            self._store_observations(observations)
        self.alive = self._live_mask()
        self.done = not self.alive.any()

    def observe(self, indices: np.ndarray) -> np.ndarray:
        """Stacked observations of the agents at `indices` (zeros for agents not alive)."""
        indices = np.asarray(indices, dtype=np.int64)
        if not self._homogeneous and len({self._obs_spaces[i].shape for i in indices.tolist()}) > 1:
            shapes = {self._obs_spaces[i].shape for i in indices.tolist()}
            raise ValueError(
                f"cannot stack observations of different shapes {sorted(map(str, shapes))} in one "
                "shard; give agents with different observation spaces to different teams/policies "
                "(spec.teams) so each shard is homogeneous"
            )
        if self.native:
            stacked = self.env.observe_arrays(indices)
            stacked[~self.alive[indices]] = 0
            return stacked
        if indices.size == 0:
            space = self._obs_spaces[0]
            return np.zeros((0, *space.shape), dtype=space.dtype)
        rows = []
        latest, alive = self._latest, self.alive[indices].tolist()
        for i, name, live in zip(indices.tolist(), self._names[indices].tolist(), alive, strict=True):
            obs = latest.get(name) if live else None
            if obs is None:
                space = self._obs_spaces[i]
                obs = np.zeros(space.shape, dtype=space.dtype)
            rows.append(np.asarray(obs))
        return np.stack(rows)

    def step(self, actions: np.ndarray) -> StepOutcome:
        """One joint step: `actions` [N, *act_shape] in possible_agents order; dead agents' ignored."""
        if self.done:
            raise RuntimeError("ArrayEnv.step called on a finished episode; call reset(seed) first")
        actions = np.asarray(actions)
        if actions.shape[:1] != (self.num_agents,):
            raise ValueError(f"expected actions for all {self.num_agents} agents, got shape {actions.shape}")
        was_alive = self.alive
        if self.native:
            rewards, terminated, truncated = self.env.step_arrays(actions)
            rewards = np.where(was_alive, rewards, 0).astype(np.float32)
            terminated = np.asarray(terminated, dtype=bool) & was_alive
            truncated = np.asarray(truncated, dtype=bool) & was_alive
        else:
            rewards, terminated, truncated = self._step_dicts(actions, was_alive)
            if self._action_dtype is None:
                self._action_dtype = self._actions.dtype = compact_action_dtype(self._act_spaces, actions.dtype)
            self._actions.append(actions)  # the replay a checkpoint needs
        self.steps += 1
        self.alive = self._live_mask() & ~(terminated | truncated)
        if self.steps >= self.max_steps:
            truncated = truncated | self.alive
            self.alive = np.zeros(self.num_agents, dtype=bool)
        self.done = not self.alive.any()
        return StepOutcome(rewards=rewards, terminated=terminated, truncated=truncated)

    # --- checkpoints --------------------------------------------------------------------------

    def get_state(self, since: int = 0) -> dict[str, Any]:
        """A picklable snapshot of the episode; `set_state` restores it exactly.

        Generic backend: `actions` holds the joint actions of steps `since`.. only
        (`actions_from: since`); whoever keeps the snapshots joins the pieces (`join_actions`)
        before `set_state`, which needs them all from step 0."""
        state: dict[str, Any] = {"seed": self._seed, "steps": self.steps, "alive": self.alive.copy(), "done": self.done}
        if self.native:
            state["native"] = self.env.get_state()
        else:
            state["actions"] = self._actions.since(since)
            state["actions_from"] = since
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        if state["seed"] is None:
            self.done, self.steps, self.alive = True, 0, np.zeros(self.num_agents, dtype=bool)
            return
        if self.native:
            self.env.set_state(state["native"])
            self._seed, self._actions = state["seed"], ActionLog()
        else:
            if state.get("actions_from", 0) != 0:
                raise ValueError(
                    f"this snapshot holds the actions from step {state['actions_from']} only; join it with the "
                    "earlier ones first (checkpoint.join_actions)"
                )
            # Replay: the environment must be deterministic given its seed and actions.
            self.reset(state["seed"])
            for actions in state["actions"] if state["actions"] is not None else []:
                self.step(actions)
            if not np.array_equal(self.alive, state["alive"]):
                raise RuntimeError(
                    "replaying the checkpoint did not reproduce the episode (different agents alive); "
                    "the environment is not deterministic given its seed and actions, which "
                    "checkpoint restore requires"
                )
        self.steps, self.done = int(state["steps"]), bool(state["done"])
        self.alive = np.array(state["alive"], dtype=bool)

    def close(self) -> None:
        self.env.close()

    # --- generic backend ----------------------------------------------------------------------

    def _live_mask(self) -> np.ndarray:
        mask = np.zeros(self.num_agents, dtype=bool)
        if self.native:
            mask[:] = bool(self.env.agents)
        else:
            mask[self._live_keys(tuple(self.env.agents))[0]] = True
        return mask

    def _store_observations(self, observations: dict[str, Any]) -> None:
        # One C-level dict update: agents the env stopped reporting keep their last observation
        # (read as zeros once they are not alive); arrays are made only for agents a policy reads.
        self._latest.update(observations)

    def _step_dicts(self, actions: np.ndarray, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        live = np.flatnonzero(alive)
        names = self._names[live].tolist()
        if self._discrete:  # Python ints, as a Discrete space's own sample() gives
            joint = dict(zip(names, actions[live].tolist(), strict=True))
        else:
            joint = {
                name: int(actions[i]) if isinstance(self._act_spaces[i], gymnasium.spaces.Discrete) else actions[i]
                for name, i in zip(names, live.tolist(), strict=True)
            }
        observations, rewards_d, terminated_d, truncated_d, _ = self.env.step(joint)
        self._store_observations(observations)
        rewards = self._reward_keys.gather(rewards_d, np.zeros(self.num_agents, dtype=np.float32))
        terminated, truncated = np.zeros(self.num_agents, dtype=bool), np.zeros(self.num_agents, dtype=bool)
        if any(terminated_d.values()):  # most steps nobody is done: one C-level scan, no gather
            self._done_keys.gather(terminated_d, terminated)
        if any(truncated_d.values()):
            self._done_keys.gather(truncated_d, truncated)
        return rewards, terminated & alive, truncated & alive


def make_array_env(factory: str, params: dict[str, Any], max_steps: int) -> ArrayEnv:
    """Build `spec.environment` (factory, params, maxSteps) as an ArrayEnv."""
    env = load_environment_factory(factory)(**params)
    return ArrayEnv(env, max_steps)
