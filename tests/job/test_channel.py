"""The operator/job channel without Ray: payloads, file names, whole lines, the status writer."""

from __future__ import annotations

import base64
import gzip
import io
import json
import subprocess
import sys

import pytest

from swarm_arena.api.job_channel import (
    FailureReason,
    JobState,
    JobStatusRecord,
    PayloadError,
    ResumePayload,
    complete_lines,
    decode_payload,
    encode_payload,
    episode_records,
    episodes_file_name,
    last_status,
    status_file_name,
)
from swarm_arena.api.report import EpisodeRecord
from swarm_arena.api.status import Progress, Recovery
from swarm_arena.arena.job_status import JobReporter
from tests.arena.conftest import foraging_evaluation


def _record(i: int) -> EpisodeRecord:
    return EpisodeRecord(
        episode=i, pairing={"all": "greedy,random"}, returns={"greedy": 1.0 + i, "random": 0.5},
        agents={"greedy": 20, "random": 20}, steps=30, agent_steps=1200,
    )  # fmt: skip


def test_payload_round_trip_is_base64_of_gzip_of_json() -> None:
    doc = {"apiVersion": "arena.swarm.dev/v1alpha1", "spec": {"seed": 7, "policies": [{"name": "ü"}]}}
    text = encode_payload(doc)
    assert json.loads(gzip.decompress(base64.b64decode(text, validate=True))) == doc
    assert decode_payload(text) == doc
    assert encode_payload(doc) == text  # deterministic: same evaluation, same env var


@pytest.mark.parametrize(
    ("text", "says"),
    [("not base64!", "not base64"), (base64.b64encode(b"plain").decode(), "not gzip"),
     (base64.b64encode(gzip.compress(b"{nope")).decode(), "not JSON")],
)  # fmt: skip
def test_a_bad_payload_says_which_layer_is_wrong(text: str, says: str) -> None:
    with pytest.raises(PayloadError, match=says):
        decode_payload(text)


def test_file_names_carry_the_submission_id_and_refuse_path_tricks() -> None:
    assert status_file_name("raysubmit_AbC-1.2") == "swarm-arena-raysubmit_AbC-1.2.status.jsonl"
    assert episodes_file_name("eval-7-attempt-2") == "swarm-arena-eval-7-attempt-2.episodes.jsonl"
    for bad in ("", "../x", "a/b", ".hidden", "x" * 129):
        with pytest.raises(ValueError, match="submission id"):
            status_file_name(bad)


def test_a_trailing_partial_line_is_never_parsed() -> None:
    assert complete_lines('{"a":1}\n{"b":2}\n{"c"') == ['{"a":1}', '{"b":2}']
    assert complete_lines('{"a":1}\n') == ['{"a":1}']
    assert complete_lines('{"half') == [] and complete_lines("") == []


def test_the_channel_module_does_not_import_ray() -> None:
    code = "import sys, swarm_arena.api.job_channel; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(path) -> list[JobStatusRecord]:
    return [JobStatusRecord.model_validate_json(line) for line in complete_lines(path.read_text())]


