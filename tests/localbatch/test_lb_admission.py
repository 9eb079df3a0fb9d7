"""Who localbatch admits, over real HTTP: signed AWS clients naming its address, never a browser page.

The refused requests are the ones a security read sent with curl: a text/plain POST with a foreign
Origin (what any web page may send), a foreign Host (DNS rebinding), no Authorization; plus the CORS
preflight a page would need for anything more. Each one is sent as a chain that would create a compute
environment, a queue and a job definition and then run a job that leaves a file behind.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from lb_support import Server, make_env, run, signed_request, start_server, wait_status

from devstack.localbatch import random_credentials

EVIL_ORIGIN = "http://evil.example"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """localbatch as ``serve`` starts it without --credentials: any key, but still only signed requests."""
    server = Server(tmp_path_factory.mktemp("localbatch-open"))
    server.check_signatures = False
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["with-credentials", "without-credentials"])
def any_server(request: pytest.FixtureRequest) -> Server:
    name = "server" if request.param == "with-credentials" else "open_server"
    server: Server = request.getfixturevalue(name)
    return server


def _chain(name: str, marker: Path) -> list[tuple[str, dict[str, Any]]]:
    """The calls that would run ``touch marker`` from nothing."""
    return [
        (
            "/v1/createcomputeenvironment",
            {
                "computeEnvironmentName": f"{name}-ce",
                "type": "MANAGED",
                "computeResources": {"type": "EC2", "maxvCpus": 2, "subnets": ["s"], "instanceRole": "r"},
            },
        ),
        (
            "/v1/createjobqueue",
            {
                "jobQueueName": f"{name}-q",
                "priority": 1,
                "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": f"{name}-ce"}],
            },
        ),
        (
            "/v1/registerjobdefinition",
            {
                "jobDefinitionName": f"{name}-jd",
                "type": "container",
                "containerProperties": {"image": "x", "command": ["touch", str(marker)]},
            },
        ),
        ("/v1/submitjob", {"jobName": name, "jobQueue": f"{name}-q", "jobDefinition": f"{name}-jd"}),
    ]


def _crafted(server: Server, case: str, path: str, body: bytes) -> httpx.Response:
    port = server.port
    if case == "text-plain-foreign-origin":  # the curl of the report: a page may send exactly this
        headers = {"Content-Type": "text/plain", "Origin": EVIL_ORIGIN}
        return httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=30)
    if case == "no-authorization":
        return httpx.post(f"{server.url}{path}", content=body, headers=JSON, timeout=30)
    if case == "foreign-host":  # DNS rebinding: the page's own name, every header it likes, signed
        return signed_request(server, "POST", path, body, JSON, host=f"evil.example:{port}")
    if case == "foreign-origin-signed":
        return signed_request(server, "POST", path, body, {**JSON, "Origin": EVIL_ORIGIN})
    if case == "text-plain-signed":
        return signed_request(server, "POST", path, body, {"Content-Type": "text/plain"})
    if case == "form-signed":
        return signed_request(
            server, "POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "text-plain-foreign-origin",
        "no-authorization",
        "foreign-host",
        "foreign-origin-signed",
        "text-plain-signed",
        "form-signed",
    ],
)
def test_strangers_and_browsers_create_nothing_and_run_nothing(
    any_server: Server, case: str, tmp_path: Path
) -> None:
    name = f"evil{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "ran"
    for path, params in _chain(name, marker):
        response = _crafted(any_server, case, path, json.dumps(params).encode())
        assert response.status_code == 403, (path, response.status_code, response.text)
        assert response.headers["x-amzn-ErrorType"] in response.text  # AWS's error shape, JSON or XML
        assert not any(h.lower().startswith("access-control-") for h in response.headers)
    batch = any_server.client("batch")
    assert (
        batch.describe_compute_environments(computeEnvironments=[f"{name}-ce"])["computeEnvironments"] == []
    )
    assert batch.describe_job_queues(jobQueues=[f"{name}-q"])["jobQueues"] == []
    assert batch.describe_job_definitions(jobDefinitionName=f"{name}-jd")["jobDefinitions"] == []
    assert not marker.exists()


def test_a_cors_preflight_is_never_approved(any_server: Server) -> None:
    headers = {
        "Origin": EVIL_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-amz-date",
    }
    for path in ("/v1/submitjob", "/", "/_localbatch/faults"):
        response = httpx.options(f"{any_server.url}{path}", headers=headers, timeout=30)
        assert response.status_code == 403, (path, response.status_code)
        assert not any(h.lower().startswith("access-control-") for h in response.headers)


def test_unknown_routes_are_refused_before_routing(any_server: Server) -> None:
    response = httpx.get(f"{any_server.url}/no/such/route", timeout=30)
    assert response.status_code == 403
    assert response.json()["__type"] == "MissingAuthenticationTokenException"


def test_refusals_reach_boto3_as_client_errors(server: Server) -> None:
    """A boto3 client whose requests are refused sees a ClientError with the code, as from AWS."""
    client = server.client("batch")

    def from_a_page(request: Any, **_: Any) -> None:
        request.headers["Origin"] = EVIL_ORIGIN

    client.meta.events.register("before-send.batch", from_a_page)
    with pytest.raises(ClientError) as info:
        client.describe_job_queues()
    error = info.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
        "AccessDeniedException",
        403,
    )


def _call(client: Any, service: str) -> dict[str, Any]:
    if service == "batch":
        result: dict[str, Any] = client.describe_job_queues()
    else:
        result = client.filter_log_events(logGroupName="/aws/batch/job", limit=1)
    return result


@pytest.mark.parametrize("service", ["batch", "logs"])
def test_with_credentials_a_wrong_signature_is_refused(server: Server, service: str) -> None:
    right = server.credentials
    wrong_secret = {**right, "aws_secret_access_key": right["aws_secret_access_key"] + "x"}
    for keys, code in (
        (wrong_secret, "InvalidSignatureException"),
        (random_credentials(), "UnrecognizedClientException"),
    ):
        client = boto3.client(service, endpoint_url=server.url, region_name="us-east-1", **keys)
        with pytest.raises(ClientError) as info:
            _call(client, service)
        assert info.value.response["Error"]["Code"] == code
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # The same keys localbatch verifies: admitted.
    assert _call(server.client(service), service)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_with_credentials_a_body_other_than_the_signed_one_is_refused(server: Server) -> None:
    signed = json.dumps({"jobQueues": ["a"]}).encode()
    sent = json.dumps({"jobQueues": ["b"]}).encode()
    response = signed_request(server, "POST", "/v1/describejobqueues", signed, JSON, send_body=sent)
    assert (response.status_code, response.json()["__type"]) == (403, "InvalidSignatureException")
    same = signed_request(server, "POST", "/v1/describejobqueues", signed, JSON)
    assert same.status_code == 200, same.text


def test_without_credentials_any_key_signs(open_server: Server) -> None:
    keys = random_credentials()
    client = boto3.client("batch", endpoint_url=open_server.url, region_name="us-east-1", **keys)
    assert client.describe_job_queues()["jobQueues"] == []


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "LOCALHOST"])
def test_every_loopback_name_is_admitted(server: Server, name: str) -> None:
    response = signed_request(
        server, "POST", "/v1/describejobqueues", b"{}", JSON, host=f"{name}:{server.port}"
    )
    assert response.status_code == 200, response.text
    other_port = signed_request(server, "POST", "/v1/describejobqueues", b"{}", JSON, host=f"{name}:1")
    assert other_port.status_code == 403


def test_admin_routes_need_the_token_or_a_signature(server: Server) -> None:
    token_file = server.data_dir / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    url = f"{server.url}/_localbatch/stats"
    assert httpx.get(url, timeout=30).status_code == 403
    assert (
        httpx.get(url, headers={"Authorization": "Bearer " + token[:-1] + "x"}, timeout=30).status_code == 403
    )
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 200
    assert signed_request(server, "GET", "/_localbatch/stats").status_code == 200
    wrong = signed_request(server, "GET", "/_localbatch/stats", credentials=random_credentials())
    assert wrong.status_code == 403
    # A bearer token opens only the admin routes.
    batch_call = httpx.post(
        f"{server.url}/v1/describejobqueues",
        content=b"{}",
        headers={**JSON, "Authorization": f"Bearer {token}"},
    )
    assert batch_call.status_code == 403
    # Bodies must be JSON there too: a page's form POST is no fault config.
    form = httpx.put(
        f"{server.url}/_localbatch/faults",
        content=b'{"error_rate": 1.0}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert form.status_code == 403
    assert server.faults()["error_rate"] == 0.0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_is_private_even_when_it_existed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old_umask = os.umask(0o022)
    try:
        (data / "work" / "old-job").mkdir(parents=True)
        (data / "localbatch.sqlite3").touch()  # an empty file is an empty SQLite database
    finally:
        os.umask(old_umask)
    assert _mode(data) == 0o755 and _mode(data / "localbatch.sqlite3") == 0o644
    server = start_server(tmp_path)
    try:
        batch = server.client("batch")
        env = make_env(batch)
        job_id = run(batch, env, ["sh", "-c", "echo private > out.txt"])
        assert wait_status(batch, job_id)["status"] == "SUCCEEDED"
        assert _mode(data) == 0o700
        assert _mode(data / "work") == 0o700
        store_files = sorted(data.glob("localbatch.sqlite3*"))
        assert store_files and {p.name: _mode(p) for p in store_files} == {p.name: 0o600 for p in store_files}
        assert _mode(data / "admin-token") == 0o600
        assert _mode(tmp_path / "credentials") == 0o600
        outputs = list((data / "work").rglob("out.txt"))
        assert outputs and all(_mode(p) == 0o600 and _mode(p.parent) == 0o700 for p in outputs)
    finally:
        server.stop()


#: A JWT: base64url JSON header, payload and signature.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
TOKEN = (
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwMTk2YjNmMi1hYmNkIiwiZXhwIjoxNzY0MDkwMDAwfQ."
    "c2lnbmF0dXJlLW9mLXRoZS10b2tlbi1pbi10aGUtd29ya2xvYWQtdGVzdA"
)


def test_the_request_log_masks_workloads(server: Server, batch: Any) -> None:
    env = make_env(batch)
    workload = json.dumps({"token": TOKEN, "ti": {"id": "x"}, "type": "ExecuteTask"})
    run(batch, env, ["true", "--json-string", workload], name="wl-arg")
    run(batch, env, ["true", f"token={TOKEN}"], name="wl-bare")
    run(batch, env, ["true", "--no-workload-here"], name="wl-none")
    requests = server.submit_requests()[-3:]
    assert [json.loads(r)["jobName"] for r in requests] == ["wl-arg", "wl-bare", "wl-none"]
    pieces = {TOKEN[i : i + 20] for i in range(len(TOKEN) - 19)} - {""}
    for body in requests:
        assert not JWT.search(body), body
        assert not any(piece in body for piece in pieces), body
    commands = [json.loads(r)["containerOverrides"]["command"] for r in requests]
    assert commands[0] == ["true", "--json-string", "<masked>"]
    assert commands[1] == ["true", "token=<masked>"]
    assert commands[2] == ["true", "--no-workload-here"]


def test_sts_refusals_are_xml_client_errors(server: Server) -> None:
    """STS speaks the query protocol: its refusal is XML, so boto3 raises a ClientError, not a parse error."""
    stranger = boto3.client("sts", endpoint_url=server.url, region_name="us-east-1", **random_credentials())
    with pytest.raises(ClientError) as info:
        stranger.get_caller_identity()
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert server.client("sts").get_caller_identity()["Account"]


@pytest.mark.parametrize("flag", ["--credentials", "--credentials-file"])
def test_serve_refuses_credentials_that_are_not_key_colon_secret(tmp_path: Path, flag: str) -> None:
    value = "only-a-key"
    if flag == "--credentials-file":
        (tmp_path / "keys").write_text(value + "\n")
        value = str(tmp_path / "keys")
    result = subprocess.run(
        [sys.executable, "-m", "localbatch", "serve", "--data-dir", str(tmp_path / "d"), flag, value],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "invalid credentials: credentials must read KEY:SECRET" in result.stderr
    assert not (tmp_path / "d").exists()
