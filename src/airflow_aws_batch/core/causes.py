"""What Batch's reasons say about a job: why a started job failed, and whether a RUNNABLE one can run.

Pure: strings in, answers out. Batch has no field naming the cause of a failure; it is read from the
job's ``statusReason``, the last attempt's container ``reason`` and its exit code, in this order:

* ``attempt_timeout``: ``statusReason`` "Job attempt duration exceeded timeout" (Batch killed the
  attempt; its exit code, often 137, says nothing more);
* ``spot_reclaim``: "Host EC2 (instance i-...) terminated." (an instance Batch's own scaling never
  terminates under a running job: in practice EC2 reclaimed a Spot instance) or Fargate Spot's
  "Your Spot Task was interrupted.";
* ``host_lost``: the container instance went away otherwise (stopped, drained, deregistered, its
  agent disconnected, ...);
* ``out_of_memory``: "OutOfMemoryError: Container killed due to memory usage", or exit code 137
  with a reason that speaks of memory (exit 137 alone is any SIGKILL, e.g. TerminateJob);
* ``other``: anything else, including the task's own non-zero exit.

RUNNABLE reasons: ``MISCONFIGURATION:*`` (no compute environment of the queue can ever run the job)
and ``CAPACITY:*`` (none can just now). :class:`StuckJobs` times the first kind.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass


class Cause(enum.Enum):
    HOST_LOST = "host_lost"
    SPOT_RECLAIM = "spot_reclaim"
    OUT_OF_MEMORY = "out_of_memory"
    ATTEMPT_TIMEOUT = "attempt_timeout"
    OTHER = "other"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Cause.HOST_LOST: "host lost",
    Cause.SPOT_RECLAIM: "Spot reclaim",
    Cause.OUT_OF_MEMORY: "out of memory",
    Cause.ATTEMPT_TIMEOUT: "attempt timeout",
    Cause.OTHER: "other",
}

_TIMEOUT = re.compile(r"^Job attempt duration exceeded timeout", re.IGNORECASE)
_SPOT = re.compile(
    r"Host EC2 \(instance [^)]*\) terminated|Spot Task was interrupted|Spot Instance interruption",
    re.IGNORECASE,
)
_HOST = re.compile(
    r"Host EC2 \(instance [^)]*\)"  # stopped, unreachable: any other fate of the host
    r"|container instance .*(deregist|drain|no longer|not found|inactive)"
    r"|(ECS )?agent .*(disconnect|lost|stopped)"
    r"|instance .*(unhealthy|retired|stopped|was lost)"
    r"|host .*(lost|unreachable)",
    re.IGNORECASE,
)
_MEMORY = re.compile(r"out ?of ?memory|OOM|memory usage|memory limit", re.IGNORECASE)
SIGKILL_EXIT = 137


def classify(status_reason: str, container_reason: str = "", exit_code: int | None = None) -> Cause:
    """The cause of a job that FAILED after it started, from what DescribeJobs says of it."""
    status_reason = status_reason or ""
    container_reason = container_reason or ""
    if _TIMEOUT.search(status_reason):
        return Cause.ATTEMPT_TIMEOUT
    for text in (status_reason, container_reason):
        if _SPOT.search(text):
            return Cause.SPOT_RECLAIM
    for text in (status_reason, container_reason):
        if _HOST.search(text):
            return Cause.HOST_LOST
    if re.search(r"OutOfMemory", container_reason, re.IGNORECASE) or (
        exit_code == SIGKILL_EXIT and any(_MEMORY.search(t) for t in (container_reason, status_reason))
    ):
        return Cause.OUT_OF_MEMORY
    return Cause.OTHER


def failure_line(
    job_id: str, cause: Cause, status_reason: str, container_reason: str, exit_code: int | None
) -> str:
    """The last line of the task's log for a job that FAILED after it started."""
    said = [f"statusReason: {status_reason}"] if status_reason else []
    if container_reason:
        said.append(f"container reason: {container_reason}")
    if exit_code is not None:
        said.append(f"exit code: {exit_code}")
    details = "; ".join(said) or "Batch gave no reason"
    return f"AWS Batch job {job_id} failed after it started: {cause.label} ({details})"


def is_misconfiguration(status_reason: str) -> bool:
    """A RUNNABLE reason no scale-up cures: the queue's compute environments can never run the job."""
    return status_reason.startswith("MISCONFIGURATION:")


def is_capacity(status_reason: str) -> bool:
    """A RUNNABLE reason that passes: capacity is short just now."""
    return status_reason.startswith("CAPACITY:")


@dataclass(frozen=True, slots=True)
class Stuck:
    job_id: str
    reason: str
    waited_s: float


class StuckJobs:
    """Jobs waiting in RUNNABLE with a ``MISCONFIGURATION:*`` reason, timed from when it was first seen.

    Batch sets such a reason minutes after the job became RUNNABLE and may clear it again when a
    scale-up makes room, so a job counts as stuck only once the reason has been there ``grace_s``
    without a break. Fed every change of a tracked job's status or reason (:meth:`seen`); a job
    that leaves RUNNABLE or loses the reason starts over. ``grace_s`` 0: nothing is ever stuck.
    """

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._since: dict[str, tuple[float, str]] = {}

    def __len__(self) -> int:
        return len(self._since)

    def seen(self, job_id: str, status: str, status_reason: str, now: float) -> None:
        if self.grace_s > 0 and status == "RUNNABLE" and is_misconfiguration(status_reason):
            since = self._since.get(job_id)
            self._since[job_id] = (since[0] if since else now, status_reason)
        else:
            self._since.pop(job_id, None)

    def forget(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self._since.pop(job_id, None)

    def due(self, now: float) -> list[Stuck]:
        """The jobs stuck for ``grace_s`` or longer; each is reported once (then forgotten)."""
        out = [
            Stuck(job_id, reason, now - since)
            for job_id, (since, reason) in self._since.items()
            if now - since >= self.grace_s
        ]
        for stuck in out:
            del self._since[stuck.job_id]
        return out
