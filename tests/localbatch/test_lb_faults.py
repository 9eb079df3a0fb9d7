"""Fault injection: latency, quotas (429), 5xx, lost SubmitJob responses, job faults, rules, seeds."""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from lb_support import Env, Server, describe, run, wait_for, wait_status

pytestmark = [pytest.mark.contract, pytest.mark.usefixtures("clean_faults")]
NO_RETRY = {"retries": {"mode": "standard", "total_max_attempts": 1}}


def test_admin_endpoint_round_trips_and_rejects_bad_config(server: Server) -> None:
    config = {
        "seed": 3,
        "latency_ms": 0,
        "quotas": {"SubmitJob": 50},
        "rules": [{"job_name_contains": "x", "fault": "hold_runnable"}],
    }
    assert server.admin("PUT", "faults", config).status_code == 200
    got = server.admin("GET", "faults").json()
    assert (got["seed"], got["quotas"], got["rules"][0]["fault"]) == (3, {"SubmitJob": 50.0}, "hold_runnable")
    bad = server.admin("PUT", "faults", {"error_rate": 2})
    assert bad.status_code == 400
    assert server.admin("PUT", "faults", {"no_such_field": 1}).status_code == 400
    assert server.admin("PUT", "faults", {"quotas": {"SubmitJobs": 5}}).status_code == 400


def test_latency_is_added_without_blocking_other_requests(server: Server) -> None:
    server.admin("PUT", "faults", {"latency_ms": 400})
    batch = server.client("batch")
    started = time.monotonic()
    batch.describe_job_queues()
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: server.client("batch").describe_job_queues(), range(8)))
    # Eight calls served one after another would take 3.2 s.
    assert time.monotonic() - started < 2.5


def test_quota_answers_429_and_stats_count_it(server: Server) -> None:
    server.admin("PUT", "faults", {"quotas": {"DescribeJobQueues": 2}})
    before = server.admin("GET", "stats").json()["operations"].get("DescribeJobQueues", {"throttled": 0})
    batch = server.client("batch", **NO_RETRY)
    codes = []
    for _ in range(8):
        try:
            batch.describe_job_queues()
            codes.append("ok")
        except ClientError as error:
            codes.append(error.response["Error"]["Code"])
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert set(codes) == {"ok", "TooManyRequestsException"}
    after = server.admin("GET", "stats").json()["operations"]["DescribeJobQueues"]
    assert after["throttled"] - before["throttled"] == codes.count("TooManyRequestsException")
    assert server.admin("DELETE", "stats").json() == {"operations": {}}
    assert server.admin("GET", "stats").json() == {"operations": {}}


def test_shared_quota_covers_operations_without_their_own(server: Server) -> None:
    server.admin("PUT", "faults", {"quotas": {"*": 3, "DescribeJobQueues": 1000}})
    batch = server.client("batch", **NO_RETRY)
    codes = []
    for call in [batch.describe_compute_environments, batch.describe_job_definitions] * 4:
        try:
            call()
            codes.append("ok")
        except ClientError as error:
            codes.append(error.response["Error"]["Code"])
    assert "TooManyRequestsException" in codes
    for _ in range(8):
        batch.describe_job_queues()  # its own, larger bucket


@pytest.mark.parametrize(
    ("service", "call", "code"),
    [
        pytest.param(
            "batch", lambda c: c.describe_job_queues(), "ServerException", id="batch-server-exception"
        ),
        pytest.param(
            "logs",
            lambda c: c.describe_log_streams(logGroupName="/aws/batch/job"),
            "ServiceUnavailableException",
            id="logs-service-unavailable",
        ),
    ],
)
def test_error_rate_answers_5xx(server: Server, service: str, call: Any, code: str) -> None:
    server.admin("PUT", "faults", {"error_rate": 1.0})
    with pytest.raises(ClientError) as info:
        call(server.client(service, **NO_RETRY))
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_fail_before_start_rule_hits_only_the_first_match(server: Server, batch: Any, env: Env) -> None:
    server.admin(
        "PUT",
        "faults",
        {"rules": [{"job_name_contains": "fail_once", "fault": "fail_before_start", "times": 1}]},
    )
    first = wait_status(batch, run(batch, env, ["true"], name="t-fail_once-1"))
    second = wait_status(batch, run(batch, env, ["true"], name="t-fail_once-2"))
    assert first["status"] == "FAILED"
    assert first["statusReason"].startswith("CannotPullContainerError: ")
    assert first["attempts"][0]["container"]["reason"] == first["statusReason"]
    assert second["status"] == "SUCCEEDED"


