"""One record per workload the core holds, and how its request is kept: the entries of the state
machine (:mod:`core.state`), lean because a busy scheduler holds thousands. Pure: no I/O.
"""

from __future__ import annotations

import enum
import itertools
import pickle
import uuid
import zlib
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar


class Phase(enum.Enum):
    PENDING = "pending"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    RUNNING = "running"
    #: The job FAILED after it started in Batch; waiting to learn whether Airflow saw the task start.
    CHECKING = "checking"


_T = TypeVar("_T")


class _Rare(Generic[_T]):
    """An attribute of :class:`Entry` that most entries leave at its default all their life (a
    failure being checked, ambiguous SubmitJob calls, stalls, a revoke): kept in the entry's side
    dict, created when a value other than the default is set and dropped when all are back to it,
    so that the thousands of entries of a busy scheduler do not each carry a slot for it."""

    __slots__ = ("_default", "_name")

    def __init__(self, default: _T) -> None:
        self._default = default
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, entry: Entry | None, owner: type | None = None) -> _T:
        if entry is None or entry.rare is None:
            return self._default
        value: _T = entry.rare.get(self._name, self._default)
        return value

    def __set__(self, entry: Entry, value: _T) -> None:
        rare = entry.rare
        if value == self._default:
            if rare is not None:
                rare.pop(self._name, None)
                if not rare:
                    entry.rare = None
        elif rare is None:
            entry.rare = {self._name: value}
        else:
            rare[self._name] = value


class Entry:
    # Slots and a compressed request: a scheduler may hold thousands of these.
    __slots__ = (
        "adopted",
        "attempts",
        "due",
        "expires_at",
        "job_id",
        "job_queue",
        "key",
        "log_path",
        "next_at",
        "phase",
        "rare",
        "request",
        "seq",
        "started",
        "status",
        "status_reason",
        "submission",
        "ti_id",
        "try_number",
    )

    #: Set on a revoke while the SubmitJob is in flight: its result terminates the job.
    revoked: _Rare[bool] = _Rare(False)
    #: STALLED outcomes in a row (each waits longer); reset when a SubmitJob is answered.
    stalls: _Rare[int] = _Rare(0)
    #: Set after an ambiguous SubmitJob: look for its job created at or after this (epoch ms).
    lookup_after_ms: _Rare[int | None] = _Rare(None)
    #: The last SubmitJob error, or the reason of the failure being checked.
    last_reason: _Rare[str] = _Rare("")
    #: The job whose failure is being checked (no longer tracked, so not in ``job_id``).
    failed_job_id: _Rare[str | None] = _Rare(None)
    #: The ``submission`` tags of unresolved ambiguous SubmitJob calls.
    ambiguous: _Rare[tuple[str, ...]] = _Rare(())

    def __init__(self, key: Hashable, request: bytes | dict[str, Any] | None, job_queue: str | None) -> None:
        self.key = key
        self.request = request
        self.job_queue = job_queue
        self.phase = Phase.PENDING
        self.attempts = 0
        self.next_at = 0.0
        self.job_id: str | None = None
        self.status = ""
        self.status_reason = ""
        self.started = False
        #: The current job is a previous scheduler's (its id was saved, or is said on adoption).
        self.adopted = False
        #: The values of the ``_Rare`` attributes set to other than their default; None: none is.
        self.rare: dict[str, Any] | None = None
        self.log_path: str | None = None
        #: The task instance's id as 16 bytes (a UUID), None when Airflow's view cannot be checked.
        self.ti_id: bytes | None = None
        self.try_number = 0
        #: The ``submission`` tag of the SubmitJob in flight.
        self.submission = ""
        #: When the workload's token expires (the core's clock); None when unknown.
        self.expires_at: float | None = None
        #: Position in ``EntryTable.entries`` (insertion order), which is the order due submits go out in.
        self.seq = 0
        #: The one heap item of ``EntryTable`` that stands for this pending entry; older items are stale.
        self.due: tuple[Any, ...] | None = None


_WINDOW_BITS = 12
_WINDOW = 1 << _WINDOW_BITS


def submission_ids() -> Callable[[], str]:
    """Submission ids: 32 hex digits, a random half per core and a counter. As unique as uuid4's
    across schedulers and restarts, without a system call per SubmitJob (a burst needs thousands)."""
    prefix = uuid.uuid4().hex[:16]
    counter = itertools.count()
    return lambda: f"{prefix}{next(counter):016x}"


class Packer:
    """Requests kept compressed, with the first one as zlib's preset dictionary.

    A request is mostly its command (or its stored workload): the workload JSON with a signed token,
    which zlib alone barely shrinks. What one task's request shares with another's (option names, DAG
    and run ids, the token's header, the job definition) compresses away against the first request.
    Pickled, not JSON: these bytes never leave the process, and pickling costs a fraction of encoding.
    """

    __slots__ = ("_zdict",)

    def __init__(self) -> None:
        self._zdict: bytes | None = None

    def pack(self, request: dict[str, Any]) -> bytes:
        raw = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        if self._zdict is None:
            self._zdict = raw[-_WINDOW:]  # only the last window's worth of a dictionary counts
        # Raw deflate with a small window: a heartbeat packs dozens of these, and a compressor with
        # zlib's default 32 KiB window costs several times as much to set up.
        packer = zlib.compressobj(6, zlib.DEFLATED, -_WINDOW_BITS, 4, zdict=self._zdict)
        return packer.compress(raw) + packer.flush()

    def unpack(self, blob: bytes) -> dict[str, Any]:
        assert self._zdict is not None
        unpacker = zlib.decompressobj(-_WINDOW_BITS, zdict=self._zdict)
        result: dict[str, Any] = pickle.loads(unpacker.decompress(blob) + unpacker.flush())
        return result

    def copy_of(self, stored: bytes | dict[str, Any]) -> dict[str, Any]:
        """A request of one's own: unpacked, or a new top level over a request not packed yet (whose
        nested members nobody changes in place: see :meth:`Core.add`)."""
        return self.unpack(stored) if isinstance(stored, bytes) else dict(stored)


def expires_before(entry: Entry, at: float, clock: Callable[[], float]) -> str:
    """Why a resubmit at ``at`` is pointless (the workload's token has expired by then), or ''."""
    if entry.expires_at is None or at < entry.expires_at:
        return ""
    left = entry.expires_at - clock()
    when = f"expired {-left:.0f}s ago" if left <= 0 else f"expires in {left:.0f}s"
    return (
        f"not resubmitted: the workload's token {when}, before a new job could start the task "
        "([scheduler] task_queued_timeout); Airflow's retries decide what happens next"
    )
