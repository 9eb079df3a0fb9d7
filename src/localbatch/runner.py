"""Scheduling and execution: one asyncio loop drives every job, no thread per job.

Each attempt is a local process group (the job's "container"). Its exit is watched through a pidfd
and its output through a non-blocking pipe, both registered with the event loop, so thousands of
running jobs cost file descriptors, not threads. When the group leader exits, the rest of its group
is killed, as a container's processes die with its main process.

Not emulated: images (recorded, never pulled), volumes, mount points, ulimits, secrets, users,
Linux parameters, GPUs, networking. Memory is accounted against the compute environment's capacity
(MEMORY_MIB_PER_VCPU x maxvCpus) but not enforced on the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localbatch.backend import MEMORY_MIB_PER_VCPU, BatchBackend, _name_from, now_ms
from localbatch.faults import Faults, StartFault
from localbatch.logs import LogsBackend
from localbatch.models import ACCOUNT_ID, Attempt, Job, JobStatus
from localbatch.warm import WarmCallbacks, WarmPool, set_batch_policy

JOB_RESOURCE_MISCONFIGURATION = (
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - The job resource requirement (vCPU/memory/GPU) is higher "
    "than that can be met by the CE(s) attached to the job queue."
)
TIMEOUT_REASON = "Job attempt duration exceeded timeout"
EXITED_REASON = "Essential container in task exited"
RESTART_REASON = (
    "localbatch restarted: the job's process was lost when the service stopped (attempt {attempt})"
)
STOPPED_REASON = "localbatch stopped while the job was running: its process was killed"
OVERRIDES_REASON = "Container Overrides length must be at most 8192"
WARM_LOST_REASON = (
    "localbatch: the warm interpreter that forked this job exited while it ran, so its exit status "
    "is unknown; the job's process group was killed"
)
SIMULATED_LINE = "localbatch: simulated run (fault config 'simulate'), no process was started"
SPAWN_BATCH = 50
log = logging.getLogger("localbatch.runner")


def _start_ticks(pid: int) -> str | None:
    """The process start time in clock ticks, which tells a live process from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


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


@dataclass
class Proc:
    """A running attempt's process: started cold (popen) or forked by a warm interpreter."""

    job_id: str
    attempt: Attempt
    command: list[str]
    env: dict[str, str]
    stream: str
    out_fd: int | None
    fault: StartFault | None
    # The output pipe's write end, kept while a warm interpreter has not forked the job yet, so
    # that a cold start can still take over.
    write_fd: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    pid: int | None = None  # None until the process exists
    partial: bytes = b""
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


