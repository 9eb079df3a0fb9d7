"""The poller thread: reports the tracked jobs whose status changed, and those Batch does not know.

Polling strategy (bounded by ``status_calls_per_second``): jobs not yet RUNNING are described
directly (DescribeJobs, <= 100 ids a call). Jobs seen RUNNING are watched through
``ListJobs(jobQueue, jobStatus=RUNNING)`` pages of 1,000 when there are many of them: a job that
drops out of that list is described once to learn how it ended. With 5,000 running jobs a full
cycle costs about 5 calls instead of 50.

With status events (``status_events``, listener.py) the poller takes each job's changes from them,
in any order, duplicated or late: a change older than one taken is dropped, so a job never moves
back. Polling then only reconciles: a cycle covers the jobs that had no news (an event or a
description) for :attr:`Poller.quiet_s`, and those adopted unconfirmed. A lost event therefore
delays its report by at most ``quiet_s`` plus one cycle over the jobs due. When a cycle finds that a
job ended or started :attr:`Poller.miss_after_s` before without an event saying so, events are being
lost: every job is polled as without events for :attr:`Poller.missed_hold_s`. A change polling
finds sooner than that is lost too when its event has not come :attr:`Poller.miss_after_s` after
it happened: so while polling every job finds changes first, events still being lost keep it
polling. While the queue cannot be read, the same.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_aws_batch.aws.batch import DESCRIBE_MAX_IDS, BatchApiError
from airflow_aws_batch.aws.events import ENDED, UNKNOWN, StateChange, order_of
from airflow_aws_batch.aws.shapes import JobDetail
from airflow_aws_batch.core.messages import TI_QUEUED, JobView, Track, Untrack
from airflow_aws_batch.runtime.protocol import Threads

if TYPE_CHECKING:
    from airflow_aws_batch.runtime.listener import StatusEvents

log = logging.getLogger(__name__)

# A job DescribeJobs does not know is reported missing only after this long: Batch is eventually
# consistent right after SubmitJob.
MISSING_GRACE_S = 60.0
# Above this many RUNNING jobs, ListJobs pages are cheaper than describing each of them.
LIST_RUNNING_THRESHOLD = 200
# Events for a job not tracked yet (a fast job may start or end before the scheduler tracks it) are
# kept this long, at most this many, for it to be tracked.
EARLY_KEEP_S = 120.0
EARLY_MAX = 50_000
#: The changes whose loss a description can tell (they carry when they happened).
_MISSABLE = (*ENDED, "RUNNING")


@dataclass(frozen=True, slots=True)
class JobsSeen:
    views: list[JobView]


@dataclass(frozen=True, slots=True)
class JobsMissing:
    job_ids: list[str]


@dataclass(frozen=True, slots=True)
class AdoptedSeen:
    """The first description of jobs adopted unconfirmed (:attr:`Track.unconfirmed`), for the executor
    to verify before any view of them reaches the core; ``missing``: ids DescribeJobs did not know."""

    seen: list[tuple[JobDetail, JobView]]
    missing: list[str]


#: ``[(ti_id, try_number)] -> the ti_ids whose try Airflow has moved on to its next run``. May do I/O;
#: may raise.
#: ``(ti_id, try_number)`` of succeeded jobs -> the state of those whose task instance is, on the same
#: try, moved on or queued again (``started.tis_moved_on``).
MovedOnChecker = Callable[[list[tuple[str, int]]], "Mapping[str, str]"]


class _Watched:
    """The poller's record of one tracked job: one object instead of a tuple in each of several
    dicts keyed by the job id (a scheduler may track 20,000 jobs; each dict would hold its own
    entry and, for the status, a second copy of the id parsed from DescribeJobs)."""

    __slots__ = ("heard", "job_queue", "order", "since", "status", "status_reason", "ti_id", "try_number")

    def __init__(self, job_queue: str | None, since: float) -> None:
        #: None for an adopted job until a description says its queue.
        self.job_queue = job_queue
        #: When the job was tracked (the runtime's clock): DescribeJobs may not know a new job yet.
        self.since = since
        #: The status and reason last reported (None until the first): only changes are reported.
        self.status: str | None = None
        self.status_reason = ""
        #: The task instance try the job runs (its id as 16 bytes), when the poller checks it.
        self.ti_id: bytes | None = None
        self.try_number = 0
        #: With status events: when the job last had news (an event or a description), and the order
        #: (``aws.events.order_of``) of the latest change taken, so that none moves it back.
        self.heard = since
        self.order = UNKNOWN


class Poller:
    """The poller's state, touched only by the poller thread (or a caller that never started it)."""

    #: With status events: seconds a job may go without news before a cycle polls it.
    quiet_s = 60.0
    #: A change a cycle finds is an event's loss when it happened this long before (sooner, its event
    #: may still be on its way)...
    miss_after_s = 15.0
    #: ... and every job is then polled as without events for this long.
    missed_hold_s = 300.0

    def __init__(
        self,
        threads: Threads,
        *,
        poll_interval_s: float = 1.0,
        moved_on_checker: MovedOnChecker | None = None,
        events: StatusEvents | None = None,
    ) -> None:
        self.threads = threads
        self.poll_interval_s = poll_interval_s
        self.events = events
        #: Changes for jobs not tracked yet: job id -> (when taken, change), oldest first.
        self._early: dict[str, tuple[float, StateChange]] = {}
        #: When a cycle last found a change no event had brought, and how many it found in all.
        self._missed_at = -float("inf")
        self.events_missed = 0
        #: Changes polling found before their event could have come: job id -> (order, when it
        #: happened, epoch ms), until the event comes or is late (then it counts as lost).
        self._unheralded: dict[str, tuple[int, float]] = {}
        #: When the last reconciling cycle began (events arrive in bursts; each wakes the poller).
        self._reconciled_at = -float("inf")
        self._tracked: dict[str, _Watched] = {}
        #: Job queue names as first seen, so that each adopted job's record shares one string.
        self._queue_names: dict[str, str] = {}
        self._moved_on_checker = moved_on_checker
        self._moved_on_failed = False
        #: Tracked jobs adopted unconfirmed whose first description is not reported yet (empty but
        #: for a while after a large adoption).
        self._unconfirmed: set[str] = set()

    def track(self, cmd: Track | Untrack) -> None:
        """Hand ``cmd`` to the poller (any thread): taken in at its next cycle."""
        self.threads.poll_inbox.put(cmd)
        # An array's answer tracks thousands of children at once; setting a set Event takes a lock.
        if isinstance(cmd, Track) and not self.threads.wake_poller.is_set():
            self.threads.wake_poller.set()

    def take_in(self) -> None:
        """Take in the Track/Untrack commands received so far (poller thread)."""
        now = self.threads.clock()
        while True:
            try:
                cmd = self.threads.poll_inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(cmd, Track):
                watched = self._tracked.get(cmd.job_id)
                if watched is None:
                    watched = self._tracked[cmd.job_id] = _Watched(cmd.job_queue, now)
                else:
                    # Tracked again: what was last reported of it still stands.
                    watched.job_queue, watched.since = cmd.job_queue, now
                if cmd.ti_id is not None and self._moved_on_checker is not None:
                    watched.ti_id, watched.try_number = cmd.ti_id, cmd.try_number
                if cmd.unconfirmed:
                    self._unconfirmed.add(cmd.job_id)
                early = self._early.pop(cmd.job_id, None) if self._early else None
                if early is not None and now - early[0] <= EARLY_KEEP_S:
                    self.threads.event_inbox.put([early[1]])
            else:
                self._tracked.pop(cmd.job_id, None)
                self._unconfirmed.discard(cmd.job_id)

    def loop(self) -> None:
        threads = self.threads
        while not threads.stopping.is_set():
            started = threads.clock()
            try:
                self.poll_once()
            except Exception:
                log.exception("Unexpected error while polling AWS Batch")
            if threads.stopping.is_set():
                return
            wait = self.poll_interval_s - (threads.clock() - started)
            if not self._tracked:
                wait = self.poll_interval_s
            if wait > 0:
                threads.wake_poller.wait(wait)
            threads.wake_poller.clear()

    def take_events(self) -> None:
        """Report the changes status events brought for tracked jobs, each only if it moves its job
        forward (poller thread)."""
        now = self.threads.clock()
        views: list[JobView] = []
        while True:
            try:
                changes = self.threads.event_inbox.get_nowait()
            except queue.Empty:
                break
            for change in changes:
                if self._unheralded:
                    found = self._unheralded.get(change.job_id)
                    if found is not None and change.order >= found[0]:
                        del self._unheralded[change.job_id]
                watched = self._tracked.get(change.job_id)
                if watched is None:
                    self._keep_early(change, now)
                    continue
                if change.order <= watched.order:
                    continue
                watched.order, watched.heard = change.order, now
                if change.job_id in self._unconfirmed:
                    continue  # its first description goes to the executor to verify, as without events
                views.append(change.detail.view())
        if views:
            self._publish([], views)

    def _keep_early(self, change: StateChange, now: float) -> None:
        early = self._early
        kept = early.get(change.job_id)
        if kept is not None and kept[1].order >= change.order:
            return
        early.pop(change.job_id, None)
        early[change.job_id] = (now, change)
        # Dicts keep insertion order: the oldest go first. Events of jobs that are not ours (another
        # scheduler's, or tracked no more) end here.
        while early and (len(early) > EARLY_MAX or now - next(iter(early.values()))[0] > EARLY_KEEP_S):
            del early[next(iter(early))]

    def events_reconcile(self, now: float) -> bool:
        """Whether this cycle only reconciles: events arrive and none was found lost lately."""
        events = self.events
        return events is not None and events.live.is_set() and now - self._missed_at > self.missed_hold_s

    def poll_once(self) -> None:
        """Take in the Track/Untrack commands and the events received so far, then one polling cycle
        over every tracked job, or with events over those due (poller thread only, or a caller that
        never started the threads)."""
        self.take_in()
        if self.events is not None:
            self.take_events()
            if self._unheralded:
                self._count_unheralded(self.events)
        if not self._tracked:
            return
        now = self.threads.clock()
        reconciling = self.events_reconcile(now)
        if reconciling:
            if now - self._reconciled_at < self.poll_interval_s:
                return
            self._reconciled_at = now
        running: list[str] = []
        to_describe: list[str] = []
        for job_id, watched in self._tracked.items():
            if reconciling and now - watched.heard < self.quiet_s and job_id not in self._unconfirmed:
                continue
            (running if watched.status == "RUNNING" else to_describe).append(job_id)
        if len(running) > LIST_RUNNING_THRESHOLD:
            listed = self._list_running({self._tracked[j].job_queue for j in running})
            if listed is None:
                to_describe.extend(running)
            else:
                to_describe.extend(j for j in running if j not in listed)
                if self.events is not None:
                    # Every job the listing shows still RUNNING has news, not only those due: jobs
                    # that started over a while (a large fill) would otherwise come due a cohort at a
                    # time, each costing a whole listing, instead of together once every quiet_s.
                    for job_id in listed:
                        shown = self._tracked.get(job_id)
                        if shown is not None and shown.status == "RUNNING":
                            shown.heard = now
        else:
            to_describe.extend(running)
        for i in range(0, len(to_describe), DESCRIBE_MAX_IDS):
            if not self.threads.status_call():
                return
            chunk = to_describe[i : i + DESCRIBE_MAX_IDS]
            try:
                details = self.threads.api.describe_jobs(chunk)
            except BatchApiError as exc:
                log.info("DescribeJobs failed: %s", exc)
                continue
            for detail in details:
                adopted = self._tracked.get(detail.job_id)
                if adopted is not None and adopted.job_queue is None and detail.job_queue:
                    # Adopted jobs arrive without a queue; learning it lets ListJobs cover them.
                    adopted.job_queue = self._queue_names.setdefault(detail.job_queue, detail.job_queue)
            if self.events is not None:
                details, behind = self._against_events(details, self.events)
                if behind:
                    # Known further along from an event: not missing, and nothing to report.
                    chunk = [j for j in chunk if j not in behind]
            if self._unconfirmed:
                details, handed_over = self._hand_over_unconfirmed(chunk, details)
                # Neither reported here nor missing: the executor has them now.
                chunk = [j for j in chunk if j not in handed_over]
            self._publish(chunk, [d.view() for d in details])

    def _against_events(
        self, details: list[JobDetail], events: StatusEvents
    ) -> tuple[list[JobDetail], set[str]]:
        """With status events: ``details`` less those older than a change already taken; each job's
        order and news time updated, and the changes no event had brought counted as misses; and the
        ids of those left out."""
        now = self.threads.clock()
        wall_ms = time.time() * 1000
        kept: list[JobDetail] = []
        behind: set[str] = set()
        missed = 0
        for detail in details:
            watched = self._tracked.get(detail.job_id)
            if watched is None:
                kept.append(detail)
                continue
            order = order_of(detail.raw, detail.status)
            if order < watched.order:
                behind.add(detail.job_id)  # an event moved the job further (DescribeJobs may lag a little)
                continue
            if (
                order > watched.order
                and detail.status in _MISSABLE
                and detail.job_id not in self._unconfirmed
            ):
                changed_at = detail.stopped_at if detail.status in ENDED else detail.started_at
                # Its event had a reader: it came after events did, and after the job was tracked
                # less the time an early event is kept for it.
                heard_from_ms = max(
                    wall_ms - (now - watched.since + EARLY_KEEP_S) * 1000,
                    events.live_since_ms or wall_ms,
                )
                if changed_at and heard_from_ms < changed_at:
                    if changed_at < wall_ms - self.miss_after_s * 1000:
                        # Lost: and it happened long enough ago for its event to be here.
                        missed += 1
                    elif events.live.is_set():
                        # Its event may still be on its way: lost if it is not here in time.
                        self._unheralded[detail.job_id] = (order, changed_at)
            watched.order, watched.heard = order, now
            kept.append(detail)
        if missed:
            self._missed(missed, now)
        return kept, behind

    def _count_unheralded(self, events: StatusEvents) -> None:
        """Count as lost the changes polling found whose events are late by now (miss_after_s after
        the change). Not while the queue cannot be read: their events may be waiting in it."""
        late_ms = time.time() * 1000 - self.miss_after_s * 1000
        late = [job_id for job_id, (_, at) in self._unheralded.items() if at < late_ms]
        for job_id in late:
            del self._unheralded[job_id]
        if late and events.live.is_set():
            self._missed(len(late), self.threads.clock())

    def _missed(self, count: int, now: float) -> None:
        """``count`` changes no event brought: every job is polled for missed_hold_s from ``now``."""
        if self.events_reconcile(now):
            log.warning(
                "Status events: polling found %d job change(s) no event brought; polling every "
                "tracked job for %.0f s",
                count,
                self.missed_hold_s,
            )
        self.events_missed += count
        self._missed_at = now

    def _list_running(self, queues: set[str | None]) -> set[str] | None:
        listed: set[str] = set()
        for job_queue in queues:
            if job_queue is None:
                return None  # adopted jobs: queue unknown, describe them instead
            token: str | None = None
            while True:
                if not self.threads.status_call():
                    return None
                try:
                    page, token = self.threads.api.list_jobs_page(job_queue, "RUNNING", token)
                except BatchApiError as exc:
                    log.info("ListJobs failed (%s); describing running jobs instead", exc)
                    return None
                listed.update(s.job_id for s in page)
                if not token:
                    break
        return listed

    def _mark_moved_on(self, views: list[JobView]) -> list[JobView]:
        """``views`` with ``moved_on`` set on the SUCCEEDED jobs whose try Airflow has already moved on,
        and ``queued_again`` on those whose try it has queued again (asked here, on the poller thread,
        right before the success is reported; a task records its own end before its container exits,
        so what the DB says now is settled). Not knowing changes nothing: the success is reported."""
        checker = self._moved_on_checker
        if checker is None:
            return views
        tries = {
            v.job_id: (str(uuid.UUID(bytes=ti_id)), watched.try_number)
            for v in views
            if v.status == "SUCCEEDED"
            and (watched := self._tracked.get(v.job_id)) is not None
            and (ti_id := watched.ti_id) is not None
        }
        if not tries:
            return views
        try:
            moved_on = checker(list(tries.values()))
        except Exception:
            # Said once at warning level: a DB that cannot be read now usually cannot a cycle later.
            level = logging.DEBUG if self._moved_on_failed else logging.WARNING
            self._moved_on_failed = True
            log.log(
                level,
                "Could not read the task instances of %d succeeded job(s); their successes are reported",
                len(tries),
                exc_info=True,
            )
            return views
        if not moved_on:
            return views

        def marked(view: JobView) -> JobView:
            state = moved_on.get(tries[view.job_id][0]) if view.job_id in tries else None
            if state is None:
                return view
            return dataclasses.replace(view, moved_on=state != TI_QUEUED, queued_again=state == TI_QUEUED)

        return [marked(view) for view in views]

    def _hand_over_unconfirmed(
        self, asked: list[str], details: list[JobDetail]
    ) -> tuple[list[JobDetail], set[str]]:
        """Report the jobs of ``asked`` adopted unconfirmed as :class:`AdoptedSeen` (no grace for one
        DescribeJobs does not know: it is an old id, not a job just submitted); the other details,
        and the ids so reported."""
        rest: list[JobDetail] = []
        seen: list[JobDetail] = []
        for detail in details:
            if detail.job_id in self._unconfirmed:
                self._unconfirmed.discard(detail.job_id)
                # Reported through AdoptedSeen: the next cycle reports it only when it changes.
                if (watched := self._tracked.get(detail.job_id)) is not None:
                    watched.status, watched.status_reason = detail.status, detail.status_reason
                seen.append(detail)
            else:
                rest.append(detail)
        returned = {d.job_id for d in details}
        missing = [j for j in asked if j in self._unconfirmed and j not in returned]
        for job_id in missing:
            self._unconfirmed.discard(job_id)
            self._tracked.pop(job_id, None)
        if seen or missing:
            views = self._mark_moved_on([d.view() for d in seen])
            self.threads.report(AdoptedSeen(list(zip(seen, views, strict=True)), missing))
        return rest, {d.job_id for d in seen}.union(missing)

    def _publish(self, asked: list[str], views: list[JobView]) -> None:
        now = self.threads.clock()
        changed: list[JobView] = []
        returned = set()
        for view in views:
            returned.add(view.job_id)
            watched = self._tracked.get(view.job_id)
            if watched is None:
                continue
            if (watched.status, watched.status_reason) != (view.status, view.status_reason):
                watched.status, watched.status_reason = view.status, view.status_reason
                changed.append(view)
        missing = [
            j
            for j in asked
            if j not in returned
            and (watched := self._tracked.get(j)) is not None
            and now - watched.since > MISSING_GRACE_S
        ]
        if changed:
            self.threads.report(JobsSeen(self._mark_moved_on(changed)))
        if missing:
            for job_id in missing:
                self._tracked.pop(job_id, None)
            self.threads.report(JobsMissing(missing))
