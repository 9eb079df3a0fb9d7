"""deploy_stack: against moto's CloudFormation, plus the answers only real CloudFormation gives."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from airflow_aws_batch.ops.cloudformation import TemplateOptions, build_template, dump_template
from airflow_aws_batch.ops.provision import ProvisionError, deploy_stack
from devstack import aws_client


@pytest.mark.contract
@pytest.mark.parametrize("compute", ["ec2", "spot", "fargate-spot"])
def test_each_compute_type_deploys_on_moto(moto_url: str, compute: str) -> None:
    ec2 = aws_client("ec2", moto_url)
    vpc = ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.2.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"sg-{compute}", Description="x", VpcId=vpc)["GroupId"]
    options = TemplateOptions(
        compute=compute,  # type: ignore[arg-type]
        job_queue=f"q-{compute}",
        job_definition=f"d-{compute}",
        compute_environment=f"ce-{compute}",
        log_group=f"/airflow/{compute}",
    )
    result = deploy_stack(
        aws_client("cloudformation", moto_url),
        f"stack-{compute}",
        dump_template(build_template(options)),
        {"SubnetIds": subnet, "SecurityGroupIds": group},
        poll_interval=0.1,
        sleep=lambda _: None,
    )
    assert (result.action, result.status) == ("created", "CREATE_COMPLETE")
    assert result.outputs["JobQueueArn"].endswith(f":job-queue/q-{compute}")
    batch = aws_client("batch", moto_url)
    environments = batch.describe_compute_environments(computeEnvironments=[f"ce-{compute}"])
    assert environments["computeEnvironments"][0]["computeResources"]["type"] == compute.upper().replace(
        "-", "_"
    )
    assert aws_client("logs", moto_url).describe_log_groups(logGroupNamePrefix=f"/airflow/{compute}")[
        "logGroups"
    ]


# Real CloudFormation refuses an update that changes nothing and reports failed creations as
# ROLLBACK_COMPLETE with per-resource events; moto does neither, so these answers are stubbed.
def _stubbed() -> tuple[Any, Stubber]:
    # No endpoint: the Stubber answers every call before it would leave the process.
    client = aws_client("cloudformation", None)
    return client, Stubber(client)


def _stack(status: str) -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": "s",
                "CreationTime": "2026-01-01T00:00:00Z",
                "StackStatus": status,
                "Outputs": [{"OutputKey": "JobQueueArn", "OutputValue": "arn:q"}],
            }
        ]
    }


def test_no_updates_is_success() -> None:
    client, stub = _stubbed()
    stub.add_response("describe_stacks", _stack("CREATE_COMPLETE"))
    stub.add_client_error(
        "update_stack",
        service_error_code="ValidationError",
        service_message="No updates are to be performed.",
    )
    stub.add_response("describe_stacks", _stack("CREATE_COMPLETE"))
    with stub:
        result = deploy_stack(client, "s", "{}", {}, sleep=lambda _: None)
    assert (result.action, result.status, result.outputs) == (
        "unchanged",
        "CREATE_COMPLETE",
        {"JobQueueArn": "arn:q"},
    )


def test_failed_creation_reports_failed_resources() -> None:
    client, stub = _stubbed()
    stub.add_client_error(
        "describe_stacks",
        service_error_code="ValidationError",
        service_message="Stack with id s does not exist",
    )
    stub.add_response("create_stack", {"StackId": "arn:stack/s"})
    stub.add_response("describe_stacks", _stack("CREATE_IN_PROGRESS"))
    stub.add_response("describe_stacks", _stack("ROLLBACK_COMPLETE"))
    stub.add_response(
        "describe_stack_events",
        {
            "StackEvents": [
                {
                    "StackId": "arn:stack/s",
                    "EventId": "1",
                    "StackName": "s",
                    "Timestamp": "2026-01-01T00:00:00Z",
                    "LogicalResourceId": "ComputeEnvironment",
                    "ResourceType": "AWS::Batch::ComputeEnvironment",
                    "ResourceStatus": "CREATE_FAILED",
                    "ResourceStatusReason": "Subnet subnet-x does not exist",
                }
            ]
        },
    )
    sleeps: list[float] = []
    with stub, pytest.raises(ProvisionError, match=r"ROLLBACK_COMPLETE.*ComputeEnvironment.*subnet-x"):
        deploy_stack(client, "s", "{}", {}, poll_interval=7.0, sleep=sleeps.append)
    assert sleeps == [7.0]


def test_rolled_back_stack_must_be_deleted_first() -> None:
    client, stub = _stubbed()
    stub.add_response("describe_stacks", _stack("ROLLBACK_COMPLETE"))
    stub.add_response("describe_stack_events", {"StackEvents": []})
    with stub, pytest.raises(ProvisionError, match="delete-stack --stack-name s"):
        deploy_stack(client, "s", "{}", {}, sleep=lambda _: None)
