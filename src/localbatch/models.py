"""Plain data of localbatch: job states, jobs, attempts and the Batch resources they refer to.

Resources (compute environments, job queues, job definitions) are kept as the AWS response
dictionaries they describe, so Describe* returns them unchanged. Jobs carry more than AWS shows
(process identity, fault decisions), so they are a dataclass that renders the AWS shape on demand.
"""

from __future__ import annotations

import copy
import enum
import time
from dataclasses import asdict, dataclass, field
from typing import Any

ACCOUNT_ID = "123456789012"
LOG_GROUP = "/aws/batch/job"


def now_ms() -> int:
    """The current time as AWS stamps jobs, attempts and log events: milliseconds since the epoch."""
    return int(time.time() * 1000)


class JobStatus(str, enum.Enum):
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNABLE = "RUNNABLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    @property
    def is_active(self) -> bool:
        """A process exists (or is being created) for the job."""
        return self in (JobStatus.STARTING, JobStatus.RUNNING)


# Every allowed move. RUNNING/STARTING -> RUNNABLE is a retry of a failed attempt; any not-yet-final
# state -> FAILED covers cancel, terminate, dependency failure and infrastructure faults.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.SUBMITTED: frozenset({JobStatus.PENDING, JobStatus.FAILED}),
    JobStatus.PENDING: frozenset({JobStatus.RUNNABLE, JobStatus.FAILED}),
    JobStatus.RUNNABLE: frozenset({JobStatus.STARTING, JobStatus.FAILED}),
    JobStatus.STARTING: frozenset({JobStatus.RUNNING, JobStatus.RUNNABLE, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.RUNNABLE}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
}


# An array parent never runs: it waits (PENDING from the moment a child is RUNNABLE) until every child
# has finished, then SUCCEEDED if all of them did, else FAILED.
PARENT_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.SUBMITTED: frozenset({JobStatus.PENDING, JobStatus.SUCCEEDED, JobStatus.FAILED}),
    JobStatus.PENDING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED}),
    JobStatus.RUNNABLE: frozenset(),
    JobStatus.STARTING: frozenset(),
    JobStatus.RUNNING: frozenset(),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
}


class InvalidTransition(RuntimeError):
    pass


def check_transition(old: JobStatus, new: JobStatus, *, parent: bool = False) -> None:
    if new not in (PARENT_TRANSITIONS if parent else TRANSITIONS)[old]:
        raise InvalidTransition(f"job status cannot move from {old.value} to {new.value}")


@dataclass
class Attempt:
    task_id: str
    log_stream: str
    task_arn: str
    container_instance_arn: str
    started_at: int | None = None
    stopped_at: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    status_reason: str | None = None
    # EKS jobs only: the pod of this attempt (None for container jobs).
    pod_name: str | None = None
    node_name: str | None = None
    pod_namespace: str | None = None
    eks_cluster_arn: str | None = None

    def to_eks_aws(self, container_names: list[str]) -> dict[str, Any]:
        """This attempt as an ``EksAttemptDetail``: the first container ran the command; the others
        (sidecars) are reported with the same end, since localbatch runs one process per pod."""
        containers: list[dict[str, Any]] = []
        for index, name in enumerate(container_names or [""]):
            item: dict[str, Any] = {"containerID": f"{self.task_id}-{index}"}
            if name:
                item["name"] = name
            if self.exit_code is not None:
                item["exitCode"] = self.exit_code
            if self.reason is not None:
                item["reason"] = self.reason
            containers.append(item)
        out: dict[str, Any] = {
            "containers": containers,
            "initContainers": [],
            "podName": self.pod_name or "",
            "nodeName": self.node_name or "",
            "podNamespace": self.pod_namespace or "",
            "eksClusterArn": self.eks_cluster_arn or "",
        }
        if self.started_at is not None:
            out["startedAt"] = self.started_at
        if self.stopped_at is not None:
            out["stoppedAt"] = self.stopped_at
        if self.status_reason is not None:
            out["statusReason"] = self.status_reason
        return out

    def to_aws(self) -> dict[str, Any]:
        container: dict[str, Any] = {
            "containerInstanceArn": self.container_instance_arn,
            "taskArn": self.task_arn,
            "logStreamName": self.log_stream,
            "networkInterfaces": [],
        }
        if self.exit_code is not None:
            container["exitCode"] = self.exit_code
        if self.reason is not None:
            container["reason"] = self.reason
        out: dict[str, Any] = {"container": container}
        if self.started_at is not None:
            out["startedAt"] = self.started_at
        if self.stopped_at is not None:
            out["stoppedAt"] = self.stopped_at
        if self.status_reason is not None:
            out["statusReason"] = self.status_reason
        return out


