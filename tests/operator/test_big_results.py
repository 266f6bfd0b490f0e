"""Big evaluations on the real plane: records beyond one ConfigMap are sharded over owned
ConfigMaps, a suspend and resume in between counts every episode exactly once, and a resume too
big for an environment variable reaches a real job as a Ray package. The shards are made small
(`--results-shard-kib 4`) so that tiny episodes fill several: the arithmetic of the real sizes is
unit-tested (tests/controller/test_size_limits.py) and measured in docs/operator.md."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp
import pytest

from swarm_arena.api import job_channel
from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.controller import build_job, build_results, results_shards
from swarm_arena.controller.dashboard import Dashboard
from tests.controller.test_builders import UID
from tests.controlplane.plane import wait_for
from tests.operator.conftest import Evaluations, manifest

pytestmark = pytest.mark.controlplane

EPISODES = 2000
POLICIES = [{"name": f"p{i}", "factory": "random"} for i in range(8)]


def _doc(name: str, address: str, episodes: int = EPISODES) -> dict:
    # One environment actor (the local head has 2 CPUs); the policies step inside it.
    return manifest(name, episodes=episodes, agents=8, max_steps=1, policies=POLICIES, cluster={"address": address})


def test_records_beyond_one_configmap_are_sharded_and_every_episode_counts_once(
        control_plane, namespace, ray_head, operator_factory) -> None:
    op = operator_factory([namespace], extra=["--results-shard-kib", "4"])
    op.approve(ray_head.dashboard, [namespace], ray_head.token)
    op.start()
    evals = Evaluations(control_plane, namespace, op.tail)
    evals.apply(_doc("many", ray_head.dashboard))
    evals.wait("many", "a few shards' worth counted",
               lambda s: (s.get("progress") or {}).get("episodesCompleted", 0) >= 300, timeout=300)
    evals.patch("many", {"suspend": True})
    evals.wait("many", "suspended", lambda s: s.get("phase") == "Suspended" and "jobId" not in s, timeout=120)
    op.kill(signal.SIGKILL)  # the next operator knows only what the shards hold
    op.start()
    evals.patch("many", {"suspend": False})
    status = evals.wait_phase("many", "Succeeded", timeout=600)

    assert status["progress"]["episodesCompleted"] == EPISODES and status["attempts"] == 2
    assert all(row["episodes"] == EPISODES for row in status["results"]["leaderboard"])  # each counted once
    main = evals.configmap("many-results")
    kept = json.loads(main["data"][build_results.RESULTS_KEY])["episodeRecords"]
    assert kept["in"] == "configMaps" and kept["count"] == EPISODES and kept["shards"] >= 3
    shards = [evals.configmap(results_shards.shard_name("many", i)) for i in range(1, kept["shards"])]
    uid = json.loads(control_plane.kubectl("get", "swe", "many", "-n", namespace, "-o", "json").stdout)["metadata"]["uid"]
    assert all(cm["metadata"]["ownerReferences"][0]["uid"] == uid for cm in shards)
    episodes = [r.episode for cm in [main, *shards] for r in build_results.episodes_from_configmap(cm)]
    assert sorted(episodes) == list(range(EPISODES))  # every one, none twice
    # `swarm-arena results` reads them the same way.
    from swarm_arena.arena import results_view

    document = results_view.from_configmap(main, "many", shards)
    assert [r.episode for r in document.episodes] == list(range(EPISODES))


def test_a_resume_too_big_for_a_variable_reaches_the_job_as_a_package(ray_head) -> None:
    doc = _doc("pkg", ray_head.dashboard, episodes=6)
    doc["metadata"]["namespace"] = "default"
    evaluation = SwarmEvaluation.model_validate(doc)
    resumed = [EpisodeRecord(episode=i, pairing={"all": ",".join(p["name"] for p in POLICIES)},
                             returns={p["name"]: 0.0 for p in POLICIES}, agents={p["name"]: 1 for p in POLICIES},
                             steps=1, agent_steps=8) for i in range(4)]
    package = build_job.build_resume_package(job_channel.ResumePayload(episodes=resumed))
    sid = f"swe-{UID[:8]}-pkg"
    body = build_job.build_submission(evaluation, sid, 2, job_channel.ResumePayload(episodes=resumed), package)
    assert job_channel.RESUME_ENV not in body["runtime_env"]["env_vars"]

    async def submit() -> bool:
        async with aiohttp.ClientSession() as session:
            dashboard = Dashboard(session, ray_head.dashboard, ray_head.token, timeout_s=30)
            uploaded = await dashboard.upload_package(package.uri, package.data)
            again = await dashboard.upload_package(package.uri, package.data)
            await dashboard.submit(body)
            return uploaded and not again

    assert asyncio.run(submit())  # uploaded once, found the second time

    def finished() -> dict | None:
        job = ray_head.get(f"/api/jobs/{sid}")
        return job if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED") else None

    job = wait_for("the package job finished", finished, 180)
    assert job["status"] == "SUCCEEDED", ray_head.get(f"/api/jobs/{sid}/logs")["logs"][-3000:]

    async def last_line() -> str:
        async with aiohttp.ClientSession() as session:
            dashboard = Dashboard(session, ray_head.dashboard, ray_head.token, timeout_s=30)
            return await dashboard.tail_file(job["driver_node_id"], job_channel.status_file_name(sid), 1)

    last = job_channel.last_status(asyncio.run(last_line()))
    # The four resumed episodes were read from the package: counted, not played again.
    assert last is not None and last.progress.episodes_completed == 6 and last.episodes_this_attempt == 2
