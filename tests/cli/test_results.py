"""`swarm-arena results`: the same results from a run's JSON and from the operator's ConfigMap."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest
import yaml

from swarm_arena.api.report import EpisodeRecord, RunReport
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.status import Estimate, PopulationReturns, Progress, Results, SocialOutcome, StoppedEarly
from swarm_arena.arena import results_view
from swarm_arena.arena.scoring import EpisodeOutcome, RatingOptions, score
from swarm_arena.cli import main
from swarm_arena.controller import build_results

POLICIES = ["greedy", "random", "noop"]
MEANS = {"greedy": 3.0, "random": 1.0, "noop": 0.0}


@pytest.fixture(scope="module")
def report() -> RunReport:
    rng = random.Random(0)
    records = []
    for a in POLICIES:
        for b in POLICIES:
            for _ in range(8 if a != b else 0):
                returns = {a: rng.gauss(MEANS[a], 1), b: rng.gauss(MEANS[b], 1)}
                records.append(EpisodeRecord(episode=len(records), pairing={"red": a, "blue": b}, returns=returns,
                                             agents={a: 4, b: 4}, steps=10, agent_steps=80))
    board = score("bradley-terry", POLICIES, [EpisodeOutcome(r.episode, r.returns, r.pairing) for r in records], 0,
                  RatingOptions(resamples=300, optimality_target=4.0))
    early = StoppedEarly(reason="LeaderboardSeparated", message="every adjacent pair separated; 12 saved",
                         decided_at=48, episodes_planned=60, episodes_saved=12)
    results = Results(leaderboard=board.leaderboard, rating_method=board.method, pairwise=board.pairwise,
                      return_aggregates=board.return_aggregates, stopped_early=early,
                      populations=[PopulationReturns(policy="greedy", episodes=16,
                                                     focal_per_capita_return=Estimate(value=3.0, low=2.5, high=3.5),
                                                     background_per_capita_return=Estimate(value=0.5, low=0.1, high=0.9))],
                      social_outcomes=[SocialOutcome(kind="team", name="red", episodes=24,
                                                     efficiency=Estimate(value=1.25, low=1.0, high=1.5),
                                                     equality=Estimate(value=0.9, low=0.85, high=0.95),
                                                     peace=Estimate(value=1.0, low=0.0, high=2.0))])
    return RunReport(evaluation="team-a/duel", seed=7, progress=Progress(episodes_completed=48, episodes_total=60),
                     results=results, episodes=records)


@pytest.fixture(scope="module")
def run_file(report: RunReport, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("results") / "run.json"
    path.write_text(json.dumps(report.model_dump(by_alias=True, mode="json")))
    return path


def test_table_shows_leaderboard_pairwise_and_aggregates(run_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "--file", str(run_file)]) == 0
    out = capsys.readouterr().out
    assert "team-a/duel leaderboard (bradley-terry)" in out
    assert "P(row beats" in out and "IQM" in out and "optimality" in out
    assert "stopped early (LeaderboardSeparated)" in out
    assert "background population" in out and "0.50 [0.10, 0.90]" in out
    assert "social outcomes" in out and "peace" in out and "1.25" in out


def test_json_yaml_and_csv_carry_the_same_numbers(report: RunReport, run_file: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "--file", str(run_file), "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert main(["results", "--file", str(run_file), "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == data
    assert [r["policy"] for r in data["leaderboard"]] == [e.policy for e in report.results.leaderboard]
    assert data["leaderboard"][0]["separatedFrom"] == report.results.leaderboard[0].separated_from
    assert len(data["pairwise"]) == 6 and data["returnAggregates"][0]["optimalityGap"] >= 0
    assert data["stoppedEarly"]["episodesSaved"] == 12
    assert data["populations"] == [{"policy": "greedy", "episodes": 16, "focalPerCapitaReturn": 3.0,
                                    "focalPerCapitaReturnLow": 2.5, "focalPerCapitaReturnHigh": 3.5,
                                    "backgroundPerCapitaReturn": 0.5, "backgroundPerCapitaReturnLow": 0.1,
                                    "backgroundPerCapitaReturnHigh": 0.9}]
    assert data["socialOutcomes"][0]["equality"] == 0.9 and data["socialOutcomes"][0]["sustainability"] is None
    assert main(["results", "--file", str(run_file), "-o", "csv", "--section", "social"]) == 0
    assert capsys.readouterr().out.startswith("kind,name,episodes,efficiency,")
    assert main(["results", "--file", str(run_file), "-o", "csv", "--section", "pairwise"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {(r["row"], r["column"]) for r in rows} == {(a, b) for a in POLICIES for b in POLICIES if a != b}
    assert all(float(r["low"]) <= float(r["probability"]) <= float(r["high"]) for r in rows)


def test_the_configmap_reads_as_the_run_file_does(report: RunReport, run_file: Path) -> None:
    doc = yaml.safe_load(Path(__file__).parents[2].joinpath("manifests/examples/foraging-local.yaml").read_text())
    doc["metadata"] = {"name": "duel", "namespace": "team-a"}
    evaluation = SwarmEvaluation.model_validate(doc)
    cm = build_results.build_results_configmap(evaluation, "uid-1", records=report.episodes, progress=report.progress,
                                               results=report.results, recoveries=[], final=True)
    from_cm = results_view.from_configmap(cm, "configmap")
    from_file = results_view.from_json(run_file.read_text(), str(run_file))
    assert results_view.as_data(from_cm) == results_view.as_data(from_file)
    assert json.loads(cm["data"][build_results.RESULTS_KEY])["results"]["leaderboard"][0]["separatedFrom"] == []


def test_plot_and_marl_eval_export(run_file: Path, tmp_path: Path) -> None:
    png, exported = tmp_path / "results.png", tmp_path / "marl.json"
    assert main(["results", "--file", str(run_file), "--plot", str(png), "--marl-eval", str(exported)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    layout = json.loads(exported.read_text())
    runs = layout["swarm-arena"]["team-a.duel"]
    assert sorted(runs) == sorted(POLICIES)
    assert len(runs["greedy"]["seed_7"]["absolute_metrics"]["return"]) == 32


def test_bad_input_is_refused_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"evaluation": "x"}')
    assert main(["results", "--file", str(bad)]) == 1
    assert "no `results` object" in capsys.readouterr().err
    assert main(["results"]) == 2


@pytest.mark.controlplane
def test_results_of_an_evaluation_are_read_from_its_configmap_in_the_cluster(
    report: RunReport, run_file: Path, control_plane, kube_api, namespace: str, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    from kubernetes import client

    doc = yaml.safe_load(Path(__file__).parents[2].joinpath("manifests/examples/foraging-local.yaml").read_text())
    doc["metadata"] = {"name": "duel", "namespace": namespace}
    cm = build_results.build_results_configmap(SwarmEvaluation.model_validate(doc), "uid-1", records=report.episodes,
                                               progress=report.progress, results=report.results, recoveries=[],
                                               final=True)
    del cm["metadata"]["ownerReferences"]  # no SwarmEvaluation here: the garbage collector would take it
    client.CoreV1Api(kube_api).create_namespaced_config_map(namespace, cm)
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)}
    out = subprocess.run([sys.executable, "-m", "swarm_arena.cli", "results", f"{namespace}/duel", "-o", "json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    shown, local = json.loads(out.stdout), results_view.as_data(results_view.from_json(run_file.read_text(), "run"))
    assert shown.pop("evaluation") == f"{namespace}/duel" and local.pop("evaluation") == "team-a/duel"
    assert shown == local
    missing = subprocess.run([sys.executable, "-m", "swarm_arena.cli", "results", f"{namespace}/nobody"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 1 and "could not read the results" in missing.stderr and "Not Found" in missing.stderr


RECORDINGS = "s3://bucket/rec/team-a/duel/0123456789abcdef/recording"


def test_recordings_reach_the_configmap_status_and_the_results_command(
    report: RunReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from swarm_arena.api.status import Recordings

    every_other = list(range(0, 2 * 150, 2))  # 150 ranges: more than status keeps
    results = report.results.model_copy(update={"recordings": Recordings.of(RECORDINGS, every_other)})
    doc = yaml.safe_load(Path(__file__).parents[2].joinpath("manifests/examples/foraging-local.yaml").read_text())
    doc["metadata"] = {"name": "duel", "namespace": "team-a"}
    cm = build_results.build_results_configmap(SwarmEvaluation.model_validate(doc), "uid-1", records=report.episodes,
                                               progress=report.progress, results=results, recoveries=[], final=True)
    in_cm = results_view.from_configmap(cm, "configmap").results.recordings
    assert in_cm is not None and in_cm.indices == every_other and in_cm.count == 150
    in_status = results.for_status().recordings
    assert in_status is not None and in_status.count == 150 and in_status.episodes.endswith(",...")
    assert in_status.indices == every_other[:100]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(report.model_copy(update={"results": results}).model_dump(by_alias=True, mode="json")))
    assert main(["results", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "recorded episodes" in out and "s3://bucket/rec/team-a/duel" in out
    assert main(["results", "--file", str(path), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["recordings"] == {"uri": RECORDINGS, "episodes": in_cm.episodes, "count": 150}


def test_episode_ranges_round_trip() -> None:
    from swarm_arena.api.status import episode_ranges, parse_episode_ranges

    assert episode_ranges([9, 0, 1, 2, 3, 7, 10]) == "0-3,7,9-10" and episode_ranges([]) == ""
    assert parse_episode_ranges("0-3,7,9-10") == [0, 1, 2, 3, 7, 9, 10]
