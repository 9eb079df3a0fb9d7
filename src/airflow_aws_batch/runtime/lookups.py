"""Finding what an ambiguous SubmitJob created, by its ``submission`` tag: the submit threads look
before a resubmit, the terminator to end what the call of a revoked task created.

Children of an array SubmitJob whose answer was lost share one lookup of the array: its N children
cost one ListJobs, not N.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from airflow_aws_batch.aws.shapes import JobDetail
from airflow_aws_batch.core.arrays import child_job_id
from airflow_aws_batch.core.messages import ACTIVE_STATUSES, SUBMISSION_TAG
from airflow_aws_batch.runtime.protocol import Threads


@dataclass(frozen=True, slots=True)
class ArrayRef:
    """Where the job of one child of an array SubmitJob whose answer was lost would be."""

    job_queue: str
    job_name: str
    #: The array call's ``submission`` tag.
    submission: str
    index: int
    #: The array's tags (without ``submission``), which every child carries.
    tags: tuple[tuple[str, str], ...]
    #: When the array's SubmitJob was sent (epoch milliseconds, this host's clock).
    sent_at_ms: int = 0


class ArrayLookupOpen(Exception):
    """The lookup for an array whose answer was lost found nothing yet, too soon to take that for
    "no array": its children wait (no SubmitJob alone) until ``until_ms`` (epoch milliseconds)."""

    def __init__(self, submission: str, until_ms: int) -> None:
        super().__init__(f"the lookup for the array of submission {submission} stays open until {until_ms}")
        self.until_ms = until_ms


def kept_of_duplicates(found: list[JobDetail]) -> JobDetail:
    """Of several jobs of one try, the one to keep: the earliest started that is still active (it may
    be running the task: the execution API lets only the first start through), else the newest
    (listings come oldest first: ties go last)."""
    started = [job for job in found if job.started_at and job.status in ACTIVE_STATUSES]
    if started:
        return min(started, key=lambda job: job.started_at or 0)
    return max(reversed(found), key=lambda job: job.created_at or 0)


class Lookups:
    """The lookups after ambiguous SubmitJobs, and what the lost arrays' lookups found (any thread)."""

    #: How long after an array's SubmitJob was sent a lookup that finds no array is final. Until
    #: then the call may still create it (Batch may take it in up to the client's 30 s read timeout
    #: after it was sent) or ListJobs may not list it yet; a child resubmitted alone meanwhile would
    #: run its try beside the array's child. Found, the lookup is final at once.
    array_lookup_settle_s = 45.0

    def __init__(self, threads: Threads) -> None:
        self.threads = threads
        #: Children of array SubmitJobs whose answer was lost, by the ``submission`` tag their own
        #: Submit carried (the core knows only that one); and what the lookup of each such array found
        #: (its parent id, or None for nothing, once final), so that its N children cost one lookup;
        #: and, for a lookup that found nothing too early to be final, when to look again.
        self._array_refs: dict[str, ArrayRef] = {}
        self._array_found: dict[str, str | None] = {}
        self._array_open: dict[str, int] = {}
        self._array_lock = threading.Lock()

    def array_lost(
        self,
        submissions: tuple[str, ...],
        *,
        job_queue: str,
        job_name: str,
        submission: str,
        tags: tuple[tuple[str, str], ...],
        sent_at_ms: int,
    ) -> None:
        """Remember where each child (``submissions``, in index order) of the array SubmitJob tagged
        ``submission`` would be: its answer was lost."""
        with self._array_lock:
            for index, child_submission in enumerate(submissions):
                self._array_refs[child_submission] = ArrayRef(
                    job_queue, job_name, submission, index, tags, sent_at_ms
                )

    def array_refs_of(self, submissions: tuple[str, ...]) -> list[ArrayRef]:
        with self._array_lock:
            return [self._array_refs[s] for s in submissions if s in self._array_refs]

    def find_array_child(self, submissions: tuple[str, ...], created_after_ms: int) -> str | None:
        """The child job that an array SubmitJob with a lost answer created for this workload, or None
        when the lookup for that array is final and found none.

        Raises :class:`BatchApiError` when Batch cannot be read, and :class:`ArrayLookupOpen` when
        nothing was found but too soon after the call to be final (see
        :attr:`array_lookup_settle_s`): nothing is resolved then.
        """
        for ref in self.array_refs_of(submissions):
            now_ms = int(time.time() * 1000)
            with self._array_lock:
                known = ref.submission in self._array_found
                parent = self._array_found.get(ref.submission)
                open_until = self._array_open.get(ref.submission)
            if not known and open_until is not None and now_ms < open_until:
                raise ArrayLookupOpen(ref.submission, open_until)
            if not known:
                self.threads.status_limiter.acquire()
                looked_at_ms = int(time.time() * 1000)
                found = self.threads.api.find_jobs(
                    ref.job_queue,
                    ref.job_name,
                    created_after_ms,
                    dict(ref.tags),
                    any_of=(SUBMISSION_TAG, frozenset({ref.submission})),
                )
                parent = found[0].job_id if found else None
                final_at = ref.sent_at_ms + int(self.array_lookup_settle_s * 1000)
                with self._array_lock:
                    if parent is None and looked_at_ms < final_at:
                        # Not final: no child goes out alone before the lookup at ``final_at``.
                        if ref.submission not in self._array_found:
                            self._array_open[ref.submission] = final_at
                            raise ArrayLookupOpen(ref.submission, final_at)
                    else:
                        self._array_open.pop(ref.submission, None)
                        self._array_found.setdefault(ref.submission, parent)
                    parent = self._array_found[ref.submission]
            if parent is not None:
                return child_job_id(parent, ref.index)
        return None

    def find_submitted(
        self,
        job_queue: str,
        job_name: str,
        created_after_ms: int,
        submissions: tuple[str, ...],
        task_tags: dict[str, str] | None = None,
    ) -> list[JobDetail]:
        """The jobs created by the SubmitJob calls tagged ``submissions`` (and nothing else)."""
        tags = {k: v for k, v in (task_tags or {}).items() if k != SUBMISSION_TAG}
        return self.threads.api.find_jobs(
            job_queue, job_name, created_after_ms, tags, any_of=(SUBMISSION_TAG, frozenset(submissions))
        )
