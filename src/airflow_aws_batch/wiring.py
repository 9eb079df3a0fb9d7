"""The pieces the executor's rooms share, and how ``start()`` builds them.

:class:`Wiring` holds the options, the workload store, the AWS layer, the core and the threads
(:mod:`airflow_aws_batch.runtime`); every room of the executor (intake, dispatch, results, the adoption
desk, sweep, shutdown) takes it at construction and reads what it needs from it when it needs it: the
core and the threads exist only from ``start()`` on, and the threads only until the executor stops.

:class:`Airflow` is the executor as its rooms see it: Airflow's ``BaseExecutor`` state and calls, and
the class attributes tests and subclasses set.
"""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from airflow_aws_batch.aws.batch import BatchApi, BatchApiError, ErrorKind
from airflow_aws_batch.aws.clients import botocore_config, hook_client_factory
from airflow_aws_batch.aws.sqs import EventQueue
from airflow_aws_batch.compat import MULTI_TEAM, unsupported_version, version_text
from airflow_aws_batch.config import ConfigError, ExecutorConfig, derive_deployment_id, load_config
from airflow_aws_batch.core.causes import StuckJobs
from airflow_aws_batch.core.messages import BackoffPolicy
from airflow_aws_batch.core.state import Core
from airflow_aws_batch.eks import PENDING_KEY as EKS_PENDING_KEY
from airflow_aws_batch.eks import DefinitionInfo, DefinitionKinds
from airflow_aws_batch.exit_signals import ExitSignalGuard
from airflow_aws_batch.fairshare import QueueKind, QueueKinds, template_fields
from airflow_aws_batch.jobdefs import JobDefinitions, PagedCalls
from airflow_aws_batch.metrics import observe_call
from airflow_aws_batch.runtime import Runtime
from airflow_aws_batch.submit import RequestTemplates, finish_request
from airflow_aws_batch.workloads import NO_STORE_WARNING, StoreError, WorkloadStore, open_store

log = logging.getLogger(__name__)

SUBMIT_THREADS = 8


class HealthCheckFailed(RuntimeError):
    """Raised by ``start()`` when a fatal startup check fails; the scheduler does not start."""


class Airflow(Protocol):
    """The executor as its rooms see it (``AwsBatchExecutor``, a ``BaseExecutor``)."""

    running: set[Any]
    event_buffer: dict[Any, Any]
    queued_tasks: dict[Any, Any]
    queued_callbacks: dict[Any, Any]
    array_hold_s: float
    sweep_interval_s: float

    def running_state(self, key: Any, info: Any = None) -> None: ...

    def success(self, key: Any, info: Any = None) -> None: ...

    def fail(self, key: Any, info: Any = None) -> None: ...

    def log_task_event(self, *, event: str, extra: str, ti_key: Any) -> None: ...

    def ti_lookup(self, tries: Any) -> Any: ...

    def workload_rebuilder(self, ti_id: str, try_number: int, executor: Any) -> Any: ...


def _refusal(exc: Exception) -> str | None:
    """What Batch said when it refused a job definition call (4xx, e.g. AccessDenied), else None."""
    if isinstance(exc, BatchApiError) and exc.kind is ErrorKind.CLIENT:
        return f"{exc.code}: {exc.message}"
    return None


