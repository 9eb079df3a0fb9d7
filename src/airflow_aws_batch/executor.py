"""``AwsBatchExecutor``: every Airflow task (and, on Airflow >= 3.3, every callback) as one AWS Batch job.

Written against one shape of Airflow: where 3.1, 3.2 and 3.3 differ, :mod:`airflow_aws_batch.compat`
decides (workload keys, callbacks, metrics).

The class is thin: :mod:`airflow_aws_batch.core` decides, :mod:`airflow_aws_batch.runtime` threads
do the AWS calls, and ``heartbeat()``/``sync()`` on the scheduler thread only move messages between
them and Airflow. No network call ever happens on the scheduler thread.

Shutdown hands over instead of waiting: ``end()`` (SIGTERM) stops submitting (what waits to be
sent never is), waits a few seconds for SubmitJobs on the wire, cancels the jobs whose ids Airflow
never saved and that have not started, and returns within a bound whatever Batch answers; running
jobs keep running and the next scheduler adopts them.

Multi-team (``[core] multi_team``): each team's executor reads its own ``[aws_batch_executor]``
options through its team-aware ``self.conf``, is checked on its own at start, tags its jobs
``airflow_team=<team>``, and adopts and sweeps only jobs of its team (a global executor: only jobs
without a team tag).

Not supported: ``is_local`` (``airflow standalone`` always forces LocalExecutor), and connection-test
workloads.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from airflow.executors.base_executor import BaseExecutor

from airflow_aws_batch.adoption import (
    AdoptionPlan,
    OutOfBudget,
    Saved,
    active_jobs,
    check_saved,
    deadline_limiter,
    describe_all,
    find_array_children,
    plan_adoption,
    provisional_plan,
    queued_at_ms,
    stale_job_terminate,
    try_id,
)
from airflow_aws_batch.aws.batch import BatchApi, BatchApiError, ErrorKind
from airflow_aws_batch.aws.clients import botocore_config, hook_client_factory
from airflow_aws_batch.compat import (
    MULTI_TEAM,
    RUNS_CALLBACKS,
    callback_refusal,
    is_task,
    unsupported_version,
    version_text,
    workload_key,
)
from airflow_aws_batch.compat import stats as _stats
from airflow_aws_batch.config import (
    ConfigError,
    ExecutorConfig,
    derive_deployment_id,
    load_config,
)
from airflow_aws_batch.core.arrays import SubmitArray, group_key, group_submits, parent_of
from airflow_aws_batch.core.causes import Cause, StuckJobs
from airflow_aws_batch.core.messages import (
    BackoffPolicy,
    CheckStarted,
    Fail,
    Report,
    RunningState,
    Submit,
    SubmitOutcome,
    Success,
    TaskEvent,
    Terminate,
    TerminateLookup,
    Track,
    Untrack,
)
from airflow_aws_batch.core.state import Core
from airflow_aws_batch.eks import PENDING_KEY as EKS_PENDING_KEY
from airflow_aws_batch.eks import DefinitionInfo, DefinitionKinds
from airflow_aws_batch.exit_signals import ExitSignalGuard
from airflow_aws_batch.failures import METRIC as FAILURE_METRIC
from airflow_aws_batch.failures import record_failure, stuck_reason
from airflow_aws_batch.fairshare import QueueKind, QueueKinds, template_fields
from airflow_aws_batch.jobdefs import JobDefinitions, PagedCalls
from airflow_aws_batch.lost import Awaited, Resolution, resolve_lost, resubmit_request, workload_expires_at
from airflow_aws_batch.runtime import (
    Accepted,
    AdoptedSeen,
    JobsMissing,
    JobsSeen,
    LostResolved,
    Runtime,
    StartChecked,
    SubmitDone,
)
from airflow_aws_batch.started import (
    airflow_saw_task_start,
    rebuild_workload,
    task_instances_now,
    ti_running,
    tis_moved_on,
)
from airflow_aws_batch.submit import (
    ExecConfigError,
    RequestTemplates,
    build_callback_submit_job_request,
    build_submit_job_request,
    finish_request,
    stored_workload_command,
    token_expires_at,
    workload_command,
)
from airflow_aws_batch.sweep import LookupFailed, sweep
from airflow_aws_batch.workloads import NO_STORE_WARNING, StoreError, WorkloadStore, open_store
from airflow_aws_batch.workloads import PENDING_KEY as WORKLOADS_KEY

log = logging.getLogger(__name__)

METRIC_PREFIX = "aws_batch_executor"
SUBMIT_THREADS = 8
# The heartbeat only hands queued workloads over: the intake thread builds their requests (see
# ``runtime``), so a burst of thousands is taken off Airflow's queue in a heartbeat or two (Airflow sorts
# the whole queue on every heartbeat while it is not empty). A few are built at once, on the scheduler
# thread, as before: a thread hop would only add latency to the usual handful. The budget counts from
# the start of the heartbeat, so Airflow's sort of a long queue (about 1 us a task) is part of it, but
# never leaves less than ``ACCEPT_MIN_S``: a queue of thousands would otherwise be taken a few at a time.
ACCEPT_BUDGET_S = 0.007
ACCEPT_MIN_S = 0.004
INLINE_ACCEPT = 16
# What the intake built and the poller saw is taken in within this share of a heartbeat; the rest waits
# in the results queue for the next one. Slot counts (asked several times a loop) take in less. A built
# request is cheap to take in but costs several times that once due (submit, grouping): they are
# taken in a round at a time, each round dispatched before the clock is read again.
# The budget counts from the start of the heartbeat (taking in a burst spends some of it first), but
# always leaves ``SYNC_MIN_S`` to take in results.
HEARTBEAT_BUDGET_S = 0.012
SYNC_MIN_S = 0.002
SLOTS_BUDGET_S = 0.002
ACCEPTED_PER_ROUND = 128
# The core packs the requests it took (about 15 us each) a few at a time, within this share of each
# heartbeat once its results are all taken in; while a burst is being taken in, only in what is left
# of HEARTBEAT_BUDGET_S. Memory per tracked job comes down over the heartbeats after a burst.
COMPACT_BUDGET_S = 0.002
COMPACT_STEP = 4
END_POLL_S = 1.0
#: How long ``end()`` waits for SubmitJobs already on the wire: a call's answer, not a job's run.
END_SUBMIT_WAIT_S = 5.0
#: How long ``end()`` gives the DescribeJobs and CancelJob calls for the jobs whose ids were not saved.
END_CANCEL_S = 10.0
#: The statuses CancelJob ends a job in (it leaves STARTING and RUNNING alone).
CANCELLABLE_STATUSES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE"})
#: How long one ``try_adopt_task_instances`` reads Batch (no call starts later), and how long the
#: scheduler thread waits for those reads at most: a call Batch is slow to answer is not waited for
#: (see ``_plan_within_bound``). Beyond the wait, the thread only does bookkeeping, 30-80 us per task
#: instance (under 2 s for 20,000 on a busy 2-vCPU host): the call holds the scheduler thread under
#: 5 s, well under Airflow's scheduler_health_check_threshold (30 s by default).
ADOPT_BUDGET_S = 2.5
ADOPT_BOUND_S = 3.0
#: A lookup by tags of task instances adopted unconfirmed that could not be done (Batch failed) is
#: tried again after this long.
LOST_LOOKUP_RETRY_S = 30.0
#: The sweep after an adoption waits for Airflow to commit the resets of what was handed back.
SWEEP_AFTER_ADOPTION_S = 10.0
SWEEP_BUDGET_S = 120.0


class HealthCheckFailed(RuntimeError):
    """Raised by ``start()`` when a fatal startup check fails; the scheduler does not start."""


def _refusal(exc: Exception) -> str | None:
    """What Batch said when it refused a job definition call (4xx, e.g. AccessDenied), else None."""
    if isinstance(exc, BatchApiError) and exc.kind is ErrorKind.CLIENT:
        return f"{exc.code}: {exc.message}"
    return None


class AwsBatchExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs each Airflow task as its own AWS Batch job; see the README for the options."""

    supports_callbacks = True
    supports_multi_team = True
    #: Delay between submit attempts (class attribute so tests and subclasses can shorten it).
    backoff = BackoffPolicy()
    #: Least seconds between polling cycles. Short, so that with few jobs (one DescribeJobs a cycle) an
    #: ended job is seen within a fraction of a second; with many, ``status_calls_per_second`` is what
    #: spaces the calls (a cycle over 5,000 jobs takes about a second at the default budget of 5).
    poll_interval_s = 0.25
    #: With arrays on, how long a task that could be an array child waits for enough tasks like it:
    #: Airflow's scheduler queues the tasks of one burst over several loops (at most
    #: ``[scheduler] max_tis_per_query`` a loop, shared with every other DAG).
    array_hold_s = 2.0
    #: Seconds between two sweeps for orphaned jobs beside those at start and after adoption: a
    #: termination lost for good (the scheduler that asked for it died) or a job whose try moved on
    #: while nobody watched it is ended within this. A sweep lists the active jobs of the queues and
    #: describes them (about 25 ListJobs pages and 200 DescribeJobs for 20,000 jobs), through the
    #: same ``status_calls_per_second`` as the poller: at the default budget of 5, under a tenth of
    #: it at that size.
    sweep_interval_s = 300.0
    #: ``(tries) -> what Airflow's DB says of each task instance``: the sweep's view of Airflow.
    ti_lookup = staticmethod(task_instances_now)
    #: ``[(ti_id, try_number)] -> ids of those Airflow moved on``: asked by the poller for the jobs that
    #: SUCCEEDED, one query a polling cycle that saw any.
    moved_on_checker = staticmethod(tis_moved_on)
    #: ``(ti_id, try_number) -> did Airflow see the try start``: asked when a job fails after starting.
    start_checker = staticmethod(airflow_saw_task_start)
    #: ``(ti_id, try_number) -> is the try RUNNING``: asked when a job failed after Airflow saw its try
    #: start, before another job of the try is looked for (a duplicate that won the start).
    running_checker = staticmethod(ti_running)
    #: ``(ti_id, try_number, executor) -> a new workload, or None``: for a task instance adopted after
    #: a restart that Airflow still has QUEUED while no job of its current queueing exists.
    workload_rebuilder = staticmethod(rebuild_workload)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Nothing here may do I/O: the API server builds executors only to call get_task_log().
        self._config: ExecutorConfig | None = None
        #: The workload store (None: workloads travel in the command); the sweep reads arrays' objects.
        self._store: WorkloadStore | None = None
        self._api: BatchApi | None = None
        self._status_api: BatchApi | None = None
        self._core: Core | None = None
        self._runtime: Runtime | None = None
        self._pinned_event_logs: list[Any] = []
        #: Workloads handed over and not yet taken in, by key: the hand-over's number (a revoke or a
        #: later queueing of the key drops or replaces it, so a stale build is ignored).
        self._intake: dict[Any, int] = {}
        self._intake_seq = 0
        #: When the heartbeat under way started (``perf_counter``); None outside ``heartbeat()``.
        self._heartbeat_started: float | None = None
        #: Builds handed to the intake thread whose result has not been read yet.
        self._building = 0
        #: Array grouping keys of requests taken in since the last dispatch (and of held submits).
        self._group_keys: dict[Any, bytes] = {}
        self._sweep_timers: list[threading.Timer] = []
        #: Sweeps scheduled and not yet begun (the periodic one is skipped while one waits), and when
        #: the next periodic one is due (monotonic).
        self._sweeps_waiting = 0
        self._next_sweep_at = float("inf")
        #: Delivers again a SIGTERM/SIGINT whose SystemExit Python swallowed (see ``exit_signals``).
        self._exit_guard = ExitSignalGuard()
        #: Jobs a sweep found active for a finished try; terminated if the next sweep finds them too.
        #: Touched only by the terminator thread, which runs the sweeps one after another.
        self._sweep_suspects: set[str] = set()
        #: Job queue kinds (FIFO / fair-share): read by the startup check, else by a submit thread
        #: before the first SubmitJob to each queue; the request builder only looks them up.
        self._queue_kinds = QueueKinds()
        self._templates = RequestTemplates()
        #: Job definition kinds (container / EKS): read likewise, by the startup check or a submit thread.
        self._definition_kinds = DefinitionKinds()
        #: Whether ``share_identifier`` uses ``{pool}``, and the pools of the tasks queued but not yet
        #: taken in (see ``queue_workload``).
        self._share_uses_pool = False
        self._pools: dict[Any, str | None] = {}
        #: Least tasks grouped into one array job; 0: arrays off (also whenever workload_store is unset).
        self._array_min_size = 0
        #: Due submits of too small a group, held back (with when) for tasks like them to come.
        self._held: list[tuple[Submit, float]] = []
        #: Job definitions derived for tasks' jobDefinitionOverrides (submit threads only; see jobdefs).
        self._job_definitions = JobDefinitions(PagedCalls(lambda: self.api, self._status_budget), _refusal)
        #: Jobs in RUNNABLE with a MISCONFIGURATION reason, timed against misconfiguration_grace_seconds.
        self._stuck = StuckJobs(0)
        #: Adopted unconfirmed, by job id: verified on their first description (see ``AdoptedSeen``).
        self._unconfirmed: dict[str, Awaited] = {}
        #: Adopted, whose saved job is not their submission: waiting for the lookup by tags, by key.
        self._lost: dict[Any, Awaited] = {}
        #: A lookup of ``_lost`` is under way; when the next may start after one failed (monotonic).
        self._lost_lookup_waiting = False
        self._lost_retry_at = 0.0

    def log_task_event(self, *, event: str, extra: str, ti_key: Any) -> None:
        from airflow.models.taskinstancekey import TaskInstanceKey

        if not isinstance(ti_key, TaskInstanceKey):
            # A callback's key: the event log holds task instances' rows only (Airflow 3.2 would
            # fail building the row; 3.3 skips it too).
            log.info("%s for callback %s: %s", event, ti_key, extra)
            return
        super().log_task_event(event=event, extra=extra, ti_key=ti_key)
        # Airflow 3.3's scheduler saves these rows with bulk_save_objects over a generator that pops
        # them off the deque, so nothing else holds the ORM objects: they are collected mid-save and
        # the INSERT goes out without columns ("NOT NULL constraint failed: log.event"), losing the
        # event. Hold a reference until the scheduler has drained the deque (see sync()).
        if self._task_event_logs:
            self._pinned_event_logs.append(self._task_event_logs[-1])

    def _unpin_saved_event_logs(self) -> None:
        if self._pinned_event_logs:
            waiting = {id(row) for row in self._task_event_logs}
            self._pinned_event_logs = [row for row in self._pinned_event_logs if id(row) in waiting]

    # ------------------------------------------------------------ wiring
    @property
    def config(self) -> ExecutorConfig:
        if self._config is None:
            self._config = self._load_config()
        return self._config

    def _load_config(self) -> ExecutorConfig:
        """The section as this executor's team sees it (``self.conf``: Airflow's team-aware lookup)."""
        team = getattr(self, "team_name", None)
        return load_config(getattr(self, "conf", None), team=team)

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
            observer=self._observe_call,
        )

    @property
    def api(self) -> BatchApi:
        """The AWS layer used for status, terminate, health and logs calls (botocore retries on)."""
        if self._status_api is None:
            self._status_api = self._make_api(submit=False)
        return self._status_api

    def _observe_call(self, operation: str, seconds: float, kind: ErrorKind | None) -> None:
        try:
            stats = _stats()
            stats.timing(f"{METRIC_PREFIX}.api_latency.{operation}", seconds * 1000.0)
            if kind is ErrorKind.THROTTLED:
                stats.incr(f"{METRIC_PREFIX}.throttled")
        except Exception:
            log.debug("metrics failed", exc_info=True)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        unsupported = unsupported_version()
        if unsupported is None and getattr(self, "team_name", None) and not MULTI_TEAM:
            unsupported = f"Airflow {version_text()} has no multi-team executors (team {self.team_name!r})"
        if unsupported is not None:
            log.error("AwsBatchExecutor cannot start: %s", unsupported)
            raise RuntimeError(unsupported)
        try:
            config = self._load_config()
        except ConfigError as exc:
            log.error("AwsBatchExecutor%s cannot start: %s", _team_label(self), exc)
            raise
        if config.deployment_id is None:
            config = config.model_copy(update={"deployment_id": _derived_deployment_id()})
        self._config = config
        self._share_uses_pool = config.share_identifier is not None and "pool" in template_fields(
            config.share_identifier
        )
        self._array_min_size = config.array_min_size if config.workload_store else 0
        if not config.workload_store:
            log.warning("AwsBatchExecutor%s: %s", _team_label(self), NO_STORE_WARNING)
        store = self._store = self._open_store(config)
        if config.check_health_on_startup:
            from airflow_aws_batch.health import format_failures, run_checks

            items = run_checks(self.api, config, self._queue_kinds, self._definition_kinds)
            if store is not None:
                items.append(_probe_store(store))
            failures = [item for item in items if not item.ok and item.fatal]
            if failures:
                message = format_failures(config, failures)
                log.error("%s", message)
                raise HealthCheckFailed(message)
        self._core = Core(
            max_attempts=config.max_submit_job_attempts, clock=time.monotonic, backoff=self.backoff
        )
        self._stuck = StuckJobs(config.misconfiguration_grace_seconds)
        self._api = self._make_api(submit=True)
        # Build both clients now, on this thread: loading botocore's service model holds the GIL for
        # hundreds of milliseconds, which would otherwise land in the middle of a heartbeat.
        self._api.warm_up()
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
            self._api,
            status_api=self.api,
            submit_rate=config.submit_rate,
            status_calls_per_second=config.status_calls_per_second,
            submit_threads=SUBMIT_THREADS,
            poll_interval_s=self.poll_interval_s,
            start_checker=self.start_checker,
            running_checker=self.running_checker,
            prepare=self._prepare_request,
            store=store,
            moved_on_checker=self.moved_on_checker,
        )
        self._runtime = runtime
        runtime.start()
        # Jobs left by earlier schedulers whose try has moved on: nobody else would end them. Not at
        # once: Airflow adopts right after a restart, and the sweep's reads would take the status
        # budget that adoption's bounded reads need.
        self._schedule_sweep(SWEEP_AFTER_ADOPTION_S)
        self._next_sweep_at = time.monotonic() + self.sweep_interval_s
        self._exit_guard.install()
        log.info(
            "AwsBatchExecutor%s started: queue %s, definition %s, region %s, %s submits/s, %s status calls/s",
            _team_label(self),
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

    def _prepare_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """On a submit thread: what the builder left for the queue's kind (see ``fairshare``) and the
        job definition's kind (see ``eks``) applied, and the task's own job definition derived, found
        or registered (see ``jobdefs``)."""
        request = self._queue_kinds.resolve(request, self._read_queue_kind)
        if EKS_PENDING_KEY in request:
            info = self._definition_kinds.ensure(str(request["jobDefinition"]), self._read_definition_kind)
            request = finish_request(request, info)
        return self._job_definitions.resolve(request, self.config.allowed_job_definition_overrides)

    @property
    def job_definitions(self) -> JobDefinitions:
        """The job definitions derived for tasks so far (name -> ARN in ``known()``)."""
        return self._job_definitions

    def _status_budget(self, operation: str = "job_definitions") -> None:
        """Take one status call from the budget (submit threads only); raise when none comes soon."""
        runtime = self._runtime
        if runtime is None or not runtime.status_limiter.acquire(timeout=30.0):
            raise BatchApiError(ErrorKind.AMBIGUOUS, "Busy", "no status call available", operation)

    def _read_definition_kind(self, job_definition: str) -> DefinitionInfo | None:
        """DescribeJobDefinitions for one definition, within the status-call budget (submit threads only)."""
        self._status_budget("describe_job_definitions")
        definition = self.api.describe_job_definition(job_definition)
        return definition.info if definition is not None else None

    def _read_queue_kind(self, job_queue: str) -> tuple[QueueKind, tuple[str, ...]] | None:
        """DescribeJobQueues for one queue, within the status-call budget (submit threads only)."""
        runtime = self._runtime
        if runtime is None or not runtime.status_limiter.acquire(timeout=30.0):
            raise BatchApiError(
                ErrorKind.AMBIGUOUS, "Busy", "no status call available", "describe_job_queues"
            )
        queue = self.api.describe_job_queue(job_queue)
        if queue is None:
            return None
        kind = QueueKind.FAIR_SHARE if queue.scheduling_policy_arn else QueueKind.FIFO
        return kind, (queue.name, queue.arn)

    @property
    def runtime(self) -> Runtime | None:
        """The I/O threads, from ``start()`` until ``end()`` or ``terminate()``; None otherwise."""
        return self._runtime

    @property
    def core(self) -> Core:
        if self._core is None:
            raise RuntimeError("AwsBatchExecutor.start() was not called")
        return self._core

    # ------------------------------------------------------------ queueing
    def queue_workload(self, workload: Any, session: Any) -> None:
        super().queue_workload(workload, session)
        if not self._share_uses_pool or session is None:
            return
        if is_task(workload):
            try:
                self._pools[workload.ti.key] = _task_pool(session, workload.ti)
            except Exception:
                # The share then reads "default" for the pool; queueing the task must not fail.
                log.warning("Could not read the pool of %s", workload.ti.key, exc_info=True)

    def heartbeat(self) -> None:
        self._exit_guard.redeliver()
        runtime = self._runtime
        if runtime is None:
            super().heartbeat()
            return
        # Our threads start no new work meanwhile: they need the GIL too, and the scheduler's loop
        # waits for the heartbeat. Python's automatic collections wait too: a full one walks every
        # object not frozen at start (100 ms and more with a burst's thousands of requests tracked)
        # and would land in whichever heartbeat allocates past the threshold. Held off for these
        # milliseconds, it runs at the next allocation after them, usually on one of our threads
        # between heartbeats.
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        runtime.hold()
        self._heartbeat_started = time.perf_counter()
        try:
            super().heartbeat()
        finally:
            self._heartbeat_started = None
            runtime.release()
            if collecting:
                gc.enable()

    def _process_workloads(self, workload_items: Sequence[Any]) -> None:
        runtime = self._runtime
        now = time.perf_counter()
        deadline = max((self._heartbeat_started or now) + ACCEPT_BUDGET_S, now + ACCEPT_MIN_S)
        inline = runtime is None or (self._building == 0 and len(workload_items) <= INLINE_ACCEPT)
        handed: list[tuple[Any, int, Any]] = []
        core = self._core
        for workload in workload_items:
            if handed and time.perf_counter() > deadline:
                break  # the rest stays queued for the next heartbeat
            key = workload_key(workload)
            if is_task(workload):
                self.queued_tasks.pop(key, None)
            else:
                self.queued_callbacks.pop(key, None)
            self.running.add(key)
            self._intake_seq += 1
            seq = self._intake[key] = self._intake_seq
            # A key the core still tracks (queued again) is replaced at once, as the core always did.
            if inline or (core is not None and key in core):
                self._take_accepted(self._accept(key, seq, workload))
            else:
                handed.append((key, seq, workload))
        if handed and runtime is not None:
            self._building += len(handed)
            runtime.intake(handed, self._accept)

    def _accept(self, key: Any, seq: int, workload: Any) -> Accepted:
        """The request of ``workload`` (on the intake thread, or inline for a few)."""
        task = is_task(workload)
        if not task and not RUNS_CALLBACKS:
            return Accepted(key, seq, error=callback_refusal(), event="aws_batch_callback_unsupported")
        try:
            request = self._build_request(workload)
        except ExecConfigError as exc:
            message = f"Bad executor_config, task not submitted: {exc}"
            return Accepted(key, seq, error=message, event="aws_batch_bad_executor_config")
        except Exception as exc:
            message = f"Could not build the SubmitJob request: {exc}"
            log.exception("%s (%s)", message, key)
            return Accepted(key, seq, error=message, event="aws_batch_submit_failed")
        log_path = getattr(workload, "log_path", None)
        # Only a task instance can be checked for "did Airflow see it start"; callbacks cannot.
        ti = workload.ti if task else None
        waiting = request.get(WORKLOADS_KEY)
        group = None
        if self._array_min_size > 0 and isinstance(waiting, list) and len(waiting) == 1:
            group = group_key(request, WORKLOADS_KEY)
        return Accepted(
            key,
            seq,
            request,
            log_path=str(log_path) if log_path else None,
            ti_id=_uuid_bytes(ti.id) if ti is not None else None,
            try_number=ti.try_number if ti is not None else 0,
            expires_at=_monotonic_deadline(token_expires_at(str(getattr(workload, "token", "") or ""))),
            group=group,
        )

    def _take_accepted(self, result: Accepted) -> None:
        key = result.key
        if self._intake.get(key) != result.seq:
            return  # revoked, failed by Airflow or queued again while it was being built
        del self._intake[key]
        if result.request is None:
            self.log_task_event(event=result.event, extra=result.error, ti_key=key)
            self.fail(key, result.error)
            return
        self.core.add(
            key,
            result.request,
            log_path=result.log_path,
            ti_id=result.ti_id,
            try_number=result.try_number,
            expires_at=result.expires_at,
        )
        if result.group is not None:
            self._group_keys[key] = result.group

    def _build_request(self, workload: Any) -> dict[str, Any]:
        config = self.config
        if is_task(workload):
            ti = workload.ti
            fields: dict[str, Any] = {
                "dag_id": ti.dag_id,
                "task_id": ti.task_id,
                "run_id": ti.run_id,
                "try_number": ti.try_number,
                "map_index": ti.map_index,
                "queue": ti.queue,
                "executor_config": ti.executor_config,
                "priority_weight": ti.priority_weight,
                # Only filled in when the share template uses {pool}: the key is not free to build.
                "pool": self._pools.pop(ti.key, None) if self._pools else None,
                "team": config.team,
                "queue_kind": self._queue_kinds.get,
                "definition_kind": self._definition_kinds.get,
            }
            if config.workload_store:
                # The token stays out of the request: the submit thread writes the workload to the
                # store. The command is then the same for every task, and map indexes share a template.
                return self._templates.build(config, stored_workloads=[workload.model_dump_json()], **fields)
            return build_submit_job_request(config, command=workload_command(workload), **fields)
        stored: list[str] | None = None
        if config.workload_store:
            command = stored_workload_command()
            stored = [workload.model_dump_json()]
        else:
            command = workload_command(workload)
        callback = workload.callback
        data = callback.data or {}
        return build_callback_submit_job_request(
            config,
            command=command,
            callback_id=str(callback.id),
            callback_path=data.get("path"),
            dag_id=data.get("dag_id"),
            run_id=data.get("run_id"),
            team=config.team,
            queue_kind=self._queue_kinds.get,
            definition_kind=self._definition_kinds.get,
            stored_workloads=stored,
        )

    # ------------------------------------------------------------ the loop
    @property
    def slots_available(self) -> int:
        """Free slots, counting the jobs the poller has already seen end.

        The scheduler asks this before its critical section, a step before it heartbeats the executors.
        Taking in what the poller found (on the scheduler thread, exactly as ``sync()`` does) frees the
        slots of finished jobs in this scheduler loop. Otherwise the scheduler learns of them only in the
        heartbeat after its critical section, queues nothing in that loop and, since Airflow counts events
        it has fully handled as no work, sleeps ``[scheduler] scheduler_idle_sleep_time`` (1 s) before it
        fills the slots.
        """
        self._take_in_results()
        free: int = super().slots_available
        return free

    @property
    def slots_occupied(self) -> int:
        """Occupied slots, not counting the jobs the poller has already seen end (see ``slots_available``)."""
        self._take_in_results()
        occupied: int = super().slots_occupied
        return occupied

    def _take_in_results(self) -> None:
        try:
            self._apply_results(time.perf_counter() + SLOTS_BUDGET_S, ACCEPTED_PER_ROUND)
            # What the results produced (e.g. tracking for jobs just submitted): queues only, no I/O.
            # Due submits are left to sync(): the scheduler reads the slot counts several times a loop.
            self._dispatch(max_submits=0)
        except Exception:
            log.exception("AwsBatchExecutor could not take in results; the next heartbeat will")

    def sync(self) -> None:
        # Runs on the scheduler thread: no network I/O, and nothing may escape.
        try:
            self._unpin_saved_event_logs()
            now = time.perf_counter()
            deadline = max((self._heartbeat_started or now) + HEARTBEAT_BUDGET_S, now + SYNC_MIN_S)
            more = True
            while more and time.perf_counter() < deadline:
                more = self._apply_results(deadline, ACCEPTED_PER_ROUND)
                self._dispatch()
            if not more:
                # While a burst is being taken in, only in what is left of the heartbeat's budget.
                busy = bool(self._building or self.queued_tasks)
                until = time.perf_counter() + COMPACT_BUDGET_S
                self._compact(min(until, deadline) if busy else until)
            self._emit_metrics_now()
            if self._lost:
                self._look_up_lost()
            if time.monotonic() >= self._next_sweep_at:
                self._next_sweep_at = time.monotonic() + self.sweep_interval_s
                if not self._sweeps_waiting:
                    self._schedule_sweep(0.0)
        except Exception:
            log.exception("AwsBatchExecutor.sync failed; it will try again on the next heartbeat")

    def _apply_results(self, deadline: float | None = None, accepted: int | None = None) -> bool:
        """Take in the threads' results until ``deadline`` (``perf_counter``) or ``accepted`` built
        requests, if given; whether some are left."""
        if self._runtime is None:
            return False
        core = self.core
        results = self._runtime.results
        submitted = failures = 0
        more = False
        while True:
            if (deadline is not None and time.perf_counter() > deadline) or accepted == 0:
                more = not results.empty()
                break
            try:
                result = results.get_nowait()
            except queue.Empty:
                break
            if isinstance(result, SubmitDone):
                reports = core.submit_result(
                    result.key,
                    result.outcome,
                    job_id=result.job_id,
                    reason=result.reason,
                    sent_at_ms=result.sent_at_ms,
                    found=result.found,
                    wait_s=result.wait_s,
                )
                if result.outcome is SubmitOutcome.OK and not result.found:
                    submitted += 1
                elif result.outcome in (SubmitOutcome.FAILED, SubmitOutcome.AMBIGUOUS):
                    failures += 1
                self._report(reports)
            elif isinstance(result, JobsSeen):
                now = time.monotonic()
                for view in result.views:
                    self._stuck.seen(view.job_id, view.status, view.status_reason, now)
                    self._report(core.job_seen(view))
            elif isinstance(result, JobsMissing):
                for job_id in result.job_ids:
                    self._report(core.job_missing(job_id))
            elif isinstance(result, StartChecked):
                self._report(core.start_checked(result.key, result.seen, result.winner))
            elif isinstance(result, AdoptedSeen):
                self._verify_adopted(result)
            elif isinstance(result, LostResolved):
                self._take_lost_resolved(result)
            elif isinstance(result, Accepted):
                self._building -= 1
                self._take_accepted(result)
                if accepted is not None:
                    accepted -= 1
        self._count_submits(submitted, failures)
        self._fail_stuck_jobs()
        return more

    def _fail_stuck_jobs(self) -> None:
        """Tasks whose job waited in RUNNABLE with a MISCONFIGURATION reason past the grace fail now."""
        if not len(self._stuck):
            return
        for stuck in self._stuck.due(time.monotonic()):
            self._report(self.core.give_up(stuck.job_id, stuck_reason(stuck)))

    def _compact(self, deadline: float) -> None:
        """Pack the requests the core still keeps as given, until ``deadline`` (``perf_counter``)."""
        core = self.core
        while time.perf_counter() < deadline and core.compact(COMPACT_STEP):
            pass

    @staticmethod
    def _count_submits(submitted: int, failures: int) -> None:
        # Once per heartbeat, not per result: an array's answer is thousands of results.
        try:
            if submitted:
                _stats().incr(f"{METRIC_PREFIX}.submitted", submitted)
            if failures:
                _stats().incr(f"{METRIC_PREFIX}.submit_failures", failures)
        except Exception:
            log.debug("metrics failed", exc_info=True)

    def _dispatch(self, max_submits: int | None = None) -> None:
        """Hand the core's commands to the worker threads; ``max_submits`` bounds the due submits taken
        (0: only what earlier results produced)."""
        if self._runtime is None:
            return
        runtime = self._runtime
        core = self.core
        submits: list[Submit] = []
        for cmd in core.commands(max_submits):
            if isinstance(cmd, Submit):
                submits.append(cmd)
            elif isinstance(cmd, Terminate | TerminateLookup):
                runtime.terminate(cmd)
            elif isinstance(cmd, Track | Untrack):
                runtime.track(cmd)
            elif isinstance(cmd, CheckStarted):
                runtime.check_started(cmd)
        held, self._held = self._held, []
        if not submits and not held:
            return
        now = time.monotonic()
        since = {id(submit): at for submit, at in held}
        groups = self._group_keys
        # Only first attempts become array children: a child that failed goes out again alone.
        arrays, singles = group_submits(
            [submit for submit, _ in held] + submits,
            min_size=self._array_min_size,
            workloads_key=WORKLOADS_KEY,
            eligible=lambda s: core.attempts(s.key) == 0,
            key_of=lambda s: groups.get(s.key),
        )
        for array in arrays:
            runtime.submit(array)
        for submit in singles:
            at = since.get(id(submit), now)
            if self._may_join_an_array(submit) and now - at < self.array_hold_s:
                self._held.append((submit, at))
            else:
                runtime.submit(submit)
        # Kept only for what may still join an array; the rest is computed again if ever needed.
        self._group_keys = {s.key: groups[s.key] for s, _ in self._held if s.key in groups}

    def _may_join_an_array(self, submit: Submit) -> bool:
        """Could ``submit`` still become an array child if more tasks like it came?"""
        return (
            self._array_min_size > 0
            and submit.lookup_after_ms is None
            and isinstance(submit.request.get(WORKLOADS_KEY), list)
            and self.core.attempts(submit.key) == 0
        )

    def _release_held(self) -> None:
        """Held submits go back to the core as not sent (the executor is stopping)."""
        held, self._held = self._held, []
        if self._runtime is not None:
            for submit, _ in held:
                self._runtime.report(SubmitDone(submit.key, SubmitOutcome.WAIT, reason="executor stopping"))

    def _report(self, reports: list[Report]) -> None:
        for report in reports:
            key: Any = report.key
            if isinstance(report, RunningState):
                self.running_state(key, report.job_id)
            elif isinstance(report, Success):
                if report.moved_on:
                    # The slot is freed; no event, which Airflow would read as the task killed.
                    self.running.discard(key)
                    self.log_task_event(
                        event="aws_batch_success_not_reported",
                        extra=f"Batch job {report.job_id} SUCCEEDED after Airflow moved this try on to its "
                        "next run (reschedule or deferral); the executor reports no state for it",
                        ti_key=key,
                    )
                else:
                    self.success(key, report.job_id)
            elif isinstance(report, Fail):
                self.fail(key, report.reason)
                if report.job_id and self._runtime is not None:
                    chore = functools.partial(
                        record_failure,
                        self.api,
                        report.job_id,
                        report.log_path,
                        report.reason,
                        _count_failure,
                    )
                    self._runtime.run_later(chore)
            elif isinstance(report, TaskEvent):
                self.log_task_event(event=report.event, extra=report.extra, ti_key=key)

    def _emit_metrics_now(self) -> None:
        if self._core is None:
            return
        counts = self._core.counts()
        try:
            stats = _stats()
            stats.gauge(f"{METRIC_PREFIX}.pending", counts.pending + counts.submitting + counts.checking)
            stats.gauge(f"{METRIC_PREFIX}.queued_in_batch", counts.submitted)
            stats.gauge(f"{METRIC_PREFIX}.running", counts.running)
        except Exception:
            log.debug("metrics failed", exc_info=True)

    # ------------------------------------------------------------ adoption, revoke, stop
    def try_adopt_task_instances(self, tis: Sequence[Any]) -> Sequence[Any]:
        """Adopt each task instance's Batch job of its current try; hand back the others.

        An ``external_executor_id`` may name an earlier try's job, or the job of an earlier queueing of
        this try (Airflow keeps it when it queues a task again: retry, deferral resume, reschedule
        poke), so a job is adopted by it only when its tags name this try, it was created after the
        task instance's ``queued_dttm`` and it was not terminated or cancelled. A task instance whose id is
        missing or stale gets its job looked up by our tags among the active jobs, since a scheduler
        may have died between SubmitJob and Airflow saving the id. What is handed back, Airflow
        resets and runs as its next try; stale and duplicate jobs are terminated.

        The scheduler thread waits at most ``ADOPT_BOUND_S`` for Batch, plus the bookkeeping. What was
        not read by then is adopted unconfirmed and verified off this thread: a task instance with a
        saved id is never handed back for want of time (Airflow would reset it and its running task
        would run again). Only one without a saved id and not found in time is.
        """
        if self._core is None or self._runtime is None or not tis:
            return list(tis)
        try:
            plan = self._plan_within_bound(tis)
        except Exception:
            # A bug here must not take the scheduler down: what is handed back runs again as its next try.
            log.exception("Adoption failed; handing %d task instance(s) back to Airflow", len(tis))
            self._schedule_sweep(SWEEP_AFTER_ADOPTION_S)
            return list(tis)
        for ti in tis:
            job_id = plan.adopt.get(ti.key)
            if job_id is None:
                self._adopt_unconfirmed(ti, plan)
                continue
            detail = plan.details.get(ti.key)
            ti_id = getattr(ti, "id", None)
            if detail is None:
                self.core.adopt(ti.key, job_id)
            else:
                self.core.adopt(
                    ti.key,
                    job_id,
                    request=resubmit_request(detail),
                    started=bool(detail.started_at) or detail.status == "RUNNING",
                    ti_id=ti_id,
                    try_number=int(ti.try_number),
                    expires_at=_monotonic_deadline(workload_expires_at(detail)),
                )
            self.running.add(ti.key)
            if ti.key in plan.found:
                # Found by its tags: Airflow has not saved this id (or holds a stale one).
                self.running_state(ti.key, job_id)
                self.log_task_event(
                    event="aws_batch_job_adopted",
                    extra=f"Batch job {job_id} of this try found by its tags and adopted",
                    ti_key=ti.key,
                )
        for cmd in plan.terminate:
            self._runtime.terminate(cmd)
        if plan.unconfirmed or plan.lookup:
            log.warning(
                "Adopted %d task instance(s) whose Batch job could not be read within %.0f s; they are "
                "verified in the background (%d by their saved id, %d by their tags)",
                len(plan.unconfirmed) + len(plan.lookup),
                ADOPT_BOUND_S,
                len(plan.unconfirmed),
                len(plan.lookup),
            )
        self._look_up_lost()
        self._dispatch(max_submits=0)
        self._schedule_sweep(SWEEP_AFTER_ADOPTION_S)
        return plan.not_adopted

    def _plan_within_bound(self, tis: Sequence[Any]) -> AdoptionPlan:
        """:func:`plan_adoption` with ``provisional``, read on a thread of its own that the scheduler
        thread waits for ``ADOPT_BOUND_S`` at most: no call starts after ``ADOPT_BUDGET_S``, and a call
        still unanswered at the bound is not waited for (its answer is dropped). Then every task
        instance with a saved id is adopted unconfirmed (:func:`provisional_plan`)."""
        config = self.config
        runtime = self._runtime
        assert runtime is not None
        began = time.monotonic()
        before_call = deadline_limiter(
            lambda timeout: runtime.status_limiter.acquire(timeout=timeout), began + ADOPT_BUDGET_S
        )
        answer: list[AdoptionPlan | BaseException] = []

        def read() -> None:
            try:
                answer.append(
                    plan_adoption(
                        self.api,
                        tis,
                        queues=self._job_queues(),
                        deployment=str(config.deployment_id),
                        team=config.team,
                        before_call=before_call,
                        store=self._store,
                        provisional=True,
                    )
                )
            except BaseException as exc:  # handed to the waiting thread
                answer.append(exc)

        reader = threading.Thread(target=read, name="aws-batch-adopt", daemon=True)
        reader.start()
        reader.join(max(0.0, began + ADOPT_BOUND_S - time.monotonic()))
        if not answer:
            log.warning(
                "AWS Batch did not answer within %.0f s: adopting the %d task instance(s) with a saved "
                "job id unconfirmed",
                ADOPT_BOUND_S,
                sum(1 for ti in tis if ti.external_executor_id),
            )
            return provisional_plan(tis)
        found = answer[0]
        if isinstance(found, (BatchApiError, OutOfBudget)):
            log.warning("Could not read AWS Batch to adopt (%s): adopting unconfirmed", found)
            return provisional_plan(tis)
        if isinstance(found, BaseException):
            raise found
        return found

    def _adopt_unconfirmed(self, ti: Any, plan: AdoptionPlan) -> None:
        """Adopt ``ti`` if the plan left its job to be verified or looked up later (see ``Awaited``)."""
        job_id = plan.unconfirmed.get(ti.key)
        if job_id is None and ti.key not in plan.lookup:
            return
        ti_id = getattr(ti, "id", None)
        awaited = Awaited(
            key=ti.key,
            wanted=try_id(ti),
            queued_ms=queued_at_ms(ti),
            ti_id=str(ti_id) if ti_id is not None else None,
            queued=_state_name(getattr(ti, "state", None)) == "queued",
            saved=plan.lookup.get(ti.key),
        )
        if job_id is not None:
            self.core.adopt(
                ti.key,
                job_id,
                started=False,
                ti_id=ti_id,
                try_number=int(ti.try_number),
                unconfirmed=True,
            )
            self._unconfirmed[job_id] = awaited
        else:
            self._lost[ti.key] = awaited
        self.running.add(ti.key)

    def _verify_adopted(self, result: AdoptedSeen) -> None:
        """The first description of jobs adopted unconfirmed: the poller's, at the status budget."""
        config = self.config
        deployment = str(config.deployment_id)
        core = self.core
        for detail, view in result.seen:
            awaited = self._unconfirmed.pop(detail.job_id, None)
            if awaited is None or core.job_id(awaited.key) != detail.job_id:
                continue  # revoked or finished meanwhile
            verdict = check_saved(detail, awaited.wanted, awaited.queued_ms, deployment, config.team)
            if verdict is Saved.CONFIRMED:
                core.confirm_adopted(
                    awaited.key,
                    detail.job_id,
                    request=resubmit_request(detail),
                    expires_at=_monotonic_deadline(workload_expires_at(detail)),
                )
                self._report(core.job_seen(view))
                continue
            core.release(awaited.key)
            stale = stale_job_terminate(detail, awaited.wanted, deployment, config.team)
            if stale is not None and self._runtime is not None:
                self._runtime.terminate(stale)
            log.info(
                "Adopted Batch job %s is not the current submission of %s (%s): looking it up by tags",
                detail.job_id,
                awaited.key,
                verdict.value,
            )
            self._lost[awaited.key] = dataclasses.replace(awaited, saved=detail)
        for job_id in result.missing:
            awaited = self._unconfirmed.pop(job_id, None)
            if awaited is None or core.job_id(awaited.key) != job_id:
                continue
            core.release(awaited.key)
            self._lost[awaited.key] = awaited
        self._look_up_lost()
        self._dispatch(max_submits=0)

    def _look_up_lost(self) -> None:
        """Look up, on the terminator thread and at the status budget, the jobs of the task
        instances waiting in ``_lost``: one listing of the active jobs for all of them."""
        runtime = self._runtime
        if (
            runtime is None
            or not self._lost
            or self._lost_lookup_waiting
            or time.monotonic() < self._lost_retry_at
        ):
            return
        self._lost_lookup_waiting = True
        config = self.config
        api = self.api
        queues = self._job_queues()
        store = self._store
        lost = list(self._lost.values())

        def chore() -> None:
            before_call = deadline_limiter(
                lambda timeout: runtime.status_limiter.acquire(timeout=timeout),
                time.monotonic() + SWEEP_BUDGET_S,
            )
            deployment = str(config.deployment_id)
            try:
                active = active_jobs(api, queues, before_call)
                children = find_array_children(
                    api,
                    store,
                    active.values(),
                    {awaited.wanted: awaited.queued_ms for awaited in lost},
                    deployment=deployment,
                    team=config.team,
                    before_call=before_call,
                )
            except (BatchApiError, OutOfBudget) as exc:
                runtime.report(LostResolved(lost, None, str(exc)))
                return
            resolution = resolve_lost(
                active, lost, deployment=deployment, team=config.team, now_s=time.time(), children=children
            )
            self._rebuild_queued(lost, resolution)
            runtime.report(LostResolved(lost, resolution, ""))

        runtime.run_later(chore)

    def _rebuild_queued(self, lost: Sequence[Awaited], resolution: Resolution) -> None:
        """On the terminator thread: a new workload, instead of a failure, for each task instance left
        to fail that Airflow still has QUEUED on its try (no job of this queueing exists and none ran
        it: the scheduler died between queueing it and submitting its job, and the saved job was an
        earlier queueing's whose request cannot be sent again)."""
        for awaited in lost:
            if awaited.key not in resolution.fail or not awaited.queued or not awaited.ti_id:
                continue
            try:
                workload = self.workload_rebuilder(awaited.ti_id, awaited.wanted.try_number, self)
            except Exception:
                log.warning(
                    "Could not build a new workload for %s from Airflow's DB; it fails instead",
                    awaited.key,
                    exc_info=True,
                )
                continue
            if workload is not None:
                resolution.rebuilt[awaited.key] = workload
                del resolution.fail[awaited.key]

    def _take_lost_resolved(self, result: LostResolved) -> None:
        self._lost_lookup_waiting = False
        resolution = result.resolution
        if resolution is None:
            # Nothing is decided on a guess: the task instances stay adopted until a lookup works.
            log.warning(
                "Could not look up %d adopted task instance(s) by their tags (%s); trying again in %.0f s",
                len(result.lost),
                result.error,
                LOST_LOOKUP_RETRY_S,
            )
            self._lost_retry_at = time.monotonic() + LOST_LOOKUP_RETRY_S
            return
        core = self.core
        for awaited in result.lost:
            key = awaited.key
            if self._lost.get(key) is not awaited:
                continue  # revoked since
            del self._lost[key]
            if key in core:
                continue  # queued again since: the new workload is the one to run
            found = resolution.found.get(key) or resolution.unstarted.get(key)
            if found is not None:
                core.adopt(
                    key,
                    found.job_id,
                    request=resubmit_request(found),
                    started=bool(found.started_at) or found.status == "RUNNING",
                    ti_id=awaited.ti_id,
                    try_number=awaited.wanted.try_number,
                    expires_at=_monotonic_deadline(workload_expires_at(found)),
                )
                self.running_state(key, found.job_id)
                self.log_task_event(
                    event="aws_batch_job_adopted",
                    extra=f"Batch job {found.job_id} of this try found by its tags and adopted",
                    ti_key=key,
                )
            elif key in resolution.resubmit:
                request, expires = resolution.resubmit[key]
                core.add(
                    key,
                    request,
                    ti_id=awaited.ti_id,
                    try_number=awaited.wanted.try_number,
                    expires_at=_monotonic_deadline(expires),
                )
                self.log_task_event(
                    event="aws_batch_adopted_resubmitted",
                    extra="No job of this queueing was found after a scheduler restart: the request of "
                    f"its earlier queueing's job {awaited.saved.job_id if awaited.saved else ''} is sent "
                    "again",
                    ti_key=key,
                )
            elif key in resolution.rebuilt:
                self.log_task_event(
                    event="aws_batch_adopted_requeued",
                    extra="No job of this queueing was found after a scheduler restart and the task "
                    "instance is still queued (nothing ran it): it is submitted with a new workload",
                    ti_key=key,
                )
                self._process_workloads([resolution.rebuilt[key]])
            else:
                reason = resolution.fail.get(key, "After a scheduler restart, no Batch job was found")
                self._report([TaskEvent(key, "aws_batch_task_failed", reason), Fail(key, reason)])
        if self._runtime is not None:
            for cmd in resolution.terminate:
                self._runtime.terminate(cmd)
        self._look_up_lost()  # those that joined after the listing was taken
        self._dispatch(max_submits=0)

    def _job_queues(self) -> list[str]:
        config = self.config
        return list(dict.fromkeys([config.job_queue, *config.queue_map.values()]))

    def _schedule_sweep(self, delay_s: float) -> None:
        """Terminate, on the terminator thread after ``delay_s``, jobs of ours no live try points at."""
        runtime, core = self._runtime, self._core
        if runtime is None or core is None:
            return
        config = self.config

        self._sweeps_waiting += 1

        def chore() -> None:
            self._sweeps_waiting -= 1
            before_call = deadline_limiter(
                lambda timeout: runtime.status_limiter.acquire(timeout=timeout),
                time.monotonic() + SWEEP_BUDGET_S,
            )
            try:
                commands = sweep(
                    self.api,
                    queues=self._job_queues(),
                    deployment=str(config.deployment_id),
                    tracked=core.tracks_job,
                    lookup=self.ti_lookup,
                    before_call=before_call,
                    suspects=self._sweep_suspects,
                    team=config.team,
                    store=self._store,
                )
            except (BatchApiError, OutOfBudget, LookupFailed) as exc:
                # The next adoption round sweeps again; nothing is terminated on a guess.
                log.warning("The sweep for orphaned Batch jobs could not finish: %s", exc)
                return
            for cmd in commands:
                log.warning("Terminating Batch job %s: %s", cmd.job_id, cmd.reason)
                runtime.terminate(cmd)

        if delay_s <= 0:
            runtime.run_later(chore)
            return
        timer = threading.Timer(delay_s, runtime.run_later, args=(chore,))
        timer.daemon = True
        self._sweep_timers = [t for t in self._sweep_timers if t.is_alive()] + [timer]
        timer.start()

    def change_state(self, key: Any, state: Any, info: Any = None, remove_running: bool = True) -> None:
        super().change_state(key, state, info, remove_running=remove_running)
        failed = _state_name(state) == "failed"
        if failed:
            # Failed by Airflow while its request was being built: no job may be submitted for it.
            self._intake.pop(key, None)
            self._lost.pop(key, None)
        # Our own failures forget the workload before reporting it, so a FAILED for a workload still
        # tracked comes from the scheduler: a task without heartbeats (a hung or lost container).
        # Nothing else would stop its job, which would keep running next to the retry.
        if failed and self._core is not None and key in self._core:
            self._unconfirmed.pop(self.core.job_id(key) or "", None)
            try:
                self.core.revoke(key, f"Airflow failed the task ({info or 'no heartbeat'})"[:1024])
                self._dispatch(max_submits=0)
            except Exception:
                log.exception("Could not terminate the job of %s", key)

    def revoke_task(self, *, ti: Any) -> None:
        """Terminate the task's job (asynchronously) and forget it; reports nothing to Airflow."""
        try:
            key = ti.key
            self.queued_tasks.pop(key, None)
            self.running.discard(key)
            self._intake.pop(key, None)  # not built yet: no job is ever submitted for it
            self._lost.pop(key, None)  # adopted, waiting for its lookup: nothing is decided for it
            if self._core is not None:
                self._unconfirmed.pop(self.core.job_id(key) or "", None)
                self.core.revoke(
                    key, f"Revoked by Airflow (task {key.dag_id}.{key.task_id} try {key.try_number})"
                )
                self._dispatch()
        except Exception:
            log.exception("revoke_task failed for %s", ti)

    def end(self, heartbeat_interval: float = END_POLL_S) -> None:
        """Hand over to the next scheduler instead of waiting for every job to finish.

        Stops submitting at once (what waits to be sent is dropped, never sent), waits at most
        ``END_SUBMIT_WAIT_S`` for SubmitJobs on the wire, then cancels the jobs whose ids Airflow never
        saved (their RunningState is still in the event buffer: the scheduler loop has stopped) and
        that have not started, as DescribeJobs says right then; CancelJob leaves a job that reached
        STARTING or RUNNING alone, so no task that started is killed. A started one is found by its
        tags and adopted by the next scheduler, as is every job whose id was saved.

        Bounded whatever Batch answers: ``END_SUBMIT_WAIT_S`` + ``END_CANCEL_S`` + the 2 s the
        threads get to stop, 17 s (the reads and cancels run on a thread the scheduler does not wait
        for past ``END_CANCEL_S``).
        """
        core = self._core
        if core is None:
            return
        runtime = self._runtime
        try:
            core.stop_submitting()
            # Not taken in yet: left for the next scheduler, which finds their tasks still queued.
            self._intake.clear()
            self._release_held()
            if runtime is not None:
                for cmd in runtime.stop_submitting():
                    for key in cmd.keys if isinstance(cmd, SubmitArray) else (cmd.key,):
                        runtime.report(SubmitDone(key, SubmitOutcome.WAIT, reason="executor stopping"))
            deadline = time.monotonic() + END_SUBMIT_WAIT_S
            self._apply_results()
            while core.in_flight() and time.monotonic() < deadline:
                time.sleep(0.05)
                self._apply_results()
            self._dispatch(max_submits=0)
            unsaved = [
                (key, str(info))
                for key, (state, info) in list(self.event_buffer.items())
                if info and _state_name(state) == "running" and core.job_id(key) == info
            ]
            to_end = [job_id for key, job_id in unsaved if not core.job_started(key)]
            if to_end and runtime is not None:
                self._cancel_unstarted(runtime, to_end, core.job_ids(), time.monotonic() + END_CANCEL_S)
            left = core.in_flight()
            if left:
                log.warning(
                    "%d SubmitJob call(s) still unanswered at shutdown; the next scheduler adopts their "
                    "jobs by their tags",
                    left,
                )
        finally:
            self._stop_runtime(timeout=2.0)

    def _cancel_unstarted(
        self, runtime: Runtime, job_ids: list[str], watched: list[str], deadline: float
    ) -> None:
        """CancelJob for those of ``job_ids`` that DescribeJobs says have not started, on a thread
        waited for until ``deadline`` (monotonic) at most."""
        reason = "Airflow scheduler stopped before it saved this job's id; the task is handed back"
        api = self.api

        def work() -> None:
            before_call = deadline_limiter(
                lambda timeout: runtime.status_limiter.acquire(timeout=timeout), deadline
            )
            try:
                details = describe_all(api, job_ids, before_call)
            except (BatchApiError, OutOfBudget) as exc:
                log.warning(
                    "Could not read the %d unsaved job(s) at shutdown (%s); the next scheduler's sweep "
                    "ends those whose tasks it hands back",
                    len(job_ids),
                    exc,
                )
                return
            unstarted = [
                Terminate(job_id, reason)
                for job_id in job_ids
                if (detail := details.get(job_id)) is not None and detail.status in CANCELLABLE_STATUSES
            ]
            cancelled = 0
            for cmd in _whole_arrays(unstarted, watched):
                if time.monotonic() >= deadline:
                    break
                try:
                    api.cancel_job(cmd.job_id, cmd.reason)
                    cancelled += 1
                except BatchApiError as exc:
                    log.info("CancelJob %s failed at shutdown: %s", cmd.job_id, exc)
            log.info(
                "Cancelled %d not yet started job(s) of the %d task(s) whose ids were not saved",
                cancelled,
                len(job_ids),
            )

        worker = threading.Thread(target=work, name="aws-batch-end", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            log.warning(
                "AWS Batch did not answer within %.0f s at shutdown: the jobs of unsaved ids that were "
                "not cancelled are ended by the next scheduler's sweep",
                END_CANCEL_S,
            )

    def terminate(self) -> None:
        """TerminateJob for every tracked job, then stop the threads."""
        if self._core is None:
            return
        self._held = []  # never sent: the core forgets them below
        self._intake.clear()
        reason = "Airflow scheduler terminated"
        commands = _whole_arrays(self._core.terminate_all(reason), None)
        runtime = self._runtime
        if runtime is not None:
            for cmd in commands:
                runtime.terminate_now(cmd, tries=2)
        self._stop_runtime()
        if runtime is not None:
            # SubmitJobs that were on the wire finish while stop() joins the threads: their jobs
            # exist, but the core forgot their tasks, so nothing else would terminate them.
            while True:
                try:
                    result = runtime.results.get_nowait()
                except queue.Empty:
                    break
                if isinstance(result, SubmitDone) and result.job_id:
                    runtime.terminate_now(Terminate(result.job_id, reason), tries=2)

    def _stop_runtime(self, timeout: float = 10.0) -> None:
        self._exit_guard.uninstall()
        for timer in self._sweep_timers:
            timer.cancel()
        self._sweep_timers = []
        if self._runtime is not None:
            self._runtime.stop(timeout=timeout)
            self._runtime = None

    # ------------------------------------------------------------ logs
    def get_task_log(self, ti: Any, try_number: int) -> tuple[list[str], list[str]]:
        """Lines of the CloudWatch stream(s) of the Batch job that ran ``try_number``; never raises.

        The job is ``ti.external_executor_id`` for the current try; for an older try it is found by
        name and tags (``try_number``) on the job queue.
        """
        from airflow_aws_batch.logs import read_task_log

        try:
            return read_task_log(self.api, self.config, ti, try_number)
        except Exception as exc:
            return [f"Could not read AWS Batch job logs: {exc}"], []

    @staticmethod
    def get_cli_commands() -> list[Any]:
        # Imported here: the scheduler imports this module and must not load the operator tooling.
        from airflow_aws_batch.ops.cli import get_cli_commands

        return get_cli_commands()


def _count_failure(cause: Cause) -> None:
    _stats().incr(f"{METRIC_PREFIX}.{FAILURE_METRIC}.{cause.value}")


def _state_name(state: Any) -> str:
    """A TaskInstanceState (a str enum) or a plain string, as its value: ``"failed"``, ``"running"``."""
    return str(getattr(state, "value", state))


def _whole_arrays(commands: list[Terminate], tracked: list[str] | None) -> list[Terminate]:
    """``commands`` with the children of one array replaced by one TerminateJob of the array, when
    every child of it still watched (``tracked``; None: every job was forgotten) is to be ended:
    one call instead of thousands. Batch ends only the unfinished children of a terminated array."""
    by_parent: dict[str, list[Terminate]] = {}
    out: list[Terminate] = []
    for cmd in commands:
        parent = parent_of(cmd.job_id)
        if parent is None:
            out.append(cmd)
        else:
            by_parent.setdefault(parent, []).append(cmd)
    if not by_parent:
        return out
    watched: dict[str, int] = {}
    for job_id in tracked or ():
        parent = parent_of(job_id)
        if parent is not None:
            watched[parent] = watched.get(parent, 0) + 1
    for parent, children in by_parent.items():
        if tracked is None or watched.get(parent, 0) <= len(children):
            out.append(Terminate(parent, children[0].reason))
        else:
            out.extend(children)
    return out


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


def _uuid_bytes(value: Any) -> bytes:
    return (value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))).bytes


def _task_pool(session: Any, ti: Any) -> str | None:
    """The pool of the task instance a workload names, from the scheduler's own session.

    Airflow 3.1-3.3 workloads carry ``pool_slots`` but not the pool. The scheduler queues a workload
    right after loading and updating its task instance in this session, so ``session.get`` finds the
    row in the session's identity map, normally without a query.
    """
    pool = getattr(ti, "pool", None)
    if pool:
        return str(pool)
    from airflow.models.taskinstance import TaskInstance

    row = session.get(TaskInstance, ti.id)
    return str(row.pool) if row is not None and row.pool else None


def _team_label(executor: Any) -> str:
    team = getattr(executor, "team_name", None)
    return f" (team {team!r})" if team else ""


def _monotonic_deadline(epoch_s: float | None) -> float | None:
    """An epoch time as a time of ``time.monotonic()``, the core's clock."""
    if epoch_s is None:
        return None
    return time.monotonic() + (epoch_s - time.time())


def _derived_deployment_id() -> str:
    from airflow.configuration import conf

    return derive_deployment_id(conf.get("database", "sql_alchemy_conn", fallback="") or "")
