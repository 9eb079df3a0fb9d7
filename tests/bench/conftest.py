"""A real localbatch per test and our executor driven in-process the way the scheduler drives it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench import service
from devstack import LocalBatchServer

JOB_QUEUE = service.JOB_QUEUE
JOB_DEFINITION = service.JOB_DEFINITION


@pytest.fixture
def localbatch(tmp_path: Path) -> Iterator[LocalBatchServer]:
    # The same start-up and queue set-up the benchmark uses, with no faults.
    with service.localbatch(tmp_path, {}, max_vcpus=256) as started:
        yield started


@pytest.fixture
def executor_config(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> Callable[[dict[str, Any]], None]:
    """Point ``[aws_batch_executor]`` and the ``aws_default`` connection at the test's localbatch."""

    def configure(options: dict[str, Any]) -> None:
        env = {
            "AIRFLOW_CONN_AWS_DEFAULT": localbatch.airflow_connection(),
            **localbatch.aws_env(),
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
    from airflow.executors import workloads
    from airflow.executors.workloads import BundleInfo, ExecuteTask

    # TaskInstanceDTO from Airflow 3.2; TaskInstance in 3.1.
    TaskInstanceDTO = getattr(workloads, "TaskInstanceDTO", None) or workloads.TaskInstance

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

    def operations(self) -> dict[str, dict[str, int]]:
        """localbatch's request counters per operation."""
        operations: dict[str, dict[str, int]] = self.localbatch.stats()["operations"]
        return operations

    def terminate_all(self) -> None:
        """End every job of the queue from outside, as an operator would."""
        for job_id in self.localbatch.job_ids():
            self.localbatch.batch.terminate_job(jobId=job_id, reason="test cleanup")

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
