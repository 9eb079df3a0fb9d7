"""``AwsBatchExecutor``: every Airflow task (and, on Airflow >= 3.3, every callback) as one AWS Batch job.

Written against one shape of Airflow: where 3.1, 3.2 and 3.3 differ, :mod:`airflow_aws_batch.compat`
decides (workload keys, callbacks, metrics).

The class is thin: :mod:`airflow_aws_batch.core` decides, :mod:`airflow_aws_batch.runtime` threads
do the AWS calls, and ``heartbeat()``/``sync()`` on the scheduler thread only move messages between
them and Airflow. No network call ever happens on the scheduler thread. Each concern has its room:
``wiring`` (the shared pieces and start-up), ``intake`` (workloads in, requests built), ``dispatch``
(commands out, arrays), ``results`` (what the threads did, taken in), ``reports`` (the core's reports
as Airflow events), ``adopt_desk`` (adoption), ``sweep`` (orphaned jobs), ``shutdown`` (``end`` and
``terminate``), ``event_logs`` (task event rows kept until saved) and ``metrics``.

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

import gc
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from airflow.executors.base_executor import BaseExecutor

from airflow_aws_batch.adopt_desk import AdoptDesk
from airflow_aws_batch.aws.batch import BatchApi
from airflow_aws_batch.config import ExecutorConfig
from airflow_aws_batch.core.messages import BackoffPolicy
from airflow_aws_batch.core.state import Core
from airflow_aws_batch.dispatch import Dispatcher
from airflow_aws_batch.event_logs import EventLogs
from airflow_aws_batch.intake import Intake
from airflow_aws_batch.jobdefs import JobDefinitions
from airflow_aws_batch.reports import Reporter
from airflow_aws_batch.results import Results
from airflow_aws_batch.runtime import Runtime
from airflow_aws_batch.shutdown import END_POLL_S, Shutdown
from airflow_aws_batch.started import (
    airflow_saw_task_start,
    rebuild_workload,
    task_instances_now,
    ti_running,
    tis_moved_on,
)
from airflow_aws_batch.sweep import Sweeps
from airflow_aws_batch.wiring import Wiring, state_name

log = logging.getLogger(__name__)


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
        self.wiring = Wiring(self)
        self.event_logs = EventLogs(lambda: self.task_event_logs)
        self.dispatcher = Dispatcher(self.wiring, self)
        self.intake = Intake(self.wiring, self, self.dispatcher)
        self.reporter = Reporter(self.wiring, self)
        self.sweeps = Sweeps(self.wiring, self)
        self.adoption_desk = AdoptDesk(
            self.wiring,
            self,
            reporter=self.reporter,
            dispatch=self.dispatcher,
            intake=self.intake,
            sweeps=self.sweeps,
        )
        self.results = Results(
            self.wiring,
            self,
            intake=self.intake,
            dispatch=self.dispatcher,
            reporter=self.reporter,
            desk=self.adoption_desk,
        )
        self.shutdown = Shutdown(
            self.wiring,
            self,
            intake=self.intake,
            dispatch=self.dispatcher,
            results=self.results,
            sweeps=self.sweeps,
        )

    # ------------------------------------------------------------ task event logs
    @property
    def task_event_logs(self) -> deque[Any]:
        """The task event log rows (Airflow's ``log`` table) the scheduler has yet to save."""
        waiting: deque[Any] = self._task_event_logs
        return waiting

    def log_task_event(self, *, event: str, extra: str, ti_key: Any) -> None:
        from airflow.models.taskinstancekey import TaskInstanceKey

        if not isinstance(ti_key, TaskInstanceKey):
            # A callback's key: the event log holds task instances' rows only (Airflow 3.2 would
            # fail building the row; 3.3 skips it too).
            log.info("%s for callback %s: %s", event, ti_key, extra)
            return
        super().log_task_event(event=event, extra=extra, ti_key=ti_key)
        # Held until the scheduler has saved it: Airflow 3.3 may lose it otherwise (see event_logs).
        self.event_logs.pin_latest()

    # ------------------------------------------------------------ wiring
    @property
    def config(self) -> ExecutorConfig:
        return self.wiring.config

    @property
    def api(self) -> BatchApi:
        """The AWS layer used for status, terminate, health and logs calls (botocore retries on)."""
        return self.wiring.api

    @property
    def job_definitions(self) -> JobDefinitions:
        """The job definitions derived for tasks so far (name -> ARN in ``known()``)."""
        return self.wiring.job_definitions

    @property
    def runtime(self) -> Runtime | None:
        """The I/O threads, from ``start()`` until ``end()`` or ``terminate()``; None otherwise."""
        return self.wiring.runtime

    @property
    def core(self) -> Core:
        return self.wiring.core

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.wiring.start(
            backoff=self.backoff,
            poll_interval_s=self.poll_interval_s,
            start_checker=self.start_checker,
            running_checker=self.running_checker,
            moved_on_checker=self.moved_on_checker,
        )
        self.sweeps.start()
        self.wiring.exit_guard.install()
        self.wiring.log_started()

    # ------------------------------------------------------------ queueing
    def queue_workload(self, workload: Any, session: Any) -> None:
        super().queue_workload(workload, session)
        self.intake.note_pool(workload, session)

    def heartbeat(self) -> None:
        self.wiring.exit_guard.redeliver()
        runtime = self.wiring.runtime
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
        self.intake.heartbeat_started = time.perf_counter()
        try:
            super().heartbeat()
        finally:
            self.intake.heartbeat_started = None
            runtime.release()
            if collecting:
                gc.enable()

    def _process_workloads(self, workload_items: Sequence[Any]) -> None:
        self.intake.process(workload_items)

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
        self.results.take_in()
        free: int = super().slots_available
        return free

    @property
    def slots_occupied(self) -> int:
        """Occupied slots, not counting the jobs the poller has already seen end (see ``slots_available``)."""
        self.results.take_in()
        occupied: int = super().slots_occupied
        return occupied

    def sync(self) -> None:
        # Runs on the scheduler thread: no network I/O, and nothing may escape.
        try:
            self.event_logs.unpin_saved()
            self.results.sync()
            if self.adoption_desk.lost:
                self.adoption_desk.look_up_lost()
            self.sweeps.sweep_if_due()
        except Exception:
            log.exception("AwsBatchExecutor.sync failed; it will try again on the next heartbeat")

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
        return self.adoption_desk.adopt(tis)

    def change_state(self, key: Any, state: Any, info: Any = None, remove_running: bool = True) -> None:
        super().change_state(key, state, info, remove_running=remove_running)
        if state_name(state) != "failed":
            return
        # Failed by Airflow while its request was being built: no job may be submitted for it.
        self.intake.forget(key)
        self.adoption_desk.forget(key)
        # Our own failures forget the workload before reporting it, so a FAILED for a workload still
        # tracked comes from the scheduler: a task without heartbeats (a hung or lost container).
        # Nothing else would stop its job, which would keep running next to the retry.
        core = self.wiring.started_core
        if core is not None and key in core:
            try:
                core.revoke(key, f"Airflow failed the task ({info or 'no heartbeat'})"[:1024])
                self.dispatcher.dispatch(max_submits=0)
            except Exception:
                log.exception("Could not terminate the job of %s", key)

    def revoke_task(self, *, ti: Any) -> None:
        """Terminate the task's job (asynchronously) and forget it; reports nothing to Airflow."""
        try:
            key = ti.key
            self.queued_tasks.pop(key, None)
            self.running.discard(key)
            self.intake.forget(key)  # not built yet: no job is ever submitted for it
            self.adoption_desk.forget(key)  # adopted, waiting for its lookup: nothing is decided for it
            core = self.wiring.started_core
            if core is not None:
                core.revoke(key, f"Revoked by Airflow (task {key.dag_id}.{key.task_id} try {key.try_number})")
                self.dispatcher.dispatch()
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
        self.shutdown.end()

    def terminate(self) -> None:
        """TerminateJob for every tracked job, then stop the threads."""
        self.shutdown.terminate()

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
