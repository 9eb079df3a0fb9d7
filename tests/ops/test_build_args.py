"""docker/Dockerfile, the docs and the seed documentation name the same build arguments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
SETUP_GUIDE = ROOT / "docs" / "setup-guide.md"
SEED = Path("/work/shared/seed/aws-batch-executor-docs.txt")

# The brief's list (issue 5, part 1): the image must take exactly these.
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


def dockerfile_args() -> set[str]:
    return set(re.findall(r"^ARG\s+([a-z0-9_]+)", DOCKERFILE.read_text(), flags=re.MULTILINE))


def documented_table() -> set[str]:
    """Rows of the "Build arguments" table of the setup guide."""
    text = SETUP_GUIDE.read_text()
    section = text.split("### Build arguments", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.MULTILINE))


def build_arg_flags(text: str) -> set[str]:
    return set(re.findall(r"--build-arg\s+([a-z0-9_]+)=", text))


def seed_build_args(text: str) -> set[str]:
    """Names the seed passes with --build-arg or calls a build(-time) argument in a sentence."""
    names = build_arg_flags(text)
    for sentence in re.split(r"(?<=[.:])\s+|\n\n", text):
        if re.search(r"build[- ](time )?arg", sentence, flags=re.IGNORECASE):
            # Values such as ./dags_on_host follow "/" or "=": only bare snake_case words are names.
            names |= set(re.findall(r"(?<![/=.\w])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b", sentence))
    return names


def test_dockerfile_declares_exactly_the_required_arguments() -> None:
    assert dockerfile_args() == REQUIRED


def test_setup_guide_table_lists_exactly_the_dockerfile_arguments() -> None:
    assert documented_table() == dockerfile_args()


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(SETUP_GUIDE, id="setup-guide"),
        pytest.param(ROOT / "docs" / "migration.md", id="migration"),
        pytest.param(DOCKERFILE, id="dockerfile-comment"),
    ],
)
def test_every_build_arg_in_a_command_is_declared(doc: Path) -> None:
    assert build_arg_flags(doc.read_text()) <= dockerfile_args()


@pytest.mark.skipif(not SEED.exists(), reason="seed documentation not on this machine")
def test_dockerfile_declares_every_argument_the_seed_names() -> None:
    seed = seed_build_args(SEED.read_text())
    assert {"s3_uri", "host_dag_path", "container_dag_path", "requirements_path"} <= seed  # parser sanity
    assert seed <= dockerfile_args(), seed - dockerfile_args()


def test_seed_build_commands_appear_in_the_setup_guide() -> None:
    # The guide's build commands use the seed's argument sets: the default build and the
    # discouraged credentials build.
    guide_commands = [set(build_arg_flags(block)) for block in SETUP_GUIDE.read_text().split("```")[1::2]]
    assert {"aws_default_region"} <= set().union(*guide_commands)
    assert {"aws_access_key_id", "aws_secret_access_key", "aws_default_region", "aws_session_token"} in [
        c & {"aws_access_key_id", "aws_secret_access_key", "aws_default_region", "aws_session_token"}
        for c in guide_commands
    ]
