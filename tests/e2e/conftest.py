"""One dev stack for the whole end-to-end session: localbatch + Airflow with AwsBatchExecutor.

``AIRFLOW_AWS_BATCH_E2E_DB``: a PostgreSQL URL to run on (a fresh database is created and dropped);
SQLite in the session's temp dir otherwise. ``AIRFLOW_AWS_BATCH_E2E_EXECUTOR=local`` runs the same
stack on Airflow's LocalExecutor (harness development only: cases that need Batch are skipped).
The stack's work dir (``logs/`` of every component, ``task_logs/``, localbatch's data) is a temp dir
whose path the session prints; it is removed when every test passed and kept otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from devstack import JOB_DEFINITION, Stack  # noqa: E402
from devstack.stack import COMPUTE_ENVIRONMENT, ExecutorChoice  # noqa: E402

DAGS = Path(__file__).resolve().parent / "dags"
#: Seconds a task may sit in queued before Airflow revokes it: short, for the stuck-in-RUNNABLE case, yet
#: long enough for a cold task process to reach the API server on a loaded 2-core machine (at a load
#: average of 100, one took over 60 s).
TASK_QUEUED_TIMEOUT = 120
#: localbatch fault rules, matched against Batch job names ``e2e-<dag_id>-<task_id>``.
FAULT_RULES = [
    {"job_name_contains": "e2e_fail_before_start-resubmitted", "fault": "fail_before_start", "times": 1},
    {"job_name_contains": "e2e_stuck-held", "fault": "hold_runnable"},
]
#: DAGs triggered together when the session starts; the scheduler cases (kill, SIGTERM, HA) trigger
#: their own later, one at a time.
PRE_TRIGGERED = (
    "e2e_success",
    "e2e_airflow_retry",
    "e2e_fail_before_start",
    "e2e_exec_config",
    "e2e_bad_exec_config",
    "e2e_stuck",
    "e2e_boot_log",
    "e2e_eks",
)
ALL_DAGS = (
    *PRE_TRIGGERED,
    "e2e_scheduler_kill",
    "e2e_requeued_kill",
    "e2e_sigterm",
    "e2e_ha",
    "e2e_fair_low",
    "e2e_fair_high",
    "e2e_arrays",
    "e2e_images",
    "e2e_bad_job_definition",
)
#: A fair-share job queue on a compute environment of its own with one vCPU, for tasks of the Airflow
#: queue ``fair``; every job there shares FAIR_SHARE (the ``{queue}_{pool}`` share template, the tasks in
#: ``default_pool``), so only the scheduling priority orders them.
FAIR_JOB_QUEUE = "airflow-fair"
FAIR_SHARE = "fair_default_pool"
FAIR_COMPUTE_ENVIRONMENT = "airflow-fair-ce"
#: An EKS compute environment, job queue and job definition (the container definition's environment in
#: its pod's first container), used by the tasks whose executor_config names them (DAG ``e2e_eks``).
EKS_COMPUTE_ENVIRONMENT = "airflow-eks-ce"
EKS_JOB_QUEUE = "airflow-eks"
EKS_JOB_DEFINITION = "airflow-task-eks"
#: The session's workload store, under the stack's work dir.
WORKLOAD_DIR = "workloads"
#: Workloads go through a file:// store, so tasks due together can run as array jobs. Arrays start at
#: ARRAY_MIN_SIZE tasks: the twelve map indexes of e2e_arrays, on a Batch queue of their own (Airflow
#: queue ``arrays``), which never group with the other DAGs' tasks (ten at most at once, and a job
#: queue is part of what must be equal), whose fault rules match single jobs' names.
ARRAY_JOB_QUEUE = "airflow-arrays"
ARRAY_MIN_SIZE = 12


@dataclass
class E2E:
    stack: Stack
    run_ids: dict[str, str] = field(default_factory=dict)

    @property
    def on_batch(self) -> bool:
        return self.stack.executor == "aws_batch"

    def need_batch(self) -> None:
        if not self.on_batch:
            pytest.skip("needs AwsBatchExecutor + localbatch (AIRFLOW_AWS_BATCH_E2E_EXECUTOR=local)")


def _prepare(stack: Stack) -> None:
    _add_fair_share_queue(stack)
    _add_eks_resources(stack)
    _add_array_queue(stack)


def _add_array_queue(stack: Stack) -> None:
    """The array queue exists before the scheduler's startup check reads every mapped queue."""
    if stack.executor != "aws_batch":
        return
    stack.batch.batch.create_job_queue(
        jobQueueName=ARRAY_JOB_QUEUE,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": COMPUTE_ENVIRONMENT}],
    )


