"""Big evaluations: what the operator cannot keep without a durable store is refused up front,
naming the fields; with `checkpoint.storageURI` the records stay in the store and nothing fails;
and a size that slips through ends the evaluation Failed, never an endless backoff (pure)."""

from __future__ import annotations

import functools
import random

import pytest

from swarm_arena.api import job_channel
from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.status import Phase, SwarmEvaluationStatus
from swarm_arena.controller import build_job, build_results, names
from swarm_arena.controller import conditions as cond
from swarm_arena.controller.decide import JobView, Observation, StopJob, WriteResults, decide
from tests.controller.test_builders import UID, evaluation
from tests.controller.test_decide import NOW, READY, record

STORE = {"intervalSteps": 10, "storageURI": "file:///tmp/arena-store"}


@functools.cache
def _all_records() -> list[EpisodeRecord]:
    rng = random.Random(1)
    return [EpisodeRecord(episode=i, pairing={"all": "greedy,big"}, returns={"greedy": rng.uniform(-1e3, 1e3),
                          "big": rng.uniform(-1e3, 1e3)}, agents={"greedy": 32, "big": 32}, steps=20, agent_steps=1280)
            for i in range(40_000)]


def _records(n: int) -> list[EpisodeRecord]:
    return _all_records()[:n]


def test_a_plan_too_big_to_keep_without_a_store_is_refused_naming_the_fields() -> None:
    assert build_results.size_problems(evaluation(episodes=800).spec) == []  # records carry social metrics too
    big = evaluation(episodes=20_000, matchmaking={"mode": "round-robin"},
                     policies=[{"name": f"p{i}", "factory": "random"} for i in range(8)],
                     teams=[{"name": "red", "agents": "red_*"}, {"name": "blue", "agents": "blue_*"}])
    (problem,) = build_results.size_problems(big.spec)
    assert problem.startswith("spec.episodes: 1120000 planned episodes (20000 × 56 pairings)")
    assert "spec.checkpoint.storageURI" in problem
    assert build_results.size_problems(evaluation(episodes=20_000, checkpoint=STORE).spec) == []


def test_with_a_store_the_records_that_do_not_fit_stay_in_it() -> None:
    records = _records(40_000)
    with pytest.raises(build_results.TooManyEpisodes, match="spec.checkpoint.storageURI"):
        build_results.build_results_configmap(evaluation(), UID, records=records, progress=None, results=None,
                                              recoveries=[], final=False)
    cm = build_results.build_results_configmap(evaluation(checkpoint=STORE), UID, records=records, progress=None,
                                               results=None, recoveries=[], final=True)
    import json

    doc = json.loads(cm["data"][build_results.RESULTS_KEY])
    assert "binaryData" not in cm and doc["episodeRecords"] == {"count": 40_000, "in": "spec.checkpoint.storageURI"}
    assert sum(len(v) for v in cm["data"].values()) < build_results.CONFIGMAP_LIMIT_BYTES
    small = build_results.build_results_configmap(evaluation(checkpoint=STORE), UID, records=records[:10],
                                                  progress=None, results=None, recoveries=[], final=True)
    assert len(build_results.episodes_from_configmap(small)) == 10


def test_a_resume_too_big_for_the_submission_resumes_from_the_store() -> None:
    resume = job_channel.ResumePayload(episodes=_records(5_000))
    with pytest.raises(build_job.ResumeTooLarge, match="spec.checkpoint.storageURI"):
        build_job.build_submission(evaluation(), "s-2", 2, resume)
    body = build_job.build_submission(evaluation(checkpoint=STORE), "s-2", 2, resume)
    sent = job_channel.decode_payload(body["runtime_env"]["env_vars"][job_channel.RESUME_ENV])
    assert sent["episodes"] == []


def test_counted_episodes_that_no_longer_fit_fail_the_evaluation_once() -> None:
    spec = evaluation().spec
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1, start_time="2026-11-23T11:59:00Z")
    why = "12000 counted episodes take 800 KiB ...; set spec.checkpoint.storageURI"
    d = decide(Observation(now=NOW, uid=UID, generation=2, spec=spec, status=status, cluster=READY,
                           dashboard_reachable=True, job=JobView(sid, True, "RUNNING", record=record()), too_large=why))
    assert d.status.phase is Phase.FAILED and StopJob(sid) in d.actions and WriteResults(final=True) in d.actions
    failed = cond.get(d.status.conditions, cond.FAILED)
    assert failed.reason == "TooManyEpisodes" and "spec.checkpoint.storageURI" in failed.message
    cm = build_results.build_results_configmap(evaluation(), UID, records=_records(40_000), progress=None,
                                               results=None, recoveries=[], final=True, drop_records=True)
    assert "binaryData" not in cm and build_results.is_final(cm)
