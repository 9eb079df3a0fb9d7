"""The executor's API budget, checked by counting requests at a real localbatch (issue 4, part 4).

localbatch answers 429 to calls beyond a per-operation quota (a token bucket holding one second's
worth). An executor whose budget equals that quota is never answered 429; one squeezed far below its
own budget must still lose no task. Jobs run in localbatch's simulated mode (no process), so the
tests exercise the executor, not Airflow's task start-up.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.contract

INSTANT = {"seconds": 0}


def _delta(after: dict[str, Any], before: dict[str, Any], op: str, counter: str) -> int:
    return int(after.get(op, {}).get(counter, 0)) - int(before.get(op, {}).get(counter, 0))


@pytest.mark.parametrize(
    ("quotas", "options"),
    [
        pytest.param({"SubmitJob": 10}, {"submit_rate": 10}, id="submit-rate-equal-to-quota"),
        pytest.param(
            {"DescribeJobs": 1, "ListJobs": 1},
            {"status_calls_per_second": 1},
            id="status-budget-equal-to-quota",
        ),
    ],
)
def test_api_rate_never_exceeds_the_configured_budget(
    harness: Any, quotas: dict[str, float], options: dict[str, Any]
) -> None:
    executor = harness.start(options)
    # Quotas apply from here: the start-up health check is not part of the budget under test.
    harness.localbatch.set_faults({"quotas": quotas, "simulate": INSTANT})
    before = harness.localbatch.stats()
    loop = harness.run(executor, tasks=40, timeout=120)
    after = harness.localbatch.stats()

    assert set(loop.final.values()) == {"success"}
    assert {op: _delta(after, before, op, "throttled") for op in quotas} == dict.fromkeys(quotas, 0)
    assert _delta(after, before, "SubmitJob", "requests") == 40


def test_a_429_storm_loses_no_task_and_submits_each_once(harness: Any) -> None:
    # Our budget is 25 times what localbatch lets through: most SubmitJob calls are answered 429.
    executor = harness.start({"submit_rate": 50})
    harness.localbatch.set_faults({"quotas": {"SubmitJob": 2}, "simulate": INSTANT})
    loop = harness.run(executor, tasks=20, timeout=180)
    stats = harness.localbatch.stats()
    names = [job["jobName"] for job in harness.localbatch.jobs()]

    assert stats["SubmitJob"]["throttled"] > 0, "no 429 was answered: the storm did not happen"
    assert list(loop.final.values()) == ["success"] * 20
    assert len(names) == len(set(names)) == 20


class _NetworkGuard:
    """Records socket calls made from the thread that runs heartbeat() (the scheduler's loop)."""

    METHODS = ("connect", "connect_ex", "send", "sendall", "sendto", "recv", "recv_into")

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.calls: list[str] = []

    def wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(sock: socket.socket, *args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self.thread:
                self.calls.append(name)
            return original(sock, *args, **kwargs)

        return guarded


def test_heartbeat_makes_no_network_call(harness: Any) -> None:
    executor = harness.start({})
    harness.localbatch.set_faults({"latency_ms": 50, "simulate": {"seconds": 1}})
    guard = _NetworkGuard()
    with pytest.MonkeyPatch.context() as patch:
        for name in guard.METHODS:
            patch.setattr(socket.socket, name, guard.wrap(name, getattr(socket.socket, name)))
        loop = harness.queue(executor, tasks=30)
        loop.run_until(lambda: len(loop.final) >= 30, 120, "30 tasks to finish")
    executor.end()

    assert guard.calls == []
    assert list(loop.final.values()) == ["success"] * 30
    assert harness.localbatch.stats()["SubmitJob"]["requests"] >= 30
