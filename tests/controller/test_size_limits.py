"""Big evaluations: without `checkpoint.storageURI` the records are sharded over owned ConfigMaps
and a resume too big for an environment variable travels as a package; what cannot fit even so
is refused up front, naming the fields; with a store the records stay in it; and a size that
slips through ends the evaluation Failed, never an endless backoff (pure)."""

from __future__ import annotations

import functools
import json
import random
import zipfile
from pathlib import Path

import pytest

from swarm_arena.api import job_channel
from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.status import Phase, SwarmEvaluationStatus
from swarm_arena.arena.job import read_resume
from swarm_arena.controller import build_job, build_results, names, results_shards
from swarm_arena.controller import conditions as cond
from swarm_arena.controller.decide import JobView, Observation, StopJob, WriteResults, decide
from tests.controller.test_builders import UID, evaluation
from tests.controller.test_decide import NOW, READY, record

STORE = {"intervalSteps": 10, "storageURI": "file:///tmp/arena-store"}
EIGHT = [{"name": f"p{i}", "factory": "random"} for i in range(8)]


@functools.cache
def _all_records() -> list[EpisodeRecord]:
    rng = random.Random(1)
    return [EpisodeRecord(episode=i, pairing={"all": "greedy,big"}, returns={"greedy": rng.uniform(-1e3, 1e3),
                          "big": rng.uniform(-1e3, 1e3)}, agents={"greedy": 32, "big": 32}, steps=20, agent_steps=1280)
            for i in range(40_000)]


def _records(n: int) -> list[EpisodeRecord]:
    return _all_records()[:n]


@functools.cache
def _arena_records(n: int) -> list[EpisodeRecord]:
    """Records as the arena writes them for the two-policy spec of `evaluation()`: 64 agents, 32 a
    policy, one team of both, social metrics from per-agent returns and tallies (arena/social_tally.py)."""
    import numpy as np

    from swarm_arena.arena.social_tally import episode_social

    rng = np.random.default_rng(3)
    policies = {"greedy": list(range(0, 64, 2)), "big": list(range(1, 64, 2))}
    out = []
    for i in range(n):
        returns = rng.normal(3.0, 2.0, 64)
        tally = np.stack([rng.uniform(0, 200, 64), rng.integers(0, 20, 64), rng.integers(5, 21, 64)])
        out.append(EpisodeRecord(
            episode=i, pairing={"all": "greedy,big"}, agents={p: 32 for p in policies}, steps=20,
            returns={p: float(returns[ix].mean()) for p, ix in policies.items()}, agent_steps=int(tally[2].sum()),
            social=episode_social(returns, tally, 20, {"policies": policies, "teams": {"all": list(range(64))}}),
        ))
    return out


def test_two_thousand_two_policy_episodes_with_social_metrics_fit_without_a_store() -> None:
    two_thousand = evaluation(episodes=2000)
    assert build_results.size_problems(two_thousand.spec) == []
    records = _arena_records(2000)
    assert all(r.social is not None and r.social.teams for r in records)
    cm = build_results.build_results_configmap(two_thousand, UID, records=records, progress=None, results=None,
                                               recoveries=[], final=False)
    assert build_results.episodes_from_configmap(cm) == records
    body = build_job.build_submission(two_thousand, "s-2", 2, job_channel.ResumePayload(episodes=records))
    sent = job_channel.decode_payload(body["runtime_env"]["env_vars"][job_channel.RESUME_ENV])
    assert job_channel.ResumePayload.model_validate(sent).episodes == records


def test_records_an_earlier_operator_kept_are_all_resumed() -> None:
    """Its ConfigMap: gzip of one JSON record per line under episodes.jsonl.gz; its resume: a list."""
    import base64
    import gzip

    records = _arena_records(500)
    lines = "".join(r.model_dump_json(by_alias=True) + "\n" for r in records)
    earlier = {"binaryData": {"episodes.jsonl.gz": base64.b64encode(gzip.compress(lines.encode())).decode()}}
    kept = build_results.episodes_from_configmap(earlier)
    assert [r.model_dump_json(by_alias=True) for r in kept] == [r.model_dump_json(by_alias=True) for r in records]
    body = build_job.build_submission(evaluation(), "s-2", 2, job_channel.ResumePayload(episodes=kept))
    sent = job_channel.decode_payload(body["runtime_env"]["env_vars"][job_channel.RESUME_ENV])
    assert job_channel.ResumePayload.model_validate(sent).episodes == records
    as_listed = {"episodes": [r.model_dump(by_alias=True, mode="json") for r in records]}
    assert job_channel.ResumePayload.model_validate(as_listed).episodes == records


def test_a_plan_too_big_to_keep_even_sharded_is_refused_naming_the_fields() -> None:
    assert build_results.size_problems(evaluation(episodes=800).spec) == []
    # The case: 20,000 episodes of 8 policies fit in the sharded ConfigMaps.
    assert build_results.size_problems(evaluation(episodes=20_000, policies=EIGHT).spec) == []
    big = evaluation(episodes=20_000, matchmaking={"mode": "round-robin"}, policies=EIGHT,
                     teams=[{"name": "red", "agents": "red_*"}, {"name": "blue", "agents": "blue_*"}])
    (problem,) = build_results.size_problems(big.spec)
    assert problem.startswith("spec.episodes: 1120000 planned episodes (20000 × 56 pairings)")
    assert "spec.checkpoint.storageURI" in problem and f"at most {results_shards.MAX_SHARDS} ConfigMaps" in problem
    assert build_results.size_problems(evaluation(episodes=20_000, checkpoint=STORE).spec) == []
    assert build_results.size_problems(big.model_copy(update={"spec": big.spec.model_copy(
        update={"checkpoint": evaluation(checkpoint=STORE).spec.checkpoint})}).spec) == []


