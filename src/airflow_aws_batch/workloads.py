"""The workload store: each workload (its JSON, token included) written where only its job reads it.

With ``workload_store`` unset, a task's workload travels in ``containerOverrides.command``, so its
token is in the SubmitJob request and in everything that shows it (DescribeJobs, EventBridge "Batch
Job State Change" events, API activity logs). With it set, the submit thread writes the workload(s)
to one object just before SubmitJob and the job's command only names that object::

    python -m airflow_aws_batch.launch s3://bucket/prefix/<name>-<32 random hex digits>.json

The launcher (:mod:`airflow_aws_batch.launch`) reads it, deletes it when it holds a single workload
and runs the Task SDK on it. The rules that need no I/O (URLs, the object format, object names, the
job's command) are :mod:`airflow_aws_batch.workload_rules`'.

Stores: ``s3://bucket[/prefix]`` (the scheduler's AWS connection writes, the job role reads) and
``file:///absolute/dir`` (a private directory of the user whose processes run the jobs: localbatch,
the demo). Not supported: other
schemes, S3 access points or bucket ARNs, server-side encryption settings beyond the bucket's default.
Objects of jobs that never ran (terminated, revoked, lost) are not deleted by anyone: an S3 lifecycle
rule expires them (``airflow aws-batch render`` adds one of a day); a ``file://`` directory is left as is.

Nothing here imports boto3 or Airflow at module level: the launcher must start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from airflow_aws_batch.workload_rules import (
    PENDING_KEY,
    Location,
    decode_object,
    encode_object,
    launch_command,
    object_key,
    parse_object_url,
    parse_store_url,
)

# PENDING_KEY, decode_object, parse_object_url and parse_store_url are workload_rules', named from
# here too by the executor, its threads and adoption.
__all__ = [
    "NO_STORE_WARNING",
    "PENDING_KEY",
    "FileStore",
    "S3Store",
    "StoreError",
    "WorkloadStore",
    "decode_object",
    "delete_object",
    "open_store",
    "parse_object_url",
    "parse_store_url",
    "place_workloads",
    "read_object",
]


#: What the scheduler (at start) and ``airflow aws-batch check`` say while ``workload_store`` is unset.
NO_STORE_WARNING = (
    "workload_store is unset: each task's token travels in its job's command "
    "(containerOverrides.command), readable by whoever may call DescribeJobs or read the account's "
    "EventBridge events and API activity logs. Fix: set "
    "AIRFLOW__AWS_BATCH_EXECUTOR__WORKLOAD_STORE=s3://BUCKET/PREFIX "
    "(airflow aws-batch render --workload-store s3://BUCKET/PREFIX creates the bucket and its grants)"
)

# Error codes after which writing again soon may work: an attempt that waits, not one that counts.
# Expired credentials too: the store drops its client after an error, and the next one loads fresh
# credentials (an instance or pod role's are renewed before they expire).
_RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "503",
        "500",
        "Throttling",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
# What to check for the errors one fixes in the deployment, not by waiting.
_HINTS = {
    "NoSuchBucket": "the bucket does not exist (create it, or fix [aws_batch_executor] workload_store)",
    "AccessDenied": "the role lacks s3:PutObject/GetObject/DeleteObject on the prefix",
    "AllAccessDisabled": "the bucket refuses all access",
    "InvalidAccessKeyId": "the AWS credentials are not valid",
    "SignatureDoesNotMatch": "the AWS credentials are not valid",
    "ExpiredToken": "the AWS credentials have expired",
    "PermanentRedirect": "the bucket is in another region than the connection's",
    "AuthorizationHeaderMalformed": "the bucket is in another region than the connection's",
    "NoSuchKey": "the object does not exist (already consumed, expired, or never written)",
    "404": "the object does not exist (already consumed, expired, or never written)",
    "403": "access denied (the role lacks s3:GetObject/DeleteObject on the prefix)",
}


class StoreError(Exception):
    """A store could not be used. ``retryable``: the same call may work shortly (throttling, 5xx,
    a dropped connection); otherwise something must be fixed (missing bucket, permissions)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


# ---------------------------------------------------------------- stores


