"""What checkpointing and restoring a generic PettingZoo episode costs: MAgent2 battle at map
size 120 (1,152 agents), `--steps` steps, a checkpoint every `--interval` steps into a durable
`file://` store, then a restore at the last checkpoint into a fresh environment.

Generic environments checkpoint as "seed + every joint action so far" and restore by replaying
them (array_env.py). Printed: bytes each checkpoint writes and their total, against what the
earlier design wrote (the whole int64 action history in every checkpoint, O(steps²)); and the
restore at the end: reading the store back (joining the action log), and the replay itself.

    .venv/bin/python benchmarks/checkpoint_restore.py --steps 1000 --interval 100
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from swarm_arena.arena.array_env import make_array_env  # noqa: E402
from swarm_arena.arena.checkpoint import DurableStore, spec_fingerprint  # noqa: E402
from swarm_arena.arena.checkpoint_codec import encode_checkpoint  # noqa: E402
from swarm_arena.arena.episode import EpisodeCheckpoint  # noqa: E402
from swarm_arena.arena.policies.builtin import RandomPolicy  # noqa: E402
from tests.arena.conftest import foraging_evaluation  # noqa: E402

BATTLE = "magent2.environments.battle_v4:parallel_env"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=100)
    parser.add_argument("--map-size", type=int, default=120)
    args = parser.parse_args()

    env = make_array_env(BATTLE, {"map_size": args.map_size}, max_steps=args.steps)
    n = env.num_agents
    policy = RandomPolicy(env.observation_space(0), env.action_space(0), seed=1)
    everyone = np.arange(n)
    root = Path(tempfile.mkdtemp(prefix="swarm-arena-restore-"))
    evaluation = foraging_evaluation("restore-bench")
    store = DurableStore(f"file://{root}", evaluation.qualified_name, spec_fingerprint(evaluation.spec))
    env.reset(11)
    written, old_total, stepping = [], 0, 0.0
    while not env.done:
        start = env.steps
        began = time.perf_counter()
        while not env.done and env.steps < start + args.interval:
            env.step(policy.act(np.zeros((n, 1)), env.possible_agents))
        stepping += time.perf_counter() - began
        state = env.get_state(since=start)
        checkpoint = EpisodeCheckpoint(episode=0, step=env.steps, env_state=state, shard_states={},
                                       returns=np.zeros(n), agent_steps=0)  # fmt: skip
        store.save_checkpoint(checkpoint)
        segment = root / store.prefix / "actions" / "000000" / f"{start:06d}.npy"
        written.append(segment.stat().st_size + next(root.rglob("inflight/*.npz")).stat().st_size)
        # The earlier design: the whole history, int64, in every checkpoint.
        whole = store.checkpoint(0)
        assert whole is not None
        old_state = {**whole.env_state, "actions": whole.env_state["actions"].astype(np.int64)}
        old_state.pop("actions_from")
        old_total += len(encode_checkpoint(EpisodeCheckpoint(0, env.steps, old_state, {}, np.zeros(n), 0)))
    steps = env.steps
    env.close()

    began = time.perf_counter()
    reopened = DurableStore(f"file://{root}", evaluation.qualified_name, spec_fingerprint(evaluation.spec))
    checkpoint = reopened.checkpoint(0)
    read_s = time.perf_counter() - began
    assert checkpoint is not None and checkpoint.step == steps
    fresh = make_array_env(BATTLE, {"map_size": args.map_size}, max_steps=args.steps)
    began = time.perf_counter()
    fresh.set_state(checkpoint.env_state)
    replay_s = time.perf_counter() - began
    fresh.close()
    shutil.rmtree(root)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; python {platform.python_version()}")
    print(f"battle map {args.map_size}: {n} agents, {steps} steps, a checkpoint every {args.interval}; "
          f"action log {checkpoint.env_state['actions'].dtype}")
    print(f"{'':32} {'per checkpoint':>16} {'all checkpoints':>16}")
    print(f"{'written now (segment + rest)':32} {f'{written[-1] / 1e3:.0f} kB':>16} {f'{sum(written) / 1e6:.2f} MB':>16}")
    print(f"{'earlier design (whole, int64)':32} {f'{old_total / len(written) / 1e3:.0f} kB avg':>16} {f'{old_total / 1e6:.2f} MB':>16}")
    print(f"stepping: {stepping:.1f} s ({1e3 * stepping / steps:.1f} ms/step)")
    print(f"restore at step {steps}: read + join {1e3 * read_s:.0f} ms, replay {replay_s:.1f} s "
          f"({1e3 * replay_s / steps:.1f} ms/step)")


if __name__ == "__main__":
    main()
