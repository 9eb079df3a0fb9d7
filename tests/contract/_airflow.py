"""Helpers to drive AwsBatchExecutor in-process: workloads, an environment, a heartbeat loop."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from airflow.executors import workloads

from airflow_aws_batch import compat
from airflow_aws_batch.core.messages import BackoffPolicy
from airflow_aws_batch.executor import AwsBatchExecutor
from devstack import LocalBatch
from devstack.clients import TESTING_CREDENTIALS

#: The task instance of an ExecuteTask: ``TaskInstanceDTO`` from Airflow 3.2, ``TaskInstance`` in 3.1.
TaskInstanceDTO: Any = getattr(workloads, "TaskInstanceDTO", None) or workloads.TaskInstance


def task_workload(
    task_id: str,
    *,
    dag_id: str = "dag",
    try_number: int = 1,
    executor_config: dict[str, Any] | None = None,
    log_path: str | None = None,
    map_index: int = -1,
) -> workloads.ExecuteTask:
    ti = TaskInstanceDTO(
        id=uuid.uuid4(),
        dag_version_id=uuid.uuid4(),
        task_id=task_id,
        dag_id=dag_id,
        run_id="manual__1",
        try_number=try_number,
        map_index=map_index,
        pool_slots=1,
        priority_weight=1,
        queue="default",
        executor_config=executor_config,
    )
    return workloads.ExecuteTask(
        ti=ti,
        dag_rel_path="dag.py",
        token="token",
        log_path=log_path,
        bundle_info={"name": "dags", "version": None},
    )


def configure(
    monkeypatch: pytest.MonkeyPatch,
    endpoint: str | LocalBatch,
    *,
    s3_endpoint: str | None = None,
    **options: str,
) -> None:
    """Point the executor's options and its ``aws_default`` connection at ``endpoint``: moto's URL
    (any keys do), or a localbatch (its URL and the keys it verifies signatures with); S3 calls at
    ``s3_endpoint`` when given."""
    for name in list(os.environ):
        if name.startswith("AIRFLOW__AWS_BATCH_EXECUTOR__"):
            monkeypatch.delenv(name)
    connection: dict[str, Any]
    if isinstance(endpoint, str):
        keys = TESTING_CREDENTIALS
        connection = {"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    else:
        keys, connection = endpoint.credentials, json.loads(endpoint.airflow_connection())
    if s3_endpoint is not None:
        connection["extra"]["service_config"] = {"s3": {"endpoint_url": s3_endpoint}}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    defaults = {"job_name": "airflow", "region_name": "us-east-1"}
    for option, value in {**defaults, **options}.items():
        monkeypatch.setenv(f"AIRFLOW__AWS_BATCH_EXECUTOR__{option.upper()}", value)


class FastExecutor(AwsBatchExecutor):  # type: ignore[misc]
    backoff = BackoffPolicy(base_s=0.2, max_s=1.0, wait_s=0.1)
    poll_interval_s = 0.2


_E = TypeVar("_E", bound=AwsBatchExecutor)


@contextlib.contextmanager
def started_executor(
    cls: type[_E],
    localbatch: LocalBatch,
    monkeypatch: pytest.MonkeyPatch,
    faults: dict[str, Any],
    parallelism: int,
    **options: str,
) -> Iterator[_E]:
    """An executor of ``cls`` configured with ``options`` against ``localbatch`` with ``faults``; terminated
    and faults cleared after."""
    localbatch.set_faults(faults)
    configure(monkeypatch, localbatch, **options)
    executor = cls(parallelism=parallelism)
    executor.start()
    try:
        yield executor
    finally:
        executor.terminate()
        localbatch.set_faults({})


@dataclass
class Recorder:
    """Collects every event the executor hands to Airflow, in order."""

    executor: AwsBatchExecutor
    events: list[tuple[Any, str, Any]] = field(default_factory=list)

    def beat(self) -> None:
        self.executor.heartbeat()
        for key, (state, info) in self.executor.get_event_buffer().items():
            self.events.append((key, str(state), info))

    def states(self, key: Any) -> list[str]:
        return [state for k, state, _ in self.events if k == key]

    def info(self, key: Any, state: str) -> Any:
        return next(info for k, s, info in self.events if k == key and s == state)

    def task_events(self, key: Any) -> list[str]:
        return [
            f"{log.event}: {log.extra}" for log in self.executor.task_event_logs if log.task_id == key.task_id
        ]

    def until(self, done: Callable[[], bool], timeout: float = 120.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.beat()
            if done():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; events so far: {self.events}")


@contextlib.contextmanager
def recording_stats(backend: Any) -> Iterator[None]:
    """Airflow's Stats (where the scheduler sends its metrics) sends to ``backend`` meanwhile."""
    stats = compat.stats()
    if hasattr(stats, "incr") and not isinstance(stats, type):
        # Airflow 3.3: a module whose backend is made by a factory.
        from airflow._shared.observability.metrics.stats import NoStatsLogger

        stats.initialize(factory=lambda: backend, export_legacy_names=False)
        try:
            yield
        finally:
            stats.initialize(factory=NoStatsLogger, export_legacy_names=False)
        return
    # Airflow 3.1/3.2: a class holding one instance per process.
    saved = (stats.instance, stats._instance_pid)
    stats.instance, stats._instance_pid = backend, os.getpid()
    try:
        yield
    finally:
        stats.instance, stats._instance_pid = saved
