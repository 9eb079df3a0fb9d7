"""The Batch backend: resources, jobs and their indexes, one method per API operation.

All state lives in memory on the event loop thread and is written through to the Store. Methods
take the validated request parameters (botocore's input shape) and return the output shape.

Array jobs: SubmitJob with arrayProperties.size creates the parent and its children at once (the
children's ids are "<parentId>:<index>"); only children are scheduled and run, the parent follows
them (see `_child_moved`). Not emulated for arrays: SEQUENTIAL dependencies without a jobId (children
run one after another) and N_TO_N dependencies; a dependency on an array parent waits for every child.

EKS: compute environments with ``eksConfiguration`` are kept as metadata (no cluster is contacted),
job definitions with ``eksProperties`` and SubmitJob's ``eksPropertiesOverride`` are accepted, and an
EKS job runs its pod's first container (command + args, env) as a local process, as a container job
runs; its other containers are not run. DescribeJobs reports ``eksProperties`` and ``eksAttempts``
(pod and node names are made up). An EKS job needs a queue of EKS compute environments, and a
container job one of ECS ones (the wording of those refusals is localbatch's).

Not emulated: multi-node parallel jobs, ECS properties, quota-share scheduling
policies, consumable resources, service environments and jobs, job state time limit actions.
Fair-share scheduling policies are kept and applied (localbatch.scheduling.FairShareOrder says what
is simplified).
Compute environments and job queues become VALID at once (no CREATING/UPDATING phases).
ListJobs returns jobs oldest first (AWS does not document an order); its nextToken is the position
after the last job returned, so pages stay consistent while jobs change status.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from localbatch.arns import ARN_NAME_RE, batch_arn, name_from
from localbatch.errors import ClientException
from localbatch.faults import Faults
from localbatch.models import ACCOUNT_ID, ArrayState, Job, JobStatus, check_transition, now_ms
from localbatch.pagination import decode_token, encode_token
from localbatch.store import Store

JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
RESOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
# Batch's rule for containerProperties.image: up to 255 letters, numbers, hyphens, underscores, colons,
# periods, forward slashes and number signs (and "@" of an image digest, which ECS accepts).
IMAGE_RE = re.compile(r"^[A-Za-z0-9._:/#@-]{1,255}$")
MAX_DESCRIBE_JOB_DEFINITIONS = 100
MAX_OVERRIDES_CHARS = 8192
MAX_DESCRIBE_JOBS = 100
MIN_ARRAY_SIZE = 2
MAX_ARRAY_SIZE = 10000
# A share identifier: up to 255 characters; in a policy's shareDistribution, optionally followed by `*`
# (a prefix). AWS documents "alphanumeric" characters but localbatch does not check the characters.
SHARE_PATTERN_RE = re.compile(r"^[^*]{1,255}\*?$|^\*$")
MAX_SCHEDULING_PRIORITY = 9999
MAX_SHARE_DECAY_SECONDS = 604800
MAX_COMPUTE_RESERVATION = 99
# AWS's rule for EksConfiguration.kubernetesNamespace (besides: not "default", not "kube-...", < 64).
K8S_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
EKS_MEMORY_RE = re.compile(r"^(\d+)Mi$")


def _resources(container: dict[str, Any]) -> tuple[float | None, int | None]:
    vcpus: float | None = None
    memory: int | None = None
    for req in container.get("resourceRequirements") or []:
        if req.get("type") == "VCPU":
            vcpus = float(req["value"])
        elif req.get("type") == "MEMORY":
            memory = int(float(req["value"]))
    if vcpus is None and container.get("vcpus") is not None:
        vcpus = float(container["vcpus"])
    if memory is None and container.get("memory") is not None:
        memory = int(container["memory"])
    return vcpus, memory


def _eks_resources(container: dict[str, Any]) -> tuple[float | None, int | None]:
    """vCPUs and MiB of an EKS container's ``resources`` (requests, else limits)."""
    resources = container.get("resources") or {}
    vcpus: float | None = None
    memory: int | None = None
    for part in ("limits", "requests"):
        values = resources.get(part) or {}
        if "cpu" in values:
            try:
                vcpus = float(values["cpu"])
            except ValueError:
                raise ClientException(f"resources.{part}.cpu must be a number of CPUs") from None
        if "memory" in values:
            match = EKS_MEMORY_RE.match(str(values["memory"]))
            if match is None:
                raise ClientException(f"resources.{part}.memory must be whole MiB with a Mi suffix")
            memory = int(match.group(1))
    return vcpus, memory


