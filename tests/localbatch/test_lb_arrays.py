"""Array jobs: one SubmitJob, N children run as jobs of their own, the parent follows them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from lb_support import Env, Server, describe, make_env, run, wait_for, wait_status

pytestmark = [pytest.mark.contract, pytest.mark.usefixtures("clean_faults")]


def _gate(path: Path) -> list[str]:
    """A command that runs until `path` exists: lets a test hold children RUNNING."""
    return ["sh", "-c", f"while [ ! -e {path} ]; do sleep 0.05; done"]


def _submit_array(batch: Any, env: Env, command: list[str], size: int, name: str = "arr", **kw: Any) -> str:
    return run(batch, env, command, name=name, arrayProperties={"size": size}, **kw)


def _statuses(batch: Any, parent: str, size: int) -> list[str]:
    jobs = batch.describe_jobs(jobs=[f"{parent}:{i}" for i in range(size)])["jobs"]
    return [j["status"] for j in sorted(jobs, key=lambda j: j["arrayProperties"]["index"])]


def _log_lines(logs: Any, job: dict[str, Any]) -> list[str]:
    events = logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=job["container"]["logStreamName"], startFromHead=True
    )["events"]
    return [e["message"] for e in events]


def test_each_child_runs_with_its_index_and_id(batch: Any, logs: Any, env: Env) -> None:
    command = ["sh", "-c", 'echo "index=$AWS_BATCH_JOB_ARRAY_INDEX id=$AWS_BATCH_JOB_ID"']
    answer = batch.submit_job(
        jobName="indexed",
        jobQueue=env.queue,
        jobDefinition=env.jd,
        containerOverrides={"command": command},
        arrayProperties={"size": 3},
        tags={"team": "a"},
    )
    parent_id = answer["jobId"]
    parent = wait_status(batch, parent_id)
    assert parent["status"] == "SUCCEEDED"
    assert parent["arrayProperties"]["size"] == 3
    assert parent["arrayProperties"]["statusSummary"] == {
        "SUBMITTED": 0,
        "PENDING": 0,
        "RUNNABLE": 0,
        "STARTING": 0,
        "RUNNING": 0,
        "SUCCEEDED": 3,
        "FAILED": 0,
    }
    assert parent["attempts"] == []
    children = batch.describe_jobs(jobs=[f"{parent_id}:{i}" for i in range(3)])["jobs"]
    assert sorted(c["jobId"] for c in children) == [f"{parent_id}:{i}" for i in range(3)]
    for child in children:
        index = child["arrayProperties"]["index"]
        assert child["arrayProperties"] == {"index": index}
        assert child["jobArn"] == f"{answer['jobArn']}:{index}"
        assert (child["jobName"], child["jobQueue"], child["tags"]) == (
            "indexed",
            parent["jobQueue"],
            {"team": "a"},
        )
        assert child["status"] == "SUCCEEDED"
        assert _log_lines(logs, child) == [f"index={index} id={parent_id}:{index}"]


def test_parent_is_pending_while_children_run_and_failed_if_any_child_failed(
    batch: Any, env: Env, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    # Child 0 exits 0, child 1 exits 1, once the gate opens.
    command = ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done; exit $AWS_BATCH_JOB_ARRAY_INDEX"]
    parent_id = _submit_array(batch, env, command, 2)
    wait_for(lambda: _statuses(batch, parent_id, 2), lambda s: s == ["RUNNING", "RUNNING"], what="children")
    parent = describe(batch, parent_id)
    assert parent["status"] == "PENDING"
    assert parent["arrayProperties"]["statusSummary"]["RUNNING"] == 2
    gate.touch()
    parent = wait_status(batch, parent_id)
    assert parent["status"] == "FAILED"
    summary = parent["arrayProperties"]["statusSummary"]
    assert (summary["SUCCEEDED"], summary["FAILED"]) == (1, 1)
    assert _statuses(batch, parent_id, 2) == ["SUCCEEDED", "FAILED"]
    assert parent["stoppedAt"] >= max(
        c["stoppedAt"] for c in batch.describe_jobs(jobs=[f"{parent_id}:0", f"{parent_id}:1"])["jobs"]
    )


def test_children_share_capacity_and_list_by_array_job_id(batch: Any, tmp_path: Path) -> None:
    env = make_env(batch, max_vcpus=2)
    gate = tmp_path / "go"
    parent_id = _submit_array(batch, env, _gate(gate), 5)
    wait_for(
        lambda: _statuses(batch, parent_id, 5),
        lambda s: s == ["RUNNING", "RUNNING", "RUNNABLE", "RUNNABLE", "RUNNABLE"],
        what="two children running, three waiting for capacity",
    )
    running = batch.list_jobs(arrayJobId=parent_id)["jobSummaryList"]  # no status: RUNNING, as on AWS
    assert [j["jobId"] for j in running] == [f"{parent_id}:0", f"{parent_id}:1"]
    assert [j["arrayProperties"] for j in running] == [{"index": 0}, {"index": 1}]
    first = batch.list_jobs(arrayJobId=parent_id, jobStatus="RUNNABLE", maxResults=2)
    second = batch.list_jobs(
        arrayJobId=parent_id, jobStatus="RUNNABLE", maxResults=2, nextToken=first["nextToken"]
    )
    assert [j["jobId"] for j in first["jobSummaryList"] + second["jobSummaryList"]] == [
        f"{parent_id}:{i}" for i in (2, 3, 4)
    ]
    assert "nextToken" not in second
    # A queue's listing shows the parent, not the children.
    assert batch.list_jobs(jobQueue=env.queue, jobStatus="RUNNABLE")["jobSummaryList"] == []
    pending = batch.list_jobs(jobQueue=env.queue, jobStatus="PENDING")["jobSummaryList"]
    assert [(j["jobId"], j["arrayProperties"]["size"]) for j in pending] == [(parent_id, 5)]
    assert batch.list_jobs(arrayJobId="no-such-array", jobStatus="RUNNABLE")["jobSummaryList"] == []
    gate.touch()
    assert wait_status(batch, parent_id)["status"] == "SUCCEEDED"
    everything = batch.list_jobs(arrayJobId=parent_id, filters=[{"name": "JOB_NAME", "values": ["arr"]}])
    assert len(everything["jobSummaryList"]) == 5


def test_terminate_parent_ends_every_unfinished_child(batch: Any, tmp_path: Path) -> None:
    env = make_env(batch, max_vcpus=1)
    parent_id = _submit_array(batch, env, _gate(tmp_path / "never"), 3)
    wait_for(lambda: _statuses(batch, parent_id, 3), lambda s: s[0] == "RUNNING", what="child 0 running")
    batch.terminate_job(jobId=parent_id, reason="stop the array")
    parent = wait_status(batch, parent_id)
    assert (parent["status"], parent["statusReason"], parent["isTerminated"]) == (
        "FAILED",
        "stop the array",
        True,
    )
    children = batch.describe_jobs(jobs=[f"{parent_id}:{i}" for i in range(3)])["jobs"]
    assert {(c["status"], c["statusReason"]) for c in children} == {("FAILED", "stop the array")}
    assert all(c["isTerminated"] for c in children)
    assert parent["arrayProperties"]["statusSummary"]["FAILED"] == 3


def test_terminate_child_ends_that_child_only(batch: Any, env: Env, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    parent_id = _submit_array(batch, env, _gate(gate), 3)
    wait_for(lambda: _statuses(batch, parent_id, 3), lambda s: s == ["RUNNING"] * 3, what="children running")
    batch.terminate_job(jobId=f"{parent_id}:1", reason="only this one")
    assert wait_status(batch, f"{parent_id}:1")["statusReason"] == "only this one"
    assert _statuses(batch, parent_id, 3) == ["RUNNING", "FAILED", "RUNNING"]
    assert describe(batch, parent_id)["status"] == "PENDING"
    gate.touch()
    parent = wait_status(batch, parent_id)
    assert parent["status"] == "FAILED"
    assert parent["statusReason"] == "1 of 3 array child jobs failed"
    assert "isTerminated" not in parent or parent["isTerminated"] is False
    assert _statuses(batch, parent_id, 3) == ["SUCCEEDED", "FAILED", "SUCCEEDED"]


def test_cancel_parent_cancels_waiting_children_and_lets_running_ones_finish(
    batch: Any, tmp_path: Path
) -> None:
    env = make_env(batch, max_vcpus=1)
    gate = tmp_path / "go"
    parent_id = _submit_array(batch, env, _gate(gate), 3)
    wait_for(lambda: _statuses(batch, parent_id, 3), lambda s: s[0] == "RUNNING", what="child 0 running")
    batch.cancel_job(jobId=parent_id, reason="no more")
    assert _statuses(batch, parent_id, 3) == ["RUNNING", "FAILED", "FAILED"]
    assert describe(batch, parent_id)["status"] == "PENDING"
    gate.touch()
    parent = wait_status(batch, parent_id)
    assert (parent["status"], parent["statusReason"], parent["isCancelled"]) == ("FAILED", "no more", True)
    assert _statuses(batch, parent_id, 3) == ["SUCCEEDED", "FAILED", "FAILED"]


def test_fault_rules_apply_to_each_child(server: Server, batch: Any, env: Env) -> None:
    server.admin(
        "PUT",
        "faults",
        {"rules": [{"job_name_contains": "arrfault", "fault": "fail_before_start", "times": 1}]},
    )
    parent_id = _submit_array(batch, env, ["true"], 4, name="arrfault")
    parent = wait_status(batch, parent_id)
    assert parent["status"] == "FAILED"
    assert (
        parent["arrayProperties"]["statusSummary"]["FAILED"],
        parent["arrayProperties"]["statusSummary"]["SUCCEEDED"],
    ) == (1, 3)
    children = batch.describe_jobs(jobs=[f"{parent_id}:{i}" for i in range(4)])["jobs"]
    failed = [c for c in children if c["status"] == "FAILED"]
    assert len(failed) == 1
    assert failed[0]["statusReason"].startswith("CannotPullContainerError: ")


def test_dependency_on_a_parent_waits_for_every_child(batch: Any, env: Env, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    # Child 0 ends at once, child 1 when the gate opens.
    script = f'if [ "$AWS_BATCH_JOB_ARRAY_INDEX" = 1 ]; then while [ ! -e {gate} ]; do sleep 0.05; done; fi'
    parent_id = _submit_array(batch, env, ["sh", "-c", script], 2)
    after = run(batch, env, ["true"], name="after", dependsOn=[{"jobId": parent_id}])
    wait_for(
        lambda: _statuses(batch, parent_id, 2), lambda s: s == ["SUCCEEDED", "RUNNING"], what="child 0 done"
    )
    assert describe(batch, after)["status"] == "PENDING"
    gate.touch()
    assert wait_status(batch, after)["status"] == "SUCCEEDED"
    assert describe(batch, parent_id)["status"] == "SUCCEEDED"


def test_dependency_failure_fails_the_array(batch: Any, env: Env) -> None:
    first = run(batch, env, ["false"], name="first")
    parent_id = _submit_array(batch, env, ["true"], 3, dependsOn=[{"jobId": first}])
    parent = wait_status(batch, parent_id)
    assert parent["status"] == "FAILED"
    assert parent["arrayProperties"]["statusSummary"]["FAILED"] == 3
    assert {
        c["statusReason"] for c in batch.describe_jobs(jobs=[f"{parent_id}:{i}" for i in range(3)])["jobs"]
    } <= {
        f"Dependent Job failed: {first}",
        "Dependent Job failed",
    }


@pytest.mark.parametrize(
    "size", [pytest.param(1, id="one"), pytest.param(0, id="zero"), pytest.param(10001, id="over")]
)
def test_array_size_outside_2_to_10000_is_refused(batch: Any, env: Env, size: int) -> None:
    with pytest.raises(ClientError) as info:
        _submit_array(batch, env, ["true"], size)
    assert info.value.response["Error"]["Code"] == "ClientException"
    assert info.value.response["Error"]["Message"] == (
        f"Array job size must be between 2 and 10000, found {size}."
    )


def test_largest_array_is_created_at_once_and_counted(server: Server, batch: Any) -> None:
    env = make_env(batch, state="DISABLED")  # nothing runs: the children stay RUNNABLE
    server.reset_stats()
    before = server.admin("GET", "health").json()
    parent_id = _submit_array(batch, env, ["true"], 10000)
    last = describe(batch, f"{parent_id}:9999")
    assert last["arrayProperties"] == {"index": 9999}
    after = server.admin("GET", "health").json()
    assert after["jobs"] - before["jobs"] == 10001
    assert (
        after["array_jobs"] - before["array_jobs"],
        after["array_children"] - before["array_children"],
    ) == (
        1,
        10000,
    )
    assert server.stats()["operations"]["SubmitJob"]["requests"] == 1
    wait_for(
        lambda: describe(batch, parent_id)["arrayProperties"]["statusSummary"]["RUNNABLE"],
        lambda n: n == 10000,
        what="every child RUNNABLE",
    )
    batch.cancel_job(jobId=parent_id, reason="done")
    parent = wait_status(batch, parent_id)
    assert (parent["status"], parent["arrayProperties"]["statusSummary"]["FAILED"]) == ("FAILED", 10000)