@dataclass
class Simulated:
    """An attempt of simulated execution: no process, only the timers that end it."""

    attempt: Attempt
    exit_code: int
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class Runner:
    def __init__(
        self,
        backend: BatchBackend,
        logs: LogsBackend,
        faults: Faults,
        data_dir: Path,
        *,
        pass_env: list[str],
        kill_grace_seconds: float = 30.0,
        preload: list[str] | None = None,
        sched_batch: bool = True,
    ) -> None:
        self.backend = backend
        self.logs = logs
        self.faults = faults
        self.workdir = data_dir / "work"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pass_env = pass_env
        self.kill_grace_seconds = kill_grace_seconds
        self.sched_batch = sched_batch
        self.procs: dict[str, Proc] = {}
        self.simulated: dict[str, Simulated] = {}
        self.warm = (
            WarmPool(
                preload,
                self.workdir,
                WarmCallbacks(self._warm_started, self._warm_not_forked, self._ended, self._warm_lost),
                sched_batch=sched_batch,
            )
            if preload
            else None
        )
        self.used: dict[str, list[float]] = {}  # CE name -> [vcpus, memory MiB]
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        backend.on_change = self.wake
        backend.on_terminate = self._terminate_running

    def wake(self) -> None:
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.warm is not None:
            self.warm.bind(self._loop)
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
        for job_id in list(self.procs):
            proc = self.procs[job_id]
            job = self.backend.jobs[job_id]
            job.stop_kind, job.stop_reason = "stopped", STOPPED_REASON
            if proc.pid is not None:
                _killpg(proc.pid, signal.SIGKILL)
            if proc.popen is not None:
                proc.popen.wait()
                self._on_cold_exit(job_id)
            else:
                if self.warm is not None:
                    self.warm.forget(job_id)
                self._ended(job_id, None if proc.pid is None else -signal.SIGKILL)
        for job_id in list(self.simulated):
            job = self.backend.jobs[job_id]
            job.stop_kind, job.stop_reason = "stopped", STOPPED_REASON
            self._end_simulated(job_id, None)
        if self.warm is not None:
            self.warm.close()
        self.backend.flush_dirty()

    def _fail_orphan(self, job: Job) -> None:
        if (
            job.pid is not None
            and job.pid_start_ticks is not None
            and _start_ticks(job.pid) == job.pid_start_ticks
        ):
            _killpg(job.pid, signal.SIGKILL)
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
    def _capacity(self, ce: dict[str, Any]) -> float:
        if ce["type"] == "UNMANAGED":
            return float(ce.get("unmanagedvCpus") or os.cpu_count() or 1)
        return float(ce.get("computeResources", {}).get("maxvCpus", 0))

    def _usable_ces(self, jq: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for item in jq["computeEnvironmentOrder"]:
            ce = self.backend.compute_environments.get(
                _name_from(item["computeEnvironment"], "compute-environment")
            )
            if ce is not None and ce["state"] == "ENABLED" and ce["status"] == "VALID":
                out.append(ce)
        return out

    async def schedule_pass(self) -> None:
        backend = self.backend
        queues = sorted(backend.job_queues.values(), key=lambda q: -int(q["priority"]))
        for jq in queues:
            arn = jq["jobQueueArn"]
            for job_id in list(backend.jobs_in(arn, JobStatus.SUBMITTED)):
                backend.set_status(backend.jobs[job_id], JobStatus.PENDING)
            for job_id in list(backend.jobs_in(arn, JobStatus.PENDING)):
                job = backend.jobs[job_id]
                deps = [backend.jobs.get(d["jobId"]) for d in job.depends_on]
                if any(d is not None and d.status == JobStatus.FAILED for d in deps):
                    backend.set_status(job, JobStatus.FAILED, "Dependent Job failed")
                    backend.fail_dependents(job)
                elif all(d is None or d.status == JobStatus.SUCCEEDED for d in deps):
                    job.held_reason = self.faults.hold_reason(job.job_name)
                    backend.set_status(job, JobStatus.RUNNABLE, job.held_reason)
        spawned = 0
        for jq in queues:
            if jq["state"] != "ENABLED":
                continue
            ces = self._usable_ces(jq)
            if not ces:
                continue
            largest = max(self._capacity(ce) for ce in ces)
            for job_id in list(backend.jobs_in(jq["jobQueueArn"], JobStatus.RUNNABLE)):
                runnable = backend.jobs.get(job_id)
                if runnable is None:
                    continue
                job = runnable
                if job.status != JobStatus.RUNNABLE or job.held_reason:
                    continue
                if job.vcpus > largest or job.memory_mib > largest * MEMORY_MIB_PER_VCPU:
                    if job.status_reason != JOB_RESOURCE_MISCONFIGURATION:
                        job.status_reason = JOB_RESOURCE_MISCONFIGURATION
                        backend.touch(job)
                    continue
                free = [
                    (ce, self._capacity(ce) - self.used.get(ce["computeEnvironmentName"], [0.0, 0.0])[0])
                    for ce in ces
                ]
                if all(f <= 0 for _, f in free):
                    break
                for ce, free_vcpus in free:
                    used = self.used.get(ce["computeEnvironmentName"], [0.0, 0.0])
                    free_mem = self._capacity(ce) * MEMORY_MIB_PER_VCPU - used[1]
                    if job.vcpus <= free_vcpus + 1e-9 and job.memory_mib <= free_mem:
                        self._start(job, jq, ce)
                        spawned += 1
                        break
                if spawned and spawned % SPAWN_BATCH == 0:
                    # Let requests in between batches of process spawns.
                    await asyncio.sleep(0)

    # -- starting an attempt -----------------------------------------------------------------------
    def _child_env(self, job: Job, jq: dict[str, Any], ce: dict[str, Any]) -> dict[str, str]:
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)])
        env = {
            "PATH": path,
            "HOME": os.environ.get("HOME", "/"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "TMPDIR": os.environ.get("TMPDIR", tempfile.gettempdir()),
        }
        for name in self.pass_env:
            if name in os.environ:
                env[name] = os.environ[name]
        for item in job.container.get("environment", []):
            env[item["name"]] = item.get("value", "")
        env.update(
            AWS_BATCH_JOB_ID=job.job_id,
            AWS_BATCH_JOB_ATTEMPT=str(len(job.attempts)),
            AWS_BATCH_JQ_NAME=jq["jobQueueName"],
            AWS_BATCH_CE_NAME=ce["computeEnvironmentName"],
        )
        return env

    def _start(self, job: Job, jq: dict[str, Any], ce: dict[str, Any]) -> None:
        backend = self.backend
        ce_name = ce["computeEnvironmentName"]
        region = ce["computeEnvironmentArn"].split(":")[3]
        task_id = uuid.uuid4().hex
        attempt = Attempt(
            task_id=task_id,
            log_stream=f"{job.job_definition_name}/default/{task_id}",
            task_arn=f"arn:aws:ecs:{region}:{ACCOUNT_ID}:task/{ce_name}_Batch/{task_id}",
            container_instance_arn=f"arn:aws:ecs:{region}:{ACCOUNT_ID}:container-instance/{ce_name}_Batch/localhost",
        )
        job.attempts.append(attempt)
        job.compute_environment = ce_name
        job.stop_kind = job.stop_reason = None
        used = self.used.setdefault(ce_name, [0.0, 0.0])
        used[0] += job.vcpus
        used[1] += job.memory_mib
        job.status_reason = None  # a RUNNABLE reason (capacity, earlier attempt) no longer applies
        backend.set_status(job, JobStatus.STARTING)
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
            self._start_simulated(job, attempt, simulate.seconds, simulate.exit_code, fault)
            return
        if not command:
            reason = (
                "CannotStartContainerError: localbatch runs containerOverrides.command or the job "
                "definition's command, and this job has neither (image entrypoints are not emulated)"
            )
            self._finish(job, None, reason, reason)
            return
        self.logs.create_stream(attempt.log_stream)
        env = self._child_env(job, jq, ce)
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        proc = Proc(job.job_id, attempt, command, env, attempt.log_stream, read_fd, fault, write_fd=write_fd)
        self.procs[job.job_id] = proc
        loop = self._loop
        assert loop is not None
        loop.add_reader(read_fd, self._on_output, job.job_id)
        module = None if self.warm is None else self.warm.module_for(command, env)
        if (
            module is not None
            and self.warm is not None
            and self.warm.spawn(job.job_id, module, command, env, write_fd)
        ):
            return  # STARTING until the warm interpreter has forked it
        self._start_cold(proc)

    def _start_cold(self, proc: Proc) -> None:
        job = self.backend.jobs[proc.job_id]
        command = proc.command
        assert proc.write_fd is not None
        try:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=proc.write_fd,
                stderr=proc.write_fd,
                env=proc.env,
                cwd=self.workdir,
                start_new_session=True,
                close_fds=True,
            )
        except (OSError, ValueError, TypeError) as exc:
            self._discard(proc)
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            reason = f"CannotStartContainerError: {detail}: {command[0]!r}"
            self._finish(job, None, reason, reason)
            return
        self._close_write_end(proc)
        if self.sched_batch:
            set_batch_policy(popen.pid)
        proc.popen = popen
        proc.pidfd = os.pidfd_open(popen.pid)
        loop = self._loop
        assert loop is not None
        loop.add_reader(proc.pidfd, self._on_cold_exit, proc.job_id)
        self._running(proc, popen.pid)

    def _close_write_end(self, proc: Proc) -> None:
        if proc.write_fd is not None:
            os.close(proc.write_fd)
            proc.write_fd = None

    def _running(self, proc: Proc, pid: int) -> None:
        job = self.backend.jobs[proc.job_id]
        attempt = proc.attempt
        proc.pid = job.pid = pid
        job.pid_start_ticks = _start_ticks(pid)
        attempt.started_at = job.started_at = now_ms()
        self.backend.set_status(job, JobStatus.RUNNING)
        loop = self._loop
        assert loop is not None
        if job.stop_kind is not None:
            # Terminated while a warm interpreter was forking it.
            self._signal_then_kill(job.job_id)
        if job.timeout_seconds is not None:
            proc.timers.append(loop.call_later(job.timeout_seconds, self._on_timeout, job.job_id, attempt))
        fault = proc.fault
        if fault is not None and fault.kind == "host_lost":
            proc.timers.append(
                loop.call_later(fault.after_seconds, self._on_host_lost, job.job_id, attempt, fault.reason)
            )

    # -- warm interpreter callbacks -----------------------------------------------------------------
    def _warm_started(self, job_id: str, pid: int) -> None:
        proc = self.procs[job_id]
        self._close_write_end(proc)
        self._running(proc, pid)

    def _warm_not_forked(self, job_id: str, why: str) -> None:
        proc = self.procs[job_id]
        job = self.backend.jobs[job_id]
        log.info("job %s runs cold: %s", job_id, why)
        if job.stop_kind is not None:  # terminated while waiting: nothing to start
            self._close_write_end(proc)
            self._ended(job_id, None)
            return
        self._start_cold(proc)

    def _warm_lost(self, job_id: str) -> None:
        proc = self.procs[job_id]
        job = self.backend.jobs[job_id]
        if (
            proc.pid is not None
            and job.pid_start_ticks is not None
            and _start_ticks(proc.pid) == job.pid_start_ticks
        ):
            _killpg(proc.pid, signal.SIGKILL)
        if job.stop_kind is None:
            job.stop_kind, job.stop_reason = "host_lost", WARM_LOST_REASON
        self._ended(job_id, None)

    # -- simulated execution ------------------------------------------------------------------------
    def _start_simulated(
        self, job: Job, attempt: Attempt, seconds: float | None, exit_code: int, fault: StartFault | None
    ) -> None:
        self.logs.create_stream(attempt.log_stream)
        self.logs.append(attempt.log_stream, [(now_ms(), SIMULATED_LINE)])
        run = self.simulated[job.job_id] = Simulated(attempt, exit_code)
        attempt.started_at = job.started_at = now_ms()
        self.backend.set_status(job, JobStatus.RUNNING)
        loop = self._loop
        assert loop is not None
        if seconds is not None:
            run.timers.append(loop.call_later(seconds, self._simulated_done, job.job_id, attempt))
        if job.timeout_seconds is not None:
            run.timers.append(
                loop.call_later(
                    job.timeout_seconds, self._simulated_stop, job.job_id, attempt, "timeout", TIMEOUT_REASON
                )
            )
        if fault is not None and fault.kind == "host_lost":
            reason = fault.reason or f"Host EC2 (instance {self.faults.instance_id()}) terminated."
            run.timers.append(
                loop.call_later(
                    fault.after_seconds, self._simulated_stop, job.job_id, attempt, "host_lost", reason
                )
            )

    def _simulated_done(self, job_id: str, attempt: Attempt) -> None:
        run = self.simulated.get(job_id)
        if run is not None and run.attempt is attempt:
            self._end_simulated(job_id, run.exit_code)

    def _simulated_stop(self, job_id: str, attempt: Attempt, kind: str, reason: str) -> None:
        run = self.simulated.get(job_id)
        job = self.backend.jobs.get(job_id)
        if run is None or run.attempt is not attempt or job is None or job.stop_kind is not None:
            return
        job.stop_kind, job.stop_reason = kind, reason
        self._end_simulated(job_id, None)

    def _end_simulated(self, job_id: str, exit_code: int | None) -> None:
        run = self.simulated.pop(job_id)
        for timer in run.timers:
            timer.cancel()
        job = self.backend.jobs[job_id]
        if job.stop_kind == "host_lost":
            self._finish(job, None, None, job.stop_reason)
        elif job.stop_kind is not None:
            # As a process stopped by SIGTERM (terminate, timeout) or SIGKILL (localbatch stopping).
            code = 137 if job.stop_kind == "stopped" else 143
            self._finish(job, code if exit_code is None else exit_code, None, job.stop_reason)
        else:
            self._finish(job, exit_code, None, EXITED_REASON)

    def finish_simulated(self, job_ids: list[str], exit_code: int | None = None) -> list[Job]:
        """End running simulated attempts now, with `exit_code` or the configured one; skip other jobs."""
        finished = []
        for job_id in job_ids:
            run = self.simulated.get(job_id)
            if run is not None:
                self._end_simulated(job_id, run.exit_code if exit_code is None else exit_code)
                finished.append(self.backend.jobs[job_id])
        return finished

    # -- while it runs -----------------------------------------------------------------------------
    def _on_output(self, job_id: str) -> None:
        proc = self.procs.get(job_id)
        if proc is None or proc.out_fd is None:
            return
        self._read_output(proc, drain=False)

    def _read_output(self, proc: Proc, drain: bool) -> None:
        assert proc.out_fd is not None
        chunks = []
        eof = False
        for _ in range(1000 if drain else 16):
            try:
                data = os.read(proc.out_fd, 65536)
            except BlockingIOError:
                break
            if not data:
                eof = True
                break
            chunks.append(data)
        buffer = proc.partial + b"".join(chunks)
        lines = buffer.split(b"\n")
        proc.partial = lines.pop()
        if (eof or drain) and proc.partial:
            lines.append(proc.partial)
            proc.partial = b""
        if lines:
            stamp = now_ms()
            self.logs.append(proc.stream, [(stamp, line.decode("utf-8", "replace")) for line in lines])
        if eof or drain:
            loop = self._loop
            assert loop is not None
            loop.remove_reader(proc.out_fd)
            os.close(proc.out_fd)
            proc.out_fd = None

    def _current(self, job_id: str, attempt: Attempt) -> Job | None:
        job = self.backend.jobs.get(job_id)
        if job is None or job_id not in self.procs or not job.attempts or job.attempts[-1] is not attempt:
            return None
        return job

    def _on_timeout(self, job_id: str, attempt: Attempt) -> None:
        job = self._current(job_id, attempt)
        if job is not None and job.stop_kind is None:
            job.stop_kind, job.stop_reason = "timeout", TIMEOUT_REASON
            self._signal_then_kill(job_id)

    def _on_host_lost(self, job_id: str, attempt: Attempt, reason: str | None) -> None:
        job = self._current(job_id, attempt)
        if job is not None and job.stop_kind is None:
            job.stop_kind = "host_lost"
            job.stop_reason = reason or f"Host EC2 (instance {self.faults.instance_id()}) terminated."
            pid = self.procs[job_id].pid
            if pid is not None:
                _killpg(pid, signal.SIGKILL)

    def _terminate_running(self, job: Job) -> None:
        if job.job_id in self.procs:
            self._signal_then_kill(job.job_id)
        elif job.job_id in self.simulated:
            self._end_simulated(job.job_id, None)

    def _signal_then_kill(self, job_id: str) -> None:
        """Like `docker stop`: SIGTERM to the group, SIGKILL after the grace period."""
        proc = self.procs[job_id]
        if proc.pid is None:
            return  # a warm interpreter is forking it: signalled as soon as it runs (_running)
        _killpg(proc.pid, signal.SIGTERM)
        loop = self._loop
        assert loop is not None
        proc.timers.append(loop.call_later(self.kill_grace_seconds, self._kill_if_alive, job_id, proc))

    def _kill_if_alive(self, job_id: str, proc: Proc) -> None:
        if self.procs.get(job_id) is proc and proc.pid is not None:
            _killpg(proc.pid, signal.SIGKILL)

    # -- when it ends ------------------------------------------------------------------------------
    def _on_cold_exit(self, job_id: str) -> None:
        proc = self.procs.get(job_id)
        if proc is None or proc.popen is None or proc.pidfd is None:
            return
        returncode = proc.popen.poll()
        if returncode is None:
            return  # not reaped yet; the pidfd stays readable and calls again
        loop = self._loop
        assert loop is not None
        loop.remove_reader(proc.pidfd)
        os.close(proc.pidfd)
        proc.pidfd = None
        self._ended(job_id, returncode)

    def _discard(self, proc: Proc) -> None:
        """Forget the attempt's process: close its pipe (after reading what is left) and timers."""
        del self.procs[proc.job_id]
        self._close_write_end(proc)
        if proc.out_fd is not None:
            self._read_output(proc, drain=True)
        for timer in proc.timers:
            timer.cancel()

    def _ended(self, job_id: str, returncode: int | None) -> None:
        """The attempt's main process exited with `returncode` (None: no process, or status unknown)."""
        proc = self.procs.get(job_id)
        if proc is None:
            return
        if proc.pid is not None:
            # The container ends with its main process: kill what is left of the group.
            _killpg(proc.pid, signal.SIGKILL)
        self._discard(proc)
        job = self.backend.jobs[job_id]
        if returncode is None or job.stop_kind == "host_lost":
            self._finish(job, None, None, job.stop_reason)
        else:
            exit_code = returncode if returncode >= 0 else 128 - returncode
            self._finish(job, exit_code, None, job.stop_reason or EXITED_REASON)

    def _finish(
        self,
        job: Job,
        exit_code: int | None,
        reason: str | None,
        status_reason: str | None,
        retryable: bool = True,
    ) -> None:
        backend = self.backend
        attempt = job.attempts[-1]
        attempt.stopped_at = now_ms()
        attempt.exit_code = exit_code
        attempt.reason = reason
        attempt.status_reason = status_reason
        job.pid = job.pid_start_ticks = None
        used = self.used.get(job.compute_environment or "")
        if used is not None:
            used[0] -= job.vcpus
            used[1] -= job.memory_mib
        kind, job.stop_kind, job.stop_reason = job.stop_kind, None, None
        if kind in ("terminate", "timeout", "stopped"):
            # Terminated and timed-out attempts are not retried, as in AWS.
            backend.set_status(job, JobStatus.FAILED, status_reason)
        elif exit_code == 0:
            backend.set_status(job, JobStatus.SUCCEEDED, status_reason)
        elif (
            retryable
            and len(job.attempts) < job.retry_attempts
            and retry_action(job.evaluate_on_exit, status_reason, reason, exit_code) == "RETRY"
        ):
            job.held_reason = None
            backend.set_status(job, JobStatus.RUNNABLE, status_reason)
        else:
            backend.set_status(job, JobStatus.FAILED, status_reason)
        if job.status == JobStatus.FAILED:
            backend.fail_dependents(job)
