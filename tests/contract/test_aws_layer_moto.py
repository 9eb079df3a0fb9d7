"""The AWS layer over real HTTP against moto's server: an independent implementation of the Batch API."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from airflow_aws_batch.aws import BatchApi, BatchApiError, ErrorKind
from airflow_aws_batch.aws.shapes import JobDetail
from airflow_aws_batch.core.messages import Submit, SubmitOutcome
from airflow_aws_batch.runtime import Runtime
from devstack import aws_client
from devstack.procs import free_port

from .conftest import BatchResources, Moto

pytestmark = pytest.mark.contract


@pytest.fixture
def api(moto_server: Moto) -> BatchApi:
    return BatchApi(lambda: moto_server.client("batch"), lambda: moto_server.client("logs"))


def request(res: BatchResources, name: str, **tags: str) -> dict[str, Any]:
    return {
        "jobName": name,
        "jobQueue": res.job_queue,
        "jobDefinition": res.job_definition,
        "containerOverrides": {"command": ["echo", "hello"]},
        "tags": {"dag_id": "d", "task_id": "t", **tags},
        "propagateTags": True,
    }


def wait_for_status(api: BatchApi, job_id: str, wanted: set[str], timeout: float = 20) -> JobDetail:
    deadline = time.monotonic() + timeout
    last: JobDetail | None = None
    while time.monotonic() < deadline:
        (last,) = api.describe_jobs([job_id])
        if last.status in wanted:
            return last
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {wanted}; last seen {last}")


def test_submit_describe_and_parse(api: BatchApi, batch_resources: BatchResources) -> None:
    job_id = api.submit_job(request(batch_resources, "contract-submit", try_number="1"))
    detail = wait_for_status(api, job_id, {"SUCCEEDED"})
    assert detail.job_name == "contract-submit"
    assert detail.tags["try_number"] == "1"
    assert detail.view().status == "SUCCEEDED"
    assert detail.log_stream_names and detail.log_stream_names[0].startswith(batch_resources.job_definition)


def test_describe_rejects_more_than_100_ids(api: BatchApi) -> None:
    with pytest.raises(ValueError, match="at most 100"):
        api.describe_jobs([str(uuid.uuid4()) for _ in range(101)])


def test_describe_unknown_job_returns_nothing(api: BatchApi) -> None:
    assert api.describe_jobs([str(uuid.uuid4())]) == []


def test_terminate(api: BatchApi, batch_resources: BatchResources) -> None:
    job_id = api.submit_job(request(batch_resources, "contract-terminate"))
    api.terminate_job(job_id, "revoked by test")
    (detail,) = api.describe_jobs([job_id])
    assert detail.job_id == job_id


def test_find_jobs_matches_name_time_and_tags(api: BatchApi, batch_resources: BatchResources) -> None:
    name = f"contract-find-{uuid.uuid4().hex[:8]}"
    before = int(time.time() * 1000) - 60_000
    ours = api.submit_job(request(batch_resources, name, try_number="2"))
    api.submit_job(request(batch_resources, name, try_number="1"))  # another try: different tags
    found = api.find_jobs(batch_resources.job_queue, name, before, {"dag_id": "d", "try_number": "2"})
    assert [j.job_id for j in found] == [ours]
    assert api.find_jobs(batch_resources.job_queue, name, before, {"try_number": "9"}) == []


def test_lookup_after_ambiguous_submits_takes_only_their_jobs_and_the_newest_of_them(
    api: BatchApi, batch_resources: BatchResources
) -> None:
    # Attempt 1's job FAILED before start (submission s1). Attempts 2 and 3 timed out, and both created
    # a job (s2, s3). All carry the same name and task tags: only the ambiguous calls' jobs may be
    # taken, and of those the newest, or the newer one would run untracked.
    name = f"contract-lookup-{uuid.uuid4().hex[:8]}"
    before = int(time.time() * 1000) - 60_000
    earlier = api.submit_job(request(batch_resources, name, try_number="1", submission="s1"))
    older = api.submit_job(request(batch_resources, name, try_number="1", submission="s2"))
    time.sleep(0.01)  # distinct createdAt (milliseconds)
    newer = api.submit_job(request(batch_resources, name, try_number="1", submission="s3"))
    runtime = Runtime(api, submit_rate=50, status_calls_per_second=1000)
    cmd = Submit(
        "k",
        request(batch_resources, name, try_number="1", submission="s4"),
        lookup_after_ms=before,
        lookup_only=True,
        lookup_submissions=("s2", "s3"),
    )
    done = runtime.submitter.submit_one(cmd)
    assert (done.outcome, done.job_id, done.found) == (SubmitOutcome.OK, newer, True), (earlier, older)
    only_earlier = Submit(
        "k", cmd.request, lookup_after_ms=before, lookup_only=True, lookup_submissions=("s9",)
    )
    # s1's job is not this one
    assert runtime.submitter.submit_one(only_earlier).outcome is SubmitOutcome.FAILED


def test_list_jobs_page(api: BatchApi, batch_resources: BatchResources) -> None:
    job_id = api.submit_job(request(batch_resources, "contract-list"))
    wait_for_status(api, job_id, {"SUCCEEDED"})
    summaries, _ = api.list_jobs_page(batch_resources.job_queue, "SUCCEEDED")
    assert job_id in {s.job_id for s in summaries}


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        pytest.param({"jobQueue": "no-such-queue"}, "ClientException", id="unknown-queue"),
        pytest.param({"jobDefinition": "no-such-definition"}, "ClientException", id="unknown-definition"),
    ],
)
def test_client_errors_are_classified(
    api: BatchApi, batch_resources: BatchResources, mutate: dict[str, str], code: str
) -> None:
    with pytest.raises(BatchApiError) as info:
        api.submit_job({**request(batch_resources, "contract-error"), **mutate})
    assert info.value.kind is ErrorKind.CLIENT
    assert info.value.code == code


def test_connection_refused_is_ambiguous() -> None:
    client = aws_client("batch", f"http://127.0.0.1:{free_port()}")
    api = BatchApi(lambda: client)
    with pytest.raises(BatchApiError) as info:
        api.describe_jobs(["x"])
    assert info.value.kind is ErrorKind.AMBIGUOUS


def test_resources(api: BatchApi, batch_resources: BatchResources) -> None:
    queue = api.describe_job_queue(batch_resources.job_queue)
    assert queue is not None and (queue.state, queue.status) == ("ENABLED", "VALID")
    (ce,) = api.describe_compute_environments(list(queue.compute_environments))
    assert ce.name == batch_resources.compute_environment
    definition = api.describe_job_definition(batch_resources.job_definition)
    assert definition is not None and definition.status == "ACTIVE"
    assert api.describe_job_queue("missing-queue") is None
    assert api.describe_job_definition("missing-def") is None


def test_rejected_credentials_rebuild_the_client(moto_server: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.config import Config

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    built: list[str] = []

    def factory() -> Any:
        # The first client has no credentials (as if they expired); the next one finds fresh ones.
        creds = None if not built else {"aws_access_key_id": "fresh", "aws_secret_access_key": "fresh"}
        built.append("client")
        return aws_client(
            "batch", moto_server.url, config=Config(retries={"max_attempts": 0}), credentials=creds
        )

    api = BatchApi(factory)
    with pytest.raises(BatchApiError) as info:
        api.describe_jobs(["x"])
    assert info.value.kind is ErrorKind.CREDENTIALS
    assert api.describe_jobs([str(uuid.uuid4())]) == []
    assert len(built) == 2
