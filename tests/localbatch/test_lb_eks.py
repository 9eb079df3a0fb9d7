"""EKS in localbatch: EKS compute environments, job definitions with eksProperties, eksPropertiesOverride,
the first container run as a process, DescribeJobs' eksProperties and eksAttempts (every response checked
against botocore's output shapes by the ``batch`` fixture)."""

from __future__ import annotations

import sys
import uuid
from typing import Any

import pytest
from lb_support import make_env, wait_status

pytestmark = pytest.mark.contract

CLUSTER = "arn:aws:eks:us-east-1:123456789012:cluster/batch"


def make_eks(batch: Any, *, args: list[str] | None = None) -> tuple[str, str]:
    """An EKS compute environment, its queue and a definition of two containers; (queue, definition)."""
    name = f"e{uuid.uuid4().hex[:10]}"
    batch.create_compute_environment(
        computeEnvironmentName=f"{name}-ce",
        type="MANAGED",
        computeResources={"type": "EC2", "maxvCpus": 4, "subnets": ["subnet-1"], "instanceRole": "r"},
        eksConfiguration={"eksClusterArn": CLUSTER, "kubernetesNamespace": "batch-jobs"},
    )
    batch.create_job_queue(
        jobQueueName=f"{name}-q",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": f"{name}-ce"}],
    )
    main: dict[str, Any] = {
        "name": "main",
        "image": "python:3",
        "command": ["false"],
        "env": [{"name": "FROM_JD", "value": "jd"}, {"name": "OVERRIDDEN", "value": "jd"}],
        "resources": {"requests": {"cpu": "1", "memory": "512Mi"}},
    }
    if args is not None:
        main["args"] = args
    batch.register_job_definition(
        jobDefinitionName=f"{name}-jd",
        type="container",
        eksProperties={"podProperties": {"containers": [main, {"name": "sidecar", "image": "envoy"}]}},
    )
    return f"{name}-q", f"{name}-jd"


def test_an_eks_job_runs_its_first_container_with_overrides(batch: Any) -> None:
    queue, definition = make_eks(batch)
    (jd,) = batch.describe_job_definitions(jobDefinitionName=definition)["jobDefinitions"]
    assert jd["containerOrchestrationType"] == "EKS" and "containerProperties" not in jd
    assert jd["eksProperties"]["podProperties"]["containers"][0]["name"] == "main"
    (ce,) = batch.describe_compute_environments(computeEnvironments=[queue.replace("-q", "-ce")])[
        "computeEnvironments"
    ]
    assert ce["eksConfiguration"] == {"eksClusterArn": CLUSTER, "kubernetesNamespace": "batch-jobs"}
    assert ce["containerOrchestrationType"] == "EKS"

    script = (
        "import os, sys; sys.exit(0 if os.environ['OVERRIDDEN'] + os.environ['FROM_JD'] == 'subjd' else 3)"
    )
    job_id = batch.submit_job(
        jobName="eks-job",
        jobQueue=queue,
        jobDefinition=definition,
        eksPropertiesOverride={
            "podProperties": {
                "containers": [
                    {
                        "name": "main",
                        "command": [sys.executable, "-c", script],
                        "env": [{"name": "OVERRIDDEN", "value": "sub"}],
                        "resources": {"limits": {"cpu": "2"}},
                    }
                ]
            }
        },
    )["jobId"]
    job = wait_status(batch, job_id)
    assert job["status"] == "SUCCEEDED", job
    assert "container" not in job
    main, sidecar = job["eksProperties"]["podProperties"]["containers"]
    assert main["command"] == [sys.executable, "-c", script]
    assert {"name": "OVERRIDDEN", "value": "sub"} in main["env"]
    assert main["resources"] == {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"cpu": "2"}}
    assert main["exitCode"] == 0 and sidecar["name"] == "sidecar"
    (attempt,) = job["eksAttempts"]
    assert attempt["podName"] == job["eksProperties"]["podProperties"]["podName"]
    assert attempt["podNamespace"] == "batch-jobs" and attempt["eksClusterArn"] == CLUSTER
    assert attempt["containers"][0] == {
        "name": "main",
        "containerID": attempt["containers"][0]["containerID"],
        "exitCode": 0,
    }
    assert attempt["startedAt"] <= attempt["stoppedAt"]


