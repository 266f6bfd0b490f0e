"""The job's side of the reporting channel (see api/job_channel.py): the status and episodes files.

`JobReporter` listens to a run (`runner.RunListener`) and keeps two JSON-lines files in the Ray
session logs directory, where the dashboard's log API serves them to the operator:

- the episodes file gets a line per episode this attempt counted, the moment it is counted;
- the status file gets a self-contained `JobStatusRecord` at every counted episode, every
  recovery and the end, and otherwise when something changed, at most about once a second; a
  line written after an episode line always counts it (`episodesThisAttempt`).

Each line goes out as one `write` of the whole line on an `O_APPEND` descriptor (no buffering to
flush), so the last complete line is always whole. People read stdout instead (`ray job logs`):
one human line per status line.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from swarm_arena.api.job_channel import (
    FailureReason,
    JobState,
    JobStatusRecord,
    ResumePayload,
    episodes_file_name,
    status_file_name,
)
from swarm_arena.api.report import EpisodeRecord, RunReport
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.status import LeaderboardEntry, Progress, Recovery, Results
from swarm_arena.arena.runner import RunListener

# Progress alone is written at most this often; episodes, recoveries and the end at once.
MIN_INTERVAL_S = 1.0
# The interim leaderboard (a full re-rating) is recomputed at most this often.
LEADERBOARD_INTERVAL_S = 1.0
LEADERBOARD_COST_RATIO = 10.0
"""Re-rate no sooner than this many times the last re-rating took: scoring 100,000 episodes takes
seconds (docs/performance.md), and the interim leaderboard must not eat the run."""


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLinesFile:
    """An append-only file of whole lines: one `os.write` per line, nothing buffered."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self.lines = 0

    def append(self, line: str) -> None:
        data = (line + "\n").encode()
        written = os.write(self._fd, data)
        while written < len(data):  # only on a full disk or a signal; the reader drops a partial tail
            written += os.write(self._fd, data[written:])
        self.lines += 1

    def close(self) -> None:
        os.close(self._fd)


