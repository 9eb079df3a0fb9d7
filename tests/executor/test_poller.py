"""The poller's call budget: an in-memory Batch (no network) that counts the calls made to it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from airflow_aws_batch.aws.shapes import JobDetail, JobSummary
from airflow_aws_batch.core.messages import Track, Untrack
from airflow_aws_batch.runtime import AdoptedSeen, JobsMissing, JobsSeen, Runtime


class InMemoryBatch:
    """Answers the BatchApi methods the poller uses from a dict of job id -> status."""

    def __init__(self, jobs: dict[str, str]) -> None:
        self.jobs = jobs
        self.calls: Counter[str] = Counter()

    def describe_jobs(self, ids: list[str]) -> list[JobDetail]:
        assert len(ids) <= 100
        self.calls["DescribeJobs"] += 1
        return [
            JobDetail(job_id=i, job_name=i, job_queue="q", status=self.jobs[i]) for i in ids if i in self.jobs
        ]

    def list_jobs_page(
        self, job_queue: str, status: str, next_token: str | None = None, max_results: int = 1000
    ) -> tuple[list[JobSummary], str | None]:
        self.calls["ListJobs"] += 1
        matching = sorted(j for j, s in self.jobs.items() if s == status)
        start = int(next_token or 0)
        page = matching[start : start + max_results]
        token = str(start + max_results) if start + max_results < len(matching) else None
        return [JobSummary(job_id=j, job_name=j, status=status) for j in page], token


def poller(jobs: dict[str, str]) -> tuple[Runtime, InMemoryBatch]:
    fake = InMemoryBatch(jobs)
    runtime = Runtime(fake, submit_rate=50, status_calls_per_second=1000)  # type: ignore[arg-type]
    for job_id in jobs:
        runtime.track(Track(job_id, "q"))
    return runtime, fake


def drain(runtime: Runtime) -> tuple[list[Any], list[str]]:
    seen: list[Any] = []
    missing: list[str] = []
    while not runtime.results.empty():
        result = runtime.results.get()
        if isinstance(result, JobsSeen):
            seen.extend(result.views)
        elif isinstance(result, JobsMissing):
            missing.extend(result.job_ids)
    return seen, missing


@pytest.mark.parametrize(
    ("running", "expected_list_calls", "expected_describe_calls"),
    [
        pytest.param(150, 0, 2, id="few-running-described"),
        pytest.param(5000, 5, 1, id="many-running-listed-in-pages"),
    ],
)
def test_steady_cycle_cost(running: int, expected_list_calls: int, expected_describe_calls: int) -> None:
    jobs = {f"job-{i:05d}": "RUNNING" for i in range(running)}
    runtime, fake = poller(jobs)
    runtime.poll_once()  # first cycle learns every status
    seen, _ = drain(runtime)
    assert len(seen) == running
    for job_id in list(jobs)[:7]:
        jobs[job_id] = "SUCCEEDED"
    fake.calls.clear()
    runtime.poll_once()
    seen, _ = drain(runtime)
    assert sorted(v.job_id for v in seen) == sorted(list(jobs)[:7])
    assert all(v.status == "SUCCEEDED" for v in seen)
    assert fake.calls["ListJobs"] == expected_list_calls
    assert fake.calls["DescribeJobs"] == expected_describe_calls


def test_unchanged_jobs_are_not_reported_again_and_untracked_ones_not_polled() -> None:
    runtime, fake = poller({"a": "RUNNABLE", "b": "RUNNABLE"})
    runtime.poll_once()
    assert len(drain(runtime)[0]) == 2
    runtime.track(Untrack("b"))
    fake.calls.clear()
    runtime.poll_once()
    assert drain(runtime) == ([], [])
    assert fake.calls["DescribeJobs"] == 1


def test_a_job_tracked_again_keeps_its_last_status_and_one_untracked_starts_afresh() -> None:
    runtime, _ = poller({"a": "RUNNING", "b": "RUNNING"})
    runtime.poll_once()
    assert len(drain(runtime)[0]) == 2
    # Tracked again while tracked (e.g. adopted again): its unchanged status is not news.
    runtime.track(Track("a", "q"))
    runtime.track(Untrack("b"))
    runtime.track(Track("b", "q"))
    runtime.poll_once()
    seen, missing = drain(runtime)
    # Untracked in between: nothing of it is remembered, so its status is reported again.
    assert ([v.job_id for v in seen], missing) == (["b"], [])


def test_missing_job_reported_only_after_grace() -> None:
    now = [0.0]
    fake = InMemoryBatch({})
    runtime = Runtime(fake, submit_rate=50, status_calls_per_second=1000, clock=lambda: now[0])  # type: ignore[arg-type]
    runtime.track(Track("ghost", None))
    runtime.poll_once()
    assert drain(runtime) == ([], [])  # eventual consistency right after SubmitJob
    now[0] += 61
    runtime.poll_once()
    assert drain(runtime) == ([], ["ghost"])


def test_jobs_adopted_unconfirmed_are_handed_over_not_reported_nor_missing() -> None:
    # A large adoption: the first description of a job can come minutes after it was tracked.
    now = [0.0]
    fake = InMemoryBatch({"saved": "RUNNING", "other": "RUNNABLE"})
    runtime = Runtime(fake, submit_rate=50, status_calls_per_second=1000, clock=lambda: now[0])  # type: ignore[arg-type]
    for job_id in ("saved", "gone"):
        runtime.track(Track(job_id, None, unconfirmed=True))
    runtime.track(Track("other", None))
    runtime.poller.take_in()  # taken in now; described minutes later, in a long first cycle
    now[0] += 300
    runtime.poll_once()
    results = []
    while not runtime.results.empty():
        results.append(runtime.results.get())
    handed = [r for r in results if isinstance(r, AdoptedSeen)]
    assert [(d.job_id, v.status) for r in handed for d, v in r.seen] == [("saved", "RUNNING")]
    assert [j for r in handed for j in r.missing] == ["gone"]  # at once: an old id, no grace
    assert [v.job_id for r in results if isinstance(r, JobsSeen) for v in r.views] == ["other"]
    assert not [r for r in results if isinstance(r, JobsMissing)]
    # Seen once: the next cycle reports it like any other job, only when it changes.
    fake.jobs["saved"] = "SUCCEEDED"
    runtime.poll_once()
    assert drain(runtime) == ([JobDetail("saved", "saved", "q", "SUCCEEDED").view()], [])


def test_adopted_jobs_learn_their_queue_and_move_to_list_jobs() -> None:
    jobs = {f"adopted-{i:04d}": "RUNNING" for i in range(300)}
    fake = InMemoryBatch(jobs)
    runtime = Runtime(fake, submit_rate=50, status_calls_per_second=1000)  # type: ignore[arg-type]
    for job_id in jobs:
        runtime.track(Track(job_id, None))  # adoption does not know the queue
    runtime.poll_once()
    drain(runtime)
    fake.calls.clear()
    runtime.poll_once()
    assert (fake.calls["ListJobs"], fake.calls["DescribeJobs"]) == (1, 0)


class MalformedBatchClient:
    """A boto3 ``batch`` client stand-in whose DescribeJobs answer carries broken entries.

    No real server answers like this; the stand-in exists to show one bad entry cannot stall polling.
    """

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = jobs

    def describe_jobs(self, jobs: list[str]) -> dict[str, Any]:
        return {"jobs": self.jobs}


@pytest.mark.parametrize(
    "bad_entry",
    [
        pytest.param({"status": "RUNNING"}, id="no-jobId"),
        pytest.param(
            {"jobId": "bad", "status": "FAILED", "container": {"exitCode": "n/a"}}, id="bad-exitCode"
        ),
        pytest.param("not-an-object", id="not-an-object"),
    ],
)
def test_a_malformed_describe_entry_does_not_stall_the_other_jobs(bad_entry: Any) -> None:
    from airflow_aws_batch.aws.batch import BatchApi

    client = MalformedBatchClient([bad_entry, {"jobId": "good", "status": "SUCCEEDED"}])
    runtime = Runtime(BatchApi(lambda: client), submit_rate=50, status_calls_per_second=1000)
    runtime.track(Track("good", "q"))
    runtime.poll_once()
    seen, _ = drain(runtime)
    assert [(v.job_id, v.status) for v in seen] == [("good", "SUCCEEDED")]
