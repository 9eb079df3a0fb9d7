"""Task instances adopted before their job was confirmed, whose saved job turned out not to be their
current submission: what the lookup by tags decides for each (found, resubmitted, failed), and the
SubmitJob request that sends a job again, rebuilt from what DescribeJobs says of it.

The reads are the executor's (one listing of the active jobs for all of them, off the scheduler
thread; see :mod:`airflow_aws_batch.adoption`); the rules here read only what was described.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_aws_batch.adoption import Saved, check_saved, job_of_this_queueing
from airflow_aws_batch.aws.shapes import JobDetail
from airflow_aws_batch.core.messages import Terminate
from airflow_aws_batch.core.ownership import TryId, is_job_of, try_of
from airflow_aws_batch.submit import token_expires_at


@dataclass(frozen=True, slots=True)
class Awaited:
    """A task instance adopted before its job was confirmed: what verifying it takes."""

    key: Any
    wanted: TryId
    queued_ms: int | None
    ti_id: str | None
    #: Airflow had the task instance QUEUED (not RUNNING) when it was adopted: no task of this
    #: queueing can have started, so an earlier queueing's request may be sent again.
    queued: bool
    #: The job Airflow saved for it, as read (None: not read, or unknown to DescribeJobs).
    saved: JobDetail | None = None


#: A resubmit needs the workload's token to outlive a job's start by this much.
RESUBMIT_TOKEN_MARGIN_S = 60.0


@dataclass
class Resolution:
    """What the lookup by tags decided for task instances adopted before their job was known."""

    #: key -> the newest active job of this try and queueing, found by its tags: adopt it and tell
    #: Airflow its id.
    found: dict[Any, JobDetail] = field(default_factory=dict)
    #: key -> the saved job, of this queueing but FAILED before it started: adopt it (it resubmits).
    unstarted: dict[Any, JobDetail] = field(default_factory=dict)
    #: key -> (request, token expiry in epoch seconds): the saved job is this try's from an earlier
    #: queueing (a deferral's resume, a sensor's next poke) and nothing newer exists: send its request
    #: again, since no job runs the current queueing.
    resubmit: dict[Any, tuple[dict[str, Any], float]] = field(default_factory=dict)
    #: key -> why no job can run it: the task instance fails with this reason.
    fail: dict[Any, str] = field(default_factory=dict)
    #: key -> a new workload for a task instance Airflow still has QUEUED on this try with no job of
    #: its current queueing (nothing ran it): built from Airflow's DB as the scheduler builds one when
    #: it queues a task, and submitted like any other (taken out of ``fail``).
    rebuilt: dict[Any, Any] = field(default_factory=dict)
    #: Duplicates among the jobs found.
    terminate: list[Terminate] = field(default_factory=list)


def resolve_lost(
    active: dict[str, JobDetail],
    lost: Sequence[Awaited],
    *,
    deployment: str,
    team: str | None,
    now_s: float,
    children: dict[TryId, list[JobDetail]] | None = None,
) -> Resolution:
    """Decide, from the active jobs of the queues (:func:`active_jobs`), what becomes of each task
    instance adopted unconfirmed whose saved job turned out not to be its current submission.

    In order: the newest active job of this try, deployment and team created for the current queueing
    (found by its tags); else the saved job if it is of the current queueing but FAILED before it
    started (the executor resubmits it); else, for a task instance Airflow had QUEUED, the saved
    job's request sent again when that job is this try's from an earlier queueing and its workload
    (in its command) holds a token valid for ``RESUBMIT_TOKEN_MARGIN_S`` more; else it fails, with a
    reason that says what was found. A finished job of an earlier queueing is never reported.
    ``children``: array children found for the tries (:func:`find_array_children`), matches too.
    """
    out = Resolution()
    for item in lost:
        matches = sorted(
            [
                *(
                    d
                    for d in active.values()
                    if is_job_of(d.tags, item.wanted, deployment, deployment_required=True, team=team)
                    and job_of_this_queueing(d, item.queued_ms)
                ),
                *(children or {}).get(item.wanted, ()),
            ],
            key=lambda d: d.created_at or 0,
        )
        if matches:
            out.found[item.key] = matches[-1]
            out.terminate.extend(
                Terminate(d.job_id, "Duplicate Batch job of one task try") for d in matches[:-1]
            )
            continue
        saved = item.saved
        if saved is None:
            out.fail[item.key] = (
                "After a scheduler restart, the Batch job Airflow saved for this try is unknown to AWS "
                "Batch and no active job of this try was found by its tags; Airflow's retries decide "
                "what happens next"
            )
            continue
        verdict = check_saved(saved, item.wanted, item.queued_ms, deployment, team)
        if verdict is Saved.UNSTARTED:
            out.unstarted[item.key] = saved
            continue
        what = _saved_is(saved, item)
        same_try = is_job_of(saved.tags, item.wanted, deployment, deployment_required=False, team=team)
        request = resubmit_request(saved) if same_try else None
        expires = workload_expires_at(saved) if request is not None else None
        if not item.queued:
            why = "the task instance is running in Airflow, so a job of it may have run its task"
        elif not same_try:
            why = "that job is not of this try, so it holds no request for it"
        elif request is None:
            why = "that job's request cannot be sent again (an array child)"
        elif expires is None:
            why = "its workload is not in its command (workload store), so it cannot be sent again"
        elif expires < now_s + RESUBMIT_TOKEN_MARGIN_S:
            why = "its workload's token has expired, so it cannot be sent again"
        else:
            out.resubmit[item.key] = (request, expires)
            continue
        out.fail[item.key] = (
            f"After a scheduler restart, Batch job {saved.job_id} (the one Airflow saved) {what}, no "
            f"active job of this try was found by its tags, and {why}; Airflow's retries decide what "
            "happens next"
        )
    return out


def _saved_is(saved: JobDetail, item: Awaited) -> str:
    """What the saved job is, said for a task instance's failure reason."""
    if saved.is_terminated or saved.is_cancelled:
        return f"was {'terminated' if saved.is_terminated else 'cancelled'} ({saved.status})"
    job_try = try_of(saved.tags)
    if job_try is not None and job_try != item.wanted:
        return f"runs try {job_try.try_number} ({saved.status})"
    return (
        f"is of an earlier queueing of this try ({saved.status}, created at {saved.created_at} ms, the "
        f"task instance queued at {item.queued_ms} ms)"
    )


