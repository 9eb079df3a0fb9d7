"""A thread-safe token bucket that bounds how many AWS API calls start per second.

The worker threads share one bucket per budget and block on it (a lock and a sleep), which is why
it lives with the AWS seam and not in :mod:`airflow_aws_batch.core`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_MIN_WAIT_S = 1e-6


class TokenBucket:
    """``rate`` tokens per second, holding at most ``capacity``; ``acquire`` blocks until one is free.

    The capacity is small on purpose: AWS counts calls per second, so a large burst after an idle
    period would be answered with 429s.

    The budget it keeps, whatever the callers and threads: at most ``capacity + rate * W`` calls start
    in any window of ``W`` seconds. With a capacity of 1 (the status budget) that is one call every
    ``1 / rate`` seconds at the closest, i.e. at most ``ceil(rate * W)`` calls in any window
    ``[t, t + W)``. A token is never handed out before it has fully accrued: rounding may make a
    caller wait a microsecond longer, never a call start early.
    """

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.capacity = float(capacity) if capacity is not None else max(1.0, self.rate / 10)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` if available and return 0, else return the seconds to wait (nothing taken)."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            if self._tokens >= tokens:
                self._tokens -= tokens
                return 0.0
            # At least a microsecond: a wait rounded down to nothing would spin (a fake clock
            # advanced by exactly this wait may land a rounding error short of the token).
            return max((tokens - self._tokens) / self.rate, _MIN_WAIT_S)

    def acquire(self, tokens: float = 1.0, timeout: float | None = None) -> bool:
        """Block until ``tokens`` are taken; False if ``timeout`` seconds would be exceeded."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            wait = self.try_acquire(tokens)
            if wait == 0.0:
                return True
            if deadline is not None and self._clock() + wait > deadline:
                return False
            self._sleep(wait)

    def penalize(self, seconds: float) -> None:
        """Spend ``seconds`` worth of future tokens, e.g. after a 429, so callers back off together."""
        with self._lock:
            self._refill(self._clock())
            self._tokens -= seconds * self.rate
