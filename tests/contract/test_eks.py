"""AwsBatchExecutor on EKS job definitions, in-process against localbatch and moto's server (real HTTP)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack import LocalBatchServer

from ._airflow import FastExecutor, Recorder, configure, task_workload
from .conftest import BatchResources, Moto

pytestmark = pytest.mark.contract

CONTAINER_QUEUE = "ctr-queue"
CONTAINER_DEFINITION = "ctr-def"
EKS_QUEUE = "eks-queue"
EKS_DEFINITION = "eks-def"
CLUSTER = "arn:aws:eks:us-east-1:123456789012:cluster/batch"
NAMESPACE = "airflow-batch"


@pytest.fixture(scope="module")
def localbatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBatchServer]:
    server = LocalBatchServer(tmp_path_factory.mktemp("localbatch"), args=["--kill-grace-seconds", "1"])
    with server:
        server.setup(
            compute_environment="ctr-ce", job_queue=CONTAINER_QUEUE, job_definition=CONTAINER_DEFINITION
        )
        batch = server.batch
        ce = batch.create_compute_environment(
            computeEnvironmentName="eks-ce",
            type="MANAGED",
            state="ENABLED",
            computeResources={
                "type": "EC2",
                "minvCpus": 0,
                "maxvCpus": 4,
                "instanceTypes": ["m5.large"],
                "subnets": ["subnet-1"],
                "securityGroupIds": ["sg-1"],
                "instanceRole": "arn:aws:iam::123456789012:instance-profile/eks-node",
            },
            eksConfiguration={"eksClusterArn": CLUSTER, "kubernetesNamespace": NAMESPACE},
        )
        batch.create_job_queue(
            jobQueueName=EKS_QUEUE,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}],
        )
        batch.register_job_definition(
            jobDefinitionName=EKS_DEFINITION,
            type="container",
            eksProperties={
                "podProperties": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "apache/airflow:3.3.2",
                            "env": [{"name": "FROM_DEFINITION", "value": "1"}],
                            "resources": {"requests": {"cpu": "1", "memory": "1024Mi"}},
                        }
                    ]
                }
            },
        )
        yield server


def wait_final(batch: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        (job,) = batch.describe_jobs(jobs=[job_id])["jobs"]
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end; last seen {job.get('status')}")


class TI:
    dag_id = "dag"
    run_id = "manual__1"
    map_index = -1
    try_number = 1
    queue = "default"

    def __init__(self, task_id: str, job_id: str) -> None:
        self.task_id = task_id
        self.external_executor_id = job_id


@pytest.mark.parametrize(
    "check_health", ["True", "False"], ids=["kind-from-startup-check", "kind-on-submit-thread"]
)
def test_eks_definition_runs_the_task_command_in_the_pod(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch, check_health: str
) -> None:
    configure(
        monkeypatch,
        localbatch,
        job_queue=EKS_QUEUE,
        job_definition=EKS_DEFINITION,
        check_health_on_startup=check_health,
    )
    executor = FastExecutor(parallelism=8)
    executor.start()
    try:
        rec = Recorder(executor)
        task_id = f"eks_{check_health.lower()}"
        extra = {
            "eksPropertiesOverride": {
                "podProperties": {"containers": [{"env": [{"name": "X", "value": "y"}]}]}
            }
        }
        w = task_workload(task_id, executor_config=extra)
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        rec.until(lambda: bool(rec.states(w.ti.key)), what="the job id")
        job_id = rec.info(w.ti.key, "running")
        # The command runs for real, with a token no API server accepts: the job ends FAILED, which is
        # what carries an exit code and a reason back.
        job = wait_final(localbatch.batch, job_id)
        rec.until(lambda: "failed" in rec.states(w.ti.key), what="the task's failure")
    finally:
        executor.terminate()

    assert "container" not in job
    container = job["eksProperties"]["podProperties"]["containers"][0]
    assert container["name"] == "main"
    assert container["command"][:3] == ["python", "-m", "airflow.sdk.execution_time.execute_workload"]
    assert w.ti.dag_id in container["command"][-1]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["AIRFLOW_IS_EXECUTOR_CONTAINER"] == "true"
    assert env["FROM_DEFINITION"] == "1" and env["X"] == "y"
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1024Mi"}}
    (attempt,) = job["eksAttempts"]
    assert attempt["podNamespace"] == NAMESPACE and attempt["podName"]
    exit_code = attempt["containers"][0]["exitCode"]
    assert exit_code != 0
    reason = rec.info(w.ti.key, "failed")
    assert f"exitCode: {exit_code}" in str(reason), reason

    messages, lines = executor.get_task_log(TI(task_id, job_id), 1)
    assert lines == []
    text = "\n".join(messages)
    assert job_id in text and "no CloudWatch log stream for EKS jobs" in text and attempt["podName"] in text


def test_container_overrides_on_an_eks_definition_fail_the_task_clearly(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, localbatch, job_queue=EKS_QUEUE, job_definition=EKS_DEFINITION)
    executor = FastExecutor(parallelism=8)
    executor.start()
    try:
        rec = Recorder(executor)
        w = task_workload("eks_bad", executor_config={"containerOverrides": {"vcpus": 2}})
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        rec.until(lambda: "failed" in rec.states(w.ti.key), what="the task's failure")
        events = rec.task_events(w.ti.key)
    finally:
        executor.terminate()
    assert any("is an EKS job definition, which takes no containerOverrides" in e for e in events), events
    assert (
        localbatch.batch.list_jobs(
            jobQueue=EKS_QUEUE, filters=[{"name": "JOB_NAME", "values": ["airflow-dag-eks_bad"]}]
        )["jobSummaryList"]
        == []
    )


def test_executor_config_moves_one_task_to_the_eks_definition(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deployment default: a container definition; one task names the EKS definition and queue. Its kind
    is read on a submit thread, before that task's first SubmitJob."""
    configure(monkeypatch, localbatch, job_queue=CONTAINER_QUEUE, job_definition=CONTAINER_DEFINITION)
    executor = FastExecutor(parallelism=8)
    executor.start()
    try:
        rec = Recorder(executor)
        on_eks = task_workload(
            "moved_to_eks",
            executor_config={
                "jobDefinition": EKS_DEFINITION,
                "jobQueue": EKS_QUEUE,
                "eksPropertiesOverride": {
                    "podProperties": {
                        "containers": [{"resources": {"limits": {"cpu": "2", "memory": "2048Mi"}}}]
                    }
                },
            },
        )
        on_container = task_workload("stays_on_container")
        for w in (on_eks, on_container):
            executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        rec.until(lambda: all(rec.states(w.ti.key) for w in (on_eks, on_container)), what="both job ids")
        eks_job, container_job = localbatch.batch.describe_jobs(
            jobs=[rec.info(on_eks.ti.key, "running"), rec.info(on_container.ti.key, "running")]
        )["jobs"]
    finally:
        executor.terminate()
    first = eks_job["eksProperties"]["podProperties"]["containers"][0]
    assert first["command"][:3] == ["python", "-m", "airflow.sdk.execution_time.execute_workload"]
    assert first["resources"]["limits"] == {"cpu": "2", "memory": "2048Mi"}
    assert container_job["container"]["command"][:3] == [
        "python",
        "-m",
        "airflow.sdk.execution_time.execute_workload",
    ]
    assert "eksProperties" not in container_job


