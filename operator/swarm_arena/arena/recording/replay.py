"""`swarm-arena replay`: re-step the environment from a recording's seed and actions, no policy code.

The arena's own recovery assumes an environment is deterministic given its seed and actions;
a replay checks it for the recorded episodes: at every step, the agents alive, each agent's
reward, termination and truncation must be the recorded ones, and at the end every agent's
return. The first step (and agent) that differs is reported: the environment is not
deterministic (or was not the same environment: its params digest is checked first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swarm_arena.arena.checkpoint import open_files
from swarm_arena.arena.recording import tables


@dataclass(frozen=True)
class Divergence:
    """Where a replay first left the recording."""

    step: int
    agent: str
    what: str  # `alive`, `reward`, `terminated`, `truncated`, `return`, `steps`
    recorded: Any
    replayed: Any

    def __str__(self) -> str:
        where = f"step {self.step}, agent {self.agent}" if self.agent else f"step {self.step}"
        return f"{where}: {self.what} recorded {self.recorded!r}, replayed {self.replayed!r}"


@dataclass(frozen=True)
class EpisodeReplay:
    episode: int
    steps: int
    returns: dict[str, float]  # policy -> mean return, as recorded
    divergence: Divergence | None

    @property
    def exact(self) -> bool:
        return self.divergence is None


@dataclass(frozen=True)
class RecordedEpisode:
    """One episode read back as dense arrays in the environment's agent order."""

    episode: int
    seed: int
    steps: int
    acted: np.ndarray  # bool [T, N]
    actions: np.ndarray  # [T, N, *shape]
    rewards: np.ndarray  # float32 [T, N]
    terminated: np.ndarray
    truncated: np.ndarray
    agent_returns: np.ndarray  # float64 [N]
    policy_returns: dict[str, float]
    policy_of_agent: list[str | None]


class Recording:
    """A recording's folder: a local path, `file://`, `s3://` or `gs://`."""

    def __init__(self, where: str) -> None:
        uri = where if "://" in where else f"file://{_one_recording_below(Path(where))}"
        self.uri = uri.rstrip("/")
        self._files = open_files(self.uri, "recording")
        try:
            self.manifest = json.loads(self._files.read(tables.MANIFEST))
        except FileNotFoundError:
            raise ValueError(f"{where}: not a recording (no {tables.MANIFEST}; give the folder status.results.recordings.uri names)") from None
        self.agents: list[str] = list(self.manifest["agents"])

    def episodes(self) -> list[int]:
        names = self._files.list(tables.EPISODES)
        return sorted(int(n.removesuffix(tables.PARQUET_SUFFIX)) for n in names if n.removesuffix(tables.PARQUET_SUFFIX).isdigit())

    def table(self, kind: str, episode: int) -> Any:
        try:
            return tables.from_parquet(self._files.read(f"{kind}/{tables.episode_file(episode)}"))
        except FileNotFoundError:
            raise ValueError(f"{self.uri}: episode {episode} is not recorded (recorded: {self.episodes()})") from None

    def episode(self, episode: int) -> RecordedEpisode:
        row = self.table(tables.EPISODES, episode).to_pylist()[0]
        steps_table = self.table(tables.STEPS, episode)
        n, t = len(self.agents), int(row["steps"])
        step = steps_table.column("step").to_numpy()
        agent = _dictionary_positions(steps_table.column("agent"), self.agents)
        policy = steps_table.column("policy").to_pylist()
        actions = _values(steps_table.column("action"))
        dense = {
            "acted": np.zeros((t, n), dtype=bool),
            "actions": np.zeros((t, n, *actions.shape[1:]), dtype=actions.dtype),
            "rewards": np.zeros((t, n), dtype=np.float32),
            "terminated": np.zeros((t, n), dtype=bool),
            "truncated": np.zeros((t, n), dtype=bool),
        }
        dense["acted"][step, agent] = True
        dense["actions"][step, agent] = actions
        for name in ("rewards", "terminated", "truncated"):
            dense[name][step, agent] = steps_table.column(name.removesuffix("s") if name == "rewards" else name).to_numpy()
        policy_of_agent: list[str | None] = [None] * n
        for a, p in zip(agent.tolist(), policy, strict=True):
            policy_of_agent[a] = p
        return RecordedEpisode(
            episode=episode,
            seed=int(row["seed"]),
            steps=t,
            agent_returns=np.asarray(row["agent_returns"], dtype=np.float64),
            policy_returns=dict(row["policy_returns"]),
            policy_of_agent=policy_of_agent,
            **dense,
        )

    def make_env(self) -> Any:
        from swarm_arena.arena.array_env import make_array_env

        environment = self.manifest["environment"]
        return make_array_env(environment["factory"], environment.get("params", {}), environment.get("maxSteps", 500))


