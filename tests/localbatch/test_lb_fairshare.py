"""Fair-share scheduling policies: their API, the job queue and SubmitJob rules, and the order jobs run in."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from lb_support import Env, make_env, run, start_server, wait_for, wait_status

pytestmark = pytest.mark.contract


def _policy(batch: Any, **fairshare: Any) -> str:
    name = f"sp{uuid.uuid4().hex[:10]}"
    arn: str = batch.create_scheduling_policy(name=name, fairsharePolicy=fairshare)["arn"]
    return arn


def _fair_env(batch: Any, max_vcpus: int = 8, state: str = "ENABLED", **fairshare: Any) -> tuple[Env, str]:
    """An Env whose queue is fair share (its policy's ARN returned too)."""
    env = make_env(batch, max_vcpus=max_vcpus, state=state)
    policy = _policy(batch, **fairshare)
    queue = f"{env.queue}-fair"
    batch.create_job_queue(
        jobQueueName=queue,
        priority=1,
        schedulingPolicyArn=policy,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env.ce}],
    )
    return Env(env.ce, queue, env.jd), policy


def _error(call: Any) -> str:
    with pytest.raises(ClientError) as info:
        call()
    error = info.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ClientException", 400)
    return str(error["Error"]["Message"])


def test_scheduling_policy_lifecycle(batch: Any) -> None:
    name = f"sp{uuid.uuid4().hex[:10]}"
    distribution = [{"shareIdentifier": "teamA", "weightFactor": 0.5}, {"shareIdentifier": "etl*"}]
    created = batch.create_scheduling_policy(
        name=name,
        fairsharePolicy={"shareDecaySeconds": 3600, "shareDistribution": distribution},
        tags={"team": "data"},
    )
    arn = created["arn"]
    assert created == {"name": name, "arn": arn, "ResponseMetadata": created["ResponseMetadata"]}
    assert arn.endswith(f":scheduling-policy/{name}")
    [policy] = batch.describe_scheduling_policies(arns=[arn, arn + "-missing"])["schedulingPolicies"]
    assert policy == {
        "name": name,
        "arn": arn,
        "fairsharePolicy": {
            "shareDecaySeconds": 3600,
            "computeReservation": 0,
            "shareDistribution": [
                {"shareIdentifier": "teamA", "weightFactor": 0.5},
                {"shareIdentifier": "etl*"},
            ],
        },
        "tags": {"team": "data"},
    }
    listed = [
        p["arn"]
        for page in batch.get_paginator("list_scheduling_policies").paginate(PaginationConfig={"PageSize": 1})
        for p in page["schedulingPolicies"]
    ]
    assert arn in listed
    batch.update_scheduling_policy(arn=arn, fairsharePolicy={"computeReservation": 10})
    updated = batch.describe_scheduling_policies(arns=[arn])["schedulingPolicies"][0]["fairsharePolicy"]
    assert updated == {"shareDecaySeconds": 0, "computeReservation": 10, "shareDistribution": []}
    batch.tag_resource(resourceArn=arn, tags={"tier": "1"})
    batch.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert batch.list_tags_for_resource(resourceArn=arn)["tags"] == {"tier": "1"}
    batch.delete_scheduling_policy(arn=arn)
    assert batch.describe_scheduling_policies(arns=[arn])["schedulingPolicies"] == []
    assert "not found" in _error(lambda: batch.delete_scheduling_policy(arn=arn))


