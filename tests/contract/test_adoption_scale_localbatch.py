"""Adoption at scale against localbatch (real HTTP): the scheduler thread's bound, task instances
adopted unconfirmed and verified off that thread, and what becomes of those whose saved job is stale."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey

from airflow_aws_batch import adopt_desk
from airflow_aws_batch.core import ownership
from devstack import LocalBatchServer

from ._airflow import FastExecutor, Recorder, configure, task_workload
from ._jobs import end_all, job_of, wait_job

pytestmark = pytest.mark.contract

QUEUE = "adopt-scale-queue"
DEFINITION = "adopt-scale-def"
#: Jobs whose name holds this stay RUNNABLE: nothing runs.
HELD = "adoptscale"


@pytest.fixture(scope="module")
def localbatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBatchServer]:
    server = LocalBatchServer(tmp_path_factory.mktemp("localbatch"), args=["--kill-grace-seconds", "1"])
    with server:
        server.setup(compute_environment="adopt-scale-ce", job_queue=QUEUE, job_definition=DEFINITION)
        yield server


def held() -> dict[str, Any]:
    return {
        "hold_runnable": {"rate": 0.0, "reason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - held by test"},
        "rules": [{"job_name_contains": HELD, "fault": "hold_runnable"}],
    }


@pytest.fixture
def executor(localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastExecutor]:
    localbatch.set_faults(held())
    configure(monkeypatch, localbatch, job_queue=QUEUE, job_definition=DEFINITION)
    executor = FastExecutor(parallelism=1024)
    executor.start()
    try:
        yield executor
    finally:
        executor.terminate()
        localbatch.set_faults({})


@dataclass
class FakeTi:
    """What ``try_adopt_task_instances`` reads of a TaskInstance row."""

    task_id: str
    external_executor_id: str | None
    try_number: int = 1
    queued_dttm: datetime | None = None
    state: str = "running"
    dag_id: str = "dag"
    run_id: str = "manual__1"
    map_index: int = -1
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def key(self) -> TaskInstanceKey:
        return TaskInstanceKey(self.dag_id, self.task_id, self.run_id, self.try_number, self.map_index)


def token_for(seconds: float) -> str:
    """A JWT-shaped token that expires in ``seconds`` (the executor reads ``exp``, never the signature)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'exp': int(time.time() + seconds)})}.sig"


def submit_tagged(
    batch: Any, task_id: str, deployment: str, *, try_number: int = 1, command: list[str] | None = None
) -> str:
    tags = {
        "dag_id": "dag",
        "task_id": task_id,
        "run_id": "manual__1",
        "map_index": "-1",
        "try_number": str(try_number),
        "deployment": deployment,
    }
    job_id: str = batch.submit_job(
        jobName=f"airflow-dag-{task_id}",
        jobQueue=QUEUE,
        jobDefinition=DEFINITION,
        containerOverrides={"command": command or ["true"]},
        tags=tags,
    )["jobId"]
    return job_id


