"""A DAG whose task names an EKS job definition in its executor_config runs as an EKS job.

The session stack has an EKS compute environment, job queue and job definition beside the container
ones (see conftest): one deployment mixes both kinds, chosen per task. What the executor sent is read
from localbatch's job record.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack import wait_until

from .conftest import E2E, EKS_JOB_QUEUE

pytestmark = pytest.mark.e2e


def test_a_task_on_an_eks_job_definition_succeeds_with_its_command_in_the_pod(e2e: E2E) -> None:
    e2e.need_batch()
    stack = e2e.stack
    run_id = e2e.run_ids["e2e_eks"]
    assert stack.airflow.wait_for_run("e2e_eks", run_id, timeout=300)["state"] == "success"

    # Airflow can record the task's success before its job's process has exited.
    def ended() -> tuple[bool, Any]:
        jobs = stack.batch.jobs_for("e2e_eks", run_id=run_id, job_queue=EKS_JOB_QUEUE)
        return len(jobs) == 1 and jobs[0]["status"] in ("SUCCEEDED", "FAILED"), jobs

    (job,) = wait_until("the EKS job to end", ended, timeout=60, interval=0.5)
    assert job["status"] == "SUCCEEDED", json.dumps(job)[:2000]
    assert "container" not in job
    first = job["eksProperties"]["podProperties"]["containers"][0]
    assert first["name"] == "airflow-task"
    # The session stack keeps workloads in its file:// store: the pod's command is the launcher's.
    assert first["command"][:3] == ["python", "-m", "airflow_aws_batch.launch"]
    assert first["command"][-1].startswith("file://")
    env = {entry["name"]: entry["value"] for entry in first["env"]}
    assert env["AIRFLOW_IS_EXECUTOR_CONTAINER"] == "true"
    assert env["E2E_POD_GREETING"] == "hello-from-the-pod"
    assert first["resources"] == {"requests": {"cpu": "1", "memory": "1024Mi"}}
    (attempt,) = job["eksAttempts"]
    assert attempt["containers"][0]["exitCode"] == 0
    assert attempt["podNamespace"] == "airflow-batch"
