"""Startup checks, shared by ``AwsBatchExecutor.start()`` and ``airflow aws-batch check``.

``run_checks(api_or_client, config)`` returns one :class:`CheckItem` per check, in this order:

==================  =====================================================  =====
name                ok when                                                fatal
==================  =====================================================  =====
credentials         a DescribeJobQueues call is answered                   yes
job_queue           ``job_queue`` exists, ENABLED and VALID                yes
compute_env:<name>  each compute environment of the queue ENABLED+VALID    yes
queue_map:<queue>   each job queue named in ``queue_map`` exists/ENABLED   yes
job_definition      ``job_definition`` exists with an ACTIVE revision      yes
==================  =====================================================  =====

When the credentials check fails the others are skipped. Callers add their own items (the CLI adds
the environment and execution API URL checks). Not checked: IAM permissions beyond the Describe
calls, networking from the compute environment to the API server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_aws_batch.aws.batch import BatchApi, BatchApiError
from airflow_aws_batch.config import ExecutorConfig


@dataclass(frozen=True)
class CheckItem:
    name: str
    ok: bool
    detail: str
    #: A failed fatal item stops the scheduler at start (and makes ``check`` exit non-zero).
    fatal: bool = True


def _api(api_or_client: BatchApi | Any) -> BatchApi:
    if isinstance(api_or_client, BatchApi):
        return api_or_client
    client = api_or_client
    return BatchApi(lambda: client)


def run_checks(api_or_client: BatchApi | Any, config: ExecutorConfig) -> list[CheckItem]:
    """Run the checks against a :class:`BatchApi` or a boto3 ``batch`` client. Never raises for AWS errors."""
    api = _api(api_or_client)
    items: list[CheckItem] = []
    try:
        queue = api.describe_job_queue(config.job_queue)
    except BatchApiError as exc:
        items.append(CheckItem("credentials", False, f"DescribeJobQueues failed: {exc.code}: {exc.message}"))
        return items
    items.append(CheckItem("credentials", True, "DescribeJobQueues answered"))
    items.extend(_queue_items("job_queue", config.job_queue, queue, api, with_compute_environments=True))
    for airflow_queue, batch_queue in sorted(config.queue_map.items()):
        try:
            mapped = api.describe_job_queue(batch_queue)
        except BatchApiError as exc:
            items.append(CheckItem(f"queue_map:{airflow_queue}", False, f"{batch_queue}: {exc}"))
            continue
        items.extend(_queue_items(f"queue_map:{airflow_queue}", batch_queue, mapped, api, False))
    try:
        definition = api.describe_job_definition(config.job_definition)
    except BatchApiError as exc:
        items.append(
            CheckItem("job_definition", False, f"{config.job_definition}: {exc.code}: {exc.message}")
        )
        return items
    if definition is None:
        items.append(
            CheckItem("job_definition", False, f"job definition {config.job_definition!r} does not exist")
        )
    elif definition.status != "ACTIVE":
        items.append(
            CheckItem(
                "job_definition",
                False,
                f"job definition {config.job_definition!r} is {definition.status}, expected ACTIVE",
            )
        )
    else:
        items.append(
            CheckItem(
                "job_definition",
                True,
                f"{definition.name}:{definition.revision} is ACTIVE ({definition.arn})",
            )
        )
    return items


def _queue_items(
    name: str, queue_name: str, queue: Any, api: BatchApi, with_compute_environments: bool
) -> list[CheckItem]:
    if queue is None:
        return [CheckItem(name, False, f"job queue {queue_name!r} does not exist")]
    if (queue.state, queue.status) != ("ENABLED", "VALID"):
        reason = f" ({queue.status_reason})" if queue.status_reason else ""
        return [
            CheckItem(
                name,
                False,
                f"job queue {queue_name!r} is {queue.state}/{queue.status}{reason}, expected ENABLED/VALID",
            )
        ]
    items = [CheckItem(name, True, f"job queue {queue_name!r} is ENABLED/VALID")]
    if not with_compute_environments:
        return items
    try:
        environments = api.describe_compute_environments(list(queue.compute_environments))
    except BatchApiError as exc:
        return [
            *items,
            CheckItem("compute_environments", False, f"DescribeComputeEnvironments failed: {exc}"),
        ]
    if not environments:
        items.append(
            CheckItem("compute_environments", False, f"job queue {queue_name!r} has no compute environment")
        )
    for ce in environments:
        ok = (ce.state, ce.status) == ("ENABLED", "VALID")
        reason = f" ({ce.status_reason})" if ce.status_reason and not ok else ""
        detail = f"compute environment {ce.name!r} is {ce.state}/{ce.status}{reason}"
        items.append(
            CheckItem(f"compute_env:{ce.name}", ok, detail if ok else f"{detail}, expected ENABLED/VALID")
        )
    return items


def format_failures(config: ExecutorConfig, failures: list[CheckItem], region: str | None = None) -> str:
    """One message naming the region, each failing resource and what is wrong."""
    where = region or config.region_name or "(region from the connection)"
    problems = "; ".join(f"{item.name}: {item.detail}" for item in failures)
    whose = f" (team {config.team!r})" if config.team is not None else ""
    return (
        f"AwsBatchExecutor{whose} startup check failed in region {where} "
        f"(connection {config.conn_id!r}): {problems}. "
        f"Fix the resource, or set [aws_batch_executor] check_health_on_startup = False{whose} to skip "
        "this check."
    )
