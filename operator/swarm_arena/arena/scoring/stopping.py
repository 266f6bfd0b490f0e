"""`spec.stopping`: when the leaderboard is decided, stop scheduling episodes (pure).

The decision must not depend on when parallel episodes happen to finish, or a resumed attempt
(after a lost head, an operator restart) could decide differently from the first. So:

- episodes are taken in **round order**: the r-th episode of every pairing before the (r+1)-th of
  any (the plan itself is pairing-major; seeds belong to episode indices, so the order changes
  no number), and the scheduler dispatches them in that order;
- the rule **looks** at fixed points of that order, every `checkEvery` rounds, and a look is taken
  only once every episode before it is counted, on exactly those episodes;
- looks are taken in order, and the first that finds the leaderboard decided decides.

Episodes counted beyond the deciding look (parallel ones already in flight) are kept, never
discarded: they go into the final leaderboard, and `episodesSaved` counts what was not played.
The separation test at a look runs at 1 - (1 - confidenceLevel) / looks (Bonferroni over the
looks the plan allows): looking after every round must not make a wrong stop likelier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.spec import SwarmEvaluationSpec
from swarm_arena.api.status import IntervalKind, LeaderboardEntry, StoppedEarly
from swarm_arena.arena.matchmaking import count_matches


class StopReason(str, Enum):
    SEPARATED = "LeaderboardSeparated"
    NARROW = "IntervalsNarrow"
    MAX_EPISODES = "MaxEpisodes"


@dataclass(frozen=True)
class StopDecision:
    reason: StopReason
    look: int
    """Episodes (the first of the round order) the decision was made on."""
    detail: str


def round_order(pairings: int, per_pairing: int) -> list[int]:
    """Episode indices of a pairing-major plan, taken round by round."""
    return [p * per_pairing + r for r in range(per_pairing) for p in range(pairings)]


def all_adjacent_separated(board: list[LeaderboardEntry]) -> bool:
    """Every entry is separated from the next one (a board of fewer than two is not a ranking)."""
    return len(board) >= 2 and all(b.policy in a.separated_from for a, b in zip(board, board[1:]))


def widest_half_width(board: list[LeaderboardEntry]) -> float:
    """The largest (ciHigh - ciLow) / 2 of the board; infinite where an entry has only its prior range."""
    if not board or any(e.interval_kind is IntervalKind.PRIOR for e in board):
        return float("inf")
    return max((e.ci_high - e.ci_low) / 2.0 for e in board)


class StoppingRule:
    """The looks of one evaluation's plan, taken in order as the counted prefix grows."""

    def __init__(self, spec: SwarmEvaluationSpec) -> None:
        assert spec.stopping is not None
        self.spec = spec
        self.stopping = spec.stopping
        self.planned = count_matches(spec)
        pairings = self.planned // spec.episodes
        self.order = round_order(pairings, spec.episodes)
        self.end = min(self.planned, self.stopping.max_episodes or self.planned)
        step = pairings * self.stopping.check_every
        tests = self.stopping.separated or self.stopping.half_width is not None
        self.looks = list(range(step, self.end, step)) if tests else []
        alpha = 1.0 - spec.rating.confidence_level
        self.separation_level = 1.0 - alpha / max(1, len(self.looks))
        self.decision: StopDecision | None = None
        self._next_look = 0
        self._prefix = 0  # episodes at the head of the order all counted

    def scheduled(self) -> list[int]:
        """The episodes to dispatch, in dispatch order (maxEpisodes cuts the order)."""
        return self.order[: self.end]

    def advance(self, counted: Mapping[int, EpisodeRecord]) -> StopDecision | None:
        """Take every look whose episodes are all counted; the decision once one decides."""
        while self.decision is None and self._next_look < len(self.looks):
            look = self.looks[self._next_look]
            while self._prefix < look and self.order[self._prefix] in counted:
                self._prefix += 1
            if self._prefix < look:
                return None
            self.decision = self._look(look, [counted[i] for i in sorted(self.order[:look])])
            self._next_look += 1
        return self.decision

    def finish(self, counted: Mapping[int, EpisodeRecord]) -> StopDecision | None:
        """After the last dispatched episode: a look's decision, or maxEpisodes when it cut the plan."""
        if self.advance(counted) is None and self.end < self.planned:
            self.decision = StopDecision(
                StopReason.MAX_EPISODES, self.end, f"stopping.maxEpisodes ({self.stopping.max_episodes}) reached"
            )
        return self.decision

    def outcome(self, counted: int) -> StoppedEarly | None:
        """What results report: None unless the decision left episodes of the plan unplayed."""
        if self.decision is None or counted >= self.planned:
            return None
        saved = self.planned - counted
        return StoppedEarly(
            reason=self.decision.reason.value,
            message=f"{self.decision.detail}; decided on the first {self.decision.look} episodes, "
            f"{counted} counted of {self.planned} planned, {saved} saved",
            decided_at=self.decision.look,
            episodes_planned=self.planned,
            episodes_saved=saved,
        )

    def _look(self, look: int, records: list[EpisodeRecord]) -> StopDecision | None:
        from swarm_arena.arena.scoring.board import score_evaluation

        s = self.stopping
        if s.separated:
            tested = replace_level(self.spec, self.separation_level)
            board = score_evaluation(tested, records, detail=False).leaderboard
            if all_adjacent_separated(board):
                return StopDecision(
                    StopReason.SEPARATED, look,
                    f"every adjacent pair of the leaderboard is separated (test level {self.separation_level:.6g}: "
                    f"rating.confidenceLevel over {len(self.looks)} looks)",
                )  # fmt: skip
        if s.half_width is not None:
            board = score_evaluation(self.spec, records, detail=False).leaderboard
            widest = widest_half_width(board)
            if widest <= s.half_width:
                return StopDecision(
                    StopReason.NARROW, look,
                    f"every interval's half-width is at most stopping.halfWidth ({widest:.4g} <= {s.half_width:g})",
                )
        return None


def replace_level(spec: SwarmEvaluationSpec, level: float) -> SwarmEvaluationSpec:
    """`spec` with rating.confidenceLevel = `level` (not validated: above the field's bound is fine here)."""
    rating = spec.rating.model_copy(update={"confidence_level": level})
    return spec.model_copy(update={"rating": rating})


__all__ = ["StopDecision", "StopReason", "StoppingRule", "all_adjacent_separated", "replace_level", "round_order", "widest_half_width"]