def test_fail_before_start_is_retried_by_retry_strategy(server: Server, batch: Any, env: Env) -> None:
    server.admin(
        "PUT", "faults", {"rules": [{"job_name_contains": "pull", "fault": "fail_before_start", "times": 1}]}
    )
    job = wait_status(
        batch,
        run(
            batch,
            env,
            ["true"],
            name="pull",
            retryStrategy={
                "attempts": 2,
                "evaluateOnExit": [{"onReason": "CannotPullContainerError:*", "action": "RETRY"}],
            },
        ),
    )
    assert (job["status"], len(job["attempts"])) == ("SUCCEEDED", 2)


def test_host_lost_kills_a_running_job(server: Server, batch: Any, env: Env) -> None:
    server.admin(
        "PUT",
        "faults",
        {"rules": [{"job_name_contains": "lost", "fault": "host_lost", "after_seconds": 0.3}]},
    )
    job = wait_status(batch, run(batch, env, ["sleep", "30"], name="lost"))
    assert job["status"] == "FAILED"
    assert re.fullmatch(r"Host EC2 \(instance i-[0-9a-f]{17}\) terminated\.", job["statusReason"])
    assert "exitCode" not in job["attempts"][0]["container"]


def test_hold_runnable_until_faults_change(server: Server, batch: Any, env: Env) -> None:
    server.admin("PUT", "faults", {"rules": [{"job_name_contains": "stuck", "fault": "hold_runnable"}]})
    held = run(batch, env, ["true"], name="stuck")
    other = run(batch, env, ["true"], name="free")
    assert wait_status(batch, other)["status"] == "SUCCEEDED"
    job = describe(batch, held)
    assert job["status"] == "RUNNABLE"
    assert job["statusReason"].startswith("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - ")
    server.admin("PUT", "faults", {})
    assert wait_status(batch, held)["status"] == "SUCCEEDED"


def _outcomes(server: Server, batch: Any, env: Env, config: dict[str, Any]) -> list[str]:
    server.admin("PUT", "faults", config)
    outcomes = []
    for i in range(8):
        job = wait_status(batch, run(batch, env, ["true"], name=f"seeded{i}"))
        outcomes.append(job["status"])
    return outcomes


def test_rates_are_repeatable_from_the_seed(server: Server, batch: Any, env: Env) -> None:
    config = {"seed": 11, "fail_before_start_rate": 0.5}
    first = _outcomes(server, batch, env, config)
    assert set(first) == {"SUCCEEDED", "FAILED"}
    assert _outcomes(server, batch, env, config) == first
    assert _outcomes(server, batch, env, {**config, "seed": 12}) != first


def test_host_lost_rate(server: Server, batch: Any, env: Env) -> None:
    server.admin("PUT", "faults", {"host_lost_rate": 1.0})
    job = wait_status(batch, run(batch, env, ["sleep", "30"]))
    assert job["statusReason"].startswith("Host EC2 (instance i-")


def test_hold_runnable_rate(server: Server, batch: Any, env: Env) -> None:
    server.admin("PUT", "faults", {"hold_runnable": {"rate": 1.0, "reason": "CAPACITY:TEST - held"}})
    job_id = run(batch, env, ["true"])
    job = wait_for(lambda: describe(batch, job_id), lambda j: j["status"] == "RUNNABLE", what="RUNNABLE")
    assert job["statusReason"] == "CAPACITY:TEST - held"
    batch.cancel_job(jobId=job_id, reason="cleanup")


