"""Logical ids and fixed values of the rendered template, shared by its builders, provision.py and tests."""

from __future__ import annotations

from airflow_aws_batch.core.ownership import DEPLOYMENT_TAG as _DEPLOYMENT_TAG

# Logical ids.
COMPUTE_ENVIRONMENT = "ComputeEnvironment"
JOB_QUEUE = "JobQueue"
SCHEDULING_POLICY = "SchedulingPolicy"
#: The share identifier tasks get when a template field is empty (e.g. ``{team}`` without a team).
DEFAULT_SHARE = "default"
MAX_SHARE_DECAY_SECONDS = 604800
JOB_DEFINITION = "JobDefinition"
LOG_GROUP = "TaskLogGroup"
JOB_ROLE = "JobRole"
EXECUTION_ROLE = "ExecutionRole"
SERVICE_ROLE = "BatchServiceRole"
INSTANCE_ROLE = "InstanceRole"
#: A managed policy for the scheduler's own role (the template does not know that role).
SCHEDULER_POLICY = "SchedulerPolicy"
INSTANCE_PROFILE = "InstanceProfile"
WORKLOAD_BUCKET = "WorkloadBucket"
SCHEDULER_WORKLOAD_POLICY = "SchedulerWorkloadPolicy"
#: Days after which the lifecycle rule expires workload objects nobody consumed (a token outlives
#: its use by [scheduler] task_queued_timeout at most, 10 minutes by default).
WORKLOAD_EXPIRY_DAYS = 1

LAUNCH_TEMPLATE = "InstanceLaunchTemplate"
#: The tag naming the deployment of every job the executor submits.
DEPLOYMENT_TAG = _DEPLOYMENT_TAG

# Status events (``render --status-events``): Batch's job state changes, through EventBridge, into a
# queue the scheduler long-polls.
STATUS_EVENTS_QUEUE = "StatusEventsQueue"
STATUS_EVENTS_QUEUE_POLICY = "StatusEventsQueuePolicy"
STATUS_EVENTS_RULE = "StatusEventsRule"
