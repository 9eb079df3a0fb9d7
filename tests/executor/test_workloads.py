"""The workload store: the file store, placing workloads, and the launcher as a real process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_aws_batch.config import parse_options
from airflow_aws_batch.core.messages import SUBMISSION_TAG
from airflow_aws_batch.submit import MAX_CONTAINER_OVERRIDES_CHARS, build_submit_job_request
from airflow_aws_batch.workload_rules import (
    MAX_NAME_CHARS,
    PENDING_KEY,
    decode_object,
    encode_object,
    launch_command,
    object_key,
)
from airflow_aws_batch.workloads import (
    FileStore,
    StoreError,
    open_store,
    place_workloads,
    read_object,
)

REQUIRED = {"job_queue": "q", "job_definition": "d", "job_name": "airflow"}


def test_object_keys_end_in_128_random_bits_whatever_the_readable_part(tmp_path: Path) -> None:
    # The longest deployment id the executor takes (128) and a long job name (128), named as the submit
    # thread names them (deployment/job name/submission): the readable part is cut (with a hash of the
    # whole), the random end never is. Written to a real store: 1,000 objects, none overwritten.
    store = open_store(f"file://{tmp_path}/store")
    deployment = "d" * 128
    urls = []
    for n in range(1000):
        request: dict[str, Any] = {PENDING_KEY: [json.dumps({"n": n})]}
        name = f"{deployment}/airflow-{'j' * 120}-{n % 7}/{'s' * 16}{n:016x}"
        urls.append(place_workloads(request, store, name))
    assert len(set(urls)) == 1000
    assert len([p for p in (tmp_path / "store").rglob("*.json")]) == 1000
    keys = [str(url).removeprefix(f"file://{tmp_path}/store/") for url in urls]
    for key in keys:
        name = key.removesuffix(".json")
        assert len(name) <= MAX_NAME_CHARS
        random_hex = name.rsplit("-", 1)[1]
        assert re.fullmatch(r"[0-9a-f]{32}", random_hex), key
    # Two readable parts that differ only past the cut still differ in what is kept.
    a = object_key("", "x" * 400 + "a", random_part="R")
    b = object_key("", "x" * 400 + "b", random_part="R")
    assert a != b and a.endswith("-R.json") and len(a) <= MAX_NAME_CHARS + len(".json")


def test_file_store_writes_one_private_object_per_name(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/store")
    assert isinstance(store, FileStore)
    url = store.put("dep/job/sub-1", ['{"a": 1}'])
    assert re.fullmatch(rf"file://{tmp_path}/store/dep/job/sub-1-[0-9a-f]{{32}}\.json", url)
    path = Path(url.removeprefix("file://"))
    for directory in (tmp_path / "store", tmp_path / "store/dep", tmp_path / "store/dep/job"):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    assert decode_object(path.read_bytes()) == [{"a": 1}]
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_object(url) == path.read_bytes()
    store.probe()
    # The probe leaves nothing behind but its (empty) directory.
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == [path]
    store.delete(url)
    assert not path.exists()
    store.delete(url)  # gone already is fine


def test_file_store_that_cannot_write_says_where(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    store = open_store(f"file://{blocker}")
    with pytest.raises(StoreError, match=f"could not write under {blocker}: not a directory"):
        store.put("x", ["{}"])
    with pytest.raises(StoreError, match="could not write"):
        store.probe()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o757], ids=["world", "group", "others"])
def test_file_store_refuses_a_directory_others_may_write(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(mode)
    store = open_store(f"file://{root}")
    with pytest.raises(StoreError, match=f"group or others may write in it \\(mode {mode:o}\\); chmod 700"):
        store.put("dep/job/sub", ["{}"])
    assert list(root.iterdir()) == []
    # Below the root too: a directory somebody loosened is refused before anything is written in it.
    root.chmod(0o700)
    (root / "dep").mkdir(mode=0o700)
    (root / "dep").chmod(mode)
    with pytest.raises(StoreError, match="group or others may write"):
        store.put("dep/job/sub", ["{}"])
    assert list((root / "dep").iterdir()) == []


def test_file_store_refuses_a_directory_of_another_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a directory of another user needs root")
    root = tmp_path / "theirs"
    root.mkdir(mode=0o700)
    os.chown(root, 65534, 65534)
    store = open_store(f"file://{root}")
    with pytest.raises(StoreError, match="it belongs to uid 65534, not to this user"):
        store.put("dep/job/sub", ["{}"])
    with pytest.raises(StoreError, match="belongs to uid 65534"):
        store.probe()


def _config(**options: str) -> Any:
    return parse_options({**REQUIRED, **options})


def test_stored_request_holds_a_placeholder_until_placed(tmp_path: Path) -> None:
    from airflow_aws_batch.submit import stored_workload_command

    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0aSJ9.c2lnbmF0dXJlLXNlY3JldA"
    workload = json.dumps({"type": "ExecuteTask", "token": token})
    request = build_submit_job_request(
        _config(workload_store=f"file://{tmp_path}"),
        command=stored_workload_command(),
        dag_id="d",
        task_id="t",
        run_id="r",
        try_number=1,
        map_index=-1,
        queue=None,
        executor_config=None,
        stored_workloads=[workload],
    )
    assert request[PENDING_KEY] == [workload]
    request["tags"][SUBMISSION_TAG] = "sub-1"
    url = place_workloads(request, open_store(f"file://{tmp_path}"), "dep/job/sub-1")
    assert url is not None
    assert PENDING_KEY not in request
    assert request["containerOverrides"]["command"] == launch_command(url)
    assert token not in json.dumps(request)
    assert decode_object(read_object(url)) == [json.loads(workload)]
    # A request without pending workloads is left as it is.
    assert (
        place_workloads({"containerOverrides": {"command": ["x"]}}, open_store(f"file://{tmp_path}"), "n")
        is None
    )


def test_an_eks_request_gets_the_launcher_in_its_pod_container(tmp_path: Path) -> None:
    """On an EKS job definition the command lives in the first pod container, not containerOverrides."""
    from airflow_aws_batch.submit import stored_workload_command

    workload = json.dumps({"type": "ExecuteTask", "token": "t"})
    request: dict[str, Any] = {
        "eksPropertiesOverride": {
            "podProperties": {"containers": [{"name": "main", "command": stored_workload_command()}]}
        },
        PENDING_KEY: [workload],
    }
    url = place_workloads(request, open_store(f"file://{tmp_path}"), "dep/job/sub-eks")
    assert url is not None
    assert request["eksPropertiesOverride"]["podProperties"]["containers"][0]["command"] == launch_command(
        url
    )
    assert "containerOverrides" not in request


def test_a_big_workload_fits_when_stored() -> None:
    """The workload no longer counts toward Batch's 8,192 characters of container overrides."""
    from airflow_aws_batch.submit import ExecConfigError, stored_workload_command, workload_command

    class Big:
        def model_dump_json(self) -> str:
            return json.dumps({"type": "ExecuteTask", "pad": "x" * MAX_CONTAINER_OVERRIDES_CHARS})

    common: dict[str, Any] = dict(
        dag_id="d", task_id="t", run_id="r", try_number=1, map_index=-1, queue=None, executor_config=None
    )
    with pytest.raises(ExecConfigError, match="container overrides"):
        build_submit_job_request(_config(), command=workload_command(Big()), **common)
    request = build_submit_job_request(
        _config(workload_store="s3://bucket-1/p"),
        command=stored_workload_command(),
        stored_workloads=[Big().model_dump_json()],
        **common,
    )
    assert len(request[PENDING_KEY][0]) > MAX_CONTAINER_OVERRIDES_CHARS


