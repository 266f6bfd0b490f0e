"""The lifecycle state machine, pure: observations in, status and actions out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from swarm_arena.api.job_channel import FailureReason, JobState, JobStatusRecord
from swarm_arena.api.resource import SwarmEvaluation
from swarm_arena.api.status import LeaderboardEntry, Phase, Progress, Results, StoppedEarly, SwarmEvaluationStatus
from swarm_arena.controller import conditions as cond
from swarm_arena.controller import names
from swarm_arena.controller.decide import (
    ClusterView, DeleteCluster, EnsureCluster, JobView, Observation, StopJob, Submit, WriteResults, decide,
)
from tests.controller.test_builders import DOC, UID

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
SPEC = SwarmEvaluation.model_validate(DOC).spec
READY = ClusterView(exists=True, owned=True, ready=True, state="ready")


def obs(status: SwarmEvaluationStatus | None = None, *, cluster=READY, reachable=True, job=None, now=NOW,
        rejoin=None, **spec) -> Observation:
    return Observation(now=now, uid=UID, generation=2, spec=SPEC.model_copy(update=spec), status=status or
                       SwarmEvaluationStatus(), cluster=cluster, dashboard_reachable=reachable, job=job,
                       rejoin=rejoin)


def record(state=JobState.RUNNING, done=1, reason=None, message=None, results=None) -> JobStatusRecord:
    return JobStatusRecord(seq=3, time="2026-11-23T12:00:00Z", state=state,
                           progress=Progress(episodes_completed=done, episodes_total=4, agent_steps=100 * done),
                           episodes_this_attempt=done, recoveries=0, reason=reason, message=message, results=results)


def condition(status: SwarmEvaluationStatus, type_: str) -> tuple[str, str]:
    c = cond.get(status.conditions, type_)
    assert c is not None, f"no {type_} condition"
    assert c.observed_generation == 2
    return c.status, c.reason


def test_a_new_evaluation_creates_its_cluster_and_starts() -> None:
    d = decide(obs(cluster=ClusterView(exists=False)))
    assert d.actions == [EnsureCluster()]
    assert d.status.phase is Phase.PROVISIONING and d.status.start_time is not None
    assert condition(d.status, cond.CLUSTER_READY) == ("False", "Creating")
    assert condition(d.status, cond.READY)[0] == "False"
    assert d.status.observed_generation == 2 and d.event[1] == "Provisioning"


def test_ready_cluster_gets_the_job_id_recorded_with_the_submission() -> None:
    d = decide(obs(SwarmEvaluationStatus(phase=Phase.PROVISIONING)))
    sid = names.submission_id(UID, 1)
    assert d.actions == [Submit(1, sid)]
    assert d.status.job_id == sid and d.status.attempts == 1
    assert condition(d.status, cond.CLUSTER_READY) == ("True", "Ready")


def test_a_recorded_but_unsent_submission_is_sent_again_with_the_same_id() -> None:
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.PROVISIONING, job_id=sid, attempts=1)
    d = decide(obs(status, job=JobView(sid, found=False)))
    assert d.actions == [Submit(1, sid)] and d.status.attempts == 1


def test_running_job_folds_progress_into_status() -> None:
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.PROVISIONING, job_id=sid, attempts=1)
    d = decide(obs(status, job=JobView(sid, True, "RUNNING", record=record(done=2))))
    assert d.status.phase is Phase.RUNNING and d.status.progress.summary == "2/4"
    assert condition(d.status, cond.JOB_RUNNING) == ("True", "Running")
    assert d.actions == []


def test_succeeded_job_writes_final_results() -> None:
    sid = names.submission_id(UID, 1)
    results = Results(leaderboard=[
        LeaderboardEntry(policy=f"p{i}", rating=float(20 - i), ci_low=0, ci_high=1, mean_return=1, episodes=4)
        for i in range(15)
    ])
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    d = decide(obs(status, job=JobView(sid, True, "SUCCEEDED", record=record(JobState.SUCCEEDED, 4, results=results))))
    assert d.actions == [WriteResults(final=True)]
    assert d.status.phase is Phase.SUCCEEDED and d.status.completion_time
    assert len(d.status.results.leaderboard) == 10 and d.status.results.leaderboard[0].policy == "p0"
    assert condition(d.status, cond.READY) == ("True", "Succeeded")
    assert condition(d.status, cond.COMPLETE)[0] == "True" and condition(d.status, cond.FAILED)[0] == "False"


def test_a_run_that_stopped_early_succeeds_with_a_stopped_early_condition() -> None:
    sid = names.submission_id(UID, 1)
    early = StoppedEarly(reason="LeaderboardSeparated", message="every adjacent pair is separated; 12 saved",
                         decided_at=24, episodes_planned=36, episodes_saved=12)
    results = Results(leaderboard=[LeaderboardEntry(policy="a", rating=1, ci_low=0, ci_high=2, mean_return=1,
                                                    episodes=24)], stopped_early=early)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    d = decide(obs(status, job=JobView(sid, True, "SUCCEEDED", record=record(JobState.SUCCEEDED, 4, results=results))))
    assert d.status.phase is Phase.SUCCEEDED and condition(d.status, cond.COMPLETE)[0] == "True"
    assert condition(d.status, cond.STOPPED_EARLY) == ("True", "LeaderboardSeparated")
    assert cond.get(d.status.conditions, cond.STOPPED_EARLY).message == early.message
    assert d.status.results.stopped_early == early
    assert "12 of 36 episodes saved" in cond.get(d.status.conditions, cond.READY).message


def test_a_run_that_played_its_plan_has_no_stopped_early_condition() -> None:
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    d = decide(obs(status, job=JobView(sid, True, "SUCCEEDED", record=record(JobState.SUCCEEDED, 4, results=Results()))))
    assert d.status.phase is Phase.SUCCEEDED and cond.get(d.status.conditions, cond.STOPPED_EARLY) is None


def test_the_recordings_the_job_reports_reach_status() -> None:
    from swarm_arena.api.status import Recordings

    sid = names.submission_id(UID, 1)
    uri = "s3://bucket/rec/default/e/0123456789abcdef/recording"
    results = Results(recordings=Recordings.of(uri, [0, 1, 2, 10]))
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    d = decide(obs(status, job=JobView(sid, True, "SUCCEEDED", record=record(JobState.SUCCEEDED, 4, results=results))))
    assert d.status.results.recordings == Recordings(uri=uri, episodes="0-2,10", count=4)


def test_invalid_spec_fails_after_exactly_one_attempt() -> None:
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    rec = record(JobState.FAILED, 0, FailureReason.INVALID_SPEC, "spec.environment.factory: no module named 'x'")
    d = decide(obs(status, job=JobView(sid, True, "FAILED", record=rec)))
    assert d.status.phase is Phase.FAILED and not any(isinstance(a, Submit) for a in d.actions)
    assert condition(d.status, cond.FAILED) == ("True", "InvalidSpec")
    assert "spec.environment.factory" in cond.get(d.status.conditions, cond.READY).message


def test_failed_run_is_resubmitted_until_the_backoff_limit() -> None:
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    failed = JobView(sid, True, "FAILED", message="worker died", record=record(JobState.FAILED, 1, FailureReason.RUN_FAILED, "boom"))
    d = decide(obs(status, job=failed, backoff_limit=1))
    assert Submit(2, names.submission_id(UID, 2)) in d.actions and d.status.failures == 1
    assert d.status.phase is Phase.RUNNING
    # Why it failed: in the condition, and (the phase staying Running) in a Warning event.
    assert "boom" in (cond.get(d.status.conditions, cond.JOB_RUNNING).message or "")
    assert d.event == ("Warning", "Resubmitting", "attempt 1 failed (1 of at most 2): boom; "
                       "re-submitting, resuming from what was counted")
    again = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=names.submission_id(UID, 2), attempts=2, failures=1)
    d2 = decide(obs(again, job=JobView(again.job_id, True, "FAILED", record=record(JobState.FAILED, 1)), backoff_limit=1))
    assert d2.status.phase is Phase.FAILED and condition(d2.status, cond.FAILED) == ("True", "BackoffLimitExceeded")
    assert WriteResults(final=True) in d2.actions and WriteResults(final=False) not in d2.actions


def test_a_deadline_ends_with_the_results_written_final() -> None:
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1,
                                   start_time="2026-11-23T11:00:00Z")
    d = decide(obs(status, job=JobView(sid, True, "RUNNING", record=record(done=2)), active_deadline_seconds=60))
    assert d.status.phase is Phase.FAILED and StopJob(sid) in d.actions
    assert WriteResults(final=True) in d.actions and WriteResults(final=False) not in d.actions


def test_a_job_lost_with_its_head_is_a_new_attempt_not_a_failure() -> None:
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, job_accepted=True, attempts=1)
    d = decide(obs(status, job=JobView(sid, found=False)))
    assert d.actions == [Submit(2, names.submission_id(UID, 2))]
    assert d.status.head_restarts == 1 and not d.status.failures
    assert condition(d.status, cond.DEGRADED) == ("True", "HeadLost")


def test_an_unreachable_head_is_not_left_running_past_the_grace_period() -> None:
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    lost = ClusterView(exists=True, ready=False, state="suspended")
    early = Observation(now=NOW, uid=UID, generation=2, spec=SPEC, status=status, cluster=lost,
                        dashboard_reachable=False, unreachable_since=NOW - timedelta(seconds=5))
    assert decide(early).status.phase is Phase.RUNNING
    late = Observation(now=NOW, uid=UID, generation=2, spec=SPEC, status=status, cluster=lost,
                       dashboard_reachable=False, unreachable_since=NOW - timedelta(seconds=60))
    assert decide(late).status.phase is Phase.RECOVERING


def test_suspend_stops_the_job_keeps_what_was_counted_then_tears_down() -> None:
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    d = decide(obs(status, job=JobView(sid, True, "RUNNING", record=record(done=2)), suspend=True))
    assert StopJob(sid) in d.actions and WriteResults(final=False) in d.actions
    assert not any(isinstance(a, DeleteCluster) for a in d.actions)
    assert d.status.phase is Phase.SUSPENDED and d.status.progress.episodes_completed == 2
    d2 = decide(obs(d.status, job=JobView(sid, True, "STOPPED", record=record(done=2)), suspend=True))
    assert DeleteCluster("suspend") in d2.actions and d2.status.job_id is None
    gone = decide(obs(d2.status, cluster=ClusterView(exists=False), suspend=True))
    assert gone.actions == [] and gone.status.phase is Phase.SUSPENDED


def test_unsuspend_recreates_the_cluster_and_submits_the_next_attempt() -> None:
    status = SwarmEvaluationStatus(phase=Phase.SUSPENDED, attempts=1, progress=Progress(episodes_completed=2, episodes_total=4))
    d = decide(obs(status, cluster=ClusterView(exists=False)))
    assert d.actions == [EnsureCluster()] and d.status.phase is Phase.PROVISIONING
    d2 = decide(obs(d.status))
    assert d2.actions == [Submit(2, names.submission_id(UID, 2))]


def test_deadline_stops_the_job_and_fails() -> None:
    sid = names.submission_id(UID, 1)
    start = (NOW - timedelta(seconds=120)).isoformat().replace("+00:00", "Z")
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1, start_time=start)
    d = decide(obs(status, job=JobView(sid, True, "RUNNING", record=record()), active_deadline_seconds=60))
    assert StopJob(sid) in d.actions and d.status.phase is Phase.FAILED
    assert condition(d.status, cond.FAILED) == ("True", "DeadlineExceeded")


def test_ttl_deletes_only_the_cluster_after_it_is_due() -> None:
    done = (NOW - timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    status = SwarmEvaluationStatus(phase=Phase.SUCCEEDED, completion_time=done)
    early = decide(obs(status, ttl_seconds_after_finished=60))
    assert early.actions == [] and 29 <= early.requeue_s <= 31
    due = decide(obs(status, ttl_seconds_after_finished=10))
    assert due.actions == [DeleteCluster("ttlSecondsAfterFinished")] and due.status.phase is Phase.SUCCEEDED


def test_a_foreign_raycluster_with_the_same_name_is_a_clear_failure() -> None:
    d = decide(obs(cluster=ClusterView(exists=True, owned=False)))
    assert d.status.phase is Phase.FAILED and condition(d.status, cond.CLUSTER_READY) == ("False", "NameConflict")


def test_the_same_observation_twice_changes_nothing_the_second_time() -> None:
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.PROVISIONING, job_id=sid, attempts=1)
    first = decide(obs(status, job=JobView(sid, True, "RUNNING", record=record(done=2))))
    second = decide(obs(first.status, job=JobView(sid, True, "RUNNING", record=record(done=2))))
    assert second.status == first.status and second.actions == [] and second.event is None


def test_invalid_stored_spec_fails_naming_the_field() -> None:
    o = Observation(now=NOW, uid=UID, generation=1, spec=None, status=SwarmEvaluationStatus(), cluster=None,
                    dashboard_reachable=False, invalid="spec.policies[0].name: must be unique")
    d = decide(o)
    assert d.status.phase is Phase.FAILED and condition_message(d) == "spec.policies[0].name: must be unique"


def condition_message(d) -> str:
    return cond.get(d.status.conditions, cond.FAILED).message


def test_after_a_head_is_replaced_the_job_waits_for_the_workers_and_restarts_the_orphans() -> None:
    from swarm_arena.controller.decide import REJOIN_TIMEOUT_S, RejoinView, RestartWorkers

    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RECOVERING, job_id=sid, job_accepted=True, attempts=1)
    left = (("w-old", "uid-old"),)
    # The new head answers; its Ray cluster has no worker yet and one old worker pod is left behind.
    d = decide(obs(status, job=JobView(sid, found=False), rejoin=RejoinView(0, 1, left, 3.0)))
    assert d.actions == [RestartWorkers(left)]
    assert d.status.phase is Phase.RECOVERING and d.status.attempts == 1 and not d.status.head_restarts
    assert condition(d.status, cond.DEGRADED) == ("True", "HeadLost")
    assert "w-old" in cond.get(d.status.conditions, cond.DEGRADED).message
    # Still waiting while the replacement joins: nothing submitted, nothing counted twice.
    d = decide(obs(status, job=JobView(sid, found=False), rejoin=RejoinView(0, 1, (), 10.0)))
    assert d.actions == [] and d.status.attempts == 1 and not d.status.head_restarts
    # Joined: the next attempt, once.
    d = decide(obs(status, job=JobView(sid, found=False), rejoin=RejoinView(1, 1, (), 20.0)))
    assert d.actions == [Submit(2, names.submission_id(UID, 2))] and d.status.head_restarts == 1
    # Never waits forever: past the timeout it submits with what there is.
    d = decide(obs(status, job=JobView(sid, found=False), rejoin=RejoinView(0, 1, (), REJOIN_TIMEOUT_S)))
    assert d.actions == [Submit(2, names.submission_id(UID, 2))]


def test_a_stop_is_sent_until_ray_confirms_it_also_once_the_phase_is_final() -> None:
    sid = names.submission_id(UID, 1)
    start = (NOW - timedelta(seconds=120)).isoformat().replace("+00:00", "Z")
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1, start_time=start)
    d = decide(obs(status, job=JobView(sid, True, "RUNNING", record=record()), active_deadline_seconds=60))
    assert StopJob(sid) in d.actions and d.status.phase is Phase.FAILED
    assert condition(d.status, cond.JOB_RUNNING) == ("Unknown", "Stopping") and d.requeue_s <= 5
    # The stop failed (or Ray has not acted yet): the finished evaluation keeps asking.
    for job, reachable in [(JobView(sid, True, "RUNNING"), True), (None, False)]:
        again = decide(obs(d.status, job=job, reachable=reachable, active_deadline_seconds=60))
        assert again.actions == [StopJob(sid)] and again.status.phase is Phase.FAILED and again.requeue_s <= 5
        assert condition(again.status, cond.JOB_RUNNING) == ("Unknown", "Stopping")
    for job, cluster in [(JobView(sid, True, "STOPPED"), READY), (JobView(sid, False), READY),
                         (None, ClusterView(exists=False))]:
        done = decide(obs(d.status, job=job, cluster=cluster, active_deadline_seconds=60))
        assert done.actions == [] and condition(done.status, cond.JOB_RUNNING) == ("False", "Stopped")
        assert decide(obs(done.status, job=None, reachable=False)).actions == []  # nothing left to do


def test_a_deadline_with_the_job_already_ended_needs_no_stop() -> None:
    sid = names.submission_id(UID, 1)
    start = (NOW - timedelta(seconds=120)).isoformat().replace("+00:00", "Z")
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1, start_time=start)
    d = decide(obs(status, job=JobView(sid, True, "FAILED"), active_deadline_seconds=60))
    assert d.actions == [WriteResults(final=True)] and d.status.phase is Phase.FAILED
    assert condition(d.status, cond.JOB_RUNNING) == ("False", "DeadlineExceeded")


def test_an_earlier_evaluations_children_are_waited_for_never_used() -> None:
    from swarm_arena.controller.decide import Taken

    old_cluster = ClusterView(exists=True, owned=False, ready=True, state="ready", previous_life=True)
    d = decide(obs(cluster=old_cluster))
    assert d.actions == [] and d.status.phase is Phase.PROVISIONING and d.requeue_s == 2.0
    assert condition(d.status, cond.CLUSTER_READY) == ("False", "WaitingForOldCluster")
    assert condition(d.status, cond.READY) == ("False", "WaitingForOldCluster")
    old_cm = Observation(now=NOW, uid=UID, generation=2, spec=SPEC, status=SwarmEvaluationStatus(), cluster=READY,
                         dashboard_reachable=True, taken=Taken("ConfigMap duel-results", previous_life=True))
    d = decide(old_cm)
    assert d.actions == [] and d.status.phase is Phase.PROVISIONING
    assert "ConfigMap duel-results" in cond.get(d.status.conditions, cond.CLUSTER_READY).message
    # Someone else's object under the name: a conflict that names it, not a wait.
    foreign = Observation(now=NOW, uid=UID, generation=2, spec=SPEC, status=SwarmEvaluationStatus(), cluster=READY,
                          dashboard_reachable=True, taken=Taken("Secret duel-ray-auth", previous_life=False))
    d = decide(foreign)
    assert d.status.phase is Phase.FAILED and condition(d.status, cond.FAILED) == ("True", "ClusterConflict")
    assert "Secret duel-ray-auth" in cond.get(d.status.conditions, cond.FAILED).message
    stray = decide(obs(cluster=ClusterView(exists=True, owned=False, ready=True, state="ready")))
    assert stray.status.phase is Phase.FAILED and condition(stray.status, cond.FAILED) == ("True", "ClusterConflict")


def test_a_submission_id_is_recorded_unaccepted_and_accepted_once_ray_shows_it() -> None:
    d = decide(obs(SwarmEvaluationStatus(phase=Phase.PROVISIONING)))
    sid = d.status.job_id
    assert d.status.job_accepted is False
    d = decide(obs(d.status, job=JobView(sid, True, "PENDING")))
    assert d.status.job_accepted is True and d.status.phase is Phase.RUNNING
    # A failed run's re-submission records the next id, not accepted yet.
    failed = JobView(sid, True, "FAILED", record=record(JobState.FAILED, 1, FailureReason.RUN_FAILED, "boom"))
    d = decide(obs(d.status, job=failed, backoff_limit=2))
    assert d.status.job_id == names.submission_id(UID, 2) and d.status.job_accepted is False


def test_a_resubmission_from_running_whose_post_failed_is_sent_again_not_counted_as_a_lost_head() -> None:
    """Attempt 1 failed, attempt 2 was recorded (the phase stays Running) and never reached Ray:
    its failed POST, or an operator restart between recording and sending. The same id again."""
    sid = names.submission_id(UID, 2)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, job_accepted=False, attempts=2, failures=1)
    d = decide(obs(status, job=JobView(sid, found=False)))
    assert d.actions == [Submit(2, sid)]
    assert d.status.attempts == 2 and d.status.job_id == sid and not d.status.head_restarts
    assert d.status.phase is Phase.RUNNING and d.status.job_accepted is False


def test_a_resubmission_from_recovering_after_a_lost_head_is_sent_again_before_the_head_counts_lost_twice() -> None:
    from swarm_arena.controller.decide import RejoinView

    sid = names.submission_id(UID, 2)
    status = SwarmEvaluationStatus(phase=Phase.RECOVERING, job_id=sid, job_accepted=False, attempts=2, head_restarts=1)
    # Even with the workers not back (what a lost head waits for), the recorded id is sent as it is.
    d = decide(obs(status, job=JobView(sid, found=False), rejoin=RejoinView(0, 1, (), 3.0)))
    assert d.actions == [Submit(2, sid)] and d.status.head_restarts == 1 and d.status.attempts == 2


def test_a_job_ray_showed_that_vanishes_is_lost_with_the_head_once() -> None:
    sid = names.submission_id(UID, 2)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, job_accepted=False, attempts=2, failures=1)
    seen = decide(obs(status, job=JobView(sid, True, "RUNNING", record=record()))).status
    d = decide(obs(seen, job=JobView(sid, found=False)))
    assert d.actions == [Submit(3, names.submission_id(UID, 3))] and d.status.head_restarts == 1
    assert d.status.job_accepted is False


def test_a_status_from_before_job_accepted_keeps_the_head_loss_rule() -> None:
    """An operator upgrade: a Running status without jobAccepted ran its job (it said Running)."""
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.RUNNING, job_id=sid, attempts=1)
    d = decide(obs(status, job=JobView(sid, found=False)))
    assert d.actions == [Submit(2, names.submission_id(UID, 2))] and d.status.head_restarts == 1


def test_suspending_forgets_the_stopped_job_and_whether_it_was_accepted() -> None:
    sid = names.submission_id(UID, 1)
    status = SwarmEvaluationStatus(phase=Phase.SUSPENDED, job_id=sid, job_accepted=True, attempts=1)
    d = decide(obs(status, cluster=ClusterView(exists=False), job=JobView(sid, True, "STOPPED"), suspend=True))
    assert d.status.job_id is None and d.status.job_accepted is None


def test_status_keeps_the_populations_and_social_outcomes_of_its_leaderboard_rows() -> None:
    from swarm_arena.api.status import Estimate, PopulationReturns, SocialOutcome
    from swarm_arena.controller.decide import STATUS_LEADERBOARD_ROWS, status_results

    est = Estimate(value=1.0, low=0.5, high=1.5)
    policies = [f"p{i:02d}" for i in range(STATUS_LEADERBOARD_ROWS + 2)]
    full = Results(
        leaderboard=[LeaderboardEntry(policy=p, rating=-i, ci_low=-i - 1, ci_high=-i + 1, mean_return=-i, episodes=4)
                     for i, p in enumerate(policies)],
        populations=[PopulationReturns(policy=p, episodes=4, focal_per_capita_return=est) for p in policies],
        social_outcomes=[SocialOutcome(kind="policy", name=p, episodes=4, efficiency=est) for p in policies]
        + [SocialOutcome(kind="team", name=f"t{i:02d}", episodes=4, equality=est) for i in range(12)],
    )  # fmt: skip
    status = status_results(full, "e-results")
    shown = policies[:STATUS_LEADERBOARD_ROWS]
    assert [e.policy for e in status.leaderboard] == shown
    assert [p.policy for p in status.populations] == shown
    assert [(o.kind, o.name) for o in status.social_outcomes] == [("policy", p) for p in shown] + [
        ("team", f"t{i:02d}") for i in range(STATUS_LEADERBOARD_ROWS)
    ]
    assert full.for_configmap().populations == full.populations  # the ConfigMap keeps them all
    assert status.pairwise is None and status.return_aggregates is None
