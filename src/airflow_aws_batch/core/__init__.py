"""Pure bookkeeping for the executor: no I/O, no threads, no Airflow imports.

The executor feeds events in (workloads queued, submit outcomes, job statuses seen, revokes,
adoptions) and gets commands (submit, terminate) and reports for Airflow back.
"""

from airflow_aws_batch.core.state import (
    BackoffPolicy,
    Core,
    Fail,
    JobView,
    Report,
    RunningState,
    Submit,
    SubmitOutcome,
    Success,
    TaskEvent,
    Terminate,
)

__all__ = [
    "BackoffPolicy",
    "Core",
    "Fail",
    "JobView",
    "Report",
    "RunningState",
    "Submit",
    "SubmitOutcome",
    "Success",
    "TaskEvent",
    "Terminate",
]
