"""The poller with status events: each change is taken only if it moves its job forward, polling
only reconciles (quiet jobs, or everything while the queue fails or events are found lost). The
in-memory Batch of test_poller.py counts the calls; the events are what the listener hands over."""

from __future__ import annotations

import json
import time
from typing import Any

from test_poller import InMemoryBatch, drain

from airflow_aws_batch.aws.events import StateChange, parse_event
from airflow_aws_batch.aws.shapes import JobDetail
from airflow_aws_batch.aws.sqs import EventQueue
from airflow_aws_batch.core.messages import Track, Untrack
from airflow_aws_batch.runtime import Runtime


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TimedBatch(InMemoryBatch):
    """Also says when a job started or stopped (what tells a lost event from one on its way)."""

    def __init__(self, jobs: dict[str, str]) -> None:
        super().__init__(jobs)
        self.changed_ms: dict[str, int] = {}

    def describe_jobs(self, ids: list[str]) -> list[JobDetail]:
        self.calls["DescribeJobs"] += 1
        at = {i: self.changed_ms.get(i) for i in ids}
        return [
            JobDetail(
                job_id=i,
                job_name=i,
                job_queue="q",
                status=self.jobs[i],
                started_at=at[i],
                stopped_at=at[i] if self.jobs[i] in ("SUCCEEDED", "FAILED") else None,
            )
            for i in ids
            if i in self.jobs
        ]


def event(job_id: str, status: str, attempts: int = 0) -> StateChange:
    change = parse_event(
        json.dumps(
            {
                "id": f"{job_id}-{status}",
                "source": "aws.batch",
                "detail-type": "Batch Job State Change",
                "detail": {"jobId": job_id, "jobName": job_id, "jobQueue": "q", "status": status}
                | {"attempts": [{}] * attempts},
            }
        )
    )
    assert change is not None
    return change


def with_events(jobs: dict[str, str], *, live: bool = True) -> tuple[Runtime, TimedBatch, Clock]:
    fake = TimedBatch(jobs)
    clock = Clock()
    queue = EventQueue(lambda: None, "events")  # the listener is not started: changes are handed over below
    runtime = Runtime(
        fake,  # type: ignore[arg-type]
        submit_rate=50,
        status_calls_per_second=1000,
        clock=clock,
        status_events=queue,
    )
    assert runtime.events is not None
    if live:
        runtime.events.delivering()
    for job_id in jobs:
        runtime.track(Track(job_id, "q"))
    runtime.poller.take_in()  # tracked now
    return runtime, fake, clock


def hand_over(runtime: Runtime, *changes: StateChange) -> None:
    runtime.threads.event_inbox.put(list(changes))


def statuses(runtime: Runtime) -> list[tuple[str, str]]:
    seen, missing = drain(runtime)
    assert missing == []
    return [(v.job_id, v.status) for v in seen]


def test_each_change_is_reported_once_and_never_backwards_without_a_status_call() -> None:
    runtime, fake, _ = with_events({"a": "RUNNABLE", "b": "RUNNABLE"})
    hand_over(runtime, event("a", "RUNNING"), event("b", "RUNNABLE"))
    runtime.poll_once()
    assert statuses(runtime) == [("a", "RUNNING"), ("b", "RUNNABLE")]
    # Duplicated, late and reordered: a's RUNNABLE and RUNNING again, then its end, then its STARTING.
    hand_over(runtime, event("a", "RUNNABLE"), event("a", "RUNNING"), event("a", "SUCCEEDED"))
    hand_over(runtime, event("a", "STARTING"), event("a", "SUCCEEDED"))
    runtime.poll_once()
    assert statuses(runtime) == [("a", "SUCCEEDED")]
    assert sum(fake.calls.values()) == 0


def test_a_job_batch_retries_goes_back_to_runnable_with_one_more_attempt() -> None:
    runtime, _, _ = with_events({"a": "RUNNING"})
    hand_over(runtime, event("a", "RUNNING"), event("a", "RUNNABLE", attempts=1), event("a", "RUNNING"))
    runtime.poll_once()
    assert statuses(runtime) == [("a", "RUNNING"), ("a", "RUNNABLE")]


