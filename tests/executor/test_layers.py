"""What each layer of the executor may import: core stays pure, the scheduler never loads ops."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "airflow_aws_batch"


def _core_files() -> list[Path]:
    return sorted((PACKAGE / "core").rglob("*.py"))


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in _core_files()])
def test_core_starts_no_threads_and_never_sleeps(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            if node.module == "time":
                imported.update(f"time.{alias.name}" for alias in node.names)
    sleeps = [
        node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "sleep"
    ]
    assert not imported & {"threading", "_thread", "concurrent.futures", "time.sleep"}, imported
    assert sleeps == [], f"{path.name} calls sleep on lines {sleeps}"


def test_the_scheduler_import_path_loads_no_operator_tooling(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import airflow_aws_batch\n"
        "airflow_aws_batch.AwsBatchExecutor\n"
        "import airflow_aws_batch.executor\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('airflow_aws_batch'))))\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "airflow_aws_batch.executor" in loaded  # the import did happen
    assert [m for m in loaded if m == "airflow_aws_batch.ops" or m.startswith("airflow_aws_batch.ops.")] == []
