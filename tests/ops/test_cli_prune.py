"""`airflow aws-batch prune`, run as the real Airflow CLI against localbatch and moto's server."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import LocalBatchServer, aws_client

RunAirflow = Callable[[list[str], Mapping[str, str]], subprocess.CompletedProcess[str]]
DAY = 86400


@dataclass
class Service:
    #: moto's URL, or the localbatch (whose keys the CLI must sign with).
    endpoint: str | LocalBatchServer
    batch: Any
    job_queue: str
    job_definition: str


@pytest.fixture(scope="module")
def localbatch_service(localbatch: LocalBatchServer) -> Service:
    localbatch.setup(compute_environment="prune-ce", job_queue="prune-q", job_definition="prune-def")
    localbatch.set_faults({"hold_runnable": {"rate": 1.0}})  # jobs only need to exist
    return Service(localbatch, localbatch.batch, "prune-q", "prune-def")


@pytest.fixture(scope="module")
def moto_service(moto_url: str) -> Service:
    # moto would run jobs in Docker; none here, and the jobs only need to exist.
    httpx.post(f"{moto_url}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
    iam = aws_client("iam", moto_url)
    batch = aws_client("batch", moto_url)
    role = iam.create_role(RoleName="prune-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ce = batch.create_compute_environment(
        computeEnvironmentName="prune-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
    )
    batch.create_job_queue(
        jobQueueName="prune-q",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}],
    )
    return Service(moto_url, batch, "prune-q", "prune-def")


@pytest.fixture(params=["localbatch", "moto"])
def service(request: pytest.FixtureRequest) -> Service:
    return request.getfixturevalue(f"{request.param}_service")  # type: ignore[no-any-return]


def _day(offset_days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() + offset_days * DAY))


def _status(batch: Any, arn: str) -> str:
    (entry,) = batch.describe_job_definitions(jobDefinitions=[arn])["jobDefinitions"]
    return str(entry["status"])


def test_prune_says_what_it_would_remove_then_removes_only_that(
    *, service: Service, run_airflow: RunAirflow, airflow_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    batch = service.batch
    deployment = f"db-{uuid.uuid4().hex[:16]}"
    base = f"prune-{uuid.uuid4().hex[:6]}"

    def register(suffix: str, tags: dict[str, str]) -> str:
        return str(
            batch.register_job_definition(
                jobDefinitionName=f"{base}-{suffix}",
                type="container",
                containerProperties={"image": "python:3.12", "vcpus": 1, "memory": 512, "command": ["true"]},
                tags=tags,
            )["jobDefinitionArn"]
        )

    ours_old = {"deployment": deployment, "last_used": _day(-60)}
    stale = register("a" * 16, ours_old)
    fresh = register("b" * 16, {"deployment": deployment, "last_used": _day(0)})
    ran_lately = register("c" * 16, ours_old)
    other_deployment = register("d" * 16, {"deployment": "db-someone-else", "last_used": _day(-60)})
    not_derived = register("hand-made", ours_old)
    no_day = register("e" * 16, {"deployment": deployment})
    batch.submit_job(jobName="recent", jobQueue=service.job_queue, jobDefinition=ran_lately)

    env = airflow_env(
        tmp_path,
        service.endpoint,
        job_queue=service.job_queue,
        job_definition=base,
        job_name="airflow",
        deployment_id=deployment,
    )
    dry = run_airflow(["prune", "--days", "30"], env)
    assert dry.returncode == 0, dry.stderr[-3000:]
    would = [line for line in dry.stdout.splitlines() if line.startswith("would deregister")]
    assert len(would) == 1, dry.stdout
    assert would[0].startswith(f"would deregister {base}-{'a' * 16}:1 (last used {_day(-59)}"), would
    assert f"keeping {base}-{'b' * 16}:1" in dry.stdout
    assert f"keeping {base}-{'c' * 16}:1" in dry.stdout
    assert f"keeping {base}-{'e' * 16}:1 (no readable last_used tag" in dry.stdout
    assert "dry run: add --apply" in dry.stdout
    assert base + "-" + "d" * 16 not in dry.stdout and f"{base}-hand-made" not in dry.stdout
    everything = [stale, fresh, ran_lately, other_deployment, not_derived, no_day]
    assert {_status(batch, arn) for arn in everything} == {"ACTIVE"}  # a dry run changes nothing

    applied = run_airflow(["prune", "--days", "30", "--apply"], env)
    assert applied.returncode == 0, applied.stderr[-3000:]
    assert f"deregistered {base}-{'a' * 16}:1" in applied.stdout
    assert _status(batch, stale) == "INACTIVE"
    assert {_status(batch, arn) for arn in everything if arn != stale} == {"ACTIVE"}

    again = run_airflow(["prune", "--days", "30"], env)
    assert not [line for line in again.stdout.splitlines() if line.startswith("would deregister")]
    assert again.stdout.splitlines()[-1].endswith("would deregister 0 not used for 30 day(s)")
