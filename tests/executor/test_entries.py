"""The core's entry records: requests kept packed (compressed against the first one)."""

from __future__ import annotations

import json
import secrets
import zlib
from typing import Any

from airflow_aws_batch.core.entries import Packer


def test_requests_are_kept_compressed_against_the_first_and_come_back_whole() -> None:
    def request(task: str, token: str) -> dict[str, Any]:
        workload = json.dumps({"token": token, "ti": {"dag_id": "etl", "task_id": task, "try_number": 1}})
        return {
            "jobName": f"airflow-etl-{task}",
            "jobQueue": "q",
            "jobDefinition": "d",
            "containerOverrides": {"command": ["python", "-m", "x", "--json-string", workload]},
            "tags": {"dag_id": "etl", "task_id": task},
        }

    packer = Packer()
    tokens = [secrets.token_urlsafe(400) for _ in range(3)]
    first, second = request("extract", tokens[0]), request("load", tokens[1])
    unlike = {"jobName": "other", "jobQueue": "q2", "jobDefinition": "d2", "parameters": {"k": tokens[2]}}
    # Larger than the compression window: still comes back whole.
    big = {**second, "parameters": {f"p{i}": secrets.token_hex(16) for i in range(400)}}
    blobs = [packer.pack(r) for r in (first, second, unlike, big)]
    assert [packer.unpack(b) for b in blobs] == [first, second, unlike, big]
    # The second shares everything but its token and task with the first.
    plain = zlib.compress(json.dumps(second, separators=(",", ":")).encode(), 9)
    assert len(blobs[1]) < len(plain) - 100