def test_job_queue_names_its_policy(batch: Any) -> None:
    env, policy = _fair_env(batch)
    queue = batch.describe_job_queues(jobQueues=[env.queue])["jobQueues"][0]
    assert queue["schedulingPolicyArn"] == policy
    other = _policy(batch)
    batch.update_job_queue(jobQueue=env.queue, schedulingPolicyArn=other)
    assert batch.describe_job_queues(jobQueues=[env.queue])["jobQueues"][0]["schedulingPolicyArn"] == other
    # The queue no longer uses the first policy, so it can go; the one it uses cannot.
    batch.delete_scheduling_policy(arn=policy)
    assert "Cannot delete, found existing JobQueue relationship" in _error(
        lambda: batch.delete_scheduling_policy(arn=other)
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda b, e, p: b.create_scheduling_policy(name=p.rsplit("/", 1)[1]),
            "Object already exists",
            id="duplicate-policy",
        ),
        pytest.param(
            lambda b, e, p: b.create_scheduling_policy(name="bad name"),
            "name must be up to 128 letters",
            id="bad-policy-name",
        ),
        pytest.param(
            lambda b, e, p: _policy(b, shareDistribution=[{"shareIdentifier": "a", "weightFactor": 0}]),
            "between 0.0001 and 999.9999",
            id="weight-factor-out-of-range",
        ),
        pytest.param(
            lambda b, e, p: _policy(
                b, shareDistribution=[{"shareIdentifier": "UserA*"}, {"shareIdentifier": "UserA1"}]
            ),
            "overlap",
            id="overlapping-shares",
        ),
        pytest.param(
            lambda b, e, p: _policy(b, shareDecaySeconds=604801),
            "shareDecaySeconds must be between 0 and 604800",
            id="share-decay-out-of-range",
        ),
        pytest.param(
            lambda b, e, p: _policy(b, computeReservation=100),
            "computeReservation must be between 0 and 99",
            id="compute-reservation-out-of-range",
        ),
        pytest.param(
            lambda b, e, p: b.update_scheduling_policy(arn=p + "-missing", fairsharePolicy={}),
            "not found",
            id="update-unknown-policy",
        ),
        pytest.param(
            lambda b, e, p: b.create_job_queue(
                jobQueueName=f"{e.queue}-x",
                priority=1,
                schedulingPolicyArn=p + "-missing",
                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": e.ce}],
            ),
            "not found",
            id="queue-with-unknown-policy",
        ),
        pytest.param(
            lambda b, e, p: b.update_job_queue(jobQueue=e.queue, schedulingPolicyArn=p),
            "Cannot add a scheduling policy to a job queue created without one",
            id="fifo-queue-cannot-become-fair-share",
        ),
        pytest.param(
            lambda b, e, p: b.delete_scheduling_policy(arn=p),
            "Cannot delete, found existing JobQueue relationship",
            id="delete-policy-in-use",
        ),
    ],
)
def test_policy_and_queue_errors(batch: Any, call: Any, message: str) -> None:
    _, policy = _fair_env(batch)  # its queue keeps the policy in use
    fifo = make_env(batch)
    assert message in _error(lambda: call(batch, fifo, policy))


@pytest.mark.parametrize(
    ("fair", "kwargs", "message"),
    [
        pytest.param(True, {}, "shareIdentifier must be specified.", id="fair-share-queue-needs-share"),
        pytest.param(
            False,
            {"shareIdentifier": "teamA"},
            "doesn't have a fair-share scheduling policy",
            id="fifo-queue-refuses-share",
        ),
        pytest.param(
            True,
            {"shareIdentifier": "teamA", "schedulingPriorityOverride": 10000},
            "schedulingPriorityOverride must be between 0 and 9999",
            id="priority-above-9999",
        ),
        pytest.param(
            True,
            {"shareIdentifier": "teamA", "schedulingPriorityOverride": -1},
            "schedulingPriorityOverride must be between 0 and 9999",
            id="priority-below-0",
        ),
        pytest.param(
            True, {"shareIdentifier": "team*"}, "Invalid shareIdentifier", id="job-share-with-asterisk"
        ),
    ],
)
def test_submit_job_share_rules(batch: Any, fair: bool, kwargs: dict[str, Any], message: str) -> None:
    env = _fair_env(batch, state="DISABLED")[0] if fair else make_env(batch, state="DISABLED")
    assert message in _error(lambda: run(batch, env, ["true"], **kwargs))


def test_submitted_share_and_priority_are_described(batch: Any) -> None:
    env, _ = _fair_env(batch, state="DISABLED")
    job_id = run(batch, env, ["true"], shareIdentifier="teamA", schedulingPriorityOverride=9999)
    job = wait_status(batch, job_id, "RUNNABLE")
    assert (job["shareIdentifier"], job["schedulingPriority"]) == ("teamA", 9999)
    fifo = make_env(batch, state="DISABLED")
    # AWS accepts a priority on a FIFO queue (it has no effect there).
    fifo_job = run(batch, fifo, ["true"], schedulingPriorityOverride=0)
    assert wait_status(batch, fifo_job, "RUNNABLE")["schedulingPriority"] == 0
    for waiting in (job_id, fifo_job):
        batch.cancel_job(jobId=waiting, reason="cleanup")


