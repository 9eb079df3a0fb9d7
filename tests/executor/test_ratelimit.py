"""The token bucket bounds call rates; driven by a fake clock, then once with real threads."""

from __future__ import annotations

import itertools
import math
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


def _calls_of_callers(rate: float, start: float, seed: int, seconds: float) -> list[float]:
    """When calls start, for a greedy poller and two occasional callers (adoption, a queue-kind read)
    sharing one bucket, each waking up a little late as real threads do (fake clock, seeded)."""
    import heapq
    import random

    rng = random.Random(seed)
    t = FakeTime()
    t.now = start
    bucket = TokenBucket(rate, 1.0, clock=t.clock, sleep=t.sleep)
    wakes = [(start, 0), (start + rng.uniform(0, 3), 1), (start + rng.uniform(0, 3), 2)]
    calls = []
    while wakes:
        t.now, caller = heapq.heappop(wakes)
        if t.now > start + seconds:
            break
        wait = bucket.try_acquire()
        if wait:
            heapq.heappush(wakes, (t.now + wait + rng.choice((0.0, 0.0, rng.uniform(0, 0.01))), caller))
            continue
        calls.append(t.now)
        if caller == 0:  # the poller: the next call at once, or after its cycle's idle rest
            pause = rng.choice((0.0, 0.0, 0.0, rng.uniform(0, 0.3), rng.uniform(0, 3)))
        else:
            pause = rng.uniform(0.5, 5)
        heapq.heappush(wakes, (t.now + pause, caller))
    return calls


@pytest.mark.parametrize("rate", [5.0, 2.0, 1.0, 10.0])
@pytest.mark.parametrize(("start", "seed"), [(0.0, 1), (1000.0, 2), (86_400.123, 3), (1e6 + 0.3, 4)])
def test_status_budget_holds_over_every_window(rate: float, start: float, seed: int) -> None:
    # The status budget (capacity 1): however callers interleave, any window [t, t + W) sees at most
    # ceil(rate * W) calls start, i.e. never more than rate * W whenever that is a whole number of calls.
    calls = _calls_of_callers(rate, start, seed, 120.0)
    assert len(calls) > rate * 20  # the callers did keep the bucket busy
    for window in (1.0, 2.5, 10.0, 60.0):
        allowed = math.ceil(rate * window - 1e-9)
        j = 0
        for i, begin in enumerate(calls):
            j = max(j, i)
            while j < len(calls) and calls[j] < begin + window:
                j += 1
            assert j - i <= allowed, f"{j - i} calls in [{begin}, {begin + window}) at {rate}/s"


def test_a_token_is_never_handed_out_early() -> None:
    t = FakeTime()
    t.now = 1e6 + 0.1  # a large clock, where sums of waits round
    bucket = TokenBucket(5.0, 1.0, clock=t.clock, sleep=t.sleep)
    stamps = []
    for _ in range(500):
        bucket.acquire()
        stamps.append(t.now)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.2
