"""Who localbatch lets in: AWS clients on this machine, never a web page.

A page in the developer's browser can send a "simple" cross-origin request (a form or text/plain POST,
no custom headers) without asking, and a DNS-rebinding page can send anything to a name it controls.
So every request must name the served address in ``Host``, carry no ``Origin`` (botocore sends none),
use a JSON body type and carry an ``Authorization: AWS4-HMAC-SHA256`` header, which a page cannot add
without a CORS preflight; no preflight is ever approved. With credentials configured the signature is
recomputed with botocore's own signer and compared. Admin routes also take the data dir's bearer token.
The checks run before routing, so a request for an unknown route is refused the same way.
"""

from __future__ import annotations

import calendar
import hmac
import json
import re
import time
from dataclasses import dataclass
from html import escape

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ADMIN_PREFIX = "/_localbatch/"
JSON_TYPES = frozenset({"application/json", "application/x-amz-json-1.0", "application/x-amz-json-1.1"})
#: STS GetCallerIdentity (answered at ``POST /``) is the one form-encoded request botocore sends here.
FORM_TYPE = "application/x-www-form-urlencoded"
LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: AWS refuses a signature whose time is further than this from its clock.
MAX_SKEW_S = 15 * 60
#: Bodies are buffered to check their signature; nothing botocore sends here is near this size.
MAX_BODY_BYTES = 4 * 1024 * 1024
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z0-9-]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


