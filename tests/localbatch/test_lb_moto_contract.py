"""The same requests against localbatch and moto's server: response shapes and error codes compared.

moto cannot run jobs here (it needs Docker), so only the API surface is compared. Where moto and AWS
differ, localbatch follows AWS (the botocore service model and the AWS API reference):

- Errors: the Batch model declares only ClientException and ServerException. moto answers some
  invalid requests (duplicate names, bad names) with InvalidParameterValueException, which AWS's Batch
  API does not have; localbatch answers ClientException, as AWS does.
- moto requires `serviceRole` to name an existing IAM role; AWS and localbatch accept a missing one
  (AWS then uses its service-linked role).
- moto returns extra or fewer optional members in places (e.g. ecsClusterArn, job `container` details
  before a job starts); the comparison below covers the members every client relies on and lists the
  known optional differences explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from lb_support import Server, wait_for
from moto.server import ThreadedMotoServer

from devstack import aws_client
from devstack.clients import TESTING_CREDENTIALS

pytestmark = pytest.mark.contract

# Optional members only one side returns, per step (at any depth). Measured, not guessed: the
# test fails if a member outside these sets differs. localbatch returns what AWS documents
# (isCancelled/isTerminated, retryStrategy, attempt statusReason, container taskArn...); moto fills
# the legacy vcpus/memory/privileged fields and its own environment variables instead.
KNOWN_OPTIONAL: dict[str, set[str]] = {
    "describe_compute_environments": {"containerOrchestrationType", "uuid"},
    "describe_job_queues": {"jobStateTimeLimitActions", "statusReason"},
    "describe_job_definitions": {"containerOrchestrationType", "platformCapabilities", "propagateTags"},
    "describe_jobs": {
        *("exitCode", "statusReason", "containerInstanceArn", "image", "mountPoints", "networkInterfaces"),
        *(
            "resourceRequirements",
            "secrets",
            "taskArn",
            "isCancelled",
            "isTerminated",
            "platformCapabilities",
        ),
        *("propagateTags", "retryStrategy", "environment", "memory", "privileged", "readonlyRootFilesystem"),
        "vcpus",
    },
    "list_jobs": {"container", "isCancelled", "isTerminated", "statusReason"},
}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # Without Docker, moto's "simple" Batch backend marks jobs SUCCEEDED instead of trying to run them.
    httpx.post(f"{url}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
    try:
        yield url
    finally:
        # moto's backends are process-wide: the next suite's moto server must not find these resources.
        httpx.post(f"{url}/moto-api/reset", timeout=10)
        httpx.post(f"{url}/moto-api/config", json={"batch": {"use_docker": True}}, timeout=10)
        server.stop()


Outcome = tuple[str, Any]


def _shape(value: Any) -> Any:
    """Keys present, recursively, with the first item of each list standing for all."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _scenario(
    url: str, is_moto: bool, credentials: Mapping[str, str] = TESTING_CREDENTIALS
) -> dict[str, Outcome]:
    batch = aws_client("batch", url, credentials=credentials)
    role = "arn:aws:iam::123456789012:role/batch"
    if is_moto:  # moto insists that the service role exists in its IAM
        iam = aws_client("iam", url)
        role = iam.create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    out: dict[str, Outcome] = {}

    def step(name: str, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except ClientError as error:
            out[name] = (
                "error",
                (error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]),
            )
            return None
        out[name] = ("ok", _shape(result))
        return result

    step(
        "create_compute_environment",
        lambda: batch.create_compute_environment(
            computeEnvironmentName="contract-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
        ),
    )
    step(
        "describe_compute_environments",
        lambda: batch.describe_compute_environments(computeEnvironments=["contract-ce"]),
    )
    step(
        "create_job_queue",
        lambda: batch.create_job_queue(
            jobQueueName="contract-q",
            priority=1,
            state="ENABLED",
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "contract-ce"}],
        ),
    )
    step("describe_job_queues", lambda: batch.describe_job_queues(jobQueues=["contract-q"]))
    step("update_job_queue", lambda: batch.update_job_queue(jobQueue="contract-q", priority=2))
    jd = step(
        "register_job_definition",
        lambda: batch.register_job_definition(
            jobDefinitionName="contract-jd",
            type="container",
            containerProperties={
                "image": "busybox",
                "command": ["true"],
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
            },
        ),
    )
    step("describe_job_definitions", lambda: batch.describe_job_definitions(jobDefinitionName="contract-jd"))
    job = step(
        "submit_job",
        lambda: batch.submit_job(jobName="contract-job", jobQueue="contract-q", jobDefinition="contract-jd"),
    )
    # Compare finished jobs: a job's optional members depend on how far it got.
    wait_for(
        lambda: batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0]["status"],
        lambda status: status in ("SUCCEEDED", "FAILED"),
        what="contract job to finish",
    )
    step("describe_jobs", lambda: batch.describe_jobs(jobs=[job["jobId"]]))
    step(
        "list_jobs",
        lambda: batch.list_jobs(
            jobQueue="contract-q", filters=[{"name": "JOB_NAME", "values": ["contract-*"]}]
        ),
    )
    step("tag_resource", lambda: batch.tag_resource(resourceArn=jd["jobDefinitionArn"], tags={"a": "b"}))
    step("list_tags_for_resource", lambda: batch.list_tags_for_resource(resourceArn=jd["jobDefinitionArn"]))
    step("untag_resource", lambda: batch.untag_resource(resourceArn=jd["jobDefinitionArn"], tagKeys=["a"]))
    step("terminate_job", lambda: batch.terminate_job(jobId=job["jobId"], reason="contract"))
    step("cancel_job", lambda: batch.cancel_job(jobId=job["jobId"], reason="contract"))
    step(
        "deregister_job_definition",
        lambda: batch.deregister_job_definition(jobDefinition=jd["jobDefinitionArn"]),
    )
    step(
        "submit_unknown_queue",
        lambda: batch.submit_job(jobName="x", jobQueue="missing", jobDefinition="contract-jd"),
    )
    step("describe_jobs_unknown", lambda: batch.describe_jobs(jobs=["00000000-0000-0000-0000-000000000000"]))
    step("update_job_queue_disable", lambda: batch.update_job_queue(jobQueue="contract-q", state="DISABLED"))
    step("delete_job_queue", lambda: batch.delete_job_queue(jobQueue="contract-q"))
    step(
        "update_compute_environment",
        lambda: batch.update_compute_environment(computeEnvironment="contract-ce", state="DISABLED"),
    )
    return out


