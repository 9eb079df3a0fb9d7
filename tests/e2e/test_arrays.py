"""A mapped task whose twelve map indexes are queued together runs as one Batch array job.

The session stack writes workloads to a file:// store and groups twelve or more tasks due together
(see conftest); e2e_arrays maps one task over twelve values on its own Batch queue.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devstack import wait_until

from .conftest import ARRAY_JOB_QUEUE, E2E

pytestmark = pytest.mark.e2e

SIZE = 12


# First in the session by name, this test may also pay for starting the stack.
@pytest.mark.timeout(900)
def test_a_mapped_task_runs_as_one_array_and_every_child_succeeds(e2e: E2E) -> None:
    e2e.need_batch()
    stack = e2e.stack
    run_id = stack.airflow.trigger("e2e_arrays")
    # Twelve task processes on the stack's few vCPUs, beside the other DAGs' tasks: minutes when loaded.
    run = stack.airflow.wait_for_run("e2e_arrays", run_id, timeout=600)
    states = stack.airflow.task_states("e2e_arrays", run_id)
    assert run["state"] == "success", json.dumps(states)
    assert sorted(str(state) for state in states.values()) == ["success"] * SIZE, json.dumps(states)

    jobs = [job for job in stack.batch.all_jobs(ARRAY_JOB_QUEUE) if job["tags"].get("dag_id") == "e2e_arrays"]
    assert len(jobs) == 1, "one SubmitJob for the twelve tasks: " + json.dumps(jobs, default=str)[:2000]
    (array,) = jobs
    assert array["arrayProperties"]["size"] == SIZE
    assert array["container"]["command"][:3] == ["python", "-m", "airflow_aws_batch.launch"]
    child_ids = [f"{array['jobId']}:{i}" for i in range(SIZE)]

    def children_ended() -> tuple[bool, Any]:
        # Airflow can see a task end before its container exits.
        statuses = sorted({child["status"] for child in stack.batch.describe(child_ids)})
        return statuses == ["SUCCEEDED"], statuses

    wait_until("every child to succeed", children_ended, timeout=120, interval=1.0)

    # Each task ran in its own child and squared its own value.
    ran_in: dict[int, int] = {}
    for map_index in range(SIZE):
        log = stack.airflow.task_log("e2e_arrays", run_id, "square", 1, map_index=map_index)
        found = re.search(r"e2e_arrays: child (\d+) squares (\d+)", log)
        assert found is not None, log[-2000:]
        assert int(found.group(2)) == map_index
        ran_in[map_index] = int(found.group(1))
    assert sorted(ran_in.values()) == list(range(SIZE)), ran_in