def test_reporter_writes_whole_self_contained_lines(tmp_path) -> None:
    clock, out = _Clock(), io.StringIO()
    evaluation = foraging_evaluation("ch", policies=[{"name": p, "factory": p} for p in ("greedy", "random")])
    reporter = JobReporter(tmp_path, "sid-1", attempt=2, out=out, clock=clock)
    resumed_recovery = Recovery(time="2026-11-23T00:00:00.000Z", reason="NodeLost", seconds=1.5)
    reporter.start(evaluation, ResumePayload(episodes=[_record(0)], recoveries=[resumed_recovery]), episodes_total=4)
    first = _lines(reporter.status_path)
    assert len(first) == 1 and first[0].state is JobState.RUNNING and first[0].attempt == 2
    assert first[0].progress.episodes_completed == 1 and first[0].episodes_this_attempt == 0
    assert first[0].recoveries == 1 and first[0].last_recovery == resumed_recovery
    assert first[0].results is not None and first[0].results.leaderboard[0].policy == "greedy"

    # Progress alone: at most one line a second.
    reporter.progress(Progress(episodes_completed=1, episodes_total=4, agent_steps=1300))
    reporter.polled()
    assert len(_lines(reporter.status_path)) == 1
    clock.now = 1.0
    reporter.polled()
    assert len(_lines(reporter.status_path)) == 2
    reporter.polled()  # nothing changed: nothing written
    assert len(_lines(reporter.status_path)) == 2

    # A counted episode: its episode line first, then at once a status line counting it.
    clock.now = 1.1
    reporter.progress(Progress(episodes_completed=2, episodes_total=4, agent_steps=2400))
    reporter.episode(_record(1))
    reporter.polled()
    lines = _lines(reporter.status_path)
    assert len(lines) == 3 and lines[-1].episodes_this_attempt == 1 and lines[-1].progress.episodes_completed == 2
    assert [r.episode for r in episode_records(reporter.episodes_path.read_text())] == [1]

    reporter.failed(FailureReason.RUN_FAILED, "boom")
    reporter.close()
    text = reporter.status_path.read_text()
    assert text.endswith("\n")
    final = last_status(text)
    assert final is not None and final.state is JobState.FAILED and final.message == "boom"
    assert [line.seq for line in _lines(reporter.status_path)] == [0, 1, 2, 3]
    # Every line carries every key, nulls included: a reader of one line needs no other.
    assert set(json.loads(text.splitlines()[-1])) == {
        "seq", "time", "state", "attempt", "progress", "episodesThisAttempt", "recoveries",
        "lastRecovery", "results", "reason", "message",
    }  # fmt: skip
    assert "episode 1 counted" in out.getvalue() and "failed (RunFailed): boom" in out.getvalue()


def test_a_failed_attempt_keeps_its_recoveries_and_says_why(tmp_path) -> None:
    """Recoveries an attempt recorded survive its failure: the final line counts them (earlier
    attempts' too) and carries the latest, beside the failure's reason and message."""
    evaluation = foraging_evaluation("ch-fail", policies=[{"name": p, "factory": p} for p in ("greedy", "random")])
    reporter = JobReporter(tmp_path, "sid-2", attempt=2, out=io.StringIO(), clock=_Clock())
    earlier = Recovery(time="2026-11-23T00:00:00.000Z", reason="NodeLost", seconds=1.5)
    reporter.start(evaluation, ResumePayload(recoveries=[earlier]), episodes_total=4)
    mine = Recovery(time="2026-11-23T00:01:00.000Z", reason="NodeLost", actors_restarted=["default/ch-fail/env-0"],
                    episode=0, resumed_from_step=10, seconds=2.0)  # fmt: skip
    reporter.recovery(mine)
    reporter.failed(FailureReason.RUN_FAILED, "actor default/ch-fail/env-0 was lost 3 times")
    reporter.close()
    final = last_status(reporter.status_path.read_text())
    assert final is not None and final.state is JobState.FAILED
    assert final.recoveries == 2 and final.last_recovery == mine
    assert final.reason is FailureReason.RUN_FAILED and "was lost 3 times" in (final.message or "")


def test_interim_rerating_waits_ten_times_what_the_last_one_took(tmp_path, monkeypatch) -> None:
    import swarm_arena.arena.scoring as scoring

    clock, calls, real = _Clock(), [], scoring.score_evaluation

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(clock.now)
        clock.now += 2.0  # as if scoring took 2 s
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "score_evaluation", slow)
    evaluation = foraging_evaluation("ch", policies=[{"name": p, "factory": p} for p in ("greedy", "random")])
    reporter = JobReporter(tmp_path, "sid-1", attempt=1, out=io.StringIO(), clock=clock)
    reporter.start(evaluation, ResumePayload(episodes=[_record(0)]), episodes_total=4)
    assert calls == [0.0]
    clock.now = 5.0  # 3 s after the last re-rating ended: within 10 x 2 s
    reporter.episode(_record(1))
    reporter.polled()
    assert calls == [0.0]
    clock.now = 22.0  # 20 s after: re-rated
    reporter.episode(_record(2))
    reporter.polled()
    assert calls == [0.0, 22.0]
