"""The distribution as a user gets it: ``make dist``'s sdist and wheel, the wheel installed on its own.

The wheel is installed into a fresh virtualenv, away from this checkout's ``src`` and editable
install, and Airflow there must find our provider and its ``airflow aws-batch`` commands. The
virtualenv gets the locked versions of the dependencies (``uv sync --frozen``), then the wheel is
installed offline: that needs nothing from an index, so it is as fast and as repeatable as the
cache, and it fails if the wheel asks for anything the lock does not provide.
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PACKAGES = ("airflow_aws_batch", "localbatch")
DISTRIBUTION = "aws-batch-airflow"
#: The Makefile installs the pinned uv here before any target runs tests.
UV = REPO / ".tools" / "bin" / "uv"
#: Generous: an Airflow command takes 10 to 30 s on a busy 2-core machine.
COMMAND_TIMEOUT = 240


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path


def _uv() -> Path:
    # A missing uv is a broken checkout, not a reason to skip: a skip would let `make test` pass
    # without ever checking that the package installs.
    if not UV.is_file():
        pytest.fail(f"{UV} is missing; `make venv` (which `make test` runs first) installs it", pytrace=False)
    return UV


def _env(**extra: str) -> dict[str, str]:
    """This environment without what would point a child at this checkout's venv or Airflow config."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT", "AIRFLOW_HOME"}
    # Also let Python write bytecode into the temporary venv even where PYTHONDONTWRITEBYTECODE is
    # set: Airflow's CLI then compiles its ~1300 modules once, not once per command (10 s of CPU
    # each time on a 2-core machine, 4 s with the bytecode).
    drop.add("PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("AIRFLOW__")}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(extra)
    return env


def _run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args,
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _source_files(package: str) -> set[str]:
    # Every module and marker file the package has in src, whatever its layout at the time.
    return {
        path.relative_to(SRC).as_posix()
        for path in (SRC / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    # What `make dist` runs. uv builds the sdist, then the wheel from the unpacked sdist, so the
    # wheel tested below also proves the sdist builds. Offline: `make venv` has already fetched the
    # build backend into uv's cache, as it builds the project's editable install with it.
    result = subprocess.run(
        [str(_uv()), "build", "--offline", "--python", sys.executable, "--out-dir", str(out), str(REPO)],
        cwd=out,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"uv build failed (it runs offline from uv's cache, which `make venv` fills):\n{result.stderr}"
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Built(sdist=sdist, wheel=wheel)


def _wheel_metadata(wheel: Path) -> tuple[set[str], str, str]:
    """Files, METADATA and entry_points.txt of a wheel."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (dist_info,) = {name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info")}
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    return names, metadata, entry_points


def test_wheel_holds_both_packages_their_py_typed_and_the_entry_points(built: Built) -> None:
    names, metadata, entry_points = _wheel_metadata(built.wheel)
    for package in PACKAGES:
        assert f"{package}/py.typed" in names
        missing = _source_files(package) - names
        assert not missing, f"in src but not in the wheel: {sorted(missing)}"
    # Nothing else at the top level: no tests, devstack or demo shipped as importable packages.
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == set(
        PACKAGES
    )
    assert email.parser.Parser().parsestr(metadata)["Name"] == DISTRIBUTION
    # The entry point Airflow's ProvidersManager discovers providers by, and the localbatch command.
    assert "[apache_airflow_provider]\nprovider_info = airflow_aws_batch.provider:get_provider_info" in (
        entry_points
    )
    assert "[console_scripts]\nlocalbatch = localbatch.cli:main" in entry_points


def test_sdist_holds_what_the_wheel_is_built_from(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= names
    for package in PACKAGES:
        missing = {f"src/{name}" for name in _source_files(package)} - names
        assert not missing, f"in src but not in the sdist: {sorted(missing)}"


@pytest.fixture(scope="module")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("venv")
    venv = root / "venv"
    uv = str(_uv())
    # A new virtualenv with the lock's runtime dependencies and not the project itself (hard links
    # into uv's cache, which `make venv` filled with every locked package).
    _run(
        [uv, "sync", "--frozen", "--offline", "--no-dev", "--no-install-project", "--python", sys.executable],
        cwd=REPO,
        env=_env(UV_PROJECT_ENVIRONMENT=str(venv)),
    )
    _run(
        [uv, "pip", "install", "--offline", "--python", str(venv / "bin" / "python"), str(built.wheel)],
        cwd=root,
    )
    yield venv
    # A few hundred MB if uv had to copy rather than link; the built files above stay for inspection.
    shutil.rmtree(venv, ignore_errors=True)


def test_the_packages_import_from_the_wheel_not_from_this_checkout(venv: Path) -> None:
    code = f"import importlib.util as u; print(*(u.find_spec(p).origin for p in {PACKAGES!r}), sep='\\n')"
    origins = _run([str(venv / "bin" / "python"), "-c", code], cwd=venv)
    for origin in origins.split():
        assert Path(origin).is_relative_to(venv / "lib"), origin


def test_airflow_providers_list_shows_the_installed_distribution(
    venv: Path, built: Built, tmp_path: Path
) -> None:
    out = _run(
        [str(venv / "bin" / "airflow"), "providers", "list", "--output", "json"],
        cwd=tmp_path,
        env=_env(AIRFLOW_HOME=str(tmp_path)),
    )
    providers = {entry["package_name"]: entry for entry in json.loads(out)}
    _, metadata, _ = _wheel_metadata(built.wheel)
    assert providers[DISTRIBUTION]["version"] == email.parser.Parser().parsestr(metadata)["Version"]


def test_airflow_aws_batch_help(venv: Path, tmp_path: Path) -> None:
    out = _run(
        [str(venv / "bin" / "airflow"), "aws-batch", "--help"],
        cwd=tmp_path,
        env=_env(AIRFLOW_HOME=str(tmp_path)),
    )
    # argparse's help: the usage line and the documented `check` among the subcommands.
    assert "airflow aws-batch" in out
    assert re.search(r"^\s+check\s", out, re.MULTILINE), out


def test_localbatch_console_script(venv: Path, tmp_path: Path) -> None:
    out = _run([str(venv / "bin" / "localbatch"), "--help"], cwd=tmp_path)
    assert re.search(r"^\s+serve\s", out, re.MULTILINE), out
