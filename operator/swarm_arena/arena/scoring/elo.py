"""Sequential Elo, kept for people who ask for it: its result depends on the order of episodes.

Within an episode every pair of present policies plays one game and the K of the episode is
shared between a policy's opponents; updates are simultaneous (from the ratings before the
episode). The run is replayed in episode-index order, so the same plan gives the same ratings,
but the same games in another order (policies listed differently in a round robin) do not:
use `bradley-terry` for a leaderboard that is a property of the games alone.

The bootstrap replays every resample (episodes drawn within each pairing, then put back in
episode order) alongside the run itself: one loop over episodes, each step a few numpy
operations over all resamples at once. A step touches only the games of the episodes it plays
(each episode's pairs, listed once: one for a head-to-head episode, 28 when 8 policies share
one), never a policies × policies matrix per resample, and resamples are built a block of
episodes at a time from their draw counts, so memory stays at resamples × block, not
resamples × episodes. docs/performance.md measures it.
"""

from __future__ import annotations

import math

import numpy as np

from swarm_arena.arena.scoring.bootstrap import episode_counts
from swarm_arena.arena.scoring.outcomes import Table

ELO_INITIAL = 1500.0
ELO_K = 32.0
"""Rating points at stake per episode; shared between a policy's opponents in that episode."""
ELO_SCALE = 400.0
_PRECOMPUTE_LIMIT = 4_000_000
"""Episodes x (most games in one episode) up to which each episode's games are listed up front
(~20 bytes each: 80 MB); beyond, they are listed per step for the episodes it plays."""
BLOCK_EPISODES = 4096
"""Episodes whose resampled order is laid out at once: resamples x block int32 cells."""
_LOG_TEN = math.log(10.0) / ELO_SCALE


