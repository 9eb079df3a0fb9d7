"""The one place where the executor talks to AWS Batch and CloudWatch Logs.

Responses are parsed into the small typed objects of :mod:`airflow_aws_batch.aws.shapes`, and every
botocore error is translated here, once, into :class:`BatchApiError` with an :class:`ErrorKind`.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from botocore.exceptions import ClientError, NoCredentialsError

from airflow_aws_batch.aws.shapes import (
    ACTIVE_LIST_STATUSES,
    ComputeEnvironmentInfo,
    JobDefinitionInfo,
    JobDetail,
    JobQueueInfo,
    JobSummary,
)
from airflow_aws_batch.eks import DefinitionKind, definition_info

log = logging.getLogger(__name__)

DESCRIBE_MAX_IDS = 100
LIST_MAX_RESULTS = 1000

THROTTLING_CODES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "SlowDown",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)


class ErrorKind(enum.Enum):
    #: 429 / throttling: wait and try again; never a reason to fail a task.
    THROTTLED = "throttled"
    #: Expired or rejected credentials: the client is rebuilt (credentials reloaded) before the next call.
    CREDENTIALS = "credentials"
    #: 4xx: the request was refused and nothing happened (bad queue, bad parameters, access denied).
    CLIENT = "client"
    #: 5xx, timeouts, dropped connections, answers cut off: the call may or may not have taken effect.
    AMBIGUOUS = "ambiguous"


class BatchApiError(Exception):
    """A failed AWS call, classified. ``code`` is AWS's error code (or the botocore exception name)."""

    def __init__(self, kind: ErrorKind, code: str, message: str, operation: str) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.kind = kind
        self.code = code
        self.message = message
        self.operation = operation