@pytest.mark.parametrize(
    ("faults", "lost"),
    [
        pytest.param(
            {"rules": [{"job_name_contains": "lostresp", "fault": "lost_response", "times": 1}]},
            [True, False],
            id="rule-first-submit-only",
        ),
        pytest.param({"lost_response_rate": 1.0}, [True, True], id="rate-every-submit"),
        pytest.param(
            {"lost_response_rate": 1.0, "lost_response_mode": "drop"}, [True], id="dropped-connection"
        ),
    ],
)
def test_lost_response_creates_the_job_then_loses_the_answer(
    server: Server, batch: Any, env: Env, faults: dict[str, Any], lost: list[bool]
) -> None:
    server.admin("PUT", "faults", faults)
    before = server.admin("GET", "stats").json()["operations"].get("SubmitJob", {}).get("lost_responses", 0)
    name = f"lostresp-{uuid.uuid4().hex[:8]}"
    no_retry = server.client("batch", **NO_RETRY)
    answered: list[str | None] = []
    for _ in lost:
        checked = len(server.shape_problems)
        try:
            response = no_retry.submit_job(
                jobName=name,
                jobQueue=env.queue,
                jobDefinition=env.jd,
                containerOverrides={"command": ["true"]},
            )
        except ClientError as error:
            assert faults.get("lost_response_mode", "server_error") == "server_error"
            assert error.response["Error"]["Code"] == "ServerException"
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            answered.append(None)
        else:
            # A connection cut mid-body: botocore does not enforce Content-Length, so it parses the
            # stump as a 200 that carries no jobId rather than raising.
            answered.append(response.get("jobId"))
            if answered[-1] is None:
                missing = [
                    "SubmitJob.jobName: required member missing",
                    "SubmitJob.jobId: required member missing",
                ]
                assert server.shape_problems[checked:] == missing
                del server.shape_problems[checked:]  # the point of the fault, not a localbatch bug
    assert [job_id is None for job_id in answered] == lost
    listed = batch.list_jobs(jobQueue=env.queue, filters=[{"name": "JOB_NAME", "values": [name]}])
    created = [j["jobId"] for j in listed["jobSummaryList"]]
    # Every call created its job, answered or not, and each runs like any other.
    assert len(created) == len(lost)
    assert {job_id for job_id in answered if job_id} <= set(created)
    assert [wait_status(batch, job_id)["status"] for job_id in created] == ["SUCCEEDED"] * len(lost)
    after = server.admin("GET", "stats").json()["operations"]["SubmitJob"]["lost_responses"]
    assert after - before == sum(lost)


@pytest.mark.parametrize(
    ("faults", "overrides", "prefix"),
    [
        pytest.param(
            {"rules": [{"job_name_contains": "late", "fault": "hold_runnable"}]},
            {},
            "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - ",
            id="hold-capacity",
        ),
        pytest.param(
            {},
            {"resourceRequirements": [{"type": "VCPU", "value": "64"}]},
            "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - ",
            id="too-large-for-every-compute-environment",
        ),
    ],
)
def test_runnable_reasons_come_late_as_in_batch(
    *, server: Server, batch: Any, env: Env, faults: dict[str, Any], overrides: dict[str, Any], prefix: str
) -> None:
    server.admin("PUT", "faults", {**faults, "runnable_reason_delay_seconds": 1.5})
    job_id = run(batch, env, ["true"], name="late", containerOverrides=overrides)
    first = wait_for(lambda: describe(batch, job_id), lambda j: j["status"] == "RUNNABLE", what="RUNNABLE")
    became_runnable = time.monotonic()
    assert not first.get("statusReason"), first  # Batch says nothing at first
    job = wait_for(
        lambda: describe(batch, job_id), lambda j: bool(j.get("statusReason")), what="the late reason"
    )
    assert time.monotonic() - became_runnable >= 1.0
    assert job["status"] == "RUNNABLE"
    assert job["statusReason"].startswith(prefix)
    batch.cancel_job(jobId=job_id, reason="cleanup")
