"""The template builder: pure, so the exact dict is what we test."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from airflow_aws_batch.ops.cloudformation import (
    COMPUTE_TYPES,
    TemplateError,
    TemplateOptions,
    build_template,
    dump_template,
    task_environment,
)

REQUIRED_TYPES = {
    "AWS::Batch::ComputeEnvironment",
    "AWS::Batch::JobQueue",
    "AWS::Batch::JobDefinition",
    "AWS::IAM::Role",
    "AWS::Logs::LogGroup",
}


def _types(template: dict[str, Any]) -> set[str]:
    return {r["Type"] for r in template["Resources"].values()}


def _statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    policies = template["Resources"][role]["Properties"]["Policies"]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


@pytest.mark.parametrize("compute", COMPUTE_TYPES)
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_template_parses_and_has_every_resource(compute: str, fmt: str) -> None:
    text = dump_template(build_template(TemplateOptions(compute=compute)), fmt)  # type: ignore[arg-type]
    parsed = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert parsed["AWSTemplateFormatVersion"] == "2010-09-09"
    assert _types(parsed) >= REQUIRED_TYPES
    # Every Ref/GetAtt points at a resource, a parameter or a pseudo parameter.
    known = set(parsed["Resources"]) | set(parsed["Parameters"]) | {"AWS::Region", "AWS::Partition"}
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "Ref" in node:
                refs.append(node["Ref"])
            if "Fn::GetAtt" in node:
                refs.append(node["Fn::GetAtt"][0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(parsed)
    assert refs and set(refs) <= known


@pytest.mark.parametrize(
    ("compute", "ce_type", "platform", "instance_profile"),
    [
        pytest.param("ec2", "EC2", "EC2", True, id="ec2"),
        pytest.param("spot", "SPOT", "EC2", True, id="spot"),
        pytest.param("fargate", "FARGATE", "FARGATE", False, id="fargate"),
        pytest.param("fargate-spot", "FARGATE_SPOT", "FARGATE", False, id="fargate-spot"),
    ],
)
def test_compute_type_shapes_environment_and_definition(
    compute: str, ce_type: str, platform: str, instance_profile: bool
) -> None:
    template = build_template(TemplateOptions(compute=compute))  # type: ignore[arg-type]
    resources = template["Resources"]
    compute_resources = resources["ComputeEnvironment"]["Properties"]["ComputeResources"]
    definition = resources["JobDefinition"]["Properties"]
    assert compute_resources["Type"] == ce_type
    assert definition["PlatformCapabilities"] == [platform]
    assert ("InstanceProfile" in resources) is instance_profile
    assert ("InstanceRole" in compute_resources) is instance_profile
    assert ("NetworkConfiguration" in definition["ContainerProperties"]) is (platform == "FARGATE")
    if compute == "spot":
        assert compute_resources["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"


def test_names_and_task_environment_come_from_options() -> None:
    options = TemplateOptions(
        job_queue="q1",
        job_definition="d1",
        compute_environment="ce1",
        execution_api_url="https://api.example.internal/execution/",
        remote_log_folder="s3://logs-bucket/airflow",
        dags_s3_uri="s3://dag-bucket/dags",
        extra_environment={"AIRFLOW__CORE__DEFAULT_TIMEZONE": "utc"},
    )
    resources = build_template(options)["Resources"]
    assert resources["JobQueue"]["Properties"]["JobQueueName"] == "q1"
    assert resources["JobDefinition"]["Properties"]["JobDefinitionName"] == "d1"
    assert resources["ComputeEnvironment"]["Properties"]["ComputeEnvironmentName"] == "ce1"
    env = resources["JobDefinition"]["Properties"]["ContainerProperties"]["Environment"]
    assert {e["Name"]: e["Value"] for e in env} == {
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "https://api.example.internal/execution/",
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": "s3://logs-bucket/airflow",
        "S3_URI": "s3://dag-bucket/dags",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "utc",
    }


def test_task_environment_carries_no_scheduler_secrets() -> None:
    env = task_environment(
        TemplateOptions(remote_log_folder="cloudwatch://arn:aws:logs:us-east-1:1:log-group:x")
    )
    assert not {k for k in env if "SQL_ALCHEMY_CONN" in k or "JWT_SECRET" in k or "FERNET" in k}


@pytest.mark.parametrize(
    ("options", "sids", "resources"),
    [
        pytest.param({}, {"Nothing"}, set(), id="no-s3-no-remote-logs"),
        pytest.param(
            {"dags_s3_uri": "s3://dag-bucket/dags"},
            {"ListDagBucket", "ReadDags"},
            {"arn:${AWS::Partition}:s3:::dag-bucket", "arn:${AWS::Partition}:s3:::dag-bucket/dags/*"},
            id="dag-bucket-read-only",
        ),
        pytest.param(
            {"remote_log_folder": "s3://logs/airflow"},
            {"WriteTaskLogsS3", "ListTaskLogsS3"},
            {"arn:${AWS::Partition}:s3:::logs", "arn:${AWS::Partition}:s3:::logs/airflow/*"},
            id="s3-logs-prefix-only",
        ),
        pytest.param(
            {"remote_log_folder": "cloudwatch://arn:aws:logs:eu-west-1:111122223333:log-group:tasks"},
            {"WriteTaskLogsCloudWatch"},
            {
                "arn:aws:logs:eu-west-1:111122223333:log-group:tasks",
                "arn:aws:logs:eu-west-1:111122223333:log-group:tasks:*",
            },
            id="cloudwatch-logs-group-only",
        ),
    ],
)
def test_job_role_grants_only_what_the_options_need(
    options: dict[str, str], sids: set[str], resources: set[str]
) -> None:
    statements = _statements(build_template(TemplateOptions(**options)), "JobRole")  # type: ignore[arg-type]
    assert {s["Sid"] for s in statements} == sids
    found: set[str] = set()
    for statement in statements:
        assert "*" not in statement["Action"]
        for resource in statement["Resource"] if isinstance(statement["Resource"], list) else []:
            found.add(resource["Fn::Sub"] if isinstance(resource, dict) else resource)
    assert found == resources


@pytest.mark.parametrize(
    ("image", "pull_resource"),
    [
        pytest.param(
            "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/airflow:3.3.2",
            "arn:${AWS::Partition}:ecr:eu-west-1:111122223333:repository/team/airflow",
            id="ecr-image-repo-scoped",
        ),
        pytest.param("docker.io/library/airflow:3", None, id="public-image-no-ecr-grant"),
    ],
)
def test_execution_role_pulls_only_its_repository(image: str, pull_resource: str | None) -> None:
    statements = {
        s["Sid"]: s for s in _statements(build_template(TemplateOptions(image=image)), "ExecutionRole")
    }
    assert statements["WriteContainerLogs"]["Resource"] == [{"Fn::GetAtt": ["TaskLogGroup", "Arn"]}]
    if pull_resource is None:
        assert set(statements) == {"WriteContainerLogs"}
    else:
        assert statements["PullImage"]["Resource"] == [{"Fn::Sub": pull_resource}]


@pytest.mark.parametrize(
    ("options", "names"),
    [
        pytest.param(
            {"execution_api_url": "http://api:8080/"}, "execution_api_url", id="url-without-execution"
        ),
        pytest.param({"job_queue": "bad name"}, "job_queue", id="queue-name-pattern"),
        pytest.param({"compute": "lambda"}, "compute", id="unknown-compute"),
        pytest.param({"remote_log_folder": "gs://x"}, "remote_log_folder", id="unsupported-log-target"),
        pytest.param({"dags_s3_uri": "/local/dags"}, "dags_s3_uri", id="dags-not-s3"),
        pytest.param({"compute": "ec2", "min_vcpus": -1}, "min_vcpus", id="min-vcpus-negative"),
        pytest.param(
            {"compute": "ec2", "min_vcpus": 65, "max_vcpus": 64}, "min_vcpus", id="min-vcpus-over-max"
        ),
        pytest.param({"compute": "fargate", "min_vcpus": 2}, "min_vcpus.*Fargate", id="min-vcpus-on-fargate"),
        pytest.param({"share_decay_seconds": 604801}, "share_decay_seconds", id="share-decay-over-a-week"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, Any], names: str) -> None:
    with pytest.raises(TemplateError, match=names):
        TemplateOptions(**options)


@pytest.mark.parametrize(
    ("remote_log_folder", "logging_fragment"),
    [
        pytest.param("", "No remote logging", id="no-remote-logging"),
        pytest.param("s3://logs/airflow", "s3://logs/airflow", id="s3-remote-logging"),
    ],
)
def test_template_carries_the_settings_that_must_agree(remote_log_folder: str, logging_fragment: str) -> None:
    hints = build_template(TemplateOptions(job_queue="q", remote_log_folder=remote_log_folder))["Metadata"][
        "AirflowAwsBatch"
    ]
    assert "[api_auth] jwt_issuer" in hints["SameOnSchedulerAndApiServer"]
    assert "AIRFLOW__CORE__EXECUTION_API_SERVER_URL" in hints["TaskEnvironment"]
    assert logging_fragment in hints["RemoteLogging"]
    assert hints["ExecutorSettings"]["[aws_batch_executor] job_queue"] == "q"


@pytest.mark.parametrize(
    ("options", "min_vcpus"),
    [
        pytest.param({"compute": "ec2"}, 0, id="ec2-cold-by-default"),
        pytest.param({"compute": "spot", "min_vcpus": 8}, 8, id="spot-warm"),
        pytest.param({"compute": "ec2", "min_vcpus": 64, "max_vcpus": 64}, 64, id="ec2-min-equals-max"),
    ],
)
def test_min_vcpus_keeps_warm_capacity(options: dict[str, Any], min_vcpus: int) -> None:
    resources = build_template(TemplateOptions(**options))["Resources"]
    compute = resources["ComputeEnvironment"]["Properties"]["ComputeResources"]
    assert compute["MinvCpus"] == min_vcpus
    assert compute["DesiredvCpus"] == min_vcpus
    assert compute["MinvCpus"] <= compute["MaxvCpus"]


@pytest.mark.parametrize("fair_share", [pytest.param(True, id="fair-share"), pytest.param(False, id="fifo")])
def test_fair_share_attaches_a_scheduling_policy_to_the_queue(fair_share: bool) -> None:
    template = build_template(
        TemplateOptions(job_queue="q1", fair_share=fair_share, share_decay_seconds=7200)
    )
    resources = template["Resources"]
    queue = resources["JobQueue"]["Properties"]
    if not fair_share:
        assert "SchedulingPolicy" not in resources
        assert "SchedulingPolicyArn" not in queue
        return
    policy = resources["SchedulingPolicy"]
    assert policy["Type"] == "AWS::Batch::SchedulingPolicy"
    fair = policy["Properties"]["FairsharePolicy"]
    assert fair["ShareDecaySeconds"] == 7200
    assert {"ShareIdentifier": "default", "WeightFactor": 1.0} in fair["ShareDistribution"]
    assert queue["SchedulingPolicyArn"] == {"Ref": "SchedulingPolicy"}


def test_scheduler_policy_lets_it_register_per_task_definitions_with_the_stacks_roles() -> None:
    template = build_template(TemplateOptions(job_definition="etl-task"))
    policy = template["Resources"]["SchedulerPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    register = statements["PerTaskJobDefinitions"]
    assert register["Action"] == ["batch:RegisterJobDefinition"]
    # Derived definitions are named <job_definition>-<hash>; nothing else that starts alike.
    assert [r["Fn::Sub"].rsplit(":", 1)[1] for r in register["Resource"]] == ["job-definition/etl-task-*"]
    assert "batch:DescribeJobDefinitions" in statements["WatchJobs"]["Action"]
    assert statements["PassTaskRoles"] == {
        "Sid": "PassTaskRoles",
        "Effect": "Allow",
        "Action": ["iam:PassRole"],
        "Resource": [{"Fn::GetAtt": ["JobRole", "Arn"]}, {"Fn::GetAtt": ["ExecutionRole", "Arn"]}],
    }
    assert template["Outputs"]["SchedulerPolicyArn"] == {"Value": {"Ref": "SchedulerPolicy"}}


def _policy_statements(template: dict[str, Any], resource: str) -> list[dict[str, Any]]:
    return list(template["Resources"][resource]["Properties"]["PolicyDocument"]["Statement"])


WORKLOAD_OBJECTS = {"Fn::Sub": "arn:${AWS::Partition}:s3:::airflow-workloads/prod/airflow/*"}


@pytest.mark.parametrize("create_bucket", [True, False], ids=["create-bucket", "existing-bucket"])
def test_workload_store_grants_the_prefix_only_and_expires_objects(create_bucket: bool) -> None:
    template = build_template(
        TemplateOptions(
            workload_store="s3://airflow-workloads/prod/airflow/",
            create_workload_bucket=create_bucket,
            scheduler_role="airflow-scheduler",
        )
    )
    job = [s for s in _statements(template, "JobRole") if s["Sid"] == "ReadOwnWorkload"]
    assert job == [
        {
            "Sid": "ReadOwnWorkload",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:DeleteObject"],
            "Resource": [WORKLOAD_OBJECTS],
        }
    ]
    policy = template["Resources"]["SchedulerWorkloadPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    assert policy["Properties"]["Roles"] == ["airflow-scheduler"]
    assert _policy_statements(template, "SchedulerWorkloadPolicy") == [
        {
            "Sid": "WriteWorkloads",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
            "Resource": [WORKLOAD_OBJECTS],
        }
    ]
    assert template["Outputs"]["SchedulerWorkloadPolicyArn"] == {"Value": {"Ref": "SchedulerWorkloadPolicy"}}
    hints = template["Metadata"]["AirflowAwsBatch"]
    assert hints["ExecutorSettings"]["[aws_batch_executor] workload_store"] == (
        "s3://airflow-workloads/prod/airflow/"
    )
    if create_bucket:
        bucket = template["Resources"]["WorkloadBucket"]
        assert bucket["DeletionPolicy"] == "Retain"
        props = bucket["Properties"]
        assert props["BucketName"] == "airflow-workloads"
        assert props["LifecycleConfiguration"]["Rules"] == [
            {
                "Id": "expire-airflow-workloads",
                "Status": "Enabled",
                "Prefix": "prod/airflow/",
                "ExpirationInDays": 1,
            }
        ]
        assert all(props["PublicAccessBlockConfiguration"].values())
        assert "WorkloadStoreLifecycle" not in hints
    else:
        assert "WorkloadBucket" not in template["Resources"]
        assert '"Expiration":{"Days":1}' in hints["WorkloadStoreLifecycle"]
        assert '"Prefix":"prod/airflow/"' in hints["WorkloadStoreLifecycle"]


def test_no_workload_store_grants_no_s3() -> None:
    template = build_template(TemplateOptions())
    assert "SchedulerWorkloadPolicy" not in template["Resources"]
    assert "WorkloadBucket" not in template["Resources"]
    assert not any("s3:" in json.dumps(s) for s in _statements(template, "JobRole"))
    assert "--workload-store" in template["Metadata"]["AirflowAwsBatch"]["WorkloadStore"]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        pytest.param({"workload_store": "file:///srv/w"}, "expected s3://BUCKET/PREFIX", id="file-store"),
        pytest.param({"workload_store": "s3://Bad_Bucket/p"}, "valid bucket name", id="bad-bucket"),
        pytest.param({"create_workload_bucket": True}, "create_workload_bucket needs", id="create-without"),
        pytest.param({"scheduler_role": "r"}, "scheduler_role needs", id="role-without"),
        pytest.param(
            {"workload_store": "s3://b-1/p", "scheduler_role": "arn:aws:iam::1:role/r"},
            "not an ARN",
            id="role-arn",
        ),
    ],
)
def test_bad_workload_store_options_are_refused_by_name(options: dict[str, Any], says: str) -> None:
    with pytest.raises(TemplateError, match=says):
        TemplateOptions(**options)


@pytest.mark.parametrize("compute", ["ec2", "spot"])
def test_scale_down_delay_keeps_idle_instances_on_ec2_and_spot(compute: str) -> None:
    resources = build_template(TemplateOptions(compute=compute, scale_down_delay=30))["Resources"]  # type: ignore[arg-type]
    compute_resources = resources["ComputeEnvironment"]["Properties"]["ComputeResources"]
    assert compute_resources["ScalingPolicy"] == {"MinScaleDownDelayMinutes": 30}
    unset = build_template(TemplateOptions(compute=compute))["Resources"]  # type: ignore[arg-type]
    assert "ScalingPolicy" not in unset["ComputeEnvironment"]["Properties"]["ComputeResources"]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        pytest.param({"compute": "fargate", "scale_down_delay": 30}, "Fargate", id="fargate"),
        pytest.param({"compute": "ec2", "scale_down_delay": 10}, "20 to 10080", id="below-batch-minimum"),
        pytest.param({"compute": "ec2", "scale_down_delay": 10081}, "20 to 10080", id="above-maximum"),
        pytest.param({"cancel_misconfigured_after": 599}, "600 to 86400", id="cancel-too-soon"),
    ],
)
def test_backstop_options_outside_batchs_bounds_are_refused(options: dict[str, Any], says: str) -> None:
    with pytest.raises(TemplateError, match=says):
        TemplateOptions(**options)


def test_queue_cancels_jobs_stuck_for_a_misconfiguration_after_the_executors_grace() -> None:
    from airflow_aws_batch.options import OPTIONS

    queue = build_template(TemplateOptions())["Resources"]["JobQueue"]["Properties"]
    actions = queue["JobStateTimeLimitActions"]
    assert {a["Reason"] for a in actions} == {
        "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
        "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
    }
    grace = int(next(o for o in OPTIONS if o.name == "misconfiguration_grace_seconds").default)
    for action in actions:
        assert action["State"] == "RUNNABLE"
        assert action["Action"] == "CANCEL"  # the only action for ECS and Fargate environments
        assert action["MaxTimeSeconds"] > grace


@pytest.mark.parametrize("compute", COMPUTE_TYPES)
def test_backstops_pass_cloudformations_schema(compute: str) -> None:
    lint = pytest.importorskip("cfnlint.api")
    delay = 0 if compute.startswith("fargate") else 60
    body = dump_template(
        build_template(TemplateOptions(compute=compute, scale_down_delay=delay)),  # type: ignore[arg-type]
        "json",
    )
    problems = [m for m in lint.lint_all(body) if m.rule.id.startswith("E")]
    assert problems == []
