"""Template pieces that keep what the stack runs contained, and YAML that CloudFormation reads.

- EC2 and Spot instances start from a launch template that requires IMDSv2 with a hop limit of 1, so a
  container (one network hop past the instance) cannot fetch the instance role's credentials.
- YAML is written without anchors and aliases (PyYAML writes them for a value used twice, and
  CloudFormation refuses them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from airflow_aws_batch.ops.template_names import LAUNCH_TEMPLATE

if TYPE_CHECKING:
    from airflow_aws_batch.ops.template_options import TemplateOptions


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
