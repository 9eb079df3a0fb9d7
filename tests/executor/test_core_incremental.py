"""The core's per-heartbeat queries, kept up to date incrementally, against a full scan.

``Core.counts()`` and ``Core.commands()`` do not look at every tracked workload (a heartbeat must cost
the same with 20 or 20,000 of them). Two cores are driven in lockstep through the same seeded random
sequence of events: the real one, and one whose ``counts()`` / ``commands()`` are the plain scans over
every entry. Every answer of the two must be the same, and the counts must equal a recount.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Hashable
from typing import Any

import pytest

from airflow_aws_batch.core import BackoffPolicy, Core, JobView, SubmitOutcome
from airflow_aws_batch.core.entries import Phase
from airflow_aws_batch.core.messages import Command, Submit
from airflow_aws_batch.core.table import Counts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScanningCore(Core):
    """The reference: counts and due submits found by looking at every entry, in ``table.entries`` order."""

    def counts(self) -> Counts:
        return recount(self)

    def in_flight(self) -> int:
        return sum(1 for e in self.table.entries.values() if e.phase is Phase.SUBMITTING)

    def commands(self, limit: int | None = None) -> list[Command]:
        out = self.table.drain()
        if not self.submitting:
            return out
        now = self.clock()
        submits = 0
        for entry in self.table.entries.values():
            if limit is not None and submits >= limit:
                break
            if entry.phase is not Phase.PENDING or entry.next_at > now or entry.request is None:
                continue
            out.append(self.start_submit(entry))
            submits += 1
        return out


def recount(core: Core) -> Counts:
    counts = Counts()
    for entry in core.table.entries.values():
        name = entry.phase.value
        setattr(counts, name, getattr(counts, name) + 1)
    return counts


def build(cls: type[Core], clock: Clock) -> Core:
    numbers = iter(range(1, 10_000_000))
    return cls(
        max_attempts=3,
        clock=clock,
        backoff=BackoffPolicy(base_s=2, max_s=30, wait_s=0.5),
        new_submission=lambda: f"s{next(numbers)}",
    )


def request(key: int) -> dict[str, Any]:
    return {
        "jobName": f"airflow-dag-task{key}",
        "jobQueue": "q",
        "jobDefinition": "d",
        "containerOverrides": {"command": ["python", "-m", "x", str(key)]},
        "tags": {"dag_id": "dag", "task_id": f"task{key}"},
    }


STATUSES = ("SUBMITTED", "RUNNABLE", "RUNNING", "SUCCEEDED", "FAILED", "WEIRD")


def run_sequence(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    clock = Clock()
    fast, scan = build(Core, clock), build(ScanningCore, clock)
    cores = (fast, scan)
    keys: list[Hashable] = list(range(40))
    sent: list[Submit] = []
    jobs: list[str] = []
    job_numbers = iter(range(1, 10_000_000))

    def both(method: str, *args: Any, **kwargs: Any) -> Any:
        answers = [getattr(core, method)(*args, **kwargs) for core in cores]
        assert answers[0] == answers[1], (method, args, kwargs)
        return answers[0]

    for step in range(steps):
        op = rng.random()
        if op < 0.22:
            key = rng.choice(keys)
            ti_id = uuid.UUID(int=rng.getrandbits(128)) if rng.random() < 0.8 else None
            expires = clock.now + rng.choice((5.0, 60.0, 600.0)) if rng.random() < 0.3 else None
            both("add", key, request(int(str(key))), ti_id=ti_id, try_number=1, expires_at=expires)
        elif op < 0.40:
            limit = rng.choice((None, 0, 1, 2, 5))
            commands = both("commands", limit)
            sent.extend(c for c in commands if isinstance(c, Submit))
        elif op < 0.58 and sent:
            cmd = sent.pop(rng.randrange(len(sent)))
            outcome = rng.choice(list(SubmitOutcome))
            job_id = f"job-{next(job_numbers)}" if outcome is SubmitOutcome.OK else None
            if job_id:
                jobs.append(job_id)
            both(
                "submit_result",
                cmd.key,
                outcome,
                job_id=job_id,
                reason="boom",
                sent_at_ms=int(clock.now * 1000),
                found=cmd.lookup_only and outcome is SubmitOutcome.OK,
            )
        elif op < 0.78 and jobs:
            job_id = rng.choice(jobs)
            status = rng.choice(STATUSES)
            reason = rng.choice(("", "because"))
            view = JobView(job_id, status, status_reason=reason, started=rng.random() < 0.3)
            both("job_seen", view)
        elif op < 0.82 and jobs:
            both("job_missing", rng.choice(jobs))
        elif op < 0.87:
            both("revoke", rng.choice(keys))
        elif op < 0.91:
            both("start_checked", rng.choice(keys), rng.choice((True, False, None)))
        elif op < 0.93:
            job_id = f"adopted-{next(job_numbers)}"
            jobs.append(job_id)
            both("adopt", rng.choice(keys) if rng.random() < 0.5 else f"a{step}", job_id)
        elif op < 0.935 and step > steps * 0.9:
            # Shutdown: nothing is submitted after this, so only near the end of a sequence.
            both("stop_submitting")
            both("commands", None)
        elif op < 0.937:
            both("terminate_all", "end")
        else:
            clock.now += rng.choice((0.1, 0.5, 1.0, 2.0, 5.0, 30.0))
        assert fast.counts() == recount(fast) == scan.counts()
        assert fast.in_flight() == scan.in_flight()
        assert len(fast) == len(scan)


@pytest.mark.parametrize("seed", range(12))
def test_counts_and_commands_match_a_full_scan(seed: int) -> None:
    run_sequence(seed, 3000)


def test_due_submits_go_out_in_the_order_the_workloads_were_added() -> None:
    clock = Clock()
    core = build(Core, clock)
    for key in range(5):
        core.add(key, request(key))
    first = core.commands(2)
    assert [c.key for c in first if isinstance(c, Submit)] == [0, 1]
    # Key 0 waits (throttled) while key 1 is submitted; 2..4 stay due, ahead of 0 once it is due again.
    core.submit_result(0, SubmitOutcome.WAIT)
    clock.now += 1
    assert [c.key for c in core.commands() if isinstance(c, Submit)] == [0, 2, 3, 4]


def test_a_heartbeat_does_not_look_at_every_tracked_workload() -> None:
    clock = Clock()
    core = build(Core, clock)
    for key in range(2000):
        core.add(key, request(key))
    for i, cmd in enumerate(core.commands()):
        assert isinstance(cmd, Submit)
        core.submit_result(cmd.key, SubmitOutcome.OK, job_id=f"job-{i}")
    core.commands()  # the Track commands
    visited = 0

    class Counting(dict):  # type: ignore[type-arg]
        def values(self) -> Any:
            nonlocal visited
            visited += len(self)
            return super().values()

    core.table.entries = Counting(core.table.entries)
    for _ in range(10):
        clock.now += 1
        assert core.commands() == []
        assert core.counts().submitted == 2000
    assert visited == 0
