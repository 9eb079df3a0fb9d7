"""RegisterJobDefinition, DescribeJobDefinitions and DeregisterJobDefinition."""

from __future__ import annotations

import copy
import re
from typing import Any

from localbatch.arns import batch_arn
from localbatch.containers import eks_resources
from localbatch.errors import ClientException
from localbatch.records import Records, check_resource_name
from localbatch.scheduling_policies import MAX_SCHEDULING_PRIORITY

# Batch's rule for containerProperties.image: up to 255 letters, numbers, hyphens, underscores, colons,
# periods, forward slashes and number signs (and "@" of an image digest, which ECS accepts).
IMAGE_RE = re.compile(r"^[A-Za-z0-9._:/#@-]{1,255}$")
MAX_DESCRIBE_JOB_DEFINITIONS = 100


class JobDefinitions(Records):
    def register_job_definition(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        name = p["jobDefinitionName"]
        check_resource_name("jobDefinitionName", name)
        if p["type"] != "container":
            raise ClientException("localbatch supports only job definitions of type container")
        eks = p.get("eksProperties")
        container = p.get("containerProperties")
        if eks is not None:
            if container is not None:
                raise ClientException("Specify either containerProperties or eksProperties, not both")
            containers = (eks.get("podProperties") or {}).get("containers") or []
            if not containers:
                raise ClientException(
                    "eksProperties.podProperties.containers must list at least one container"
                )
            names = [c["name"] for c in containers if c.get("name")]
            if len(names) != len(set(names)):
                raise ClientException(
                    "eksProperties.podProperties.containers: container names must be unique"
                )
            for c in containers:
                eks_resources(c)
        elif not container or not container.get("image"):
            raise ClientException("containerProperties.image must be provided for a container job definition")
        else:
            if not isinstance(container["image"], str) or not IMAGE_RE.match(container["image"]):
                raise ClientException(
                    f"Invalid image name {container['image']!r}: up to 255 letters, numbers, hyphens, "
                    "underscores, colons, periods, forward slashes and number signs are allowed"
                )
            # AWS echoes these lists back empty when they were not given.
            container = {
                **{k: [] for k in ("environment", "mountPoints", "secrets", "ulimits", "volumes")},
                **container,
            }
        revisions = [
            int(d["revision"]) for d in self.job_definitions.values() if d["jobDefinitionName"] == name
        ]
        revision = max(revisions, default=0) + 1
        arn = batch_arn(region, "job-definition", f"{name}:{revision}")
        jd: dict[str, Any] = {
            "jobDefinitionName": name,
            "jobDefinitionArn": arn,
            "revision": revision,
            "status": "ACTIVE",
            "type": "container",
            "parameters": p.get("parameters", {}),
            "tags": p.get("tags", {}),
            "propagateTags": p.get("propagateTags", False),
        }
        if eks is not None:
            jd["eksProperties"] = copy.deepcopy(eks)
            jd["containerOrchestrationType"] = "EKS"
        else:
            jd["containerProperties"] = container
            jd["platformCapabilities"] = p.get("platformCapabilities", ["EC2"])
            jd["containerOrchestrationType"] = "ECS"
        priority = p.get("schedulingPriority")
        if priority is not None and not 0 <= priority <= MAX_SCHEDULING_PRIORITY:
            raise ClientException(f"schedulingPriority must be between 0 and {MAX_SCHEDULING_PRIORITY}")
        for key in ("retryStrategy", "timeout", "schedulingPriority"):
            if key in p:
                jd[key] = p[key]
        self.job_definitions[arn] = jd
        self._save_jd(jd)
        return {"jobDefinitionName": name, "jobDefinitionArn": arn, "revision": revision}

    def describe_job_definitions(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        items = sorted(
            self.job_definitions.values(), key=lambda d: (d["jobDefinitionName"], int(d["revision"]))
        )
        if p.get("jobDefinitions"):
            if p.get("jobDefinitionName") or p.get("status"):
                raise ClientException("jobDefinitions can't be used with jobDefinitionName or status")
            if len(p["jobDefinitions"]) > MAX_DESCRIBE_JOB_DEFINITIONS:
                raise ClientException(f"jobDefinitions takes at most {MAX_DESCRIBE_JOB_DEFINITIONS} entries")
            refs = set(p["jobDefinitions"])
            items = [
                d
                for d in items
                if d["jobDefinitionArn"] in refs
                or f"{d['jobDefinitionName']}:{d['revision']}" in refs
                or (d["jobDefinitionName"] in refs and d["status"] == "ACTIVE")
            ]
        if p.get("jobDefinitionName"):
            items = [d for d in items if d["jobDefinitionName"] == p["jobDefinitionName"]]
        if p.get("status"):
            items = [d for d in items if d["status"] == p["status"]]
        return self._page(items, p, "jobDefinitions")

    def deregister_job_definition(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        jd = self._jd(p["jobDefinition"])
        jd["status"] = "INACTIVE"
        self._save_jd(jd)
        return {}
