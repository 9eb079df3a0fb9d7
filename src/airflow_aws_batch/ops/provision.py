"""Create or update the CloudFormation stack that ``airflow aws-batch render`` describes.

``deploy_stack`` is idempotent: a stack that already matches the template is a success
("unchanged"). It does not delete stacks, and it does not recover a stack whose first creation
rolled back (``ROLLBACK_COMPLETE``): CloudFormation can only delete such a stack, so the error
says to delete it and run the command again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

Action = Literal["created", "updated", "unchanged"]

_DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
_FAILED = {
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "UPDATE_FAILED",
    "DELETE_COMPLETE",
    "DELETE_FAILED",
    "IMPORT_ROLLBACK_COMPLETE",
    "IMPORT_ROLLBACK_FAILED",
}
# CloudFormation needs this to create roles with generated names, which the template does.
CAPABILITIES = ["CAPABILITY_IAM"]


class ProvisionError(RuntimeError):
    """The stack could not be brought to the template; the message carries the failed resources."""


@dataclass(frozen=True)
class ProvisionResult:
    stack_name: str
    action: Action
    status: str
    outputs: dict[str, str] = field(default_factory=dict)


def _stack_status(client: CloudFormationClient, stack_name: str) -> str | None:
    try:
        stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as err:
        if "does not exist" in str(err):
            return None
        raise
    return stacks[0]["StackStatus"] if stacks else None


def _failure_reasons(client: CloudFormationClient, stack_name: str) -> list[str]:
    reasons: list[str] = []
    try:
        events = client.describe_stack_events(StackName=stack_name)["StackEvents"]
    except ClientError:
        return reasons
    for event in events:
        if event.get("ResourceStatus", "").endswith("_FAILED"):
            reasons.append(
                f"{event.get('LogicalResourceId', '?')} ({event.get('ResourceType', '?')}): "
                f"{event.get('ResourceStatusReason', 'no reason given')}"
            )
    return reasons


def _wait(
    client: CloudFormationClient,
    stack_name: str,
    timeout: float,
    poll_interval: float,
    sleep: Callable[[float], None],
) -> str:
    deadline = time.monotonic() + timeout
    status = "unknown"
    while True:
        status = _stack_status(client, stack_name) or "DELETE_COMPLETE"
        if not status.endswith("_IN_PROGRESS"):
            return status
        if time.monotonic() >= deadline:
            raise ProvisionError(
                f"stack {stack_name} still {status} after {timeout:.0f}s; it goes on in CloudFormation, "
                "run the command again to wait for it"
            )
        sleep(poll_interval)


def _outputs(client: CloudFormationClient, stack_name: str) -> dict[str, str]:
    stack = client.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", []) if "OutputKey" in o}


def deploy_stack(
    client: CloudFormationClient,
    stack_name: str,
    template_body: str,
    parameters: Mapping[str, str],
    *,
    timeout: float = 1800.0,
    poll_interval: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ProvisionResult:
    """Create ``stack_name`` from the template, or update it; wait until CloudFormation is done."""
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
    status = _stack_status(client, stack_name)
    if status is not None and status.endswith("_IN_PROGRESS"):
        # Another deployment is running: let it finish before deciding what to do.
        status = _wait(client, stack_name, timeout, poll_interval, sleep)
        if status == "DELETE_COMPLETE":
            status = None
    if status == "ROLLBACK_COMPLETE":
        raise ProvisionError(
            f"stack {stack_name} is ROLLBACK_COMPLETE (its creation failed) and CloudFormation can only "
            f"delete it: `aws cloudformation delete-stack --stack-name {stack_name}`, then run this again. "
            + "; ".join(_failure_reasons(client, stack_name))
        )

    action: Action
    if status is None:
        client.create_stack(
            StackName=stack_name,
            TemplateBody=template_body,
            Parameters=params,  # type: ignore[arg-type]
            Capabilities=CAPABILITIES,  # type: ignore[arg-type]
            OnFailure="ROLLBACK",
        )
        action = "created"
    else:
        try:
            client.update_stack(
                StackName=stack_name,
                TemplateBody=template_body,
                Parameters=params,  # type: ignore[arg-type]
                Capabilities=CAPABILITIES,  # type: ignore[arg-type]
            )
        except ClientError as err:
            if "No updates are to be performed" in str(err):
                return ProvisionResult(stack_name, "unchanged", status, _outputs(client, stack_name))
            raise ProvisionError(f"update of stack {stack_name} refused: {err}") from err
        action = "updated"

    final = _wait(client, stack_name, timeout, poll_interval, sleep)
    if final in _FAILED or final not in _DONE:
        reasons = _failure_reasons(client, stack_name)
        raise ProvisionError(
            f"stack {stack_name} ended {final}: " + ("; ".join(reasons) or "no failed resource reported")
        )
    return ProvisionResult(stack_name, action, final, _outputs(client, stack_name))
