"""Infrastructure failures and stuck jobs, end to end: AwsBatchExecutor in-process against localbatch.

localbatch sets RUNNABLE reasons late (``runnable_reason_delay_seconds``), as Batch does, and loses
hosts or times attempts out as faults; the executor must name the cause in the task's log and
metrics, fail a task whose job can never be placed after its grace, and never fail one that only
waits for capacity.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import LocalBatchServer

from ._airflow import FastExecutor, Recorder, configure, recording_stats, task_workload

pytestmark = pytest.mark.contract

QUEUE = "failures-queue"
DEFINITION = "failures-def"
MAX_VCPUS = 4


@pytest.fixture(scope="module")
def localbatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBatchServer]:
    server = LocalBatchServer(tmp_path_factory.mktemp("localbatch"), args=["--kill-grace-seconds", "1"])
    with server:
        server.setup(
            compute_environment="failures-ce", job_queue=QUEUE, job_definition=DEFINITION, max_vcpus=MAX_VCPUS
        )
        yield server


@pytest.fixture
def start(localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    executors: list[FastExecutor] = []

    def start(faults: dict[str, Any], **options: str) -> FastExecutor:
        localbatch.set_faults(faults)
        configure(monkeypatch, localbatch, job_queue=QUEUE, job_definition=DEFINITION, **options)
        executor = FastExecutor(parallelism=8)
        executor.start()
        executors.append(executor)
        return executor

    try:
        yield start
    finally:
        for executor in executors:
            executor.terminate()
        localbatch.set_faults({})


class RecordingStats:
    def __init__(self) -> None:
        self.incrs: list[str] = []

    def incr(self, stat: str, count: int = 1, **_: Any) -> None:
        self.incrs.append(stat)

    def decr(self, stat: str, count: int = 1, **_: Any) -> None:
        pass

    def gauge(self, stat: str, value: float, **_: Any) -> None:
        pass

    def timing(self, stat: str, dt: Any, **_: Any) -> None:
        pass


def test_a_job_no_compute_environment_can_run_fails_after_the_grace_and_capacity_never_does(
    start: Any, localbatch: LocalBatchServer
) -> None:
    grace = 2
    executor = start(
        {
            "runnable_reason_delay_seconds": 1.0,
            "rules": [{"job_name_contains": "waits_for_capacity", "fault": "hold_runnable"}],
        },
        misconfiguration_grace_seconds=str(grace),
    )
    rec = Recorder(executor)
    huge = task_workload(
        "too_big",
        executor_config={"containerOverrides": {"resourceRequirements": [{"type": "VCPU", "value": "64"}]}},
    )
    waiting = task_workload("waits_for_capacity")
    executor.queue_workload(huge, session=None)  # type: ignore[arg-type]
    executor.queue_workload(waiting, session=None)  # type: ignore[arg-type]

    seen_reason: dict[str, float] = {}

    def huge_failed() -> bool:
        if "seen" not in seen_reason and any("MISCONFIGURATION:" in e for e in rec.task_events(huge.ti.key)):
            seen_reason["seen"] = time.monotonic()
        return "failed" in rec.states(huge.ti.key)

    rec.until(huge_failed, timeout=60, what="the too-large task to fail")
    failed_at = time.monotonic()
    assert "seen" in seen_reason, rec.task_events(huge.ti.key)  # the reason reached the event log first
    assert failed_at - seen_reason["seen"] >= grace - 0.5  # not before the grace
    job_id = rec.info(huge.ti.key, "running")
    failure = next(e for e in rec.task_events(huge.ti.key) if e.startswith("aws_batch_task_failed"))
    assert "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - " in failure
    assert job_id in failure
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        (job,) = localbatch.batch.describe_jobs(jobs=[job_id])["jobs"]
        if job["status"] == "FAILED":
            break
        rec.beat()
        time.sleep(0.2)
    assert job["status"] == "FAILED", job  # the job is terminated, not left in the queue

    # The capacity-held task outlives several graces: it is never failed, and its reason is said once.
    until = time.monotonic() + 2 * grace + 1
    while time.monotonic() < until:
        rec.beat()
        time.sleep(0.1)
    assert rec.states(waiting.ti.key) == ["running"], rec.task_events(waiting.ti.key)
    capacity = [e for e in rec.task_events(waiting.ti.key) if "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY" in e]
    assert len(capacity) == 1, rec.task_events(waiting.ti.key)
    assert capacity[0].startswith("aws_batch_job_runnable: ")


@pytest.mark.parametrize(
    ("faults", "executor_config", "cause", "label", "batch_says"),
    [
        pytest.param(
            {"rules": [{"job_name_contains": "reclaimed", "fault": "host_lost", "after_seconds": 0.5}]},
            None,
            "spot_reclaim",
            "Spot reclaim",
            "Host EC2 (instance i-",
            id="spot-reclaim",
        ),
        pytest.param(
            {
                "rules": [
                    {
                        "job_name_contains": "reclaimed",
                        "fault": "host_lost",
                        "after_seconds": 0.5,
                        "reason": "Host EC2 (instance i-0123456789abcdef0) stopped.",
                    }
                ]
            },
            None,
            "host_lost",
            "host lost",
            "Host EC2 (instance i-0123456789abcdef0) stopped.",
            id="host-lost",
        ),
        pytest.param(
            {},
            {"timeout": {"attemptDurationSeconds": 1}},
            "attempt_timeout",
            "attempt timeout",
            "Job attempt duration exceeded timeout",
            id="attempt-timeout",
        ),
    ],
)
def test_a_job_that_failed_after_its_task_started_says_why_in_the_task_log_and_is_counted(
    *,
    start: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    faults: dict[str, Any],
    executor_config: dict[str, Any] | None,
    cause: str,
    label: str,
    batch_says: str,
) -> None:
    monkeypatch.setenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(tmp_path))
    log_file = "dag_id=dag/run_id=manual__1/task_id=reclaimed/attempt=1.log"
    task_log = tmp_path / log_file
    task_log.parent.mkdir(parents=True)
    # What the task itself wrote before its host went away.
    task_log.write_text(json.dumps({"event": "task started", "logger": "task"}) + "\n")
    recording = RecordingStats()
    executor = start({**faults, "simulate": {"seconds": None}})
    with recording_stats(recording):  # after start(), which sets Airflow's Stats up
        rec = Recorder(executor)
        w = task_workload("reclaimed", log_path=log_file, executor_config=executor_config)
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        rec.until(lambda: "failed" in rec.states(w.ti.key), timeout=60, what="the task to fail")
        job_id = rec.info(w.ti.key, "running")
        metric = f"aws_batch_executor.job_failures.{cause}"
        rec.until(
            lambda: metric in recording.incrs and len(task_log.read_text().splitlines()) > 1,
            timeout=20,
            what="the cause in the log and the metric",
        )
    lines = [json.loads(line) for line in task_log.read_text().splitlines()]
    assert lines[0]["event"] == "task started"  # the task's own log is kept, the cause comes last
    last = lines[-1]["event"]
    assert last.startswith(f"AWS Batch job {job_id} failed after it started: {label} ("), last
    assert batch_says in last
    assert [m for m in recording.incrs if ".job_failures." in m] == [metric]