#: SubmitJob members a resubmit copies from the job's DescribeJobs entry as they are.
_RESUBMIT_MEMBERS = (
    "jobName",
    "jobQueue",
    "jobDefinition",
    "parameters",
    "tags",
    "propagateTags",
    "shareIdentifier",
    "schedulingPriority",
    "retryStrategy",
    "timeout",
)
#: Environment variables Batch sets itself and refuses in an override.
_BATCH_ENV_PREFIX = "AWS_BATCH_"


def resubmit_request(detail: JobDetail) -> dict[str, Any] | None:
    """The SubmitJob request that sends ``detail``'s job again, rebuilt from its DescribeJobs entry;
    None when it cannot be (an array child: its command names the array's object, whose workload for
    it the launcher finds by an array index that a single job does not have).

    The task's command (its workload, or with the workload store the object the job never read) and
    its environment come from the job's container (EKS: the pod's containers).
    """
    raw = detail.raw
    if not raw or ":" in detail.job_id or detail.array_size is not None:
        return None
    if "index" in (raw.get("arrayProperties") or {}):
        return None
    request: dict[str, Any] = {
        name: raw[name] for name in _RESUBMIT_MEMBERS if raw.get(name) not in (None, {}, [], "")
    }
    if not {"jobName", "jobQueue", "jobDefinition"} <= request.keys():
        return None
    if "tags" in request:  # "aws:" tags are Batch's own, refused in a request
        request["tags"] = {k: v for k, v in request["tags"].items() if not str(k).startswith("aws:")}
    retry = request.get("retryStrategy")
    if isinstance(retry, dict) and not retry.get("evaluateOnExit"):
        request["retryStrategy"] = {k: v for k, v in retry.items() if k != "evaluateOnExit"}
    container = raw.get("container")
    pod = (raw.get("eksProperties") or {}).get("podProperties")
    if isinstance(pod, dict):
        containers = []
        for found in pod.get("containers") or []:
            kept = {k: found[k] for k in ("name", "command", "args", "resources") if found.get(k)}
            env = [
                e for e in found.get("env") or [] if not str(e.get("name", "")).startswith(_BATCH_ENV_PREFIX)
            ]
            if env:
                kept["env"] = env
            containers.append(kept)
        if containers:
            request["eksPropertiesOverride"] = {"podProperties": {"containers": containers}}
    elif isinstance(container, dict):
        overrides = {k: container[k] for k in ("command", "resourceRequirements") if container.get(k)}
        env = [
            e
            for e in container.get("environment") or []
            if not str(e.get("name", "")).startswith(_BATCH_ENV_PREFIX)
        ]
        if env:
            overrides["environment"] = env
        if overrides:
            request["containerOverrides"] = overrides
    return request


def workload_expires_at(detail: JobDetail) -> float | None:
    """When the token of the workload in the job's command expires (epoch seconds); None when the
    command holds no workload (it names a stored object) or its token says no expiry."""
    for part in detail.command:
        if part.startswith("{") and '"token"' in part:
            try:
                token = json.loads(part).get("token")
            except ValueError:
                return None
            return token_expires_at(token) if isinstance(token, str) else None
    return None
