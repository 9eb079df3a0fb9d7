"""The runner: one asyncio loop moves every job through its states, no thread per job.

It applies the scheduling decisions (localbatch.scheduling), starts each attempt as a process
(localbatch.processes) or a simulated run (localbatch.simulation), and decides what a job becomes
when its attempt ends: retried, SUCCEEDED or FAILED.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localbatch import scheduling
from localbatch.backend import BatchBackend
from localbatch.faults import Faults
from localbatch.logs import LogsBackend
from localbatch.models import ACCOUNT_ID, Attempt, Job, JobStatus, now_ms
from localbatch.processes import Processes, kill_if_same
from localbatch.reasons import JOB_RESOURCE_MISCONFIGURATION, OVERRIDES_REASON, RESTART_REASON
from localbatch.simulation import Simulation
from localbatch.store import Store

# Jobs started between two chances for the event loop to serve requests.
SPAWN_BATCH = 50
log = logging.getLogger("localbatch.runner")


def _matches(pattern: str | None, value: str | None) -> bool:
    if pattern is None:
        return True
    return value is not None and fnmatch.fnmatchcase(value, pattern)


def retry_action(
    rules: list[dict[str, str]], status_reason: str | None, reason: str | None, exit_code: int | None
) -> str:
    """Batch's evaluateOnExit: the first rule whose given conditions all match decides; none -> RETRY."""
    code = None if exit_code is None else str(exit_code)
    for rule in rules:
        if (
            _matches(rule.get("onStatusReason"), status_reason)
            and _matches(rule.get("onReason"), reason)
            and _matches(rule.get("onExitCode"), code)
        ):
            return rule["action"].upper()
    return "RETRY"