@dataclass
class ArrayState:
    """An array parent's children (in index order) and how many of them are in each status.

    Kept in memory only: rebuilt from the children's records when localbatch starts."""

    children: list[Job] = field(default_factory=list)
    counts: dict[JobStatus, int] = field(default_factory=lambda: dict.fromkeys(JobStatus, 0))
    updated_at: int = 0

    def move(self, old: JobStatus | None, new: JobStatus) -> None:
        if old is not None:
            self.counts[old] -= 1
        self.counts[new] += 1
        self.updated_at = now_ms()

    @property
    def finished(self) -> int:
        return self.counts[JobStatus.SUCCEEDED] + self.counts[JobStatus.FAILED]

    def summary(self) -> dict[str, int]:
        return {status.value: count for status, count in self.counts.items()}


# What a child's record holds: what can differ between children. The rest is its parent's (the
# same values, and for container, tags, parameters and dependencies the same objects), taken from
# the parent's record at load. Keeps the records of a 10,000-child array small and cheap to write.
_CHILD_OWN = (
    "job_id",
    "job_arn",
    "status",
    "status_reason",
    "started_at",
    "stopped_at",
    "attempts",
    "compute_environment",
    "pid",
    "pid_start_ticks",
    "held_reason",
    "stop_reason",
    "stop_kind",
    "is_cancelled",
    "is_terminated",
    "array_index",
    "array_parent_id",
)


