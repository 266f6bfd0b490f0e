"""Prometheus metrics of one arena run, in a registry of their own.

A dedicated `CollectorRegistry` per run (not prometheus-client's global one) so two evaluations
in one process, or a test next to a run, never see each other's series, and importing this
module registers nothing. Every series carries `evaluation` (`<namespace>/<name>`), so one
Prometheus can scrape many runs. What each metric means, with PromQL: docs/metrics.md.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.exposition import start_http_server

# One environment step across all agents: ~0.5 ms for a small swarm on one node, up to ~1 s
# for tens of thousands of agents over many shards. Roughly 1-2.5-5 per decade, plus 7.5 ms
# and 75 ms where the 10 ms / 100 ms targets are judged.
STEP_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip


class ArenaMetrics:
    """The metrics one evaluation run exports; the runtime calls the methods, Prometheus scrapes."""

    def __init__(self, evaluation: str) -> None:
        self.evaluation = evaluation
        self.registry = CollectorRegistry(auto_describe=True)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        registry = self.registry
        self._step_latency = Histogram(
            "swarm_arena_step_latency_seconds",
            "Wall time of one environment step across all agents, policy shards included.",
            ["evaluation"],
            buckets=STEP_LATENCY_BUCKETS,
            registry=registry,
        ).labels(evaluation)
        self._agent_steps = Counter(
            "swarm_arena_agent_steps",
            "Agent-steps taken (agents stepped x environment steps).",
            ["evaluation"],
            registry=registry,
        ).labels(evaluation)
        self._episodes = Counter(
            "swarm_arena_episodes_completed",
            "Episodes finished and counted in the leaderboard.",
            ["evaluation"],
            registry=registry,
        ).labels(evaluation)
        self._episode_return = Summary(
            "swarm_arena_episode_return",
            "Mean per-agent return of a policy in one finished episode (_sum / _count = mean).",
            ["evaluation", "policy"],
            registry=registry,
        )
        self._actors_alive = Gauge(
            "swarm_arena_actors_alive",
            "Named arena actors (environments, policy shards, coordinator) currently alive.",
            ["evaluation"],
            registry=registry,
        ).labels(evaluation)
        self._actor_restarts = Counter(
            "swarm_arena_actor_restarts",
            "Restarts of a named arena actor.",
            ["evaluation", "actor"],
            registry=registry,
        )
        self._recoveries = Counter(
            "swarm_arena_recoveries",
            "Recoveries from lost actors (one recovery may restart several actors).",
            ["evaluation"],
            registry=registry,
        ).labels(evaluation)

    # ---- what the runtime reports ----------------------------------------------------------

    def observe_steps(self, latencies_seconds: Sequence[float], agent_steps: int) -> None:
        """Record a batch of environment step latencies and the agent-steps they covered."""
        if agent_steps < 0:
            raise ValueError(f"agent_steps must be >= 0, got {agent_steps}")
        for latency in latencies_seconds:
            self._step_latency.observe(latency)
        self._agent_steps.inc(agent_steps)

    def episode_completed(self, policy_returns: Mapping[str, float]) -> None:
        """Count one finished episode and each present policy's mean per-agent return in it."""
        self._episodes.inc()
        for policy, value in policy_returns.items():
            self._episode_return.labels(self.evaluation, policy).observe(value)

    def set_actors_alive(self, n: int) -> None:
        self._actors_alive.set(n)

    def actor_restarted(self, name: str, n: int = 1) -> None:
        self._actor_restarts.labels(self.evaluation, name).inc(n)

    def recovery(self) -> None:
        self._recoveries.inc()

    # ---- exposition --------------------------------------------------------------------------

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve `/metrics` from a daemon thread; `port=0` picks a free port. Returns the port bound."""
        if self._server is not None:
            raise RuntimeError(f"metrics of {self.evaluation} are already served on port {self.port}")
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        return self.port

    @property
    def port(self) -> int | None:
        return None if self._server is None else int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None