class _EloGames:
    """Per episode, its games as a fixed-width list: (first, second, weight, first's score).

    Compact (`dense` False): each episode's own pairs, padded to the most any episode has. Dense
    (where an episode holds at least half of all pairs, e.g. every policy in every episode): every
    pair of policies, weight 0 where it did not play, so that the pairs are the same for every
    resample and a step's rating changes are one matrix product. Padding (and row `n`, the no-game
    episode that pads a resample's sequence) has weight 0."""

    def __init__(self, table: Table, precompute_limit: int = _PRECOMPUTE_LIMIT) -> None:
        self._present, self._ranks = table.present, table.ranks
        n, m = table.present.shape
        count = table.present.sum(axis=1)
        self._k_share = np.where(count > 1, ELO_K / np.maximum(count - 1, 1), 0.0)
        self.first, self.second = np.triu_indices(m, k=1)
        most = int((count * (count - 1) // 2).max()) if n else 0
        self.dense = 2 * most >= len(self.first)
        self.width = len(self.first) if self.dense else max(1, most)
        self.incidence = np.zeros((len(self.first), m))  # pair -> +1 for its first, -1 for its second
        self.incidence[np.arange(len(self.first)), self.first] = 1.0
        self.incidence[np.arange(len(self.first)), self.second] = -1.0
        self._cached = None
        if n * self.width <= precompute_limit:
            parts = [self._compute(np.arange(start, min(start + 8192, n + 1))) for start in range(0, n + 1, 8192)]
            self._cached = tuple(np.concatenate(columns) for columns in zip(*parts))

    def _compute(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        real = rows < len(self._present)
        r = np.where(real, rows, 0)
        present = self._present[r] & real[:, None]
        both = present[:, self.first] & present[:, self.second]  # (rows, all pairs)
        if self.dense:
            order = np.broadcast_to(np.arange(self.width), both.shape)
        else:
            order = np.argsort(~both, axis=1, kind="stable")[:, : self.width]  # the pairs that played first
        i, j = self.first[order], self.second[order]
        played = np.take_along_axis(both, order, axis=1)
        rank_i = np.take_along_axis(self._ranks[r], i, axis=1)
        rank_j = np.take_along_axis(self._ranks[r], j, axis=1)
        score = (rank_i > rank_j) + 0.5 * (rank_i == rank_j)
        weight = played * self._k_share[r][:, None]
        return (weight, weight * score) if self.dense else (i, j, weight, score)

    def __call__(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        if self._cached is None:
            return self._compute(rows)
        return tuple(column[rows] for column in self._cached)


def _sequences(counts: np.ndarray, first_episode: int, pad: int) -> np.ndarray:
    """(R, E) draw counts of episodes first_episode.. -> (R, L) each resample's episodes in order,
    padded at the end with `pad` to the longest."""
    replicas, width = counts.shape
    lengths = counts.sum(axis=1)
    out = np.full((replicas, int(lengths.max()) if replicas else 0), pad, dtype=np.int32)
    episodes = np.repeat(np.tile(np.arange(first_episode, first_episode + width, dtype=np.int32), replicas),
                         counts.reshape(-1))
    row = np.repeat(np.arange(replicas), lengths)
    column = np.arange(len(episodes)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[row, column] = episodes
    return out


def replay(table: Table, counts: list[np.ndarray], precompute_limit: int = _PRECOMPUTE_LIMIT,
           block: int = BLOCK_EPISODES) -> np.ndarray:
    """Run Elo for each resample at once: `counts`, chunks of (b, N) draws of each episode (their
    rows the resamples), replayed in episode order. (R, m) ratings."""
    n, m = table.present.shape
    replicas = sum(len(c) for c in counts)
    games = _EloGames(table, precompute_limit)
    flat = np.full(replicas * m, ELO_INITIAL)
    if m < 2:
        return flat.reshape(replicas, m)  # nobody to play
    base = (np.arange(replicas) * m)[:, None]
    ratings = flat.reshape(replicas, m)
    strength = np.exp(ratings * _LOG_TEN)
    for start in range(0, n, block):
        part = np.concatenate([c[:, start : start + block] for c in counts])
        sequence = _sequences(part, start, pad=n)
        for t in range(sequence.shape[1]):
            if games.dense:  # the same pairs for every resample: gathers by column, one matrix product
                weight, scored = games(sequence[:, t])
                strength_i = strength[:, games.first]
                expected = strength_i / (strength_i + strength[:, games.second])
                ratings += (scored - weight * expected) @ games.incidence
                np.exp(ratings * _LOG_TEN, out=strength)
                continue
            i, j, weight, score = games(sequence[:, t])
            at_i, at_j = base + i, base + j
            # expected score of i against j: 1 / (1 + 10^((r_j - r_i) / 400))
            expected = 1.0 / (1.0 + np.exp((flat[at_j] - flat[at_i]) * _LOG_TEN))
            change = weight * (score - expected)
            if games.width == 1:  # head to head: no policy twice in a row's games
                flat[at_i[:, 0]] += change[:, 0]
                flat[at_j[:, 0]] -= change[:, 0]
            else:
                flat += np.bincount(at_i.reshape(-1), change.reshape(-1), replicas * m)
                flat -= np.bincount(at_j.reshape(-1), change.reshape(-1), replicas * m)
    return ratings


def elo(
    table: Table, resamples: int, rng: np.random.Generator, precompute_limit: int = _PRECOMPUTE_LIMIT
) -> tuple[np.ndarray, np.ndarray]:
    """The run's ratings (m,) and the bootstrap's (B, m)."""
    n = len(table.strata)
    run = np.ones((1, n), dtype=np.int32)  # row 0: the run itself, replayed with the resamples in one pass
    # Kept as uint8 where they fit (an episode drawn 256 times into one resample: never in practice):
    # 1,000 resamples of 100,000 episodes are then 100 MB.
    drawn = [c.astype(np.uint8) if c.max(initial=0) <= 255 else c for c in episode_counts(table.strata, resamples, rng)]
    drawn = drawn or [np.zeros((resamples, 0), np.uint8)]
    replayed = replay(table, [run, *drawn], precompute_limit)
    return replayed[0], replayed[1:]
