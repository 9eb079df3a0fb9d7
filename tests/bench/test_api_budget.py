"""The executor never calls the Batch API faster than its configured budget.

Counted where AWS would count: at a real localbatch, whose per-operation quota (a token bucket holding
one second's worth, 429 beyond) is set equal to the executor's budget. Jobs are held in RUNNABLE by a
localbatch rule, so they stay tracked and polled without running anything. (The 429 storm and the
no-network heartbeat are covered in tests/contract.)
"""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.contract

HOLD = {"rules": [{"job_name_contains": "bench_test", "fault": "hold_runnable"}]}
STATUS_OPERATIONS = ("DescribeJobs", "ListJobs")


def _count(stats: dict[str, Any], operations: tuple[str, ...], counter: str) -> int:
    return sum(int(stats.get(op, {}).get(counter, 0)) for op in operations)


@pytest.mark.parametrize(
    ("budget_option", "budget", "tasks", "watch_s"),
    [
        pytest.param("submit_rate", 8, 40, 0.0, id="SubmitJob-at-submit_rate"),
        # 250 held jobs need three DescribeJobs per sweep: more than the budget allows per second.
        pytest.param("status_calls_per_second", 2, 250, 8.0, id="status-calls-at-status_calls_per_second"),
    ],
)
def test_api_rate_never_exceeds_the_configured_budget(
    harness: Any, budget_option: str, budget: int, tasks: int, watch_s: float
) -> None:
    # One attempt per task: the jobs the cleanup terminates are not resubmitted.
    options = {"submit_rate": 50, "max_submit_job_attempts": 1, budget_option: budget}
    executor = harness.start(options, parallelism=tasks)
    # "*" is one bucket shared by every operation without its own quota: all status calls together.
    quotas = {"SubmitJob": budget} if budget_option == "submit_rate" else {"SubmitJob": 50, "*": budget}
    harness.localbatch.set_faults({**HOLD, "quotas": quotas})
    before = harness.operations()
    loop = harness.queue(executor, tasks)
    try:
        loop.run_until(lambda: len(loop.job_ids) >= tasks, 120, f"a job for each of {tasks} tasks")
        watched = harness.operations()
        started = time.monotonic()
        while time.monotonic() - started < watch_s:
            loop.tick()
        elapsed = time.monotonic() - started
        after = harness.operations()
    finally:
        # Cleanup is not part of the budget under test: end the jobs from outside, let the executor
        # see them end, then end() returns at once.
        harness.localbatch.set_faults(HOLD)
        harness.terminate_all()
        loop.run_until(lambda: len(loop.final) >= tasks, 60, "the executor to see every job end")
        executor.end()

    assert _count(after, ("SubmitJob",), "requests") - _count(before, ("SubmitJob",), "requests") == tasks
    throttled = {op: _count(after, (op,), "throttled") - _count(before, (op,), "throttled") for op in after}
    assert throttled == dict.fromkeys(after, 0)
    if watch_s:
        calls = _count(after, STATUS_OPERATIONS, "requests") - _count(watched, STATUS_OPERATIONS, "requests")
        # A bucket of one second's worth, refilled at the budget: never more than this many.
        assert 0 < calls <= budget * (elapsed + 1)