def test_polling_reconciles_only_jobs_without_news_for_a_while() -> None:
    runtime, fake, clock = with_events({"a": "RUNNABLE", "b": "RUNNABLE"})
    quiet = runtime.poller.quiet_s
    clock.now += quiet / 2
    hand_over(runtime, event("a", "RUNNING"))
    runtime.poll_once()
    assert statuses(runtime) == [("a", "RUNNING")]
    assert sum(fake.calls.values()) == 0
    clock.now += quiet / 2 + 1  # b had no news since it was tracked; a had one half as long ago
    runtime.poll_once()
    assert statuses(runtime) == [("b", "RUNNABLE")]
    assert fake.calls["DescribeJobs"] == 1
    clock.now += quiet / 2
    fake.calls.clear()
    runtime.poll_once()  # a's turn now; b was just described
    assert fake.calls["DescribeJobs"] == 1
    assert runtime.poller.events_missed == 0


def test_without_deliveries_every_job_is_polled_as_without_events() -> None:
    runtime, fake, _ = with_events({"a": "RUNNABLE", "b": "RUNNING"}, live=False)
    runtime.poll_once()
    assert sorted(statuses(runtime)) == [("a", "RUNNABLE"), ("b", "RUNNING")]
    fake.jobs["a"] = "SUCCEEDED"
    runtime.poll_once()
    assert statuses(runtime) == [("a", "SUCCEEDED")]


def test_a_lost_end_found_by_reconciling_turns_full_polling_on_for_a_while() -> None:
    runtime, fake, clock = with_events({"a": "RUNNING", "b": "RUNNING"})
    hand_over(runtime, event("a", "RUNNING"), event("b", "RUNNING"))
    runtime.poll_once()
    drain(runtime)
    # a ended 20 s ago and its event never came; b ended a moment ago, its event may be on its way.
    fake.jobs.update(a="SUCCEEDED", b="SUCCEEDED")
    now_ms = int(time.time() * 1000)
    fake.changed_ms.update(a=now_ms - 20_000, b=now_ms - 1_000)
    runtime.events.live_since_ms = now_ms - 60_000  # type: ignore[union-attr]  # delivering for a minute
    clock.now += runtime.poller.quiet_s + 1
    runtime.poll_once()
    assert sorted(statuses(runtime)) == [("a", "SUCCEEDED"), ("b", "SUCCEEDED")]
    assert runtime.poller.events_missed == 1
    assert not runtime.poller.events_reconcile(clock.now)
    clock.now += runtime.poller.missed_hold_s + 1
    assert runtime.poller.events_reconcile(clock.now)


def test_a_description_behind_an_event_is_neither_reported_nor_missing() -> None:
    runtime, fake, clock = with_events({"a": "RUNNING"})
    hand_over(runtime, event("a", "SUCCEEDED"))
    runtime.poll_once()
    assert statuses(runtime) == [("a", "SUCCEEDED")]
    clock.now += runtime.poller.quiet_s + 120  # past the missing grace too
    runtime.poll_once()  # DescribeJobs still says RUNNING
    assert fake.calls["DescribeJobs"] == 1
    assert statuses(runtime) == []


def test_a_change_before_the_job_is_tracked_is_taken_when_it_is() -> None:
    runtime, _, clock = with_events({})
    hand_over(runtime, event("fast", "RUNNING"), event("fast", "SUCCEEDED"), event("other", "RUNNING"))
    runtime.poll_once()
    assert statuses(runtime) == []
    runtime.track(Track("fast", "q"))
    runtime.poll_once()
    runtime.poll_once()
    assert statuses(runtime) == [("fast", "SUCCEEDED")]
    runtime.track(Untrack("fast"))  # as the core does once it has the end
    # Kept a while only: a job tracked later than that learns of it by polling.
    clock.now += 1000
    hand_over(runtime, event("late", "RUNNING"))
    runtime.poll_once()
    clock.now += 1000
    hand_over(runtime, event("someone-elses", "RUNNING"))
    runtime.track(Track("late", "q"))
    runtime.poll_once()
    runtime.poll_once()
    assert ("late", "RUNNING") not in statuses(runtime)


def test_events_of_jobs_adopted_unconfirmed_wait_for_their_verified_description() -> None:
    runtime, fake, _ = with_events({})
    fake.jobs["old"] = "RUNNING"
    runtime.track(Track("old", "q", unconfirmed=True))
    hand_over(runtime, event("old", "RUNNING"))
    runtime.poll_once()
    results: list[Any] = []
    while not runtime.results.empty():
        results.append(runtime.results.get())
    assert [type(r).__name__ for r in results] == ["AdoptedSeen"]


