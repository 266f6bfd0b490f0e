"""What one run of an evaluation produces, wherever it ran.

`swarm-arena run --output` writes this as JSON; the operator folds `progress` and `results`
into `status` and the whole report into the results ConfigMap. Its keys are the status keys.
"""

from __future__ import annotations

from pydantic import Field

from swarm_arena.api.base import ApiModel
from swarm_arena.api.status import Progress, Recovery, Results


SOCIAL_SIGNIFICANT_DIGITS = 4
"""Per-episode social metrics are kept to 4 significant digits: every counted episode's record
carries them (the results ConfigMap, a resumed job's environment), and a run's averages need no
more. The arena rounds with it, the operator sizes the ConfigMap with it."""


def significant(value: float | None, digits: int = SOCIAL_SIGNIFICANT_DIGITS) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


class SocialMetrics(ApiModel):
    """Perolat et al. (2017)'s social outcome metrics of one group of agents in one episode."""

    efficiency: float = Field(description="Sum of the group's returns per step.")
    equality: float = Field(description="1 - Gini of the group's per-agent returns (1: all equal).")
    sustainability: float | None = Field(
        default=None, description="Mean step at which the group's agents got positive rewards; none if none did."
    )
    peace: float = Field(description="Mean share of the episode's steps the group's agents stayed in env.agents.")


class EpisodeSocial(ApiModel):
    """Social outcome metrics of one episode, per policy and per team."""

    policies: dict[str, SocialMetrics] = Field(default_factory=dict, description="Policy -> its agents' metrics.")
    teams: dict[str, SocialMetrics] = Field(default_factory=dict, description="Team -> its agents' metrics.")


class EpisodeRecord(ApiModel):
    """One finished (and counted) episode."""

    episode: int = Field(ge=0, description="Episode index in the evaluation's plan (0-based).")
    pairing: dict[str, str] = Field(description="Team -> policy for this episode.")
    returns: dict[str, float] = Field(description="Policy -> mean per-agent return in this episode.")
    agents: dict[str, int] = Field(description="Policy -> how many agents it controlled.")
    steps: int = Field(ge=0, description="Environment steps the episode ran.")
    agent_steps: int = Field(ge=0, description="Agent-steps the episode ran.")
    social: EpisodeSocial | None = Field(
        default=None, description="Social outcome metrics per policy and team (docs/ratings-and-matchmaking.md)."
    )


class RunReport(ApiModel):
    """The outcome of one evaluation run."""

    evaluation: str = Field(description="`<namespace>/<name>` of the evaluation.")
    seed: int = Field(description="The seed the run was made from.")
    progress: Progress = Field(description="Same keys as status.progress.")
    results: Results = Field(description="Same keys as status.results.")
    recoveries: list[Recovery] = Field(default_factory=list, description="Every recovery, in order.")
    episodes: list[EpisodeRecord] = Field(default_factory=list, description="Every counted episode, by index.")
    wall_seconds: float = Field(default=0.0, ge=0, description="Wall time of the run.")
