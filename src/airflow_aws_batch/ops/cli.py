"""``airflow aws-batch ...``: operator commands for the AWS Batch executor.

- ``check``: one line per item that decides whether tasks can run; exit status 1 when any item fails
  (:mod:`airflow_aws_batch.ops.check`).
- ``render``: prints the CloudFormation template of :mod:`airflow_aws_batch.ops.cloudformation`.
- ``provision``: creates or updates that stack and waits for it.
- ``prune``: deregisters derived job definitions not used for ``--days`` days (dry run unless
  ``--apply``; see :mod:`airflow_aws_batch.prune`).

Options default to the ``[aws_batch_executor]`` section. AWS clients come from the amazon
provider's ``AwsBaseHook``, so the connection's ``endpoint_url`` (moto, localbatch) applies.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from airflow_aws_batch.ops.check import check_command, load_config
from airflow_aws_batch.ops.cloudformation import (
    COMPUTE_TYPES,
    TemplateError,
    TemplateOptions,
    build_template,
    dump_template,
)
from airflow_aws_batch.ops.connection import (
    aws_hook,
    conf_option,
    connection_id,
    default_execution_api_url,
    quiet_botocore,
    region_of,
)
from airflow_aws_batch.ops.template_hardening import url_warnings
from airflow_aws_batch.options import SECTION

DEFAULT_STACK = "airflow-aws-batch"


# ------------------------------------------------------------------------------ render/provision


def template_options(args: argparse.Namespace) -> TemplateOptions:
    env: dict[str, str] = {}
    for pair in args.env or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise TemplateError(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    url = args.execution_api_url or default_execution_api_url()
    if not url:
        raise TemplateError(
            "--execution-api-url is required: the API server's address as the jobs reach it, e.g. "
            "http://airflow-api.internal:8080/execution/ ([core] execution_api_server_url is not set)"
        )
    store = _s3_workload_store(args)
    return TemplateOptions(
        job_queue=args.job_queue or conf_option("job_queue") or TemplateOptions.job_queue,
        job_definition=args.job_definition or conf_option("job_definition") or TemplateOptions.job_definition,
        compute_environment=args.compute_environment,
        compute=args.compute,
        image=args.image or TemplateOptions.image,
        execution_api_url=url,
        vcpus=args.vcpus,
        memory_mib=args.memory,
        max_vcpus=args.max_vcpus,
        min_vcpus=args.min_vcpus,
        fair_share=args.fair_share,
        share_decay_seconds=args.share_decay_seconds,
        log_group=args.log_group,
        remote_log_folder=args.remote_log_folder or "",
        dags_s3_uri=args.dags_s3_uri or "",
        assign_public_ip=bool(getattr(args, "public_ip", False)),
        extra_environment=env,
        workload_store=store,
        # The store's bucket is made by the stack unless the operator has one already.
        create_workload_bucket=bool(store) and not getattr(args, "existing_workload_bucket", False),
        scheduler_role=getattr(args, "scheduler_role", None) or "",
        deployment_id=getattr(args, "deployment_id", None) or conf_option("deployment_id") or "",
        allowed_images=tuple(getattr(args, "allowed_image", None) or ()),
        scale_down_delay=getattr(args, "scale_down_delay", 0) or 0,
        cancel_misconfigured_after=getattr(args, "cancel_misconfigured_after", None)
        or TemplateOptions.cancel_misconfigured_after,
        status_events=bool(getattr(args, "status_events", False)),
    )


def _s3_workload_store(args: argparse.Namespace) -> str:
    """--workload-store, else the configured store when it is an s3:// one (a file:// store is local)."""
    given = getattr(args, "workload_store", None)
    if given:
        return str(given)
    configured = conf_option("workload_store") or ""
    return configured if configured.startswith("s3://") else ""


def render_command(args: argparse.Namespace) -> None:
    try:
        options = template_options(args)
    except TemplateError as err:
        raise SystemExit(f"airflow aws-batch render: {err}") from None
    if not args.image:
        print(
            f"warning: no --image: the job definition names the placeholder {options.image}; "
            "pass the task image you pushed (see docker/Dockerfile)",
            file=sys.stderr,
        )
    for warning in url_warnings(options.execution_api_url):
        print(f"warning: {warning}", file=sys.stderr)
    sys.stdout.write(dump_template(build_template(options), args.format))


