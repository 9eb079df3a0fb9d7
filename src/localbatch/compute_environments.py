"""CreateComputeEnvironment, DescribeComputeEnvironments, UpdateComputeEnvironment and
DeleteComputeEnvironment."""

from __future__ import annotations

import re
import uuid
from typing import Any

from localbatch.arns import batch_arn, name_from
from localbatch.errors import ClientException
from localbatch.models import ACCOUNT_ID
from localbatch.records import Records, check_resource_name

# AWS's rule for EksConfiguration.kubernetesNamespace (besides: not "default", not "kube-...", < 64).
K8S_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ComputeEnvironments(Records):
    def create_compute_environment(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        name = p["computeEnvironmentName"]
        check_resource_name("computeEnvironmentName", name)
        if name in self.compute_environments:
            raise ClientException("Object already exists")
        if p["type"] == "MANAGED" and "computeResources" not in p:
            raise ClientException("computeResources must be provided for a MANAGED compute environment")
        eks = p.get("eksConfiguration")
        if eks is not None:
            namespace = eks["kubernetesNamespace"]
            if (
                len(namespace) >= 64
                or namespace == "default"
                or namespace.startswith("kube-")
                or not K8S_NAMESPACE_RE.match(namespace)
            ):
                raise ClientException(
                    f"kubernetesNamespace {namespace!r} is invalid: fewer than 64 characters matching "
                    f"{K8S_NAMESPACE_RE.pattern}, not 'default', not starting with 'kube-'"
                )
        arn = batch_arn(region, "compute-environment", name)
        ce: dict[str, Any] = {
            "computeEnvironmentName": name,
            "computeEnvironmentArn": arn,
            "ecsClusterArn": f"arn:aws:ecs:{region}:{ACCOUNT_ID}:cluster/{name}_Batch_{uuid.uuid4()}",
            "tags": p.get("tags", {}),
            "type": p["type"],
            "state": p.get("state", "ENABLED"),
            "status": "VALID",
            "statusReason": "ComputeEnvironment Healthy",
            "serviceRole": p.get("serviceRole", f"arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/batch"),
            "containerOrchestrationType": "ECS",
            "uuid": str(uuid.uuid4()),
        }
        if "computeResources" in p:
            ce["computeResources"] = p["computeResources"]
        if "unmanagedvCpus" in p:
            ce["unmanagedvCpus"] = p["unmanagedvCpus"]
        if eks is not None:
            # Kept as metadata: no cluster is contacted; EKS jobs run as local processes all the same.
            del ce["ecsClusterArn"]
            ce["eksConfiguration"] = dict(eks)
            ce["containerOrchestrationType"] = "EKS"
        self.compute_environments[name] = ce
        self._save_ce(ce)
        return {"computeEnvironmentName": name, "computeEnvironmentArn": arn}

    def describe_compute_environments(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        wanted = p.get("computeEnvironments")
        items = list(self.compute_environments.values())
        if wanted:
            names = {name_from(w, "compute-environment") for w in wanted}
            items = [ce for ce in items if ce["computeEnvironmentName"] in names]
        return self._page(items, p, "computeEnvironments")

    def update_compute_environment(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        ce = self._ce(p["computeEnvironment"])
        if "state" in p:
            ce["state"] = p["state"]
        if "unmanagedvCpus" in p:
            ce["unmanagedvCpus"] = p["unmanagedvCpus"]
        if "computeResources" in p and "computeResources" in ce:
            ce["computeResources"] = {**ce["computeResources"], **p["computeResources"]}
        if "serviceRole" in p:
            ce["serviceRole"] = p["serviceRole"]
        self._save_ce(ce)
        self.on_change()
        return {
            "computeEnvironmentName": ce["computeEnvironmentName"],
            "computeEnvironmentArn": ce["computeEnvironmentArn"],
        }

    def delete_compute_environment(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        ce = self._ce(p["computeEnvironment"])
        for jq in self.job_queues.values():
            refs = {
                name_from(o["computeEnvironment"], "compute-environment")
                for o in jq["computeEnvironmentOrder"]
            }
            if ce["computeEnvironmentName"] in refs:
                raise ClientException("Cannot delete, found existing JobQueue relationship")
        if ce["state"] != "DISABLED":
            raise ClientException("Cannot delete, compute environment must be in DISABLED state")
        del self.compute_environments[ce["computeEnvironmentName"]]
        self.store.delete("compute_environment", ce["computeEnvironmentName"])
        return {}
