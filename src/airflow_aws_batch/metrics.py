"""The executor's metrics (``aws_batch_executor.*``), through Airflow's stats client; never raises."""

from __future__ import annotations

import logging

from airflow_aws_batch.aws.batch import ErrorKind
from airflow_aws_batch.compat import stats as _stats
from airflow_aws_batch.core.causes import Cause
from airflow_aws_batch.core.state import Core
from airflow_aws_batch.failures import METRIC as FAILURE_METRIC

log = logging.getLogger(__name__)

METRIC_PREFIX = "aws_batch_executor"


def observe_call(operation: str, seconds: float, kind: ErrorKind | None) -> None:
    """Each AWS call's latency, and whether Batch throttled it (the AWS layer's observer)."""
    try:
        stats = _stats()
        stats.timing(f"{METRIC_PREFIX}.api_latency.{operation}", seconds * 1000.0)
        if kind is ErrorKind.THROTTLED:
            stats.incr(f"{METRIC_PREFIX}.throttled")
    except Exception:
        log.debug("metrics failed", exc_info=True)


def count_failure(cause: Cause) -> None:
    _stats().incr(f"{METRIC_PREFIX}.{FAILURE_METRIC}.{cause.value}")


def count_submits(submitted: int, failures: int) -> None:
    # Once per heartbeat, not per result: an array's answer is thousands of results.
    try:
        if submitted:
            _stats().incr(f"{METRIC_PREFIX}.submitted", submitted)
        if failures:
            _stats().incr(f"{METRIC_PREFIX}.submit_failures", failures)
    except Exception:
        log.debug("metrics failed", exc_info=True)


def emit_gauges(core: Core | None) -> None:
    """How many tasks wait to be sent, wait in Batch and run (each ``sync()``)."""
    if core is None:
        return
    counts = core.counts()
    try:
        stats = _stats()
        stats.gauge(f"{METRIC_PREFIX}.pending", counts.pending + counts.submitting + counts.checking)
        stats.gauge(f"{METRIC_PREFIX}.queued_in_batch", counts.submitted)
        stats.gauge(f"{METRIC_PREFIX}.running", counts.running)
    except Exception:
        log.debug("metrics failed", exc_info=True)
