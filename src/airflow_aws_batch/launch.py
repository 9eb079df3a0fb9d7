"""``python -m airflow_aws_batch.launch <object url>``: run the workload a job finds in the workload store.

The executor's job command when ``workload_store`` is set (see :mod:`airflow_aws_batch.workloads`).
Reads the object (S3 with boto3's default credentials, i.e. the job role; ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL`` are honoured by boto3), picks the workload at ``AWS_BATCH_JOB_ARRAY_INDEX`` (0 when
unset: not an array child), deletes the object when it holds a single workload (an array's object is
shared by its children and left to expire), then runs the Task SDK exactly as ``python -m
airflow.sdk.execution_time.execute_workload --json-string <workload>`` would.

When the object cannot be read or used, the job exits with status 2 and one line on stderr saying
why, before anything reaches Airflow's Execution API: the executor counts such a job as failed before
its task started, and submits the task again.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from airflow_aws_batch.compat import token_hidden
from airflow_aws_batch.workload_rules import decode_object
from airflow_aws_batch.workloads import StoreError, delete_object, read_object

ARRAY_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"
EXIT_UNUSABLE = 2
USAGE = "usage: python -m airflow_aws_batch.launch <s3://bucket/key | file:///path>"


class LaunchError(Exception):
    """The workload cannot be run; the message is the job's one line of explanation."""


def select_workload(url: str, environ: dict[str, str] | None = None) -> str:
    """The JSON text of this job's workload from the object at ``url``; LaunchError when unusable.

    Deletes the object once read when it holds exactly one workload (a failed delete is reported on
    stderr, not fatal: the store's expiry removes it).
    """
    env = os.environ if environ is None else environ
    try:
        data = read_object(url)
    except (StoreError, ValueError) as exc:
        raise LaunchError(f"cannot read the workload: {exc}") from None
    try:
        workloads = decode_object(data)
    except ValueError as exc:
        raise LaunchError(f"{url} is not a workload object: {exc}") from None
    index = _array_index(env, len(workloads), url)
    if len(workloads) == 1:
        try:
            delete_object(url)
        except (StoreError, ValueError) as exc:
            print(f"airflow_aws_batch.launch: warning: {exc}; leaving it to expire", file=sys.stderr)
    return json.dumps(workloads[index], separators=(",", ":"))


def _array_index(env: Any, count: int, url: str) -> int:
    text = env.get(ARRAY_INDEX_ENV)
    if text is None or text == "":
        return 0
    try:
        index = int(text)
    except ValueError:
        raise LaunchError(f"{ARRAY_INDEX_ENV} must be an integer, found {text!r}") from None
    if not 0 <= index < count:
        raise LaunchError(
            f"{ARRAY_INDEX_ENV}={index} is out of range: {url} holds {count} workload(s) (0..{count - 1})"
        )
    return index


def run(workload_json: str) -> None:
    """Run one workload as the Task SDK's ``execute_workload --json-string`` does."""
    from airflow.executors import workloads
    from airflow.sdk.execution_time.execute_workload import execute_workload
    from pydantic import TypeAdapter, ValidationError

    decoder: TypeAdapter[Any] = TypeAdapter(workloads.All)
    try:
        workload = decoder.validate_json(workload_json)
    except ValidationError as exc:
        # Without the input: it holds the token, and this line goes to the job's log.
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or '(workload)'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)[:5]
        ]
        raise LaunchError(
            f"the stored workload is not one this Task SDK accepts: {'; '.join(problems)}"
        ) from None
    execute_workload(token_hidden(workload))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        workload_json = select_workload(args[0])
        run(workload_json)
    except LaunchError as exc:
        print(f"airflow_aws_batch.launch: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    return 0


if __name__ == "__main__":
    sys.exit(main())
