"""The Batch API surface: resources, ListJobs paging and filters, tags, errors, and `localbatch setup`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from lb_support import Env, Server, make_env, run, signed_request, wait_status

pytestmark = pytest.mark.contract


def _code(call: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]["Code"], info.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda b, e: b.submit_job(jobName="x", jobQueue="nope", jobDefinition=e.jd),
            "JobQueue nope not found",
            id="submit-unknown-queue",
        ),
        pytest.param(
            lambda b, e: b.submit_job(jobName="x", jobQueue=e.queue, jobDefinition="nope"),
            "Job definition nope does not exist",
            id="submit-unknown-definition",
        ),
        pytest.param(
            lambda b, e: b.submit_job(jobName="-bad name", jobQueue=e.queue, jobDefinition=e.jd),
            "Job name should be",
            id="submit-bad-name",
        ),
        pytest.param(
            lambda b, e: b.describe_jobs(jobs=["j"] * 101), "Too many items", id="describe-101-jobs"
        ),
        pytest.param(
            lambda b, e: b.create_job_queue(
                jobQueueName=e.queue,
                priority=1,
                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": e.ce}],
            ),
            "Object already exists",
            id="duplicate-queue",
        ),
        pytest.param(
            lambda b, e: b.delete_compute_environment(computeEnvironment=e.ce),
            "Cannot delete, found existing JobQueue relationship",
            id="delete-ce-in-use",
        ),
        pytest.param(
            lambda b, e: b.delete_job_queue(jobQueue=e.queue),
            "DISABLED",
            id="delete-enabled-queue",
        ),
        pytest.param(
            lambda b, e: b.terminate_job(jobId="nope", reason="r"),
            "Job nope not found",
            id="terminate-unknown",
        ),
        pytest.param(
            lambda b, e: b.register_job_definition(
                jobDefinitionName="img", type="container", containerProperties={"image": "no spaces"}
            ),
            "Invalid image name",
            id="register-bad-image",
        ),
        pytest.param(
            lambda b, e: b.describe_job_definitions(jobDefinitions=[e.jd], status="ACTIVE"),
            "can't be used with",
            id="describe-definitions-and-status",
        ),
    ],
)
def test_client_errors(batch: Any, env: Env, call: Any, message: str) -> None:
    with pytest.raises(ClientError) as info:
        call(batch, env)
    error = info.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ClientException", 400)
    assert message in error["Error"]["Message"]
    assert isinstance(info.value, batch.exceptions.ClientException)


def test_requests_are_validated_against_the_model(server: Server) -> None:
    before = server.admin("GET", "stats").json()["operations"].get("SubmitJob", {"client_errors": 0})
    body = json.dumps({"jobName": "x"}).encode()
    response = signed_request(server, "POST", "/v1/submitjob", body, {"Content-Type": "application/json"})
    assert response.status_code == 400
    after = server.admin("GET", "stats").json()["operations"]["SubmitJob"]
    assert after["client_errors"] == before["client_errors"] + 1
    assert response.headers["x-amzn-ErrorType"] == "ClientException"
    assert "Missing required parameter" in response.json()["message"]


def test_resource_lifecycle(batch: Any, env: Env) -> None:
    ce = batch.describe_compute_environments(computeEnvironments=[env.ce])["computeEnvironments"][0]
    assert (ce["state"], ce["status"], ce["type"]) == ("ENABLED", "VALID", "MANAGED")
    queue = batch.describe_job_queues(jobQueues=[env.queue])["jobQueues"][0]
    assert queue["computeEnvironmentOrder"] == [
        {"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}
    ]
    batch.update_job_queue(jobQueue=env.queue, priority=7, state="DISABLED")
    queue = batch.describe_job_queues(jobQueues=[queue["jobQueueArn"]])["jobQueues"][0]
    assert (queue["priority"], queue["state"]) == (7, "DISABLED")
    second = batch.register_job_definition(
        jobDefinitionName=env.jd, type="container", containerProperties={"image": "busybox:2"}
    )
    assert second["revision"] == 2
    active = batch.describe_job_definitions(jobDefinitions=[env.jd])["jobDefinitions"]
    assert [d["revision"] for d in active] == [1, 2]
    batch.deregister_job_definition(jobDefinition=f"{env.jd}:2")
    inactive = batch.describe_job_definitions(jobDefinitionName=env.jd, status="INACTIVE")["jobDefinitions"]
    assert [d["revision"] for d in inactive] == [2]
    batch.delete_job_queue(jobQueue=env.queue)
    assert batch.describe_job_queues(jobQueues=[env.queue])["jobQueues"] == []
    batch.update_compute_environment(computeEnvironment=env.ce, state="DISABLED")
    batch.delete_compute_environment(computeEnvironment=env.ce)
    assert batch.describe_compute_environments(computeEnvironments=[env.ce])["computeEnvironments"] == []


def test_tags(batch: Any, env: Env) -> None:
    jd_arn = batch.describe_job_definitions(jobDefinitionName=env.jd)["jobDefinitions"][0]["jobDefinitionArn"]
    batch.tag_resource(resourceArn=jd_arn, tags={"team": "data", "tier": "1"})
    batch.untag_resource(resourceArn=jd_arn, tagKeys=["tier"])
    assert batch.list_tags_for_resource(resourceArn=jd_arn)["tags"] == {"team": "data"}
    job_id = run(batch, env, ["true"], tags={"dag_id": "d"}, propagateTags=True)
    job = wait_status(batch, job_id)
    assert job["tags"] == {"team": "data", "dag_id": "d"}
    assert batch.list_tags_for_resource(resourceArn=job["jobArn"])["tags"] == job["tags"]
    assert _code(lambda: batch.list_tags_for_resource(resourceArn=jd_arn + "0")) == ("ClientException", 400)


def test_list_jobs_by_status_filters_and_pages(batch: Any) -> None:
    env = make_env(batch, state="DISABLED")
    before = int(time.time() * 1000) - 1
    ids = [run(batch, env, ["true"], name=f"alpha-{i}") for i in range(5)] + [
        run(batch, env, ["true"], name="beta")
    ]
    wait_status(batch, ids[-1], "RUNNABLE")

    def listed(**kwargs: Any) -> list[str]:
        out: list[str] = []
        paginator = batch.get_paginator("list_jobs")
        for page in paginator.paginate(jobQueue=env.queue, PaginationConfig={"PageSize": 2}, **kwargs):
            out.extend(s["jobId"] for s in page["jobSummaryList"])
        return out

    assert listed() == []  # without a status, only RUNNING jobs, like AWS
    assert listed(jobStatus="RUNNABLE") == ids
    assert listed(filters=[{"name": "JOB_NAME", "values": ["ALPHA-*"]}]) == ids[:5]
    assert listed(filters=[{"name": "JOB_NAME", "values": ["beta"]}]) == ids[5:]
    assert listed(filters=[{"name": "AFTER_CREATED_AT", "values": [str(before)]}]) == ids
    assert listed(filters=[{"name": "BEFORE_CREATED_AT", "values": [str(before)]}]) == []
    page = batch.list_jobs(jobQueue=env.queue, jobStatus="RUNNABLE", maxResults=4)
    assert len(page["jobSummaryList"]) == 4 and "nextToken" in page
    for job_id in ids:
        batch.cancel_job(jobId=job_id, reason="cleanup")
    assert listed(jobStatus="FAILED") == ids


def test_setup_is_idempotent(server: Server) -> None:
    command = [
        *(sys.executable, "-m", "localbatch", "setup", "--endpoint-url", server.url),
        *("--compute-environment", "setup-ce", "--job-queue", "setup-q", "--job-definition", "setup-jd"),
        *("--env", "A=1", "--api-server-url", "http://127.0.0.1:8080/"),
    ]
    env = {**os.environ, **server.aws_env()}
    outputs = [
        subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout for _ in range(2)
    ]
    assert outputs[0] == outputs[1]
    assert "setup-jd:1" in outputs[0]
    batch = server.client("batch")
    jd = batch.describe_job_definitions(jobDefinitionName="setup-jd")["jobDefinitions"]
    assert len(jd) == 1
    assert jd[0]["containerProperties"]["environment"] == [
        {"name": "A", "value": "1"},
        {"name": "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "value": "http://127.0.0.1:8080/execution/"},
    ]
    job_id = batch.submit_job(
        jobName="s", jobQueue="setup-q", jobDefinition="setup-jd", containerOverrides={"command": ["true"]}
    )["jobId"]
    assert wait_status(batch, job_id)["status"] == "SUCCEEDED"


def test_sts_get_caller_identity_answers_for_credential_checks(server: Server) -> None:
    identity = server.client("sts").get_caller_identity()
    assert (identity["Account"], identity["Arn"]) == (
        "123456789012",
        "arn:aws:iam::123456789012:user/localbatch",
    )


def test_submit_payload_over_30_kib_is_rejected(batch: Any, env: Env) -> None:
    with pytest.raises(ClientError) as info:
        run(batch, env, ["echo", "x" * (31 * 1024)])
    assert info.value.response["Error"]["Code"] == "ClientException"
    assert "30 KiB" in info.value.response["Error"]["Message"]


def test_container_overrides_over_8192_characters_fail_the_job(batch: Any, env: Env) -> None:
    job = wait_status(batch, run(batch, env, ["echo", "x" * 9000]))
    assert (job["status"], job["statusReason"]) == (
        "FAILED",
        "Container Overrides length must be at most 8192",
    )


@pytest.mark.usefixtures("clean_faults")
def test_denied_operations_answer_access_denied(batch: Any, env: Env, server: Server) -> None:
    server.set_faults({"denied": ["RegisterJobDefinition"]})
    code = _code(
        lambda: batch.register_job_definition(
            jobDefinitionName="denied", type="container", containerProperties={"image": "busybox"}
        )
    )
    assert code == ("AccessDeniedException", 403)
    # Other operations are untouched.
    assert batch.describe_job_definitions(jobDefinitionName=env.jd)["jobDefinitions"]
