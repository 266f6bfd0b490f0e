"""What one run of an evaluation produces, wherever it ran.

`swarm-arena run --output` writes this as JSON; the operator folds `progress` and `results`
into `status` and the whole report into the results ConfigMap. Its keys are the status keys.
"""

from __future__ import annotations

from pydantic import Field

from swarm_arena.api.base import ApiModel
from swarm_arena.api.status import Progress, Recovery, Results


class EpisodeRecord(ApiModel):
    """One finished (and counted) episode."""

    episode: int = Field(ge=0, description="Episode index in the evaluation's plan (0-based).")
    pairing: dict[str, str] = Field(description="Team -> policy for this episode.")
    returns: dict[str, float] = Field(description="Policy -> mean per-agent return in this episode.")
    agents: dict[str, int] = Field(description="Policy -> how many agents it controlled.")
    steps: int = Field(ge=0, description="Environment steps the episode ran.")
    agent_steps: int = Field(ge=0, description="Agent-steps the episode ran.")


class RunReport(ApiModel):
    """The outcome of one evaluation run."""

    evaluation: str = Field(description="`<namespace>/<name>` of the evaluation.")
    seed: int = Field(description="The seed the run was made from.")
    progress: Progress = Field(description="Same keys as status.progress.")
    results: Results = Field(description="Same keys as status.results.")
    recoveries: list[Recovery] = Field(default_factory=list, description="Every recovery, in order.")
    episodes: list[EpisodeRecord] = Field(default_factory=list, description="Every counted episode, by index.")
    wall_seconds: float = Field(default=0.0, ge=0, description="Wall time of the run.")
