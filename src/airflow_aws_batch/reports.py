"""The core's reports as Airflow sees them: events in the executor's buffer and task event log rows."""

from __future__ import annotations

import functools
from typing import Any

from airflow_aws_batch.core.messages import Fail, Report, RunningState, Success, TaskEvent
from airflow_aws_batch.failures import record_failure
from airflow_aws_batch.metrics import count_failure
from airflow_aws_batch.wiring import Airflow, Wiring


class Reporter:
    """Hands the core's reports to Airflow (on the scheduler thread)."""

    def __init__(self, wiring: Wiring, airflow: Airflow) -> None:
        self._wiring = wiring
        self._airflow = airflow

    def report(self, reports: list[Report]) -> None:
        airflow = self._airflow
        for report in reports:
            key: Any = report.key
            if isinstance(report, RunningState):
                airflow.running_state(key, report.job_id)
            elif isinstance(report, Success):
                if report.moved_on:
                    # The slot is freed; no event, which Airflow would read as the task killed.
                    airflow.running.discard(key)
                    airflow.log_task_event(
                        event="aws_batch_success_not_reported",
                        extra=f"Batch job {report.job_id} SUCCEEDED after Airflow moved this try on to its "
                        "next run (reschedule or deferral); the executor reports no state for it",
                        ti_key=key,
                    )
                else:
                    airflow.success(key, report.job_id)
            elif isinstance(report, Fail):
                airflow.fail(key, report.reason)
                runtime = self._wiring.runtime
                if report.job_id and runtime is not None:
                    chore = functools.partial(
                        record_failure,
                        self._wiring.api,
                        report.job_id,
                        report.log_path,
                        report.reason,
                        count_failure,
                    )
                    runtime.run_later(chore)
            elif isinstance(report, TaskEvent):
                airflow.log_task_event(event=report.event, extra=report.extra, ti_key=key)
