"""The Batch backend: resources, jobs and their indexes, one method per API operation.

All state lives in memory on the event loop thread and is written through to the Store. Methods
take the validated request parameters (botocore's input shape) and return the output shape.

Array jobs: SubmitJob with arrayProperties.size creates the parent and its children at once (the
children's ids are "<parentId>:<index>"); only children are scheduled and run, the parent follows
them (see `localbatch.records.Records._child_moved`). Not emulated for arrays: SEQUENTIAL
dependencies without a jobId (children run one after another) and N_TO_N dependencies; a dependency
on an array parent waits for every child.

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

from typing import Any

from localbatch.compute_environments import ComputeEnvironments
from localbatch.errors import ClientException
from localbatch.job_definitions import JobDefinitions
from localbatch.job_queues import JobQueues
from localbatch.jobs import Jobs
from localbatch.persistence import Persistence
from localbatch.scheduling_policies import SchedulingPolicies
from localbatch.submits import Submits
from localbatch.tags import Tags


class BatchBackend(
    Persistence, ComputeEnvironments, JobQueues, SchedulingPolicies, JobDefinitions, Submits, Jobs, Tags
):
    """One method per API operation, each kind of resource in a module of its own; the state they
    share (records, indexes, transitions) is `localbatch.records.Records`."""

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
