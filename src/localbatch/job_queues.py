"""CreateJobQueue, DescribeJobQueues, UpdateJobQueue and DeleteJobQueue."""

from __future__ import annotations

from typing import Any

from localbatch.arns import batch_arn, name_from
from localbatch.errors import ClientException
from localbatch.models import JobStatus
from localbatch.records import Records, check_resource_name


class JobQueues(Records):
    def _ce_order(self, order: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for item in sorted(order, key=lambda o: o["order"]):
            ce = self._ce(item["computeEnvironment"])
            out.append({"order": item["order"], "computeEnvironment": ce["computeEnvironmentArn"]})
        return out

    def create_job_queue(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        name = p["jobQueueName"]
        check_resource_name("jobQueueName", name)
        if name in self.job_queues:
            raise ClientException("Object already exists")
        order = p.get("computeEnvironmentOrder")
        if not order:
            raise ClientException("computeEnvironmentOrder must contain at least one compute environment")
        arn = batch_arn(region, "job-queue", name)
        jq: dict[str, Any] = {
            "jobQueueName": name,
            "jobQueueArn": arn,
            "state": p.get("state", "ENABLED"),
            "status": "VALID",
            "statusReason": "JobQueue Healthy",
            "priority": p["priority"],
            "computeEnvironmentOrder": self._ce_order(order),
            "tags": p.get("tags", {}),
            "jobStateTimeLimitActions": p.get("jobStateTimeLimitActions", []),
        }
        if "schedulingPolicyArn" in p:
            jq["schedulingPolicyArn"] = self._sp(p["schedulingPolicyArn"])["arn"]
        self.job_queues[name] = jq
        self._save_jq(jq)
        return {"jobQueueName": name, "jobQueueArn": arn}

    def describe_job_queues(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        wanted = p.get("jobQueues")
        items = list(self.job_queues.values())
        if wanted:
            names = {name_from(w, "job-queue") for w in wanted}
            items = [jq for jq in items if jq["jobQueueName"] in names]
        return self._page(items, p, "jobQueues")

    def update_job_queue(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        jq = self._jq(p["jobQueue"])
        if "state" in p:
            jq["state"] = p["state"]
        if "priority" in p:
            jq["priority"] = p["priority"]
        if p.get("computeEnvironmentOrder"):
            jq["computeEnvironmentOrder"] = self._ce_order(p["computeEnvironmentOrder"])
        if "schedulingPolicyArn" in p:
            sp = self._sp(p["schedulingPolicyArn"])
            # AWS: a FIFO queue cannot become fair share; a fair-share queue's policy can be replaced.
            if "schedulingPolicyArn" not in jq:
                raise ClientException(
                    "Cannot add a scheduling policy to a job queue created without one (FIFO); "
                    "create a new job queue with schedulingPolicyArn instead"
                )
            jq["schedulingPolicyArn"] = sp["arn"]
        self._save_jq(jq)
        self.on_change()
        return {"jobQueueName": jq["jobQueueName"], "jobQueueArn": jq["jobQueueArn"]}

    def delete_job_queue(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        jq = self._jq(p["jobQueue"])
        if jq["state"] != "DISABLED":
            raise ClientException("Cannot delete, job queue must be in DISABLED state")
        # AWS terminates the jobs still in a deleted queue.
        for status in JobStatus:
            for job_id in list(self.jobs_in(jq["jobQueueArn"], status)):
                self.terminate(self.jobs[job_id], "Job queue deleted")
        del self.job_queues[jq["jobQueueName"]]
        self.store.delete("job_queue", jq["jobQueueName"])
        return {}
