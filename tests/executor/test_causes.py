"""Naming infrastructure failures, timing jobs stuck for a misconfiguration, and giving up on them."""

from __future__ import annotations

import pytest

from airflow_aws_batch.core import BackoffPolicy, Core, Fail, JobView, SubmitOutcome, TaskEvent, Terminate
from airflow_aws_batch.core.causes import (
    Cause,
    StuckJobs,
    classify,
    failure_line,
    is_capacity,
    is_misconfiguration,
)
from airflow_aws_batch.core.messages import Submit


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[Core, Clock]:
    clock = Clock()
    return Core(max_attempts=3, clock=clock, backoff=BackoffPolicy(base_s=2, max_s=30, wait_s=0.5)), clock


def request() -> dict[str, object]:
    return {"jobName": "airflow-dag-task", "jobQueue": "q", "jobDefinition": "d", "tags": {"task_id": "t"}}


@pytest.mark.parametrize(
    ("status_reason", "container_reason", "exit_code", "cause"),
    [
        pytest.param(
            "Host EC2 (instance i-0123456789abcdef0) terminated.", "", None, Cause.SPOT_RECLAIM, id="ec2-spot"
        ),
        pytest.param("Your Spot Task was interrupted.", "", None, Cause.SPOT_RECLAIM, id="fargate-spot"),
        pytest.param(
            "Host EC2 (instance i-0123456789abcdef0) stopped.", "", None, Cause.HOST_LOST, id="host-stopped"
        ),
        pytest.param(
            "Essential container in task exited",
            "ECS agent disconnected from the container instance",
            None,
            Cause.HOST_LOST,
            id="agent-disconnected",
        ),
        pytest.param(
            "Task stopped",
            "Container instance i-0abc was deregistered",
            None,
            Cause.HOST_LOST,
            id="deregistered",
        ),
        pytest.param(
            "Essential container in task exited",
            "OutOfMemoryError: Container killed due to memory usage",
            137,
            Cause.OUT_OF_MEMORY,
            id="oom-with-reason",
        ),
        pytest.param(
            "Essential container in task exited",
            "OutOfMemoryError: Container killed due to memory usage",
            None,
            Cause.OUT_OF_MEMORY,
            id="oom-no-exit-code",
        ),
        pytest.param(
            "Essential container in task exited",
            "Container exceeded its memory limit",
            137,
            Cause.OUT_OF_MEMORY,
            id="137-memory",
        ),
        pytest.param(
            "Essential container in task exited", "", 137, Cause.OTHER, id="137-alone-is-any-sigkill"
        ),
        pytest.param(
            "Job attempt duration exceeded timeout", "", 137, Cause.ATTEMPT_TIMEOUT, id="timeout-137"
        ),
        pytest.param("Job attempt duration exceeded timeout", "", None, Cause.ATTEMPT_TIMEOUT, id="timeout"),
        pytest.param("Essential container in task exited", "", 1, Cause.OTHER, id="task-exit-1"),
        pytest.param("", "", None, Cause.OTHER, id="nothing-said"),
        pytest.param("Terminated by user", "", 143, Cause.OTHER, id="terminated"),
    ],
)
def test_classify(status_reason: str, container_reason: str, exit_code: int | None, cause: Cause) -> None:
    assert classify(status_reason, container_reason, exit_code) is cause


def test_failure_line_names_cause_reason_and_job() -> None:
    line = failure_line("job-1", Cause.SPOT_RECLAIM, "Host EC2 (instance i-0abc) terminated.", "", None)
    assert line == (
        "AWS Batch job job-1 failed after it started: Spot reclaim "
        "(statusReason: Host EC2 (instance i-0abc) terminated.)"
    )
    oom = failure_line(
        "job-2", Cause.OUT_OF_MEMORY, "Essential container in task exited", "OutOfMemoryError: x", 137
    )
    assert (
        "out of memory" in oom and "container reason: OutOfMemoryError: x" in oom and "exit code: 137" in oom
    )


@pytest.mark.parametrize(
    ("reason", "misconfiguration", "capacity"),
    [
        ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement ...", True, False),
        ("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - CE(s) ...", True, False),
        ("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill ...", False, True),
        ("", False, False),
    ],
)
def test_runnable_reason_kinds(reason: str, misconfiguration: bool, capacity: bool) -> None:
    assert is_misconfiguration(reason) is misconfiguration
    assert is_capacity(reason) is capacity


MISCONFIGURED = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - too big"
CAPACITY = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - none left"


def test_a_misconfiguration_is_stuck_only_after_the_grace_without_a_break() -> None:
    stuck = StuckJobs(300)
    stuck.seen("j1", "RUNNABLE", MISCONFIGURED, now=0)
    stuck.seen("j2", "RUNNABLE", CAPACITY, now=0)
    assert stuck.due(299) == []
    # The reason changed wording but is still a misconfiguration: the clock keeps running.
    stuck.seen("j1", "RUNNABLE", "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - x", now=100)
    (due,) = stuck.due(300)
    assert (due.job_id, due.reason, due.waited_s) == (
        "j1",
        "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - x",
        300,
    )
    assert stuck.due(10_000) == []  # reported once; the capacity-held job never


def test_a_reason_that_goes_away_starts_the_clock_over() -> None:
    stuck = StuckJobs(300)
    stuck.seen("j1", "RUNNABLE", MISCONFIGURED, now=0)
    stuck.seen("j1", "RUNNABLE", "", now=200)  # a scale-up made room, for now
    stuck.seen("j1", "RUNNABLE", MISCONFIGURED, now=250)
    assert stuck.due(500) == []
    assert [s.job_id for s in stuck.due(550)] == ["j1"]
    stuck.seen("j2", "RUNNABLE", MISCONFIGURED, now=0)
    stuck.seen("j2", "STARTING", "", now=10)
    assert stuck.due(1_000) == [] and len(stuck) == 0


def test_grace_zero_turns_it_off() -> None:
    stuck = StuckJobs(0)
    stuck.seen("j1", "RUNNABLE", MISCONFIGURED, now=0)
    assert stuck.due(1e9) == [] and len(stuck) == 0


def submitted(core: Core, key: str, job_id: str) -> None:
    core.add(key, request())
    (cmd,) = [c for c in core.commands() if isinstance(c, Submit)]
    core.submit_result(cmd.key, SubmitOutcome.OK, job_id=job_id)


def test_give_up_terminates_the_job_and_fails_the_task_without_resubmitting() -> None:
    core, clock = make()
    submitted(core, "k", "job-1")
    core.commands()
    core.job_seen(JobView("job-1", "RUNNABLE", MISCONFIGURED))
    reports = core.give_up("job-1", MISCONFIGURED)
    assert [type(r) for r in reports] == [TaskEvent, Fail]
    assert reports[1].reason == MISCONFIGURED
    assert Terminate("job-1", f"Task failed: {MISCONFIGURED}") in core.commands()
    assert "k" not in core
    clock.now += 3600
    assert core.commands() == []  # nothing resubmitted
    assert core.give_up("job-1", MISCONFIGURED) == []  # no longer tracked


def test_give_up_leaves_a_job_that_started_alone() -> None:
    core, _ = make()
    submitted(core, "k", "job-1")
    core.job_seen(JobView("job-1", "RUNNING", started=True))
    assert core.give_up("job-1", MISCONFIGURED) == []
    assert "k" in core
