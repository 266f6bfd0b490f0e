"""The `SwarmEvaluation` status: written by the operator (and by `swarm-arena run` as results JSON).

The keys of `results` and `progress` are shared by every place that reports an evaluation, so a
result file from a laptop and a `kubectl get -o yaml` from a cluster read the same.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import Field, computed_field, model_validator

from swarm_arena.api.base import ApiModel
from swarm_arena.api.spec import RatingMethod


class Phase(str, Enum):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    RUNNING = "Running"
    RECOVERING = "Recovering"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Condition(ApiModel):
    """A Kubernetes-style condition."""

    type: str = Field(
        description="`Ready`, `ClusterReady`, `JobRunning`, `Degraded`, `Complete`, `Failed`, `Stalled`, or "
        "`StoppedEarly` (only when spec.stopping ended the run before its plan)."
    )
    status: str = Field(description="`True`, `False` or `Unknown`.")
    reason: str | None = Field(default=None, description="CamelCase reason.")
    message: str | None = Field(default=None, description="Human-readable detail.")
    last_transition_time: str | None = Field(default=None, description="RFC 3339 time of the last change.")
    observed_generation: int | None = Field(default=None, description="Generation the condition was computed for.")


class Progress(ApiModel):
    """How far the evaluation is."""

    episodes_completed: int = Field(default=0, ge=0, description="Episodes finished and counted.")
    episodes_total: int = Field(default=0, ge=0, description="Episodes the evaluation will play.")
    agent_steps: int = Field(default=0, ge=0, description="Agent-steps taken so far (agents x steps).")

    @computed_field(description="`episodesCompleted/episodesTotal` (e.g. `7/20`), the Progress column of `kubectl get`.")
    def summary(self) -> str:
        return f"{self.episodes_completed}/{self.episodes_total}"

    @model_validator(mode="before")
    @classmethod
    def _drop_summary(cls, data: Any) -> Any:
        # `summary` is derived: accept it back from the API server, never trust it.
        if isinstance(data, dict) and "summary" in data:
            data = {k: v for k, v in data.items() if k != "summary"}
        return data


class IntervalKind(str, Enum):
    BOOTSTRAP = "bootstrap"
    POSTERIOR = "posterior"
    PRIOR = "prior"


class LeaderboardEntry(ApiModel):
    """One policy's standing."""

    policy: str = Field(description="Policy name.")
    rating: float = Field(description="Rating under rating.method (higher is better).")
    ci_low: float = Field(description="Lower bound of the rating's interval (at rating.confidenceLevel).")
    ci_high: float = Field(description="Upper bound of the rating's interval (at rating.confidenceLevel).")
    interval_kind: IntervalKind | None = Field(
        default=None,
        description=(
            "What [ciLow, ciHigh] is: `bootstrap` (a confidence interval from resampling episodes within "
            "each pairing), `posterior` (openskill's mu +/- z sigma band: a filter's posterior, not a "
            "confidence interval) or `prior` (too little data: the method's prior range)."
        ),
    )
    mean_return: float = Field(description="Mean per-agent episode return.")
    episodes: int = Field(ge=0, description="Episodes the policy took part in.")
    separated_from: list[str] = Field(
        default_factory=list,
        description=(
            "Policies this one is separated from at rating.confidenceLevel (bootstrap test of the rating "
            "difference, Holm-adjusted over all pairs); the full matrix is in the results ConfigMap."
        ),
    )


class Estimate(ApiModel):
    """A statistic with its bootstrap interval."""

    value: float = Field(description="The statistic on the observed episodes.")
    low: float = Field(description="Lower bound at rating.confidenceLevel.")
    high: float = Field(description="Upper bound at rating.confidenceLevel.")


