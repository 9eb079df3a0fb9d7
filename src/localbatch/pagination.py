"""The nextToken of paged Batch and Logs answers: an opaque, URL-safe encoding of where the page ended."""

from __future__ import annotations

import base64
import json
from typing import Any

from localbatch.errors import ClientException


def encode_token(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def decode_token(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as exc:
        raise ClientException("The nextToken is not valid.") from exc
