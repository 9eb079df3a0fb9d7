"""DescribeJobs, ListJobs (by queue or by array), TerminateJob and CancelJob."""

from __future__ import annotations

from typing import Any

from localbatch.arns import name_from
from localbatch.errors import ClientException
from localbatch.models import Job, JobStatus
from localbatch.pagination import decode_token, encode_token
from localbatch.records import Records

MAX_DESCRIBE_JOBS = 100


class Jobs(Records):
    def describe_jobs(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        ids = p["jobs"]
        if len(ids) > MAX_DESCRIBE_JOBS:
            raise ClientException(f"Too many items in jobs. Must be {MAX_DESCRIBE_JOBS} or fewer.")
        out = []
        for ref in ids:
            job = self.jobs.get(name_from(ref, "job"))
            if job is not None:
                out.append(job.to_detail(self.queue_name_of(job.queue_arn)))
        return {"jobs": out}

    def list_jobs(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        if p.get("multiNodeJobId"):
            raise ClientException("localbatch does not support multi-node jobs")
        limit = min(int(p.get("maxResults", 100)), 1000)
        if limit < 1:
            raise ClientException("maxResults must be between 1 and 1000")
        filters = p.get("filters") or []
        if p.get("arrayJobId"):
            return self._list_children(p, name_from(p["arrayJobId"], "job"), filters, limit)
        if "jobQueue" in p:
            queues = [self._jq(p["jobQueue"])["jobQueueArn"]]
        else:
            # AWS requires jobQueue; localbatch lists every queue when it is omitted.
            queues = [jq["jobQueueArn"] for jq in self.job_queues.values()]
        # Like AWS: with filters, jobStatus is ignored and every status is listed.
        statuses = list(JobStatus) if filters else [JobStatus(p.get("jobStatus", "RUNNING"))]
        jobs = [self.jobs[i] for q in queues for s in statuses for i in self.listed.get((q, s), {})]
        for f in filters:
            jobs = self._apply_filter(jobs, f)
        jobs.sort(key=lambda j: (j.created_at, j.job_id))
        if p.get("nextToken"):
            after = tuple(decode_token(p["nextToken"]))
            jobs = [j for j in jobs if (j.created_at, j.job_id) > after]
        page = jobs[:limit]
        result: dict[str, Any] = {"jobSummaryList": [j.to_summary() for j in page]}
        if len(jobs) > limit:
            result["nextToken"] = encode_token([page[-1].created_at, page[-1].job_id])
        return result

    def _list_children(
        self, p: dict[str, Any], parent_id: str, filters: list[dict[str, Any]], limit: int
    ) -> dict[str, Any]:
        """ListJobs by arrayJobId: the array's children in index order, with the same status and
        filter rules as a queue's listing; nextToken is the index after the last one returned.
        An id that names no array parent lists nothing."""
        parent = self.jobs.get(parent_id)
        children = parent.array.children if parent is not None and parent.array is not None else []
        start = int(decode_token(p["nextToken"])) if p.get("nextToken") else 0
        jobs = children[start:]
        if filters:
            for f in filters:
                jobs = self._apply_filter(jobs, f)
        else:
            status = JobStatus(p.get("jobStatus", "RUNNING"))
            jobs = [j for j in jobs if j.status == status]
        page = jobs[:limit]
        result: dict[str, Any] = {"jobSummaryList": [j.to_summary() for j in page]}
        if len(jobs) > limit:
            result["nextToken"] = encode_token(int(page[-1].array_index or 0) + 1)
        return result

    @staticmethod
    def _apply_filter(jobs: list[Job], f: dict[str, Any]) -> list[Job]:
        name = f.get("name")
        values = f.get("values") or []
        if not values:
            return jobs
        value = values[0]
        if name == "JOB_NAME":
            wanted = value.lower()
            if wanted.endswith("*"):
                return [j for j in jobs if j.job_name.lower().startswith(wanted[:-1])]
            return [j for j in jobs if j.job_name.lower() == wanted]
        if name in ("BEFORE_CREATED_AT", "AFTER_CREATED_AT"):
            try:
                stamp = int(value)
            except ValueError as exc:
                raise ClientException(f"{name} must be a timestamp in milliseconds") from exc
            if name == "BEFORE_CREATED_AT":
                return [j for j in jobs if j.created_at < stamp]
            return [j for j in jobs if j.created_at > stamp]
        if name == "JOB_DEFINITION":
            return [
                j
                for j in jobs
                if value in (j.job_definition_arn, j.job_definition_name)
                or j.job_definition_arn.endswith(f"/{value}")
            ]
        raise ClientException(
            f"Invalid filter name {name}: use JOB_NAME, JOB_DEFINITION, BEFORE_CREATED_AT or AFTER_CREATED_AT"
        )

    def terminate_job(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        self.terminate(self._job(name_from(p["jobId"], "job")), p["reason"])
        return {}

    def cancel_job(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        job = self._job(name_from(p["jobId"], "job"))
        if job.array is not None:
            # Like AWS: cancelling a parent cancels the children that can be; it fails once the
            # rest (STARTING or RUNNING, left to run) have ended.
            if not job.status.is_final:
                job.is_cancelled = True
                job.status_reason = p["reason"]
                self.touch(job)
                for child in job.array.children:
                    self.cancel(child, p["reason"])
            return {}
        self.cancel(job, p["reason"])
        return {}