class ReturnAggregates(ApiModel):
    """rliable's aggregates of one policy's per-episode returns, with stratified bootstrap intervals."""

    policy: str = Field(description="Policy name.")
    episodes: int = Field(ge=0, description="Episodes behind the aggregates.")
    mean: Estimate = Field(description="Mean per-episode return.")
    median: Estimate = Field(description="Median per-episode return.")
    iqm: Estimate = Field(description="Interquartile mean: the mean of the middle 50% of returns.")
    optimality_gap: Estimate | None = Field(
        default=None, description="Mean of max(rating.optimalityTarget - return, 0); only with a target."
    )


class PopulationReturns(ApiModel):
    """One focal policy among the background population (Melting Pot's focal/background protocol)."""

    policy: str = Field(description="Focal policy name.")
    episodes: int = Field(ge=0, description="Episodes it played beside at least one background policy.")
    focal_per_capita_return: Estimate | None = Field(
        default=None, description="Mean per-agent return of its own agents in those episodes; none without any."
    )
    background_per_capita_return: Estimate | None = Field(
        default=None,
        description="Mean per-agent return of the background agents in the same episodes; none without any.",
    )


class SocialOutcome(ApiModel):
    """Perolat et al. (2017)'s social outcome metrics of one policy's or team's agents, averaged over episodes."""

    kind: str = Field(description="`policy` or `team`.")
    name: str = Field(description="The policy's or team's name.")
    episodes: int = Field(ge=0, description="Episodes the group took part in.")
    efficiency: Estimate | None = Field(default=None, description="Sum of the group's returns per step.")
    equality: Estimate | None = Field(
        default=None, description="1 - Gini of the group's per-agent returns (1: all equal; rule for negatives in the docs)."
    )
    sustainability: Estimate | None = Field(
        default=None, description="Mean step at which its agents got positive rewards; none when they never did."
    )
    peace: Estimate | None = Field(
        default=None, description="Mean share of the steps its agents stayed in env.agents (1: nobody left early)."
    )


class PairwiseMatrix(ApiModel):
    """P(row beats column) for every pair of policies, with intervals (results ConfigMap only)."""

    kind: str = Field(
        description=(
            "`win-rate` (head-to-head: the share of shared episodes the row policy won, draws half) or "
            "`probability-of-improvement` (returns: P(row's return > column's) on shared episodes, ties half)."
        )
    )
    confidence_level: float = Field(description="Coverage of the intervals.")
    policies: list[str] = Field(description="Row and column order.")
    probability: list[list[float | None]] = Field(
        description="[row][column]; null on the diagonal and for pairs that never shared an episode."
    )
    low: list[list[float | None]] = Field(description="Lower bounds, same layout.")
    high: list[list[float | None]] = Field(description="Upper bounds, same layout.")
    episodes: list[list[int]] = Field(description="Episodes each pair shared, same layout.")
    separated: list[list[int]] = Field(
        default_factory=list,
        description=(
            "1 where the row and column policies are separated at the confidence level (the leaderboard "
            "entries' separatedFrom, as a matrix), else 0; same layout."
        ),
    )


class StepLatency(ApiModel):
    """Wall time of one environment step across all agents (policy shards included), from the end of
    the step before it: a step after a checkpoint boundary also counts the snapshot, the durable
    write and the next chunk's dispatch. The first step of an episode (or after a restore) counts
    from its own start."""

    p50: float = Field(description="Median, milliseconds.")
    p99: float = Field(description="99th percentile, milliseconds.")
    p99_9: float | None = Field(
        default=None, alias="p999", description="99.9th percentile, milliseconds (absent in older reports)."
    )
    max: float | None = Field(default=None, description="Slowest step, milliseconds (absent in older reports).")


class Recovery(ApiModel):
    """One recovery from lost actors."""

    time: str = Field(description="RFC 3339 time the recovery finished.")
    reason: str = Field(description="What was lost, e.g. `NodeLost` or `ActorDied`.")
    actors_restarted: list[str] = Field(default_factory=list, description="Named actors restarted.")
    nodes_lost: list[str] = Field(
        default_factory=list, description="Ray node ids the restarted actors were lost with."
    )
    episode: int | None = Field(default=None, ge=0, description="The episode that was in flight.")
    resumed_from_step: int | None = Field(
        default=None, ge=0, description="The checkpointed step that episode resumed from (0: its start)."
    )
    seconds: float = Field(ge=0, description="From detection to resumed stepping.")


