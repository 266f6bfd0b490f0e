"""The operator's Prometheus metrics (served on `--metrics-port`, path /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from swarm_arena.api.status import Phase

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "swarm_arena_operator_reconciles_total", "Reconcile passes by outcome (ok, error).", ["outcome"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "swarm_arena_operator_reconcile_seconds", "Wall time of one reconcile pass.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)
EVALUATIONS = Gauge(
    "swarm_arena_operator_evaluations", "Evaluations this operator serves, by phase.", ["phase"], registry=REGISTRY,
)
SUBMISSIONS = Counter(
    "swarm_arena_operator_job_submissions_total", "Arena job submissions by outcome (ok, error).", ["outcome"],
    registry=REGISTRY,
)
SUBMISSION_SECONDS = Histogram(
    "swarm_arena_operator_job_submission_seconds", "Latency of one job submission to a Ray dashboard.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)
RECOVERIES = Counter(
    "swarm_arena_operator_recoveries_total", "Recoveries recorded in evaluations' status.", registry=REGISTRY,
)
REPAIRS = Counter(
    "swarm_arena_operator_repairs_total",
    "Repair requests for lost workers, by route (head: the job's endpoint; job: a repair job) and outcome.",
    ["route", "outcome"], registry=REGISTRY,
)
PHASE_CHANGES = Counter(
    "swarm_arena_operator_phase_transitions_total", "Phase changes, by the phase entered.", ["phase"],
    registry=REGISTRY,
)

_phases: dict[str, str] = {}


def set_phase(uid: str, phase: Phase | None) -> None:
    """Track one evaluation's phase for the by-phase gauge (None: it is gone); O(1) a call."""
    before = _phases.pop(uid, None)
    if phase is not None:
        _phases[uid] = phase.value
    after = None if phase is None else phase.value
    if before == after:
        return
    if before is not None:
        EVALUATIONS.labels(phase=before).dec()
    if after is not None:
        EVALUATIONS.labels(phase=after).inc()


for _phase in Phase:  # every phase is exported from the start, at 0
    EVALUATIONS.labels(phase=_phase.value).set(0)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics from a daemon thread (never on kopf's event loop)."""
    start_http_server(port, addr=address, registry=REGISTRY)
