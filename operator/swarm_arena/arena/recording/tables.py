"""The Parquet tables of a recording (docs/recording.md), built with pyarrow from joined segments.

Each episode's rows go into files of their own (`steps/<episode>.parquet`, one row group;
`episodes/<episode>.parquet`, one row), named by the episode's index: writing an episode again
(a replay) replaces its files, never adds rows. A folder of them reads as one table in pandas
(`pd.read_parquet(folder)`), polars (`pl.read_parquet(folder + "/*.parquet")`) and DuckDB.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from swarm_arena.arena.recording.buffer import RecordedSegment

FORMAT = 1
MANIFEST = "manifest.json"
STEPS, EPISODES, OBSERVATIONS = "steps", "episodes", "observations"
PARQUET_SUFFIX = ".parquet"


def pyarrow_modules() -> tuple[Any, Any]:
    """(pyarrow, pyarrow.parquet); ImportError naming the extra when pyarrow is missing."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "spec.recording writes Parquet through pyarrow: `pip install 'swarm-arena[recording]'` where the arena runs"
        ) from None
    return pa, pq


def params_digest(environment: Mapping[str, Any]) -> str:
    """sha256 of `spec.environment` (factory, params, maxSteps) as canonical JSON: which world was recorded."""
    return hashlib.sha256(json.dumps(dict(environment), sort_keys=True).encode()).hexdigest()


def episode_file(episode: int) -> str:
    return f"{episode:06d}{PARQUET_SUFFIX}"


def _index_dtype(size: int) -> np.dtype:
    return np.dtype(np.int8 if size < 2**7 else np.int16 if size < 2**15 else np.int32)


def agent_policies(agents: int, policy_agents: Mapping[str, Sequence[int]]) -> tuple[list[str], np.ndarray]:
    """(policy names, each agent's index into them; -1 for agents no policy controls)."""
    names = list(policy_agents)
    codes = np.full(agents, -1, dtype=np.int32)
    for code, indices in enumerate(policy_agents.values()):
        codes[list(indices)] = code
    return names, codes


def _per_agent_column(pa: Any, values: np.ndarray) -> Any:
    """Scalars as they are; vectors (Box or MultiDiscrete actions, observations) as fixed-size lists."""
    if values.ndim == 1:
        return pa.array(values)
    flat = values.reshape(len(values), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


def _keys(pa: Any, episode: int, steps: np.ndarray, agents: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    agent_type = _index_dtype(len(names))
    return {
        "episode": pa.array(np.full(len(steps), episode, dtype=np.int32)),
        "step": pa.array(steps.astype(np.int32, copy=False)),
        "agent": pa.DictionaryArray.from_arrays(
            pa.array(agents.astype(agent_type, copy=False)), pa.array(list(names), pa.string())
        ),
    }


def steps_table(
    episode: int, segment: RecordedSegment, agents: Sequence[str], policy_agents: Mapping[str, Sequence[int]]
) -> Any:
    """One row per agent that acted, per step: episode, step, agent, policy, action, reward, terminated, truncated."""
    pa, _ = pyarrow_modules()
    steps, n = segment.acted.shape
    policies, codes = agent_policies(len(agents), policy_agents)
    codes = codes.astype(_index_dtype(len(policies)))
    if segment.acted.all():  # everyone alive throughout (foraging): rows are the arrays as they lie
        step = np.repeat(np.arange(steps, dtype=np.int32), n)
        agent = np.tile(np.arange(n, dtype=np.int32), steps)
        code = np.tile(codes, steps)

        def rows(values: np.ndarray) -> np.ndarray:
            return values.reshape(steps * n, *values.shape[2:])
    else:
        step, agent = np.nonzero(segment.acted)  # step-major: the rows of one step are together
        code = codes[agent]

        def rows(values: np.ndarray) -> np.ndarray:
            return values[step, agent]

    columns = _keys(pa, episode, step + segment.first_step, agent, agents)
    columns["policy"] = pa.DictionaryArray.from_arrays(
        pa.array(code, mask=code < 0 if (code < 0).any() else None), pa.array(policies, pa.string())
    )
    columns["action"] = _per_agent_column(pa, rows(segment.actions))
    columns["reward"] = pa.array(rows(segment.rewards))
    columns["terminated"] = pa.array(rows(segment.terminated))
    columns["truncated"] = pa.array(rows(segment.truncated))
    return pa.table(columns)


def observations_table(episode: int, segment: RecordedSegment, observed: Sequence[int], agents: Sequence[str]) -> Any:
    """One row per observed agent that acted, per step: what it saw before it acted (flattened)."""
    pa, _ = pyarrow_modules()
    assert segment.observations is not None
    sample = np.asarray(observed, dtype=np.int64)
    step, column = np.nonzero(segment.acted[:, sample])
    columns = _keys(pa, episode, step + segment.first_step, sample[column], agents)
    columns["observation"] = _per_agent_column(pa, segment.observations[step, column])
    return pa.table(columns)


def agent_returns(rewards: np.ndarray) -> np.ndarray:
    """Each agent's return, summed step after step in float64: the arithmetic the environment actor does."""
    returns = np.zeros(rewards.shape[1], dtype=np.float64)
    for row in rewards:
        returns += row
    return returns


def policy_returns(returns: np.ndarray, policy_agents: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Policy -> mean per-agent return (what `EpisodeRecord.returns` and the leaderboard use)."""
    return {p: float(returns[list(ix)].mean()) if len(ix) else 0.0 for p, ix in policy_agents.items()}


def episodes_table(
    episode: int,
    seed: int,
    pairing: Mapping[str, str],
    digest: str,
    steps: int,
    returns: np.ndarray,
    per_policy: Mapping[str, float],
) -> Any:
    """One row: the episode, its seed, pairing, environment digest, steps and returns (per agent, per policy)."""
    pa, _ = pyarrow_modules()
    return pa.table({
        "episode": pa.array([episode], pa.int32()),
        "seed": pa.array([seed], pa.int64()),
        "pairing": pa.array([list(pairing.items())], pa.map_(pa.string(), pa.string())),
        "env_params_digest": pa.array([digest], pa.string()),
        "steps": pa.array([steps], pa.int32()),
        "agent_returns": pa.array([returns], pa.list_(pa.float64())),
        "policy_returns": pa.array([list(per_policy.items())], pa.map_(pa.string(), pa.float64())),
    })  # fmt: skip


def to_parquet(table: Any) -> bytes:
    """One row group for the whole table (an episode), zstd-compressed. Parquet dictionaries only
    for the dictionary columns (agent, policy) and statistics only for episode and step (what a
    reader filters on): half the encoding time of the defaults for 5M rows, 25% more bytes."""
    pa, pq = pyarrow_modules()
    sink = io.BytesIO()
    names = set(table.column_names)
    pq.write_table(
        table, sink, row_group_size=max(1, table.num_rows), compression="zstd",
        use_dictionary=[c for c in ("agent", "policy") if c in names],
        write_statistics=[c for c in ("episode", "step") if c in names],
    )  # fmt: skip
    return sink.getvalue()


def from_parquet(data: bytes) -> Any:
    _, pq = pyarrow_modules()
    return pq.read_table(io.BytesIO(data))