class StoppedEarly(ApiModel):
    """Why `spec.stopping` ended the evaluation before its plan (absent when the whole plan ran)."""

    reason: str = Field(
        description="`LeaderboardSeparated`, `IntervalsNarrow` or `MaxEpisodes` (the Condition `StoppedEarly`'s reason)."
    )
    message: str = Field(description="What decided, on how many episodes, and how many were saved.")
    decided_at: int = Field(
        ge=0, description="Episodes (the first of the plan in round order) the decision was made on."
    )
    episodes_planned: int = Field(ge=0, description="Episodes the plan holds.")
    episodes_saved: int = Field(
        ge=0, description="Planned episodes never played (episodes already counted are kept, never discarded)."
    )


STATUS_RECORDING_RANGES = 100


def episode_ranges(indices: list[int]) -> str:
    """`[0, 1, 2, 3, 7, 9, 10]` -> `0-3,7,9-10`: every index, in little room."""
    parts: list[str] = []
    ordered = sorted(set(indices))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_episode_ranges(text: str) -> list[int]:
    """`0-3,7` -> `[0, 1, 2, 3, 7]` (the inverse of `episode_ranges`)."""
    out: list[int] = []
    for part in (p for p in text.split(",") if p and p != "..."):
        low, _, high = part.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    return out


class Recordings(ApiModel):
    """Where the recorded episodes are (docs/recording.md): `swarm-arena replay <uri>`."""

    uri: str = Field(description="The recording's folder: `manifest.json` and the `steps/`, `episodes/` Parquet tables.")
    episodes: str = Field(
        default="",
        description=f"Indices of the recorded episodes as ranges (`0-4,100,200`); status keeps the first "
        f"{STATUS_RECORDING_RANGES} ranges, the results ConfigMap all of them.",
    )
    count: int = Field(default=0, ge=0, description="How many episodes are recorded.")

    @classmethod
    def of(cls, uri: str, indices: list[int]) -> Recordings:
        return cls(uri=uri, episodes=episode_ranges(indices), count=len(set(indices)))

    @property
    def indices(self) -> list[int]:
        return parse_episode_ranges(self.episodes)


