"""Pure pieces of localbatch, driven without a server: transitions, retry rules, quotas, fault choices."""

from __future__ import annotations

import time

import pytest

from localbatch.faults import FaultConfig, Faults, TokenBucket
from localbatch.models import InvalidTransition, JobStatus, check_transition
from localbatch.runner import retry_action


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        pytest.param(JobStatus.SUBMITTED, JobStatus.PENDING, True, id="submitted-pending"),
        pytest.param(JobStatus.RUNNABLE, JobStatus.STARTING, True, id="runnable-starting"),
        pytest.param(JobStatus.RUNNING, JobStatus.RUNNABLE, True, id="running-retry"),
        pytest.param(JobStatus.SUBMITTED, JobStatus.RUNNING, False, id="no-skipping-to-running"),
        pytest.param(JobStatus.SUCCEEDED, JobStatus.FAILED, False, id="final-is-final"),
        pytest.param(JobStatus.RUNNABLE, JobStatus.SUCCEEDED, False, id="no-success-without-running"),
    ],
)
def test_transitions(old: JobStatus, new: JobStatus, allowed: bool) -> None:
    if allowed:
        check_transition(old, new)
    else:
        with pytest.raises(InvalidTransition):
            check_transition(old, new)


@pytest.mark.parametrize(
    ("rules", "status_reason", "reason", "exit_code", "action"),
    [
        pytest.param([], "Essential container in task exited", None, 1, "RETRY", id="no-rules-retry"),
        pytest.param([{"onExitCode": "1", "action": "EXIT"}], "x", None, 1, "EXIT", id="exit-code"),
        pytest.param([{"onExitCode": "2*", "action": "EXIT"}], "x", None, 137, "RETRY", id="exit-glob-miss"),
        pytest.param([{"onExitCode": "13*", "action": "exit"}], "x", None, 137, "EXIT", id="exit-glob-hit"),
        pytest.param(
            [{"onStatusReason": "Host EC2*", "action": "RETRY"}, {"onReason": "*", "action": "EXIT"}],
            "Host EC2 (instance i-1) terminated.",
            None,
            None,
            "RETRY",
            id="host-lost-retry",
        ),
        pytest.param(
            [{"onReason": "CannotPull*", "onExitCode": "1", "action": "EXIT"}],
            "x",
            "CannotPullContainerError: x",
            None,
            "RETRY",
            id="all-conditions-must-match",
        ),
    ],
)
def test_retry_action(
    rules: list[dict[str, str]], status_reason: str, reason: str | None, exit_code: int | None, action: str
) -> None:
    assert retry_action(rules, status_reason, reason, exit_code) == action


def test_token_bucket_allows_a_burst_of_one_second_then_refills() -> None:
    bucket = TokenBucket(5)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    bucket.stamp -= 1.0  # as if a second had passed
    assert bucket.take()
    assert time.monotonic() >= bucket.stamp


def test_rule_times_and_seeded_rates() -> None:
    config = FaultConfig.model_validate(
        {
            "seed": 5,
            "fail_before_start_rate": 0.3,
            "rules": [{"job_name_contains": "a", "fault": "host_lost", "times": 1}],
        }
    )
    faults = Faults(config)
    first = [faults.start_fault(f"task{i}") for i in range(20)]
    faults.replace(config)
    assert [faults.start_fault(f"task{i}") for i in range(20)] == first
    kinds = [f.kind if f else None for f in first]
    assert kinds.count("host_lost") == 1 and "fail_before_start" in kinds
