"""Shutdown: ``end()`` hands over to the next scheduler, ``terminate()`` ends every tracked job.

``end()`` (SIGTERM) stops submitting (what waits to be sent never is), waits a few seconds for
SubmitJobs on the wire, cancels the jobs whose ids Airflow never saved and that have not started, and
returns within a bound whatever Batch answers; running jobs keep running and the next scheduler adopts
them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from airflow_aws_batch.adoption import OutOfBudget, deadline_limiter, describe_all
from airflow_aws_batch.aws.batch import BatchApiError
from airflow_aws_batch.core.arrays import SubmitArray, parent_of
from airflow_aws_batch.core.messages import SubmitOutcome, Terminate
from airflow_aws_batch.dispatch import Dispatcher
from airflow_aws_batch.intake import Intake
from airflow_aws_batch.results import Results
from airflow_aws_batch.runtime import Runtime, SubmitDone
from airflow_aws_batch.sweep import Sweeps
from airflow_aws_batch.wiring import Airflow, Wiring, state_name

log = logging.getLogger(__name__)

END_POLL_S = 1.0
#: How long ``end()`` waits for SubmitJobs already on the wire: a call's answer, not a job's run.
END_SUBMIT_WAIT_S = 5.0
#: How long ``end()`` gives the DescribeJobs and CancelJob calls for the jobs whose ids were not saved.
END_CANCEL_S = 10.0
#: The statuses CancelJob ends a job in (it leaves STARTING and RUNNING alone).
CANCELLABLE_STATUSES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE"})


class Shutdown:
    """Stops the executor: hands over (``end``) or ends every job (``terminate``), then the threads."""

    def __init__(
        self,
        wiring: Wiring,
        airflow: Airflow,
        *,
        intake: Intake,
        dispatch: Dispatcher,
        results: Results,
        sweeps: Sweeps,
    ) -> None:
        self._wiring = wiring
        self._airflow = airflow
        self._intake = intake
        self._dispatch = dispatch
        self._results = results
        self._sweeps = sweeps

    def end(self) -> None:
        """``end()``: see ``AwsBatchExecutor.end``."""
        core = self._wiring.started_core
        if core is None:
            return
        runtime = self._wiring.runtime
        try:
            core.stop_submitting()
            # Not taken in yet: left for the next scheduler, which finds their tasks still queued.
            self._intake.clear()
            self._dispatch.release_held()
            if runtime is not None:
                for cmd in runtime.stop_submitting():
                    for key in cmd.keys if isinstance(cmd, SubmitArray) else (cmd.key,):
                        runtime.report(SubmitDone(key, SubmitOutcome.WAIT, reason="executor stopping"))
            deadline = time.monotonic() + END_SUBMIT_WAIT_S
            self._results.apply()
            while core.in_flight() and time.monotonic() < deadline:
                time.sleep(0.05)
                self._results.apply()
            self._dispatch.dispatch(max_submits=0)
            unsaved = [
                (key, str(info))
                for key, (state, info) in list(self._airflow.event_buffer.items())
                if info and state_name(state) == "running" and core.job_id(key) == info
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
            self.stop_runtime(timeout=2.0)

    def _cancel_unstarted(
        self, runtime: Runtime, job_ids: list[str], watched: list[str], deadline: float
    ) -> None:
        """CancelJob for those of ``job_ids`` that DescribeJobs says have not started, on a thread
        waited for until ``deadline`` (monotonic) at most."""
        reason = "Airflow scheduler stopped before it saved this job's id; the task is handed back"
        api = self._wiring.api

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
            for cmd in whole_arrays(unstarted, watched):
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
        core = self._wiring.started_core
        if core is None:
            return
        self._dispatch.drop_held()  # never sent: the core forgets them below
        self._intake.clear()
        reason = "Airflow scheduler terminated"
        commands = whole_arrays(core.terminate_all(reason), None)
        runtime = self._wiring.runtime
        if runtime is not None:
            for cmd in commands:
                runtime.terminate_now(cmd, tries=2)
        self.stop_runtime()
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

    def stop_runtime(self, timeout: float = 10.0) -> None:
        """Stop the threads and drop the sweeps not begun; jobs are left as they are."""
        self._wiring.exit_guard.uninstall()
        self._sweeps.cancel()
        runtime = self._wiring.runtime
        if runtime is not None:
            runtime.stop(timeout=timeout)
            self._wiring.runtime = None


def whole_arrays(commands: list[Terminate], tracked: list[str] | None) -> list[Terminate]:
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
