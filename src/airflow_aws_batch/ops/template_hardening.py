"""Template pieces that keep what the stack runs contained, and YAML that CloudFormation reads.

- EC2 and Spot instances start from a launch template that requires IMDSv2 with a hop limit of 1, so a
  container (one network hop past the instance) cannot fetch the instance role's credentials.
- A bucket a task may list or write (DAGs, task logs) must not hold the workload store's prefix:
  listing it would show the objects' random names, and the job role may read any object there.
- YAML is written without anchors and aliases (PyYAML writes them for a value used twice, and
  CloudFormation refuses them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from airflow_aws_batch.ops.template_iam import s3_split
from airflow_aws_batch.ops.template_names import LAUNCH_TEMPLATE

if TYPE_CHECKING:
    from airflow_aws_batch.ops.cloudformation import TemplateOptions


class _NoAliasDumper(yaml.SafeDumper):
    """Writes a value used twice as two copies: CloudFormation rejects YAML aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(template: Mapping[str, Any]) -> str:
    text: str = yaml.dump(
        dict(template), Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False, width=110
    )
    return text


def launch_template(options: TemplateOptions) -> dict[str, Any]:
    """The launch template of EC2/Spot instances: IMDSv2 only, hop limit 1."""
    return {
        "Type": "AWS::EC2::LaunchTemplate",
        "Properties": {
            "LaunchTemplateName": f"{options.compute_environment}-instances",
            "LaunchTemplateData": {
                "MetadataOptions": {
                    "HttpEndpoint": "enabled",
                    "HttpTokens": "required",
                    # Containers on bridge networking are one hop further than the instance: with a
                    # limit of 1 their IMDS answers never reach them.
                    "HttpPutResponseHopLimit": 1,
                }
            },
        },
    }


def launch_template_ref() -> dict[str, Any]:
    """The compute resources' reference to :func:`launch_template` (its latest version)."""
    return {
        "LaunchTemplateId": {"Ref": LAUNCH_TEMPLATE},
        "Version": {"Fn::GetAtt": [LAUNCH_TEMPLATE, "LatestVersionNumber"]},
    }


def _overlaps(prefix: str, other: str) -> bool:
    """Whether one of two key prefixes holds the other ("" holds every key)."""
    a, b = prefix.strip("/"), other.strip("/")
    return not a or not b or a == b or a.startswith(b + "/") or b.startswith(a + "/")


def store_exposure_problem(options: TemplateOptions) -> str | None:
    """Why the job role's other S3 grants would reach the workload store's objects, or None."""
    store = options.workload_location
    if store is None:
        return None
    bucket, prefix = store
    for option, uri in (
        ("remote_log_folder", options.remote_log_folder),
        ("dags_s3_uri", options.dags_s3_uri),
    ):
        if not uri.startswith("s3://"):
            continue
        other_bucket, other_prefix = s3_split(uri)
        if other_bucket == bucket and _overlaps(prefix, other_prefix):
            return (
                f"{option}={uri!r} overlaps workload_store={options.workload_store!r}: every task could "
                "list and read the other tasks' workloads (their tokens). Use separate prefixes, "
                "neither inside the other"
            )
    return None


def url_warnings(url: str) -> list[str]:
    """What ``render`` says about an execution API URL it accepts but the operator should know of."""
    warnings = []
    if any(host in url for host in ("://localhost", "://127.", "://[::1]")):
        warnings.append(f"{url} is a loopback address; jobs on AWS cannot reach it")
    if url.startswith("http://"):
        warnings.append(
            f"{url} is plain http: each task's token crosses the network unencrypted. Put the API "
            "server behind TLS and use https://"
        )
    return warnings
