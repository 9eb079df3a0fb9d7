"""The s3:// workload store and the launcher against moto's S3 (a real HTTP server)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from typing import Any

import pytest

from airflow_aws_batch.workload_rules import decode_object, encode_object
from airflow_aws_batch.workloads import StoreError, open_store

from .conftest import Moto

pytestmark = pytest.mark.contract


@pytest.fixture
def bucket(moto_server: Moto) -> str:
    name = f"workloads-{uuid.uuid4().hex[:12]}"
    moto_server.client("s3").create_bucket(Bucket=name)
    return name


def _keys(moto: Moto, bucket: str) -> list[str]:
    listed = moto.client("s3").list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_put_writes_one_object_under_the_prefix(moto_server: Moto, bucket: str) -> None:
    store = open_store(f"s3://{bucket}/airflow/w", s3_client_factory=lambda: moto_server.client("s3"))
    url = store.put("dep/airflow-dag-task/sub-1", ['{"type": "ExecuteTask", "token": "t"}'])
    # The name ends in 128 random bits (32 hex digits) after the readable part.
    assert re.fullmatch(rf"s3://{bucket}/airflow/w/dep/airflow-dag-task/sub-1-[0-9a-f]{{32}}\.json", url)
    key = url.removeprefix(f"s3://{bucket}/")
    assert _keys(moto_server, bucket) == [key]
    body = moto_server.client("s3").get_object(Bucket=bucket, Key=key)
    assert body["ContentType"] == "application/json"
    assert decode_object(body["Body"].read()) == [{"type": "ExecuteTask", "token": "t"}]
    store.delete(url)
    assert _keys(moto_server, bucket) == []


def test_read_gives_back_what_put_wrote_and_says_when_it_is_gone(moto_server: Moto, bucket: str) -> None:
    # The orphan sweep reads an array's object this way (with the scheduler's connection).
    store = open_store(f"s3://{bucket}/airflow/w", s3_client_factory=lambda: moto_server.client("s3"))
    url = store.put("dep/airflow-dag-task/sub-2", ['{"ti": {"map_index": 4}}', '{"ti": {"map_index": 9}}'])
    assert decode_object(store.read(url)) == [{"ti": {"map_index": 4}}, {"ti": {"map_index": 9}}]
    store.delete(url)
    with pytest.raises(StoreError, match="NoSuchKey"):
        store.read(url)


def test_probe_leaves_nothing_behind(moto_server: Moto, bucket: str) -> None:
    store = open_store(f"s3://{bucket}/p", s3_client_factory=lambda: moto_server.client("s3"))
    store.probe()
    assert _keys(moto_server, bucket) == []


def test_a_missing_bucket_says_what_to_fix(moto_server: Moto) -> None:
    store = open_store("s3://no-such-bucket-here/p", s3_client_factory=lambda: moto_server.client("s3"))
    with pytest.raises(StoreError) as caught:
        store.put("n", ["{}"])
    message = str(caught.value)
    assert re.match(
        r"could not write s3://no-such-bucket-here/p/n-[0-9a-f]{32}\.json: NoSuchBucket: ", message
    )
    assert "the bucket does not exist" in message
    assert not caught.value.retryable
    with pytest.raises(StoreError, match="NoSuchBucket"):
        store.probe()


def test_an_unreachable_endpoint_is_retryable(moto_server: Moto) -> None:
    from botocore.config import Config

    from devstack import aws_client
    from devstack.procs import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=2)
    store = open_store("s3://some-bucket/p", s3_client_factory=lambda: aws_client("s3", dead, config=config))
    with pytest.raises(StoreError) as caught:
        store.put("n", ["{}"])
    assert caught.value.retryable
    assert "EndpointConnectionError" in str(caught.value)


def _launch(moto: Moto, url: str, index: str | None = None) -> subprocess.CompletedProcess[str]:
    env: dict[str, Any] = {
        k: v for k, v in os.environ.items() if not k.startswith("AWS_") or k == "AWS_BATCH_JOB_ARRAY_INDEX"
    }
    env.pop("AWS_BATCH_JOB_ARRAY_INDEX", None)
    # What a job role's default credentials look like to boto3, and a local S3 endpoint.
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=moto.url,
        AWS_EC2_METADATA_DISABLED="true",
    )
    if index is not None:
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = index
    return subprocess.run(
        [sys.executable, "-m", "airflow_aws_batch.launch", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_launcher_reads_and_deletes_a_single_s3_object(moto_server: Moto, bucket: str) -> None:
    s3 = moto_server.client("s3")
    # Refused by the Task SDK after it was read: the refusal names the workload picked.
    s3.put_object(Bucket=bucket, Key="w/one.json", Body=encode_object([json.dumps({"type": "picked"})]))
    s3.put_object(
        Bucket=bucket,
        Key="w/array.json",
        Body=encode_object([json.dumps({"type": f"child-{i}"}) for i in range(2)]),
    )
    result = _launch(moto_server, f"s3://{bucket}/w/one.json")
    assert result.returncode == 2
    assert "Input tag 'picked'" in result.stderr
    result = _launch(moto_server, f"s3://{bucket}/w/array.json", index="1")
    assert "Input tag 'child-1'" in result.stderr
    assert _keys(moto_server, bucket) == ["w/array.json"]


def test_launcher_reports_a_missing_s3_object_in_one_line(moto_server: Moto, bucket: str) -> None:
    result = _launch(moto_server, f"s3://{bucket}/w/gone.json")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    expected = f"airflow_aws_batch.launch: cannot read the workload: could not read s3://{bucket}/w/gone.json"
    assert lines[0].startswith(expected + ": NoSuchKey")
