"""Every botocore failure is classified in one place."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from airflow_aws_batch.aws import ErrorKind, classify


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "SubmitJob"
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        pytest.param(client_error("TooManyRequestsException", 429), ErrorKind.THROTTLED, id="429"),
        pytest.param(client_error("ThrottlingException", 400), ErrorKind.THROTTLED, id="throttling-400"),
        pytest.param(client_error("ExpiredTokenException", 403), ErrorKind.CREDENTIALS, id="expired-token"),
        pytest.param(client_error("UnrecognizedClientException", 403), ErrorKind.CREDENTIALS, id="bad-key"),
        pytest.param(NoCredentialsError(), ErrorKind.CREDENTIALS, id="no-credentials"),
        pytest.param(client_error("ClientException", 400), ErrorKind.CLIENT, id="client-exception"),
        pytest.param(client_error("AccessDeniedException", 403), ErrorKind.CLIENT, id="access-denied"),
        pytest.param(client_error("ServerException", 500), ErrorKind.AMBIGUOUS, id="server-exception"),
        pytest.param(client_error("Whatever", 503), ErrorKind.AMBIGUOUS, id="any-5xx"),
        pytest.param(ReadTimeoutError(endpoint_url="http://x"), ErrorKind.AMBIGUOUS, id="read-timeout"),
        pytest.param(
            ConnectionClosedError(endpoint_url="http://x"), ErrorKind.AMBIGUOUS, id="connection-reset"
        ),
        pytest.param(EndpointConnectionError(endpoint_url="http://x"), ErrorKind.AMBIGUOUS, id="refused"),
    ],
)
def test_classify(exc: Exception, kind: ErrorKind) -> None:
    error = classify(exc, "SubmitJob")
    assert error.kind is kind
    assert error.operation == "SubmitJob"