def test_args_follow_the_command_and_a_failure_reports_its_exit_code(batch: Any) -> None:
    queue, definition = make_eks(batch, args=["-c", "import sys; sys.exit(7)"])
    job_id = batch.submit_job(
        jobName="eks-args",
        jobQueue=queue,
        jobDefinition=definition,
        eksPropertiesOverride={"podProperties": {"containers": [{"command": [sys.executable]}]}},
    )["jobId"]
    job = wait_status(batch, job_id)
    assert job["status"] == "FAILED"
    assert job["eksAttempts"][0]["containers"][0]["exitCode"] == 7
    assert job["eksProperties"]["podProperties"]["containers"][0]["exitCode"] == 7


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param(
            {"containerOverrides": {"command": ["true"]}},
            "use eksPropertiesOverride",
            id="container-overrides",
        ),
        pytest.param(
            {"eksPropertiesOverride": {"podProperties": {"containers": [{"name": "nope"}]}}},
            "no container named nope",
            id="unknown-container",
        ),
        pytest.param(
            {
                "eksPropertiesOverride": {
                    "podProperties": {"containers": [{"resources": {"limits": {"memory": "1G"}}}]}
                }
            },
            "Mi suffix",
            id="memory-unit",
        ),
    ],
)
def test_submit_refusals_on_an_eks_definition(batch: Any, params: dict[str, Any], message: str) -> None:
    queue, definition = make_eks(batch)
    with pytest.raises(batch.exceptions.ClientException, match=message):
        batch.submit_job(jobName="refused", jobQueue=queue, jobDefinition=definition, **params)


def test_kinds_of_queue_and_definition_must_match(batch: Any) -> None:
    eks_queue, eks_definition = make_eks(batch)
    ecs = make_env(batch)
    with pytest.raises(batch.exceptions.ClientException, match="not compatible with job queue"):
        batch.submit_job(jobName="x", jobQueue=ecs.queue, jobDefinition=eks_definition)
    with pytest.raises(batch.exceptions.ClientException, match="not compatible with job queue"):
        batch.submit_job(jobName="x", jobQueue=eks_queue, jobDefinition=ecs.jd)
    with pytest.raises(batch.exceptions.ClientException, match="use containerOverrides"):
        batch.submit_job(
            jobName="x",
            jobQueue=ecs.queue,
            jobDefinition=ecs.jd,
            eksPropertiesOverride={"podProperties": {"containers": [{"command": ["true"]}]}},
        )


@pytest.mark.parametrize("namespace", ["default", "kube-batch", "Upper", "-x"])
def test_bad_kubernetes_namespace_is_refused(batch: Any, namespace: str) -> None:
    with pytest.raises(batch.exceptions.ClientException, match="kubernetesNamespace"):
        batch.create_compute_environment(
            computeEnvironmentName=f"bad-{uuid.uuid4().hex[:8]}",
            type="MANAGED",
            computeResources={"type": "EC2", "maxvCpus": 1, "subnets": ["s"], "instanceRole": "r"},
            eksConfiguration={"eksClusterArn": CLUSTER, "kubernetesNamespace": namespace},
        )


def test_a_definition_needs_containers_and_not_both_kinds(batch: Any) -> None:
    with pytest.raises(batch.exceptions.ClientException, match="at least one container"):
        batch.register_job_definition(
            jobDefinitionName="empty-eks",
            type="container",
            eksProperties={"podProperties": {"containers": []}},
        )
    with pytest.raises(batch.exceptions.ClientException, match="not both"):
        batch.register_job_definition(
            jobDefinitionName="both",
            type="container",
            containerProperties={"image": "x"},
            eksProperties={"podProperties": {"containers": [{"image": "x"}]}},
        )
