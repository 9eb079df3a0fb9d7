"""What every part of the backend shares: the resources and jobs, their indexes, the lookups by name
or ARN, the job status transitions (with the array and dependency rules they carry) and the write
through to the Store."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from typing import Any

from localbatch.arns import name_from
from localbatch.errors import ClientException
from localbatch.faults import Faults
from localbatch.models import Job, JobStatus, check_transition, now_ms
from localbatch.pagination import decode_token, encode_token
from localbatch.store import Store

RESOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def check_resource_name(field: str, name: str) -> None:
    """Batch's rule for the name of a compute environment, job queue, job definition or policy."""
    if not RESOURCE_NAME_RE.match(name):
        raise ClientException(f"{field} must be up to 128 letters, numbers, hyphens and underscores")


class Records:
    def __init__(
        self,
        store: Store,
        faults: Faults,
        *,
        on_change: Callable[[], None],
        on_terminate: Callable[[Job], None],
        on_status: Callable[[Job], None] | None = None,
    ) -> None:
        """`on_change`: a job or queue changed in a way scheduling may act on (the runner wakes up).
        `on_terminate`: TerminateJob reached a job whose attempt is STARTING or RUNNING, now marked
        with its stop reason; the runner stops the attempt. `on_status`: a job's status has just
        changed (its state change event)."""
        self.store = store
        self.faults = faults
        self.compute_environments: dict[str, dict[str, Any]] = {}
        self.job_queues: dict[str, dict[str, Any]] = {}
        self.job_definitions: dict[str, dict[str, Any]] = {}  # by ARN
        self.scheduling_policies: dict[str, dict[str, Any]] = {}  # by name
        self.jobs: dict[str, Job] = {}
        # (queue ARN, status) -> ids of the jobs that run (single jobs and array children) in the
        # order they entered that status (FIFO for RUNNABLE). Array parents never run: not here.
        self.by_queue_status: dict[tuple[str, JobStatus], dict[str, None]] = {}
        # (queue ARN, status) -> ids of the jobs ListJobs shows for a queue: single jobs and array
        # parents (children are listed by arrayJobId).
        self.listed: dict[tuple[str, JobStatus], dict[str, None]] = {}
        self.array_parents = 0
        self.array_children = 0
        self.dependents: dict[str, set[str]] = {}
        self._dirty: set[str] = set()
        self.on_change = on_change
        self.on_terminate = on_terminate
        self.on_status = on_status

    def touch(self, job: Job) -> None:
        self._dirty.add(job.job_id)

    # Resources are copied because the store encodes them later, on its own thread.
    def _save_ce(self, ce: dict[str, Any]) -> None:
        self.store.put("compute_environment", ce["computeEnvironmentName"], copy.deepcopy(ce))

    def _save_jq(self, jq: dict[str, Any]) -> None:
        self.store.put("job_queue", jq["jobQueueName"], copy.deepcopy(jq))

    def _save_jd(self, jd: dict[str, Any]) -> None:
        self.store.put("job_definition", jd["jobDefinitionArn"], copy.deepcopy(jd))

    def _save_sp(self, sp: dict[str, Any]) -> None:
        self.store.put("scheduling_policy", sp["name"], copy.deepcopy(sp))

    # -- indexes and transitions -------------------------------------------------------------------
    def _index_add(self, job: Job) -> None:
        key = (job.queue_arn, job.status)
        if not job.is_array_parent:
            self.by_queue_status.setdefault(key, {})[job.job_id] = None
        if not job.is_array_child:
            self.listed.setdefault(key, {})[job.job_id] = None

    def _index_remove(self, job: Job) -> None:
        key = (job.queue_arn, job.status)
        for index in (self.by_queue_status, self.listed):
            bucket = index.get(key)
            if bucket is not None:
                bucket.pop(job.job_id, None)

    def set_status(self, job: Job, status: JobStatus, reason: str | None = None) -> None:
        check_transition(job.status, status, parent=job.is_array_parent)
        old = job.status
        self._index_remove(job)
        job.status = status
        if reason is not None:
            job.status_reason = reason
        if status.is_final and job.stopped_at is None:
            job.stopped_at = now_ms()
        self._index_add(job)
        self.touch(job)
        self.on_change()
        if self.on_status is not None:
            # Before the parent follows: a child's event goes out before the one it causes its parent.
            self.on_status(job)
        if job.array_parent_id is not None:
            self._child_moved(job, old)

    def _child_moved(self, child: Job, old: JobStatus) -> None:
        """Batch's rules for an array parent, applied as each child changes status: PENDING once a
        child is RUNNABLE; when every child has finished, SUCCEEDED if all succeeded, else FAILED."""
        parent = self.jobs.get(child.array_parent_id or "")
        if parent is None or parent.array is None:
            return
        parent.array.move(old, child.status)
        self.touch(parent)
        self._follow_children(parent)

    def _follow_children(self, parent: Job) -> None:
        """End the parent once every child has ended. Also run at load: a hard stop can leave the
        parent's record a step behind its children's."""
        state = parent.array
        assert state is not None
        counts = state.counts
        if parent.status == JobStatus.SUBMITTED and any(
            counts[s] for s in (JobStatus.RUNNABLE, JobStatus.STARTING, JobStatus.RUNNING)
        ):
            self.set_status(parent, JobStatus.PENDING)
        if state.finished == len(state.children) and not parent.status.is_final:
            failed = counts[JobStatus.FAILED]
            if failed == 0:
                self.set_status(parent, JobStatus.SUCCEEDED)
                return
            # A terminate or cancel reason given for the parent stays its reason.
            reason = f"{failed} of {len(state.children)} array child jobs failed"
            if parent.is_terminated or parent.is_cancelled:
                reason = parent.status_reason or reason
            self.set_status(parent, JobStatus.FAILED, reason)
            self.fail_dependents(parent)

    def jobs_in(self, queue_arn: str, status: JobStatus) -> Iterable[str]:
        return self.by_queue_status.get((queue_arn, status), {})

    def queue_name_of(self, queue_arn: str) -> str:
        return name_from(queue_arn, "job-queue")

    # -- lookups -----------------------------------------------------------------------------------
    @staticmethod
    def _named(table: dict[str, dict[str, Any]], ref: str, kind: str, missing: str) -> dict[str, Any]:
        """The resource of ``table`` that ``ref`` (a name or an ARN of ``kind``) names; else ``missing``."""
        found = table.get(name_from(ref, kind))
        if found is None:
            raise ClientException(missing)
        return found

    def _ce(self, ref: str) -> dict[str, Any]:
        return self._named(
            self.compute_environments, ref, "compute-environment", f"computeEnvironment {ref} does not exist"
        )

    def _jq(self, ref: str) -> dict[str, Any]:
        return self._named(self.job_queues, ref, "job-queue", f"JobQueue {ref} not found")

    def _jd(self, ref: str) -> dict[str, Any]:
        if ref.startswith("arn:"):
            jd = self.job_definitions.get(ref)
        else:
            name, _, revision = ref.partition(":")
            candidates = [
                d
                for d in self.job_definitions.values()
                if d["jobDefinitionName"] == name
                and (str(d["revision"]) == revision if revision else d["status"] == "ACTIVE")
            ]
            jd = max(candidates, key=lambda d: int(d["revision"])) if candidates else None
        if jd is None or jd["status"] != "ACTIVE":
            raise ClientException(f"Job definition {ref} does not exist")
        return jd

    def _sp(self, ref: str) -> dict[str, Any]:
        return self._named(
            self.scheduling_policies, ref, "scheduling-policy", f"SchedulingPolicy {ref} not found"
        )

    def share_distribution(self, jq: dict[str, Any]) -> list[dict[str, Any]] | None:
        """A fair-share queue's shareDistribution (empty when its policy lists none); None: FIFO."""
        ref = jq.get("schedulingPolicyArn")
        if ref is None:
            return None
        sp = self.scheduling_policies.get(name_from(ref, "scheduling-policy"))
        policy = (sp or {}).get("fairsharePolicy", {})
        distribution: list[dict[str, Any]] = policy.get("shareDistribution", [])
        return distribution

    def _job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise ClientException(f"Job {job_id} not found")
        return job

    # -- stopping jobs ---------------------------------------------------------------------------
    def terminate(self, job: Job, reason: str) -> None:
        """Fail a job that has not started; stop the process of one that has (TerminateJob). An
        array parent: every unfinished child; the parent fails once the last one has ended."""
        if job.status.is_final:
            return
        if job.array is not None:
            job.is_terminated = True
            job.status_reason = reason
            self.touch(job)
            for child in job.array.children:
                self.terminate(child, reason)
            return
        job.is_terminated = True
        job.is_cancelled = job.is_cancelled or not job.status.is_active
        if job.status.is_active:
            job.stop_kind = "terminate"
            job.stop_reason = reason
            self.touch(job)
            self.on_terminate(job)
        else:
            self.set_status(job, JobStatus.FAILED, reason)
            self.fail_dependents(job)

    def cancel(self, job: Job, reason: str) -> None:
        # Like AWS: jobs that reached STARTING or RUNNING are not cancelled.
        if job.status in (JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.RUNNABLE):
            job.is_cancelled = True
            self.set_status(job, JobStatus.FAILED, reason)
            self.fail_dependents(job)

    def fail_dependents(self, job: Job) -> None:
        for dep_id in sorted(self.dependents.pop(job.job_id, set())):
            dep = self.jobs.get(dep_id)
            if dep is None or dep.status.is_final:
                continue
            reason = f"Dependent Job failed: {job.job_id}"
            if dep.array is not None:
                # The array's children wait on the parent's dependencies; they fail, then the parent.
                for child in dep.array.children:
                    if not child.status.is_final and not child.status.is_active:
                        self.set_status(child, JobStatus.FAILED, reason)
                        self.fail_dependents(child)
            elif not dep.status.is_active:
                self.set_status(dep, JobStatus.FAILED, reason)
                self.fail_dependents(dep)

    # -- paging of resource lists ------------------------------------------------------------------
    @staticmethod
    def _page(items: list[dict[str, Any]], p: dict[str, Any], key: str) -> dict[str, Any]:
        start = int(decode_token(p["nextToken"])) if p.get("nextToken") else 0
        limit = int(p.get("maxResults", 100))
        page = items[start : start + limit]
        result: dict[str, Any] = {key: page}
        if start + limit < len(items):
            result["nextToken"] = encode_token(start + limit)
        return result