def test_one_listing_reconciles_every_running_job_it_shows_not_only_those_due() -> None:
    # 3,000 running jobs whose RUNNING events came 300 a second, as a large fill starts them.
    # Reconciling lists the RUNNING jobs (3 pages) when more than 200 of them are due; if only those
    # counted as heard, each second's cohort would come due on its own and cost a whole listing (30
    # pages a minute here; at 20,000 jobs, 400 a minute: the whole status budget).
    jobs = {f"j{i:04d}": "RUNNING" for i in range(3000)}
    runtime, fake, clock = with_events(jobs)
    ids = sorted(jobs)
    for second in range(10):
        hand_over(runtime, *(event(j, "RUNNING") for j in ids[second * 300 : (second + 1) * 300]))
        runtime.poll_once()
        clock.now += 1
    drain(runtime)
    assert sum(fake.calls.values()) == 0
    for _ in range(170):  # 50 s before the first cohort is due, then two minutes
        runtime.poll_once()
        clock.now += 1
    assert statuses(runtime) == []
    # The first cohort due lists them all; then once every quiet_s (60 s) for all of them together.
    assert fake.calls == {"ListJobs": 3 * 2}
    assert runtime.poller.events_missed == 0


def held_after_a_lost_end() -> tuple[Runtime, TimedBatch, Clock]:
    """Two running jobs, and a third whose end polling found 20 s late: every job is polled now."""
    runtime, fake, clock = with_events({"a": "RUNNING", "b": "RUNNING", "lost": "RUNNING"})
    hand_over(runtime, event("a", "RUNNING"), event("b", "RUNNING"), event("lost", "RUNNING"))
    runtime.poll_once()
    now_ms = int(time.time() * 1000)
    runtime.events.live_since_ms = now_ms - 60_000  # type: ignore[union-attr]
    fake.jobs["lost"] = "SUCCEEDED"
    fake.changed_ms["lost"] = now_ms - 20_000
    clock.now += runtime.poller.quiet_s + 1
    runtime.poll_once()
    assert statuses(runtime)[-1] == ("lost", "SUCCEEDED")
    assert runtime.poller.events_missed == 1 and not runtime.poller.events_reconcile(clock.now)
    return runtime, fake, clock


def test_while_events_are_lost_polling_every_job_goes_on_past_the_hold() -> None:
    runtime, fake, clock = held_after_a_lost_end()
    poller = runtime.poller
    # Most of the hold later, full polling finds a's end a second after it happened: its event may
    # still come, so it is no loss yet.
    clock.now += poller.missed_hold_s - 10
    fake.jobs["a"] = "SUCCEEDED"
    fake.changed_ms["a"] = int(time.time() * 1000) - 1_000
    runtime.poll_once()
    assert statuses(runtime) == [("a", "SUCCEEDED")]
    assert poller.events_missed == 1
    # No event for it by the time one would have come (miss_after_s after the end): events are still
    # being lost, and every job is polled for missed_hold_s more.
    poller.miss_after_s = 0.5
    clock.now += 1
    runtime.poll_once()
    assert poller.events_missed == 2
    clock.now += 20  # past the first hold
    assert not poller.events_reconcile(clock.now)
    clock.now += poller.missed_hold_s
    assert poller.events_reconcile(clock.now)


def test_a_change_polling_found_first_is_no_loss_when_its_event_comes() -> None:
    runtime, fake, clock = held_after_a_lost_end()
    poller = runtime.poller
    fake.jobs["b"] = "SUCCEEDED"
    fake.changed_ms["b"] = int(time.time() * 1000) - 1_000
    runtime.poll_once()
    assert statuses(runtime) == [("b", "SUCCEEDED")]
    runtime.track(Untrack("b"))  # as the core does once it has the end
    hand_over(runtime, event("b", "SUCCEEDED"))  # late, for a job no longer tracked
    poller.miss_after_s = 0.5
    clock.now += 1
    runtime.poll_once()
    assert poller.events_missed == 1
    clock.now += poller.missed_hold_s
    assert poller.events_reconcile(clock.now)


def test_a_change_found_while_the_queue_cannot_be_read_is_no_loss() -> None:
    runtime, fake, clock = with_events({"a": "RUNNING"})
    hand_over(runtime, event("a", "RUNNING"))
    runtime.poll_once()
    drain(runtime)
    runtime.events.live_since_ms = int(time.time() * 1000) - 60_000  # type: ignore[union-attr]
    runtime.events.live.clear()  # type: ignore[union-attr]  # its events wait in the queue
    fake.jobs["a"] = "SUCCEEDED"
    fake.changed_ms["a"] = int(time.time() * 1000) - 1_000
    runtime.poll_once()
    assert statuses(runtime) == [("a", "SUCCEEDED")]
    poller = runtime.poller
    poller.miss_after_s = 0.5
    clock.now += 1
    runtime.poll_once()
    assert poller.events_missed == 0
