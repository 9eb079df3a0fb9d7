"""``airflow aws-batch check``: one line per item that decides whether tasks can run (credentials,
region, the workload store's probe object, job queue, compute environments, job definition, the
environment tasks get, the execution API); exit status 1 when any item fails."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal, TextIO

from airflow_aws_batch.ops.connection import aws_hook, quiet_botocore
from airflow_aws_batch.ops.template_compute import EXECUTION_API_ENV
from airflow_aws_batch.options import SECTION, env_var
from airflow_aws_batch.workloads import NO_STORE_WARNING

Status = Literal["OK", "WARN", "FAIL"]

# Variables a task container never needs in Airflow 3 and that widen what a task could do.
_NOT_FOR_TASKS = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "tasks reach Airflow through the execution API, not the database",
    "AIRFLOW__API_AUTH__JWT_SECRET": "only the scheduler and the API server sign or check tokens",
    "AIRFLOW__CORE__FERNET_KEY": "connections and variables reach tasks already decrypted",
}
# Variables whose values `check` prints: what the template and the executor set, and settings that
# hold no credential. Every other value is masked, whatever its name: SENTRY_DSN, REDIS_URL or
# SLACK_WEBHOOK_URL carry credentials without saying so.
_SHOWN_VALUES = frozenset(
    {
        EXECUTION_API_ENV,
        "AIRFLOW__LOGGING__REMOTE_LOGGING",
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER",
        "AIRFLOW__LOGGING__LOGGING_LEVEL",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__DAGS_FOLDER",
        "S3_URI",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "TZ",
        "PYTHONUNBUFFERED",
    }
)


@dataclass(frozen=True)
class CheckLine:
    """One line of ``airflow aws-batch check``. ``FAIL`` means tasks would not run."""

    status: Status
    item: str
    detail: str

    def render(self) -> str:
        return f"{self.status:<4}  {self.item:<22} {self.detail}"


def _masked(name: str, value: str) -> str:
    from airflow_aws_batch.submit import EXECUTOR_CONTAINER_ENV

    return value if name in _SHOWN_VALUES or name == EXECUTOR_CONTAINER_ENV else "****"


def task_environment_lines(environment: dict[str, str]) -> list[CheckLine]:
    """Judge the environment a task container gets (job definition + submit_job_kwargs overrides)."""
    shown = ", ".join(f"{k}={_masked(k, v)}" for k, v in sorted(environment.items())) or "(empty)"
    lines = [CheckLine("OK", "task environment", shown)]
    url = environment.get(EXECUTION_API_ENV)
    if not url:
        lines.append(
            CheckLine(
                "FAIL",
                "execution API URL",
                f"{EXECUTION_API_ENV} is not in the job definition's environment nor in submit_job_kwargs; "
                "tasks would call http://localhost:8080/execution/ inside their container. Set it to the "
                "API server's address as the jobs reach it (airflow aws-batch render --execution-api-url)",
            )
        )
    for name, why in sorted(_NOT_FOR_TASKS.items()):
        if name in environment:
            lines.append(CheckLine("WARN", "task environment", f"{name} is set: remove it, {why}"))
    return lines


def execution_api_line(url: str | None, timeout: float = 5.0, source: str | None = None) -> CheckLine:
    """Whether ``<url>health`` answers like Airflow's execution API, from where this command runs.

    ``source``: where the URL came from (the job definition's environment, submit_job_kwargs), named in
    the line so that a wrong URL can be fixed where it is set.
    """
    if not url:
        return CheckLine("FAIL", "execution API", "no URL to try (see the execution API URL line)")
    line = _execution_api_line(url, timeout)
    if source:
        line = CheckLine(line.status, line.item, f"{line.detail} (URL from {source})")
    return line


def _execution_api_line(url: str, timeout: float) -> CheckLine:
    health = url.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout) as response:
            body = json.loads(response.read().decode() or "{}")
    except urllib.error.HTTPError as err:
        return CheckLine("FAIL", "execution API", f"GET {health} answered HTTP {err.code}")
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return CheckLine("FAIL", "execution API", f"GET {health} failed: {reason}")
    if body.get("status") != "healthy":
        return CheckLine(
            "FAIL", "execution API", f"GET {health} answered {body!r}, not Airflow's execution API"
        )
    line = CheckLine("OK", "execution API", f"{health} answers")
    if any(host in url for host in ("://localhost", "://127.", "://[::1]")):
        line = CheckLine(
            "WARN",
            "execution API",
            f"{health} answers here, but containers on AWS cannot reach a loopback address "
            "(fine for localbatch, which runs jobs on this machine)",
        )
    return line


def workload_store_line(url: str, s3_hook: Any) -> CheckLine:
    """Write, read back and delete a probe object in the workload store, as the scheduler would.

    ``s3_hook``: builds the AwsBaseHook of the executor's connection (only called for s3:// stores).
    """
    from airflow_aws_batch.workloads import StoreError, open_store

    def client() -> Any:
        return s3_hook().get_client_type(region_name=None)

    try:
        open_store(url, s3_client_factory=client).probe()
    except (StoreError, ValueError) as err:
        return CheckLine("FAIL", "workload store", f"{url}: {err}")
    except Exception as err:  # the hook raises many kinds for a bad connection
        return CheckLine("FAIL", "workload store", f"{url}: {type(err).__name__}: {err}")
    detail = f"{url}: wrote, read and deleted a probe object"
    if url.startswith("s3://"):
        detail += " (the job role needs s3:GetObject and s3:DeleteObject there too; not checked from here)"
    return CheckLine("OK", "workload store", detail)


def _environment_of(definition_env: dict[str, str], submit_job_kwargs: dict[str, Any]) -> dict[str, str]:
    """Job definition environment, then submit_job_kwargs' overrides, then what the executor adds.

    A task's executor_config can add more; that is per task and not known here.
    """
    from airflow_aws_batch.submit import EXECUTOR_CONTAINER_ENV

    env = dict(definition_env)
    overrides = list((submit_job_kwargs.get("containerOverrides") or {}).get("environment", []))
    # EKS job definitions: the env of the pod's first container, where the executor puts its command.
    pod = (submit_job_kwargs.get("eksPropertiesOverride") or {}).get("podProperties") or {}
    containers = pod.get("containers") or [{}]
    overrides.extend(containers[0].get("env") or [])
    for pair in overrides:
        env[str(pair.get("name"))] = str(pair.get("value", ""))
    env[EXECUTOR_CONTAINER_ENV] = "true"
    return env


def _execution_api_source(
    definition: Any, definition_env: dict[str, str], submit_job_kwargs: dict[str, Any]
) -> str | None:
    """Where the task's execution API URL is set: submit_job_kwargs wins over the job definition."""
    overrides = (submit_job_kwargs.get("containerOverrides") or {}).get("environment") or []
    pod = (submit_job_kwargs.get("eksPropertiesOverride") or {}).get("podProperties") or {}
    overrides = [*overrides, *((pod.get("containers") or [{}])[0].get("env") or [])]
    if any(pair.get("name") == EXECUTION_API_ENV for pair in overrides):
        return f"{EXECUTION_API_ENV} in [{SECTION}] submit_job_kwargs"
    if EXECUTION_API_ENV in definition_env and definition is not None:
        name = f"{definition.name}:{definition.revision}"
        return f"{EXECUTION_API_ENV} in the environment of job definition {name}"
    return None


def _label(name: str) -> str:
    """health.py's item names as report labels: ``compute_env:NAME`` -> ``compute environment``."""
    kind, _, which = name.partition(":")
    labels = {
        "credentials": "batch API",
        "job_queue": "job queue",
        "compute_env": "compute environment",
        "compute_environments": "compute environment",
        "queue_map": f"queue_map {which}",
        "job_definition": "job definition",
        "register_job_definitions": "register definitions",
        "pass_role": "pass role",
    }
    return labels.get(kind, name.replace("_", " "))


def load_config(args: argparse.Namespace) -> tuple[Any, list[CheckLine]]:
    """The executor's config as it would start, with the command line's overrides; or FAIL lines."""
    from airflow.configuration import conf

    from airflow_aws_batch.config import ConfigError, parse_options, read_options

    raw = read_options(conf)
    overrides = {
        "job_queue": args.job_queue,
        "job_definition": args.job_definition,
        "conn_id": args.conn_id,
        "region_name": args.region,
    }
    raw.update({k: v for k, v in overrides.items() if v})
    try:
        return parse_options(raw), []
    except ConfigError as err:
        return None, [CheckLine("FAIL", "config", str(problem)) for problem in err.problems]


def run_check(args: argparse.Namespace) -> list[CheckLine]:
    """Collect every check line; AWS errors become FAIL lines rather than exceptions.

    The queue, compute environment and job definition items are the executor's own start-up
    checks (:func:`airflow_aws_batch.health.run_checks`); this adds credentials, region, the task
    environment and the execution API.
    """
    from airflow_aws_batch.aws.batch import BatchApi, BatchApiError
    from airflow_aws_batch.health import run_checks

    config, lines = load_config(args)
    if config is None:
        return lines
    try:
        hook = aws_hook("batch", config.conn_id, config.region_name)
        connection_region = hook.conn_config.region_name
    except Exception as err:  # the hook raises many kinds for a bad connection
        return [CheckLine("FAIL", "credentials", f"connection {config.conn_id!r}: {err}")]
    region, where = _region_and_source(hook, config, connection_region)
    if not region:
        # Without this, botocore's "You must specify a region." is all the user would see.
        detail = (
            f"none found: set [{SECTION}] region_name ({env_var('region_name')}) or region_name in the "
            f"extra of connection {config.conn_id!r}"
        )
        return [*lines, CheckLine("FAIL", "region", detail)]
    try:
        credentials = hook.get_session(region_name=region).get_credentials()
    except Exception as err:
        return [CheckLine("FAIL", "credentials", f"connection {config.conn_id!r}: {err}")]
    if credentials is None:
        return [CheckLine("FAIL", "credentials", f"none found for connection {config.conn_id!r}")]
    source = getattr(credentials, "method", "?")
    lines.append(CheckLine("OK", "credentials", f"connection {config.conn_id!r}, source {source}"))
    lines.append(CheckLine("OK", "region", f"{region} (from {where})"))

    client = hook.get_client_type(region_name=region)
    lines.append(_endpoint_line(client, hook, config.conn_id))
    if config.workload_store:
        lines.append(
            workload_store_line(config.workload_store, lambda: aws_hook("s3", config.conn_id, region))
        )
    else:
        lines.append(CheckLine("WARN", "workload store", NO_STORE_WARNING))
    items = [
        _with_suggestions(item, client, config, f"{region} at {_endpoint_url(client)}")
        for item in run_checks(client, config)
    ]
    if not any(item.name == "credentials" and not item.ok for item in items):
        items.extend(_registration_items(client, config, region))
    for item in items:
        status: Status = "OK" if item.ok else ("FAIL" if item.fatal else "WARN")
        lines.append(CheckLine(status, _label(item.name), item.detail))
    if config.status_events:
        lines.extend(_status_events(config, hook, region))
    if not all(item.ok for item in items if item.name == "job_definition") or not any(
        item.name == "job_definition" for item in items
    ):
        return lines

    try:
        definition = BatchApi(lambda: client).describe_job_definition(config.job_definition)
    except BatchApiError as err:
        return [*lines, CheckLine("FAIL", "task environment", f"DescribeJobDefinitions failed: {err}")]
    definition_env = definition.environment if definition else {}
    environment = _environment_of(definition_env, config.submit_job_kwargs)
    lines.extend(task_environment_lines(environment))
    source = _execution_api_source(definition, definition_env, config.submit_job_kwargs)
    lines.append(execution_api_line(environment.get(EXECUTION_API_ENV), source=source))
    return lines


def _status_events(config: Any, hook: Any, region: str) -> list[CheckLine]:
    from airflow_aws_batch.ops.check_events import status_events_line

    try:
        queues = hook.get_client_type(region_name=region).describe_job_queues(jobQueues=[config.job_queue])
        job_queue_arn = str(queues["jobQueues"][0]["jobQueueArn"])
    except Exception:
        job_queue_arn = config.job_queue  # the job queue's own line says what is wrong with it
    sqs = aws_hook("sqs", config.conn_id, region).get_client_type(region_name=region)
    events = aws_hook("events", config.conn_id, region).get_client_type(region_name=region)
    status, detail = status_events_line(config.status_events, sqs, events, job_queue_arn)
    return [CheckLine(status, "status events", detail)]


def _region_and_source(hook: Any, config: Any, connection_region: str | None) -> tuple[str | None, str]:
    """The region the executor would use and where it comes from; None when there is none."""
    if config.region_name:
        return str(config.region_name), f"[{SECTION}] region_name"
    if connection_region:
        return str(connection_region), f"region_name in the extra of connection {config.conn_id!r}"
    try:
        # botocore's own chain (AWS_DEFAULT_REGION, the profile), as the executor's hook would use it.
        fallback = hook.conn_region_name
    except Exception:
        fallback = None
    return (
        (str(fallback), "the AWS environment (AWS_DEFAULT_REGION or the profile)") if fallback else (None, "")
    )


def _endpoint_url(client: Any) -> str:
    return str(getattr(getattr(client, "meta", None), "endpoint_url", "?"))


def _endpoint_line(client: Any, hook: Any, conn_id: str) -> CheckLine:
    """The Batch endpoint the checks call, and whether the connection chose it (moto, localbatch, VPC)."""
    try:
        configured = hook.conn_config.get_service_endpoint_url(service_name="batch")
    except Exception:
        configured = None
    why = f"endpoint_url of connection {conn_id!r}" if configured else "AWS's endpoint for the region"
    return CheckLine("OK", "endpoint", f"{_endpoint_url(client)} ({why})")


def _existing(client: Any, what: str) -> list[str]:
    """Names of the job queues or ACTIVE job definitions there are (first pages only: for a hint)."""
    try:
        if what == "queue":
            answer = client.describe_job_queues(maxResults=100)
            return sorted(str(q["jobQueueName"]) for q in answer.get("jobQueues", []))
        answer = client.describe_job_definitions(status="ACTIVE", maxResults=100)
        return sorted({str(d["jobDefinitionName"]) for d in answer.get("jobDefinitions", [])})
    except Exception:
        return []


def _with_suggestions(item: Any, client: Any, config: Any, where: str) -> Any:
    """A "does not exist" item, completed with where it was looked for and what exists there."""
    from airflow_aws_batch.health import CheckItem

    if item.ok or "does not exist" not in item.detail:
        return item
    kind = item.name.partition(":")[0]
    if kind in ("job_queue", "queue_map"):
        what, wanted, plural = "queue", item.detail.split("'")[1], "job queues"
    elif kind == "job_definition":
        what, wanted, plural = "definition", config.job_definition, "ACTIVE job definitions"
    else:
        return item
    names = _existing(client, what)
    hint = f"looked in {where}; "
    if not names:
        hint += f"there are no {plural} there"
    else:
        close = difflib.get_close_matches(wanted, names, n=1)
        shown = ", ".join(repr(name) for name in names[:20]) + (", ..." if len(names) > 20 else "")
        hint += f"{plural} there: {shown}" + (f" (did you mean {close[0]!r}?)" if close else "")
    return CheckItem(item.name, item.ok, f"{item.detail} ({hint})", item.fatal)


def _registration_items(client: Any, config: Any, region: str) -> list[Any]:
    """Whether these credentials may register per-task job definitions (see health)."""
    from airflow_aws_batch.health import job_definition_registration_items

    try:
        iam = aws_hook("iam", config.conn_id, region).get_client_type(region_name=region)
        sts = aws_hook("sts", config.conn_id, region).get_client_type(region_name=region)
    except Exception:
        iam = sts = None
    return job_definition_registration_items(client, config, iam, sts)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send whatever is written to stdout meanwhile to stderr, file descriptor included.

    Airflow's logging writes the Amazon provider's info lines ("AWS Connection ... credentials
    retrieved ...") to a stream it opened on stdout, whatever the logger levels say; the report (and
    its JSON) must be all that stdout holds.
    """
    streams = [stream for stream in (sys.stdout, sys.__stdout__) if stream is not None]
    for stream in streams:
        stream.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (embedded use): the Python-level redirect still applies
        saved = -1
    try:
        if saved >= 0:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for stream in streams:
            stream.flush()
        if saved >= 0:
            os.dup2(saved, 1)
            os.close(saved)


def check_command(args: argparse.Namespace, out: TextIO | None = None) -> None:
    quiet_botocore()
    with _stdout_to_stderr():
        lines = run_check(args)
    out = out or sys.stdout
    failed = [line for line in lines if line.status == "FAIL"]
    if getattr(args, "json", False):
        report = {"ok": not failed, "failed": len(failed), "checks": [asdict(line) for line in lines]}
        print(json.dumps(report, indent=2), file=out)
    else:
        for line in lines:
            print(line.render(), file=out)
        if failed:
            print(f"{len(failed)} check(s) failed: tasks would not run.", file=out)
        else:
            print("All checks passed.", file=out)
    if failed:
        raise SystemExit(1)
