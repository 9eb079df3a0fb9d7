"""Batch's own backstops in the rendered stack: how long idle instances stay, and how long a job may
wait in RUNNABLE for a reason no scale-up can cure.

* ``ComputeResources.ScalingPolicy.MinScaleDownDelayMinutes`` (EC2/Spot only; botocore's
  ``ComputeScalingPolicy.minScaleDownDelayMinutes``, 20 to 10,080 minutes): Batch keeps an instance
  this long after its last job ends, so a DAG that runs in bursts finds warm instances instead of
  waiting for new ones to boot. Unset (0) by default: the instances are billed while they wait.
* ``JobStateTimeLimitActions`` on the queue: Batch cancels a job that waited in RUNNABLE with one of
  :data:`CANCELLED_REASONS` for ``maxTimeSeconds`` (600 to 86,400). The executor fails such a task
  itself after ``[aws_batch_executor] misconfiguration_grace_seconds`` (300 by default); the queue's
  bound is longer, so it only acts when no executor watches the job (scheduler down, or jobs
  submitted by something else). ``CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY`` is left out on purpose:
  capacity comes back, and such a job should wait.
"""

from __future__ import annotations

from typing import Any

#: Batch's bounds for ``minScaleDownDelayMinutes`` (0 unsets it).
SCALE_DOWN_DELAY_MINUTES = (20, 10080)
#: Batch's bounds for ``JobStateTimeLimitAction.maxTimeSeconds``.
TIME_LIMIT_SECONDS = (600, 86400)
#: Longer than the executor's default grace (300 s) and than Batch's own delay in setting the reason.
DEFAULT_CANCEL_AFTER_SECONDS = 900
#: RUNNABLE reasons that no scale-up cures: the queue's compute environments cannot ever run the job.
CANCELLED_REASONS = (
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
)


def scale_down_delay_problem(minutes: int, *, fargate: bool) -> str | None:
    """Why ``minutes`` cannot be rendered, or None."""
    if minutes == 0:
        return None
    if fargate:
        return (
            f"scale_down_delay={minutes}: Fargate compute environments keep no instances; "
            "use --compute ec2 or spot"
        )
    low, high = SCALE_DOWN_DELAY_MINUTES
    if not low <= minutes <= high:
        return f"scale_down_delay={minutes}: expected 0 (unset) or {low} to {high} minutes"
    return None


def cancel_after_problem(seconds: int) -> str | None:
    low, high = TIME_LIMIT_SECONDS
    if not low <= seconds <= high:
        return f"cancel_misconfigured_after={seconds}: expected {low} to {high} seconds (Batch's bounds)"
    return None


def scaling_policy(minutes: int) -> dict[str, Any]:
    """The ``ComputeResources`` members for a scale-down delay of ``minutes`` (nothing when 0)."""
    return {"ScalingPolicy": {"MinScaleDownDelayMinutes": minutes}} if minutes else {}


def time_limit_actions(seconds: int) -> list[dict[str, Any]]:
    """The queue's ``JobStateTimeLimitActions``: cancel jobs stuck for a misconfiguration."""
    # CANCEL, not TERMINATE: the only action Batch allows for ECS, Fargate and EKS environments.
    return [
        {"Action": "CANCEL", "MaxTimeSeconds": seconds, "Reason": reason, "State": "RUNNABLE"}
        for reason in CANCELLED_REASONS
    ]