class Wiring:
    """The shared pieces: options, store, AWS layer, core and threads; ``start()`` builds them."""

    def __init__(self, owner: object) -> None:
        # Nothing here may do I/O: the API server builds executors only to call get_task_log().
        #: The executor: its team-aware ``conf`` and its ``team_name``.
        self._owner = owner
        self._config: ExecutorConfig | None = None
        #: The workload store (None: workloads travel in the command); the sweep reads arrays' objects.
        self.store: WorkloadStore | None = None
        self._submit_api: BatchApi | None = None
        self._status_api: BatchApi | None = None
        self._core: Core | None = None
        #: The I/O threads, from ``start()`` until the executor stops (see ``shutdown``); None otherwise.
        self.runtime: Runtime | None = None
        #: Delivers again a SIGTERM/SIGINT whose SystemExit Python swallowed (see ``exit_signals``).
        self.exit_guard = ExitSignalGuard()
        #: Job queue kinds (FIFO / fair-share): read by the startup check, else by a submit thread
        #: before the first SubmitJob to each queue; the request builder only looks them up.
        self.queue_kinds = QueueKinds()
        self.templates = RequestTemplates()
        #: Job definition kinds (container / EKS): read likewise, by the startup check or a submit thread.
        self.definition_kinds = DefinitionKinds()
        #: Whether ``share_identifier`` uses ``{pool}`` (see ``intake``).
        self.share_uses_pool = False
        #: Least tasks grouped into one array job; 0: arrays off (also whenever workload_store is unset).
        self.array_min_size = 0
        #: Job definitions derived for tasks' jobDefinitionOverrides (submit threads only; see jobdefs).
        self.job_definitions = JobDefinitions(PagedCalls(lambda: self.api, self._status_budget), _refusal)
        #: Jobs in RUNNABLE with a MISCONFIGURATION reason, timed against misconfiguration_grace_seconds.
        self.stuck = StuckJobs(0)

    @property
    def config(self) -> ExecutorConfig:
        if self._config is None:
            self._config = self.load_config()
        return self._config

    def load_config(self) -> ExecutorConfig:
        """The section as this executor's team sees it (``self.conf``: Airflow's team-aware lookup)."""
        team = getattr(self._owner, "team_name", None)
        return load_config(getattr(self._owner, "conf", None), team=team)

    def team_label(self) -> str:
        team = getattr(self._owner, "team_name", None)
        return f" (team {team!r})" if team else ""

    def _make_api(self, *, submit: bool) -> BatchApi:
        config = self.config
        batch_config = botocore_config(
            retry_mode=config.retry_mode,
            # SubmitJob is not idempotent: botocore must not resend it after a 5xx or a timeout;
            # the core does, after looking for the job the failed call may have created.
            max_attempts=1 if submit else 5,
            pool_size=SUBMIT_THREADS + 4,
        )
        logs_config = botocore_config(retry_mode=config.retry_mode, max_attempts=5, pool_size=4)
        return BatchApi(
            hook_client_factory(
                conn_id=config.conn_id,
                region_name=config.region_name,
                client_type="batch",
                config=batch_config,
            ),
            hook_client_factory(
                conn_id=config.conn_id, region_name=config.region_name, client_type="logs", config=logs_config
            ),
            observer=observe_call,
        )

    @property
    def api(self) -> BatchApi:
        """The AWS layer used for status, terminate, health and logs calls (botocore retries on)."""
        if self._status_api is None:
            self._status_api = self._make_api(submit=False)
        return self._status_api

    @property
    def core(self) -> Core:
        if self._core is None:
            raise RuntimeError("AwsBatchExecutor.start() was not called")
        return self._core

    @property
    def started_core(self) -> Core | None:
        """The core once ``start()`` built it; None before (it stays after the executor stops)."""
        return self._core

    # ------------------------------------------------------------ start-up
    def start(
        self,
        *,
        backoff: BackoffPolicy,
        poll_interval_s: float,
        start_checker: Callable[..., Any],
        running_checker: Callable[..., Any],
        moved_on_checker: Callable[..., Any],
    ) -> Runtime:
        """Check the version and the options, build the core, the AWS layer and the threads; the
        threads run when this returns."""
        unsupported = unsupported_version()
        team_name = getattr(self._owner, "team_name", None)
        if unsupported is None and team_name and not MULTI_TEAM:
            unsupported = f"Airflow {version_text()} has no multi-team executors (team {team_name!r})"
        if unsupported is not None:
            log.error("AwsBatchExecutor cannot start: %s", unsupported)
            raise RuntimeError(unsupported)
        try:
            config = self.load_config()
        except ConfigError as exc:
            log.error("AwsBatchExecutor%s cannot start: %s", self.team_label(), exc)
            raise
        if config.deployment_id is None:
            config = config.model_copy(update={"deployment_id": _derived_deployment_id()})
        self._config = config
        self.share_uses_pool = config.share_identifier is not None and "pool" in template_fields(
            config.share_identifier
        )
        self.array_min_size = config.array_min_size if config.workload_store else 0
        if not config.workload_store:
            log.warning("AwsBatchExecutor%s: %s", self.team_label(), NO_STORE_WARNING)
        store = self.store = self._open_store(config)
        if config.check_health_on_startup:
            from airflow_aws_batch.health import format_failures, run_checks

            items = run_checks(self.api, config, self.queue_kinds, self.definition_kinds)
            if store is not None:
                items.append(_probe_store(store))
            failures = [item for item in items if not item.ok and item.fatal]
            if failures:
                message = format_failures(config, failures)
                log.error("%s", message)
                raise HealthCheckFailed(message)
        self._core = Core(max_attempts=config.max_submit_job_attempts, clock=time.monotonic, backoff=backoff)
        self.stuck = StuckJobs(config.misconfiguration_grace_seconds)
        submit_api = self._submit_api = self._make_api(submit=True)
        # Build both clients now, on this thread: loading botocore's service model holds the GIL for
        # hundreds of milliseconds, which would otherwise land in the middle of a heartbeat.
        submit_api.warm_up()
        self.api.warm_up()
        # log_task_event builds ORM Log rows; the first one configures every SQLAlchemy mapper
        # (about a second). The scheduler has done this already; other hosts of the executor may not.
        try:
            from airflow.models import import_all_models
            from sqlalchemy.orm import configure_mappers

            import_all_models()
            configure_mappers()
        except Exception:
            log.debug("Could not configure ORM mappers ahead of time", exc_info=True)
        _freeze_startup_heap()
        runtime = Runtime(
            submit_api,
            status_api=self.api,
            submit_rate=config.submit_rate,
            status_calls_per_second=config.status_calls_per_second,
            submit_threads=SUBMIT_THREADS,
            poll_interval_s=poll_interval_s,
            start_checker=start_checker,
            running_checker=running_checker,
            prepare=self._prepare_request,
            store=store,
            moved_on_checker=moved_on_checker,
            status_events=self._open_status_events(config),
        )
        self.runtime = runtime
        runtime.start()
        return runtime

    def log_started(self) -> None:
        config = self.config
        log.info(
            "AwsBatchExecutor%s started: queue %s, definition %s, region %s, %s submits/s, %s status calls/s",
            self.team_label(),
            config.job_queue,
            config.job_definition,
            config.region_name or "(from connection)",
            config.submit_rate,
            config.status_calls_per_second,
        )

    def _open_store(self, config: ExecutorConfig) -> WorkloadStore | None:
        """The workload store (no I/O: an s3:// store builds its client on first use, on a submit thread)."""
        if not config.workload_store:
            return None
        s3_config = botocore_config(
            retry_mode=config.retry_mode, max_attempts=5, pool_size=SUBMIT_THREADS + 2
        )
        factory = hook_client_factory(
            conn_id=config.conn_id, region_name=config.region_name, client_type="s3", config=s3_config
        )
        return open_store(config.workload_store, s3_client_factory=factory)

    def _open_status_events(self, config: ExecutorConfig) -> EventQueue | None:
        """The status events queue (no I/O: the client is built on the events thread's first receive)."""
        if not config.status_events:
            return None
        if not config.workload_store:
            log.warning(
                "status_events without workload_store: every event carries the job's command, and with "
                "it the task's token, to the queue %s. Set workload_store to keep tokens out of it",
                config.status_events,
            )
        # Read timeout above the 20 s long poll; few retries: a failing queue falls back to polling.
        sqs_config = botocore_config(retry_mode=config.retry_mode, max_attempts=3, pool_size=2)
        factory = hook_client_factory(
            conn_id=config.conn_id, region_name=config.region_name, client_type="sqs", config=sqs_config
        )
        return EventQueue(factory, config.status_events, observer=observe_call)

    # ------------------------------------------------------------ on the submit threads
    def _prepare_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """On a submit thread: what the builder left for the queue's kind (see ``fairshare``) and the
        job definition's kind (see ``eks``) applied, and the task's own job definition derived, found
        or registered (see ``jobdefs``)."""
        request = self.queue_kinds.resolve(request, self._read_queue_kind)
        if EKS_PENDING_KEY in request:
            info = self.definition_kinds.ensure(str(request["jobDefinition"]), self._read_definition_kind)
            request = finish_request(request, info)
        return self.job_definitions.resolve(request, self.config.allowed_job_definition_overrides)

    def _status_budget(self, operation: str = "job_definitions") -> None:
        """Take one status call from the budget (submit threads only); raise when none comes soon."""
        runtime = self.runtime
        if runtime is None or not runtime.status_limiter.acquire(timeout=30.0):
            raise BatchApiError(ErrorKind.AMBIGUOUS, "Busy", "no status call available", operation)

    def _read_definition_kind(self, job_definition: str) -> DefinitionInfo | None:
        """DescribeJobDefinitions for one definition, within the status-call budget (submit threads only)."""
        self._status_budget("describe_job_definitions")
        definition = self.api.describe_job_definition(job_definition)
        return definition.info if definition is not None else None

    def _read_queue_kind(self, job_queue: str) -> tuple[QueueKind, tuple[str, ...]] | None:
        """DescribeJobQueues for one queue, within the status-call budget (submit threads only)."""
        runtime = self.runtime
        if runtime is None or not runtime.status_limiter.acquire(timeout=30.0):
            raise BatchApiError(
                ErrorKind.AMBIGUOUS, "Busy", "no status call available", "describe_job_queues"
            )
        queue = self.api.describe_job_queue(job_queue)
        if queue is None:
            return None
        kind = QueueKind.FAIR_SHARE if queue.scheduling_policy_arn else QueueKind.FIFO
        return kind, (queue.name, queue.arn)


