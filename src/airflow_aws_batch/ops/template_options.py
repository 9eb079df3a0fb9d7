"""What ``build_template`` takes, checked as it is made: each option that cannot produce a valid
template raises ``TemplateError`` naming the option.

A bucket a task may list or write (DAGs, task logs) must not hold the workload store's prefix:
listing it would show the objects' random names, and the job role may read any object there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from airflow_aws_batch.ops import backstops
from airflow_aws_batch.ops.template_names import MAX_SHARE_DECAY_SECONDS

ComputeType = Literal["ec2", "spot", "fargate", "fargate-spot"]
COMPUTE_TYPES: tuple[ComputeType, ...] = ("ec2", "spot", "fargate", "fargate-spot")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class TemplateError(ValueError):
    """An option that cannot produce a valid template; the message names the option."""


@dataclass(frozen=True)
class TemplateOptions:
    """What ``build_template`` needs. Names default to the executor's ``[aws_batch_executor]`` ones."""

    job_queue: str = "airflow-jobs"
    job_definition: str = "airflow-task"
    compute_environment: str = "airflow-compute"
    compute: ComputeType = "fargate"
    image: str = "my-airflow-image:latest"
    execution_api_url: str = "http://airflow-api.internal:8080/execution/"
    vcpus: float = 1.0
    memory_mib: int = 2048
    max_vcpus: int = 64
    # Warm capacity: vCPUs the compute environment keeps running while idle (EC2/Spot only).
    min_vcpus: int = 0
    # A fair-share scheduling policy on the job queue (each job then needs a share identifier).
    fair_share: bool = False
    share_decay_seconds: int = 3600
    log_group: str = "/aws/batch/airflow-tasks"
    log_retention_days: int = 30
    # Remote logging destination for Airflow's own task logs: ``s3://bucket/prefix`` or
    # ``cloudwatch://arn:aws:logs:...:log-group:NAME``. Empty: no remote logging settings.
    remote_log_folder: str = ""
    # S3 prefix the entrypoint syncs DAGs from (the image's S3_URI). Empty: DAGs are in the image.
    dags_s3_uri: str = ""
    # Fargate tasks get a public IP only when asked: without one they reach the API server and the
    # registry through the VPC (NAT or endpoints), and nothing on the internet reaches them.
    assign_public_ip: bool = False
    extra_environment: Mapping[str, str] = field(default_factory=dict)
    # ``s3://bucket/prefix`` of [aws_batch_executor] workload_store. Empty: workloads travel in the
    # job's command and no store is granted.
    workload_store: str = ""
    # Create the store's bucket (private, encrypted, objects expire); otherwise it exists already.
    create_workload_bucket: bool = False
    # Name of the scheduler's IAM role, to attach the store's write policy to. Empty: attach it yourself.
    scheduler_role: str = ""
    # The deployment_id of the executor ([aws_batch_executor] deployment_id): the scheduler may then
    # terminate only jobs tagged with it. Empty: any job tagged with some deployment.
    deployment_id: str = ""
    # Images derived job definitions may name besides the Image parameter (jobDefinitionOverrides'
    # image). Empty: any image (RegisterJobDefinition is then held only to non-privileged definitions).
    allowed_images: tuple[str, ...] = ()
    # Minutes Batch keeps an idle instance after its last job (EC2/Spot; 0: unset). See backstops.py.
    scale_down_delay: int = 0
    # Seconds after which the queue cancels jobs stuck in RUNNABLE for a misconfiguration.
    cancel_misconfigured_after: int = backstops.DEFAULT_CANCEL_AFTER_SECONDS
    # Job state changes through EventBridge into an SQS queue the scheduler long-polls
    # ([aws_batch_executor] status_events). Needs the workload store: each event holds the job's command.
    status_events: bool = False

    def __post_init__(self) -> None:
        for option in ("job_queue", "job_definition", "compute_environment"):
            value = getattr(self, option)
            if not _NAME.match(value):
                raise TemplateError(
                    f"{option}={value!r}: use letters, digits, '-' and '_', starting with a letter or digit"
                )
        if self.compute not in COMPUTE_TYPES:
            raise TemplateError(f"compute={self.compute!r}: expected one of {', '.join(COMPUTE_TYPES)}")
        if not re.match(r"^https?://[^/]+/.*execution/$", self.execution_api_url):
            raise TemplateError(
                f"execution_api_url={self.execution_api_url!r}: expected http(s)://HOST[:PORT]/execution/ "
                "(the API server's address as the containers reach it, ending in /execution/)"
            )
        if self.remote_log_folder and not self.remote_log_folder.startswith(("s3://", "cloudwatch://")):
            raise TemplateError(
                f"remote_log_folder={self.remote_log_folder!r}: expected s3://BUCKET/PREFIX or "
                "cloudwatch://arn:aws:logs:REGION:ACCOUNT:log-group:NAME"
            )
        if self.dags_s3_uri and not self.dags_s3_uri.startswith("s3://"):
            raise TemplateError(f"dags_s3_uri={self.dags_s3_uri!r}: expected s3://BUCKET/PREFIX")
        if self.max_vcpus < 1 or self.vcpus <= 0 or self.memory_mib < 512:
            raise TemplateError("max_vcpus must be >= 1, vcpus > 0 and memory_mib >= 512")
        if not 0 <= self.min_vcpus <= self.max_vcpus:
            raise TemplateError(
                f"min_vcpus={self.min_vcpus}: expected 0 <= min_vcpus <= max_vcpus ({self.max_vcpus})"
            )
        if self.min_vcpus and self.is_fargate:
            raise TemplateError(
                f"min_vcpus={self.min_vcpus}: Fargate compute environments keep no instances warm; "
                "use --compute ec2 or spot for warm capacity"
            )
        if not 0 <= self.share_decay_seconds <= MAX_SHARE_DECAY_SECONDS:
            raise TemplateError(
                f"share_decay_seconds={self.share_decay_seconds}: expected 0 to {MAX_SHARE_DECAY_SECONDS} "
                "(0: Batch's minimum window of 600 s)"
            )

        if self.workload_store:
            from airflow_aws_batch.workload_rules import parse_store_url

            try:
                location = parse_store_url(self.workload_store)
            except ValueError as err:
                raise TemplateError(f"workload_store={self.workload_store!r}: expected {err}") from None
            if location.scheme != "s3":
                raise TemplateError(
                    f"workload_store={self.workload_store!r}: expected s3://BUCKET/PREFIX (a file:// store "
                    "is for jobs on the scheduler's machine, e.g. localbatch)"
                )
        if self.create_workload_bucket and not self.workload_store:
            raise TemplateError("create_workload_bucket needs workload_store=s3://BUCKET/PREFIX")
        if self.scheduler_role and not re.match(r"^[\w+=,.@-]{1,64}$", self.scheduler_role):
            raise TemplateError(
                f"scheduler_role={self.scheduler_role!r}: expected an IAM role name (not an ARN), "
                "up to 64 letters, digits or +=,.@_-"
            )
        if self.scheduler_role and not self.workload_store:
            raise TemplateError("scheduler_role needs workload_store=s3://BUCKET/PREFIX")
        if self.status_events and not self.workload_store:
            raise TemplateError(
                "status_events needs workload_store=s3://BUCKET/PREFIX: every event carries the job's "
                "command, and without a store that command holds the task's token"
            )
        exposure = store_exposure_problem(self)
        if exposure:
            raise TemplateError(exposure)
        problem = backstops.scale_down_delay_problem(
            self.scale_down_delay, fargate=self.is_fargate
        ) or backstops.cancel_after_problem(self.cancel_misconfigured_after)
        if problem:
            raise TemplateError(problem)

    @property
    def workload_location(self) -> tuple[str, str] | None:
        """``(bucket, prefix)`` of the workload store, or None."""
        if not self.workload_store:
            return None
        from airflow_aws_batch.workload_rules import parse_store_url

        location = parse_store_url(self.workload_store)
        return location.bucket, location.key

    @property
    def is_fargate(self) -> bool:
        return self.compute.startswith("fargate")


def s3_split(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.rstrip("/")


def _overlaps(prefix: str, other: str) -> bool:
    """Whether one of two key prefixes holds the other ("" holds every key)."""
    a, b = prefix.strip("/"), other.strip("/")
    return not a or not b or a == b or a.startswith(b + "/") or b.startswith(a + "/")


def store_exposure_problem(options: TemplateOptions) -> str | None:
    """Why the job role's other S3 grants would reach the workload store's objects, or None."""
    store = options.workload_location
    if store is None:
        return None
    bucket, prefix = store
    for option, uri in (
        ("remote_log_folder", options.remote_log_folder),
        ("dags_s3_uri", options.dags_s3_uri),
    ):
        if not uri.startswith("s3://"):
            continue
        other_bucket, other_prefix = s3_split(uri)
        if other_bucket == bucket and _overlaps(prefix, other_prefix):
            return (
                f"{option}={uri!r} overlaps workload_store={options.workload_store!r}: every task could "
                "list and read the other tasks' workloads (their tokens). Use separate prefixes, "
                "neither inside the other"
            )
    return None
