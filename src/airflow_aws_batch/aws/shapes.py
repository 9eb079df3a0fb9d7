"""The read-only shapes of Batch's answers: a job (:class:`JobDetail`, :class:`JobSummary`), a job
queue, a compute environment, a job definition, each parsed from its entry (unknown fields ignored).

EKS jobs are read from ``eksAttempts`` / ``eksProperties`` (exit code and reason of the pod's first
container, pod names); Batch names no log stream for them. Not supported: array and multi-node jobs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from airflow_aws_batch.core.messages import JobView
from airflow_aws_batch.eks import CONTAINER, DefinitionInfo

#: The statuses of a job that has not ended, in the order a job passes through them.
ACTIVE_LIST_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
#: Every job status, each one string: a status kept for each of thousands of tracked jobs is this
#: shared object rather than a copy parsed from each DescribeJobs answer.
_STATUSES = {s: s for s in (*ACTIVE_LIST_STATUSES, "SUCCEEDED", "FAILED")}
DEFAULT_LOG_GROUP = "/aws/batch/job"


def _status(raw: dict[str, Any]) -> str:
    status = str(raw.get("status", ""))
    return _STATUSES.get(status, status)


@dataclass(frozen=True, slots=True)
class JobDetail:
    job_id: str
    job_name: str
    job_queue: str
    status: str
    status_reason: str = ""
    created_at: int | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    exit_code: int | None = None
    container_reason: str = ""
    #: Log streams of every attempt, oldest first, then the current container's (deduplicated).
    log_stream_names: tuple[str, ...] = ()
    log_group: str = DEFAULT_LOG_GROUP
    tags: dict[str, str] = field(default_factory=dict)
    #: An EKS job (it has ``eksProperties``): no CloudWatch log stream, a pod per attempt instead.
    is_eks: bool = False
    #: EKS: the pod of every attempt, oldest first, and their namespace.
    pod_names: tuple[str, ...] = ()
    pod_namespace: str = ""
    #: An array parent: its number of children (``arrayProperties.size``); None for any other job.
    array_size: int | None = None
    #: The command of the job's (EKS: the pod's first) container; an array's names its workload object.
    command: tuple[str, ...] = ()
    #: ``isTerminated`` / ``isCancelled``: a TerminateJob or CancelJob was called for the job.
    is_terminated: bool = False
    is_cancelled: bool = False
    #: The DescribeJobs entry as answered (not copied): what a resubmit of an adopted job is built from.
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> JobDetail:
        if raw.get("eksProperties") is not None:
            return cls._parse_eks(raw)
        container = raw.get("container") or {}
        streams: list[str] = []
        for attempt in raw.get("attempts") or []:
            name = (attempt.get("container") or {}).get("logStreamName")
            if name and name not in streams:
                streams.append(name)
        if container.get("logStreamName") and container["logStreamName"] not in streams:
            streams.append(container["logStreamName"])
        log_options = (container.get("logConfiguration") or {}).get("options") or {}
        exit_code = container.get("exitCode")
        return cls(
            job_id=str(raw["jobId"]),
            job_name=str(raw.get("jobName", "")),
            job_queue=str(raw.get("jobQueue", "")),
            status=_status(raw),
            status_reason=str(raw.get("statusReason") or ""),
            created_at=raw.get("createdAt"),
            started_at=raw.get("startedAt"),
            stopped_at=raw.get("stoppedAt"),
            exit_code=int(exit_code) if exit_code is not None else None,
            container_reason=str(container.get("reason") or ""),
            log_stream_names=tuple(streams),
            log_group=str(log_options.get("awslogs-group") or DEFAULT_LOG_GROUP),
            tags={str(k): str(v) for k, v in (raw.get("tags") or {}).items()},
            array_size=_array_size(raw),
            command=tuple(str(part) for part in container.get("command") or ()),
            is_terminated=bool(raw.get("isTerminated")),
            is_cancelled=bool(raw.get("isCancelled")),
            raw=raw,
        )

    @classmethod
    def _parse_eks(cls, raw: dict[str, Any]) -> JobDetail:
        """The first container of the pod ran the task: its exit code and reason are the job's."""
        attempts = raw.get("eksAttempts") or []
        pod = (raw.get("eksProperties") or {}).get("podProperties") or {}
        exit_code: Any = None
        reason: Any = None
        last_containers = (
            (attempts[-1].get("containers") if attempts else None) or pod.get("containers") or []
        )
        if last_containers:
            exit_code = last_containers[0].get("exitCode")
            reason = last_containers[0].get("reason")
        pods: list[str] = []
        for attempt in attempts:
            name = attempt.get("podName")
            if name and name not in pods:
                pods.append(str(name))
        if pod.get("podName") and pod["podName"] not in pods:
            pods.append(str(pod["podName"]))
        namespace = next((str(a["podNamespace"]) for a in reversed(attempts) if a.get("podNamespace")), "")
        return cls(
            job_id=str(raw["jobId"]),
            job_name=str(raw.get("jobName", "")),
            job_queue=str(raw.get("jobQueue", "")),
            status=_status(raw),
            status_reason=str(raw.get("statusReason") or ""),
            created_at=raw.get("createdAt"),
            started_at=raw.get("startedAt"),
            stopped_at=raw.get("stoppedAt"),
            exit_code=int(exit_code) if exit_code is not None else None,
            container_reason=str(reason or ""),
            tags={str(k): str(v) for k, v in (raw.get("tags") or {}).items()},
            is_eks=True,
            pod_names=tuple(pods),
            pod_namespace=namespace,
            array_size=_array_size(raw),
            command=tuple(str(part) for part in (pod.get("containers") or [{}])[0].get("command") or ()),
            is_terminated=bool(raw.get("isTerminated")),
            is_cancelled=bool(raw.get("isCancelled")),
            raw=raw,
        )

    def view(self) -> JobView:
        # Kept per tracked job until its next change: thousands of equal strings share one object.
        return JobView(
            job_id=self.job_id,
            status=sys.intern(self.status),
            status_reason=sys.intern(self.status_reason),
            started=bool(self.started_at),
            exit_code=self.exit_code,
            container_reason=self.container_reason,
        )


