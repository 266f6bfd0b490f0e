"""Pydantic models of the SwarmEvaluation API: the single source of truth for the CRD."""

from swarm_arena.api.resource import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    SwarmEvaluation,
    read_manifest,
)
from swarm_arena.api.spec import (
    ClusterSpec,
    EnvironmentSpec,
    MatchmakingMode,
    PlacementStrategy,
    PolicySpec,
    RatingMethod,
    SwarmEvaluationSpec,
    TeamSpec,
    WorkerGroupSpec,
)
from swarm_arena.api.status import (
    LeaderboardEntry,
    Phase,
    Progress,
    Recovery,
    Results,
    StepLatency,
    SwarmEvaluationStatus,
)

__all__ = [
    "API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION",
    "ClusterSpec", "EnvironmentSpec", "LeaderboardEntry", "MatchmakingMode", "Phase",
    "PlacementStrategy", "PolicySpec", "Progress", "RatingMethod", "Recovery", "Results",
    "StepLatency", "SwarmEvaluation", "SwarmEvaluationSpec", "SwarmEvaluationStatus",
    "TeamSpec", "WorkerGroupSpec", "read_manifest",
]
