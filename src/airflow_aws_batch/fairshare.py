"""Fair-share scheduling: share identifiers, scheduling priorities and what each job queue accepts.

Pure apart from :class:`QueueKinds`, a lock-guarded cache (no I/O of its own: callers pass the call
that reads a queue).

A Batch job queue is either FIFO or fair-share (it has a ``schedulingPolicyArn``); the kind is fixed
when the queue is created (a FIFO queue cannot get a policy; a policy can be replaced, not removed),
so a kind once read is kept for the life of the executor. On a fair-share queue every SubmitJob must
carry a ``shareIdentifier``; on a FIFO queue it must not. ``schedulingPriorityOverride`` only orders
jobs within one share of a fair-share queue; the executor sends its own only there.

When the request builder does not know the queue's kind yet (the startup check is off, or a task's
``executor_config`` names another queue), the values the executor would add go into the request under
:data:`PENDING_KEY`, and the submit thread resolves them with :meth:`QueueKinds.resolve` before the
first SubmitJob to that queue (one DescribeJobQueues per queue, within the status-call budget).

Airflow 3.1 to 3.3 workloads carry ``pool_slots`` but not the pool: for ``{pool}`` the executor reads
the pool of each task instance it is given from the scheduler's session (``queue_workload``).
"""

from __future__ import annotations

import enum
import hashlib
import re
import string
import threading
from collections.abc import Callable, Mapping
from typing import Any

#: Fields a ``share_identifier`` template may use.
SHARE_FIELDS = ("dag_id", "task_id", "queue", "pool", "team")
#: The template used on fair-share queues when ``share_identifier`` is not set: one share per DAG,
#: so that no DAG's burst starves the others.
DEFAULT_SHARE_TEMPLATE = "{dag_id}"
#: What ``{team}`` renders to when the executor serves no team (and ``{pool}``/``{queue}`` when empty).
NO_TEAM = "default"
MAX_SHARE_IDENTIFIER = 255
MIN_PRIORITY = 0
MAX_PRIORITY = 9999
PRIORITY_MODES = ("clamp", "off")
#: Request member holding what the executor adds on a fair-share queue, until the queue's kind is known.
PENDING_KEY = "x-airflow-fair-share"

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_]")
SHARE_IDENTIFIER_PATTERN = re.compile(r"[A-Za-z0-9_]{1,255}")


class QueueKind(enum.Enum):
    FIFO = "FIFO"
    FAIR_SHARE = "fair-share"


#: Reads one job queue: ``(kind, other names of the queue)``, or None when there is no such queue.
QueueReader = Callable[[str], "tuple[QueueKind, tuple[str, ...]] | None"]


class FairShareMismatch(ValueError):
    """A request that its job queue would refuse (e.g. a share identifier for a FIFO queue)."""


def template_problem(template: str) -> str | None:
    """What is wrong with a ``share_identifier`` template, or None when it is usable."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"an invalid template ({exc}): {template!r}"
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in SHARE_FIELDS:
            return f"unknown field {{{field}}} in {template!r}"
        if spec or conversion:
            return f"a format spec or conversion on {{{field}}} in {template!r}"
    return None


def template_fields(template: str) -> set[str]:
    """The fields a (valid) template uses."""
    return {field for _l, field, _s, _c in string.Formatter().parse(template) if field}


def sanitize_share_identifier(raw: str) -> str:
    """``raw`` fitted to Batch's share identifiers: letters, digits and ``_``, 1 to 255 characters.

    Other characters become ``_``; an empty result is ``default``. Deterministic; an identifier over
    255 characters is cut and ends in ``_`` plus 8 hex digits of a hash of ``raw``, so distinct long
    identifiers stay distinct. (A trailing ``*`` is a prefix wildcard in policies, never in a job.)
    """
    value = _NOT_ALLOWED.sub("_", raw)
    if not value:
        return NO_TEAM
    if len(value) > MAX_SHARE_IDENTIFIER:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        value = f"{value[: MAX_SHARE_IDENTIFIER - 9]}_{digest}"
    return value


def render_share_identifier(
    template: str,
    *,
    dag_id: str,
    task_id: str,
    queue: str | None,
    pool: str | None,
    team: str | None,
) -> str:
    """The sanitised share identifier of one task; empty fields render as ``default``."""
    values = {
        "dag_id": dag_id,
        "task_id": task_id,
        "queue": queue or NO_TEAM,
        "pool": pool or NO_TEAM,
        "team": team or NO_TEAM,
    }
    return sanitize_share_identifier(template.format(**values))


def priority_override(mode: str, priority_weight: int | None) -> int | None:
    """``schedulingPriorityOverride`` for a task's ``priority_weight``: None when ``mode`` is ``off``
    or the weight is unknown; else the weight clamped to 0..9999 (a higher weight runs first)."""
    if mode == "off" or priority_weight is None:
        return None
    return max(MIN_PRIORITY, min(MAX_PRIORITY, int(priority_weight)))


def priority_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable ``schedulingPriorityOverride``, or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None  # the botocore model check reports the type
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        return f"an integer from {MIN_PRIORITY} to {MAX_PRIORITY} (Batch's range)"
    return None


def share_identifier_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable ``shareIdentifier`` in a SubmitJob, or None."""
    if not isinstance(value, str):
        return None  # the botocore model check reports the type
    if not SHARE_IDENTIFIER_PATTERN.fullmatch(value):
        return "1 to 255 letters, digits or _ (Batch's share identifiers)"
    return None


