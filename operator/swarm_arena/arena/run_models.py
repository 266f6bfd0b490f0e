"""What the coordinator hands the driver: typed, so neither side reads string-keyed dicts.

`PollBatch` is what happened since the last poll; `RunOutcome` is what a finished run returns.
Both cross a Ray call (pickled), so they hold plain data and API models only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.spec import RatingMethod
from swarm_arena.api.status import (
    LeaderboardEntry,
    PairwiseMatrix,
    PopulationReturns,
    Progress,
    Recordings,
    Recovery,
    ReturnAggregates,
    SocialOutcome,
    StepLatency,
    StoppedEarly,
)


@dataclass(frozen=True)
class ProgressEvent:
    """A progress snapshot; `counted` is the episode whose counting it reflects, if one was."""

    progress: Progress
    counted: EpisodeRecord | None = None


@dataclass
class PollBatch:
    """What happened since the last poll, in order."""

    events: list[ProgressEvent] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    agent_steps: int = 0
    restarted: list[str] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)
    actors: int = 0


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: every counted episode (resumed ones included), by index, and how it went."""

    episodes: list[EpisodeRecord]
    episodes_total: int
    leaderboard: list[LeaderboardEntry]
    step_latency_ms: StepLatency | None
    agent_steps: int
    agent_steps_per_second: float | None
    recoveries: list[Recovery]
    rating_method: RatingMethod | None = None
    pairwise: PairwiseMatrix | None = None
    return_aggregates: list[ReturnAggregates] | None = None
    stopped_early: StoppedEarly | None = None
    populations: list[PopulationReturns] | None = None
    social_outcomes: list[SocialOutcome] | None = None
    recordings: Recordings | None = None