class JobReporter(RunListener):
    """Writes what a run does into the status and episodes files of submission `submission_id`."""

    def __init__(
        self,
        logs_dir: Path,
        submission_id: str,
        *,
        attempt: int | None = None,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.status_path = logs_dir / status_file_name(submission_id)
        self.episodes_path = logs_dir / episodes_file_name(submission_id)
        self._status = JsonLinesFile(self.status_path)
        self._episodes = JsonLinesFile(self.episodes_path)
        self._attempt = attempt
        self._out = out or sys.stdout
        self._clock = clock
        self._seq = 0
        self._progress = Progress()
        self._counted: dict[int, EpisodeRecord] = {}
        self._recoveries: list[Recovery] = []
        self._evaluation: SwarmEvaluation | None = None
        self._board: list[LeaderboardEntry] = []
        self._board_counted = 0
        self._board_at = float("-inf")
        self._board_cost = 0.0
        self._dirty = False
        self._written_at = float("-inf")

    # ---- the run's events (runner.RunListener) -----------------------------------------------

    def start(self, evaluation: SwarmEvaluation, resume: ResumePayload | None, episodes_total: int) -> None:
        """The first line: what is already counted, before any actor starts."""
        self._evaluation = evaluation
        resume = resume or ResumePayload()
        self._counted = {r.episode: r for r in resume.episodes}
        self._recoveries = list(resume.recoveries)
        self._progress = Progress(
            episodes_completed=len(self._counted),
            episodes_total=episodes_total,
            agent_steps=sum(r.agent_steps for r in self._counted.values()),
        )
        if self._counted:
            self._say(f"resuming: {len(self._counted)} episodes already counted by earlier attempts")
        self._write(JobState.RUNNING)

    def progress(self, progress: Progress) -> None:
        if progress != self._progress:
            self._progress = progress
            self._dirty = True

    def episode(self, record: EpisodeRecord) -> None:
        self._episodes.append(record.model_dump_json(by_alias=True))
        self._counted[record.episode] = record
        returns = ", ".join(f"{p} {v:.3f}" for p, v in sorted(record.returns.items()))
        self._say(f"episode {record.episode} counted ({record.steps} steps; mean return: {returns})")
        self._write(JobState.RUNNING)

    def recovery(self, recovery: Recovery) -> None:
        self._recoveries.append(recovery)
        where = "between episodes" if recovery.episode is None else (
            f"episode {recovery.episode} resumed from step {recovery.resumed_from_step}"
        )
        self._say(
            f"recovered {len(recovery.actors_restarted)} actors ({recovery.reason}, nodes "
            f"{', '.join(recovery.nodes_lost) or '?'}) in {recovery.seconds:.2f} s; {where}"
        )
        self._write(JobState.RUNNING)

    def polled(self) -> None:
        if self._dirty and self._clock() - self._written_at >= MIN_INTERVAL_S:
            self._write(JobState.RUNNING)

    # ---- the end -----------------------------------------------------------------------------

    def succeeded(self, report: RunReport) -> None:
        self._progress = report.progress
        self._recoveries = list(report.recoveries)
        self._write(JobState.SUCCEEDED, results=report.results)
        board = ", ".join(f"{e.policy} {e.rating:.3f}" for e in report.results.leaderboard)
        self._say(f"succeeded in {report.wall_seconds:.1f} s; leaderboard: {board}")

    def failed(self, reason: FailureReason, message: str) -> None:
        self._write(JobState.FAILED, reason=reason, message=message)
        self._say(f"failed ({reason.value}): {message}")

    def close(self) -> None:
        self._status.close()
        self._episodes.close()

    # ---- lines -------------------------------------------------------------------------------

    def _write(
        self,
        state: JobState,
        results: Results | None = None,
        reason: FailureReason | None = None,
        message: str | None = None,
    ) -> None:
        if results is None and state is JobState.RUNNING:
            results = self._interim_results()
        record = JobStatusRecord(
            seq=self._seq,
            time=now_rfc3339(),
            state=state,
            attempt=self._attempt,
            progress=self._progress,
            episodes_this_attempt=self._episodes.lines,
            recoveries=len(self._recoveries),
            last_recovery=self._recoveries[-1] if self._recoveries else None,
            results=results,
            reason=reason,
            message=message,
        )
        self._status.append(record.model_dump_json(by_alias=True))
        self._seq += 1
        self._dirty = False
        self._written_at = self._clock()
        if state is JobState.RUNNING:
            p = self._progress
            leader = f"; leader {results.leaderboard[0].policy}" if results and results.leaderboard else ""
            self._say(f"running: {p.episodes_completed}/{p.episodes_total} episodes, {p.agent_steps:,} agent-steps{leader}")

    def _interim_results(self) -> Results | None:
        """The leaderboard of what is counted so far (re-rated at most every LEADERBOARD_INTERVAL_S)."""
        from swarm_arena.arena.scoring import score_evaluation

        if self._evaluation is None or not self._counted:
            return None
        stale = len(self._counted) != self._board_counted
        if stale and self._clock() - self._board_at >= max(LEADERBOARD_INTERVAL_S, LEADERBOARD_COST_RATIO * self._board_cost):
            spec = self._evaluation.spec
            counted = [self._counted[i] for i in sorted(self._counted)]
            began = self._clock()
            self._board = score_evaluation(spec, counted, detail=False).leaderboard  # no pairwise: status is small
            self._board_counted, self._board_at = len(self._counted), self._clock()
            self._board_cost = self._board_at - began
        if not self._board:
            return None
        return Results(leaderboard=self._board, rating_method=self._evaluation.spec.rating_method)

    def _say(self, text: str) -> None:
        print(f"[swarm-arena {now_rfc3339()}] {text}", file=self._out, flush=True)
