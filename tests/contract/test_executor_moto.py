"""AwsBatchExecutor in-process against moto's server over real HTTP (moto's simple Batch: jobs succeed)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_aws_batch import compat

from ._airflow import FastExecutor, Recorder, configure, recording_stats, task_workload
from .conftest import BatchResources, Moto, create_resources

pytestmark = pytest.mark.contract


@pytest.fixture
def executor(
    moto_server: Moto, batch_resources: BatchResources, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FastExecutor]:
    configure(
        monkeypatch,
        moto_server.url,
        job_queue=batch_resources.job_queue,
        job_definition=batch_resources.job_definition,
    )
    executor = FastExecutor(parallelism=64)
    executor.start()
    try:
        yield executor
    finally:
        executor.terminate()


def test_tasks_run_and_report_job_ids(executor: FastExecutor, moto_server: Moto) -> None:
    rec = Recorder(executor)
    work = [task_workload(f"task_{i}") for i in range(5)]
    for w in work:
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
    rec.until(lambda: all("success" in rec.states(w.ti.key) for w in work), what="5 successes")
    batch = moto_server.client("batch")
    for w in work:
        assert rec.states(w.ti.key)[0] == "running"
        job_id = rec.info(w.ti.key, "running")
        (job,) = batch.describe_jobs(jobs=[job_id])["jobs"]
        assert job["jobName"] == f"airflow-dag-{w.ti.task_id}"
        assert job["tags"]["task_id"] == w.ti.task_id
        assert job["tags"]["try_number"] == "1"
        assert rec.info(w.ti.key, "success") == job_id
    assert not executor.running
    assert len(executor.core) == 0


@pytest.mark.parametrize(
    ("executor_config", "expected_in_event"),
    [
        pytest.param({"command": ["echo"]}, "executor_config", id="sets-command"),
        pytest.param({"containerOverrides": {"vcpus": "many"}}, "vcpus", id="wrong-type"),
        pytest.param({"noSuchKey": 1}, "noSuchKey", id="unknown-key"),
    ],
)
def test_bad_executor_config_fails_only_that_task(
    executor: FastExecutor, executor_config: dict[str, Any], expected_in_event: str
) -> None:
    rec = Recorder(executor)
    bad = task_workload("bad", executor_config=executor_config)
    good = task_workload("good")
    executor.queue_workload(bad, session=None)  # type: ignore[arg-type]
    executor.queue_workload(good, session=None)  # type: ignore[arg-type]
    rec.until(lambda: "success" in rec.states(good.ti.key), what="the good task")
    assert rec.states(bad.ti.key) == ["failed"]
    (event,) = rec.task_events(bad.ti.key)
    assert expected_in_event in event


def test_submit_client_error_retried_then_failed_with_reason(executor: FastExecutor) -> None:
    rec = Recorder(executor)
    w = task_workload("unknown_queue", executor_config={"jobQueue": "no-such-queue"})
    executor.queue_workload(w, session=None)  # type: ignore[arg-type]
    rec.until(lambda: "failed" in rec.states(w.ti.key), what="the failure")
    events = rec.task_events(w.ti.key)
    assert sum("aws_batch_submit_failed" in e for e in events) == 2  # attempts 1 and 2 of 3
    assert "ClientException" in events[-1] and "3 times" in events[-1]
    assert "ClientException" in rec.info(w.ti.key, "failed")


def test_adopts_jobs_of_a_previous_scheduler(
    executor: FastExecutor, moto_server: Moto, batch_resources: BatchResources
) -> None:
    batch = moto_server.client("batch")
    job_id = batch.submit_job(
        jobName="airflow-dag-adopted",
        jobQueue=batch_resources.job_queue,
        jobDefinition=batch_resources.job_definition,
    )["jobId"]

    class TI:
        # An untagged job: the Amazon provider's executor submitted it before the switch.
        key = task_workload("adopted").ti.key
        dag_id, task_id, run_id, map_index, try_number = key.dag_id, key.task_id, key.run_id, -1, 1
        external_executor_id = job_id

    class Orphan:
        key = task_workload("orphan").ti.key
        dag_id, task_id, run_id, map_index, try_number = key.dag_id, key.task_id, key.run_id, -1, 1
        external_executor_id = None

    ti, orphan = TI(), Orphan()
    assert list(executor.try_adopt_task_instances([ti, orphan])) == [orphan]
    rec = Recorder(executor)
    rec.until(lambda: "success" in rec.states(ti.key), what="the adopted job's end")
    assert rec.states(ti.key) == ["success"]  # neither resubmitted nor re-reported as running


class NetworkGuard:
    """Records any socket connect/send made by the thread it guards."""

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.calls: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("connect", "connect_ex", "send", "sendall", "sendto", "recv", "recv_into"):
            original = getattr(socket.socket, name)

            def guarded(sock: socket.socket, *args: Any, __name: str = name, __orig: Any = original) -> Any:
                if threading.current_thread() is self.thread:
                    self.calls.append(__name)
                return __orig(sock, *args)

            monkeypatch.setattr(socket.socket, name, guarded)


def test_heartbeat_makes_no_network_call(executor: FastExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    guard = NetworkGuard(threading.current_thread())
    guard.install(monkeypatch)
    rec = Recorder(executor)
    work = [task_workload(f"quiet_{i}") for i in range(20)]
    for w in work:
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
    rec.until(lambda: all("success" in rec.states(w.ti.key) for w in work), what="20 successes")
    # The worker threads did talk to moto (the guard sees them too when misapplied)...
    assert guard.calls == []


def test_network_guard_catches_calls_on_its_thread(
    moto_server: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = NetworkGuard(threading.current_thread())
    guard.install(monkeypatch)
    moto_server.client("batch").describe_job_queues()
    assert "connect" in guard.calls


@pytest.mark.parametrize(
    ("queue_state", "expected"),
    [
        pytest.param(None, "does not exist", id="missing-queue"),
        pytest.param("DISABLED", "DISABLED", id="disabled-queue"),
    ],
)
def test_start_refuses_bad_queue(
    moto_server: Moto,
    batch_resources: BatchResources,
    monkeypatch: pytest.MonkeyPatch,
    queue_state: str | None,
    expected: str,
) -> None:
    from airflow_aws_batch.wiring import HealthCheckFailed

    queue = "health-missing-queue"
    if queue_state is not None:
        queue = create_resources(
            moto_server, f"health-{queue_state.lower()}", queue_state=queue_state
        ).job_queue
    configure(monkeypatch, moto_server.url, job_queue=queue, job_definition=batch_resources.job_definition)
    with pytest.raises(HealthCheckFailed) as info:
        FastExecutor().start()
    message = str(info.value)
    assert "us-east-1" in message and queue in message and expected in message


@pytest.mark.skipif(not compat.QUEUES_CALLBACKS, reason="Airflow 3.1 has no callback workloads")
def test_callback_workloads_run_as_jobs(executor: FastExecutor, moto_server: Moto) -> None:
    """3.3 runs a callback in its job; 3.2's task SDK cannot, so the callback fails at once, saying why."""
    import uuid

    from airflow.executors import workloads
    from airflow.executors.workloads.callback import CallbackDTO

    callback = workloads.ExecuteCallback(
        callback=CallbackDTO(
            id=str(uuid.uuid4()), fetch_method="import_path", data={"path": "pkg.mod.notify"}
        ),
        dag_rel_path="dag.py",
        token="token",
        log_path=None,
        bundle_info={"name": "dags", "version": None},
    )
    key = compat.workload_key(callback)
    executor.queue_workload(callback, session=None)  # type: ignore[arg-type]
    rec = Recorder(executor)
    if not compat.RUNS_CALLBACKS:
        rec.until(lambda: "failed" in rec.states(key), what="the callback's refusal")
        assert f"Airflow {compat.version_text()} cannot run callback workloads" in rec.info(key, "failed")
        assert rec.states(key) == ["failed"]  # no job: a submitted one is reported running first
        return
    rec.until(lambda: "success" in rec.states(key), what="the callback's success")
    (job,) = moto_server.client("batch").describe_jobs(jobs=[rec.info(key, "success")])["jobs"]
    assert job["tags"]["callback_id"] == callback.callback.id
    assert "execute_workload" in " ".join(job["container"]["command"])