def test_many_saved_ids_with_a_small_budget_are_all_adopted_and_verified_later(
    executor: FastExecutor, localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Time for about one DescribeJobs of the 350 saved ids on the scheduler thread: the rest used to
    # be handed back (Airflow resets them, and their running tasks run again).
    monkeypatch.setattr(adopt_desk, "ADOPT_BUDGET_S", 0.1)
    batch = localbatch.batch
    deployment = str(executor.config.deployment_id)
    tis = [
        FakeTi(f"{HELD}_many_{i}", submit_tagged(batch, f"{HELD}_many_{i}", deployment)) for i in range(350)
    ]
    try:
        handed_back = executor.try_adopt_task_instances(tis)

        assert handed_back == []
        assert all(executor.core.job_id(ti.key) == ti.external_executor_id for ti in tis)
        assert {ti.key for ti in tis} <= executor.running
        assert len(executor.adoption_desk.unconfirmed) >= 200  # most were left to the poller
        rec = Recorder(executor)
        rec.until(
            lambda: not executor.adoption_desk.unconfirmed, timeout=60, what="the poller to verify every job"
        )
        assert all(executor.core.job_id(ti.key) == ti.external_executor_id for ti in tis)
        assert not [e for e in rec.events if e[1] != "running"], rec.events[:5]
    finally:
        end_all(batch, QUEUE)


def test_adopted_unconfirmed_jobs_that_are_stale_are_found_resubmitted_or_failed_with_a_reason(
    executor: FastExecutor, localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing is read on the scheduler thread: every saved id is verified off it.
    monkeypatch.setattr(adopt_desk, "ADOPT_BUDGET_S", 0.0)
    monkeypatch.setattr(ownership, "QUEUEING_CLOCK_ALLOWANCE_MS", 0)
    batch = localbatch.batch
    deployment = str(executor.config.deployment_id)
    workload = json.dumps({"token": token_for(3600), "ti": {"id": "x"}})
    localbatch.set_faults({"simulate": {"seconds": 0}})
    # The earlier queueing's jobs of one try (a deferral's run before it deferred), all SUCCEEDED.
    found_before = submit_tagged(batch, f"{HELD}_found", deployment)
    resubmit_before = submit_tagged(batch, f"{HELD}_resubmit", deployment, command=[workload])
    running_before = submit_tagged(batch, f"{HELD}_running", deployment, command=[workload])
    for job_id in (found_before, resubmit_before, running_before):
        wait_job(batch, job_id, "SUCCEEDED")
    time.sleep(0.01)  # createdAt has millisecond resolution
    queued = datetime.now(UTC)
    time.sleep(0.01)
    localbatch.set_faults(held())
    found_now = submit_tagged(batch, f"{HELD}_found", deployment)  # its id was never saved
    found = FakeTi(f"{HELD}_found", found_before, queued_dttm=queued, state="queued")
    resubmitted = FakeTi(f"{HELD}_resubmit", resubmit_before, queued_dttm=queued, state="queued")
    running = FakeTi(f"{HELD}_running", running_before, queued_dttm=queued, state="running")
    unknown = FakeTi(f"{HELD}_unknown", str(uuid.uuid4()), queued_dttm=queued, state="queued")
    tis = [found, resubmitted, running, unknown]
    try:
        assert executor.try_adopt_task_instances(tis) == []

        rec = Recorder(executor)
        rec.until(
            lambda: (
                not executor.adoption_desk.unconfirmed
                and not executor.adoption_desk.lost
                and executor.core.job_id(resubmitted.key)
            ),
            timeout=60,
            what="every adopted task instance to be verified",
        )
        # Found by its tags: adopted, and Airflow is told the id.
        assert executor.core.job_id(found.key) == found_now
        assert rec.info(found.key, "running") == found_now
        # No job of this queueing: the earlier one's request goes out again, as a new job.
        rec.until(lambda: "running" in rec.states(resubmitted.key), what="the resubmit's job id")
        again = job_of(batch, rec.info(resubmitted.key, "running"))
        assert again["jobId"] != resubmit_before
        assert again["container"]["command"] == [workload]
        assert again["tags"]["try_number"] == "1" and again["tags"]["submission"]
        # Nothing to run it: the task instance fails, saying why.
        assert rec.states(running.key) == ["failed"]
        reason = " ".join(rec.task_events(running.key))
        assert running_before in reason and "earlier queueing" in reason and "running in Airflow" in reason
        assert rec.states(unknown.key) == ["failed"]
        assert "unknown to AWS Batch" in " ".join(rec.task_events(unknown.key))
        # The earlier queueing's SUCCEEDED jobs never reached Airflow as this queueing's end.
        assert "success" not in rec.states(found.key) + rec.states(resubmitted.key)
    finally:
        end_all(batch, QUEUE)


def test_the_scheduler_thread_is_held_within_the_bound_when_batch_is_slow(
    executor: FastExecutor, localbatch: LocalBatchServer
) -> None:
    batch = localbatch.batch
    deployment = str(executor.config.deployment_id)
    tis = [
        FakeTi(f"{HELD}_slow_{i}", submit_tagged(batch, f"{HELD}_slow_{i}", deployment)) for i in range(150)
    ]
    # Each call takes 6 s: the two DescribeJobs of 150 ids would hold the thread 12 s.
    localbatch.set_faults({**held(), "latency_ms": 6000})
    try:
        began = time.monotonic()
        handed_back = executor.try_adopt_task_instances(tis)
        held_s = time.monotonic() - began

        assert held_s < adopt_desk.ADOPT_BOUND_S + 1.0
        assert handed_back == []
        assert all(executor.core.job_id(ti.key) == ti.external_executor_id for ti in tis)
        localbatch.set_faults(held())
        rec = Recorder(executor)
        rec.until(
            lambda: not executor.adoption_desk.unconfirmed, timeout=60, what="the poller to verify every job"
        )
        assert all(executor.core.job_id(ti.key) == ti.external_executor_id for ti in tis)
    finally:
        localbatch.set_faults({})
        end_all(batch, QUEUE)


def test_a_queued_task_instance_whose_job_was_never_submitted_gets_a_new_workload(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scheduler queued a sensor's next poke and died before its SubmitJob: Airflow still has the
    # try QUEUED and saved the previous poke's job (SUCCEEDED, its workload read from the store and
    # gone). Nothing ran this queueing, so the task instance is submitted with a workload built from
    # Airflow's DB (here: the rebuilder's answer), not failed (a burnt try, a failed task with
    # retries=0) and never reported with the earlier poke's success.
    asked: list[tuple[str, int]] = []
    rebuilt = task_workload(f"{HELD}_requeued")

    class Rebuilding(FastExecutor):
        @staticmethod
        def workload_rebuilder(ti_id: str, try_number: int, executor: Any) -> Any:
            asked.append((ti_id, try_number))
            return rebuilt

    monkeypatch.setattr(adopt_desk, "ADOPT_BUDGET_S", 0.0)
    monkeypatch.setattr(ownership, "QUEUEING_CLOCK_ALLOWANCE_MS", 0)
    localbatch.set_faults({"simulate": {"seconds": 0}})
    configure(monkeypatch, localbatch, job_queue=QUEUE, job_definition=DEFINITION)
    executor = Rebuilding(parallelism=64)
    executor.start()
    batch = localbatch.batch
    try:
        deployment = str(executor.config.deployment_id)
        poked = submit_tagged(batch, f"{HELD}_requeued", deployment)  # the workload was in the store
        wait_job(batch, poked, "SUCCEEDED")
        time.sleep(0.01)
        ti = FakeTi(
            f"{HELD}_requeued", poked, queued_dttm=datetime.now(UTC), state="queued", id=rebuilt.ti.id
        )
        localbatch.set_faults(held())
        assert executor.try_adopt_task_instances([ti]) == []
        rec = Recorder(executor)
        rec.until(lambda: "running" in rec.states(ti.key), timeout=60, what="the new workload's job")
        assert asked == [(str(ti.id), 1)]
        job = job_of(batch, rec.info(ti.key, "running"))
        assert job["jobId"] != poked and job["tags"]["task_id"] == f"{HELD}_requeued"
        assert any("aws_batch_adopted_requeued" in e for e in rec.task_events(ti.key))
        assert "failed" not in rec.states(ti.key) and "success" not in rec.states(ti.key)
    finally:
        executor.terminate()
        end_all(batch, QUEUE)
        localbatch.set_faults({})
