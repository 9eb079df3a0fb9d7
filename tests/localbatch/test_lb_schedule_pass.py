"""One scheduling pass of the runner over real backend state, with no process started.

The runner's pass is driven directly: every job here either waits or fails on its dependencies, so
the pass decides without spawning anything.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from localbatch.faults import FaultConfig, Faults
from localbatch.logs import LogsBackend
from localbatch.models import JobStatus
from localbatch.runner import Runner
from localbatch.store import Store

REGION = "us-east-1"


def _runner(data_dir: Path) -> Runner:
    store = Store(data_dir)
    return Runner(store, LogsBackend(store), Faults(FaultConfig()), data_dir, pass_env=[])


def _create_queue_and_definition(runner: Runner) -> None:
    backend = runner.backend
    backend.create_compute_environment(
        {
            "computeEnvironmentName": "ce",
            "type": "MANAGED",
            "computeResources": {"type": "EC2", "maxvCpus": 4, "subnets": ["s"], "instanceRole": "r"},
        },
        REGION,
    )
    backend.create_job_queue(
        {
            "jobQueueName": "q",
            "priority": 1,
            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}],
        },
        REGION,
    )
    backend.register_job_definition(
        {
            "jobDefinitionName": "jd",
            "type": "container",
            "containerProperties": {"image": "i", "vcpus": 1, "memory": 64},
        },
        REGION,
    )


def _submit(runner: Runner, name: str, *after: str) -> str:
    params: dict[str, Any] = {"jobName": name, "jobQueue": "q", "jobDefinition": "jd"}
    if after:
        params["dependsOn"] = [{"jobId": job_id} for job_id in after]
    job_id: str = runner.backend.submit_job(params, REGION)["jobId"]
    return job_id


def test_a_chain_behind_a_failed_job_fails_whole_in_one_pass(tmp_path: Path) -> None:
    # A depends on a job that has already failed and B depends on A, both waiting in the same pass:
    # failing A fails B with it, and the pass must not then try to fail B a second time.
    runner = _runner(tmp_path)
    _create_queue_and_definition(runner)
    backend = runner.backend
    failed = _submit(runner, "failed")
    backend.set_status(backend.jobs[failed], JobStatus.FAILED, "Essential container in task exited")
    first = _submit(runner, "first", failed)
    second = _submit(runner, "second", first)
    third = _submit(runner, "third", second)

    asyncio.run(runner.schedule_pass())

    statuses = {
        name: backend.jobs[job_id].status
        for name, job_id in (("first", first), ("second", second), ("third", third))
    }
    assert statuses == {"first": JobStatus.FAILED, "second": JobStatus.FAILED, "third": JobStatus.FAILED}
    assert backend.jobs[first].status_reason == "Dependent Job failed"
    assert backend.jobs[second].status_reason == f"Dependent Job failed: {first}"


def test_children_behind_a_failed_dependency_fail_the_array_in_one_pass(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    _create_queue_and_definition(runner)
    backend = runner.backend
    failed = _submit(runner, "failed")
    backend.set_status(backend.jobs[failed], JobStatus.FAILED, "Essential container in task exited")
    params: dict[str, Any] = {
        "jobName": "array",
        "jobQueue": "q",
        "jobDefinition": "jd",
        "arrayProperties": {"size": 3},
        "dependsOn": [{"jobId": failed}],
    }
    parent = backend.jobs[backend.submit_job(params, REGION)["jobId"]]

    asyncio.run(runner.schedule_pass())

    assert parent.array is not None
    assert [c.status for c in parent.array.children] == [JobStatus.FAILED] * 3
    assert (parent.status, parent.status_reason) == (JobStatus.FAILED, "3 of 3 array child jobs failed")
    assert parent.array.summary()["FAILED"] == 3


def test_load_ends_an_array_whose_parent_record_lagged_behind_its_children(tmp_path: Path) -> None:
    # A hard stop can persist the children's last change and not the parent's: at load the parent
    # follows its children.
    runner = _runner(tmp_path)
    _create_queue_and_definition(runner)
    backend = runner.backend
    params: dict[str, Any] = {"jobName": "array", "jobQueue": "q", "jobDefinition": "jd"}
    parent_id = backend.submit_job({**params, "arrayProperties": {"size": 2}}, REGION)["jobId"]
    parent = backend.jobs[parent_id]
    assert parent.array is not None
    for child in parent.array.children:
        child.status = JobStatus.SUCCEEDED  # as persisted, without the parent's own update
        backend.touch(child)
    backend.flush_dirty()
    backend.store.close()

    reloaded = _runner(tmp_path).backend
    assert reloaded.load() == []
    parent = reloaded.jobs[parent_id]
    assert parent.status == JobStatus.SUCCEEDED
    assert parent.array is not None
    assert parent.array.summary()["SUCCEEDED"] == 2
    assert reloaded.jobs[f"{parent_id}:1"].container == parent.container