def test_localbatch_refuses_the_wrong_override_and_queue(localbatch: LocalBatchServer) -> None:
    batch = localbatch.batch
    cases = [
        (
            {
                "jobQueue": EKS_QUEUE,
                "jobDefinition": EKS_DEFINITION,
                "containerOverrides": {"command": ["true"]},
            },
            "EKS",
        ),
        (
            {
                "jobQueue": CONTAINER_QUEUE,
                "jobDefinition": CONTAINER_DEFINITION,
                "eksPropertiesOverride": {"podProperties": {"containers": [{"command": ["true"]}]}},
            },
            "eksPropertiesOverride",
        ),
        ({"jobQueue": CONTAINER_QUEUE, "jobDefinition": EKS_DEFINITION}, "not compatible with job queue"),
    ]
    for params, text in cases:
        with pytest.raises(batch.exceptions.ClientException, match=text):
            batch.submit_job(jobName="refused", **params)


def test_moto_accepts_the_eks_request(
    moto_server: Moto, batch_resources: BatchResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto's server as an independent reference for the request's shape (its simple backend runs nothing)."""
    batch = moto_server.client("batch")
    batch.register_job_definition(
        jobDefinitionName="moto-eks-def",
        type="container",
        eksProperties={"podProperties": {"containers": [{"name": "main", "image": "apache/airflow:3.3.2"}]}},
    )
    configure(
        monkeypatch, moto_server.url, job_queue=batch_resources.job_queue, job_definition="moto-eks-def"
    )
    # moto has no EKS compute environments, so the startup check would rightly refuse this ECS queue;
    # here moto only stands in as an independent reader of the request's shape.
    monkeypatch.setenv("AIRFLOW__AWS_BATCH_EXECUTOR__CHECK_HEALTH_ON_STARTUP", "False")
    executor = FastExecutor(parallelism=8)
    executor.start()
    try:
        rec = Recorder(executor)
        w = task_workload("moto_eks")
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
        rec.until(lambda: bool(rec.states(w.ti.key)), what="the job id")
        (job,) = batch.describe_jobs(jobs=[rec.info(w.ti.key, "running")])["jobs"]
    finally:
        executor.terminate()
    container = job["eksProperties"]["podProperties"]["containers"][0]
    assert container["command"][:3] == ["python", "-m", "airflow.sdk.execution_time.execute_workload"]
    assert {"name": "AIRFLOW_IS_EXECUTOR_CONTAINER", "value": "true"} in container["env"]


@pytest.mark.parametrize(
    ("job_queue", "job_definition", "failing", "texts"),
    [
        pytest.param(
            EKS_QUEUE,
            EKS_DEFINITION,
            [],
            ["an EKS job definition: tasks run in container 'main'", f"EKS (namespace '{NAMESPACE}')"],
            id="eks-on-eks",
        ),
        pytest.param(
            CONTAINER_QUEUE,
            EKS_DEFINITION,
            ["definition_queue"],
            ["are ECS: Batch refuses such jobs; use a job queue of EKS compute environments"],
            id="eks-on-ecs",
        ),
        pytest.param(
            EKS_QUEUE,
            CONTAINER_DEFINITION,
            ["definition_queue"],
            ["is a container job definition but the compute environments"],
            id="container-on-eks",
        ),
    ],
)
def test_startup_check_names_the_definition_kind_and_refuses_a_mismatched_queue(
    localbatch: LocalBatchServer, job_queue: str, job_definition: str, failing: list[str], texts: list[str]
) -> None:
    from airflow_aws_batch.config import parse_options
    from airflow_aws_batch.eks import DefinitionKind, DefinitionKinds
    from airflow_aws_batch.health import run_checks

    config = parse_options(
        {
            "job_queue": job_queue,
            "job_definition": job_definition,
            "job_name": "a",
            "region_name": "us-east-1",
        }
    )
    definitions = DefinitionKinds()
    items = run_checks(localbatch.batch, config, definitions=definitions)
    assert [item.name for item in items if not item.ok] == failing, items
    details = "\n".join(item.detail for item in items)
    for text in texts:
        assert text in details
    info = definitions.get(job_definition)
    assert info is not None
    assert info.kind is (DefinitionKind.EKS if job_definition == EKS_DEFINITION else DefinitionKind.CONTAINER)