def _merge_eks_containers(
    base: list[dict[str, Any]], overrides: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The pod's containers with SubmitJob's container overrides applied (by name, else by position)."""
    merged = [copy.deepcopy(c) for c in base]
    by_name = {c.get("name"): i for i, c in enumerate(merged) if c.get("name")}
    for position, override in enumerate(overrides):
        name = override.get("name")
        if name:
            if name not in by_name:
                raise ClientException(
                    f"eksPropertiesOverride: no container named {name} in the job definition"
                )
            index = by_name[name]
        elif position < len(merged):
            index = position
        else:
            raise ClientException("eksPropertiesOverride has more containers than the job definition")
        target = merged[index]
        for key in ("image", "command", "args"):
            if key in override:
                target[key] = list(override[key]) if isinstance(override[key], list) else override[key]
        if "env" in override:
            target["env"] = _merge_env(target.get("env", []), override["env"])
        if "resources" in override:
            resources = target.setdefault("resources", {})
            for part in ("limits", "requests"):
                if part in override["resources"]:
                    resources[part] = {**resources.get(part, {}), **override["resources"][part]}
    return merged


def _merge_env(base: list[dict[str, str]], override: list[dict[str, str]]) -> list[dict[str, str]]:
    merged = {e["name"]: e.get("value", "") for e in base}
    merged.update({e["name"]: e.get("value", "") for e in override})
    return [{"name": k, "value": v} for k, v in merged.items()]


def _merge_requirements(base: list[dict[str, str]], override: list[dict[str, str]]) -> list[dict[str, str]]:
    merged = {r["type"]: r for r in base}
    merged.update({r["type"]: r for r in override})
    return list(merged.values())


def _substitute(command: list[str], parameters: dict[str, str]) -> list[str]:
    out = []
    for arg in command:
        if arg.startswith("Ref::") and arg[5:] in parameters:
            out.append(parameters[arg[5:]])
        else:
            out.append(arg)
    return out


class BatchBackend:
    def __init__(
        self,
        store: Store,
        faults: Faults,
        *,
        on_change: Callable[[], None],
        on_terminate: Callable[[Job], None],
    ) -> None:
        """`on_change`: a job or queue changed in a way scheduling may act on (the runner wakes up).
        `on_terminate`: TerminateJob reached a job whose attempt is STARTING or RUNNING, now marked
        with its stop reason; the runner stops the attempt."""
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

    # -- persistence -------------------------------------------------------------------------------
    def load(self) -> list[Job]:
        """Load every record; return the jobs that were STARTING/RUNNING when the service stopped."""
        for ce in self.store.load("compute_environment"):
            self.compute_environments[ce["computeEnvironmentName"]] = ce
        for jq in self.store.load("job_queue"):
            self.job_queues[jq["jobQueueName"]] = jq
        for jd in self.store.load("job_definition"):
            self.job_definitions[jd["jobDefinitionArn"]] = jd
        for sp in self.store.load("scheduling_policy"):
            self.scheduling_policies[sp["name"]] = sp
        records = list(self.store.load("job"))
        jobs = sorted(
            (Job.from_record(r) for r in records if r.get("array_parent_id") is None),
            key=lambda j: j.created_at,
        )
        orphans = []
        for job in jobs:
            if job.is_array_parent:
                job.array = ArrayState()
                self.array_parents += 1
            self.jobs[job.job_id] = job
            for dep in job.depends_on:
                self.dependents.setdefault(dep["jobId"], set()).add(job.job_id)
        children = sorted(
            (r for r in records if r.get("array_parent_id") is not None),
            key=lambda r: (r["array_parent_id"], r["array_index"]),
        )
        for record in children:
            parent = self.jobs.get(record["array_parent_id"])
            if parent is None or parent.array is None:
                continue  # its parent's record was lost: nothing can describe or finish the array
            child = parent.child_from_record(record)
            parent.array.children.append(child)
            parent.array.move(None, child.status)
            self.jobs[child.job_id] = child
            self.array_children += 1
        # Index in creation order (children follow their parent, in index order): FIFO survives.
        for job in jobs:
            for member in [job, *(job.array.children if job.array is not None else ())]:
                self._index_add(member)
                if member.status.is_active:
                    orphans.append(member)
        for job in jobs:
            if job.array is not None and not job.status.is_final:
                self._follow_children(job)
        return orphans

    def flush_dirty(self) -> int:
        dirty, self._dirty = self._dirty, set()
        for job_id in dirty:
            job = self.jobs.get(job_id)
            if job is not None:
                self.store.put("job", job_id, job.to_record())
        return len(dirty)

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
    def _ce(self, ref: str) -> dict[str, Any]:
        ce = self.compute_environments.get(name_from(ref, "compute-environment"))
        if ce is None:
            raise ClientException(f"computeEnvironment {ref} does not exist")
        return ce

    def _jq(self, ref: str) -> dict[str, Any]:
        jq = self.job_queues.get(name_from(ref, "job-queue"))
        if jq is None:
            raise ClientException(f"JobQueue {ref} not found")
        return jq

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
        sp = self.scheduling_policies.get(name_from(ref, "scheduling-policy"))
        if sp is None:
            raise ClientException(f"SchedulingPolicy {ref} not found")
        return sp

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

    # -- compute environments ----------------------------------------------------------------------
    def create_compute_environment(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        name = p["computeEnvironmentName"]
        if not RESOURCE_NAME_RE.match(name):
            raise ClientException(
                "computeEnvironmentName must be up to 128 letters, numbers, hyphens and underscores"
            )
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

    # -- job queues --------------------------------------------------------------------------------
    def _ce_order(self, order: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for item in sorted(order, key=lambda o: o["order"]):
            ce = self._ce(item["computeEnvironment"])
            out.append({"order": item["order"], "computeEnvironment": ce["computeEnvironmentArn"]})
        return out

    def create_job_queue(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        name = p["jobQueueName"]
        if not RESOURCE_NAME_RE.match(name):
            raise ClientException("jobQueueName must be up to 128 letters, numbers, hyphens and underscores")
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

    # -- scheduling policies -----------------------------------------------------------------------
    @staticmethod
    def _fairshare_policy(p: dict[str, Any]) -> dict[str, Any]:
        if p.get("quotaSharePolicy"):
            raise ClientException("localbatch does not support quotaSharePolicy")
        given = p.get("fairsharePolicy") or {}
        decay = int(given.get("shareDecaySeconds", 0))
        reservation = int(given.get("computeReservation", 0))
        if not 0 <= decay <= MAX_SHARE_DECAY_SECONDS:
            raise ClientException(
                f"shareDecaySeconds must be between 0 and {MAX_SHARE_DECAY_SECONDS}, found {decay}"
            )
        if not 0 <= reservation <= MAX_COMPUTE_RESERVATION:
            raise ClientException(
                f"computeReservation must be between 0 and {MAX_COMPUTE_RESERVATION}, found {reservation}"
            )
        distribution = []
        for entry in given.get("shareDistribution") or []:
            share = entry["shareIdentifier"]
            if not SHARE_PATTERN_RE.match(share):
                raise ClientException(
                    f"Invalid shareIdentifier {share}: up to 255 characters, optionally "
                    "followed by an asterisk (*)"
                )
            item: dict[str, Any] = {"shareIdentifier": share}
            if "weightFactor" in entry:
                weight = float(entry["weightFactor"])
                if not 0.0001 <= weight <= 999.9999:
                    raise ClientException(
                        f"weightFactor of shareIdentifier {share} must be between 0.0001 and 999.9999"
                    )
                item["weightFactor"] = weight
            distribution.append(item)
        shares = [d["shareIdentifier"] for d in distribution]
        for i, first in enumerate(shares):
            for second in shares[i + 1 :]:
                if first == second or any(
                    x.endswith("*") and y.rstrip("*").startswith(x[:-1])
                    for x, y in ((first, second), (second, first))
                ):
                    raise ClientException(f"shareIdentifiers {first} and {second} overlap")
        return {
            "shareDecaySeconds": decay,
            "computeReservation": reservation,
            "shareDistribution": distribution,
        }

    def create_scheduling_policy(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        name = p["name"]
        if not RESOURCE_NAME_RE.match(name):
            raise ClientException("name must be up to 128 letters, numbers, hyphens and underscores")
        if name in self.scheduling_policies:
            raise ClientException("Object already exists")
        arn = batch_arn(region, "scheduling-policy", name)
        sp: dict[str, Any] = {"name": name, "arn": arn, "fairsharePolicy": self._fairshare_policy(p)}
        if p.get("tags"):
            sp["tags"] = p["tags"]
        self.scheduling_policies[name] = sp
        self._save_sp(sp)
        return {"name": name, "arn": arn}

    def describe_scheduling_policies(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        out = []
        for ref in p["arns"]:
            sp = self.scheduling_policies.get(name_from(ref, "scheduling-policy"))
            if sp is not None:
                out.append(sp)
        return {"schedulingPolicies": out}

    def list_scheduling_policies(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        items = [{"arn": sp["arn"]} for sp in self.scheduling_policies.values()]
        return self._page(items, p, "schedulingPolicies")

    def update_scheduling_policy(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        sp = self._sp(p["arn"])
        sp["fairsharePolicy"] = self._fairshare_policy(p)
        self._save_sp(sp)
        self.on_change()
        return {}

    def delete_scheduling_policy(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        sp = self._sp(p["arn"])
        users = sorted(
            jq["jobQueueName"]
            for jq in self.job_queues.values()
            if jq.get("schedulingPolicyArn") == sp["arn"]
        )
        if users:
            raise ClientException(f"Cannot delete, found existing JobQueue relationship: {', '.join(users)}")
        del self.scheduling_policies[sp["name"]]
        self.store.delete("scheduling_policy", sp["name"])
        return {}

    # -- job definitions ---------------------------------------------------------------------------
    def register_job_definition(self, p: dict[str, Any], region: str) -> dict[str, Any]:
        name = p["jobDefinitionName"]
        if not RESOURCE_NAME_RE.match(name):
            raise ClientException(
                "jobDefinitionName must be up to 128 letters, numbers, hyphens and underscores"
            )
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
                _eks_resources(c)
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

    # -- jobs --------------------------------------------------------------------------------------
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
            eks_properties, container = self._eks_job(jd, overrides, parameters)
            vcpus, memory = _eks_resources((eks_properties["podProperties"]["containers"] or [{}])[0])
        else:
            overrides = p.get("containerOverrides", {})
            container = self._container_job(jd, overrides, parameters)
            vcpus, memory = _resources(container)
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

    @staticmethod
    def _container_job(
        jd: dict[str, Any], overrides: dict[str, Any], parameters: dict[str, str]
    ) -> dict[str, Any]:
        """A container job's ``container`` as DescribeJobs reports it (overrides applied)."""
        props = jd["containerProperties"]
        command = overrides.get("command") or props.get("command") or []
        container: dict[str, Any] = {
            "image": props["image"],
            "command": _substitute(list(command), parameters),
            "environment": _merge_env(props.get("environment", []), overrides.get("environment", [])),
            "resourceRequirements": _merge_requirements(
                props.get("resourceRequirements", []), overrides.get("resourceRequirements", [])
            ),
            "volumes": props.get("volumes", []),
            "mountPoints": props.get("mountPoints", []),
            "ulimits": props.get("ulimits", []),
            "secrets": props.get("secrets", []),
            "networkInterfaces": [],
        }
        for key in ("jobRoleArn", "executionRoleArn", "user", "logConfiguration", "linuxParameters"):
            if key in props:
                container[key] = props[key]
        for key in ("vcpus", "memory"):
            if key in overrides:
                container[key] = overrides[key]
            elif key in props:
                container[key] = props[key]
        if "instanceType" in overrides:
            container["instanceType"] = overrides["instanceType"]
        return container

    @staticmethod
    def _eks_job(
        jd: dict[str, Any], overrides: dict[str, Any], parameters: dict[str, str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """An EKS job's ``eksProperties`` (overrides applied) and what the runner needs of it."""
        props = copy.deepcopy(jd["eksProperties"])
        pod = props.setdefault("podProperties", {})
        pod_overrides = overrides.get("podProperties") or {}
        pod["containers"] = _merge_eks_containers(
            pod.get("containers") or [], pod_overrides.get("containers") or []
        )
        if "metadata" in pod_overrides:
            labels = {
                **(pod.get("metadata") or {}).get("labels", {}),
                **pod_overrides["metadata"].get("labels", {}),
            }
            pod["metadata"] = {**pod.get("metadata", {}), **pod_overrides["metadata"], "labels": labels}
        for c in pod["containers"]:
            c.setdefault("command", [])
            c.setdefault("args", [])
            c.setdefault("env", [])
            _eks_resources(c)
        first = pod["containers"][0]
        command = _substitute(list(first.get("command") or []) + list(first.get("args") or []), parameters)
        container = {
            "image": first.get("image", ""),
            "command": command,
            "environment": [{"name": e["name"], "value": e.get("value", "")} for e in first.get("env", [])],
        }
        return props, container

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

    # -- tags --------------------------------------------------------------------------------------
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

    OPERATIONS: dict[str, str] = {
        "CreateComputeEnvironment": "create_compute_environment",
        "DescribeComputeEnvironments": "describe_compute_environments",
        "UpdateComputeEnvironment": "update_compute_environment",
        "DeleteComputeEnvironment": "delete_compute_environment",
        "CreateJobQueue": "create_job_queue",
        "DescribeJobQueues": "describe_job_queues",
        "UpdateJobQueue": "update_job_queue",
        "DeleteJobQueue": "delete_job_queue",
        "CreateSchedulingPolicy": "create_scheduling_policy",
        "DescribeSchedulingPolicies": "describe_scheduling_policies",
        "ListSchedulingPolicies": "list_scheduling_policies",
        "UpdateSchedulingPolicy": "update_scheduling_policy",
        "DeleteSchedulingPolicy": "delete_scheduling_policy",
        "RegisterJobDefinition": "register_job_definition",
        "DescribeJobDefinitions": "describe_job_definitions",
        "DeregisterJobDefinition": "deregister_job_definition",
        "SubmitJob": "submit_job",
        "DescribeJobs": "describe_jobs",
        "ListJobs": "list_jobs",
        "TerminateJob": "terminate_job",
        "CancelJob": "cancel_job",
        "TagResource": "tag_resource",
        "UntagResource": "untag_resource",
        "ListTagsForResource": "list_tags_for_resource",
    }

    def dispatch(self, operation: str, params: dict[str, Any], region: str) -> dict[str, Any]:
        method = self.OPERATIONS.get(operation)
        if method is None:
            raise ClientException(f"localbatch does not implement {operation}")
        result: dict[str, Any] = getattr(self, method)(params, region)
        return result