def provision_command(args: argparse.Namespace) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from airflow_aws_batch.ops.provision import ProvisionError, deploy_stack

    if not args.image:
        raise SystemExit(
            "airflow aws-batch provision: --image is required: the task image every job runs, built from "
            "docker/Dockerfile and pushed to a registry the jobs can pull from (e.g. "
            "ACCOUNT.dkr.ecr.REGION.amazonaws.com/airflow-task:3.3.2-1). Without it the job definition "
            f"would name the placeholder {TemplateOptions.image}, which no job can pull."
        )
    try:
        options = template_options(args)
    except TemplateError as err:
        raise SystemExit(f"airflow aws-batch provision: {err}") from None
    body = dump_template(build_template(options), "json")
    quiet_botocore()
    client = aws_hook("cloudformation", connection_id(args), region_of(args)).get_client_type(
        region_name=region_of(args)
    )
    parameters = {"SubnetIds": args.subnets, "SecurityGroupIds": args.security_groups}
    print(f"Deploying stack {args.stack_name} ({options.compute}) ...", file=sys.stderr)
    try:
        result = deploy_stack(
            client, args.stack_name, body, parameters, timeout=args.timeout, poll_interval=args.poll_interval
        )
    except ProvisionError as err:
        raise SystemExit(f"airflow aws-batch provision: {err}") from None
    except (ClientError, BotoCoreError) as err:
        raise SystemExit(f"airflow aws-batch provision: CloudFormation refused: {err}") from None
    print(f"Stack {result.stack_name}: {result.action} ({result.status})")
    for key, value in sorted(result.outputs.items()):
        print(f"  {key}: {value}")
    print(
        f"Set [{SECTION}] job_queue = {options.job_queue} and job_definition = {options.job_definition}, "
        "then run `airflow aws-batch check`."
    )


# ------------------------------------------------------------------------------------ prune


def prune_command(args: argparse.Namespace, out: TextIO | None = None) -> None:
    from airflow.configuration import conf

    from airflow_aws_batch.config import derive_deployment_id
    from airflow_aws_batch.prune import apply, plan_prune

    out = out or sys.stdout
    quiet_botocore()
    if args.days < 1:
        raise SystemExit("airflow aws-batch prune: --days must be at least 1")
    config, lines = load_config(args)
    if config is None:
        for line in lines:
            print(line.render(), file=out)
        raise SystemExit(1)
    # The id the executor tags its jobs and definitions with (see AwsBatchExecutor.start).
    deployment = config.deployment_id or derive_deployment_id(
        conf.get("database", "sql_alchemy_conn", fallback="") or ""
    )
    client = aws_hook("batch", config.conn_id, config.region_name).get_client_type(
        region_name=config.region_name
    )
    queues = [config.job_queue, *config.queue_map.values()]
    plan = plan_prune(client, deployment, queues, args.days)
    applied = apply(client, plan) if args.apply else None
    for text in plan.lines(applied):
        print(text, file=out)
    if applied and any(error is not None for error in applied.values()):
        raise SystemExit(1)


# ------------------------------------------------------------------------------------ commands


def _escape(text: str) -> str:
    """``text`` as Airflow's help formatter (rich-argparse) prints it: ``[...]`` is markup to it."""
    return text.replace("[", "\\[")


def _option(name: str) -> str:
    return _escape(f"[{SECTION}] {name}")


