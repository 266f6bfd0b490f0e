"""Every example manifest in manifests/examples/ runs on a real local Ray, shrunk to a few steps.

The examples are what users copy, so each one is played as written — its environment (the
built-in foraging, MAgent2 battle with 1,152 agents, SISL pursuit), policies, teams,
matchmaking, rating, execution layout and checkpointing — with fewer episodes and steps, on a
Ray that has one logical GPU so the GPU example's fractional-GPU shards can be placed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm_arena.api.validation import load_and_validate
from swarm_arena.arena.runner import run_evaluation

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(example: Path, local_ray_with_one_gpu, tmp_path: Path) -> None:
    evaluation = load_and_validate(example, check_imports=True)
    spec = evaluation.spec
    spec.episodes = 1
    spec.environment.max_steps = min(spec.environment.max_steps, 12)
    spec.checkpoint.interval_steps = min(spec.checkpoint.interval_steps, 5)
    if spec.checkpoint.storage_uri:
        spec.checkpoint.storage_uri = f"file://{tmp_path}"

    report = run_evaluation(evaluation)

    total = report.progress.episodes_total
    assert total >= 1 and report.progress.episodes_completed == total
    assert [e.episode for e in report.episodes] == list(range(total))
    assert all(0 < e.steps <= 12 for e in report.episodes)
    assert report.progress.agent_steps == sum(e.agent_steps for e in report.episodes) > 0
    board = report.results.leaderboard
    assert sorted(row.policy for row in board) == sorted(spec.policy_names)
    assert all(row.ci_low <= row.rating <= row.ci_high for row in board)