def test_high_priority_job_submitted_last_starts_first(batch: Any, tmp_path: Path) -> None:
    """One vCPU, held by a blocker; 10 priority-1 jobs then one priority-9 job wait. When the blocker
    ends, the priority-9 job starts first, then the others in submission order."""
    env, _ = _fair_env(batch, max_vcpus=1)
    release, order = tmp_path / "release", tmp_path / "order"
    blocker = run(
        batch,
        env,
        ["sh", "-c", f"while [ ! -e {release} ]; do sleep 0.02; done"],
        name="blocker",
        shareIdentifier="teamA",
    )
    wait_status(batch, blocker, "RUNNING")
    record = ["sh", "-c", f'echo "$JOB_LABEL" >> {order}']

    def submit(label: str, priority: int) -> str:
        return run(
            batch,
            env,
            record,
            name=label,
            shareIdentifier="teamA",
            schedulingPriorityOverride=priority,
            containerOverrides={"environment": [{"name": "JOB_LABEL", "value": label}]},
        )

    labels = [f"low{i}" for i in range(10)] + ["high"]
    ids = {label: submit(label, 9 if label == "high" else 1) for label in labels}
    for job_id in ids.values():
        wait_status(batch, job_id, "RUNNABLE")
    release.touch()
    assert wait_status(batch, blocker)["status"] == "SUCCEEDED"
    jobs = {label: wait_status(batch, job_id) for label, job_id in ids.items()}
    assert {j["status"] for j in jobs.values()} == {"SUCCEEDED"}
    expected = ["high"] + [f"low{i}" for i in range(10)]
    assert order.read_text().split() == expected
    started = [jobs[label]["startedAt"] for label in expected]
    assert started == sorted(started)


def test_freed_capacity_is_shared_between_shares(batch: Any, tmp_path: Path) -> None:
    """Two vCPUs held by a blocker; teamA submits three jobs, then teamB two. When the blocker ends,
    one job of each share starts (FIFO would start two of teamA's), and the rest wait for them."""
    env, _ = _fair_env(batch, max_vcpus=2)
    release, go_on, started = tmp_path / "release", tmp_path / "go-on", tmp_path / "started"
    blocker = run(
        batch,
        env,
        ["sh", "-c", f"while [ ! -e {release} ]; do sleep 0.02; done"],
        shareIdentifier="teamC",
        containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "2"}]},
    )
    wait_status(batch, blocker, "RUNNING")
    script = f'echo "$JOB_LABEL" >> {started}; while [ ! -e {go_on} ]; do sleep 0.02; done'
    ids = {
        label: run(
            batch,
            env,
            ["sh", "-c", script],
            name=label,
            shareIdentifier=share,
            containerOverrides={"environment": [{"name": "JOB_LABEL", "value": label}]},
        )
        for label, share in [
            ("a1", "teamA"),
            ("a2", "teamA"),
            ("a3", "teamA"),
            ("b1", "teamB"),
            ("b2", "teamB"),
        ]
    }
    for job_id in ids.values():
        wait_status(batch, job_id, "RUNNABLE")
    release.touch()
    for label in ("a1", "b1"):
        wait_status(batch, ids[label], "RUNNING")
    # Both vCPUs are held until go-on exists, so nothing else can have started.
    for label in ("a2", "a3", "b2"):
        assert wait_status(batch, ids[label], "RUNNABLE")["status"] == "RUNNABLE"
    assert sorted(
        wait_for(lambda: started.read_text().split() if started.exists() else [], lambda s: len(s) == 2)
    ) == ["a1", "b1"]
    go_on.touch()
    for job_id in ids.values():
        assert wait_status(batch, job_id)["status"] == "SUCCEEDED"


def test_policies_and_fair_share_jobs_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_server(data)
    try:
        batch = first.client("batch")
        env, policy = _fair_env(batch, state="DISABLED", shareDistribution=[{"shareIdentifier": "teamA"}])
        job_id = run(batch, env, ["true"], shareIdentifier="teamA", schedulingPriorityOverride=7)
        wait_status(batch, job_id, "RUNNABLE")
    finally:
        first.stop()
    second = start_server(data)
    try:
        batch = second.client("batch")
        [described] = batch.describe_scheduling_policies(arns=[policy])["schedulingPolicies"]
        assert described["fairsharePolicy"]["shareDistribution"] == [{"shareIdentifier": "teamA"}]
        assert (
            batch.describe_job_queues(jobQueues=[env.queue])["jobQueues"][0]["schedulingPolicyArn"] == policy
        )
        assert "shareIdentifier must be specified." in _error(lambda: run(batch, env, ["true"]))
        batch.update_compute_environment(computeEnvironment=env.ce, state="ENABLED")
        job = wait_status(batch, job_id)
        assert (job["status"], job["shareIdentifier"], job["schedulingPriority"]) == ("SUCCEEDED", "teamA", 7)
        assert second.shape_problems == []
    finally:
        second.stop()
