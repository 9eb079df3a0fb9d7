"""Batch ARNs: building them, and reading a resource's name back from an ARN or a plain name.

Every Batch API that takes a reference to a compute environment, job queue or job accepts either
its name (its id for a job) or its ARN, so lookups go through :func:`name_from`.
"""

from __future__ import annotations

import re

from localbatch.models import ACCOUNT_ID

ARN_NAME_RE = re.compile(r"^arn:aws[\w-]*:batch:[\w-]+:\d{12}:([\w-]+)/(.+)$")


def batch_arn(region: str, kind: str, name: str) -> str:
    return f"arn:aws:batch:{region}:{ACCOUNT_ID}:{kind}/{name}"


def name_from(ref: str, kind: str) -> str:
    """The name in `ref` when it is a Batch ARN of resource type `kind`; otherwise `ref` itself."""
    match = ARN_NAME_RE.match(ref)
    if match and match.group(1) == kind:
        return match.group(2)
    return ref