def _layout(records: list[EpisodeRecord], budget: int | None = None) -> list[results_shards.Shard]:
    by_episode = {r.episode: r for r in records}
    budget_of = results_shards.budget if budget is None else (lambda i: budget)
    return results_shards.place([], sorted(by_episode), by_episode.__getitem__, budget_of)


@functools.cache
def _big_records(n: int) -> list[EpisodeRecord]:
    """Records of 8 policies with every social metric: about 120 bytes each packed."""
    return build_results._sample_records(evaluation(episodes=n, policies=EIGHT).spec, n)


def test_without_a_store_records_beyond_one_configmap_are_sharded_and_named() -> None:
    records = _big_records(5_000)
    layout = _layout(records)
    assert 1 < len(layout) <= results_shards.MAX_SHARDS
    cm = build_results.build_results_configmap(evaluation(), UID, records=records, progress=None, results=None,
                                               recoveries=[], final=True, layout=layout)
    doc = json.loads(cm["data"][build_results.RESULTS_KEY])
    assert doc["episodeRecords"] == {"count": 5_000, "in": "configMaps", "shards": len(layout)}
    assert build_results.shards_named(cm) == len(layout)
    size = sum(len(v) for v in cm["data"].values()) + len(layout[0].packed)  # binaryData counts decoded
    assert size < build_results.CONFIGMAP_LIMIT_BYTES
    shard_cms = [results_shards.build_shard_configmap("default", "duel", UID, i, s) for i, s in enumerate(layout)
                 if i > 0]
    found = results_shards.read_back([cm, *shard_cms], len(layout))
    assert sorted(found.records) == list(range(5_000)) and found.missing == []
    # Too many shards: the records cannot be kept without a store.
    tiny = _layout(records[:2_000], budget=2_048)
    assert len(tiny) > results_shards.MAX_SHARDS
    with pytest.raises(build_results.TooManyEpisodes, match="spec.checkpoint.storageURI"):
        build_results.build_results_configmap(evaluation(), UID, records=records[:2_000], progress=None,
                                              results=None, recoveries=[], final=False, layout=tiny)


def test_with_a_store_the_records_that_do_not_fit_stay_in_it() -> None:
    records = _records(40_000)
    cm = build_results.build_results_configmap(evaluation(checkpoint=STORE), UID, records=records, progress=None,
                                               results=None, recoveries=[], final=True)
    doc = json.loads(cm["data"][build_results.RESULTS_KEY])
    assert "binaryData" not in cm and doc["episodeRecords"] == {"count": 40_000, "in": "spec.checkpoint.storageURI"}
    assert sum(len(v) for v in cm["data"].values()) < build_results.CONFIGMAP_LIMIT_BYTES
    small = build_results.build_results_configmap(evaluation(checkpoint=STORE), UID, records=records[:10],
                                                  progress=None, results=None, recoveries=[], final=True)
    assert len(build_results.episodes_from_configmap(small)) == 10


def test_a_resume_too_big_for_a_variable_travels_as_a_package_the_job_reads(tmp_path: Path) -> None:
    resume = job_channel.ResumePayload(episodes=_records(10_000))
    assert build_job.needs_package(evaluation(), resume) and not build_job.needs_package(evaluation(checkpoint=STORE),
                                                                                          resume)
    package = build_job.build_resume_package(resume)
    assert build_job.build_resume_package(resume) == package  # same episodes, same package: uploaded once
    assert package.uri.startswith("gcs://_ray_pkg_") and package.uri.endswith(".zip")
    body = build_job.build_submission(evaluation(), "s-2", 2, resume, package)
    env = body["runtime_env"]["env_vars"]
    assert job_channel.RESUME_ENV not in env and env[job_channel.RESUME_FILE_ENV] == package.path
    assert body["runtime_env"]["py_modules"] == [package.uri]
    # Where Ray unpacks a py_modules package (its top directory kept) and puts it on the driver's path.
    (tmp_path / "pkg.zip").write_bytes(package.data)
    zipfile.ZipFile(tmp_path / "pkg.zip").extractall(tmp_path / "unpacked")
    back = read_resume(env, search=["/nowhere", str(tmp_path / "unpacked")])
    assert back is not None and back.episodes == resume.episodes
    # With a store the job resumes from it: the variable carries no episodes.
    body = build_job.build_submission(evaluation(checkpoint=STORE), "s-2", 2, resume)
    sent = job_channel.decode_payload(body["runtime_env"]["env_vars"][job_channel.RESUME_ENV])
    assert job_channel.ResumePayload.model_validate(sent).episodes == []


def test_counted_episodes_that_no_longer_fit_fail_the_evaluation_once() -> None:
    spec = evaluation().spec
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1, start_time="2026-11-23T11:59:00Z")
    why = "120000 counted episodes need 17 ConfigMaps of records ...; set spec.checkpoint.storageURI"
    d = decide(Observation(now=NOW, uid=UID, generation=2, spec=spec, status=status, cluster=READY,
                           dashboard_reachable=True, job=JobView(sid, True, "RUNNING", record=record()), too_large=why))
    assert d.status.phase is Phase.FAILED and StopJob(sid) in d.actions and WriteResults(final=True) in d.actions
    failed = cond.get(d.status.conditions, cond.FAILED)
    assert failed.reason == "TooManyEpisodes" and "spec.checkpoint.storageURI" in failed.message
    tiny = _layout(_records(2_000), budget=2_048)
    cm = build_results.build_results_configmap(evaluation(), UID, records=_records(2_000), progress=None,
                                               results=None, recoveries=[], final=True, drop_records=True, layout=tiny)
    assert "binaryData" not in cm and build_results.is_final(cm)
