"""The option table of ``[aws_batch_executor]``: names, types, defaults, descriptions.

Kept free of heavy imports: Airflow imports it through ``provider.get_provider_info`` in every process
that reads provider configuration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

SECTION = "aws_batch_executor"

#: How a value is read: ``string`` as is, ``integer``/``float`` as numbers, ``boolean`` as true/false
#: (yes/no, on/off, 1/0), ``json`` as a JSON object.
OptionType = Literal["string", "integer", "float", "boolean", "json"]


@dataclass(frozen=True)
class OptionSpec:
    """One option of the section.

    ``provider.py`` renders these for ``airflow config list``; ``config.parse_options`` reads every
    value by its ``type``, then holds it to ``choices`` or ``valid``.
    """

    name: str
    type: OptionType
    default: str | None
    description: str
    example: str | None = None
    #: The accepted values of a string option, in any case (the value is kept lower-cased).
    choices: tuple[str, ...] = ()
    #: A further condition on the value read (e.g. a positive number).
    valid: Callable[[Any], bool] | None = None
    #: What an error message says is expected, when more than the type (with ``valid``).
    expected: str | None = None


#: The values of allowed_job_definition_overrides (``jobdefs.HOST_ACCESS`` describes each).
_HOST_ACCESS_KINDS = ("privileged", "host_volumes", "devices", "root_user")


def _positive_rate(value: float) -> bool:
    return 0 < value < math.inf


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "job_queue",
        "string",
        None,
        "The Batch job queue (name or ARN) that jobs are submitted to. Required unless "
        "submit_job_kwargs sets jobQueue. queue_map and a task's executor_config can choose another.",
        "airflow-jobs",
    ),
    OptionSpec(
        "job_definition",
        "string",
        None,
        "The Batch job definition (name, name:revision or ARN) of every job. Required unless "
        "submit_job_kwargs sets jobDefinition. Must be a container job definition.",
        "airflow-task",
    ),
    OptionSpec(
        "job_name",
        "string",
        None,
        "Prefix of every Batch job name; the executor appends -<dag_id>-<task_id> and fits the result "
        "to Batch's rules (letters, digits, - and _, first character alphanumeric, at most 128 "
        "characters). Required unless submit_job_kwargs sets jobName.",
        "airflow",
    ),
    OptionSpec(
        "region_name",
        "string",
        None,
        "AWS region of the Batch resources. Required unless the Airflow connection named by conn_id "
        "sets region_name in its extra; this option wins over the connection.",
        "us-east-1",
    ),
    OptionSpec(
        "conn_id",
        "string",
        "aws_default",
        "Airflow connection (conn_type aws) that supplies credentials, role assumption and "
        "endpoint_url. aws_conn_id is accepted as an alias; it is used only while conn_id is left at "
        "its default.",
        "aws_default",
    ),
    OptionSpec(
        "submit_job_kwargs",
        "json",
        "{}",
        "JSON object of extra SubmitJob parameters (botocore names, e.g. containerOverrides, "
        "timeout, tags, schedulingPriorityOverride). Its jobQueue, jobDefinition and jobName win over "
        "the options above. It must not set containerOverrides.command (the executor owns the "
        "command; an empty or null placeholder, which the Amazon provider's executor needs, is ignored), "
        "nor arrayProperties, dependsOn or a retryStrategy of more than one attempt (a task "
        "try is exactly one Batch job, run once). Its jobDefinitionOverrides (container properties "
        "SubmitJob cannot override: image, jobRoleArn, volumes, ...) is every task's default; the "
        "executor registers a job definition derived from job_definition for them.",
        '{"containerOverrides": {"resourceRequirements": [{"type": "MEMORY", "value": "2048"}]}, '
        '"tags": {"team": "data"}}',
    ),
    OptionSpec(
        "max_submit_job_attempts",
        "integer",
        "3",
        "How many times a task's job is submitted before the task fails: counts submit errors and "
        "jobs that FAILED before Airflow saw the task start.",
        "3",
        valid=lambda attempts: attempts >= 1,
        expected="an integer >= 1",
    ),
    OptionSpec(
        "misconfiguration_grace_seconds",
        "integer",
        "300",
        "How long a job may wait in RUNNABLE with a MISCONFIGURATION:* statusReason (e.g. "
        "JOB_RESOURCE_REQUIREMENT: no compute environment of the queue has an instance big enough) "
        "before the executor terminates it and fails its task with Batch's reason, instead of waiting "
        "for [scheduler] task_queued_timeout. Batch sets such reasons minutes late and may clear them "
        "after a scale-up, so the clock starts when the executor first sees the reason and stops when "
        "the reason goes. CAPACITY:* reasons never fail a task: they go to the task's event log. "
        "0 turns this off.",
        "300",
        valid=lambda seconds: seconds >= 0,
        expected="an integer >= 0 (0 turns it off)",
    ),
    OptionSpec(
        "check_health_on_startup",
        "boolean",
        "True",
        "Check on start that the credentials work, the job queue is ENABLED and VALID and the job "
        "definition is ACTIVE; the scheduler does not start otherwise.",
        "True",
    ),
    OptionSpec(
        "queue_map",
        "json",
        "{}",
        "JSON object mapping an Airflow task queue to a Batch job queue. Tasks whose queue is not "
        "mapped go to job_queue.",
        '{"gpu": "airflow-gpu-jobs", "spot": "airflow-spot-jobs"}',
    ),
    OptionSpec(
        "submit_rate",
        "float",
        "50",
        "Upper bound on SubmitJob calls per second (AWS's default quota is 50 per account).",
        "20",
        valid=_positive_rate,
        expected="a number > 0 (calls per second)",
    ),
    OptionSpec(
        "status_calls_per_second",
        "float",
        "5",
        "Budget of status calls per second, shared by every read of job state: DescribeJobs (up to 100 "
        "jobs each), ListJobs pages (adoption, the orphan sweep, the look-up before a resubmit) and the "
        "DescribeJobDefinitions/RegisterJobDefinition calls of per-task job definitions.",
        "2",
        valid=_positive_rate,
        expected="a number > 0 (calls per second)",
    ),
    OptionSpec(
        "status_events",
        "string",
        None,
        "An SQS queue (URL or name) that an EventBridge rule fills with Batch's job state changes of "
        "the job queues used (airflow aws-batch render --status-events makes both). The scheduler "
        "long-polls it and learns of a job's change at once; polling then only reconciles: each job "
        "with no news for 60 s, and every job while the queue cannot be read or events are found lost. "
        "Events carry the job's command: use it with workload_store. The scheduler needs "
        "sqs:ReceiveMessage, DeleteMessage and GetQueueAttributes on the queue. Unset: polling only.",
        "https://sqs.us-east-1.amazonaws.com/123456789012/airflow-batch-events",
    ),
    OptionSpec(
        "retry_mode",
        "string",
        "adaptive",
        "botocore retry mode of the Batch client: standard or adaptive (adds client-side rate limiting "
        "after throttling).",
        "standard",
        choices=("standard", "adaptive"),
    ),
    OptionSpec(
        "deployment_id",
        "string",
        None,
        "Names this Airflow deployment in the deployment tag of every job, so that deployments sharing "
        "a job queue never adopt or terminate each other's jobs. Unset: derived from the metadata "
        "database's URL (without its password), the same for every scheduler of one deployment.",
        "analytics-prod",
    ),
    OptionSpec(
        "scheduling_priority",
        "string",
        "clamp",
        "How a task's Airflow priority_weight becomes SubmitJob's schedulingPriorityOverride on a "
        "fair-share job queue: clamp sends the weight clamped to 0..9999 (a higher weight starts first "
        "within its share); off sends none. Never sent to a FIFO queue. A schedulingPriorityOverride in "
        "submit_job_kwargs or a task's executor_config wins.",
        "off",
        choices=("clamp", "off"),
    ),
    OptionSpec(
        "share_identifier",
        "string",
        None,
        "Template of each job's shareIdentifier on a fair-share job queue (one with a scheduling "
        "policy), from the fields {dag_id}, {task_id}, {queue} (Airflow queue), {pool} and {team} "
        "(default when the executor has no team). Characters other than letters, digits and _ become _, "
        "and the result is cut to 255 characters. Unset: {dag_id} on fair-share queues. Never sent to a "
        "FIFO queue (set while every queue is FIFO, the startup check stops the scheduler). A "
        "shareIdentifier in submit_job_kwargs or a task's executor_config wins.",
        "{team}_{dag_id}",
    ),
    OptionSpec(
        "array_min_size",
        "integer",
        "10",
        "Least number of instances of one task in one DAG run (same try) due together, with SubmitJob "
        "requests equal but for the command and map index, that go out as one array job (up to 10,000 "
        "children; each task instance is one child); one that could join an array waits up to 2 s for "
        "enough like it. 0 turns arrays off. Arrays need workload_store: without it they are off "
        "whatever this says. Children carry their array's tags only, so map_index is not on their jobs.",
        "0",
        valid=lambda size: size >= 0,
        expected="an integer >= 0 (0 turns arrays off)",
    ),
    OptionSpec(
        "workload_store",
        "string",
        None,
        "Where each task's workload (its JSON, with the task's token) is written before SubmitJob: "
        "s3://bucket/prefix, or file:///absolute/dir (a directory every job can read, e.g. for "
        "localbatch). The job's command then only names the object (python -m airflow_aws_batch.launch "
        "<url>), so no token appears in the SubmitJob request, DescribeJobs or the job's log. The "
        "scheduler needs s3:PutObject, GetObject and DeleteObject on the prefix, the job role "
        "s3:GetObject and DeleteObject; expire objects after a day with a lifecycle rule. Unset: the "
        "workload travels in containerOverrides.command.",
        "s3://my-airflow-workloads/airflow",
    ),
    OptionSpec(
        "allowed_job_definition_overrides",
        "string",
        None,
        "Comma-separated ways a task's jobDefinitionOverrides (or submit_job_kwargs') may reach the "
        "host its job runs on, which are otherwise refused (the task fails, naming the field and this "
        "option): privileged (privileged: true), host_volumes (volumes with host.sourcePath and "
        "mountPoints of such volumes), devices (linuxParameters.devices), root_user (user root or 0). "
        "Unset (the default): none of them, so that no DAG author can turn a task into a container "
        "with the host's devices, files or capabilities (on EC2 compute: a way to the instance and its "
        "role). The scheduler's IAM policy from airflow aws-batch render refuses privileged "
        "definitions too; allowing privileged here needs that policy changed as well.",
        "host_volumes,devices",
        valid=lambda value: all(
            item in _HOST_ACCESS_KINDS for item in (part.strip() for part in value.split(",")) if item
        ),
        expected="a comma-separated list of privileged, host_volumes, devices, root_user (or empty)",
    ),
    OptionSpec(
        "aws_conn_id",
        "string",
        None,
        "Alias of conn_id, the name used by the AWS Batch executor documentation. Used only while "
        "conn_id is left at its default.",
        "aws_default",
    ),
)

OPTION_NAMES = tuple(spec.name for spec in OPTIONS)


def env_var(option: str) -> str:
    return f"AIRFLOW__{SECTION.upper()}__{option.upper()}"


#: The Amazon provider's options of the same section (apache-airflow-providers-amazon 9.x), for the
#: reference's comparison column: everything else is ours alone.
PROVIDER_OPTIONS = frozenset(
    {
        "conn_id",
        "region_name",
        "max_submit_job_attempts",
        "check_health_on_startup",
        "job_name",
        "job_queue",
        "job_definition",
        "submit_job_kwargs",
    }
)
_PROVIDER_NOTES = {
    "aws_conn_id": "its documentation's name for `conn_id`",
    "job_name": "same name; there the whole job name, here a prefix",
}

#: The generated part of docs/configuration.md lies between these lines.
BEGIN_MARK = "<!-- BEGIN GENERATED: python -m airflow_aws_batch.options --update docs/configuration.md -->"
END_MARK = "<!-- END GENERATED -->"


def _code(value: str) -> str:
    # A backtick inside a value needs a longer fence; none of ours has one, so one backtick suffices.
    return f"`{value}`"


def _provider_column(spec: OptionSpec) -> str:
    if spec.name in _PROVIDER_NOTES:
        return _PROVIDER_NOTES[spec.name]
    return "same name" if spec.name in PROVIDER_OPTIONS else "not in the provider"


def markdown() -> str:
    """The option reference of docs/configuration.md, from :data:`OPTIONS` (one source, no drift)."""
    lines = [
        BEGIN_MARK,
        "",
        "| option | type | default | environment variable | Amazon provider |",
        "|---|---|---|---|---|",
    ]
    for spec in OPTIONS:
        default = _code(spec.default) if spec.default is not None else "unset"
        lines.append(
            f"| [`{spec.name}`](#{spec.name}) | {spec.type} | {default} | `{env_var(spec.name)}` "
            f"| {_provider_column(spec)} |"
        )
    for spec in OPTIONS:
        lines += ["", f"### {spec.name}", "", spec.description, ""]
        facts = [f"type {spec.type}"]
        facts.append(f"default {_code(spec.default)}" if spec.default is not None else "no default")
        if spec.choices:
            facts.append("one of " + ", ".join(_code(choice) for choice in spec.choices))
        if spec.expected:
            facts.append(f"expected {spec.expected}")
        lines.append("- " + "; ".join(facts))
        if spec.example is not None:
            lines.append(f"- example: {_code(spec.example)}")
        lines.append(f"- environment: {_code(env_var(spec.name) + '=...')}")
    lines += ["", END_MARK]
    return "\n".join(lines) + "\n"


def splice(page: str, generated: str) -> str:
    """``page`` with the text between its markers replaced by ``generated`` (markers included)."""
    head, found, rest = page.partition(BEGIN_MARK)
    _, found_end, tail = rest.partition(END_MARK + "\n")
    if not found or not found_end:
        raise ValueError(f"the page has no {BEGIN_MARK!r} ... {END_MARK!r} block")
    return head + generated + tail


def _main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="python -m airflow_aws_batch.options",
        description=f"The [{SECTION}] option reference, generated from the option table.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--markdown", action="store_true", help="print the reference as Markdown")
    mode.add_argument("--update", metavar="PAGE", help="rewrite the generated block of PAGE in place")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(), end="")
        return 0
    page = Path(args.update)
    page.write_text(splice(page.read_text(), markdown()))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
