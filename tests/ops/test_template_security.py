"""What the rendered template lets each role and container do, and that CloudFormation takes it as is.

cfn-lint (the rules CloudFormation and its resource schemas apply) runs on every variant ``render``
offers, in YAML and JSON: any error or warning fails.
"""

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
)
from airflow_aws_batch.ops.template_hardening import url_warnings

ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/airflow:3.3.2"

VARIANTS: dict[str, dict[str, Any]] = {
    **{compute: {"compute": compute} for compute in COMPUTE_TYPES},
    "ec2-warm": {"compute": "ec2", "min_vcpus": 4},
    "fair-share": {"fair_share": True, "share_decay_seconds": 0},
    "store-existing-bucket": {"workload_store": "s3://airflow-workloads/prod"},
    "store-created-bucket": {"workload_store": "s3://airflow-workloads/prod", "create_workload_bucket": True},
    "store-bucket-root": {"workload_store": "s3://airflow-workloads", "create_workload_bucket": True},
    "scheduler-role": {
        "workload_store": "s3://airflow-workloads/prod",
        "create_workload_bucket": True,
        "scheduler_role": "airflow-scheduler",
    },
    "s3-logs-dags-ecr": {
        "remote_log_folder": "s3://airflow-logs/tasks",
        "dags_s3_uri": "s3://airflow-dags",
        "image": ECR_IMAGE,
        "workload_store": "s3://airflow-logs/workloads",
    },
    "cloudwatch-logs": {
        "remote_log_folder": "cloudwatch://arn:aws:logs:us-east-1:123456789012:log-group:airflow-tasks"
    },
    "public-ip": {"assign_public_ip": True},
    "status-events": {
        "workload_store": "s3://airflow-workloads/prod",
        "create_workload_bucket": True,
        "status_events": True,
        "deployment_id": "analytics-prod",
    },
    "images-and-deployment": {
        "compute": "spot",
        "allowed_images": ("public.ecr.aws/docker/library/python:3.12",),
        "deployment_id": "analytics-prod",
        "extra_environment": {"TZ": "UTC"},
    },
}


