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


def test_an_unreadable_describe_jobs_entry_is_logged_without_its_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No server answers with a malformed entry, so a client object stands in for one. The entry's
    # command holds a token (the store is off), and its exit code is what cannot be read.
    from airflow_aws_batch.aws.batch import BatchApi

    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0aSJ9.c2lnbmF0dXJlLXNlY3JldA"

    class Client:
        def describe_jobs(self, jobs: list[str]) -> dict[str, object]:
            bad_exit = {
                "jobId": "job-bad",
                "status": "FAILED",
                "container": {"exitCode": token, "command": [token]},
            }
            no_id = {"status": "RUNNING", "container": {"command": ["python", token]}}
            good = {"jobId": "job-good", "status": "RUNNING", "container": {"command": [token]}}
            return {"jobs": [bad_exit, no_id, good]}

    with caplog.at_level("WARNING", logger="airflow_aws_batch.aws.batch"):
        details = BatchApi(Client).describe_jobs(["job-bad", "job-x", "job-good"])
    assert [d.job_id for d in details] == ["job-good"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "job job-bad: ValueError" in messages[0]
    assert "job without an id: KeyError 'jobId'" in messages[1]
    for message in messages:
        assert token[:20] not in message and "python" not in message
