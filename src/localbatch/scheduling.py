"""Scheduling decisions: queue priority, dependencies, capacity, and which compute environment runs a job.

Plain code over plain data (jobs, and resources as their AWS dictionaries): no processes, no
tasks, no I/O. The runner applies the decisions: it changes job statuses and starts attempts.

Memory is accounted against a compute environment's capacity (MEMORY_MIB_PER_VCPU x its vCPUs)
but not enforced on the process.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from localbatch.arns import name_from
from localbatch.models import Job, JobStatus

# Memory a compute environment offers per vCPU of its capacity (an m-family-like ratio).
MEMORY_MIB_PER_VCPU = 4096
# Fractional vCPUs (0.25 + 0.5 + ...) must fill a compute environment exactly despite float rounding.
VCPU_SLACK = 1e-9


def by_priority(queues: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Job queues in the order they are served: highest priority first, ties in creation order."""
    return sorted(queues, key=lambda q: -int(q["priority"]))


class Readiness(enum.Enum):
    WAITING = "waiting"  # a dependency has not finished yet
    READY = "ready"  # every dependency succeeded (or no longer exists)
    DEPENDENCY_FAILED = "dependency_failed"


def readiness(job: Job, jobs: Mapping[str, Job]) -> Readiness:
    """Whether a PENDING job can become RUNNABLE, given the jobs it depends on."""
    deps = [jobs.get(d["jobId"]) for d in job.depends_on]
    if any(d is not None and d.status == JobStatus.FAILED for d in deps):
        return Readiness.DEPENDENCY_FAILED
    if all(d is None or d.status == JobStatus.SUCCEEDED for d in deps):
        return Readiness.READY
    return Readiness.WAITING


@dataclass(frozen=True)
class Usage:
    """vCPUs and memory: what a compute environment offers, has in use, or has free."""

    vcpus: float = 0.0
    memory_mib: float = 0.0


def capacity(ce: dict[str, Any]) -> Usage:
    """What a compute environment can run at once: its maxvCpus (unmanaged: its unmanagedvCpus, else
    this machine's CPUs) and MEMORY_MIB_PER_VCPU for each of them."""
    if ce["type"] == "UNMANAGED":
        vcpus = float(ce.get("unmanagedvCpus") or os.cpu_count() or 1)
    else:
        vcpus = float(ce.get("computeResources", {}).get("maxvCpus", 0))
    return Usage(vcpus, vcpus * MEMORY_MIB_PER_VCPU)


class Ledger:
    """What the running attempts hold of each compute environment, by compute environment name."""

    def __init__(self) -> None:
        self._used: dict[str, Usage] = {}

    def used(self, ce_name: str) -> Usage:
        return self._used.get(ce_name, Usage())

    def free(self, ce: dict[str, Any]) -> Usage:
        total, used = capacity(ce), self.used(ce["computeEnvironmentName"])
        return Usage(total.vcpus - used.vcpus, total.memory_mib - used.memory_mib)

    def reserve(self, ce_name: str, job: Job) -> None:
        used = self.used(ce_name)
        self._used[ce_name] = Usage(used.vcpus + job.vcpus, used.memory_mib + job.memory_mib)

    def release(self, ce_name: str | None, job: Job) -> None:
        """Give back what `job` reserved on `ce_name`; nothing when nothing was reserved there."""
        used = self._used.get(ce_name or "")
        if used is not None:
            self._used[ce_name or ""] = Usage(used.vcpus - job.vcpus, used.memory_mib - job.memory_mib)


def usable_ces(
    jq: dict[str, Any], compute_environments: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The queue's compute environments that can take jobs, in the queue's order."""
    out = []
    for item in jq["computeEnvironmentOrder"]:
        ce = compute_environments.get(name_from(item["computeEnvironment"], "compute-environment"))
        if ce is not None and ce["state"] == "ENABLED" and ce["status"] == "VALID":
            out.append(ce)
    return out


@dataclass(frozen=True)
class Placement:
    """The decision for one RUNNABLE job. `ce` None: it waits, for capacity or (`too_large`) forever."""

    job: Job
    queue: dict[str, Any]
    ce: dict[str, Any] | None
    too_large: bool = False


def placements(
    queues: list[dict[str, Any]],
    compute_environments: Mapping[str, dict[str, Any]],
    runnable: Callable[[str], Iterable[str]],
    jobs: Mapping[str, Job],
    ledger: Ledger,
) -> Iterator[Placement]:
    """Walk the RUNNABLE jobs of `queues` (in the order given) and place each on a compute environment.

    `runnable(queue_arn)` lists a queue's RUNNABLE job ids, oldest first. A job goes to the first of
    its queue's compute environments with room for it; a queue's walk stops when none of them has
    a vCPU free. Nothing is reserved here: the caller starts each placed job (reserving its share in
    `ledger`) before asking for the next, so every decision sees the ones before it. The caller may
    also yield to other work between two decisions: each job is looked up again when its turn comes.
    """
    for jq in queues:
        if jq["state"] != "ENABLED":
            continue
        ces = usable_ces(jq, compute_environments)
        if not ces:
            continue
        largest = max(capacity(ce).vcpus for ce in ces)
        for job_id in list(runnable(jq["jobQueueArn"])):
            job = jobs.get(job_id)
            if job is None or job.status != JobStatus.RUNNABLE or job.held_reason:
                continue
            if job.vcpus > largest or job.memory_mib > largest * MEMORY_MIB_PER_VCPU:
                yield Placement(job, jq, None, too_large=True)
                continue
            free = [(ce, ledger.free(ce)) for ce in ces]
            if all(f.vcpus <= 0 for _, f in free):
                break
            chosen = next(
                (
                    ce
                    for ce, f in free
                    if job.vcpus <= f.vcpus + VCPU_SLACK and job.memory_mib <= f.memory_mib
                ),
                None,
            )
            yield Placement(job, jq, chosen)