def _array_size(raw: dict[str, Any]) -> int | None:
    """``arrayProperties.size`` of an array parent (a child has ``index`` instead, a single job neither)."""
    size = (raw.get("arrayProperties") or {}).get("size")
    return int(size) if size is not None else None


@dataclass(frozen=True, slots=True)
class JobSummary:
    job_id: str
    job_name: str
    status: str
    created_at: int | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> JobSummary:
        return cls(
            job_id=str(raw["jobId"]),
            job_name=str(raw.get("jobName", "")),
            status=str(raw.get("status", "")),
            created_at=raw.get("createdAt"),
        )


@dataclass(frozen=True, slots=True)
class JobQueueInfo:
    name: str
    arn: str
    state: str
    status: str
    status_reason: str
    compute_environments: tuple[str, ...]
    #: The fair-share scheduling policy; "" for a FIFO queue.
    scheduling_policy_arn: str = ""


@dataclass(frozen=True, slots=True)
class ComputeEnvironmentInfo:
    name: str
    arn: str
    state: str
    status: str
    status_reason: str
    #: computeResources' vCPU bounds; None for an unmanaged environment.
    min_vcpus: int | None = None
    desired_vcpus: int | None = None
    max_vcpus: int | None = None
    #: ``ECS`` or ``EKS`` (``containerOrchestrationType``), and for EKS the cluster's namespace.
    orchestration: str = "ECS"
    kubernetes_namespace: str = ""


@dataclass(frozen=True, slots=True)
class JobDefinitionInfo:
    name: str
    arn: str
    revision: int
    status: str
    environment: dict[str, str]
    #: Where the executor places the task's command (container, EKS or neither).
    info: DefinitionInfo = CONTAINER