def _options(variant: str) -> TemplateOptions:
    return TemplateOptions(**VARIANTS[variant])


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Every IAM statement of the template: role policies and managed policies."""
    found: list[dict[str, Any]] = []
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if "PolicyDocument" in props:
            documents.append(props["PolicyDocument"])
        for document in documents:
            found.extend(document["Statement"])
    return found


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cfn_lint_finds_nothing(variant: str, fmt: str) -> None:
    from cfnlint.api import ManualArgs, lint

    text = dump_template(build_template(_options(variant)), fmt)  # type: ignore[arg-type]
    matches = lint(text, config=ManualArgs(regions=["us-east-1"]))
    assert [f"{m.rule.id} {m.message} at {getattr(m, 'path', '')}" for m in matches] == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_yaml_has_no_anchors_and_reads_back_equal(variant: str) -> None:
    template = build_template(_options(variant))
    text = dump_template(template, "yaml")
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text) == json.loads(json.dumps(template))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_listing_is_held_to_a_prefix(variant: str) -> None:
    for statement in _statements(build_template(_options(variant))):
        if "s3:ListBucket" in statement["Action"]:
            assert statement["Condition"]["StringLike"]["s3:prefix"], statement


def test_task_log_listing_names_its_prefix() -> None:
    template = build_template(TemplateOptions(remote_log_folder="s3://airflow-logs/tasks"))
    (listing,) = [s for s in _statements(template) if s.get("Sid") == "ListTaskLogsS3"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["tasks/*", "tasks"]}}


@pytest.mark.parametrize(
    ("options", "names"),
    [
        pytest.param(
            {"remote_log_folder": "s3://shared/logs", "workload_store": "s3://shared/logs/workloads"},
            "remote_log_folder",
            id="store-under-logs",
        ),
        pytest.param(
            {"remote_log_folder": "s3://shared", "workload_store": "s3://shared/workloads"},
            "remote_log_folder",
            id="logs-bucket-wide",
        ),
        pytest.param(
            {"dags_s3_uri": "s3://shared/airflow", "workload_store": "s3://shared/airflow"},
            "dags_s3_uri",
            id="same-prefix-as-dags",
        ),
    ],
)
def test_a_listable_prefix_that_holds_the_store_is_refused(options: dict[str, Any], names: str) -> None:
    with pytest.raises(TemplateError, match=f"{names}=.* overlaps workload_store="):
        TemplateOptions(**options)


def _scheduler(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    policy = template["Resources"]["SchedulerPolicy"]["Properties"]["PolicyDocument"]
    return {s["Sid"]: s for s in policy["Statement"]}


def test_the_scheduler_registers_only_unprivileged_definitions_of_its_own_names() -> None:
    statements = _scheduler(build_template(TemplateOptions(job_definition="etl-task")))
    register = statements["PerTaskJobDefinitions"]
    assert register["Condition"] == {"Bool": {"batch:Privileged": "false"}}
    names = [r["Fn::Sub"].split(":job-definition/")[1] for r in statements["SubmitJobs"]["Resource"][1:-1]]
    assert names == ["etl-task", "etl-task:*", "etl-task-*"]
    # Nowhere a pattern that also takes "etl-tasks-prod".
    for statement in statements.values():
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for resource in resources:
            text = json.dumps(resource)
            assert "etl-task*" not in text, statement


def test_listed_images_hold_registration_to_them() -> None:
    options = TemplateOptions(allowed_images=("python:3.12", "python:3.13"))
    register = _scheduler(build_template(options))["PerTaskJobDefinitions"]
    assert register["Condition"]["StringEquals"] == {
        "batch:Image": [{"Ref": "Image"}, "python:3.12", "python:3.13"]
    }


@pytest.mark.parametrize(
    ("deployment_id", "condition"),
    [
        pytest.param("", {"Null": {"aws:ResourceTag/deployment": "false"}}, id="any-deployment"),
        pytest.param(
            "analytics-prod",
            {"StringEquals": {"aws:ResourceTag/deployment": "analytics-prod"}},
            id="this-one",
        ),
    ],
)
def test_the_scheduler_terminates_only_jobs_of_a_deployment(
    deployment_id: str, condition: dict[str, Any]
) -> None:
    statements = _scheduler(build_template(TemplateOptions(deployment_id=deployment_id)))
    terminate = [s for s in statements.values() if "batch:TerminateJob" in s["Action"]]
    assert len(terminate) == 1
    assert terminate[0]["Action"] == ["batch:TerminateJob", "batch:CancelJob"]
    # Nothing else grants either action without the condition.
    assert not [s for s in statements.values() if "batch:CancelJob" in s["Action"] and s not in terminate]
    assert terminate[0]["Condition"] == condition
    assert terminate[0]["Resource"] != "*"


@pytest.mark.parametrize("compute", ["ec2", "spot"])
def test_instances_require_imdsv2_with_one_hop(compute: str) -> None:
    template = build_template(TemplateOptions(compute=compute))  # type: ignore[arg-type]
    launch = template["Resources"]["InstanceLaunchTemplate"]
    assert launch["Type"] == "AWS::EC2::LaunchTemplate"
    metadata = launch["Properties"]["LaunchTemplateData"]["MetadataOptions"]
    assert metadata["HttpTokens"] == "required"
    assert metadata["HttpPutResponseHopLimit"] == 1
    resources = template["Resources"]["ComputeEnvironment"]["Properties"]["ComputeResources"]
    assert resources["LaunchTemplate"]["LaunchTemplateId"] == {"Ref": "InstanceLaunchTemplate"}


@pytest.mark.parametrize(("public", "expected"), [(False, "DISABLED"), (True, "ENABLED")])
def test_fargate_tasks_get_no_public_ip_unless_asked(public: bool, expected: str) -> None:
    options = TemplateOptions(assign_public_ip=True) if public else TemplateOptions()
    container = build_template(options)["Resources"]["JobDefinition"]["Properties"]["ContainerProperties"]
    assert container["NetworkConfiguration"] == {"AssignPublicIp": expected}


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://airflow-api.internal:8080/execution/", ["plain http"]),
        ("https://airflow-api.internal/execution/", []),
        ("http://localhost:8080/execution/", ["loopback", "plain http"]),
    ],
)
def test_render_warns_on_plain_http(url: str, says: list[str]) -> None:
    warnings = url_warnings(url)
    assert len(warnings) == len(says)
    for warning, word in zip(warnings, says, strict=True):
        assert word in warning
