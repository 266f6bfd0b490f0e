"""The `swarm-arena` command as a user types it: a real subprocess, a real embedded Ray."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from swarm_arena.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))

SMALL = {
    "apiVersion": "arena.swarm.dev/v1alpha1",
    "kind": "SwarmEvaluation",
    "metadata": {"name": "cli-small"},
    "spec": {
        "environment": {"factory": "foraging", "params": {"agents": 120}, "maxSteps": 30},
        "policies": [
            {"name": "greedy", "factory": "greedy", "resources": {"cpu": 0.5}},
            {"name": "random", "factory": "random", "resources": {"cpu": 0.5}},
        ],
        "episodes": 3,
        "seed": 5,
        "rating": {"method": "mean-return"},
        "execution": {"agentsPerShard": 60},
        "checkpoint": {"intervalSteps": 10},
        "cluster": {"workerGroups": [{"name": "cpu"}]},
    },
}


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "swarm_arena.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def _kubeconfig(tmp_path: Path, namespace: str) -> Path:
    """A kubeconfig whose current context names `namespace` (never contacted)."""
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": namespace}}],
    }))
    return path


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(example: Path, capsys) -> None:
    assert main(["validate", str(example)]) == 0
    assert f"{example}: valid" in capsys.readouterr().out


def test_readme_manifest_validates(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no yaml example"
    for i, block in enumerate(blocks):
        path = tmp_path / f"readme-{i}.yaml"
        path.write_text(block)
        assert main(["validate", str(path)]) == 0


def test_validate_refuses_and_names_the_field(tmp_path: Path, capsys) -> None:
    bad = json.loads(json.dumps(SMALL))
    bad["spec"]["policies"][1]["name"] = "Random_Policy"
    bad["spec"]["episodes"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "spec.policies[1].name" in err
    assert "spec.episodes" in err


def test_run_refuses_a_bad_manifest_before_starting_ray(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(SMALL))
    bad["spec"]["environment"]["factory"] = "no_such_module_xyz:parallel_env"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = _cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    assert "spec.environment.factory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_writes_results_and_plot(tmp_path: Path) -> None:
    manifest = tmp_path / "eval.yaml"
    manifest.write_text(yaml.safe_dump(SMALL))
    proc = _cli("run", str(manifest), "--output", "out.json", "--plot", "board.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    report = json.loads((tmp_path / "out.json").read_text())
    assert report["progress"]["episodesCompleted"] == 3
    assert report["progress"]["episodesTotal"] == 3
    assert report["progress"]["agentSteps"] == 3 * 30 * 120
    board = report["results"]["leaderboard"]
    assert [row["policy"] for row in board][0] == "greedy"
    assert {row["policy"] for row in board} == {"greedy", "random"}
    for row in board:
        assert row["ciLow"] <= row["rating"] <= row["ciHigh"]
        assert row["episodes"] == 3
    assert 0 < report["results"]["stepLatencyMs"]["p50"] <= report["results"]["stepLatencyMs"]["p99"]
    assert report["results"]["agentStepsPerSecond"] > 0
    assert sorted(e["episode"] for e in report["episodes"]) == [0, 1, 2]

    png = (tmp_path / "board.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    # The leaderboard table is printed for people.
    assert "greedy" in proc.stdout and "random" in proc.stdout


def test_run_says_why_it_stopped_early(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(SMALL))
    doc["spec"]["stopping"] = {"maxEpisodes": 1}
    doc["spec"]["environment"]["params"]["agents"] = 20
    doc["spec"]["policies"] = [{"name": p, "factory": p} for p in ("greedy", "random")]
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(doc))
    proc = _cli("run", "eval.yaml", "--output", "out.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stopped early (MaxEpisodes)" in proc.stdout
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["progress"] == {"episodesCompleted": 1, "episodesTotal": 3, "agentSteps": 20 * 30, "summary": "1/3"}
    assert report["results"]["stoppedEarly"]["episodesSaved"] == 2


def test_run_reports_a_failed_evaluation_without_traceback(tmp_path: Path) -> None:
    # Valid for the schema and importable, but the factory refuses the params: only the run knows.
    bad = json.loads(json.dumps(SMALL))
    bad["spec"]["policies"][1]["params"] = {"no_such_argument": 1}
    path = tmp_path / "bad-params.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = _cli("run", str(path), "--quiet", cwd=tmp_path)
    assert proc.returncode == 1
    assert "evaluation failed" in proc.stderr
    assert "spec.policies[1]" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.ray
def test_run_on_an_existing_ray_cluster(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    manifest = tmp_path / "eval.yaml"
    manifest.write_text(yaml.safe_dump(SMALL))
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 4, "include_dashboard": False})
    try:
        proc = _cli("run", str(manifest), "--ray-address", cluster.address, "-o", "json", "--quiet", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout)  # -o json: the results alone on stdout, no table
        assert report["progress"]["episodesCompleted"] == report["progress"]["episodesTotal"] == 3
        # The run connected to the cluster and left it running: it neither started nor stopped a Ray.
        assert cluster.head_node.remaining_processes_alive()

        # Nothing runs there any more: repair says so instead of failing with a traceback.
        proc = _cli("repair", "default/cli-small", "--ray-address", cluster.address, cwd=tmp_path)
        assert proc.returncode == 1
        assert "no running evaluation default/cli-small" in proc.stderr and "Traceback" not in proc.stderr
        # NAME alone: the kubeconfig context's namespace, as kubectl; -n wins over it.
        env = {"KUBECONFIG": str(_kubeconfig(tmp_path, "team-x"))}
        proc = _cli("repair", "cli-small", "--ray-address", cluster.address, cwd=tmp_path, env=env)
        assert proc.returncode == 1 and "no running evaluation team-x/cli-small" in proc.stderr, proc.stderr
        proc = _cli("repair", "cli-small", "-n", "team-y", "--ray-address", cluster.address, cwd=tmp_path, env=env)
        assert proc.returncode == 1 and "no running evaluation team-y/cli-small" in proc.stderr, proc.stderr
    finally:
        cluster.shutdown()


@pytest.mark.parametrize("command", ["run", "repair"])
def test_an_unreachable_ray_cluster_is_reported_without_traceback(command: str, tmp_path: Path) -> None:
    manifest = tmp_path / "eval.yaml"
    manifest.write_text(yaml.safe_dump(SMALL))
    target = str(manifest) if command == "run" else "default/cli-small"
    proc = _cli(command, target, "--ray-address", "127.0.0.1:1", cwd=tmp_path)
    assert proc.returncode == 1
    assert "cannot reach a Ray cluster at" in proc.stderr and "Traceback" not in proc.stderr


def test_run_refuses_a_dashboard_url_as_ray_address(tmp_path: Path) -> None:
    manifest = tmp_path / "eval.yaml"
    manifest.write_text(yaml.safe_dump(SMALL))
    proc = _cli("run", str(manifest), "--ray-address", "http://127.0.0.1:8265", "--quiet", cwd=tmp_path)
    assert proc.returncode == 1
    assert "dashboard URL" in proc.stderr and "Traceback" not in proc.stderr


def test_version_names_the_package_and_its_ray(capsys) -> None:
    from importlib.metadata import version

    from swarm_arena.api.spec import RAY_VERSION

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"swarm-arena {version('swarm-arena')} (Ray {RAY_VERSION})"


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_validate_prints_every_result_as_data(fmt: str, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SMALL, "spec": {**SMALL["spec"], "episodes": 0}}))
    good = str(EXAMPLES[0])
    assert main(["validate", good, str(bad), "-o", fmt]) == 1
    out = capsys.readouterr().out
    results = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert [(r["file"], r["valid"]) for r in results] == [(good, True), (str(bad), False)]
    assert any("spec.episodes" in p for p in results[1]["problems"]), results


def test_render_json_is_a_kubectl_list(capsys) -> None:
    assert main(["render", str(ROOT / "manifests" / "examples" / "foraging-local.yaml"), "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "List" and [i["kind"] for i in doc["items"][:2]] == ["Secret", "RayCluster"]


def test_a_wrong_command_line_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["validate", "x.yaml", "-o", "xml"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
