"""docker/Dockerfile and the documentation in this repository name the same build arguments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
SETUP_GUIDE = ROOT / "docs" / "setup-guide.md"
MIGRATION = ROOT / "docs" / "migration.md"

# What the image promises: the build arguments of the Amazon provider's example Dockerfile, so that
# its build commands work unchanged (docs/migration.md says so), plus the base image's two versions.
REQUIRED = {
    "airflow_version",
    "python_version",
    "requirements_path",
    "host_dag_path",
    "container_dag_path",
    "s3_uri",
    "aws_default_region",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
}
CREDENTIALS = {"aws_access_key_id", "aws_secret_access_key", "aws_default_region", "aws_session_token"}


def dockerfile_defaults() -> dict[str, str]:
    """Each ``ARG`` with its default ("" when declared empty); a re-declaration after FROM adds none."""
    defaults: dict[str, str] = {}
    for name, has_default, value in re.findall(
        r"^ARG\s+([a-z0-9_]+)(=?)(\S*)", DOCKERFILE.read_text(), flags=re.MULTILINE
    ):
        if has_default or name not in defaults:
            defaults[name] = value if has_default else defaults.get(name, "")
    return defaults


def dockerfile_args() -> set[str]:
    return set(dockerfile_defaults())


def documented_table() -> dict[str, str]:
    """Name -> default of the rows of the setup guide's "Build arguments" table ("empty" is "")."""
    text = SETUP_GUIDE.read_text()
    assert "### Build arguments" in text, "the setup guide lost its Build arguments table"
    section = text.split("### Build arguments", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    return {name: "" if default.strip() == "empty" else default.strip().strip("`") for name, default in rows}


def build_arg_flags(text: str) -> set[str]:
    return set(re.findall(r"--build-arg\s+([a-z0-9_]+)=", text))


def named_in_prose(text: str) -> set[str]:
    """snake_case names in the sentences that speak of build arguments."""
    names: set[str] = set()
    for sentence in re.split(r"(?<=[.:])\s+|\n\n", text):
        if re.search(r"build[- ](time )?arg", sentence, flags=re.IGNORECASE):
            # Values such as ./dags_on_host follow "/" or "=": only bare snake_case words are names.
            names |= set(re.findall(r"(?<![/=.\w])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b", sentence))
    return names


def test_dockerfile_declares_exactly_the_required_arguments() -> None:
    assert dockerfile_args() == REQUIRED


def test_setup_guide_table_lists_exactly_the_dockerfile_arguments() -> None:
    assert set(documented_table()) == dockerfile_args()


def test_setup_guide_table_gives_the_dockerfile_defaults() -> None:
    assert documented_table() == dockerfile_defaults()


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(SETUP_GUIDE, id="setup-guide"),
        pytest.param(MIGRATION, id="migration"),
        pytest.param(DOCKERFILE, id="dockerfile-comment"),
    ],
)
def test_every_build_arg_in_a_command_is_declared(doc: Path) -> None:
    assert build_arg_flags(doc.read_text()) <= dockerfile_args()


@pytest.mark.parametrize(
    "doc",
    [pytest.param(SETUP_GUIDE, id="setup-guide"), pytest.param(MIGRATION, id="migration")],
)
def test_every_name_the_docs_call_a_build_argument_is_declared(doc: Path) -> None:
    named = named_in_prose(doc.read_text())
    assert named, f"{doc.name} no longer speaks of build arguments; drop it from this test"
    assert named <= dockerfile_args(), named - dockerfile_args()


def test_setup_guide_shows_the_default_build_and_the_credentials_build() -> None:
    commands = [build_arg_flags(block) for block in SETUP_GUIDE.read_text().split("```")[1::2]]
    assert {"aws_default_region"} <= set().union(*commands)
    assert CREDENTIALS in [command & CREDENTIALS for command in commands]
