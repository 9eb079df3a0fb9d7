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


# -- SQS (JSON protocol, query compatible) -------------------------------------------------------------
class SqsError(ServiceError):
    """An SQS error: ``code`` is the shape name (``__type``), ``query_code`` the code of SQS's former
    query protocol, sent in ``x-amzn-query-error`` and shown by botocore as the error's Code."""

    code = "InvalidParameterValue"
    query_code = "InvalidParameterValue"
    status = 400
    sender_fault = True


class SqsQueueDoesNotExist(SqsError):
    code = "QueueDoesNotExist"
    query_code = "AWS.SimpleQueueService.NonExistentQueue"


class SqsQueueNameExists(SqsError):
    code = "QueueNameExists"
    query_code = "QueueAlreadyExists"


class SqsQueueDeletedRecently(SqsError):
    code = "QueueDeletedRecently"
    query_code = "AWS.SimpleQueueService.QueueDeletedRecently"


class SqsInvalidAddress(SqsError):
    code = "InvalidAddress"
    query_code = "InvalidAddress"


class SqsInvalidAttributeName(SqsError):
    code = "InvalidAttributeName"
    query_code = "InvalidAttributeName"


class SqsInvalidAttributeValue(SqsError):
    code = "InvalidAttributeValue"
    query_code = "InvalidAttributeValue"


class SqsReceiptHandleIsInvalid(SqsError):
    code = "ReceiptHandleIsInvalid"
    query_code = "ReceiptHandleIsInvalid"


class SqsMessageNotInflight(SqsError):
    code = "MessageNotInflight"
    query_code = "AWS.SimpleQueueService.MessageNotInflight"


class SqsEmptyBatchRequest(SqsError):
    code = "EmptyBatchRequest"
    query_code = "AWS.SimpleQueueService.EmptyBatchRequest"


class SqsTooManyEntriesInBatchRequest(SqsError):
    code = "TooManyEntriesInBatchRequest"
    query_code = "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"


class SqsBatchEntryIdsNotDistinct(SqsError):
    code = "BatchEntryIdsNotDistinct"
    query_code = "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"


class SqsInvalidBatchEntryId(SqsError):
    code = "InvalidBatchEntryId"
    query_code = "AWS.SimpleQueueService.InvalidBatchEntryId"


class SqsPurgeQueueInProgress(SqsError):
    code = "PurgeQueueInProgress"
    query_code = "AWS.SimpleQueueService.PurgeQueueInProgress"


class SqsUnsupportedOperation(SqsError):
    code = "UnsupportedOperation"
    query_code = "AWS.SimpleQueueService.UnsupportedOperation"


class SqsAccessDenied(SqsError):
    code = "AccessDenied"
    query_code = "AccessDenied"
    status = 403


class SqsRequestThrottled(SqsError):
    code = "RequestThrottled"
    query_code = "RequestThrottled"


class SqsInternalError(SqsError):
    code = "InternalError"
    query_code = "InternalError"
    status = 500
    sender_fault = False


# -- EventBridge ---------------------------------------------------------------------------------------
class EventsResourceNotFound(ServiceError):
    code = "ResourceNotFoundException"
    status = 400


class EventsValidation(ServiceError):
    code = "ValidationException"
    status = 400


class EventsInvalidEventPattern(ServiceError):
    code = "InvalidEventPatternException"
    status = 400


class EventsLimitExceeded(ServiceError):
    code = "LimitExceededException"
    status = 400


class EventsThrottling(ServiceError):
    code = "ThrottlingException"
    status = 400


class EventsInternal(ServiceError):
    code = "InternalException"
    status = 500


class EventsAccessDenied(ServiceError):
    code = "AccessDeniedException"
    status = 400
