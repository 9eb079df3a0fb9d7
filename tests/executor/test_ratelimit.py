"""The token bucket bounds call rates; driven by a fake clock, then once with real threads."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_aws_batch.aws.ratelimit import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("rate", "capacity", "calls", "max_elapsed_floor"),
    [
        pytest.param(50.0, 5.0, 505, (505 - 5) / 50, id="quota-50"),
        pytest.param(5.0, 1.0, 26, (26 - 1) / 5, id="status-5"),
        pytest.param(1.0, 3.0, 3, 0.0, id="burst-within-capacity"),
    ],
)
def test_rate_never_exceeds_budget(
    rate: float, capacity: float, calls: int, max_elapsed_floor: float
) -> None:
    t = FakeTime()
    bucket = TokenBucket(rate, capacity, clock=t.clock, sleep=t.sleep)
    stamps = []
    for _ in range(calls):
        bucket.acquire()
        stamps.append(t.now)
    assert t.now >= max_elapsed_floor - 1e-9
    # In any window of one second, at most rate + capacity calls start.
    for i, start in enumerate(stamps):
        in_window = sum(1 for s in stamps[i:] if s < start + 1.0)
        assert in_window <= rate + capacity


def test_penalize_delays_next_call() -> None:
    t = FakeTime()
    bucket = TokenBucket(10.0, 1.0, clock=t.clock, sleep=t.sleep)
    bucket.acquire()
    bucket.penalize(2.0)
    bucket.acquire()
    assert t.now >= 2.0


def test_timeout_returns_false() -> None:
    t = FakeTime()
    bucket = TokenBucket(1.0, 1.0, clock=t.clock, sleep=t.sleep)
    assert bucket.acquire()
    assert not bucket.acquire(timeout=0.5)


def test_threads_share_the_budget() -> None:
    bucket = TokenBucket(100.0, 1.0)
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            bucket.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stamps.sort()
    # 40 calls at 100/s with capacity 1 cannot start faster than 39 intervals of 10 ms.
    assert stamps[-1] - stamps[0] >= 0.39 - 0.02
