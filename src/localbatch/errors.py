"""The errors localbatch answers with, in the codes botocore maps to its exception classes."""

from __future__ import annotations


class ServiceError(Exception):
    """An error that is sent to the client as AWS's JSON error body."""

    code = "ServerException"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientException(ServiceError):
    code = "ClientException"
    status = 400


class AccessDeniedException(ServiceError):
    code = "AccessDeniedException"
    status = 403


class TooManyRequestsException(ServiceError):
    code = "TooManyRequestsException"
    status = 429


class ServerException(ServiceError):
    code = "ServerException"
    status = 500


class LogsResourceNotFound(ServiceError):
    code = "ResourceNotFoundException"
    status = 400


class LogsInvalidParameter(ServiceError):
    code = "InvalidParameterException"
    status = 400


class LogsThrottling(ServiceError):
    code = "ThrottlingException"
    status = 400


class LogsServiceUnavailable(ServiceError):
    code = "ServiceUnavailableException"
    status = 500