def state_name(state: Any) -> str:
    """A TaskInstanceState (a str enum) or a plain string, as its value: ``"failed"``, ``"running"``."""
    return str(getattr(state, "value", state))


def monotonic_deadline(epoch_s: float | None) -> float | None:
    """An epoch time as a time of ``time.monotonic()``, the core's clock."""
    if epoch_s is None:
        return None
    return time.monotonic() + (epoch_s - time.time())


@functools.cache
def _freeze_startup_heap() -> None:
    """Leave what the process holds at startup (Airflow's modules, settings, ORM mappers) out of
    Python's full garbage collections, once per process.

    A full collection walks every tracked object: in a scheduler that is several hundred thousand,
    100-300 ms that land in whichever heartbeat allocates past the threshold (a burst of thousands of
    tasks does). Frozen objects are still freed by reference counting; only cycles among them are never
    collected, and the collection run first leaves none. Airflow freezes its DAG processor's heap the
    same way.
    """
    gc.collect()
    gc.freeze()


def _probe_store(store: WorkloadStore) -> Any:
    """The startup check's item for the workload store: a probe object written, read and deleted."""
    from airflow_aws_batch.health import CheckItem

    try:
        store.probe()
    except (StoreError, ValueError) as exc:
        return CheckItem("workload_store", False, f"{store.url}: {exc}")
    except Exception as exc:  # a bad connection makes the hook raise many kinds
        return CheckItem("workload_store", False, f"{store.url}: {type(exc).__name__}: {exc}")
    return CheckItem("workload_store", True, f"{store.url}: probe object written, read and deleted")


def _derived_deployment_id() -> str:
    from airflow.configuration import conf

    return derive_deployment_id(conf.get("database", "sql_alchemy_conn", fallback="") or "")
