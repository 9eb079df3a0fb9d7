"""The workload store's rules: store and object URLs (and their config errors), the object format,
object names."""

from __future__ import annotations

import json

import pytest

from airflow_aws_batch.config import ConfigError, parse_options
from airflow_aws_batch.workload_rules import (
    decode_object,
    encode_object,
    object_key,
    parse_object_url,
    parse_store_url,
)

REQUIRED = {"job_queue": "q", "job_definition": "d", "job_name": "airflow"}


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        pytest.param("s3://my-bucket/airflow/workloads", "s3://my-bucket/airflow/workloads", id="s3-prefix"),
        pytest.param("s3://my-bucket/airflow/", "s3://my-bucket/airflow", id="s3-trailing-slash"),
        pytest.param("s3://my-bucket", "s3://my-bucket", id="s3-no-prefix"),
        pytest.param("s3://my.bucket-1/", "s3://my.bucket-1", id="s3-dots"),
        pytest.param("file:///var/lib/airflow/workloads/", "file:///var/lib/airflow/workloads", id="file"),
        pytest.param("file://localhost/srv/w", "file:///srv/w", id="file-localhost"),
        pytest.param(" s3://b-1/p ", "s3://b-1/p", id="blanks-around"),
    ],
)
def test_store_urls_accepted(url: str, normalised: str) -> None:
    assert parse_store_url(url).url == normalised
    config = parse_options({**REQUIRED, "workload_store": url})
    assert config.workload_store == normalised


@pytest.mark.parametrize(
    ("url", "says"),
    [
        pytest.param("s3://My_Bucket/p", "valid bucket name", id="bucket-upper-case"),
        pytest.param("s3://ab/p", "valid bucket name", id="bucket-too-short"),
        pytest.param("s3:///p", "valid bucket name", id="bucket-missing"),
        pytest.param("s3://b-1/a//b", "empty path segments", id="empty-segment"),
        pytest.param("s3://b-1/p?versionId=1", "without ?query", id="query"),
        pytest.param("s3://b-1/" + "p" * 701, "at most 700 bytes", id="prefix-too-long"),
        pytest.param("file://relative/dir", "local path", id="file-host"),
        pytest.param("file:relative", "absolute path", id="file-relative"),
        pytest.param(
            "https://bucket.s3.amazonaws.com/p", "s3://bucket/prefix or file:///absolute/dir", id="https"
        ),
        pytest.param("/plain/path", "s3://bucket/prefix or file:///absolute/dir", id="no-scheme"),
    ],
)
def test_bad_store_urls_are_config_errors_naming_the_option(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_options({**REQUIRED, "workload_store": url})
    message = str(caught.value)
    assert message.startswith("[aws_batch_executor] workload_store: expected ")
    assert says in message
    assert repr(url) in message
    assert "AIRFLOW__AWS_BATCH_EXECUTOR__WORKLOAD_STORE" in message


def test_unset_store_keeps_the_workload_in_the_command() -> None:
    assert parse_options(REQUIRED).workload_store is None


def test_object_url_needs_a_key() -> None:
    with pytest.raises(ValueError, match="no key"):
        parse_object_url("s3://bucket-1")
    assert parse_object_url("s3://bucket-1/a/b.json").key == "a/b.json"


def test_object_format_round_trip_keeps_order() -> None:
    texts = [json.dumps({"type": "ExecuteTask", "n": i}) for i in range(3)]
    data = encode_object(texts)
    assert json.loads(data) == {"version": 1, "workloads": [json.loads(t) for t in texts]}
    assert decode_object(data) == [json.loads(t) for t in texts]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        pytest.param(b"\xff\xfe", "not UTF-8", id="binary"),
        pytest.param(b"{", "not JSON", id="truncated"),
        pytest.param(b"[]", "expected a JSON object, found list", id="list"),
        pytest.param(b'{"version": 2, "workloads": [{}]}', "expected version 1, found 2", id="version"),
        pytest.param(b'{"version": 1, "workloads": []}', "non-empty list", id="empty"),
        pytest.param(b'{"version": 1}', "non-empty list", id="missing"),
    ],
)
def test_bad_objects_are_refused_with_the_reason(data: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        decode_object(data)


@pytest.mark.parametrize(
    ("prefix", "name", "key"),
    [
        pytest.param("p", "dep/airflow-dag-task/abc", "p/dep/airflow-dag-task/abc-R.json", id="plain"),
        pytest.param("", "a b/c", "a_b/c-R.json", id="no-prefix-unsafe-space"),
        pytest.param("p", "../../etc/passwd", "p/_/_/etc/passwd-R.json", id="no-escape"),
        pytest.param("p", "db-1:x@y/j", "p/db-1_x_y/j-R.json", id="tag-characters"),
    ],
)
def test_object_keys_stay_under_the_prefix(prefix: str, name: str, key: str) -> None:
    assert object_key(prefix, name, random_part="R") == key