def fair_share_member_problems(request: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(path, expected, found)`` for a ``schedulingPriorityOverride`` or ``shareIdentifier`` of
    ``request`` that Batch would refuse (types are left to the botocore model check)."""
    problems: list[tuple[str, str, str]] = []
    if "schedulingPriorityOverride" in request:
        value = request["schedulingPriorityOverride"]
        expected = priority_problem(value)
        if expected is not None:
            problems.append(("schedulingPriorityOverride", expected, repr(value)))
    if "shareIdentifier" in request:
        value = request["shareIdentifier"]
        expected = share_identifier_problem(value)
        if expected is not None:
            problems.append(("shareIdentifier", expected, repr(value)))
    return problems


def apply_kind(request: dict[str, Any], kind: QueueKind | None, ours: Mapping[str, Any]) -> dict[str, Any]:
    """``request`` for a queue of ``kind``: on a fair-share queue ``ours`` fills in what the request does
    not set; on a FIFO queue ``ours`` is dropped, and a ``shareIdentifier`` the user set is refused.

    ``kind`` None (queue not found) is treated as FIFO without the refusal: Batch then says what is wrong.
    """
    request.pop(PENDING_KEY, None)
    if kind is QueueKind.FAIR_SHARE:
        for member, value in ours.items():
            request.setdefault(member, value)
    elif kind is QueueKind.FIFO and "shareIdentifier" in request:
        raise FairShareMismatch(
            f"job queue {request.get('jobQueue')!r} is FIFO (no scheduling policy), which refuses "
            f"shareIdentifier {request['shareIdentifier']!r} (set by submit_job_kwargs or executor_config)"
        )
    return request


class QueueKinds:
    """Kinds of the job queues seen so far, by name and ARN; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, QueueKind] = {}
        self._reading: dict[str, threading.Lock] = {}

    def record(self, kind: QueueKind, *names: str) -> None:
        with self._lock:
            for name in names:
                if name:
                    self._kinds[name] = kind

    def get(self, queue: str) -> QueueKind | None:
        with self._lock:
            return self._kinds.get(queue)

    def known(self) -> dict[str, QueueKind]:
        with self._lock:
            return dict(self._kinds)

    def ensure(self, queue: str, read: QueueReader) -> QueueKind | None:
        """The kind of ``queue``, read with ``read(queue)`` (``(kind, other names)``, None: no such
        queue) when not known yet; one read per queue however many threads ask. ``read`` may raise."""
        kind = self.get(queue)
        if kind is not None:
            return kind
        with self._lock:
            reading = self._reading.setdefault(queue, threading.Lock())
        with reading:
            kind = self.get(queue)
            if kind is not None:
                return kind
            found = read(queue)
            if found is None:
                return None
            self.record(found[0], queue, *found[1])
            return found[0]

    def resolve(self, request: dict[str, Any], read: QueueReader) -> dict[str, Any]:
        """``request`` ready to send: a pending part (see :data:`PENDING_KEY`) applied for its queue's
        kind. Raises :class:`FairShareMismatch`, or what ``read`` raises."""
        if PENDING_KEY not in request:
            return request
        request = dict(request)
        ours = request.pop(PENDING_KEY) or {}
        kind = self.ensure(str(request.get("jobQueue", "")), read)
        return apply_kind(request, kind, ours)
