"""Finding what an ambiguous SubmitJob created: which of several jobs of one try is kept."""

from __future__ import annotations

from airflow_aws_batch.aws.shapes import JobDetail
from airflow_aws_batch.runtime.lookups import kept_of_duplicates


def test_of_duplicate_jobs_of_one_try_the_one_that_started_is_kept() -> None:
    # It may be running the task (the execution API lets only the first start through): ending it
    # would kill the task while the kept one's start is refused.
    def job(job_id: str, created: int, started: int | None = None) -> JobDetail:
        status = "RUNNING" if started else "RUNNABLE"
        return JobDetail(job_id, "n", "q", status, created_at=created, started_at=started)

    assert kept_of_duplicates([job("old", 1, started=5), job("new", 2)]).job_id == "old"
    assert kept_of_duplicates([job("a", 1, started=9), job("b", 2, started=7)]).job_id == "b"
    assert kept_of_duplicates([job("old", 1), job("new", 2)]).job_id == "new"
    assert kept_of_duplicates([job("x", 3), job("y", 3)]).job_id == "y"  # ties: the later listed
    ended = JobDetail("ended", "n", "q", "FAILED", created_at=1, started_at=5)
    assert kept_of_duplicates([ended, job("new", 2)]).job_id == "new"  # no longer runs anything
