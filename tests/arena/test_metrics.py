"""The arena's Prometheus metrics, scraped from the real HTTP endpoint on loopback."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarm_arena.arena.metrics import ArenaMetrics

EVALUATION = "default/foraging-demo"


@pytest.fixture
def metrics() -> Iterator[ArenaMetrics]:
    metrics = ArenaMetrics(EVALUATION)
    yield metrics
    metrics.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def test_scraped_endpoint_reports_what_the_runtime_observed(metrics: ArenaMetrics) -> None:
    metrics.observe_steps([0.0004, 0.003, 0.003, 0.2], agent_steps=4 * 500)
    metrics.observe_steps([2.0], agent_steps=500)
    metrics.episode_completed({"greedy": 3.0, "random": 1.0})
    metrics.episode_completed({"greedy": 5.0, "random": 0.0})
    metrics.set_actors_alive(7)
    metrics.actor_restarted("default/foraging-demo/shard-greedy-0")
    metrics.actor_restarted("default/foraging-demo/shard-greedy-0", n=2)
    metrics.recovery()

    port = metrics.serve(0)
    assert port > 0 and metrics.port == port
    got = samples(scrape(port))

    ev = (("evaluation", EVALUATION),)
    assert got[("swarm_arena_step_latency_seconds_count", ev)] == 5
    assert got[("swarm_arena_step_latency_seconds_sum", ev)] == pytest.approx(2.2064)
    assert got[("swarm_arena_step_latency_seconds_bucket", ev + (("le", "0.0005"),))] == 1
    assert got[("swarm_arena_step_latency_seconds_bucket", ev + (("le", "0.005"),))] == 3
    assert got[("swarm_arena_step_latency_seconds_bucket", ev + (("le", "1.0"),))] == 4
    assert got[("swarm_arena_step_latency_seconds_bucket", ev + (("le", "+Inf"),))] == 5
    assert got[("swarm_arena_agent_steps_total", ev)] == 2500
    assert got[("swarm_arena_episodes_completed_total", ev)] == 2
    assert got[("swarm_arena_actors_alive", ev)] == 7
    actor = (("actor", "default/foraging-demo/shard-greedy-0"), ("evaluation", EVALUATION))
    assert got[("swarm_arena_actor_restarts_total", actor)] == 3
    assert got[("swarm_arena_recoveries_total", ev)] == 1
    greedy = (("evaluation", EVALUATION), ("policy", "greedy"))
    assert got[("swarm_arena_episode_return_sum", greedy)] == 8.0
    assert got[("swarm_arena_episode_return_count", greedy)] == 2


def test_render_matches_the_served_text_and_runs_do_not_share_series(metrics: ArenaMetrics) -> None:
    other = ArenaMetrics("team-b/other")
    metrics.observe_steps([0.001], agent_steps=10)
    other.observe_steps([0.001, 0.002], agent_steps=99)

    mine = samples(metrics.render().decode())
    assert mine[("swarm_arena_agent_steps_total", (("evaluation", EVALUATION),))] == 10
    assert not any(dict(labels).get("evaluation") == "team-b/other" for _, labels in mine)
    assert samples(other.render().decode())[("swarm_arena_agent_steps_total", (("evaluation", "team-b/other"),))] == 99

    port = metrics.serve(0)
    assert samples(scrape(port)) == mine


def test_serving_twice_is_refused_and_close_frees_the_port(metrics: ArenaMetrics) -> None:
    port = metrics.serve(0)
    with pytest.raises(RuntimeError, match="already served"):
        metrics.serve(0)
    metrics.close()
    assert metrics.port is None
    with pytest.raises(OSError):
        scrape(port)


def test_negative_agent_steps_are_refused(metrics: ArenaMetrics) -> None:
    with pytest.raises(ValueError, match="agent_steps must be >= 0"):
        metrics.observe_steps([0.001], agent_steps=-1)
