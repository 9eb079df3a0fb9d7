"""The pure state core, driven through its events with a fake clock (no mocks, no I/O)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from airflow_aws_batch.core import (
    BackoffPolicy,
    CheckStarted,
    Core,
    Fail,
    JobView,
    RunningState,
    Submit,
    SubmitOutcome,
    Success,
    TaskEvent,
    Terminate,
)
from airflow_aws_batch.core.messages import SUBMISSION_TAG, TerminateLookup, Track, Untrack


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(name: str = "airflow-dag-task") -> dict[str, Any]:
    return {
        "jobName": name,
        "jobQueue": "q",
        "jobDefinition": "d",
        "containerOverrides": {"command": ["python", "-m", "x"]},
        "tags": {"dag_id": "dag", "task_id": "task"},
    }


def make(max_attempts: int = 3) -> tuple[Core, Clock]:
    clock = Clock()
    numbers = iter(range(1, 1_000_000))
    return Core(
        max_attempts=max_attempts,
        clock=clock,
        backoff=BackoffPolicy(base_s=2, max_s=30, wait_s=0.5),
        new_submission=lambda: f"s{next(numbers)}",
    ), clock


def bare(sent: dict[str, Any]) -> dict[str, Any]:
    """A sent request without the per-call submission tag."""
    tags = {k: v for k, v in sent.get("tags", {}).items() if k != SUBMISSION_TAG}
    return {**sent, "tags": tags}


def submits(core: Core) -> list[Submit]:
    return [c for c in core.commands() if isinstance(c, Submit)]


def submit_ok(core: Core, key: str, job_id: str) -> list[Any]:
    (cmd,) = submits(core)
    assert cmd.key == key
    return core.submit_result(key, SubmitOutcome.OK, job_id=job_id)


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [
        pytest.param(1, 2.0, id="first-retry-base"),
        pytest.param(2, 4.0, id="doubles"),
        pytest.param(4, 16.0, id="doubles-again"),
        pytest.param(5, 30.0, id="capped"),
        pytest.param(50, 30.0, id="capped-large"),
    ],
)
def test_backoff_delay(attempts: int, expected: float) -> None:
    assert BackoffPolicy(base_s=2, max_s=30).delay(attempts) == expected


def test_submit_ok_reports_job_id_and_tracks_it() -> None:
    core, _ = make()
    core.add("k", request())
    (cmd,) = submits(core)
    assert bare(cmd.request) == request()
    assert cmd.lookup_after_ms is None
    assert core.submit_result("k", SubmitOutcome.OK, job_id="j1") == [RunningState("k", "j1")]
    assert core.commands() == [Track("j1", "q")]
    assert core.job_id("k") == "j1"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param("SUBMITTED", [], id="submitted-queued"),
        pytest.param("PENDING", [], id="pending-queued"),
        pytest.param("RUNNABLE", [], id="runnable-queued"),
        pytest.param("STARTING", [], id="starting-queued"),
        pytest.param("RUNNING", [RunningState("k", "j1")], id="running-id-said-again"),
        pytest.param("SUCCEEDED", [Success("k", "j1")], id="succeeded"),
    ],
)
def test_status_mapping(status: str, expected: list[Any]) -> None:
    core, _ = make()
    core.add("k", request())
    submit_ok(core, "k", "j1")
    assert core.job_seen(JobView("j1", status)) == expected
    assert ("k" in core) is (status != "SUCCEEDED")


def test_runnable_reason_reaches_event_log_once() -> None:
    core, _ = make()
    core.add("k", request())
    submit_ok(core, "k", "j1")
    reason = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - no spot"
    (event,) = core.job_seen(JobView("j1", "RUNNABLE", status_reason=reason))
    assert isinstance(event, TaskEvent)
    assert event.event == "aws_batch_job_runnable"
    assert reason in event.extra
    assert core.job_seen(JobView("j1", "RUNNABLE", status_reason=reason)) == []


def test_failed_before_start_resubmits_with_backoff_then_fails() -> None:
    core, clock = make(max_attempts=3)
    core.add("k", request())
    for attempt in (1, 2):
        submit_ok(core, "k", f"j{attempt}")
        reports = core.job_seen(JobView(f"j{attempt}", "FAILED", status_reason="Task failed to start"))
        assert [type(r) for r in reports] == [TaskEvent]
        assert "Task failed to start" in reports[0].extra  # type: ignore[union-attr]
        assert Untrack(f"j{attempt}") in core.commands()
        assert submits(core) == []  # waiting for backoff
        clock.now += BackoffPolicy(base_s=2, max_s=30).delay(attempt)
    submit_ok(core, "k", "j3")
    reports = core.job_seen(
        JobView("j3", "FAILED", status_reason="Essential container in task exited", exit_code=137)
    )
    fail = reports[-1]
    assert isinstance(fail, Fail)
    assert "exitCode: 137" in fail.reason and "Essential container" in fail.reason
    assert "k" not in core


@pytest.mark.parametrize(
    "view_before_failure",
    [
        pytest.param(JobView("j1", "RUNNING"), id="running-seen"),
        pytest.param(JobView("j1", "STARTING", started=True), id="startedAt-set"),
    ],
)
def test_never_resubmits_after_start_without_a_task_instance(view_before_failure: JobView) -> None:
    # No ti_id (a callback): whether Airflow saw it start cannot be checked.
    core, clock = make(max_attempts=5)
    core.add("k", request())
    submit_ok(core, "k", "j1")
    core.job_seen(view_before_failure)
    reports = core.job_seen(JobView("j1", "FAILED", status_reason="Host EC2 (instance i-1) terminated."))
    assert isinstance(reports[-1], Fail)
    assert "Host EC2" in reports[-1].reason
    clock.now += 1000
    assert submits(core) == []


def test_failure_straight_to_failed_with_started_at_is_not_resubmitted() -> None:
    core, _ = make(max_attempts=5)
    core.add("k", request())
    submit_ok(core, "k", "j1")
    reports = core.job_seen(JobView("j1", "FAILED", started=True, exit_code=1))
    assert isinstance(reports[-1], Fail)


TI_ID = "0199f5d2-8a1e-7c3b-9e2d-4f6a8b0c1d2e"
HOST_LOST = "Host EC2 (instance i-1) terminated."


def failed_after_start(core: Core, job_id: str, view_before_failure: JobView | None = None) -> list[Any]:
    """Submit the due attempt as ``job_id``, see it start, then FAIL; return the FAILED reports."""
    submit_ok(core, "k", job_id)
    core.commands()
    core.job_seen(view_before_failure or JobView(job_id, "RUNNING"))
    return core.job_seen(JobView(job_id, "FAILED", status_reason=HOST_LOST, exit_code=3))


@pytest.mark.parametrize(
    "view_before_failure",
    [
        pytest.param(None, id="running-seen"),
        pytest.param(JobView("j1", "STARTING", started=True), id="startedAt-set"),
    ],
)
def test_failed_after_start_asks_whether_airflow_saw_the_task_start(
    view_before_failure: JobView | None,
) -> None:
    core, clock = make(max_attempts=3)
    core.add("k", request(), ti_id=TI_ID, try_number=2)
    assert failed_after_start(core, "j1", view_before_failure) == []
    untrack, check = core.commands()
    assert untrack == Untrack("j1")
    assert isinstance(check, CheckStarted)
    assert (check.key, check.ti_id, check.try_number, check.failed_job_id) == ("k", TI_ID, 2, "j1")
    # Where a job of the same try that won the task's start would be found.
    assert (check.job_queue, check.job_name) == ("q", "airflow-dag-task")
    assert {"dag_id": "dag", "task_id": "task"}.items() <= dict(check.tags).items()
    assert "k" in core and core.counts().checking == 1
    clock.now += 1000
    assert submits(core) == []  # nothing is resubmitted before the answer


@pytest.mark.parametrize(
    ("seen", "max_attempts", "expected"),
    [
        pytest.param(False, 3, "resubmit", id="not-seen-resubmits"),
        pytest.param(True, 3, "seen", id="seen-fails"),
        pytest.param(None, 3, "unknown", id="unknown-fails"),
        pytest.param(False, 1, "exhausted", id="not-seen-no-attempts-left-fails"),
    ],
)
def test_start_checked(seen: bool | None, max_attempts: int, expected: str) -> None:
    core, clock = make(max_attempts=max_attempts)
    core.add("k", request(), log_path="attempt=1.log", ti_id=TI_ID, try_number=1)
    failed_after_start(core, "j1")
    core.commands()
    reports = core.start_checked("k", seen)
    if expected == "resubmit":
        (event,) = reports
        assert isinstance(event, TaskEvent)
        assert event.event == "aws_batch_job_failed_before_task_start"
        assert HOST_LOST in event.extra and "attempt 2 of 3" in event.extra, event.extra
        assert submits(core) == []  # backoff first
        clock.now += BackoffPolicy(base_s=2, max_s=30).delay(1)
        (cmd,) = submits(core)
        assert bare(cmd.request) == request()
        return
    event, fail = reports
    assert isinstance(event, TaskEvent) and isinstance(fail, Fail)
    assert event.extra == fail.reason
    assert (fail.job_id, fail.log_path) == ("j1", "attempt=1.log")
    assert HOST_LOST in fail.reason
    assert {
        "seen": "Airflow saw the task start",
        "unknown": "could not be established",
        "exhausted": "Airflow never saw the task start; no submit attempts left (1 of 1)",
    }[expected] in fail.reason, fail.reason
    assert "k" not in core
    clock.now += 1000
    assert submits(core) == []


def test_a_job_that_lost_its_start_to_a_duplicate_hands_the_try_to_the_winner() -> None:
    # Two jobs of one try; the other started the task first, so the execution API refused this one's
    # start (HTTP 409) and it exited failed while Airflow has the try RUNNING: the task runs there.
    core, clock = make(max_attempts=3)
    core.add("k", request(), ti_id=TI_ID, try_number=1)
    failed_after_start(core, "j1")
    core.commands()
    running, event = core.start_checked("k", True, winner="w1")
    assert running == RunningState("k", "w1")
    assert isinstance(event, TaskEvent) and event.event == "aws_batch_duplicate_start"
    assert "w1" in event.extra and HOST_LOST in event.extra
    (track,) = core.commands()
    assert isinstance(track, Track) and track.job_id == "w1" and track.try_number == 1
    assert core.job_id("k") == "w1" and core.job_started("k")
    clock.now += 1000
    assert submits(core) == []  # the try started: never resubmitted
    assert core.job_seen(JobView("w1", "SUCCEEDED")) == [Success("k", "w1")]
    assert "k" not in core


@pytest.mark.parametrize(
    ("seen", "tracked_elsewhere"),
    [
        pytest.param(None, False, id="cannot-tell-fails"),
        pytest.param(True, True, id="winner-already-tracked-fails"),
    ],
)
def test_a_winner_is_taken_only_when_airflow_saw_the_start_and_nobody_tracks_it(
    seen: bool | None, tracked_elsewhere: bool
) -> None:
    core, _ = make(max_attempts=3)
    if tracked_elsewhere:
        core.adopt("other", "w1", started=True)
    core.add("k", request(), ti_id=TI_ID, try_number=1)
    failed_after_start(core, "j1")
    core.commands()
    event, fail = core.start_checked("k", seen, winner="w1")
    assert isinstance(event, TaskEvent) and isinstance(fail, Fail)
    assert fail.job_id == "j1"
    assert "k" not in core


def test_not_seen_resubmits_until_attempts_run_out_then_fails_with_the_last_reason() -> None:
    core, clock = make(max_attempts=3)
    core.add("k", request(), ti_id=TI_ID, try_number=1)
    for attempt in (1, 2, 3):
        failed_after_start(core, f"j{attempt}")
        assert [(c.key, c.ti_id, c.try_number) for c in core.commands() if isinstance(c, CheckStarted)] == [
            ("k", TI_ID, 1)
        ]
        reports = core.start_checked("k", False)
        clock.now += 1000
    fail = reports[-1]
    assert isinstance(fail, Fail)
    assert fail.job_id == "j3"
    assert "no submit attempts left (3 of 3)" in fail.reason, fail.reason
    assert "k" not in core


def test_second_job_seen_started_after_a_resubmit_is_checked_again() -> None:
    # The resubmitted job starts afresh: a FAILED before start is a plain retry, not a check.
    core, clock = make(max_attempts=3)
    core.add("k", request(), ti_id=TI_ID, try_number=1)
    failed_after_start(core, "j1")
    core.commands()
    core.start_checked("k", False)
    clock.now += 1000
    submit_ok(core, "k", "j2")
    (event,) = core.job_seen(JobView("j2", "FAILED", status_reason="Task failed to start"))
    assert isinstance(event, TaskEvent) and event.event == "aws_batch_job_failed_before_start"
    assert not any(isinstance(c, CheckStarted) for c in core.commands())


@pytest.mark.parametrize(
    "seen",
    [pytest.param(False, id="not-seen"), pytest.param(True, id="seen"), pytest.param(None, id="unknown")],
)
def test_revoked_while_checking_stays_forgotten(seen: bool | None) -> None:
    core, clock = make()
    core.add("k", request(), ti_id=TI_ID, try_number=1)
    failed_after_start(core, "j1")
    core.commands()
    core.revoke("k")
    assert core.commands() == []  # the job already ended: nothing to terminate
    assert core.start_checked("k", seen) == []
    clock.now += 1000
    assert submits(core) == []
    assert "k" not in core


def test_adopted_job_failed_after_start_is_not_checked() -> None:
    core, _ = make()
    core.adopt("k", "old")
    core.commands()
    core.job_seen(JobView("old", "RUNNING"))
    reports = core.job_seen(JobView("old", "FAILED", status_reason=HOST_LOST))
    assert isinstance(reports[-1], Fail)
    assert not any(isinstance(c, CheckStarted) for c in core.commands())


@pytest.mark.parametrize(
    ("outcomes", "final"),
    [
        pytest.param([SubmitOutcome.FAILED] * 3, "fail", id="three-failures-fail"),
        pytest.param([SubmitOutcome.FAILED, SubmitOutcome.FAILED, SubmitOutcome.OK], "ok", id="ok-on-last"),
        pytest.param([SubmitOutcome.WAIT] * 20 + [SubmitOutcome.OK], "ok", id="throttling-never-counts"),
        pytest.param(
            [
                SubmitOutcome.WAIT,
                SubmitOutcome.FAILED,
                SubmitOutcome.WAIT,
                SubmitOutcome.FAILED,
                SubmitOutcome.FAILED,
            ],
            "fail",
            id="throttling-between-failures",
        ),
    ],
)
def test_submit_errors_count_attempts(outcomes: list[SubmitOutcome], final: str) -> None:
    core, clock = make(max_attempts=3)
    core.add("k", request())
    reports: list[Any] = []
    for outcome in outcomes:
        clock.now += 1000
        (cmd,) = submits(core)
        assert cmd.key == "k"
        reports = core.submit_result(
            "k", outcome, job_id="j" if outcome is SubmitOutcome.OK else None, reason="boom"
        )
    if final == "fail":
        assert isinstance(reports[-1], Fail)
        assert "boom" in reports[-1].reason
        assert "k" not in core
    else:
        assert reports[0] == RunningState("k", "j")


def test_throttled_waits_only_the_short_delay() -> None:
    core, clock = make()
    core.add("k", request())
    submits(core)
    assert core.submit_result("k", SubmitOutcome.WAIT) == []
    assert submits(core) == []
    clock.now += 0.5
    assert len(submits(core)) == 1


def test_ambiguous_submit_looks_before_resubmitting() -> None:
    core, clock = make(max_attempts=3)
    core.add("k", request())
    submits(core)
    (event,) = core.submit_result("k", SubmitOutcome.AMBIGUOUS, reason="HTTP 503", sent_at_ms=5_000_000)
    assert isinstance(event, TaskEvent)
    clock.now += 2
    (cmd,) = submits(core)
    assert cmd.lookup_after_ms == 5_000_000 - 60_000
    assert not cmd.lookup_only
    # The lookup found the job created by the ambiguous call: no new attempt, no second job.
    reports = core.submit_result("k", SubmitOutcome.OK, job_id="j1", found=True)
    assert reports[0] == RunningState("k", "j1")
    assert submits(core) == []


def test_ambiguous_last_attempt_only_looks_then_fails_when_not_found() -> None:
    core, clock = make(max_attempts=1)
    core.add("k", request())
    submits(core)
    core.submit_result("k", SubmitOutcome.AMBIGUOUS, reason="read timeout", sent_at_ms=10_000_000)
    clock.now += 100
    (cmd,) = submits(core)
    assert cmd.lookup_only
    reports = core.submit_result("k", SubmitOutcome.FAILED, reason="no job found")
    assert isinstance(reports[-1], Fail)
    assert "read timeout" not in reports[-1].reason or "no job found" in reports[-1].reason


@pytest.mark.parametrize(
    ("phase", "expected_terminates"),
    [
        pytest.param("pending", [], id="pending-just-dropped"),
        pytest.param("submitted", [Terminate("j1", "Task revoked by Airflow")], id="submitted-terminated"),
        pytest.param("running", [Terminate("j1", "Task revoked by Airflow")], id="running-terminated"),
    ],
)
def test_revoke(phase: str, expected_terminates: list[Terminate]) -> None:
    core, _ = make()
    core.add("k", request())
    if phase != "pending":
        submit_ok(core, "k", "j1")
        core.commands()
        if phase == "running":
            core.job_seen(JobView("j1", "RUNNING"))
    core.revoke("k")
    assert [c for c in core.commands() if isinstance(c, Terminate)] == expected_terminates
    assert "k" not in core
    assert submits(core) == []


def test_revoke_while_submitting_terminates_the_job_that_appears() -> None:
    core, _ = make()
    core.add("k", request())
    submits(core)
    core.revoke("k")
    assert core.submit_result("k", SubmitOutcome.OK, job_id="j9") == []
    assert next(c for c in core.commands() if isinstance(c, Terminate)).job_id == "j9"
    assert "k" not in core


@pytest.mark.parametrize(
    ("status", "report_type"),
    [
        pytest.param("RUNNING", None, id="live-running-kept"),
        pytest.param("RUNNABLE", None, id="live-runnable-kept"),
        pytest.param("SUCCEEDED", Success, id="finished-success-reported"),
        pytest.param("FAILED", Fail, id="finished-failed-reported-not-resubmitted"),
    ],
)
def test_adopt(status: str, report_type: type | None) -> None:
    core, clock = make()
    core.adopt("k", "old-job")
    assert core.commands() == [Track("old-job", None)]
    reports = core.job_seen(JobView("old-job", status))
    if report_type is None:
        assert reports == []
        assert core.job_id("k") == "old-job"
    else:
        assert isinstance(reports[-1], report_type)
    clock.now += 1000
    assert submits(core) == []


@pytest.mark.parametrize(
    ("adopted", "moved_on"),
    [
        pytest.param(True, True, id="adopted-held-back"),
        pytest.param(False, False, id="own-submission-reported"),
    ],
)
def test_an_adopted_jobs_success_for_a_try_queued_again_is_held_back(adopted: bool, moved_on: bool) -> None:
    """A scheduler died after queueing a sensor's next poke, before submitting it; the next one adopts
    the id Airflow saved, the previous poke's job, which SUCCEEDED. Reported, Airflow 3.3 reads that
    SUCCESS for a QUEUED try as the task killed externally and fails the try (seen in make chaos
    with one-second pokes, which beat adoption's creation-time allowance)."""
    core, _ = make()
    ti_id = "00000000-0000-0000-0000-000000000007"
    if adopted:
        core.adopt("k", "j1", ti_id=ti_id, try_number=1)
    else:
        core.add("k", request(), ti_id=ti_id, try_number=1)
        assert len(submits(core)) == 1
        core.submit_result("k", SubmitOutcome.OK, job_id="j1")
    reports = core.job_seen(JobView("j1", "SUCCEEDED", queued_again=True))
    assert reports == [Success("k", "j1", moved_on=moved_on)]
    assert "k" not in core


def test_missing_job_fails_the_task() -> None:
    core, _ = make()
    core.adopt("k", "gone")
    reports = core.job_missing("gone")
    assert isinstance(reports[-1], Fail)
    assert "gone" in reports[-1].reason


def test_commands_limit_and_terminate_all() -> None:
    core, _ = make()
    for i in range(5):
        core.add(i, request(f"n{i}"))
    submits_limit = [c for c in core.commands(limit=2) if isinstance(c, Submit)]
    assert len(submits_limit) == 2
    for cmd in submits_limit:
        core.submit_result(cmd.key, SubmitOutcome.OK, job_id=f"j{cmd.key}")
    counts = core.counts()
    assert (counts.pending, counts.submitted) == (3, 2)
    assert sorted(t.job_id for t in core.terminate_all("shutdown")) == ["j0", "j1"]
    assert len(core) == 0


@pytest.mark.parametrize(
    ("started", "expected_job"),
    [
        pytest.param(True, "j1", id="started-then-failed"),
        pytest.param(False, "j1", id="failed-before-start-last-attempt"),
    ],
)
def test_failed_job_report_names_job_and_log_file(started: bool, expected_job: str) -> None:
    core, _ = make(max_attempts=1)
    core.add("k", request(), log_path="dag_id=d/attempt=1.log")
    submit_ok(core, "k", "j1")
    fail = core.job_seen(JobView("j1", "FAILED", started=started))[-1]
    assert isinstance(fail, Fail)
    assert (fail.job_id, fail.log_path) == (expected_job, "dag_id=d/attempt=1.log")


def test_submit_failure_report_has_no_job() -> None:
    core, _ = make(max_attempts=1)
    core.add("k", request(), log_path="x.log")
    submits(core)
    fail = core.submit_result("k", SubmitOutcome.FAILED, reason="ClientException")[-1]
    assert isinstance(fail, Fail)
    assert (fail.job_id, fail.log_path) == (None, None)


@pytest.mark.parametrize(
    "old_status",
    [
        # A deferred task resuming, or a sensor in reschedule mode poking again: the old job ran
        # the task and is ending; it is neither watched nor killed.
        pytest.param("RUNNING", id="resumed-after-defer-old-job-running"),
        pytest.param("FAILED-started", id="requeued-while-start-checked"),
        # The task started and deferred between two polls: the poller never saw it RUNNING.
        pytest.param("RUNNABLE", id="requeued-old-job-start-not-seen"),
    ],
)
def test_same_key_queued_again_replaces_the_old_workload(old_status: str) -> None:
    core, _ = make()
    core.add("k", request("old"), ti_id=TI_ID, try_number=1)
    submit_ok(core, "k", "j1")
    core.commands()
    if old_status == "FAILED-started":
        core.job_seen(JobView("j1", "RUNNING"))
        core.job_seen(JobView("j1", "FAILED", status_reason=HOST_LOST))
    else:
        core.job_seen(JobView("j1", old_status))
    core.commands()
    core.add("k", request("new"), ti_id=TI_ID, try_number=1)
    commands = core.commands()
    assert [c for c in commands if isinstance(c, Terminate)] == []
    (cmd,) = [c for c in commands if isinstance(c, Submit)]
    assert bare(cmd.request) == request("new")
    # The old job's end is not the new workload's end.
    assert core.job_seen(JobView("j1", "SUCCEEDED")) == []
    assert core.start_checked("k", False) == []
    assert core.submit_result("k", SubmitOutcome.OK, job_id="j2") == [RunningState("k", "j2")]
    assert core.job_seen(JobView("j2", "SUCCEEDED")) == [Success("k", "j2")]


@pytest.mark.parametrize(
    ("old_outcome", "expected_terminates"),
    [
        pytest.param(SubmitOutcome.OK, ["j1"], id="old-submit-ok-terminated"),
        pytest.param(SubmitOutcome.FAILED, [], id="old-submit-failed"),
        pytest.param(SubmitOutcome.WAIT, [], id="old-submit-throttled"),
    ],
)
def test_revoked_while_submitting_then_queued_again_submits_the_new_workload(
    old_outcome: SubmitOutcome, expected_terminates: list[str]
) -> None:
    # Airflow revokes a task stuck in queued and reschedules it on the same try (same key), while
    # the old SubmitJob waits for the rate limiter or is in flight.
    core, _ = make()
    core.add("k", request("old"))
    submits(core)
    core.revoke("k")
    core.add("k", request("new"))
    assert submits(core) == []  # one SubmitJob in flight per key
    job_id = "j1" if old_outcome is SubmitOutcome.OK else None
    assert core.submit_result("k", old_outcome, job_id=job_id) == []
    commands = core.commands()
    assert [c.job_id for c in commands if isinstance(c, Terminate)] == expected_terminates
    (cmd,) = [c for c in commands if isinstance(c, Submit)]
    assert bare(cmd.request) == request("new")
    assert core.submit_result("k", SubmitOutcome.OK, job_id="j2") == [RunningState("k", "j2")]


def test_revoked_again_before_the_old_submit_returns_submits_nothing() -> None:
    core, _ = make()
    core.add("k", request("old"))
    submits(core)
    core.revoke("k")
    core.add("k", request("new"))
    core.revoke("k")
    core.submit_result("k", SubmitOutcome.OK, job_id="j1")
    assert [c.job_id for c in core.commands() if isinstance(c, Terminate)] == ["j1"]
    assert "k" not in core


@pytest.mark.parametrize(
    "status",
    [pytest.param("", id="missing-status"), pytest.param("CANCELLED", id="unexpected-status")],
)
def test_unknown_status_is_reported_once_and_the_job_still_watched(status: str) -> None:
    core, _ = make()
    core.add("k", request())
    submit_ok(core, "k", "j1")
    (event,) = core.job_seen(JobView("j1", status))
    assert isinstance(event, TaskEvent) and event.event == "aws_batch_job_unknown_status"
    assert "j1" in event.extra and "unknown status" in event.extra
    assert core.job_seen(JobView("j1", status)) == []
    assert core.job_seen(JobView("j1", "SUCCEEDED")) == [Success("k", "j1")]


# ----------------------------------------------------------------- one submission, one job
def test_each_submit_carries_a_new_submission_tag() -> None:
    core, clock = make()
    core.add("k", request())
    (first,) = submits(core)
    core.submit_result("k", SubmitOutcome.FAILED, reason="400")
    clock.now += 100
    (second,) = submits(core)
    assert (first.request["tags"][SUBMISSION_TAG], second.request["tags"][SUBMISSION_TAG]) == ("s1", "s2")


def test_lookup_after_ambiguous_calls_asks_only_for_their_submissions() -> None:
    # A resubmit, a reschedule poke or a deferral resume reuses the task's name and tags: the lookup
    # must require the ambiguous calls' own tags, never just the name and task tags.
    core, clock = make(max_attempts=5)
    core.add("k", request())
    submits(core)  # s1
    core.submit_result("k", SubmitOutcome.AMBIGUOUS, reason="503", sent_at_ms=1_000_000)
    clock.now += 100
    (lookup,) = submits(core)  # s2: look for s1's job, else submit as s2
    assert lookup.lookup_submissions == ("s1",)
    core.submit_result("k", SubmitOutcome.AMBIGUOUS, reason="reset", sent_at_ms=2_000_000)
    clock.now += 100
    (again,) = submits(core)
    assert again.lookup_submissions == ("s1", "s2")
    assert again.request["tags"][SUBMISSION_TAG] == "s3"
    core.submit_result("k", SubmitOutcome.OK, job_id="j1")
    core.job_seen(JobView("j1", "FAILED", "CannotPullContainerError"))
    clock.now += 100
    (resubmit,) = submits(core)
    assert resubmit.lookup_after_ms is None and resubmit.lookup_submissions == ()


@pytest.mark.parametrize("how", ["revoke", "requeue", "fail"])
def test_a_workload_dropped_with_an_unresolved_ambiguous_submit_terminates_what_it_may_have_created(
    how: str,
) -> None:
    core, clock = make(max_attempts=1 if how == "fail" else 3)
    core.add("k", request())
    submits(core)
    core.submit_result("k", SubmitOutcome.AMBIGUOUS, reason="503", sent_at_ms=5_000_000)
    if how == "revoke":
        core.revoke("k", "Revoked by Airflow")
    elif how == "requeue":
        core.add("k", request())
    else:
        clock.now += 100
        (cmd,) = submits(core)
        assert cmd.lookup_only
        core.submit_result("k", SubmitOutcome.FAILED, reason="no job found")
    (found,) = [c for c in core.commands() if isinstance(c, TerminateLookup)]
    assert (found.job_queue, found.job_name, found.created_after_ms, found.submissions) == (
        "q",
        "airflow-dag-task",
        5_000_000 - 60_000,
        ("s1",),
    )


def test_revoked_while_an_ambiguous_submit_was_in_flight_looks_its_job_up_to_terminate_it() -> None:
    core, _ = make()
    core.add("k", request())
    submits(core)
    core.revoke("k")
    assert core.submit_result("k", SubmitOutcome.AMBIGUOUS, reason="503", sent_at_ms=9_000_000) == []
    (found,) = [c for c in core.commands() if isinstance(c, TerminateLookup)]
    assert found.submissions == ("s1",)
    assert "k" not in core


def test_a_plain_revoke_looks_nothing_up() -> None:
    core, _ = make()
    core.add("k", request())
    submits(core)
    core.submit_result("k", SubmitOutcome.FAILED, reason="400")
    core.revoke("k")
    assert [c for c in core.commands() if isinstance(c, TerminateLookup)] == []


# ----------------------------------------------------------------- shutdown
def test_stop_submitting_sends_nothing_more_but_in_flight_calls_still_report() -> None:
    core, clock = make()
    core.add("a", request("a"))
    core.add("b", request("b"))
    assert len(submits(core)) == 2
    core.submit_result("b", SubmitOutcome.FAILED, reason="500")
    core.stop_submitting()
    assert core.in_flight() == 1
    clock.now += 1000
    assert submits(core) == []  # b's retry is not sent
    assert core.submit_result("a", SubmitOutcome.OK, job_id="ja") == [RunningState("a", "ja")]
    assert core.in_flight() == 0
    assert not core.job_started("a")
    core.commands()
    core.job_seen(JobView("ja", "RUNNING"))
    assert core.job_started("a")
    assert core.tracks_job("ja")


# ----------------------------------------------------------------- expired tokens
@pytest.mark.parametrize(
    ("expires_in", "resubmitted"),
    [
        pytest.param(600.0, True, id="token-still-valid"),
        pytest.param(1.0, False, id="token-expires-before-the-resubmit"),
        pytest.param(None, True, id="expiry-unknown"),
    ],
)
def test_a_resubmit_whose_token_has_expired_fails_the_task_instead(
    expires_in: float | None, resubmitted: bool
) -> None:
    core, clock = make()
    core.add("k", request(), expires_at=None if expires_in is None else clock.now + expires_in)
    submit_ok(core, "k", "j1")
    core.commands()
    reports = core.job_seen(JobView("j1", "FAILED", "CannotPullContainerError: pull access denied"))
    if resubmitted:
        assert "k" in core
        clock.now += 100
        assert len(submits(core)) == 1
        return
    fail = reports[-1]
    assert isinstance(fail, Fail)
    assert "token" in fail.reason and "task_queued_timeout" in fail.reason
    assert "CannotPullContainerError" in fail.reason
    assert "k" not in core


def test_a_submit_error_with_an_expired_token_is_not_retried() -> None:
    core, clock = make()
    core.add("k", request(), expires_at=clock.now + 1.0)
    submits(core)
    reports = core.submit_result("k", SubmitOutcome.FAILED, reason="ClientException: queue disabled")
    assert isinstance(reports[-1], Fail) and "token" in reports[-1].reason


def test_adopted_job_that_failed_before_start_is_resubmitted_from_its_rebuilt_request() -> None:
    core, clock = make(max_attempts=2)
    rebuilt = request()
    ti_id = "00000000-0000-0000-0000-000000000001"
    core.adopt("k", "old", request=rebuilt, started=False, ti_id=ti_id)
    assert core.commands() == [Track("old", None, uuid.UUID(ti_id).bytes)]
    reports = core.job_seen(JobView("old", "FAILED", status_reason="CannotPullContainerError"))
    assert [r.event for r in reports if isinstance(r, TaskEvent)] == ["aws_batch_job_failed_before_start"]
    assert not any(isinstance(r, Fail) for r in reports)
    clock.now += 1000
    (sent,) = submits(core)
    assert bare(sent.request) == rebuilt
    # The adopted job was one attempt: the resubmit is the last of two.
    core.submit_result("k", SubmitOutcome.OK, job_id="new")
    reports = core.job_seen(JobView("new", "FAILED", status_reason="CannotPullContainerError"))
    assert isinstance(reports[-1], Fail)
    assert "no submit attempts left (2 of 2)" in reports[-1].reason


def test_adopted_job_that_started_and_failed_is_checked_when_it_can_be_resubmitted() -> None:
    core, _ = make()
    ti_id = "00000000-0000-0000-0000-000000000002"
    core.adopt("k", "old", request=request(), started=True, ti_id=ti_id, try_number=3)
    core.commands()
    assert core.job_seen(JobView("old", "FAILED", status_reason=HOST_LOST)) == []
    assert [(c.key, c.ti_id, c.try_number) for c in core.commands() if isinstance(c, CheckStarted)] == [
        ("k", ti_id, 3)
    ]


def test_adopted_job_without_a_request_fails_before_start_as_before() -> None:
    core, clock = make()
    core.adopt("k", "old", started=False)
    core.commands()
    reports = core.job_seen(JobView("old", "FAILED", status_reason="CannotPullContainerError"))
    assert isinstance(reports[-1], Fail)
    clock.now += 1000
    assert submits(core) == []


def test_a_stalled_submit_backs_off_without_counting_and_stops_at_the_tokens_expiry() -> None:
    core, clock = make(max_attempts=1)
    core.add("k", request(), expires_at=clock.now + 20)
    delays = []
    for _ in range(3):
        (sent,) = submits(core)
        reports = core.submit_result(sent.key, SubmitOutcome.STALLED, reason="workload store: 503")
        assert [type(r) for r in reports] == [TaskEvent]
        assert core.attempts("k") == 0
        delays.append(core.next_due() - clock.now)  # type: ignore[operator]
        clock.now += delays[-1]
    assert delays == [2.0, 4.0, 8.0]  # like the backoff after failed attempts
    (sent,) = submits(core)
    reports = core.submit_result(sent.key, SubmitOutcome.STALLED, reason="workload store: 503")
    assert isinstance(reports[-1], Fail)
    assert "workload store: 503" in reports[-1].reason and "token" in reports[-1].reason


def test_a_success_after_airflow_moved_the_try_on_is_marked_so() -> None:
    core, _ = make()
    ti_id = "00000000-0000-0000-0000-000000000003"
    core.add("k", request(), ti_id=ti_id, try_number=2)
    assert len(submits(core)) == 1
    core.submit_result("k", SubmitOutcome.OK, job_id="j1")
    # The poller learns which try the job runs, to ask Airflow about it when it succeeds.
    assert Track("j1", "q", uuid.UUID(ti_id).bytes, 2) in core.commands()
    reports = core.job_seen(JobView("j1", "SUCCEEDED", moved_on=True))
    assert reports == [Success("k", "j1", moved_on=True)]
    assert "k" not in core
