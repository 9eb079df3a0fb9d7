"""SubmitJob: a single job or an array (its parent and children at once), checked against its queue
(kind of compute, fair share) and its job definition."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from localbatch.arns import batch_arn
from localbatch.containers import container_job, eks_job, eks_resources, resources
from localbatch.errors import ClientException
from localbatch.models import ArrayState, Job, JobStatus, now_ms
from localbatch.records import Records
from localbatch.scheduling_policies import MAX_SCHEDULING_PRIORITY, SHARE_PATTERN_RE

JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")

MAX_OVERRIDES_CHARS = 8192

MIN_ARRAY_SIZE = 2
MAX_ARRAY_SIZE = 10000


class Submits(Records):
    def submit_job(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        name = p["jobName"]
        if not JOB_NAME_RE.match(name):
            raise ClientException(
                "Job name should be up to 128 characters long. It can contain uppercase and lowercase "
                "letters, numbers, hyphens (-), and underscores (_), and must start with a letter or number."
            )
        for unsupported in (
            "nodeOverrides",
            "ecsPropertiesOverride",
        ):
            if p.get(unsupported):
                raise ClientException(f"localbatch does not support {unsupported}")
        array_size = self._array_size(p)
        jq = self._jq(p["jobQueue"])
        self._check_share(jq, p)
        jd = self._jd(p["jobDefinition"])
        self._check_orchestration(jq, jd, p)
        parameters = {**jd.get("parameters", {}), **p.get("parameters", {})}
        eks_properties: dict[str, Any] | None = None
        if "eksProperties" in jd:
            overrides = p.get("eksPropertiesOverride") or {}
            eks_properties, container = eks_job(jd, overrides, parameters)
            vcpus, memory = eks_resources((eks_properties["podProperties"]["containers"] or [{}])[0])
        else:
            overrides = p.get("containerOverrides", {})
            container = container_job(jd, overrides, parameters)
            vcpus, memory = resources(container)
        retry = p.get("retryStrategy") or jd.get("retryStrategy") or {}
        timeout = (p.get("timeout") or jd.get("timeout") or {}).get("attemptDurationSeconds")
        propagate = p.get("propagateTags", jd.get("propagateTags", False))
        tags = {**(jd.get("tags", {}) if propagate else {}), **p.get("tags", {})}
        depends_on = []
        for dep in p.get("dependsOn", []):
            if not dep.get("jobId"):
                raise ClientException(
                    "localbatch does not support dependsOn without a jobId (sequential array children)"
                )
            if dep.get("type") == "N_TO_N":
                raise ClientException("localbatch does not support N_TO_N dependencies")
            if dep["jobId"] not in self.jobs:
                raise ClientException(f"Dependent job {dep['jobId']} not found")
            depends_on.append({"jobId": dep["jobId"], "type": dep.get("type", "SEQUENTIAL")})
        job_id = str(uuid.uuid4())
        job = Job(
            job_id=job_id,
            job_name=name,
            job_arn=batch_arn(region, "job", job_id),
            queue_arn=jq["jobQueueArn"],
            job_definition_arn=jd["jobDefinitionArn"],
            job_definition_name=jd["jobDefinitionName"],
            created_at=now_ms(),
            container=container,
            vcpus=vcpus if vcpus is not None else 1.0,
            memory_mib=memory if memory is not None else 2048,
            retry_attempts=int(retry.get("attempts", 1)),
            evaluate_on_exit=list(retry.get("evaluateOnExit", [])),
            timeout_seconds=int(timeout) if timeout is not None else None,
            tags=tags,
            propagate_tags=bool(propagate),
            parameters=parameters,
            depends_on=depends_on,
            scheduling_priority=p.get("schedulingPriorityOverride", jd.get("schedulingPriority")),
            share_identifier=p.get("shareIdentifier"),
            platform_capabilities=list(jd.get("platformCapabilities", [] if eks_properties else ["EC2"])),
            overrides_too_long=len(json.dumps(overrides)) > MAX_OVERRIDES_CHARS,
            array_size=array_size,
            eks_properties=eks_properties,
        )
        if not 1 <= job.retry_attempts <= 10:
            raise ClientException("retryStrategy.attempts must be between 1 and 10")
        if len(job.evaluate_on_exit) > 5:
            raise ClientException("retryStrategy.evaluateOnExit accepts at most 5 entries")
        self.jobs[job_id] = job
        self._index_add(job)
        for dep in depends_on:
            self.dependents.setdefault(dep["jobId"], set()).add(job_id)
        self.touch(job)
        if array_size is not None:
            self._spawn_children(job, array_size)
        self.on_change()
        return {"jobArn": job.job_arn, "jobName": name, "jobId": job_id}

    @staticmethod
    def _array_size(p: dict[str, Any]) -> int | None:
        size = (p.get("arrayProperties") or {}).get("size")
        if size is None:
            return None
        if not MIN_ARRAY_SIZE <= size <= MAX_ARRAY_SIZE:
            raise ClientException(
                f"Array job size must be between {MIN_ARRAY_SIZE} and {MAX_ARRAY_SIZE}, found {size}."
            )
        return int(size)

    def _spawn_children(self, parent: Job, size: int) -> None:
        """The children exist as soon as SubmitJob answers, so a client may describe them at once."""
        state = parent.array = ArrayState()
        state.counts[JobStatus.SUBMITTED] = size
        state.updated_at = parent.created_at
        children = state.children
        for index in range(size):
            child = parent.child(index)
            children.append(child)
            self.jobs[child.job_id] = child
            self._index_add(child)
            self.touch(child)
        self.array_parents += 1
        self.array_children += size

    def _check_orchestration(self, jq: dict[str, Any], jd: dict[str, Any], p: dict[str, Any]) -> None:
        """EKS jobs on EKS queues, container jobs on ECS queues; each override only on its own kind."""
        is_eks = "eksProperties" in jd
        if is_eks and p.get("containerOverrides"):
            raise ClientException(
                f"containerOverrides can't be used with job definition {jd['jobDefinitionName']}, an EKS "
                "job definition: use eksPropertiesOverride"
            )
        if not is_eks and p.get("eksPropertiesOverride"):
            raise ClientException(
                f"eksPropertiesOverride can't be used with job definition {jd['jobDefinitionName']}, which "
                "has no eksProperties: use containerOverrides"
            )
        kinds = {
            self._ce(o["computeEnvironment"]).get("containerOrchestrationType", "ECS")
            for o in jq["computeEnvironmentOrder"]
        }
        wanted = "EKS" if is_eks else "ECS"
        if kinds and wanted not in kinds:
            raise ClientException(
                f"Job definition {jd['jobDefinitionName']} ({wanted}) is not compatible with job queue "
                f"{jq['jobQueueName']}, whose compute environments are {'/'.join(sorted(kinds))}"
            )

    @staticmethod
    def _check_share(jq: dict[str, Any], p: dict[str, Any]) -> None:
        """AWS's SubmitJob rules for shareIdentifier and schedulingPriorityOverride."""
        share = p.get("shareIdentifier")
        if "schedulingPolicyArn" in jq:
            if not share:
                raise ClientException("shareIdentifier must be specified.")
            if not SHARE_PATTERN_RE.match(share) or share.endswith("*"):
                raise ClientException(
                    f"Invalid shareIdentifier {share}: up to 255 characters, without an asterisk (*)."
                )
        elif share is not None:
            raise ClientException(
                "shareIdentifier can't be specified: job queue "
                f"{jq['jobQueueName']} doesn't have a fair-share scheduling policy."
            )
        priority = p.get("schedulingPriorityOverride")
        if priority is not None and not 0 <= priority <= MAX_SCHEDULING_PRIORITY:
            raise ClientException(
                f"schedulingPriorityOverride must be between 0 and {MAX_SCHEDULING_PRIORITY}."
            )
