"""The status reasons localbatch writes on attempts and jobs (AWS's words where AWS has them), and
the signature through which an ended attempt's exit code and reasons reach the runner."""

from __future__ import annotations

from collections.abc import Callable

from localbatch.models import Job

# Ends the job's current attempt: exit code (None: none known), reason, status reason. The runner
# then decides what the job becomes (retried, SUCCEEDED or FAILED).
Finish = Callable[[Job, int | None, str | None, str | None], None]

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