def _one_recording_below(folder: Path) -> Path:
    """`folder` itself when it is a recording, else the one recording under it (`run --record DIR`
    writes `DIR/<namespace>/<name>/<fingerprint>/recording`)."""
    folder = folder.resolve()
    if (folder / tables.MANIFEST).exists() or not folder.is_dir():
        return folder
    found = sorted(p.parent for p in folder.glob(f"*/*/*/recording/{tables.MANIFEST}"))
    if len(found) > 1:
        listed = ", ".join(str(p) for p in found)
        raise ValueError(f"{folder} holds {len(found)} recordings ({listed}); name one")
    return found[0] if found else folder


def _dictionary_positions(column: Any, names: list[str]) -> np.ndarray:
    """The position in `names` of each row of a dictionary-encoded string column."""
    array = column.combine_chunks()
    index = {name: i for i, name in enumerate(names)}
    lookup = np.asarray([index[n] for n in array.dictionary.to_pylist()], dtype=np.int64)
    return lookup[array.indices.to_numpy()]


def _values(column: Any) -> np.ndarray:
    """A scalar column as it is; a fixed-size list column as [rows, size]."""
    import pyarrow as pa

    array = column.combine_chunks()
    if pa.types.is_fixed_size_list(array.type):
        return array.flatten().to_numpy().reshape(len(array), array.type.list_size)
    return array.to_numpy()


def replay_episode(recording: Recording, episode: int, env: Any | None = None) -> EpisodeReplay:
    """Step the recording's environment through `episode`'s recorded actions; the first divergence, if any."""
    recorded = recording.episode(episode)
    own = env is None
    env = recording.make_env() if env is None else env
    try:
        divergence = _replay(env, recorded, recording.agents)
    finally:
        if own:
            env.close()
    return EpisodeReplay(episode=episode, steps=recorded.steps, returns=recorded.policy_returns, divergence=divergence)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _replay(env: Any, recorded: RecordedEpisode, agents: list[str]) -> Divergence | None:
    env.reset(recorded.seed)
    returns = np.zeros(len(agents), dtype=np.float64)
    for t in range(recorded.steps):
        acted = recorded.acted[t]
        if env.done or not np.array_equal(env.alive, acted):
            a = _first(env.alive != acted) if not env.done else _first(acted)
            return Divergence(t, agents[a], "alive", bool(acted[a]), bool(env.alive[a]))
        outcome = env.step(recorded.actions[t])
        returns += outcome.rewards
        for what, mine, theirs in (
            ("reward", outcome.rewards, recorded.rewards[t]),
            ("terminated", outcome.terminated, recorded.terminated[t]),
            ("truncated", outcome.truncated, recorded.truncated[t]),
        ):
            differs = (mine != theirs) & acted
            if differs.any():
                a = _first(differs)
                return Divergence(t, agents[a], what, theirs[a].item(), mine[a].item())
    if not env.done:
        return Divergence(recorded.steps, "", "steps", f"the episode ended after {recorded.steps}", "it went on")
    differs = returns != recorded.agent_returns
    if differs.any():
        a = _first(differs)
        return Divergence(recorded.steps, agents[a], "return", float(recorded.agent_returns[a]), float(returns[a]))
    return None