def classify(exc: Exception, operation: str) -> BatchApiError:
    """Translate a botocore exception into a :class:`BatchApiError`."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in THROTTLING_CODES or status == 429:
            kind = ErrorKind.THROTTLED
        elif code in CREDENTIAL_CODES:
            kind = ErrorKind.CREDENTIALS
        elif status >= 500 or code in {"ServerException", "InternalFailure", "ServiceUnavailable"}:
            kind = ErrorKind.AMBIGUOUS
        else:
            kind = ErrorKind.CLIENT
        return BatchApiError(kind, code, message, operation)
    if isinstance(exc, NoCredentialsError):
        return BatchApiError(ErrorKind.CREDENTIALS, type(exc).__name__, str(exc), operation)
    # Anything else (timeouts, connection errors, other botocore or OS errors) may or may not have
    # reached the service; even a connection that was never made is worth retrying.
    return BatchApiError(ErrorKind.AMBIGUOUS, type(exc).__name__, str(exc), operation)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


CallObserver = Callable[[str, float, "ErrorKind | None"], None]


class BatchApi:
    """Typed wrapper over a boto3 ``batch`` client (and optionally a ``logs`` client).

    Clients come from factories so that expired credentials can be reloaded: after a
    CREDENTIALS error the cached client is dropped and the factory is called again.
    ``observer(operation, seconds, error_kind)`` is called after every call (metrics, tests).
    """

    def __init__(
        self,
        batch_client_factory: Callable[[], Any],
        logs_client_factory: Callable[[], Any] | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self._batch_factory = batch_client_factory
        self._logs_factory = logs_client_factory
        self._batch: Any = None
        self._logs: Any = None
        self._lock = threading.Lock()
        self._observer = observer

    # ------------------------------------------------------------ plumbing
    def _client(self, service: str) -> Any:
        with self._lock:
            if service == "batch":
                if self._batch is None:
                    self._batch = self._batch_factory()
                return self._batch
            if self._logs is None:
                if self._logs_factory is None:
                    raise BatchApiError(ErrorKind.CLIENT, "NoLogsClient", "no CloudWatch Logs client", "logs")
                self._logs = self._logs_factory()
            return self._logs

    @property
    def region_name(self) -> str:
        """The region the Batch client talks to (builds the client; no network call)."""
        return str(self._client("batch").meta.region_name)

    def warm_up(self) -> None:
        """Build the clients now (no network call), so the first API call does not pay for it."""
        self._client("batch")
        if self._logs_factory is not None:
            self._client("logs")

    def reset_clients(self) -> None:
        with self._lock:
            self._batch = None
            self._logs = None

    def _call(self, service: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        start = time.monotonic()
        kind: ErrorKind | None = None
        try:
            client = self._client(service)
            result: dict[str, Any] = getattr(client, operation)(**kwargs)
            return result
        except BatchApiError as exc:
            kind = exc.kind
            raise
        except Exception as exc:
            error = classify(exc, operation)
            kind = error.kind
            if kind is ErrorKind.CREDENTIALS:
                self.reset_clients()
            raise error from exc
        finally:
            if self._observer is not None:
                self._observer(operation, time.monotonic() - start, kind)

    # ------------------------------------------------------------ jobs
    def submit_job(self, request: dict[str, Any]) -> str:
        response = self._call("batch", "submit_job", **request)
        job_id = response.get("jobId")
        if not job_id:
            # botocore reads bodies without enforcing Content-Length, so a connection cut mid-answer
            # parses as a 200 with no fields: the job may exist, which makes this ambiguous.
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise BatchApiError(
                ErrorKind.AMBIGUOUS,
                "IncompleteResponse",
                f"SubmitJob answered HTTP {status} without a jobId (truncated response?)",
                "submit_job",
            )
        return str(job_id)

    def describe_jobs(self, job_ids: Iterable[str]) -> list[JobDetail]:
        ids = list(job_ids)
        if len(ids) > DESCRIBE_MAX_IDS:
            raise ValueError(f"DescribeJobs takes at most {DESCRIBE_MAX_IDS} ids, got {len(ids)}")
        if not ids:
            return []
        response = self._call("batch", "describe_jobs", jobs=ids)
        details: list[JobDetail] = []
        for raw in response.get("jobs") or []:
            try:
                details.append(JobDetail.parse(raw))
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                # One entry we cannot read must not hide the others (the poller would stall on it):
                # skipped, its job is later reported unknown to DescribeJobs.
                # Neither the entry nor the error's text: both can hold the job's command, and so a
                # token. A missing member's name (KeyError) says what is wrong without that risk.
                job_id = raw.get("jobId") if isinstance(raw, dict) else None
                what = f"{type(exc).__name__} {exc}" if isinstance(exc, KeyError) else type(exc).__name__
                log.warning(
                    "DescribeJobs returned an entry that cannot be read (job %.64s: %s); skipped",
                    job_id if isinstance(job_id, str) else "without an id",
                    what,
                )
        return details

    def list_jobs_page(
        self, job_queue: str, status: str, next_token: str | None = None, max_results: int = LIST_MAX_RESULTS
    ) -> tuple[list[JobSummary], str | None]:
        kwargs: dict[str, Any] = {"jobQueue": job_queue, "jobStatus": status, "maxResults": max_results}
        if next_token:
            kwargs["nextToken"] = next_token
        response = self._call("batch", "list_jobs", **kwargs)
        return [JobSummary.parse(s) for s in response.get("jobSummaryList", [])], response.get("nextToken")

    def find_jobs(
        self,
        job_queue: str,
        job_name: str,
        created_after_ms: int,
        tags: dict[str, str],
        *,
        any_of: tuple[str, Collection[str]] | None = None,
    ) -> list[JobDetail]:
        """Jobs on ``job_queue`` named ``job_name``, created at or after the time, carrying all ``tags``
        and, with ``any_of=(tag, values)``, that tag with one of those values.

        Only the JOB_NAME filter is sent (filters are ORed by some implementations); the time and
        tags are checked here.
        """
        candidates: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "jobQueue": job_queue,
                "filters": [{"name": "JOB_NAME", "values": [job_name]}],
                "maxResults": LIST_MAX_RESULTS,
            }
            if token:
                kwargs["nextToken"] = token
            response = self._call("batch", "list_jobs", **kwargs)
            for raw in response.get("jobSummaryList", []):
                summary = JobSummary.parse(raw)
                if summary.job_name != job_name:
                    continue
                if summary.created_at is not None and summary.created_at < created_after_ms:
                    continue
                candidates.append(summary.job_id)
            token = response.get("nextToken")
            if not token:
                break
        found: list[JobDetail] = []
        for i in range(0, len(candidates), DESCRIBE_MAX_IDS):
            for job in self.describe_jobs(candidates[i : i + DESCRIBE_MAX_IDS]):
                if not all(job.tags.get(k) == v for k, v in tags.items()):
                    continue
                if any_of is not None and job.tags.get(any_of[0]) not in any_of[1]:
                    continue
                found.append(job)
        return found

    def list_active_jobs(
        self, job_queue: str, before_call: Callable[[], bool] | None = None
    ) -> list[JobSummary]:
        """Every job of ``job_queue`` in SUBMITTED to RUNNING (ListJobs takes one status a call).

        ``before_call`` is asked before each call (a rate limiter); False stops the listing, and
        what was listed so far is returned with :class:`BatchApiError` ``Incomplete`` raised instead.
        """
        jobs: list[JobSummary] = []
        for status in ACTIVE_LIST_STATUSES:
            token: str | None = None
            while True:
                if before_call is not None and not before_call():
                    raise BatchApiError(ErrorKind.AMBIGUOUS, "Incomplete", "listing stopped", "list_jobs")
                page, token = self.list_jobs_page(job_queue, status, token)
                jobs.extend(page)
                if not token:
                    break
        return jobs

    def terminate_job(self, job_id: str, reason: str) -> None:
        self._call("batch", "terminate_job", jobId=job_id, reason=reason[:1024])

    def cancel_job(self, job_id: str, reason: str) -> None:
        """CancelJob: ends a job (or an array's children) still in SUBMITTED, PENDING or RUNNABLE;
        Batch leaves one that reached STARTING or RUNNING alone."""
        self._call("batch", "cancel_job", jobId=job_id, reason=reason[:1024])

    # ------------------------------------------------------------ resources
    def describe_job_queue(self, name: str) -> JobQueueInfo | None:
        response = self._call("batch", "describe_job_queues", jobQueues=[name])
        for raw in response.get("jobQueues", []):
            ces = sorted(raw.get("computeEnvironmentOrder") or [], key=lambda c: int(c.get("order", 0)))
            return JobQueueInfo(
                name=str(raw.get("jobQueueName", "")),
                arn=str(raw.get("jobQueueArn", "")),
                state=str(raw.get("state", "")),
                status=str(raw.get("status", "")),
                status_reason=str(raw.get("statusReason") or ""),
                compute_environments=tuple(str(c.get("computeEnvironment", "")) for c in ces),
                scheduling_policy_arn=str(raw.get("schedulingPolicyArn") or ""),
            )
        return None

    def describe_compute_environments(self, names: list[str]) -> list[ComputeEnvironmentInfo]:
        if not names:
            return []
        response = self._call("batch", "describe_compute_environments", computeEnvironments=names)
        return [
            ComputeEnvironmentInfo(
                name=str(raw.get("computeEnvironmentName", "")),
                arn=str(raw.get("computeEnvironmentArn", "")),
                state=str(raw.get("state", "")),
                status=str(raw.get("status", "")),
                status_reason=str(raw.get("statusReason") or ""),
                min_vcpus=_int_or_none((raw.get("computeResources") or {}).get("minvCpus")),
                desired_vcpus=_int_or_none((raw.get("computeResources") or {}).get("desiredvCpus")),
                max_vcpus=_int_or_none((raw.get("computeResources") or {}).get("maxvCpus")),
                orchestration=str(raw.get("containerOrchestrationType") or "ECS"),
                kubernetes_namespace=str(
                    (raw.get("eksConfiguration") or {}).get("kubernetesNamespace") or ""
                ),
            )
            for raw in response.get("computeEnvironments", [])
        ]

    def describe_job_definition(self, name: str) -> JobDefinitionInfo | None:
        """The named definition: ``name`` (latest ACTIVE revision, else latest), ``name:rev`` or an ARN."""
        kwargs: dict[str, Any]
        if name.startswith("arn:") or ":" in name:
            kwargs = {"jobDefinitions": [name]}
        else:
            kwargs = {"jobDefinitionName": name}
        response = self._call("batch", "describe_job_definitions", **kwargs)
        defs = response.get("jobDefinitions", [])
        if not defs:
            return None
        active = [d for d in defs if d.get("status") == "ACTIVE"]
        raw = max(active or defs, key=lambda d: int(d.get("revision", 0)))
        info = definition_info(raw)
        if info.kind is DefinitionKind.EKS:
            containers = ((raw.get("eksProperties") or {}).get("podProperties") or {}).get("containers") or [
                {}
            ]
            entries = containers[0].get("env") or []
        else:
            entries = (raw.get("containerProperties") or {}).get("environment") or []
        env = {str(e.get("name")): str(e.get("value", "")) for e in entries}
        return JobDefinitionInfo(
            name=str(raw.get("jobDefinitionName", "")),
            arn=str(raw.get("jobDefinitionArn", "")),
            revision=int(raw.get("revision", 0)),
            status=str(raw.get("status", "")),
            environment=env,
            info=info,
        )

    def describe_job_definitions_page(
        self, kwargs: dict[str, Any], token: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of DescribeJobDefinitions(**kwargs): the raw entries and the next token."""
        if token:
            kwargs = {**kwargs, "nextToken": token}
        response = self._call("batch", "describe_job_definitions", **kwargs)
        entries = [dict(e) for e in response.get("jobDefinitions", []) if isinstance(e, dict)]
        return entries, response.get("nextToken") or None

    def register_job_definition(self, request: dict[str, Any]) -> str:
        """RegisterJobDefinition(**request); the ARN of the new revision."""
        response = self._call("batch", "register_job_definition", **request)
        arn = response.get("jobDefinitionArn")
        if not arn:
            raise BatchApiError(
                ErrorKind.AMBIGUOUS,
                "EmptyResponse",
                "RegisterJobDefinition answered without a jobDefinitionArn",
                "register_job_definition",
            )
        return str(arn)

    def tag_resource(self, arn: str, tags: dict[str, str]) -> None:
        self._call("batch", "tag_resource", resourceArn=arn, tags=tags)

    # ------------------------------------------------------------ logs
    def get_log_lines(self, group: str, stream: str, limit: int = 10_000) -> list[str]:
        """Messages of one CloudWatch Logs stream, oldest first, at most ``limit`` lines."""
        lines: list[str] = []
        token: str | None = None
        while len(lines) < limit:
            kwargs: dict[str, Any] = {
                "logGroupName": group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if token:
                kwargs["nextToken"] = token
            response = self._call("logs", "get_log_events", **kwargs)
            events = response.get("events", [])
            lines.extend(str(e.get("message", "")) for e in events)
            new_token = response.get("nextForwardToken")
            if not events or not new_token or new_token == token:
                break
            token = new_token
        return lines[:limit]
