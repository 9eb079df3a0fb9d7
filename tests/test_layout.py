"""The two packages meet only through the AWS API: neither imports the other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        pytest.param("airflow_aws_batch", "localbatch", id="executor-never-imports-localbatch"),
        pytest.param("localbatch", "airflow_aws_batch", id="localbatch-never-imports-executor"),
        pytest.param("localbatch", "airflow", id="localbatch-never-imports-airflow"),
    ],
)
def test_packages_do_not_import_each_other(package: str, forbidden: str) -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in sorted((SRC / package).rglob("*.py"))
        if forbidden in _imported_roots(path)
    ]
    assert offenders == [], f"{package} imports {forbidden} in {offenders}"
