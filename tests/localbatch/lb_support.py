"""A real localbatch server (a subprocess) driven through real boto3 clients.

Every Batch/Logs response a client receives is checked against botocore's output shape (types,
enums, required members) by an `after-call` hook; a test fails if any response did not conform.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.model import Shape

from devstack import LocalBatchServer

T = TypeVar("T")

# AWS omits startedAt for jobs that have not started although the model marks it required.
MODEL_QUIRKS = {("JobDetail", "startedAt")}
FAST = 0.02


def shape_errors(value: Any, shape: Shape, path: str = "") -> list[str]:
    errors: list[str] = []
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected object, found {type(value).__name__}"]
        for name in shape.required_members:
            if name not in value and (shape.name, name) not in MODEL_QUIRKS:
                errors.append(f"{path}.{name}: required member missing")
        for name, item in value.items():
            if name == "ResponseMetadata" and not path:
                continue
            member = shape.members.get(name)  # type: ignore[attr-defined]
            if member is None:
                errors.append(f"{path}.{name}: not in the model")
            else:
                errors.extend(shape_errors(item, member, f"{path}.{name}"))
    elif kind == "list":
        if not isinstance(value, list):
            return [f"{path}: expected list"]
        for index, item in enumerate(value):
            errors.extend(shape_errors(item, shape.member, f"{path}[{index}]"))  # type: ignore[attr-defined]
    elif kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected map"]
        for key, item in value.items():
            errors.extend(shape_errors(item, shape.value, f"{path}[{key}]"))  # type: ignore[attr-defined]
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected string, found {value!r}")
        elif shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} not in enum {shape.enum}")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected integer, found {value!r}")
    elif kind in ("float", "double"):
        if not isinstance(value, (int, float)):
            errors.append(f"{path}: expected number, found {value!r}")
    elif kind == "boolean" and not isinstance(value, bool):
        errors.append(f"{path}: expected boolean, found {value!r}")
    return errors


class Server(LocalBatchServer):
    """localbatch whose boto3 clients record every response that does not match botocore's model."""

    def __init__(self, work_dir: Path, *args: str, env: dict[str, str] | None = None):
        super().__init__(work_dir, args=args, env=env)
        self.shape_problems: list[str] = []

    def client(self, service: str, config: Config | None = None, **options: Any) -> Any:
        """``options``: botocore ``Config`` arguments, e.g. ``retries={"max_attempts": 0}``."""
        client = super().client(service, Config(**options) if options else config)

        def check(parsed: dict[str, Any], model: Any, **_: Any) -> None:
            if model.output_shape is not None and "Error" not in parsed:
                problems = shape_errors(parsed, model.output_shape)
                self.shape_problems.extend(f"{model.name}{p}" for p in problems)

        client.meta.events.register(f"after-call.{client.meta.service_model.service_name}", check)
        return client


def start_server(work_dir: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    server = Server(work_dir, *args, env=env)
    server.start()
    return server


def wait_for(fetch: Callable[[], T], done: Callable[[T], bool], timeout: float = 20.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last = fetch()
    while not done(last):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or 'condition'}; last seen: {last!r}")
        time.sleep(FAST)
        last = fetch()
    return last


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("localbatch"),
        "--kill-grace-seconds",
        "1",
        "--pass-env",
        "LB_TEST_PASSED",
        env={"LB_TEST_PASSED": "passed", "LB_TEST_HIDDEN": "hidden"},
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def batch(server: Server) -> Iterator[Any]:
    before = len(server.shape_problems)
    yield server.client("batch")
    assert server.shape_problems[before:] == []


@pytest.fixture
def logs(server: Server) -> Iterator[Any]:
    before = len(server.shape_problems)
    yield server.client("logs")
    assert server.shape_problems[before:] == []


@pytest.fixture
def sqs(server: Server) -> Iterator[Any]:
    before = len(server.shape_problems)
    yield server.client("sqs")
    assert server.shape_problems[before:] == []


@pytest.fixture
def eventbridge(server: Server) -> Iterator[Any]:
    before = len(server.shape_problems)
    yield server.client("events")
    assert server.shape_problems[before:] == []


@pytest.fixture
def clean_faults(server: Server) -> Iterator[None]:
    yield
    server.set_faults({})


@dataclass
class Env:
    ce: str
    queue: str
    jd: str


def make_env(batch: Any, max_vcpus: int = 8, priority: int = 1, state: str = "ENABLED", **jd: Any) -> Env:
    name = f"t{uuid.uuid4().hex[:10]}"
    batch.create_compute_environment(
        computeEnvironmentName=f"{name}-ce",
        type="MANAGED",
        state=state,
        computeResources={"type": "EC2", "maxvCpus": max_vcpus, "subnets": ["subnet-1"], "instanceRole": "r"},
    )
    batch.create_job_queue(
        jobQueueName=f"{name}-q",
        priority=priority,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": f"{name}-ce"}],
    )
    props = {
        "image": "busybox",
        "command": ["true"],
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
        "environment": [{"name": "FROM_JD", "value": "jd"}, {"name": "OVERRIDDEN", "value": "jd"}],
    }
    batch.register_job_definition(
        jobDefinitionName=f"{name}-jd", type="container", containerProperties=props, **jd
    )
    return Env(f"{name}-ce", f"{name}-q", f"{name}-jd")


@pytest.fixture
def env(batch: Any) -> Env:
    return make_env(batch)


def run(batch: Any, env: Env, command: list[str], name: str = "job", **kwargs: Any) -> str:
    overrides = kwargs.pop("containerOverrides", {})
    job_id: str = batch.submit_job(
        jobName=name,
        jobQueue=env.queue,
        jobDefinition=env.jd,
        containerOverrides={"command": command, **overrides},
        **kwargs,
    )["jobId"]
    return job_id


def describe(batch: Any, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = batch.describe_jobs(jobs=[job_id])["jobs"][0]
    return job


def wait_status(batch: Any, job_id: str, *statuses: str, timeout: float = 20.0) -> dict[str, Any]:
    wanted = statuses or ("SUCCEEDED", "FAILED")
    return wait_for(
        lambda: describe(batch, job_id), lambda j: j["status"] in wanted, timeout, f"{job_id} {wanted}"
    )


def signed_request(
    server: Server,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    service: str = "batch",
    credentials: dict[str, str] | None = None,
    host: str | None = None,
    send_body: bytes | None = None,
) -> httpx.Response:
    """``method`` on ``path``, signed by botocore's SigV4 signer as a boto3 client would sign it.

    ``host``: the Host header to sign and send (default: the server's address). ``send_body``: a
    different body to send than the one signed.
    """
    keys = credentials or server.credentials
    url = f"{server.url}{path}"
    all_headers = {"Host": host or urlsplit(server.url).netloc, **(headers or {})}
    request = AWSRequest(method=method, url=url, data=body, headers=all_headers)
    credentials_ = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
    SigV4Auth(credentials_, service, "us-east-1").add_auth(request)
    sent = {name: str(value) for name, value in request.headers.items()}
    return httpx.request(
        method, url, content=body if send_body is None else send_body, headers=sent, timeout=30
    )