@dataclass
class Job:
    job_id: str
    job_name: str
    job_arn: str
    queue_arn: str
    job_definition_arn: str
    job_definition_name: str
    created_at: int
    status: JobStatus = JobStatus.SUBMITTED
    status_reason: str | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    # The container as AWS reports it (image, command, environment, resources...), overrides applied.
    # For an EKS job: what the runner needs of the pod's first container (image, command + args,
    # environment as name/value pairs), while ``eks_properties`` holds what AWS reports.
    container: dict[str, Any] = field(default_factory=dict)
    #: EKS jobs only: ``eksProperties`` as DescribeJobs reports it (overrides applied), else None.
    eks_properties: dict[str, Any] | None = None
    vcpus: float = 1.0
    memory_mib: int = 2048
    retry_attempts: int = 1
    evaluate_on_exit: list[dict[str, str]] = field(default_factory=list)
    timeout_seconds: int | None = None
    attempts: list[Attempt] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    propagate_tags: bool = False
    parameters: dict[str, str] = field(default_factory=dict)
    depends_on: list[dict[str, str]] = field(default_factory=list)
    scheduling_priority: int | None = None
    share_identifier: str | None = None
    platform_capabilities: list[str] = field(default_factory=list)
    overrides_too_long: bool = False
    # Runtime bookkeeping, persisted so a restart can find and kill orphaned process groups.
    compute_environment: str | None = None
    pid: int | None = None
    pid_start_ticks: str | None = None
    held_reason: str | None = None
    stop_reason: str | None = None  # set by TerminateJob / timeout / host loss while the process dies
    stop_kind: str | None = None  # "terminate" | "timeout" | "host_lost"
    is_cancelled: bool = False
    is_terminated: bool = False
    # Array jobs: a parent has array_size (and `array`, its children, in memory); a child has its
    # index and its parent's id. Children share the parent's container, tags, parameters and
    # dependencies (the same objects), which keeps a 10,000-child array cheap.
    array_size: int | None = None
    array_index: int | None = None
    array_parent_id: str | None = None
    array: ArrayState | None = field(default=None, repr=False, compare=False)

    @property
    def is_array_parent(self) -> bool:
        return self.array_size is not None

    @property
    def is_array_child(self) -> bool:
        return self.array_index is not None

    def array_properties(self) -> dict[str, Any] | None:
        if self.array_index is not None:
            return {"index": self.array_index}
        if self.array_size is None:
            return None
        props: dict[str, Any] = {"size": self.array_size}
        if self.array is not None:
            props["statusSummary"] = self.array.summary()
            if self.array.updated_at:
                props["statusSummaryLastUpdatedAt"] = self.array.updated_at
        return props

    def _eks_detail(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``eksProperties`` (with the current attempt's pod, exit code and reason) and ``eksAttempts``."""
        props = copy.deepcopy(self.eks_properties or {})
        pod = props.setdefault("podProperties", {})
        containers = pod.get("containers") or []
        names = [str(c.get("name", "")) for c in containers]
        if self.attempts:
            last = self.attempts[-1]
            pod["podName"] = last.pod_name or ""
            pod["nodeName"] = last.node_name or ""
            for container in containers:
                container.pop("exitCode", None)
                container.pop("reason", None)
                if last.exit_code is not None:
                    container["exitCode"] = last.exit_code
                if last.reason is not None:
                    container["reason"] = last.reason
        return props, [a.to_eks_aws(names) for a in self.attempts]

    def to_detail(self, queue_name: str) -> dict[str, Any]:
        if self.eks_properties is not None:
            eks_properties, eks_attempts = self._eks_detail()
            detail = self._common_detail()
            detail["eksProperties"] = eks_properties
            detail["eksAttempts"] = eks_attempts
            return detail
        detail = self._common_detail()
        detail["attempts"] = [a.to_aws() for a in self.attempts]
        detail["container"] = self._container_detail()
        return detail

    def _container_detail(self) -> dict[str, Any]:
        container = dict(self.container)
        if self.attempts:
            last = self.attempts[-1]
            container["logStreamName"] = last.log_stream
            container["taskArn"] = last.task_arn
            container["containerInstanceArn"] = last.container_instance_arn
            if last.exit_code is not None:
                container["exitCode"] = last.exit_code
            if last.reason is not None:
                container["reason"] = last.reason
        return container

    def _common_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "jobArn": self.job_arn,
            "jobName": self.job_name,
            "jobId": self.job_id,
            "jobQueue": self.queue_arn,
            "status": self.status.value,
            "createdAt": self.created_at,
            "dependsOn": self.depends_on,
            "jobDefinition": self.job_definition_arn,
            "parameters": self.parameters,
            "tags": self.tags,
            "propagateTags": self.propagate_tags,
            "platformCapabilities": self.platform_capabilities,
            "retryStrategy": {"attempts": self.retry_attempts, "evaluateOnExit": self.evaluate_on_exit},
            "isCancelled": self.is_cancelled,
            "isTerminated": self.is_terminated,
        }
        if self.status_reason is not None:
            detail["statusReason"] = self.status_reason
        if self.started_at is not None:
            detail["startedAt"] = self.started_at
        if self.stopped_at is not None:
            detail["stoppedAt"] = self.stopped_at
        if self.timeout_seconds is not None:
            detail["timeout"] = {"attemptDurationSeconds": self.timeout_seconds}
        if self.scheduling_priority is not None:
            detail["schedulingPriority"] = self.scheduling_priority
        if self.share_identifier is not None:
            detail["shareIdentifier"] = self.share_identifier
        array = self.array_properties()
        if array is not None:
            detail["arrayProperties"] = array
        return detail

    def to_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "jobArn": self.job_arn,
            "jobId": self.job_id,
            "jobName": self.job_name,
            "createdAt": self.created_at,
            "status": self.status.value,
            "jobDefinition": self.job_definition_arn,
            "isCancelled": self.is_cancelled,
            "isTerminated": self.is_terminated,
        }
        if self.status_reason is not None:
            summary["statusReason"] = self.status_reason
        if self.started_at is not None:
            summary["startedAt"] = self.started_at
        if self.stopped_at is not None:
            summary["stoppedAt"] = self.stopped_at
        if self.attempts and self.eks_properties is None:
            last = self.attempts[-1]
            container: dict[str, Any] = {}
            if last.exit_code is not None:
                container["exitCode"] = last.exit_code
            if last.reason is not None:
                container["reason"] = last.reason
            summary["container"] = container
        array = self.array_properties()
        if array is not None:
            summary["arrayProperties"] = array
        return summary

    def to_record(self) -> dict[str, Any]:
        """A snapshot for the store (encoded later, on its thread). Members this service never
        mutates after submission (container, parameters, dependencies, retry rules) are shared,
        not copied; attempts and tags are copied."""
        child = self.array_index is not None
        record = {name: getattr(self, name) for name in (_CHILD_OWN if child else _RECORD_FIELDS)}
        record["status"] = self.status.value
        record["attempts"] = [asdict(a) for a in self.attempts]
        if not child:
            record["tags"] = dict(self.tags)
        return record

    def child(self, index: int) -> Job:
        """This array parent's child `index`: a shallow copy, so it shares the parent's container,
        tags, parameters and dependencies (children share the parent's tags, as on AWS)."""
        child = copy.copy(self)
        child.job_id = f"{self.job_id}:{index}"
        child.job_arn = f"{self.job_arn}:{index}"
        child.attempts = []
        child.array = None
        child.array_size = None
        child.array_index = index
        child.array_parent_id = self.job_id
        return child

    def child_from_record(self, record: dict[str, Any]) -> Job:
        """A child of this array parent as persisted by `to_record`."""
        child = self.child(int(record["array_index"]))
        for name in _CHILD_OWN:
            if name in record:
                setattr(child, name, record[name])
        child.status = JobStatus(record["status"])
        child.attempts = [Attempt(**a) for a in record.get("attempts", [])]
        return child

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Job:
        data = dict(record)
        data["status"] = JobStatus(data["status"])
        data["attempts"] = [Attempt(**a) for a in data.get("attempts", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


_RECORD_FIELDS = tuple(name for name in Job.__dataclass_fields__ if name != "array")
