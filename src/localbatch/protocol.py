"""Request parsing and response/error serialisation, driven by botocore's service models.

Batch speaks rest-json (`POST /v1/<operation>` plus `/v1/tags/{resourceArn}`); CloudWatch Logs, SQS and
EventBridge speak the JSON protocol (`POST /` with `X-Amz-Target: <prefix>.<Operation>`: `Logs_20140328`,
`AmazonSQS` (JSON 1.0, with the error codes of SQS's former query protocol in `x-amzn-query-error`) and
`AWSEvents`). Incoming parameters are
validated against the operation's input shape, so malformed requests fail the way they would fail
client-side in botocore. Who may send a request at all is admission.py's concern.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote

import botocore.session
from botocore.model import OperationModel, ServiceModel
from botocore.validate import ParamValidator

from localbatch.errors import (
    ClientException,
    EventsValidation,
    LogsInvalidParameter,
    ServiceError,
    SqsError,
)

LOGS_TARGET_PREFIX = "Logs_20140328."
#: The services spoken with the JSON protocol: their X-Amz-Target prefix, the error of a malformed
#: request and the JSON version of their bodies.
JSON_SERVICES: dict[str, tuple[str, type[ServiceError], str]] = {
    "logs": (LOGS_TARGET_PREFIX, LogsInvalidParameter, "1.1"),
    "sqs": ("AmazonSQS.", SqsError, "1.0"),
    "events": ("AWSEvents.", EventsValidation, "1.1"),
}
_REGION_RE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")
DEFAULT_REGION = "us-east-1"


@cache
def service_model(name: str) -> ServiceModel:
    model: ServiceModel = botocore.session.get_session().get_service_model(name)
    return model


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    operation: str


@cache
def _batch_routes() -> tuple[Route, ...]:
    routes: list[Route] = []
    model = service_model("batch")
    for name in model.operation_names:
        http = model.operation_model(name).http
        template = http["requestUri"].split("?")[0]
        # Batch URIs hold only letters and slashes besides their labels, so no escaping is needed.
        regex = "^" + re.sub(r"\{(\w+)\+?\}", lambda m: f"(?P<{m.group(1)}>.+)", template) + "$"
        routes.append(Route(http["method"], re.compile(regex), name))
    return tuple(routes)


@dataclass(frozen=True)
class ParsedRequest:
    service: str  # "batch" | "logs" | "sqs" | "events"
    operation: str
    params: dict[str, Any]
    region: str


def region_from_headers(headers: dict[str, str]) -> str:
    match = _REGION_RE.search(headers.get("authorization", ""))
    return match.group(1) if match else DEFAULT_REGION


def _validate(operation: OperationModel, params: dict[str, Any], error: type[ServiceError]) -> None:
    if operation.input_shape is None:
        return
    report = ParamValidator().validate(params, operation.input_shape)
    if report.has_errors():
        raise error(report.generate_report().replace("\n", " "))


def _load_json(body: bytes, error: type[ServiceError]) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise error(f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise error("Request body must be a JSON object")
    return data


def batch_operation(method: str, raw_path: str) -> str | None:
    """The Batch operation a rest-json request addresses, or None."""
    for route in _batch_routes():
        if route.method == method and route.pattern.match(raw_path):
            return route.operation
    return None


def service_of(headers: dict[str, str]) -> str:
    """The service a request addresses: by its X-Amz-Target prefix; none: Batch (rest-json). An
    unknown prefix counts as Logs', which answers it InvalidParameterException."""
    target = headers.get("x-amz-target")
    if target is None:
        return "batch"
    for service, (prefix, _, _) in JSON_SERVICES.items():
        if target.startswith(prefix):
            return service
    return "logs"


def json_operation(service: str, headers: dict[str, str]) -> str | None:
    """The operation a JSON-protocol request of ``service`` names, or None."""
    prefix = JSON_SERVICES[service][0]
    target = headers.get("x-amz-target", "")
    name = target[len(prefix) :]
    if target.startswith(prefix) and name in service_model(service).operation_names:
        return name
    return None


def logs_operation(headers: dict[str, str]) -> str | None:
    return json_operation("logs", headers)


def json_media_type(service: str) -> str:
    return f"application/x-amz-json-{JSON_SERVICES[service][2]}"


def parse_batch(
    method: str, raw_path: str, query: str, headers: dict[str, str], body: bytes
) -> ParsedRequest | None:
    """Resolve a rest-json Batch request, or None when no Batch operation matches the path."""
    for route in _batch_routes():
        if route.method != method:
            continue
        match = route.pattern.match(raw_path)
        if match is None:
            continue
        operation = service_model("batch").operation_model(route.operation)
        params = _load_json(body, ClientException) if method == "POST" else {}
        for label, value in match.groupdict().items():
            params[label] = unquote(value)
        if operation.input_shape is not None:
            query_values = parse_qs(query)
            for member_name, member in operation.input_shape.members.items():
                if member.serialization.get("location") != "querystring":
                    continue
                values = query_values.get(member.serialization.get("name", member_name))
                if values is None:
                    continue
                params[member_name] = values if member.type_name == "list" else values[0]
        _validate(operation, params, ClientException)
        return ParsedRequest("batch", route.operation, params, region_from_headers(headers))
    return None


def parse_json(service: str, headers: dict[str, str], body: bytes) -> ParsedRequest:
    """A JSON-protocol request of ``service`` (logs, sqs, events), checked against its input shape."""
    _, error, _ = JSON_SERVICES[service]
    operation_name = json_operation(service, headers)
    if operation_name is None:
        raise error(f"Unknown operation {headers.get('x-amz-target', '')!r}")
    params = _load_json(body, error)
    _validate(service_model(service).operation_model(operation_name), params, error)
    return ParsedRequest(service, operation_name, params, region_from_headers(headers))


def parse_logs(headers: dict[str, str], body: bytes) -> ParsedRequest:
    return parse_json("logs", headers, body)


def error_body(error: ServiceError, service: str) -> tuple[int, dict[str, str], bytes]:
    """AWS's JSON error shape: botocore reads the code from the header (rest-json) or `__type`.

    SQS names the error's shape in `__type` and its query-protocol code in `x-amzn-query-error`
    (`<code>;Sender|Receiver`), which botocore shows as the error's Code."""
    headers = {"x-amzn-ErrorType": error.code}
    payload = {"__type": error.code, "message": error.message}
    if service in JSON_SERVICES:
        headers["content-type"] = json_media_type(service)
    else:
        headers["content-type"] = "application/json"
    if service == "sqs":
        query_code = error.query_code if isinstance(error, SqsError) else error.code
        fault = "Sender" if getattr(error, "sender_fault", error.status < 500) else "Receiver"
        headers["x-amzn-query-error"] = f"{query_code};{fault}"
        payload["__type"] = f"com.amazonaws.sqs#{error.code}"
    return error.status, headers, json.dumps(payload).encode()
