"""The workload store's pure rules: store and object URLs, the object format, object names, and the
job command that runs a stored workload. No I/O: ``config`` and ``submit`` (which build requests)
use them, and :mod:`airflow_aws_batch.workloads` (the stores themselves) builds on them.

Object format (UTF-8 JSON): ``{"version": 1, "workloads": [<workload>, ...]}``, each workload the
parsed ``model_dump_json()`` of an ``ExecuteTask``/``ExecuteCallback``. A single job's object holds one;
an array job's object holds one per child, in child index order.

Until the submit thread places them, the workloads of a request wait under :data:`PENDING_KEY` (a
list of ``model_dump_json()`` strings) and the command holds :data:`PLACEHOLDER_URL`; the core keeps
that request, so every attempt (a resubmission included) writes a fresh object.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

FORMAT_VERSION = 1
LAUNCH_MODULE = "airflow_aws_batch.launch"
#: Request member holding the ``model_dump_json()`` strings of the workloads a request runs, until the
#: submit thread writes them to the store (never sent to Batch).
PENDING_KEY = "x-airflow-workloads"
#: The command's object URL until the submit thread knows it; as long as a real one (for size checks).
PLACEHOLDER_URL = "s3://" + "x" * 63 + "/" + "x" * 200
#: Longest ``prefix`` of an s3:// store: S3 keys are at most 1,024 bytes, and names take up to 250.
MAX_PREFIX_BYTES = 700
MAX_NAME_CHARS = 250
#: Random bytes ending every object name (hex: twice as many characters). A job's role may read every
#: object under the prefix, so a name nobody can compute is what keeps a task from its siblings' tokens.
RANDOM_BYTES = 16
#: Characters of a SHA-256 (hex) that stand for the cut end of a readable part too long to keep whole.
_CUT_HASH_CHARS = 12

# S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens, starting and ending alphanumeric.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Characters kept in object names as they are; anything else becomes "_" (S3's "safe" set, and safe
# as file names).
_UNSAFE = re.compile(r"[^A-Za-z0-9!_.*'()/-]")


@dataclass(frozen=True)
class Location:
    """A store (``key`` is then the prefix, maybe empty) or one object: where ``url`` points."""

    scheme: Literal["s3", "file"]
    #: The bucket (s3) or "" (file).
    bucket: str
    #: The key or key prefix without leading or trailing "/" (s3), or an absolute path (file).
    key: str

    @property
    def url(self) -> str:
        if self.scheme == "file":
            return "file://" + self.key
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"


def parse_store_url(url: str) -> Location:
    """``url`` of a store (``workload_store``); ValueError saying what is expected otherwise."""
    return _parse(url, what="store")


def parse_object_url(url: str) -> Location:
    """``url`` of one object (the launcher's argument); ValueError saying what is expected otherwise."""
    location = _parse(url, what="object")
    if location.scheme == "s3" and not location.key:
        raise ValueError(f"an object URL s3://bucket/key, found {url!r} (no key)")
    return location


def _parse(url: str, *, what: str) -> Location:
    expected = "s3://bucket/prefix or file:///absolute/dir" if what == "store" else "s3://... or file://..."
    parts = urlsplit(url.strip())
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(
                f"{expected} with a valid bucket name (3-63 lower-case letters, digits, . or -), "
                f"found {url!r}"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"{expected} without ?query or #fragment, found {url!r}")
        key = unquote(parts.path).strip("/")
        if "//" in key:
            raise ValueError(f"{expected} without empty path segments (//), found {url!r}")
        if len(key.encode()) > MAX_PREFIX_BYTES and what == "store":
            raise ValueError(f"{expected} with a prefix of at most {MAX_PREFIX_BYTES} bytes, found {url!r}")
        return Location("s3", bucket, key)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{expected}: file URLs name a local path (file:///dir), found {url!r}")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"{expected} with an absolute path, found {url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"{expected} without ?query or #fragment, found {url!r}")
        normal = os.path.normpath(path)
        return Location("file", "", normal if what == "object" else normal.rstrip("/") or "/")
    raise ValueError(f"{expected}, found {url!r}")


# ---------------------------------------------------------------- object format


def encode_object(workloads: Sequence[str]) -> bytes:
    """The object holding ``workloads`` (``model_dump_json()`` strings), in order."""
    if not workloads:
        raise ValueError("an object holds at least one workload")
    parsed = [json.loads(text) for text in workloads]
    return json.dumps({"version": FORMAT_VERSION, "workloads": parsed}, separators=(",", ":")).encode()


def decode_object(data: bytes) -> list[Any]:
    """The workloads of an object (parsed JSON, in order); ValueError naming what is wrong."""
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object, found {type(document).__name__}")
    version = document.get("version")
    if version != FORMAT_VERSION:
        raise ValueError(f"expected version {FORMAT_VERSION}, found {version!r}")
    workloads = document.get("workloads")
    if not isinstance(workloads, list) or not workloads:
        raise ValueError("expected a non-empty list under 'workloads'")
    return workloads


def launch_command(url: str) -> list[str]:
    """The job command that runs the workload(s) stored at ``url``."""
    return ["python", "-m", LAUNCH_MODULE, url]


def object_key(prefix: str, name: str, *, random_part: str | None = None) -> str:
    """Key (or relative path) of a new object for ``name`` under ``prefix``.

    ``name`` is only the readable part: unsafe characters become ``_``, each path segment starts with
    neither ``.`` nor ``-`` (so the name cannot leave the prefix), and a part longer than fits is cut
    with a hash of the whole in place of its end. Then come ``-`` and :data:`RANDOM_BYTES` random bytes
    in hex (``random_part``, for tests), never cut: two objects never share a key, and nobody who can
    list or guess the readable part can name the object.
    """
    suffix = random_part if random_part is not None else secrets.token_hex(RANDOM_BYTES)
    segments = [_UNSAFE.sub("_", part).lstrip(".-") or "_" for part in name.split("/") if part]
    readable = "/".join(segments) or "_"
    room = MAX_NAME_CHARS - len(suffix) - 1
    if len(readable) > room:
        digest = hashlib.sha256(readable.encode()).hexdigest()[:_CUT_HASH_CHARS]
        readable = readable[: room - _CUT_HASH_CHARS - 1].rstrip("/") + "_" + digest
    relative = f"{readable}-{suffix}"
    return f"{prefix}/{relative}.json" if prefix else f"{relative}.json"


# ---------------------------------------------------------------- requests


def pending_workloads(request: Mapping[str, Any]) -> list[str] | None:
    """The workloads a request waits to store, or None when it carries its workload in its command."""
    pending = request.get(PENDING_KEY)
    return list(pending) if pending is not None else None
