"""What the lookup by tags decides for task instances adopted unconfirmed whose saved job was stale
(:func:`airflow_aws_batch.lost.resolve_lost`): rules only, from DescribeJobs entries."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from airflow_aws_batch.aws.shapes import JobDetail
from airflow_aws_batch.core.ownership import TryId
from airflow_aws_batch.lost import Awaited, resolve_lost

WANTED = TryId("dag", "task", "run", -1, 1)
QUEUED_MS = 1_000_000_000
DEPLOYMENT = "dep"


def token_for(seconds: float) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'exp': int(time.time() + seconds)})}.sig"


def job(
    job_id: str,
    *,
    status: str = "RUNNING",
    created_ms: int = QUEUED_MS + 5_000,
    command: list[str] | None = None,
    **tags: str,
) -> JobDetail:
    all_tags = {**WANTED.tags(), "deployment": DEPLOYMENT, **tags}
    return JobDetail.parse(
        {
            "jobId": job_id,
            "jobName": "airflow-dag-task",
            "jobQueue": "q",
            "jobDefinition": "def",
            "status": status,
            "createdAt": created_ms,
            "tags": all_tags,
            "container": {"command": command or ["true"]},
        }
    )


def lost(saved: JobDetail | None, *, queued: bool = True) -> Awaited:
    return Awaited(key="k", wanted=WANTED, queued_ms=QUEUED_MS, ti_id=None, queued=queued, saved=saved)


def resolve(active: list[JobDetail], item: Awaited) -> Any:
    return resolve_lost(
        {d.job_id: d for d in active}, [item], deployment=DEPLOYMENT, team=None, now_s=time.time()
    )


def earlier(command: list[str] | None = None) -> JobDetail:
    return job("old", status="SUCCEEDED", created_ms=QUEUED_MS - 60_000, command=command)


def test_the_newest_job_of_this_queueing_is_found_and_the_others_terminated() -> None:
    out = resolve([job("a", created_ms=QUEUED_MS + 1), job("b", created_ms=QUEUED_MS + 2)], lost(earlier()))
    assert out.found["k"].job_id == "b"
    assert [t.job_id for t in out.terminate] == ["a"]


def test_jobs_of_another_deployment_team_or_queueing_are_never_found() -> None:
    others = [
        job("other-deployment", deployment="someone-else"),
        job("other-team", airflow_team="team-b"),
        job("earlier-queueing", created_ms=QUEUED_MS - 60_000),
    ]
    out = resolve(others, lost(earlier()))
    assert not out.found and "k" in out.fail


def test_an_earlier_queueings_job_with_a_live_token_is_sent_again() -> None:
    workload = json.dumps({"token": token_for(3600)})
    out = resolve([], lost(earlier([workload])))
    request, _ = out.resubmit["k"]
    assert request["containerOverrides"]["command"] == [workload]
    assert not out.fail


def test_nothing_is_sent_again_when_it_cannot_start_the_task() -> None:
    expired = json.dumps({"token": token_for(30)})  # within the margin
    stored = "file:///store/object"
    cases = {
        "token has expired": lost(earlier([expired])),
        "workload store": lost(earlier([stored])),
        "running in Airflow": lost(earlier([json.dumps({"token": token_for(3600)})]), queued=False),
        "not of this try": lost(job("old", status="SUCCEEDED", try_number="0")),
        "unknown to AWS Batch": lost(None),
    }
    for why, item in cases.items():
        out = resolve([], item)
        assert not out.resubmit and not out.found, why
        assert why in out.fail["k"], out.fail["k"]


def test_a_saved_job_of_this_queueing_that_failed_before_it_started_is_adopted_to_resubmit() -> None:
    failed = job("failed", status="FAILED")
    assert resolve([], lost(failed)).unstarted["k"] is failed
    # ... unless a newer job of the try runs: the scheduler resubmitted it before it died.
    assert resolve([job("newer")], lost(failed)).found["k"].job_id == "newer"