class Runner:
    def __init__(
        self,
        store: Store,
        logs: LogsBackend,
        faults: Faults,
        data_dir: Path,
        *,
        pass_env: list[str],
        kill_grace_seconds: float = 30.0,
        preload: list[str] | None = None,
        sched_batch: bool = True,
        on_status: Callable[[Job], None] | None = None,
    ) -> None:
        # The Batch API's backend, built here so that it calls the runner when jobs change or are
        # terminated. ``on_status``: called as each job's status changes (its state change event).
        self.backend = backend = BatchBackend(
            store, faults, on_change=self.wake, on_terminate=self.terminate_running, on_status=on_status
        )
        self.logs = logs
        self.faults = faults
        workdir = data_dir / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        self.ledger = scheduling.Ledger()
        self.processes = Processes(
            backend,
            logs,
            faults,
            workdir,
            finish=self._finish,
            pass_env=pass_env,
            kill_grace_seconds=kill_grace_seconds,
            preload=preload,
            sched_batch=sched_batch,
        )
        self.simulation = Simulation(backend, logs, faults, finish=self._finish)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: RUNNABLE reasons not said yet (see FaultConfig.runnable_reason_delay_seconds):
        #: job id -> (when, on the loop's clock, and the reason).
        self._late_reasons: dict[str, tuple[float, str]] = {}

    def wake(self) -> None:
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.processes.bind(loop)
        self.simulation.bind(loop)
        orphans = self.backend.load()
        self.logs.load()
        for job in orphans:
            self._fail_orphan(job)
        self.release_holds()
        self._tasks = [
            asyncio.create_task(self._schedule_loop(), name="localbatch-scheduler"),
            asyncio.create_task(self._flush_loop(), name="localbatch-flush"),
        ]
        self.wake()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.processes.stop_all()
        self.simulation.stop_all()
        self.processes.close()
        self.backend.flush_dirty()

    def _fail_orphan(self, job: Job) -> None:
        kill_if_same(job.pid, job.pid_start_ticks)
        reason = RESTART_REASON.format(attempt=len(job.attempts))
        if job.attempts and job.attempts[-1].stopped_at is None:
            job.attempts[-1].stopped_at = now_ms()
            job.attempts[-1].status_reason = reason
        job.pid = None
        self.backend.set_status(job, JobStatus.FAILED, reason)
        self.backend.fail_dependents(job)

    def release_holds(self) -> None:
        """Jobs held in RUNNABLE by an earlier fault config run once the current one no longer holds them."""
        for job_id in [
            i
            for (_, status), ids in self.backend.by_queue_status.items()
            if status == JobStatus.RUNNABLE
            for i in ids
        ]:
            job = self.backend.jobs[job_id]
            if job.held_reason and not self.faults.still_held(job.job_name):
                job.held_reason = job.status_reason = None
                self.backend.touch(job)
        self.wake()

    def terminate_running(self, job: Job) -> None:
        """TerminateJob of a STARTING or RUNNING job (its stop reason is set): stop its attempt."""
        if not self.processes.terminate(job.job_id):
            self.simulation.terminate(job.job_id)

    def finish_simulated(self, job_ids: list[str], exit_code: int | None = None) -> list[Job]:
        return self.simulation.finish_now(job_ids, exit_code)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            try:
                self.backend.flush_dirty()
            except Exception:
                log.exception("writing job records failed")

    async def _schedule_loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()
            try:
                await self.schedule_pass()
            except Exception:  # one bad job must not stop scheduling for every other job
                log.exception("scheduler pass failed")

    # -- scheduling --------------------------------------------------------------------------------
    async def schedule_pass(self) -> None:
        backend = self.backend
        queues = scheduling.by_priority(backend.job_queues.values())
        for jq in queues:
            arn = jq["jobQueueArn"]
            for job_id in list(backend.jobs_in(arn, JobStatus.SUBMITTED)):
                backend.set_status(backend.jobs[job_id], JobStatus.PENDING)
            for job_id in list(backend.jobs_in(arn, JobStatus.PENDING)):
                job = backend.jobs[job_id]
                if job.status is not JobStatus.PENDING:
                    # Failed earlier in this pass as a dependent of a job whose dependency failed.
                    continue
                ready = scheduling.readiness(job, backend.jobs)
                if ready is scheduling.Readiness.DEPENDENCY_FAILED:
                    backend.set_status(job, JobStatus.FAILED, "Dependent Job failed")
                    backend.fail_dependents(job)
                elif ready is scheduling.Readiness.READY:
                    job.held_reason = self.faults.hold_reason(job.job_name)
                    backend.set_status(job, JobStatus.RUNNABLE, self._reason_now(job, job.held_reason))
        self._say_late_reasons()
        spawned = 0
        for placement in scheduling.placements(
            queues,
            backend.compute_environments,
            lambda queue_arn: backend.jobs_in(queue_arn, JobStatus.RUNNABLE),
            backend.jobs,
            self.ledger,
            active=lambda queue_arn: [
                *backend.jobs_in(queue_arn, JobStatus.STARTING),
                *backend.jobs_in(queue_arn, JobStatus.RUNNING),
            ],
            share_distribution=backend.share_distribution,
        ):
            job = placement.job
            if placement.too_large:
                said = job.status_reason == JOB_RESOURCE_MISCONFIGURATION or job.job_id in self._late_reasons
                if not said and self._reason_now(job, JOB_RESOURCE_MISCONFIGURATION) is not None:
                    job.status_reason = JOB_RESOURCE_MISCONFIGURATION
                    backend.touch(job)
                continue
            if placement.ce is not None:
                self._start(job, placement.queue, placement.ce)
                spawned += 1
            if spawned and spawned % SPAWN_BATCH == 0:
                # Let requests in between batches of process spawns.
                await asyncio.sleep(0)

    def _reason_now(self, job: Job, reason: str | None) -> str | None:
        """``reason`` when it is to be said at once; None when it comes later (or there is none)."""
        delay = self.faults.config.runnable_reason_delay_seconds
        if reason is None or delay <= 0:
            return reason
        self._late_reasons[job.job_id] = (asyncio.get_running_loop().time() + delay, reason)
        return None

    def _say_late_reasons(self) -> None:
        """Set the reasons whose delay has passed, on jobs still RUNNABLE and still held for them."""
        if not self._late_reasons:
            return
        now = asyncio.get_running_loop().time()
        for job_id, (when, reason) in list(self._late_reasons.items()):
            job = self.backend.jobs.get(job_id)
            if job is None or job.status is not JobStatus.RUNNABLE:
                del self._late_reasons[job_id]
            elif now >= when:
                del self._late_reasons[job_id]
                # A hold released meanwhile (faults changed) no longer has a reason to give.
                if reason in (job.held_reason, JOB_RESOURCE_MISCONFIGURATION):
                    job.status_reason = reason
                    self.backend.touch(job)

    # -- an attempt --------------------------------------------------------------------------------
    def _start(self, job: Job, jq: dict[str, Any], ce: dict[str, Any]) -> None:
        ce_name = ce["computeEnvironmentName"]
        region = ce["computeEnvironmentArn"].split(":")[3]
        task_id = uuid.uuid4().hex
        attempt = Attempt(
            task_id=task_id,
            log_stream=f"{job.job_definition_name}/default/{task_id}",
            task_arn=f"arn:aws:ecs:{region}:{ACCOUNT_ID}:task/{ce_name}_Batch/{task_id}",
            container_instance_arn=f"arn:aws:ecs:{region}:{ACCOUNT_ID}:container-instance/{ce_name}_Batch/localhost",
        )
        eks = ce.get("eksConfiguration")
        if job.eks_properties is not None:
            attempt.pod_name = f"aws-batch.{task_id}"
            attempt.node_name = f"localbatch-{ce_name}"
            attempt.pod_namespace = (eks or {}).get("kubernetesNamespace", "")
            attempt.eks_cluster_arn = (eks or {}).get("eksClusterArn", "")
        job.attempts.append(attempt)
        job.compute_environment = ce_name
        job.stop_kind = job.stop_reason = None
        self.ledger.reserve(ce_name, job)
        job.status_reason = None  # a RUNNABLE reason (capacity, earlier attempt) no longer applies
        self.backend.set_status(job, JobStatus.STARTING)
        fault = self.faults.start_fault(job.job_name)
        command = list(job.container.get("command") or [])
        if job.overrides_too_long:
            self._finish(job, None, None, OVERRIDES_REASON, retryable=False)
            return
        if fault is not None and fault.kind == "fail_before_start":
            reason = fault.reason or (
                "CannotPullContainerError: pull image manifest has been retried 5 time(s): "
                f"failed to resolve ref {job.container.get('image')}: not found"
            )
            self._finish(job, None, reason, reason)
            return
        simulate = self.faults.config.simulate
        if simulate is not None:
            self.simulation.start(job, attempt, simulate, fault)
            return
        if not command:
            reason = (
                "CannotStartContainerError: localbatch runs containerOverrides.command or the job "
                "definition's command, and this job has neither (image entrypoints are not emulated)"
            )
            self._finish(job, None, reason, reason)
            return
        self.processes.start(job, attempt, command, jq=jq, ce=ce, fault=fault)

    def _finish(
        self,
        job: Job,
        exit_code: int | None,
        reason: str | None,
        status_reason: str | None,
        retryable: bool = True,
    ) -> None:
        """The job's current attempt ended: record it, free its capacity, retry or finish the job."""
        backend = self.backend
        attempt = job.attempts[-1]
        attempt.stopped_at = now_ms()
        attempt.exit_code = exit_code
        attempt.reason = reason
        attempt.status_reason = status_reason
        job.pid = job.pid_start_ticks = None
        self.ledger.release(job.compute_environment, job)
        kind, job.stop_kind, job.stop_reason = job.stop_kind, None, None
        if kind in ("terminate", "timeout", "stopped"):
            # Terminated and timed-out attempts are not retried, as in AWS.
            status = JobStatus.FAILED
        elif exit_code == 0:
            status = JobStatus.SUCCEEDED
        elif (
            retryable
            and len(job.attempts) < job.retry_attempts
            and retry_action(job.evaluate_on_exit, status_reason, reason, exit_code) == "RETRY"
        ):
            job.held_reason = None
            status = JobStatus.RUNNABLE
        else:
            status = JobStatus.FAILED
        if status.is_final:
            # The job stopped when its last attempt did (set_status would stamp a later millisecond),
            # and its state change event, sent from set_status, says so.
            job.stopped_at = attempt.stopped_at
        backend.set_status(job, status, status_reason)
        if job.status == JobStatus.FAILED:
            backend.fail_dependents(job)
