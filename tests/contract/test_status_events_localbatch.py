"""``status_events`` against localbatch (real HTTP): Batch's job state changes through an EventBridge
rule into an SQS queue, read by the executor's events thread. A task's end reaches Airflow with no
DescribeJobs at all; a queue that cannot be read, or events that are lost, fall back to polling and
no task is stuck."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devstack import LocalBatchServer

from ._airflow import FastExecutor, Recorder, started_executor, task_workload

pytestmark = pytest.mark.contract

QUEUE = "events-queue"
DEFINITION = "events-def"
DONE = {"simulate": {"seconds": 0}}


@pytest.fixture(scope="module")
def localbatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBatchServer]:
    server = LocalBatchServer(tmp_path_factory.mktemp("localbatch"), args=["--kill-grace-seconds", "1"])
    with server:
        server.setup(compute_environment="events-ce", job_queue=QUEUE, job_definition=DEFINITION)
        yield server


def subscribe(localbatch: LocalBatchServer) -> str:
    """A queue and a rule sending it the job state changes of QUEUE, as ``render --status-events``
    makes them; the queue's URL."""
    return localbatch.subscribe_status_events(f"airflow-events-{uuid.uuid4().hex[:8]}", QUEUE)


def describes(localbatch: LocalBatchServer) -> int:
    return int(localbatch.stats()["operations"].get("DescribeJobs", {}).get("requests", 0))


def started(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, faults: dict[str, Any], queue: str
) -> contextlib.AbstractContextManager[FastExecutor]:
    return started_executor(
        FastExecutor,
        localbatch,
        monkeypatch,
        faults,
        64,
        job_queue=QUEUE,
        job_definition=DEFINITION,
        status_events=queue,
    )


def run(executor: FastExecutor, names: list[str]) -> Recorder:
    rec = Recorder(executor)
    work = [task_workload(name) for name in names]
    for w in work:
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
    rec.until(lambda: all("success" in rec.states(w.ti.key) for w in work), timeout=60, what="every success")
    return rec


def test_ends_arrive_by_event_without_a_status_call(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with started(localbatch, monkeypatch, DONE, subscribe(localbatch)) as executor:
        runtime = executor.runtime
        assert runtime is not None and runtime.events is not None
        runtime.poller.quiet_s = 3600.0  # no reconciling within the test: only events can tell
        runtime.events.live.wait(10)
        before = describes(localbatch)
        run(executor, [f"by_event_{i}" for i in range(5)])
        assert describes(localbatch) == before
        assert runtime.poller.events_missed == 0


def test_a_queue_that_cannot_be_read_falls_back_to_polling_with_one_line(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = subscribe(localbatch)
    localbatch.client("sqs").delete_queue(QueueUrl=url)
    caplog.set_level(logging.INFO, logger="airflow_aws_batch")
    with started(localbatch, monkeypatch, DONE, url) as executor:
        runtime = executor.runtime
        assert runtime is not None and runtime.events is not None
        runtime.poller.quiet_s = 3600.0
        before = describes(localbatch)
        run(executor, ["queue_gone_0", "queue_gone_1"])
        assert describes(localbatch) > before
        assert not runtime.events.live.is_set()
    lines = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "NonExistentQueue" in lines[0] and "polling every tracked job" in lines[0]


def test_lost_events_are_made_up_for_by_reconciling_and_switch_full_polling_on(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = {**DONE, "events": {"drop_rate": 1.0}}
    with started(localbatch, monkeypatch, faults, subscribe(localbatch)) as executor:
        runtime = executor.runtime
        assert runtime is not None and runtime.events is not None
        runtime.poller.quiet_s = 2.0
        runtime.poller.miss_after_s = 0.5
        runtime.events.live.wait(10)
        run(executor, [f"dropped_{i}" for i in range(3)])
        assert runtime.poller.events_missed >= 1
        assert not runtime.poller.events_reconcile(runtime.threads.clock())


def test_duplicated_and_reordered_events_report_each_end_once(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = {**DONE, "events": {"duplicate_rate": 1.0, "reorder_rate": 0.5}}
    with started(localbatch, monkeypatch, faults, subscribe(localbatch)) as executor:
        runtime = executor.runtime
        assert runtime is not None and runtime.events is not None
        runtime.poller.quiet_s = 3600.0
        runtime.events.live.wait(10)
        names = [f"twice_{i}" for i in range(6)]
        rec = run(executor, names)
        for key in {k for k, _, _ in rec.events}:
            assert rec.states(key).count("success") == 1, rec.states(key)


def test_a_message_that_is_no_event_is_dropped_once_said_without_its_body(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = subscribe(localbatch)
    secret = "token-that-must-not-be-logged"
    sqs = localbatch.client("sqs")
    for body in (f"not json {secret}", json.dumps({"detail-type": "Batch Job State Change", "x": secret})):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    caplog.set_level(logging.DEBUG, logger="airflow_aws_batch")
    with started(localbatch, monkeypatch, DONE, url) as executor:
        runtime = executor.runtime
        assert runtime is not None and runtime.events is not None
        runtime.poller.quiet_s = 3600.0
        run(executor, ["after_garbage"])
        assert runtime.events.unreadable == 1  # the other is an event of another kind: not ours to read
        assert (
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"
            ]["ApproximateNumberOfMessages"]
            == "0"
        )
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "message was dropped" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert all(secret not in r.getMessage() for r in caplog.records)
