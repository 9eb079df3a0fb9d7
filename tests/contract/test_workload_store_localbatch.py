"""AwsBatchExecutor with ``workload_store=file://...`` in-process against localbatch (real HTTP)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_aws_batch.workload_rules import LAUNCH_MODULE, decode_object
from airflow_aws_batch.workloads import read_object
from devstack import LocalBatchServer

from ._airflow import FastExecutor, Recorder, configure, task_workload

pytestmark = pytest.mark.contract

QUEUE = "store-queue"
DEFINITION = "store-def"
HOLD = {"rate": 0.0, "reason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - held by test"}


@pytest.fixture(scope="module")
def localbatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBatchServer]:
    server = LocalBatchServer(tmp_path_factory.mktemp("localbatch"), args=["--kill-grace-seconds", "1"])
    with server:
        server.setup(compute_environment="store-ce", job_queue=QUEUE, job_definition=DEFINITION)
        yield server


@contextlib.contextmanager
def started(
    localbatch: LocalBatchServer,
    monkeypatch: pytest.MonkeyPatch,
    faults: dict[str, Any],
    store: str,
    s3_endpoint: str | None = None,
    **options: str,
) -> Iterator[FastExecutor]:
    localbatch.set_faults(faults)
    configure(
        monkeypatch,
        localbatch,
        job_queue=QUEUE,
        job_definition=DEFINITION,
        workload_store=store,
        s3_endpoint=s3_endpoint,
        **options,
    )
    executor = FastExecutor(parallelism=16)
    executor.start()
    try:
        yield executor
    finally:
        executor.terminate()
        localbatch.set_faults({})


def _jobs(localbatch: LocalBatchServer, task_id: str) -> list[dict[str, Any]]:
    batch = localbatch.batch
    # A job that moves on between two ListJobs calls (STARTING, then FAILED) is listed twice: once each.
    ids = list(
        dict.fromkeys(
            summary["jobId"]
            for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
            for summary in batch.list_jobs(jobQueue=QUEUE, jobStatus=status)["jobSummaryList"]
        )
    )
    jobs = batch.describe_jobs(jobs=ids)["jobs"] if ids else []
    return sorted(
        (job for job in jobs if job["tags"].get("task_id") == task_id), key=lambda job: job["createdAt"]
    )


def test_the_job_names_its_stored_workload_and_the_token_stays_out(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    faults = {"hold_runnable": HOLD, "rules": [{"job_name_contains": "kept_out", "fault": "hold_runnable"}]}
    with started(localbatch, monkeypatch, faults, f"file://{tmp_path}/store") as executor:
        rec = Recorder(executor)
        workload = task_workload("kept_out")
        workload.token = "header.payload-that-must-stay-secret.signature"
        executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
        rec.until(lambda: bool(rec.states(workload.ti.key)), timeout=60, what="the job's id")
        assert rec.states(workload.ti.key) == ["running"], rec.task_events(workload.ti.key)
        (job,) = _jobs(localbatch, "kept_out")
    command = job["container"]["command"]
    assert command[:3] == ["python", "-m", LAUNCH_MODULE]
    url = command[3]
    assert url.startswith(f"file://{tmp_path}/store/") and url.endswith(".json")
    assert workload.token not in json.dumps(job)
    (stored,) = decode_object(read_object(url))
    assert stored["token"] == workload.token
    assert stored["ti"]["id"] == str(workload.ti.id)


def test_a_resubmission_writes_a_fresh_object(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The second job runs (a held job never reaches the fault) and reads its object; the test stops
    # it when the executor is terminated.
    faults = {"rules": [{"job_name_contains": "resubmitted", "fault": "fail_before_start", "times": 1}]}
    with started(localbatch, monkeypatch, faults, f"file://{tmp_path}") as executor:
        rec = Recorder(executor)
        workload = task_workload("resubmitted")
        executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
        rec.until(lambda: len(_jobs(localbatch, "resubmitted")) == 2, timeout=90, what="a second job")
        first, second = _jobs(localbatch, "resubmitted")
    assert first["status"] == "FAILED"
    first_url, second_url = first["container"]["command"][3], second["container"]["command"][3]
    assert first_url != second_url
    assert second_url.startswith(f"file://{tmp_path}/")
    # The first object was never read (its job failed before start): still there, for the lifecycle.
    assert decode_object(read_object(first_url))[0]["ti"]["id"] == str(workload.ti.id)


def test_a_store_that_cannot_be_written_fails_the_task_with_the_reason(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    # The startup check would refuse this store (see below); without it, each submit finds out.
    with started(
        localbatch, monkeypatch, {}, f"file://{blocker}", check_health_on_startup="False"
    ) as executor:
        rec = Recorder(executor)
        workload = task_workload("unwritable")
        executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
        rec.until(lambda: "failed" in rec.states(workload.ti.key), timeout=60, what="the task to fail")
        events = rec.task_events(workload.ti.key)
    assert rec.states(workload.ti.key) == ["failed"]
    assert _jobs(localbatch, "unwritable") == []
    assert any(
        f"workload store: could not write under {blocker}: not a directory" in event for event in events
    ), events
    assert "SubmitJob failed 3 times" in rec.info(workload.ti.key, "failed")


def test_a_refused_submit_leaves_no_object(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with started(localbatch, monkeypatch, {}, f"file://{tmp_path}") as executor:
        rec = Recorder(executor)
        workload = task_workload("refused", executor_config={"jobQueue": "no-such-queue"})
        executor.queue_workload(workload, session=None)  # type: ignore[arg-type]
        rec.until(lambda: "failed" in rec.states(workload.ti.key), timeout=60, what="the task to fail")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_the_startup_check_refuses_a_store_it_cannot_write(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_aws_batch.wiring import HealthCheckFailed

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    configure(
        monkeypatch,
        localbatch,
        job_queue=QUEUE,
        job_definition=DEFINITION,
        workload_store=f"file://{blocker}",
    )
    executor = FastExecutor(parallelism=1)
    with pytest.raises(HealthCheckFailed) as caught:
        executor.start()
    assert f"workload_store: file://{blocker}: could not write under {blocker}: not a directory" in str(
        caught.value
    )
    assert executor.runtime is None


def test_a_store_outage_backs_off_without_spending_attempts(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.server import ThreadedMotoServer

    from devstack import aws_client
    from devstack.procs import free_port

    # S3 cannot be reached at first (connection refused: retryable), then comes back.
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    faults = {"hold_runnable": HOLD, "rules": [{"job_name_contains": "outage", "fault": "hold_runnable"}]}
    with started(
        localbatch,
        monkeypatch,
        faults,
        "s3://outage-bucket/w",
        s3_endpoint=endpoint,
        check_health_on_startup="False",
        max_submit_job_attempts="2",
    ) as executor:
        rec = Recorder(executor)
        workload = task_workload("outage")
        executor.queue_workload(workload, session=None)  # type: ignore[arg-type]

        def stalls() -> int:
            return sum("aws_batch_submit_stalled" in event for event in rec.task_events(workload.ti.key))

        # More failed writes than max_submit_job_attempts allows attempts.
        rec.until(lambda: stalls() >= 3, timeout=60, what="the store's failures")
        assert rec.states(workload.ti.key) == []
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            aws_client("s3", endpoint).create_bucket(Bucket="outage-bucket")
            rec.until(lambda: bool(rec.states(workload.ti.key)), timeout=60, what="the job once S3 is back")
            assert rec.states(workload.ti.key) == ["running"], rec.task_events(workload.ti.key)
            (job,) = _jobs(localbatch, "outage")
            assert job["container"]["command"][3].startswith("s3://outage-bucket/w/")
            localbatch.batch.terminate_job(jobId=job["jobId"], reason="test cleanup")
        finally:
            server.stop()
