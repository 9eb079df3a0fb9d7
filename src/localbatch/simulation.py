"""Simulated attempts (fault config `simulate`): an attempt that starts no process, only timers.

For load tests of Batch clients, where thousands of jobs must be RUNNING at once and what they run
does not matter. The attempt "runs" the configured seconds (or until `finish` is called), then
ends with the configured exit code; TerminateJob, its timeout and a host_lost fault end it as they
would end a process.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from localbatch.backend import BatchBackend
from localbatch.faults import Faults, Simulate, StartFault
from localbatch.logs import LogsBackend
from localbatch.models import Attempt, Job, JobStatus, now_ms
from localbatch.reasons import EXITED_REASON, STOPPED_REASON, TIMEOUT_REASON, Finish

SIMULATED_LINE = "localbatch: simulated run (fault config 'simulate'), no process was started"


@dataclass
class Simulated:
    """An attempt of simulated execution: no process, only the timers that end it."""

    attempt: Attempt
    exit_code: int
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class Simulation:
    """The simulated attempts that are running, by job id, from start to the call of `finish`."""

    def __init__(self, backend: BatchBackend, logs: LogsBackend, faults: Faults, *, finish: Finish) -> None:
        self.backend = backend
        self.logs = logs
        self.faults = faults
        self.finish = finish
        self.runs: dict[str, Simulated] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def start(self, job: Job, attempt: Attempt, simulate: Simulate, fault: StartFault | None) -> None:
        """Run the STARTING attempt as `simulate` says: RUNNING now, ended by its timers."""
        self.logs.create_stream(attempt.log_stream)
        self.logs.append(attempt.log_stream, [(now_ms(), SIMULATED_LINE)])
        run = self.runs[job.job_id] = Simulated(attempt, simulate.exit_code)
        attempt.started_at = job.started_at = now_ms()
        self.backend.set_status(job, JobStatus.RUNNING)
        loop = self._loop
        assert loop is not None
        if simulate.seconds is not None:
            run.timers.append(loop.call_later(simulate.seconds, self._done, job.job_id, attempt))
        if job.timeout_seconds is not None:
            run.timers.append(
                loop.call_later(
                    job.timeout_seconds, self._stop, job.job_id, attempt, "timeout", TIMEOUT_REASON
                )
            )
        if fault is not None and fault.kind == "host_lost":
            reason = self.faults.host_lost_reason(fault.reason)
            run.timers.append(
                loop.call_later(fault.after_seconds, self._stop, job.job_id, attempt, "host_lost", reason)
            )

    def _done(self, job_id: str, attempt: Attempt) -> None:
        run = self.runs.get(job_id)
        if run is not None and run.attempt is attempt:
            self._end(job_id, run.exit_code)

    def _stop(self, job_id: str, attempt: Attempt, kind: str, reason: str) -> None:
        run = self.runs.get(job_id)
        job = self.backend.jobs.get(job_id)
        if run is None or run.attempt is not attempt or job is None or job.stop_kind is not None:
            return
        job.stop_kind, job.stop_reason = kind, reason
        self._end(job_id, None)

    def _end(self, job_id: str, exit_code: int | None) -> None:
        run = self.runs.pop(job_id)
        for timer in run.timers:
            timer.cancel()
        job = self.backend.jobs[job_id]
        if job.stop_kind == "host_lost":
            self.finish(job, None, None, job.stop_reason)
        elif job.stop_kind is not None:
            # As a process stopped by SIGTERM (terminate, timeout) or SIGKILL (localbatch stopping).
            code = 137 if job.stop_kind == "stopped" else 143
            self.finish(job, code if exit_code is None else exit_code, None, job.stop_reason)
        else:
            self.finish(job, exit_code, None, EXITED_REASON)

    def terminate(self, job_id: str) -> bool:
        """End the attempt as TerminateJob does; False when it is not a simulated attempt."""
        if job_id not in self.runs:
            return False
        self._end(job_id, None)
        return True

    def finish_now(self, job_ids: list[str], exit_code: int | None = None) -> list[Job]:
        """End running simulated attempts now, with `exit_code` or the configured one; skip other jobs."""
        finished = []
        for job_id in job_ids:
            run = self.runs.get(job_id)
            if run is not None:
                self._end(job_id, run.exit_code if exit_code is None else exit_code)
                finished.append(self.backend.jobs[job_id])
        return finished

    def stop_all(self) -> None:
        """End every simulated attempt as killed (localbatch is stopping)."""
        for job_id in list(self.runs):
            job = self.backend.jobs[job_id]
            job.stop_kind, job.stop_reason = "stopped", STOPPED_REASON
            self._end(job_id, None)
