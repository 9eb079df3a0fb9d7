"""TagResource, UntagResource and ListTagsForResource on every kind of resource and on jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localbatch.arns import ARN_NAME_RE
from localbatch.errors import ClientException
from localbatch.records import Records


class Tags(Records):
    def _tag_target(self, arn: str) -> tuple[dict[str, str], Callable[[], None]]:
        match = ARN_NAME_RE.match(arn)
        if match is None:
            raise ClientException(f"Resource {arn} not found")
        kind, name = match.groups()
        if kind == "compute-environment" and name in self.compute_environments:
            ce = self.compute_environments[name]
            return ce.setdefault("tags", {}), lambda: self._save_ce(ce)
        if kind == "job-queue" and name in self.job_queues:
            jq = self.job_queues[name]
            return jq.setdefault("tags", {}), lambda: self._save_jq(jq)
        if kind == "job-definition":
            jd = next((d for d in self.job_definitions.values() if d["jobDefinitionArn"] == arn), None)
            if jd is not None:
                return jd.setdefault("tags", {}), lambda: self._save_jd(jd)
        if kind == "scheduling-policy" and name in self.scheduling_policies:
            sp = self.scheduling_policies[name]
            return sp.setdefault("tags", {}), lambda: self._save_sp(sp)
        if kind == "job" and name in self.jobs:
            job = self.jobs[name]
            # A child's tags are its parent's (one dict), kept in the parent's record.
            owner = self.jobs.get(job.array_parent_id or "", job)
            return job.tags, lambda: self.touch(owner)
        raise ClientException(f"Resource {arn} not found")

    def tag_resource(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        tags, save = self._tag_target(p["resourceArn"])
        tags.update(p["tags"])
        save()
        return {}

    def untag_resource(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        tags, save = self._tag_target(p["resourceArn"])
        for key in p["tagKeys"]:
            tags.pop(key, None)
        save()
        return {}

    def list_tags_for_resource(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        tags, _ = self._tag_target(p["resourceArn"])
        return {"tags": dict(tags)}