# ---------------------------------------------------------------- the launcher, as a job runs it


def _launch(url: str, index: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_BATCH_JOB_ARRAY_INDEX"}
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


def _our_lines(stderr: str) -> list[str]:
    """The launcher's own lines (Airflow 3.1 also logs its plugins' setup while it is imported)."""
    return [line for line in stderr.splitlines() if line.startswith("airflow_aws_batch.launch: ")]


def _write(path: Path, workloads: list[dict[str, Any]]) -> str:
    path.write_bytes(encode_object([json.dumps(w) for w in workloads]))
    return f"file://{path}"


def test_launcher_picks_the_array_index_keeps_shared_objects_and_deletes_single_ones(tmp_path: Path) -> None:
    # Workloads the Task SDK refuses, each named by its type tag: the refusal names the one picked,
    # and happens after the object was read (and, for a single one, deleted).
    shared = _write(
        tmp_path / "array.json", [{"type": f"child-{i}", "token": "secret-token"} for i in range(3)]
    )
    result = _launch(shared, index="1")
    assert result.returncode == 2, result.stderr
    lines = _our_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Input tag 'child-1'" in lines[0]
    assert "secret-token" not in result.stderr + result.stdout
    assert (tmp_path / "array.json").exists()

    single = _write(tmp_path / "single.json", [{"type": "only-one"}])
    result = _launch(single)
    assert result.returncode == 2
    assert "Input tag 'only-one'" in result.stderr
    assert not (tmp_path / "single.json").exists()


@pytest.mark.parametrize(
    ("name", "index", "says"),
    [
        pytest.param(
            None, None, "does not exist (already consumed, expired, or never written)", id="missing"
        ),
        pytest.param("two.json", "2", "AWS_BATCH_JOB_ARRAY_INDEX=2 is out of range", id="index-out-of-range"),
        pytest.param(
            "two.json", "x", "AWS_BATCH_JOB_ARRAY_INDEX must be an integer, found 'x'", id="index-not-int"
        ),
        pytest.param("bad.json", None, "is not a workload object: expected version 1", id="not-an-object"),
    ],
)
def test_launcher_exits_2_with_one_clear_line(
    tmp_path: Path, name: str | None, index: str | None, says: str
) -> None:
    _write(tmp_path / "two.json", [{"type": "a"}, {"type": "b"}])
    (tmp_path / "bad.json").write_text('{"version": 7, "workloads": [{}]}')
    url = f"file://{tmp_path}/{name or 'missing.json'}"
    result = _launch(url, index)
    assert result.returncode == 2
    lines = _our_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert says in lines[0]
    if name == "two.json":
        assert (tmp_path / "two.json").exists()


def test_launcher_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_aws_batch.launch"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "usage: python -m airflow_aws_batch.launch" in result.stderr


@pytest.mark.parametrize(
    ("url", "inside"),
    [
        pytest.param("file:///data/store/dep/job-r.json", True, id="file-inside"),
        pytest.param("file:///data/store/../etc/passwd", False, id="file-dotdot"),
        pytest.param("file:///data/store/a/../../x.json", False, id="file-dotdot-deeper"),
        pytest.param("file:///data/store", False, id="file-the-store-itself"),
        pytest.param("file:///data/store-other/x.json", False, id="file-sibling-prefix"),
        pytest.param("s3://bucket/p/dep/x.json", False, id="other-scheme"),
    ],
)
def test_adoption_reads_only_objects_inside_a_file_store(url: str, inside: bool) -> None:
    from airflow_aws_batch.adoption import in_store

    assert in_store("file:///data/store", url) is inside


@pytest.mark.parametrize(
    ("url", "inside"),
    [
        pytest.param("s3://bucket/p/dep/x.json", True, id="s3-inside"),
        pytest.param("s3://bucket/p/../q/x.json", False, id="s3-dotdot"),
        pytest.param("s3://bucket/px/x.json", False, id="s3-sibling-prefix"),
        pytest.param("s3://other/p/x.json", False, id="s3-other-bucket"),
    ],
)
def test_adoption_reads_only_objects_inside_an_s3_store(url: str, inside: bool) -> None:
    from airflow_aws_batch.adoption import in_store

    assert in_store("s3://bucket/p", url) is inside
