"""Sizes, timing options and the fault config of a chaos run (documented in ``chaos/__init__.py``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chaos.dag import DAG_ID

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"

#: Low enough that 100 tasks take long enough for every fault step to meet work in flight (at 16
#: they were nearly all done within 47 s, before the steps were), high enough for a burst.
PARALLELISM = 8
#: Above PARALLELISM: a job whose task Airflow already counts as done may still be exiting, and a
#: queued task must not wait in RUNNABLE for capacity (it would run into task_queued_timeout).
MAX_VCPUS = 12
RETRIES = 3
RETRY_DELAY_S = 2.0
TASK_QUEUED_TIMEOUT_S = 60
SCHEDULER_HEALTH_CHECK_THRESHOLD_S = 15
ORPHANED_TASKS_CHECK_INTERVAL_S = 5
TASK_INSTANCE_HEARTBEAT_TIMEOUT_S = 60
LATENCY_MS = 20
SUBMIT_QUOTA = 50
#: Arrays in play: workloads go through a file:// store (``<work dir>/workloads``), and at least this
#: many instances of the mapped task due together (at the same try) go out as one array job. Half of
#: PARALLELISM, so that the first burst (PARALLELISM tasks queued at once) forms an array, and so do
#: the smaller batches queued as tasks end and retries come due (up to ``array_hold_s`` apart).
ARRAY_MIN_SIZE = PARALLELISM // 2
WORKLOADS_DIR = "workloads"
#: What every job runs with the store set (``python -m airflow_aws_batch.launch <object URL>``).
LAUNCH_MODULE = "airflow_aws_batch.launch"
#: How long the harness waits for a SIGTERMed scheduler before it SIGKILLs it (the target is 30 s).
SIGTERM_WAIT_S = 90.0
#: Status events are on (``status_events``: the stack's SQS queue, filled by an EventBridge rule with
#: the job queue's state changes), and these shares of their deliveries are struck on the way:
#: dropped (polling must make up for them), delivered twice, late by 1-10 s (less than the poller's
#: 15 s before it counts a change as an event lost), swapped with the next one.
EVENT_FAULTS = {
    "drop_rate": 0.05,
    "duplicate_rate": 0.10,
    "delay_rate": 0.10,
    "delay_seconds": [1.0, 10.0],
    "reorder_rate": 0.10,
}


@dataclass(frozen=True)
class Profile:
    name: str
    tasks: int
    seeds: tuple[int, ...]
    #: Seconds after the run ended before jobs still SUBMITTED..RUNNING count as orphans.
    orphan_wait_s: float
    #: Seconds from the trigger after which task instances not final count as lost.
    run_deadline_s: float
    #: Lanes of the deferring task and of the reschedule-mode sensor beside the mapped task.
    deferrals: int = 0
    sensors: int = 0
    #: Their starts are spread over this many seconds from the trigger, so that every fault step (the
    #: steps follow the mapped task's progress) meets deferrals and pokes in flight.
    stagger_s: float = 0.0
    #: A sensor succeeds on its ``pokes``-th to ``pokes + 2``-th poke after its start.
    pokes: int = 3

    @property
    def task_instances(self) -> int:
        """Task instances of the run: the mapped task's, the deferring task's and the sensor's."""
        return self.tasks + self.deferrals + self.sensors


FULL = Profile(
    "full",
    tasks=500,
    seeds=(1, 2, 3),
    orphan_wait_s=60.0,
    run_deadline_s=1200.0,
    deferrals=30,
    sensors=30,
    stagger_s=360.0,
)
QUICK = Profile(
    "quick",
    tasks=100,
    seeds=(1,),
    orphan_wait_s=30.0,
    run_deadline_s=420.0,
    deferrals=8,
    sensors=8,
    stagger_s=90.0,
)


def airflow_env(work_dir: Path) -> dict[str, str]:
    """Environment of every Airflow component (on top of what ``devstack.Stack`` sets).

    ``work_dir``: the seed's work dir; the workload store is its ``workloads/`` directory, where the
    harness reads each array's object to tell which task instance and try every child ran.
    """
    return {
        "AIRFLOW__AWS_BATCH_EXECUTOR__WORKLOAD_STORE": workload_store_url(work_dir),
        "AIRFLOW__AWS_BATCH_EXECUTOR__ARRAY_MIN_SIZE": str(ARRAY_MIN_SIZE),
        # The DAG file imports chaos.tasks; the warm interpreter preloads bench.warm_task_sdk.
        "PYTHONPATH": _pythonpath(),
        "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(PARALLELISM),
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(TASK_QUEUED_TIMEOUT_S),
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": str(SCHEDULER_HEALTH_CHECK_THRESHOLD_S),
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": str(ORPHANED_TASKS_CHECK_INTERVAL_S),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_INSTANCE_HEARTBEAT_TIMEOUT_S),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    }


def workload_store_url(work_dir: Path) -> str:
    return f"file://{work_dir / WORKLOADS_DIR}"


def task_env(record_dir: Path) -> dict[str, str]:
    """Extra environment of every task (on the Batch job definition)."""
    return {
        "CHAOS_RECORD_DIR": str(record_dir),
        "PYTHONPATH": _pythonpath(),
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    }


def _pythonpath() -> str:
    return os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH"))))


def fault_config(seed: int, lost_response_mode: Literal["server_error", "drop"]) -> dict[str, Any]:
    """localbatch's fault config of the matrix (``PUT /_localbatch/faults``)."""
    return {
        "seed": seed,
        "latency_ms": LATENCY_MS,
        "quotas": {"SubmitJob": SUBMIT_QUOTA},
        "error_rate": 0.10,
        "fail_before_start_rate": 0.05,
        "host_lost_rate": 0.02,
        "lost_response_rate": 0.02,
        "lost_response_mode": lost_response_mode,
        # Held until revoked: the hold outlasts task_queued_timeout by construction.
        "hold_runnable": {"rate": 0.02},
        "events": dict(EVENT_FAULTS),
        # Each job-level fault and each event fault at least once per localbatch start, so that a
        # 100-task run cannot miss one by chance (every job name contains the DAG id).
        "rules": [
            {"job_name_contains": DAG_ID, "fault": fault, "times": 1}
            for fault in (
                "fail_before_start",
                "host_lost",
                "lost_response",
                "hold_runnable",
                "drop_event",
                "duplicate_event",
                "delay_event",
                "reorder_event",
            )
        ],
    }