class WorkloadStore(Protocol):
    """Where the executor writes workloads (sync; called on worker threads only)."""

    @property
    def url(self) -> str: ...

    def put(self, name: str, workloads: Sequence[str]) -> str:
        """Write ``workloads`` (``model_dump_json()`` strings) as object ``name``; its URL."""
        ...

    def delete(self, url: str) -> None:
        """Remove an object this store wrote (gone already is fine)."""
        ...

    def read(self, url: str) -> bytes:
        """The bytes of an object this store wrote; StoreError when it cannot be read (or is gone)."""
        ...

    def probe(self) -> None:
        """Write, read back and delete a probe object; StoreError saying what failed."""
        ...


def _probe_body() -> tuple[str, bytes]:
    marker = uuid.uuid4().hex
    return f"probe/{marker}", json.dumps({"probe": marker}).encode()


class FileStore:
    """Objects as files under a directory, readable by this user only.

    The directory (and each one under it) is created 0700 when missing; an existing one must belong
    to this user and be writable by nobody else, or nothing is written: whoever else may write there
    could swap an object before its job reads it, or place one under a name a job will be given.
    """

    def __init__(self, location: Location) -> None:
        self.root = Path(location.key)
        self.url = location.url

    def put(self, name: str, workloads: Sequence[str]) -> str:
        return self._write(object_key("", name), encode_object(workloads))

    def _write(self, relative: str, body: bytes) -> str:
        path = self.root / relative
        try:
            self._private_dirs(path.parent)
            # Written aside, then renamed: a launcher never reads half an object.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(body)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreError(f"could not write {path}: {exc.strerror or exc}") from exc
        return "file://" + str(path)

    def _private_dirs(self, directory: Path) -> None:
        """Create ``directory`` (under the root) and whatever is missing above it, each 0700; StoreError
        when the root or a directory under it is somebody else's or writable by group or others.

        Judged from the root down, each before anything is made in it: another user may have made
        one first, and one made meanwhile by another thread is judged like any other.
        """
        if not self.root.exists():
            self.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        here = self.root
        for part in ("", *directory.relative_to(self.root).parts):
            here = here / part if part else here
            with contextlib.suppress(FileExistsError):
                here.mkdir(mode=0o700)
            _refuse_foreign(here)

    def delete(self, url: str) -> None:
        delete_object(url)

    def read(self, url: str) -> bytes:
        return read_object(url)

    def probe(self) -> None:
        relative, body = _probe_body()
        url = self._write(relative + ".json", body)
        if read_object(url) != body:
            raise StoreError(f"the probe object {url} read back differs from what was written")
        delete_object(url)


def _refuse_foreign(directory: Path) -> None:
    """StoreError unless ``directory`` belongs to this user and only this user may write in it."""
    info = directory.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise StoreError(f"could not write under {directory}: not a directory")
    if info.st_uid != os.geteuid():
        raise StoreError(
            f"refusing the workload store directory {directory}: it belongs to uid {info.st_uid}, not to "
            f"this user (uid {os.geteuid()}); use a directory of your own"
        )
    if info.st_mode & 0o022:
        raise StoreError(
            f"refusing the workload store directory {directory}: group or others may write in it "
            f"(mode {stat.S_IMODE(info.st_mode):o}); chmod 700 it"
        )


#: Builds an S3 client (called again after an error: credentials may have been refreshed).
S3ClientFactory = Callable[[], Any]


class S3Store:
    """Objects under ``s3://bucket/prefix``, written with the scheduler's AWS connection."""

    def __init__(self, location: Location, client_factory: S3ClientFactory) -> None:
        self.bucket = location.bucket
        self.prefix = location.key
        self.url = location.url
        self._factory = client_factory
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def put(self, name: str, workloads: Sequence[str]) -> str:
        key = object_key(self.prefix, name)
        self._put(key, encode_object(workloads))
        return f"s3://{self.bucket}/{key}"

    def _put(self, key: str, body: bytes) -> None:
        try:
            self._s3().put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        except Exception as exc:
            self._client = None
            raise _s3_error(f"could not write s3://{self.bucket}/{key}", exc) from exc

    def delete(self, url: str) -> None:
        location = parse_object_url(url)
        try:
            self._s3().delete_object(Bucket=location.bucket, Key=location.key)
        except Exception as exc:
            self._client = None
            raise _s3_error(f"could not delete {url}", exc) from exc

    def read(self, url: str) -> bytes:
        try:
            return read_object(url, s3_client=self._s3())
        except StoreError:
            self._client = None
            raise

    def probe(self) -> None:
        relative, body = _probe_body()
        key = object_key(self.prefix, relative)
        self._put(key, body)
        url = f"s3://{self.bucket}/{key}"
        try:
            read = self._s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            self._client = None
            raise _s3_error(f"wrote but could not read back {url}", exc) from exc
        if read != body:
            raise StoreError(f"the probe object {url} read back differs from what was written")
        self.delete(url)


