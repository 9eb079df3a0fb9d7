"""Attempts as local processes: started cold or forked warm, their output, signals, timeouts, exits.

Each attempt is a local process group (the job's "container"). Its exit is watched through a pidfd
(cold start) or the warm interpreter's socket (warm fork, localbatch.warm) and its output through a
non-blocking pipe, all registered with the event loop, so thousands of running jobs cost file
descriptors, not threads. When the group leader exits, the rest of its group is killed, as a
container's processes die with its main process.

Not emulated: images (recorded, never pulled), volumes, mount points, ulimits, secrets, users,
Linux parameters, GPUs, networking, memory limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localbatch.backend import BatchBackend
from localbatch.faults import Faults, StartFault
from localbatch.logs import LogsBackend
from localbatch.models import Attempt, Job, JobStatus, now_ms
from localbatch.reasons import EXITED_REASON, STOPPED_REASON, TIMEOUT_REASON, WARM_LOST_REASON, Finish
from localbatch.warm import WarmCallbacks, WarmPool, set_batch_policy

log = logging.getLogger("localbatch.processes")


def start_ticks(pid: int) -> str | None:
    """The process start time in clock ticks, which tells a live process from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_if_same(pid: int | None, ticks: str | None) -> None:
    """SIGKILL the group `pid` leads, unless that pid now belongs to another process (or none)."""
    if pid is not None and ticks is not None and start_ticks(pid) == ticks:
        killpg(pid, signal.SIGKILL)


def child_env(job: Job, jq: dict[str, Any], ce: dict[str, Any], pass_env: list[str]) -> dict[str, str]:
    """The attempt's environment: a minimal base, the variables passed through, the job's, AWS_BATCH_*
    (with AWS_BATCH_JOB_ARRAY_INDEX for an array child)."""
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)])
    env = {
        "PATH": path,
        "HOME": os.environ.get("HOME", "/"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TMPDIR": os.environ.get("TMPDIR", tempfile.gettempdir()),
    }
    for name in pass_env:
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
    if job.array_index is not None:
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(job.array_index)
    return env


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


class Processes:
    """The attempts that run as processes, by job id, from start to the call of `finish`."""

    def __init__(
        self,
        backend: BatchBackend,
        logs: LogsBackend,
        faults: Faults,
        workdir: Path,
        *,
        finish: Finish,
        pass_env: list[str],
        kill_grace_seconds: float,
        preload: list[str] | None,
        sched_batch: bool,
    ) -> None:
        self.backend = backend
        self.logs = logs
        self.faults = faults
        self.workdir = workdir
        self.finish = finish
        self.pass_env = pass_env
        self.kill_grace_seconds = kill_grace_seconds
        self.sched_batch = sched_batch
        self.procs: dict[str, Proc] = {}
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
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.warm is not None:
            self.warm.bind(loop)

    def stop_all(self) -> None:
        """Kill every attempt's process and end the attempt (localbatch is stopping)."""
        for job_id in list(self.procs):
            proc = self.procs[job_id]
            job = self.backend.jobs[job_id]
            job.stop_kind, job.stop_reason = "stopped", STOPPED_REASON
            if proc.pid is not None:
                killpg(proc.pid, signal.SIGKILL)
            if proc.popen is not None:
                proc.popen.wait()
                self._on_cold_exit(job_id)
            else:
                if self.warm is not None:
                    self.warm.forget(job_id)
                self._ended(job_id, None if proc.pid is None else -signal.SIGKILL)

    def close(self) -> None:
        if self.warm is not None:
            self.warm.close()

    # -- starting an attempt -----------------------------------------------------------------------
    def start(
        self,
        job: Job,
        attempt: Attempt,
        command: list[str],
        *,
        jq: dict[str, Any],
        ce: dict[str, Any],
        fault: StartFault | None,
    ) -> None:
        """Start the STARTING attempt's process: forked warm when a warm interpreter can, else cold."""
        self.logs.create_stream(attempt.log_stream)
        env = child_env(job, jq, ce, self.pass_env)
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
            self.finish(job, None, reason, reason)
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
        job.pid_start_ticks = start_ticks(pid)
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
        kill_if_same(proc.pid, job.pid_start_ticks)
        if job.stop_kind is None:
            job.stop_kind, job.stop_reason = "host_lost", WARM_LOST_REASON
        self._ended(job_id, None)

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
            job.stop_reason = self.faults.host_lost_reason(reason)
            pid = self.procs[job_id].pid
            if pid is not None:
                killpg(pid, signal.SIGKILL)

    def terminate(self, job_id: str) -> bool:
        """Stop the attempt as TerminateJob does; False when it is not one of these processes."""
        if job_id not in self.procs:
            return False
        self._signal_then_kill(job_id)
        return True

    def _signal_then_kill(self, job_id: str) -> None:
        """Like `docker stop`: SIGTERM to the group, SIGKILL after the grace period."""
        proc = self.procs[job_id]
        if proc.pid is None:
            return  # a warm interpreter is forking it: signalled as soon as it runs (_running)
        killpg(proc.pid, signal.SIGTERM)
        loop = self._loop
        assert loop is not None
        proc.timers.append(loop.call_later(self.kill_grace_seconds, self._kill_if_alive, job_id, proc))

    def _kill_if_alive(self, job_id: str, proc: Proc) -> None:
        if self.procs.get(job_id) is proc and proc.pid is not None:
            killpg(proc.pid, signal.SIGKILL)

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
            killpg(proc.pid, signal.SIGKILL)
        self._discard(proc)
        job = self.backend.jobs[job_id]
        if returncode is None or job.stop_kind == "host_lost":
            self.finish(job, None, None, job.stop_reason)
        else:
            exit_code = returncode if returncode >= 0 else 128 - returncode
            self.finish(job, exit_code, None, job.stop_reason or EXITED_REASON)
