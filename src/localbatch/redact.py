"""What the SubmitJob request log keeps of a body: everything but what looks like a workload.

A command may carry a whole workload (``--json-string <workload>``) and with it a task's token (a JWT).
The log is for checking what a caller sent, not for replaying it, so those parts are masked in the
raw text, which stays the JSON it was.
"""

from __future__ import annotations

import re

MASK = "<masked>"
#: The JSON string after a ``"--json-string"`` element of a list (escapes included).
_WORKLOAD_ARG = re.compile(r'("--json-string"\s*,\s*)"(?:[^"\\]|\\.)*"')
#: A JWT, or a piece of one: its header is base64url JSON, which starts "eyJ" ("{"").
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){0,2}")


def mask_workloads(body: str) -> str:
    return _JWT.sub(MASK, _WORKLOAD_ARG.sub(rf'\1"{MASK}"', body))