def test_sync_survives_a_broken_result(executor: FastExecutor) -> None:
    from airflow_aws_batch.runtime import JobsSeen

    assert executor.runtime is not None
    executor.runtime.report(JobsSeen(views=None))  # type: ignore[arg-type]
    executor.sync()  # iterating None raises inside; sync logs it and returns
    rec = Recorder(executor)
    w = task_workload("after_broken")
    executor.queue_workload(w, session=None)  # type: ignore[arg-type]
    rec.until(lambda: "success" in rec.states(w.ti.key), what="the next task")


class RecordingStats:
    """A Stats backend that keeps what it is sent (Airflow's statsd client is not installed here)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def incr(self, stat: str, count: int = 1, **_: Any) -> None:
        self.sent.append(("incr", stat))

    def decr(self, stat: str, count: int = 1, **_: Any) -> None:
        self.sent.append(("decr", stat))

    def gauge(self, stat: str, value: float, **_: Any) -> None:
        self.sent.append(("gauge", stat))

    def timing(self, stat: str, dt: Any, **_: Any) -> None:
        self.sent.append(("timing", stat))

    def timer(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def test_metrics_reach_airflow_stats(executor: FastExecutor) -> None:
    recording = RecordingStats()
    with recording_stats(recording):
        rec = Recorder(executor)
        good = task_workload("measured")
        bad = task_workload("measured_bad", executor_config={"jobQueue": "no-such-queue"})
        executor.queue_workload(good, session=None)  # type: ignore[arg-type]
        executor.queue_workload(bad, session=None)  # type: ignore[arg-type]
        rec.until(
            lambda: "success" in rec.states(good.ti.key) and "failed" in rec.states(bad.ti.key), what="both"
        )
    sent = set(recording.sent)
    for expected in [
        ("incr", "aws_batch_executor.submitted"),
        ("incr", "aws_batch_executor.submit_failures"),
        ("timing", "aws_batch_executor.api_latency.submit_job"),
        ("timing", "aws_batch_executor.api_latency.describe_jobs"),
        ("gauge", "aws_batch_executor.pending"),
        ("gauge", "aws_batch_executor.queued_in_batch"),
        ("gauge", "aws_batch_executor.running"),
    ]:
        assert expected in sent, (expected, sorted(sent))


@pytest.mark.parametrize("store", [False, True], ids=["no-store", "file-store"])
def test_start_warns_while_tokens_travel_in_the_command(
    *,
    moto_server: Moto,
    batch_resources: BatchResources,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Any,
    store: bool,
) -> None:
    from airflow_aws_batch.workloads import NO_STORE_WARNING

    options = {"workload_store": f"file://{tmp_path}/store"} if store else {}
    configure(
        monkeypatch,
        moto_server.url,
        job_queue=batch_resources.job_queue,
        job_definition=batch_resources.job_definition,
        **options,
    )
    executor = FastExecutor()
    with caplog.at_level("WARNING", logger="airflow_aws_batch.wiring"):
        executor.start()
    executor.terminate()
    warned = [r for r in caplog.records if NO_STORE_WARNING in r.getMessage()]
    if store:
        assert warned == []
    else:
        assert [r.levelname for r in warned] == ["WARNING"]
        message = warned[0].getMessage()
        assert "containerOverrides.command" in message
        assert "AIRFLOW__AWS_BATCH_EXECUTOR__WORKLOAD_STORE=s3://BUCKET/PREFIX" in message