class Results(ApiModel):
    """What the evaluation found."""

    leaderboard: list[LeaderboardEntry] = Field(default_factory=list, description="Policies, best first.")
    rating_method: RatingMethod | None = Field(
        default=None, description="The rating method the leaderboard used (rating.method, or its resolved default)."
    )
    pairwise: PairwiseMatrix | None = Field(
        default=None, description="Who beats whom, with intervals; in the results ConfigMap only, never in status."
    )
    return_aggregates: list[ReturnAggregates] | None = Field(
        default=None,
        description="Mean, median, IQM and optimality gap per policy; in the results ConfigMap only, never in status.",
    )
    populations: list[PopulationReturns] | None = Field(
        default=None,
        description=(
            "Per focal policy, its focal and the background per-capita return where it met background policies "
            "(only when a policy has role background); status keeps those of the policies on its leaderboard "
            "rows, the results ConfigMap all of them."
        ),
    )
    social_outcomes: list[SocialOutcome] | None = Field(
        default=None,
        description=(
            "Efficiency, equality, sustainability and peace per policy and per team, with bootstrap intervals; "
            "status keeps those of the policies on its leaderboard rows and of the first 10 teams, the results "
            "ConfigMap all of them."
        ),
    )
    stopped_early: StoppedEarly | None = Field(
        default=None, description="Set when spec.stopping ended the run before its plan: why, and the episodes saved."
    )
    step_latency_ms: StepLatency | None = Field(default=None, description="Step latency percentiles.")
    agent_steps_per_second: float | None = Field(default=None, description="Throughput over the run.")
    results_config_map: str | None = Field(
        default=None, description="ConfigMap with the full results, owned by the evaluation."
    )
    recordings: Recordings | None = Field(
        default=None, description="The recorded episodes (spec.recording) and where they are."
    )


    def for_configmap(self) -> Results:
        """A copy for the results ConfigMap: separatedFrom lives there as `pairwise.separated`.

        64 policies with long names, all separated, would spend 250 KiB on the names alone.
        """
        if self.pairwise is None:
            return self
        board = [e.model_copy(update={"separated_from": []}) for e in self.leaderboard]
        return self.model_copy(update={"leaderboard": board})

    def from_configmap(self) -> Results:
        """The inverse of `for_configmap`: each row's separatedFrom again, from `pairwise.separated`
        (both are sorted policy names), so results read back from the ConfigMap equal the job's."""
        pw = self.pairwise
        if pw is None or not pw.separated:
            return self
        lists = {p: sorted(q for q, s in zip(pw.policies, row) if s) for p, row in zip(pw.policies, pw.separated)}
        board = [e.model_copy(update={"separated_from": lists.get(e.policy, e.separated_from)})
                 for e in self.leaderboard]
        return self.model_copy(update={"leaderboard": board})

    def for_status(self) -> Results:
        """A copy without what only the results ConfigMap holds (status must stay small)."""
        update: dict[str, Any] = {"pairwise": None, "return_aggregates": None}
        if self.recordings is not None:
            ranges = self.recordings.episodes.split(",")
            if len(ranges) > STATUS_RECORDING_RANGES:
                kept = ",".join(ranges[:STATUS_RECORDING_RANGES])
                update["recordings"] = self.recordings.model_copy(update={"episodes": f"{kept},..."})
        return self.model_copy(update=update, deep=True)


class SwarmEvaluationStatus(ApiModel):
    """Observed state, written by the operator."""

    phase: Phase | None = Field(default=None, description="Coarse state of the evaluation.")
    conditions: list[Condition] = Field(default_factory=list, description="Detailed state.")
    observed_generation: int | None = Field(default=None, description="Last spec generation acted on.")
    ray_cluster_name: str | None = Field(default=None, description="The RayCluster running the evaluation.")
    job_id: str | None = Field(
        default=None,
        description="Ray job submission id of the current attempt; recorded before the job is submitted.",
    )
    job_accepted: bool | None = Field(
        default=None,
        description=(
            "Whether the Ray dashboard has shown the job jobId (false from when its id is recorded until then). "
            "A job the dashboard does not know is sent again under the same id while false (its submission "
            "failed or the operator stopped before it), and counted as lost with the Ray head once true."
        ),
    )
    attempts: int | None = Field(
        default=None, ge=0, description="Job submissions so far (every attempt, head-loss re-submissions included)."
    )
    failures: int | None = Field(
        default=None, ge=0, description="Attempts that failed and count against spec.backoffLimit."
    )
    head_restarts: int | None = Field(
        default=None, ge=0, description="Re-submissions after the Ray head was lost (not counted against backoffLimit)."
    )
    dashboard_url: str | None = Field(default=None, alias="dashboardURL", description="Ray dashboard URL.")
    start_time: str | None = Field(
        default=None,
        description="When the run started (RFC 3339); an evaluation created suspended gets it when it first runs.",
    )
    suspended_seconds: int | None = Field(
        default=None, ge=0, description="Seconds spent suspended after the start, not counted by activeDeadlineSeconds."
    )
    suspended_since: str | None = Field(
        default=None, description="When the current suspension began (RFC 3339); unset while not suspended."
    )
    completion_time: str | None = Field(default=None, description="When the run finished (RFC 3339).")
    progress: Progress | None = Field(default=None, description="Episodes and agent-steps.")
    recoveries: int | None = Field(default=None, ge=0, description="How many recoveries happened.")
    last_recovery: Recovery | None = Field(default=None, description="The latest recovery.")
    results: Results | None = Field(default=None, description="Leaderboard and performance.")
