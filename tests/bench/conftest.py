"""A real localbatch per test and our executor driven in-process the way the scheduler drives it."""

from __future__ import annotations

import os
import tempfile

# Airflow reads AIRFLOW_HOME when first imported; keep it off the user's ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import service  # noqa: E402  (after the path and AIRFLOW_HOME set-up above)

JOB_QUEUE = service.JOB_QUEUE
JOB_DEFINITION = service.JOB_DEFINITION


@dataclass
class LocalBatchServer:
    """The benchmark's own localbatch handle, plus what the tests need to look at jobs."""

    handle: service.LocalBatch

    @property
    def url(self) -> str:
        return self.handle.url

    def stats(self) -> dict[str, dict[str, int]]:
        stats = self.handle.stats()
        return dict(stats.get("operations", stats))

    def set_faults(self, faults: dict[str, Any]) -> None:
        self.handle.set_faults(faults)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "batch",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def terminate_all(self) -> None:
        """End every job of the queue from outside, as an operator would."""
        client = self.client()
        for job in self.jobs():
            client.terminate_job(jobId=job["jobId"], reason="test cleanup")

    def jobs(self) -> list[dict[str, Any]]:
        client = self.client()
        found: list[dict[str, Any]] = []
        for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"):
            pages = client.get_paginator("list_jobs").paginate(jobQueue=JOB_QUEUE, jobStatus=status)
            for page in pages:
                found.extend(page["jobSummaryList"])
        return found


@pytest.fixture
def localbatch(tmp_path: Path) -> Iterator[LocalBatchServer]:
    # The same start-up and queue set-up the benchmark uses, with no faults.
    with service.localbatch(tmp_path, {}, max_vcpus=256) as started:
        yield LocalBatchServer(started)


@pytest.fixture
def executor_config(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> Callable[[dict[str, Any]], None]:
    """Point ``[aws_batch_executor]`` and the ``aws_default`` connection at the test's localbatch."""

    def configure(options: dict[str, Any]) -> None:
        env = {
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {"conn_type": "aws", "extra": {"endpoint_url": localbatch.url, "region_name": "us-east-1"}}
            ),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AIRFLOW__AWS_BATCH_EXECUTOR__JOB_QUEUE": JOB_QUEUE,
            "AIRFLOW__AWS_BATCH_EXECUTOR__JOB_DEFINITION": JOB_DEFINITION,
            "AIRFLOW__AWS_BATCH_EXECUTOR__JOB_NAME": "benchtest",
            "AIRFLOW__AWS_BATCH_EXECUTOR__REGION_NAME": "us-east-1",
            "AIRFLOW__AWS_BATCH_EXECUTOR__CHECK_HEALTH_ON_STARTUP": "True",
        }
        env.update({f"AIRFLOW__AWS_BATCH_EXECUTOR__{k.upper()}": str(v) for k, v in options.items()})
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    return configure


def _make_workload(index: int, dag_id: str = "bench_test") -> Any:
    from airflow.executors.workloads import BundleInfo, ExecuteTask
    from airflow.executors.workloads.task import TaskInstanceDTO

    run_id = "manual__2026-01-01T00:00:00+00:00"
    task_id = f"task_{index:04d}"
    return ExecuteTask(
        ti=TaskInstanceDTO(
            id=uuid.uuid4(),
            task_id=task_id,
            dag_id=dag_id,
            run_id=run_id,
            try_number=1,
            dag_version_id=uuid.uuid4(),
            pool_slots=1,
            priority_weight=1,
            queue="default",
        ),
        dag_rel_path="bench_test.py",
        token="",
        log_path=f"dag_id={dag_id}/run_id={run_id}/task_id={task_id}/attempt=1.log",
        bundle_info=BundleInfo(name="dags-folder"),
    )


@dataclass
class SchedulerLoop:
    """heartbeat() then get_event_buffer(), like SchedulerJobRunner's loop; remembers final states."""

    executor: Any
    final: dict[Any, str] = field(default_factory=dict)
    job_ids: dict[Any, str] = field(default_factory=dict)

    def tick(self) -> None:
        self.executor.heartbeat()
        for key, (state, info) in self.executor.get_event_buffer().items():
            name = str(getattr(state, "value", state))
            if isinstance(info, str) and info and name in ("queued", "running"):
                self.job_ids.setdefault(key, info)
            if name in ("success", "failed"):
                self.final[key] = name
        time.sleep(0.2)

    def run_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; final states: {self.final}"
            self.tick()


@dataclass
class Harness:
    """Our executor against this test's localbatch: start it, queue tasks, loop like the scheduler."""

    localbatch: LocalBatchServer
    configure: Callable[[dict[str, Any]], None]

    def start(self, options: dict[str, Any], parallelism: int = 64) -> Any:
        self.configure(options)
        from airflow_aws_batch import AwsBatchExecutor

        executor = AwsBatchExecutor(parallelism=parallelism)
        executor.start()
        return executor

    def queue(self, executor: Any, tasks: int) -> SchedulerLoop:
        for index in range(tasks):
            executor.queue_workload(_make_workload(index), session=None)
        return SchedulerLoop(executor)

    def run(self, executor: Any, tasks: int, timeout: float) -> SchedulerLoop:
        loop = self.queue(executor, tasks)
        try:
            loop.run_until(lambda: len(loop.final) >= tasks, timeout, f"{tasks} tasks to finish")
        finally:
            executor.end()
        return loop


@pytest.fixture
def harness(localbatch: LocalBatchServer, executor_config: Callable[[dict[str, Any]], None]) -> Harness:
    return Harness(localbatch, executor_config)
