"""The one place boto3 clients are built for localbatch and moto's server (tests, bench, chaos, demo)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"
#: What localbatch and moto accept; never real keys, so nothing built here can reach a real account.
TESTING_CREDENTIALS: Mapping[str, str] = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
#: The same credentials and region for a child process (an Airflow component, a driver, a CLI run).
TESTING_ENV: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}

# A boto3 session may not build clients from two threads at once; the clients themselves may be shared.
# One session also loads each service model once instead of once per client.
_lock = threading.Lock()
_sessions: dict[tuple[tuple[str, str], ...], boto3.session.Session] = {}


def aws_client(
    service: str,
    endpoint_url: str | None,
    *,
    config: Config | None = None,
    credentials: Mapping[str, str] | None = TESTING_CREDENTIALS,
) -> Any:
    """A boto3 client of ``service`` at ``endpoint_url`` in ``us-east-1`` with the testing credentials.

    ``endpoint_url`` None is only for clients whose calls never leave the process (botocore's Stubber).
    ``credentials`` None leaves them to botocore's own chain (environment, files), for tests of how a
    client without valid credentials fails.
    """
    if credentials is None:
        # Not shared: a session keeps what its chain found, and the caller's environment may change.
        return _client(boto3.session.Session(region_name=REGION), service, endpoint_url, config)
    key = tuple(sorted(credentials.items()))
    with _lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = boto3.session.Session(
                aws_access_key_id=credentials["aws_access_key_id"],
                aws_secret_access_key=credentials["aws_secret_access_key"],
                region_name=REGION,
            )
        return _client(session, service, endpoint_url, config)


def _client(
    session: boto3.session.Session, service: str, endpoint_url: str | None, config: Config | None
) -> Any:
    # The stubs type client() per literal service name; a name in a variable matches none of them.
    build: Any = session.client
    return build(service, endpoint_url=endpoint_url, config=config)
