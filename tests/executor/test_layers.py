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


# What reaches the network, a store, a database or other processes: our own rooms that do (the AWS
# seam, the workload store, the threads and what they call, the executor and its rooms) and the
# libraries that do it.
_IO_ROOMS = (
    "airflow_aws_batch.adopt_desk",
    "airflow_aws_batch.adoption",
    "airflow_aws_batch.aws",
    "airflow_aws_batch.dispatch",
    "airflow_aws_batch.executor",
    "airflow_aws_batch.intake",
    "airflow_aws_batch.launch",
    "airflow_aws_batch.logs",
    "airflow_aws_batch.metrics",
    "airflow_aws_batch.ops",
    "airflow_aws_batch.reports",
    "airflow_aws_batch.results",
    "airflow_aws_batch.runtime",
    "airflow_aws_batch.shutdown",
    "airflow_aws_batch.started",
    "airflow_aws_batch.sweep",
    "airflow_aws_batch.wiring",
    "airflow_aws_batch.workloads",
)
_IO_LIBRARIES = (
    "boto3",
    "botocore.client",
    "botocore.config",
    "botocore.exceptions",
    "concurrent.futures",
    "http",
    "socket",
    "ssl",
    "subprocess",
    "tempfile",
    "urllib.request",
    "airflow.models",
    "airflow.utils.session",
    "sqlalchemy.orm",
)


def _module_file(name: str) -> Path | None:
    base = PACKAGE.parent / name.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports, at module level or in a function (those run too, later), except
    under ``if TYPE_CHECKING:`` and in a module ``__getattr__`` (they run only when named)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        lazy = isinstance(node, ast.FunctionDef) and node.name == "__getattr__" and node in tree.body
        if lazy or (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)):
            skipped.update(id(inner) for inner in ast.walk(node))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*parts, *([module] if module else [])])
            found.add(module)
            found.update(
                f"{module}.{alias.name}" for alias in node.names if _module_file(f"{module}.{alias.name}")
            )
    return found


def _closure(root: str) -> tuple[set[str], set[str]]:
    """The modules of our package that importing ``root`` may load, and every other module they import."""
    ours: set[str] = set()
    others: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in ours or path is None:
            continue
        ours.add(name)
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        for module in [*parents, *_imports(path, name)]:
            if module.split(".")[0] == PACKAGE.name:
                todo.append(module)
            else:
                others.add(module)
    return ours, others


def _within(module: str, rooms: tuple[str, ...]) -> bool:
    return any(module == room or module.startswith(room + ".") for room in rooms)


@pytest.mark.parametrize("root", ["airflow_aws_batch.config", "airflow_aws_batch.submit"])
def test_building_requests_imports_nothing_that_does_io(root: str) -> None:
    # config.py reads and checks the options and submit.py builds the SubmitJob requests, on the
    # scheduler thread and the intake thread: they take the rules they need (workload_rules, not the
    # store's workloads.py) and are handed what reads AWS as callables.
    ours, others = _closure(root)
    assert "airflow_aws_batch.workload_rules" in ours  # the walk reaches imports made in functions too
    assert sorted(m for m in ours if _within(m, _IO_ROOMS)) == []
    assert sorted(m for m in others if _within(m, _IO_LIBRARIES)) == []