def get_cli_commands() -> list[Any]:
    """The ``aws-batch`` command group (``list[GroupCommand]``) for ``get_cli_commands``."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand

    conn_id = Arg(
        ("--conn-id",), help=f"Airflow AWS connection (default: {_option('conn_id')}, else aws_default)"
    )
    region = Arg(
        ("--region",),
        help=f"AWS region (default: {_option('region_name')}, else region_name in the connection's extra)",
    )
    job_queue = Arg(
        ("--job-queue",),
        help=f"Batch job queue (default: {_option('job_queue')}, else {TemplateOptions.job_queue} for "
        "render/provision)",
    )
    job_definition = Arg(
        ("--job-definition",),
        help=f"Batch job definition (default: {_option('job_definition')}, else "
        f"{TemplateOptions.job_definition} for render/provision)",
    )
    template_args = (
        Arg(
            ("--compute",),
            choices=COMPUTE_TYPES,
            default="fargate",
            help="Compute environment type (default: %(default)s)",
        ),
        Arg(
            ("--compute-environment",),
            default="airflow-compute",
            help="Compute environment name (default: %(default)s)",
        ),
        Arg(
            ("--image",),
            help="Task image, built from docker/Dockerfile and pushed to a registry the jobs can pull from, "
            "e.g. ACCOUNT.dkr.ecr.REGION.amazonaws.com/airflow-task:3.3.2-1 (required by provision; "
            f"render writes the placeholder {TemplateOptions.image} without it)",
        ),
        Arg(
            ("--execution-api-url",),
            help="API server's execution API as the jobs reach it, ending in /execution/ "
            f"(default: {_escape('[core]')} execution_api_server_url, else {_escape('[api]')} base_url "
            "+ /execution/)",
        ),
        Arg(
            ("--vcpus",),
            type=float,
            default=TemplateOptions.vcpus,
            help="vCPUs per task (default: %(default)s)",
        ),
        Arg(
            ("--memory",),
            type=int,
            default=TemplateOptions.memory_mib,
            help="Memory per task, MiB (default: %(default)s)",
        ),
        Arg(
            ("--max-vcpus",),
            type=int,
            default=TemplateOptions.max_vcpus,
            help="Compute environment max vCPUs (default: %(default)s)",
        ),
        Arg(
            ("--min-vcpus",),
            type=int,
            default=TemplateOptions.min_vcpus,
            help="Compute environment min vCPUs kept running while idle (warm capacity; EC2/Spot only; "
            "default: %(default)s)",
        ),
        Arg(
            ("--fair-share",),
            action="store_true",
            help="Attach a fair-share scheduling policy to the job queue (jobs then carry share identifiers)",
        ),
        Arg(
            ("--share-decay-seconds",),
            type=int,
            default=TemplateOptions.share_decay_seconds,
            help="With --fair-share: the policy's usage decay window, 0-604800 s (default: %(default)s)",
        ),
        Arg(
            ("--log-group",),
            default=TemplateOptions.log_group,
            help="Log group for container output (default: %(default)s)",
        ),
        Arg(
            ("--remote-log-folder",),
            help="Airflow remote logging target for tasks: s3://BUCKET/PREFIX or cloudwatch://LOG_GROUP_ARN",
        ),
        Arg(("--dags-s3-uri",), help="s3://BUCKET/PREFIX the image's entrypoint syncs DAGs from"),
        Arg(
            ("--public-ip",),
            action="store_true",
            help="Fargate: give each task a public IP (default: none; tasks then reach the API server and "
            "registry through NAT or VPC endpoints)",
        ),
        Arg(
            ("--no-public-ip",),
            action="store_true",
            help="Fargate: no public IP (the default; kept for scripts)",
        ),
        Arg(("--env",), action="append", metavar="KEY=VALUE", help="Extra task environment (repeatable)"),
        Arg(
            ("--workload-store",),
            help="s3://BUCKET/PREFIX where the scheduler writes workloads for the jobs: grants the job role "
            "s3:GetObject/DeleteObject and a scheduler policy s3:PutObject/GetObject/DeleteObject on the "
            f"prefix only (default: {_option('workload_store')} when it is s3://)",
        ),
        Arg(
            ("--create-workload-bucket",),
            action="store_true",
            help="With --workload-store: create the bucket (the default; kept for scripts)",
        ),
        Arg(
            ("--existing-workload-bucket",),
            action="store_true",
            help="With --workload-store: the bucket exists already, do not create it (the template then "
            "says how to add the expiry rule). By default the stack creates it: private, encrypted, "
            "objects expire after 1 day",
        ),
        Arg(
            ("--deployment-id",),
            help="The executor's deployment_id: the scheduler may terminate only jobs tagged with it "
            f"(default: [{SECTION}] deployment_id; unset: any job tagged with a deployment)",
        ),
        Arg(
            ("--allowed-image",),
            action="append",
            metavar="IMAGE",
            help="An image per-task job definitions (jobDefinitionOverrides) may use besides --image "
            "(repeatable). Given: the scheduler may register definitions with these images only",
        ),
        Arg(
            ("--scheduler-role",),
            help="With --workload-store: name of the scheduler's IAM role to attach the store's policy to",
        ),
        Arg(
            ("--scale-down-delay",),
            type=int,
            default=0,
            metavar="MINUTES",
            help="EC2/Spot: minutes Batch keeps an instance after its last job ends, 20-10080 "
            "(minScaleDownDelayMinutes; for bursty DAGs; default: unset)",
        ),
        Arg(
            ("--cancel-misconfigured-after",),
            type=int,
            default=TemplateOptions.cancel_misconfigured_after,
            metavar="SECONDS",
            help="The queue cancels jobs stuck in RUNNABLE for a MISCONFIGURATION reason after this "
            f"long, 600-86400 (keep it above [{SECTION}] misconfiguration_grace_seconds)",
        ),
        Arg(
            ("--status-events",),
            action="store_true",
            help="Also an EventBridge rule sending the job queue's job state changes to an encrypted SQS "
            f"queue the scheduler reads (set {_option('status_events')} to its URL); needs --workload-store",
        ),
        job_queue,
        job_definition,
    )
    return [
        GroupCommand(
            name="aws-batch",
            help="Check, render and provision the AWS Batch resources of the AWS Batch executor",
            subcommands=(
                ActionCommand(
                    name="check",
                    help="Report whether tasks can run: credentials, queue, compute, job definition, API",
                    func=check_command,
                    args=(
                        conn_id,
                        region,
                        job_queue,
                        job_definition,
                        Arg(
                            ("--json",),
                            action="store_true",
                            help="Print the report as JSON: {ok, failed, checks: [{status, item, detail}]}",
                        ),
                    ),
                ),
                ActionCommand(
                    name="render",
                    help="Print a CloudFormation template for the executor's AWS resources",
                    func=render_command,
                    args=(
                        *template_args,
                        Arg(
                            ("--format",),
                            choices=("yaml", "json"),
                            default="yaml",
                            help="Output format (default: %(default)s)",
                        ),
                    ),
                ),
                ActionCommand(
                    name="prune",
                    help="Deregister derived job definitions (jobDefinitionOverrides) of this deployment "
                    "not used for --days days; a dry run unless --apply",
                    func=prune_command,
                    args=(
                        Arg(
                            ("--days",),
                            type=int,
                            default=30,
                            help="Keep revisions used within this many days (default 30)",
                        ),
                        Arg(("--apply",), action="store_true", help="Deregister (default: only say what)"),
                        conn_id,
                        region,
                        job_queue,
                        job_definition,
                    ),
                ),
                ActionCommand(
                    name="provision",
                    help="Create or update the CloudFormation stack of `render` and wait for it",
                    func=provision_command,
                    args=(
                        *template_args,
                        Arg(("--subnets",), required=True, help="Comma-separated subnet ids for the jobs"),
                        Arg(
                            ("--security-groups",),
                            required=True,
                            help="Comma-separated security group ids for the jobs",
                        ),
                        Arg(
                            ("--stack-name",),
                            default=DEFAULT_STACK,
                            help="CloudFormation stack name (default: %(default)s)",
                        ),
                        Arg(
                            ("--timeout",),
                            type=float,
                            default=1800.0,
                            help="Seconds to wait for the stack (default: %(default)s)",
                        ),
                        Arg(
                            ("--poll-interval",),
                            type=float,
                            default=5.0,
                            help="Seconds between status polls (default: %(default)s)",
                        ),
                        conn_id,
                        region,
                    ),
                ),
            ),
        )
    ]
