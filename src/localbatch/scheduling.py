"""Scheduling decisions: queue priority, dependencies, capacity, fair share, and which compute
environment runs a job.

Plain code over plain data (jobs, and resources as their AWS dictionaries): no processes, no
tasks, no I/O. The runner applies the decisions: it changes job statuses and starts attempts.

Memory is accounted against a compute environment's capacity (MEMORY_MIB_PER_VCPU x its vCPUs)
but not enforced on the process.

A job queue without a scheduling policy is FIFO. A queue with one (fair share) picks its next
RUNNABLE job with :class:`FairShareOrder`; see there for what is simplified against AWS.
"""

from __future__ import annotations

import enum
import heapq
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


def weight_factor(share: str, share_distribution: Iterable[Mapping[str, Any]]) -> float:
    """The policy's weightFactor for `share` (1.0 when no entry names it). An entry whose
    shareIdentifier ends in `*` covers every identifier starting with what precedes the `*`; AWS
    refuses overlapping entries, and should several match anyway, an exact entry wins, then the
    longest prefix."""
    best: tuple[int, float] | None = None  # (specificity, weight)
    for entry in share_distribution:
        pattern = str(entry["shareIdentifier"])
        if pattern.endswith("*"):
            if not share.startswith(pattern[:-1]):
                continue
            specificity = len(pattern) - 1
        elif pattern == share:
            specificity = 1 << 30
        else:
            continue
        if best is None or specificity > best[0]:
            best = (specificity, float(entry.get("weightFactor", 1.0)))
    return 1.0 if best is None else best[1]


def _within_share_key(job: Job) -> tuple[int, int, str]:
    # Higher schedulingPriority first (none counts as 0), then submission order, then job id.
    return (-(job.scheduling_priority or 0), job.created_at, job.job_id)


class FairShareOrder:
    """The order in which a fair-share job queue starts its RUNNABLE jobs.

    Each pick takes the share (shareIdentifier) with the lowest usage x weightFactor, usage being
    the vCPUs its jobs on this queue hold (STARTING or RUNNING) and weightFactor the policy's
    (1.0 for shares it does not list; a lower factor gets more: 0.5 gets twice the vCPUs of 1.0).
    Shares with equal values go by their next job's creation time, then its job id. Within the
    share: highest schedulingPriority first, then oldest, then job id.

    Simplified against AWS Batch: usage is what the share's jobs hold now, taken when the walk
    begins and raised by each job it starts (no history, so no shareDecaySeconds); no vCPUs are
    held back for idle shares (computeReservation is ignored); the 500 active share identifiers
    limit is not enforced.
    """

    def __init__(
        self,
        runnable: Iterable[Job],
        active: Iterable[Job],
        share_distribution: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self._distribution = list(share_distribution)
        self._weights: dict[str, float] = {}
        self._usage: dict[str, float] = {}
        self._waiting: dict[str, list[tuple[tuple[int, int, str], Job]]] = {}
        for job in active:
            self.charge(job)
        for job in runnable:
            self._waiting.setdefault(job.share_identifier or "", []).append((_within_share_key(job), job))
        for heap in self._waiting.values():
            heapq.heapify(heap)

    def _weight(self, share: str) -> float:
        if share not in self._weights:
            self._weights[share] = weight_factor(share, self._distribution)
        return self._weights[share]

    def usage(self, share: str) -> float:
        return self._usage.get(share, 0.0)

    def charge(self, job: Job) -> None:
        """`job` started: its vCPUs count toward its share's usage."""
        share = job.share_identifier or ""
        self._usage[share] = self.usage(share) + job.vcpus

    def pop(self) -> Job | None:
        """The next job to consider (it leaves the order), or None when none is left."""
        best: tuple[float, int, str, str] | None = None
        for share, heap in self._waiting.items():
            if heap:
                head = heap[0][1]
                key = (self.usage(share) * self._weight(share), head.created_at, head.job_id, share)
                if best is None or key < best:
                    best = key
        if best is None:
            return None
        return heapq.heappop(self._waiting[best[3]])[1]


def fair_share_order(
    runnable: Iterable[Job], active: Iterable[Job], share_distribution: Iterable[Mapping[str, Any]] = ()
) -> list[Job]:
    """Every job of `runnable` in fair-share order, as if each one started when picked."""
    order = FairShareOrder(runnable, active, share_distribution)
    out = []
    while (job := order.pop()) is not None:
        order.charge(job)
        out.append(job)
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
    *,
    active: Callable[[str], Iterable[str]] | None = None,
    share_distribution: Callable[[dict[str, Any]], list[dict[str, Any]] | None] | None = None,
) -> Iterator[Placement]:
    """Walk the RUNNABLE jobs of `queues` (in the order given) and place each on a compute environment.

    `runnable(queue_arn)` lists a queue's RUNNABLE job ids, oldest first. A job goes to the first of
    its queue's compute environments with room for it; a queue's walk stops when none of them has
    a vCPU free. Nothing is reserved here: the caller starts each placed job (reserving its share in
    `ledger`) before asking for the next, so every decision sees the ones before it. The caller may
    also yield to other work between two decisions: each job is looked up again when its turn comes.

    Fair share: `share_distribution(queue)` gives a fair-share queue's policy shareDistribution (None
    for a FIFO queue) and `active(queue_arn)` its STARTING and RUNNING job ids; such a queue's jobs
    are walked in :class:`FairShareOrder`. Without these callables every queue is FIFO.
    """
    for jq in queues:
        if jq["state"] != "ENABLED":
            continue
        ces = usable_ces(jq, compute_environments)
        if not ces:
            continue
        distribution = share_distribution(jq) if share_distribution is not None else None
        if distribution is None:
            walk: Iterator[Job | None] = (jobs.get(i) for i in list(runnable(jq["jobQueueArn"])))
            order = None
        else:
            arn = jq["jobQueueArn"]
            order = FairShareOrder(
                (j for i in runnable(arn) if (j := jobs.get(i)) is not None),
                (j for i in (active(arn) if active is not None else ()) if (j := jobs.get(i)) is not None),
                distribution,
            )
            walk = iter(order.pop, None)
        largest = max(capacity(ce).vcpus for ce in ces)
        for job in walk:
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
            if order is not None and chosen is not None and job.status.is_active:
                order.charge(job)
