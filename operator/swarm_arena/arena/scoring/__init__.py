"""Scoring a run: ratings, intervals, who beats whom, and return aggregates (pure numpy/scipy).

- `outcomes`: episodes as arrays (sorted, stratified by pairing);
- `bootstrap`: the stratified bootstrap and what is read off it (intervals, Holm's test);
- `pairs`: per-pairing wins/draws/losses and their bootstrap;
- `bradley_terry`, `elo`, `openskill_band`, `returns`: the methods;
- `board`: one pure function from outcomes to leaderboard, pairwise matrix and aggregates.
"""

from swarm_arena.arena.scoring.board import RatingOptions, Scoreboard, leaderboard, score, score_evaluation
from swarm_arena.arena.scoring.outcomes import EpisodeOutcome

__all__ = ["EpisodeOutcome", "RatingOptions", "Scoreboard", "leaderboard", "score", "score_evaluation"]