def _add_eks_resources(stack: Stack) -> None:
    if stack.executor != "aws_batch":
        return
    batch = stack.batch.batch
    batch.create_compute_environment(
        computeEnvironmentName=EKS_COMPUTE_ENVIRONMENT,
        type="MANAGED",
        state="ENABLED",
        computeResources={
            "type": "EC2",
            "minvCpus": 0,
            "maxvCpus": 4,
            "subnets": ["subnet-localbatch"],
            "instanceRole": "eksNodeRole",
        },
        eksConfiguration={
            "eksClusterArn": "arn:aws:eks:us-east-1:123456789012:cluster/airflow",
            "kubernetesNamespace": "airflow-batch",
        },
    )
    batch.create_job_queue(
        jobQueueName=EKS_JOB_QUEUE,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": EKS_COMPUTE_ENVIRONMENT}],
    )
    (container,) = batch.describe_job_definitions(jobDefinitionName=JOB_DEFINITION, status="ACTIVE")[
        "jobDefinitions"
    ]
    props = container["containerProperties"]
    batch.register_job_definition(
        jobDefinitionName=EKS_JOB_DEFINITION,
        type="container",
        eksProperties={
            "podProperties": {
                "containers": [{"name": "airflow-task", "image": props["image"], "env": props["environment"]}]
            }
        },
    )


def _add_fair_share_queue(stack: Stack) -> None:
    """The fair-share queue exists before the scheduler's startup check reads every mapped queue."""
    if stack.executor != "aws_batch":
        return
    batch = stack.batch.batch
    batch.create_compute_environment(
        computeEnvironmentName=FAIR_COMPUTE_ENVIRONMENT,
        type="MANAGED",
        state="ENABLED",
        computeResources={
            "type": "EC2",
            "minvCpus": 0,
            "maxvCpus": 1,
            "subnets": ["subnet-localbatch"],
            "instanceRole": "ecsInstanceRole",
        },
    )
    policy = batch.create_scheduling_policy(
        name="airflow-fair-policy",
        fairsharePolicy={"shareDecaySeconds": 0, "shareDistribution": [{"shareIdentifier": FAIR_SHARE}]},
    )["arn"]
    batch.create_job_queue(
        jobQueueName=FAIR_JOB_QUEUE,
        state="ENABLED",
        priority=1,
        schedulingPolicyArn=policy,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": FAIR_COMPUTE_ENVIRONMENT}],
    )


@pytest.fixture(scope="session")
def e2e(request: pytest.FixtureRequest) -> Iterator[E2E]:
    executor = cast(ExecutorChoice, os.environ.get("AIRFLOW_AWS_BATCH_E2E_EXECUTOR", "aws_batch"))
    # Not pytest's tmp_path: its retention (3 runs per user) would delete the logs of a failed session
    # as soon as anyone else on the machine runs pytest.
    work_dir = Path(tempfile.mkdtemp(prefix="airflow-aws-batch-e2e-"))
    stack = Stack(
        work_dir,
        db_url=os.environ.get("AIRFLOW_AWS_BATCH_E2E_DB") or None,
        executor=executor,
        dags_folder=DAGS,
        job_name="e2e",
        env={
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(TASK_QUEUED_TIMEOUT),
            # Fail a stuck task at its first revoke instead of requeueing it twice more.
            "AIRFLOW__SCHEDULER__NUM_STUCK_IN_QUEUED_RETRIES": "0",
            # Orphans are adopted once the dead scheduler's heartbeat is this old.
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
            "AIRFLOW__AWS_BATCH_EXECUTOR__QUEUE_MAP": json.dumps(
                {"fair": FAIR_JOB_QUEUE, "arrays": ARRAY_JOB_QUEUE}
            ),
            "AIRFLOW__AWS_BATCH_EXECUTOR__SHARE_IDENTIFIER": "{queue}_{pool}",
            # Every job of the session reads its workload from here (test_workload_store checks that no
            # token reaches Batch); the jobs run on this machine, as this user.
            "AIRFLOW__AWS_BATCH_EXECUTOR__WORKLOAD_STORE": f"file://{work_dir / WORKLOAD_DIR}",
            "AIRFLOW__AWS_BATCH_EXECUTOR__ARRAY_MIN_SIZE": str(ARRAY_MIN_SIZE),
        },
        prepare=_prepare,
    )
    print(f"\ne2e stack work dir: {work_dir}")
    with stack:
        session = E2E(stack)
        if session.on_batch:
            stack.batch.set_faults({"seed": 1, "rules": FAULT_RULES})
        stack.airflow.wait_for_dags(ALL_DAGS, timeout=180)
        for dag_id in ALL_DAGS:
            stack.airflow.unpause(dag_id)
        for dag_id in PRE_TRIGGERED:
            session.run_ids[dag_id] = stack.airflow.trigger(dag_id)
        yield session
    if request.session.testsfailed == 0:
        shutil.rmtree(work_dir, ignore_errors=True)
    else:
        print(f"\ne2e stack logs kept in {work_dir / 'logs'}")
