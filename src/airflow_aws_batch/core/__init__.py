"""Pure bookkeeping for the executor: no I/O, no threads, no Airflow imports.

The executor feeds events in (workloads queued, submit outcomes, job statuses seen, whether Airflow
saw a task start, revokes, adoptions) and gets commands (submit, terminate) and reports for Airflow back.
"""

from airflow_aws_batch.core.messages import (
    BackoffPolicy,
    CheckStarted,
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
from airflow_aws_batch.core.state import Core

__all__ = [
    "BackoffPolicy",
    "CheckStarted",
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