def _s3_error(doing: str, exc: Exception) -> StoreError:
    """``exc`` (botocore's, or a connection error) as a StoreError saying what to fix."""
    code, message = _error_code(exc)
    if code is None:
        # No answer from S3 (connection refused or reset, timeout, DNS): may work shortly.
        return StoreError(f"{doing}: {type(exc).__name__}: {exc}", retryable=True)
    hint = _HINTS.get(code)
    text = f"{doing}: {code}: {message}" + (f" ({hint})" if hint else "")
    return StoreError(text, retryable=code in _RETRYABLE_CODES)


def _error_code(exc: Exception) -> tuple[str | None, str]:
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None, str(exc)
    error = response.get("Error") or {}
    code = str(error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "")
    return (code or "Unknown"), str(error.get("Message") or exc)


def open_store(url: str, *, s3_client_factory: S3ClientFactory | None = None) -> WorkloadStore:
    """The store ``url`` names (ValueError if it names none). ``s3_client_factory``: builds the S3
    client of an s3:// store (default: boto3's default session, i.e. the default credential chain)."""
    location = parse_store_url(url)
    if location.scheme == "file":
        return FileStore(location)
    return S3Store(location, s3_client_factory or _default_s3_client)


def _default_s3_client() -> Any:
    import boto3

    # boto3 reads AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL itself (e.g. a local S3 for tests).
    return boto3.client("s3")


# ---------------------------------------------------------------- reading (the launcher's side)


def read_object(url: str, *, s3_client: Any = None) -> bytes:
    """The bytes of the object at ``url``; StoreError saying why it cannot be read."""
    location = parse_object_url(url)
    if location.scheme == "file":
        try:
            return Path(location.key).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{url} does not exist (already consumed, expired, or never written)") from None
        except OSError as exc:
            raise StoreError(f"could not read {url}: {exc.strerror or exc}") from exc
    client = s3_client if s3_client is not None else _default_s3_client()
    try:
        body: bytes = client.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
    except Exception as exc:
        raise _s3_error(f"could not read {url}", exc) from exc
    return body


def delete_object(url: str, *, s3_client: Any = None) -> None:
    """Remove the object at ``url`` (already gone is fine); StoreError when it cannot be removed."""
    location = parse_object_url(url)
    if location.scheme == "file":
        try:
            Path(location.key).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"could not delete {url}: {exc.strerror or exc}") from exc
        return
    client = s3_client if s3_client is not None else _default_s3_client()
    try:
        client.delete_object(Bucket=location.bucket, Key=location.key)
    except Exception as exc:
        raise _s3_error(f"could not delete {url}", exc) from exc


# ---------------------------------------------------------------- requests


def place_workloads(request: dict[str, Any], store: WorkloadStore, name: str) -> str | None:
    """Write the request's pending workloads as object ``name`` and point its command at it.

    Changes ``request``'s top level only: the members on the way to the command are replaced by copies,
    because the executor's requests share nested members (see ``Core.add``).
    Returns the object's URL; None when the request has no pending workloads (nothing is written).
    Raises StoreError when the store refuses.
    """
    pending = request.pop(PENDING_KEY, None)
    if pending is None:
        return None
    url = store.put(name, list(pending))
    command = launch_command(url)
    eks = request.get("eksPropertiesOverride") or {}
    pod = eks.get("podProperties") or {}
    containers = pod.get("containers")
    if containers and isinstance(containers[0], dict) and "command" in containers[0]:
        # An EKS job's first pod container (the submit thread has placed the command for the kind).
        first = {**containers[0], "command": command}
        request["eksPropertiesOverride"] = {
            **eks,
            "podProperties": {**pod, "containers": [first, *containers[1:]]},
        }
    else:
        request["containerOverrides"] = {**(request.get("containerOverrides") or {}), "command": command}
    return url
