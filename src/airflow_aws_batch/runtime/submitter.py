"""The submit threads: one SubmitJob at a time each (a single job's or an array's), within the shared
``submit_rate``; before resubmitting after an ambiguous call, they look for the job it may have
created (lookups.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_aws_batch.aws.batch import BatchApiError, ErrorKind
from airflow_aws_batch.core.arrays import SubmitArray, child_job_id
from airflow_aws_batch.core.messages import (
    ACTIVE_STATUSES,
    SUBMISSION_TAG,
    Submit,
    SubmitOutcome,
    Terminate,
)
from airflow_aws_batch.core.ownership import DEPLOYMENT_TAG
from airflow_aws_batch.runtime.lookups import ArrayLookupOpen, Lookups, kept_of_duplicates
from airflow_aws_batch.runtime.protocol import Threads
from airflow_aws_batch.workloads import (
    PENDING_KEY,
    StoreError,
    WorkloadStore,
    place_workloads,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SubmitDone:
    key: Any
    outcome: SubmitOutcome
    job_id: str | None = None
    reason: str = ""
    sent_at_ms: int | None = None
    found: bool = False
    #: WAIT only: how long to wait before the next try (None: the core's usual short wait).
    wait_s: float | None = None


class Submitter:
    """What the submit threads share; each runs :meth:`loop`."""

    def __init__(
        self,
        threads: Threads,
        lookups: Lookups,
        *,
        prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        store: WorkloadStore | None = None,
    ) -> None:
        self.threads = threads
        self.lookups = lookups
        #: Set by :meth:`stop_submitting`: no SubmitJob (nor lookup before one) goes out any more.
        self._submits_stopped = threading.Event()
        #: Finishes a request before it is sent, on the submit thread (it may do status calls, e.g.
        #: read its job queue's kind): BatchApiError means try again later, ValueError fails the attempt.
        self._prepare = prepare
        #: Where workloads go just before SubmitJob (``workload_store``); None: in the command.
        self._store = store

    def stop_submitting(self) -> list[Submit | SubmitArray]:
        """Send no further SubmitJob: a submit thread waiting for the limiter gives its command back
        (a WAIT result), and the commands no thread has taken yet are returned, never sent. Calls
        already on the wire finish and report as usual."""
        self._submits_stopped.set()
        submit_q = self.threads.submit_q
        drained: list[Submit | SubmitArray] = []
        while True:
            try:
                cmd = submit_q.get_nowait()
            except queue.Empty:
                return drained
            if cmd is None:  # stop() ran first: leave the threads their sentinel
                submit_q.put(None)
                return drained
            drained.append(cmd)

    def loop(self) -> None:
        threads = self.threads
        while True:
            cmd = threads.submit_q.get()
            threads.gate.wait()
            if cmd is None or threads.stopping.is_set():
                return
            if self._submits_stopped.is_set():
                for key in cmd.keys if isinstance(cmd, SubmitArray) else (cmd.key,):
                    threads.report(SubmitDone(key, SubmitOutcome.WAIT, reason="executor stopping"))
                continue
            if isinstance(cmd, SubmitArray):
                try:
                    results = self._submit_array(cmd)
                except Exception as exc:  # never lose a workload to a bug in this loop
                    log.exception("Unexpected error submitting an array of %d", len(cmd.keys))
                    reason = f"unexpected error: {exc}"
                    results = [SubmitDone(key, SubmitOutcome.FAILED, reason=reason) for key in cmd.keys]
                for result in results:
                    threads.report(result)
                continue
            try:
                threads.report(self.submit_one(cmd))
            except Exception as exc:  # never lose a workload to a bug in this loop
                log.exception("Unexpected error submitting %s", cmd.key)
                threads.report(SubmitDone(cmd.key, SubmitOutcome.FAILED, reason=f"unexpected error: {exc}"))

    def submit_one(self, cmd: Submit) -> SubmitDone:
        """One single job's step: its lookup after an ambiguous SubmitJob, then (nothing found) its
        SubmitJob; the result to report."""
        threads = self.threads
        request = cmd.request
        if cmd.lookup_after_ms is not None:
            try:
                child = self.lookups.find_array_child(cmd.lookup_submissions, cmd.lookup_after_ms)
            except BatchApiError as exc:
                return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason=str(exc))
            except ArrayLookupOpen as exc:
                # Not alone while the array may exist: every child gets its child id if it does.
                wait_s = max(0.0, exc.until_ms / 1000 - time.time())
                return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason=str(exc), wait_s=wait_s)
            if child is not None:
                return SubmitDone(cmd.key, SubmitOutcome.OK, job_id=child, found=True)
            try:
                threads.status_limiter.acquire()
                found = self.lookups.find_submitted(
                    request["jobQueue"],
                    request["jobName"],
                    cmd.lookup_after_ms,
                    cmd.lookup_submissions,
                    task_tags=request.get("tags") or {},
                )
            except BatchApiError as exc:
                # Nothing was submitted: not an attempt, look again shortly.
                return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason=str(exc))
            if found:
                # Two ambiguous calls may both have created a job: keep one and end the other, so
                # that the try is one job.
                kept = kept_of_duplicates(found)
                for job in found:
                    if job is not kept and job.status in ACTIVE_STATUSES:
                        threads.terminate_q.put(Terminate(job.job_id, "Duplicate of an ambiguous SubmitJob"))
                return SubmitDone(cmd.key, SubmitOutcome.OK, job_id=kept.job_id, found=True)
            if cmd.lookup_only:
                return SubmitDone(
                    cmd.key,
                    SubmitOutcome.FAILED,
                    reason="no job was created by the last, ambiguous SubmitJob",
                )
        if self._prepare is not None:
            try:
                request = self._prepare(request)
            except BatchApiError as exc:
                if exc.kind is ErrorKind.CLIENT:
                    return SubmitDone(cmd.key, SubmitOutcome.FAILED, reason=f"{exc.code}: {exc.message}")
                return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason=str(exc))
            except ValueError as exc:
                return SubmitDone(cmd.key, SubmitOutcome.FAILED, reason=str(exc))
        threads.submit_limiter.acquire()
        if threads.stopping.is_set() or self._submits_stopped.is_set():
            # Stopped while waiting for the limiter: a job created now would outlive terminate(), or
            # be one that end() can no longer hand over.
            return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason="executor stopping")
        # Written as late as possible, and afresh for every attempt: an earlier attempt's object may
        # have been read and deleted by its job already.
        try:
            stored = self._place_workloads(request)
        except StoreError as exc:
            # One that may pass (5xx, throttling, no connection, expired credentials) backs off
            # without counting; any other counts as an attempt, like a refused SubmitJob: a missing
            # bucket or permission fails the task after max_submit_job_attempts with this reason in
            # its event log.
            outcome = SubmitOutcome.STALLED if exc.retryable else SubmitOutcome.FAILED
            return SubmitDone(cmd.key, outcome, reason=f"workload store: {exc}")
        sent_at_ms = int(time.time() * 1000)
        try:
            job_id = threads.submit_api.submit_job(request)
        except BatchApiError as exc:
            if exc.kind is ErrorKind.AMBIGUOUS:
                # Its job may exist and read the object: kept.
                return SubmitDone(
                    cmd.key,
                    SubmitOutcome.AMBIGUOUS,
                    reason=f"{exc.code}: {exc.message}",
                    sent_at_ms=sent_at_ms,
                )
            # No job was created: nobody will read the object (the next attempt writes its own).
            self._discard(stored)
            if exc.kind is ErrorKind.THROTTLED:
                # Slow every submit thread down together, not just this one.
                threads.submit_limiter.penalize(0.2)
                return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason=str(exc))
            if exc.kind is ErrorKind.CREDENTIALS:
                log.warning("AWS credentials rejected (%s); reloading them before the next call", exc.code)
                return SubmitDone(cmd.key, SubmitOutcome.WAIT, reason=str(exc))
            return SubmitDone(cmd.key, SubmitOutcome.FAILED, reason=f"{exc.code}: {exc.message}")
        return SubmitDone(cmd.key, SubmitOutcome.OK, job_id=job_id)

    def _submit_array(self, cmd: SubmitArray) -> list[SubmitDone]:
        """One SubmitJob for every child of ``cmd``; one result per child, in index order."""
        threads = self.threads
        keys = cmd.keys

        def every(outcome: SubmitOutcome, reason: str, sent_at_ms: int | None = None) -> list[SubmitDone]:
            return [SubmitDone(key, outcome, reason=reason, sent_at_ms=sent_at_ms) for key in keys]

        request = dict(cmd.request)
        if self._prepare is not None:
            try:
                request = self._prepare(request)
            except BatchApiError as exc:
                if exc.kind is ErrorKind.CLIENT:
                    return every(SubmitOutcome.FAILED, f"{exc.code}: {exc.message}")
                return every(SubmitOutcome.WAIT, str(exc))
            except ValueError as exc:
                return every(SubmitOutcome.FAILED, str(exc))
        if self._store is None:
            return every(SubmitOutcome.FAILED, "array jobs need a workload store (workload_store)")
        threads.submit_limiter.acquire()
        if threads.stopping.is_set() or self._submits_stopped.is_set():
            return every(SubmitOutcome.WAIT, "executor stopping")
        tags = request.get("tags") or {}
        name = "/".join(
            (
                str(tags.get(DEPLOYMENT_TAG) or "default"),
                str(request.get("jobName") or "array"),
                cmd.submission,
            )
        )
        try:
            # Written after the limiter, like a single job's: one object, child i's workload at index i;
            # the launcher's command goes where the request's command is (container or EKS pod).
            request[PENDING_KEY] = list(cmd.workloads)
            url = place_workloads(request, self._store, name)
        except StoreError as exc:
            # Retryable (throttled, 5xx): the children back off together and may form an array again.
            # Otherwise an attempt of every child, whose next attempts go out alone.
            outcome = SubmitOutcome.STALLED if exc.retryable else SubmitOutcome.FAILED
            return every(outcome, f"workload store: {exc}")
        request["arrayProperties"] = {"size": len(keys)}
        sent_at_ms = int(time.time() * 1000)
        try:
            parent = threads.submit_api.submit_job(request)
        except BatchApiError as exc:
            if exc.kind is not ErrorKind.AMBIGUOUS:
                # No job was created: nobody will read the object.
                self._discard(url)
            if exc.kind is ErrorKind.THROTTLED:
                threads.submit_limiter.penalize(0.2)
                return every(SubmitOutcome.WAIT, str(exc))
            if exc.kind is ErrorKind.CREDENTIALS:
                log.warning("AWS credentials rejected (%s); reloading them before the next call", exc.code)
                return every(SubmitOutcome.WAIT, str(exc))
            if exc.kind is ErrorKind.CLIENT:
                return every(SubmitOutcome.FAILED, f"{exc.code}: {exc.message}")
            shared = tuple(sorted((k, v) for k, v in tags.items() if k != SUBMISSION_TAG))
            self.lookups.array_lost(
                cmd.submissions,
                job_queue=str(request["jobQueue"]),
                job_name=str(request["jobName"]),
                submission=cmd.submission,
                tags=shared,
                sent_at_ms=sent_at_ms,
            )
            reason = f"{exc.code}: {exc.message} (array of {len(keys)})"
            return every(SubmitOutcome.AMBIGUOUS, reason, sent_at_ms)
        return [
            SubmitDone(key, SubmitOutcome.OK, job_id=child_job_id(parent, index))
            for index, key in enumerate(keys)
        ]

    def _place_workloads(self, request: dict[str, Any]) -> str | None:
        """Write the request's workloads to the store and point its command there; the object's URL."""
        if PENDING_KEY not in request:
            return None
        if self._store is None:
            request.pop(PENDING_KEY)
            raise StoreError("the request waits for a workload store, but none is configured")
        tags = request.get("tags") or {}
        # Unique per SubmitJob call (the submission tag); deployment and job name make it readable.
        name = "/".join(
            (
                str(tags.get(DEPLOYMENT_TAG) or "default"),
                str(request.get("jobName") or "job"),
                str(tags.get(SUBMISSION_TAG) or uuid.uuid4().hex),
            )
        )
        return place_workloads(request, self._store, name)

    def _discard(self, url: str | None) -> None:
        if url is None or self._store is None:
            return
        try:
            self._store.delete(url)
        except (StoreError, ValueError) as exc:
            log.info("Could not delete the unused workload object %s (%s); it expires", url, exc)