def _strip(shape: Any, optional: set[str]) -> Any:
    if isinstance(shape, dict):
        return {k: _strip(v, optional) for k, v in shape.items() if k not in optional}
    if isinstance(shape, list):
        return [_strip(v, optional) for v in shape]
    return shape


def test_same_requests_same_shapes_and_error_codes(server: Server, moto_url: str) -> None:
    ours = _scenario(server.url, is_moto=False, credentials=server.credentials)
    theirs = _scenario(moto_url, is_moto=True)
    assert ours.keys() == theirs.keys()
    differences = {}
    for step, (kind, value) in ours.items():
        their_kind, their_value = theirs[step]
        optional = KNOWN_OPTIONAL.get(step, set())
        if (kind, _strip(value, optional)) != (their_kind, _strip(their_value, optional)):
            differences[step] = {"localbatch": (kind, value), "moto": (their_kind, their_value)}
    assert differences == {}


# Array jobs: members only one side returns, beyond KNOWN_OPTIONAL. moto keeps arrays in part: its
# children carry neither arrayProperties.index nor the parent's tags (AWS documents both for children),
# its parent, which never runs, reports a startedAt and a container logStreamName, and it has no
# statusSummaryLastUpdatedAt. Not compared here, because moto and AWS differ: moto lists children in
# a queue's ListJobs (AWS lists them by arrayJobId) and accepts an array size outside 2-10,000 (AWS
# refuses it; see test_lb_arrays.py).
ARRAY_OPTIONAL: dict[str, set[str]] = {
    "describe_array_parent": {
        *KNOWN_OPTIONAL["describe_jobs"],
        *("startedAt", "logStreamName", "statusSummaryLastUpdatedAt"),
    },
    "describe_array_child": {*KNOWN_OPTIONAL["describe_jobs"], "arrayProperties", "tags"},
    "list_array_children": {*KNOWN_OPTIONAL["list_jobs"], "arrayProperties"},
}


def _array_scenario(
    url: str, is_moto: bool, credentials: Mapping[str, str] = TESTING_CREDENTIALS
) -> dict[str, Outcome]:
    batch = aws_client("batch", url, credentials=credentials)
    role = "arn:aws:iam::123456789012:role/batch"
    if is_moto:
        iam = aws_client("iam", url)
        role = iam.create_role(RoleName="batch-arrays", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch.create_compute_environment(
        computeEnvironmentName="contract-arr-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
    )
    batch.create_job_queue(
        jobQueueName="contract-arr-q",
        priority=1,
        state="ENABLED",
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "contract-arr-ce"}],
    )
    batch.register_job_definition(
        jobDefinitionName="contract-arr-jd",
        type="container",
        containerProperties={
            "image": "busybox",
            "command": ["true"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
        },
    )
    out: dict[str, Outcome] = {}
    submitted = batch.submit_job(
        jobName="contract-arr",
        jobQueue="contract-arr-q",
        jobDefinition="contract-arr-jd",
        arrayProperties={"size": 2},
        tags={"a": "b"},
    )
    out["submit_array"] = ("ok", _shape(submitted))
    parent_id = submitted["jobId"]
    parent = wait_for(
        lambda: batch.describe_jobs(jobs=[parent_id])["jobs"][0],
        lambda job: job["status"] in ("SUCCEEDED", "FAILED"),
        what="contract array to finish",
    )
    out["describe_array_parent"] = ("ok", _shape(parent))
    # The same summary on both sides (moto adds no statusSummaryLastUpdatedAt).
    props = {k: v for k, v in parent["arrayProperties"].items() if k != "statusSummaryLastUpdatedAt"}
    out["array_parent_summary"] = ("ok", (parent["status"], props))
    out["describe_array_child"] = ("ok", _shape(batch.describe_jobs(jobs=[f"{parent_id}:1"])))
    children = batch.list_jobs(arrayJobId=parent_id, jobStatus="SUCCEEDED")
    out["list_array_children"] = ("ok", _shape(children))
    # Each side's ids are its own; what must match is "<parentId>:<index>" for 0 and 1.
    ids = [j["jobId"] for j in children["jobSummaryList"]]
    out["list_array_children_ids"] = ("ok", sorted(i.replace(parent_id, "<parentId>") for i in ids))
    return out


def test_array_jobs_same_shapes_as_moto(server: Server, moto_url: str) -> None:
    ours = _array_scenario(server.url, is_moto=False, credentials=server.credentials)
    theirs = _array_scenario(moto_url, is_moto=True)
    assert ours.keys() == theirs.keys()
    differences = {}
    for step, (kind, value) in ours.items():
        their_kind, their_value = theirs[step]
        optional = ARRAY_OPTIONAL.get(step, set())
        if (kind, _strip(value, optional)) != (their_kind, _strip(their_value, optional)):
            differences[step] = {"localbatch": (kind, value), "moto": (their_kind, their_value)}
    assert differences == {}