class Refused(Exception):
    """A request localbatch does not admit, answered with a 403 in AWS's JSON error shape."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Policy:
    """``hosts``: the ``Host`` values that name this server. ``credentials``: (key, secret) whose
    signatures are verified, or None to require only the header's form. ``admin_token``: the bearer
    token of ``/_localbatch/*``."""

    hosts: frozenset[str]
    admin_token: str
    credentials: tuple[str, str] | None = None


def served_hosts(host: str, port: int) -> frozenset[str]:
    """Every ``Host`` header that names ``host`` (the ``--host`` given) or the loopback on ``port``."""
    given = f"[{host}]" if ":" in host and not host.startswith("[") else host
    names = {name.lower() for name in (*LOCAL_NAMES, given)}
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:  # a client leaves the default port out
        hosts |= names
    return frozenset(hosts)


def _header(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise Refused("AccessDeniedException", f"More than one {name} header")
    return values[0]


@dataclass(frozen=True)
class Incoming:
    """What admission reads of a request: all but the body."""

    method: str
    path: str
    query: str
    headers: dict[str, list[str]]
    has_body: bool


def check_plain(policy: Policy, incoming: Incoming) -> bool:
    """Everything but the signature itself; True when the admin bearer token admitted the request."""
    method, path, headers = incoming.method, incoming.path, incoming.headers
    if method == "OPTIONS":
        raise Refused("AccessDeniedException", "localbatch approves no CORS preflight")
    host = _header(headers, "host")
    if host is None or host.lower() not in policy.hosts:
        raise Refused("AccessDeniedException", f"Host {host!r} does not name this localbatch")
    if "origin" in headers:
        raise Refused("AccessDeniedException", "localbatch admits no browser requests (Origin header)")
    content_type = (_header(headers, "content-type") or "").split(";")[0].strip().lower()
    if incoming.has_body or method in ("POST", "PUT"):
        form_ok = path == "/" and method == "POST" and "x-amz-target" not in headers
        if content_type not in JSON_TYPES and not (form_ok and content_type == FORM_TYPE):
            raise Refused("AccessDeniedException", f"Content-Type {content_type or 'none'!r} is not JSON")
    authorization = _header(headers, "authorization") or ""
    if path.startswith(ADMIN_PREFIX) and authorization.startswith("Bearer "):
        if not hmac.compare_digest(authorization[len("Bearer ") :].encode(), policy.admin_token.encode()):
            raise Refused("AccessDeniedException", "Wrong localbatch admin token")
        return True
    if not authorization:
        raise Refused("MissingAuthenticationTokenException", "Missing Authentication Token")
    if _AUTH_RE.fullmatch(authorization) is None:
        raise Refused("IncompleteSignatureException", "Authorization is not an AWS4-HMAC-SHA256 signature")
    return False


def verify_signature(policy: Policy, incoming: Incoming, body: bytes) -> None:
    """Recompute the request's SigV4 signature with the configured secret (botocore's signer)."""
    headers = incoming.headers
    if policy.credentials is None:
        return
    match = _AUTH_RE.fullmatch(headers["authorization"][0])
    assert match is not None  # check_plain refused anything else
    key, secret = policy.credentials
    if not hmac.compare_digest(match["key"].encode(), key.encode()):
        raise Refused("UnrecognizedClientException", "The security token included in the request is invalid.")
    signed = match["signed"].split(";")
    amz_date = _header(headers, "x-amz-date") or ""
    if "host" not in signed or "x-amz-date" not in signed or not amz_date.startswith(match["date"]):
        raise Refused("IncompleteSignatureException", "The signature must cover Host and X-Amz-Date")
    if _AMZ_DATE_RE.fullmatch(amz_date) is None:
        raise Refused("IncompleteSignatureException", f"X-Amz-Date {amz_date!r} is malformed")
    # By hand: strptime would cost as much as the rest of the check.
    fields = (amz_date[0:4], amz_date[4:6], amz_date[6:8], amz_date[9:11], amz_date[11:13], amz_date[13:15])
    signed_at = calendar.timegm(tuple(int(field) for field in fields))
    if abs(time.time() - signed_at) > MAX_SKEW_S:
        raise Refused("InvalidSignatureException", "Signature expired: X-Amz-Date is too far from now")
    url = f"http://{headers['host'][0]}{incoming.path}" + (f"?{incoming.query}" if incoming.query else "")
    request = AWSRequest(
        method=incoming.method,
        url=url,
        headers={name: ",".join(headers.get(name, [])) for name in signed},
        data=body,
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key, secret), match["service"], match["region"])
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected.encode(), match["signature"].encode()):
        raise Refused(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )


async def _refuse(send: Send, error: Refused, xml: bool) -> None:
    """AWS's JSON error, or for a form-encoded request (the query protocol: STS) its XML error."""
    if xml:
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{error.code}</Code>"
            f"<Message>{escape(error.message)}</Message></Error></ErrorResponse>"
        ).encode()
    else:
        body = json.dumps({"__type": error.code, "message": error.message}).encode()
    headers = [
        (b"content-type", b"text/xml" if xml else b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-errortype", error.code.encode()),
    ]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Admission:
    """ASGI middleware in front of every route: refuses what :class:`Policy` does not admit."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # no route speaks it; closing before accepting answers 403
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # lifespan events carry no request
            await self.app(scope, receive, send)
            return
        headers: dict[str, list[str]] = {}
        for raw_name, raw_value in scope["headers"]:
            headers.setdefault(raw_name.decode("latin-1").lower(), []).append(raw_value.decode("latin-1"))
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?")[0]
        length = headers.get("content-length", ["0"])[0]
        incoming = Incoming(
            method=scope["method"],
            path=path,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            has_body="transfer-encoding" in headers or length.strip() not in ("", "0"),
        )
        try:
            by_token = check_plain(self.policy, incoming)
            if by_token or self.policy.credentials is None:
                await self.app(scope, receive, send)
                return
            body, messages = await _read_body(receive)
            verify_signature(self.policy, incoming, body)
        except Refused as error:
            content_type = headers.get("content-type", [""])[0]
            await _refuse(send, error, xml=content_type.lower().startswith(FORM_TYPE))
            return
        pending = list(messages)

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise Refused("AccessDeniedException", "The client went away before its body arrived")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refused("AccessDeniedException", f"Request body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            body = b"".join(chunks)
            return body, [{"type": "http.request", "body": body, "more_body": False}]
