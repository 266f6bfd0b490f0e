"""The runtime's Prometheus endpoint, scraped over loopback while a real run is going."""

from __future__ import annotations

import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from swarm_arena.arena.runner import run_evaluation
from tests.arena.conftest import foraging_evaluation


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name] = samples.get(sample.name, 0.0) + sample.value
    return samples


def test_metrics_are_served_during_a_run(local_ray) -> None:
    port = _free_port()
    evaluation = foraging_evaluation("metrics", episodes=2)
    scrapes: list[dict[str, float]] = []

    def on_progress(progress) -> None:
        if progress.episodes_completed >= 1 and not scrapes:
            scrapes.append(_scrape(port))

    report = run_evaluation(evaluation, on_progress=on_progress, metrics_port=port)

    assert scrapes, "no progress callback after the first episode"
    seen = scrapes[0]
    assert seen["swarm_arena_episodes_completed_total"] >= 1
    assert seen["swarm_arena_agent_steps_total"] >= 30 * 200
    assert seen["swarm_arena_step_latency_seconds_count"] >= 30
    assert seen["swarm_arena_step_latency_seconds_sum"] > 0
    assert seen["swarm_arena_actors_alive"] >= 4  # 12 shards + env + coordinator, at least
    assert report.progress.episodes_completed == 2
