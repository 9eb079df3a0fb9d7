"""Shutdown: what ``terminate()`` and ``end()`` send Batch for the jobs they end."""

from __future__ import annotations

import pytest

from airflow_aws_batch.core.state import Terminate
from airflow_aws_batch.shutdown import whole_arrays


@pytest.mark.parametrize(
    ("commands", "tracked", "expected"),
    [
        pytest.param(
            [Terminate("p:0", "r"), Terminate("p:1", "r"), Terminate("single", "r")],
            ["p:0", "p:1", "single"],
            ["single", "p"],
            id="every-watched-child-ends-the-array",
        ),
        pytest.param(
            [Terminate("p:0", "r")],
            ["p:0", "p:1"],
            ["p:0"],
            id="a-watched-sibling-keeps-the-array",
        ),
        pytest.param(
            [Terminate("p:0", "r"), Terminate("q:5", "r")], None, ["p", "q"], id="everything-forgotten"
        ),
    ],
)
def testwhole_arrays(commands: list[Terminate], tracked: list[str] | None, expected: list[str]) -> None:
    assert [cmd.job_id for cmd in whole_arrays(commands, tracked)] == expected
