"""The embedded Ray `swarm-arena run` starts: token authentication on, and Ray's notice that it
chose that default not printed on every start."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

SCRIPT = """
import ray
from ray._raylet import AuthenticationMode, get_authentication_mode
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.arena.runner import run_evaluation

evaluation = SwarmEvaluation.model_validate({
    "apiVersion": "arena.swarm.dev/v1alpha1", "kind": "SwarmEvaluation", "metadata": {"name": "embedded"},
    "spec": {"environment": {"factory": "foraging", "params": {"agents": 20}, "maxSteps": 3},
             "policies": [{"name": "random", "factory": "random"}], "episodes": 1},
})
modes = []
report = run_evaluation(evaluation, on_progress=lambda _: modes.append(get_authentication_mode() == AuthenticationMode.TOKEN))
print("episodes", report.progress.episodes_completed, "token auth", modes[0])
"""


def test_embedded_ray_keeps_token_auth_and_drops_only_the_default_notice() -> None:
    env_without_choice = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=150, env=env_without_choice)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "episodes 1 token auth True" in done.stdout, done.stdout
    assert "Token authentication is enabled" not in done.stderr + done.stdout
