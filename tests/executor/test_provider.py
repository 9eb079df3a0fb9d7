"""Provider registration: schema-valid metadata, our [aws_batch_executor] beats the amazon provider's."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema
import pytest
import yaml
from airflow.configuration import conf
from airflow.providers_manager import ProvidersManager

from airflow_aws_batch import compat
from airflow_aws_batch.config import read_options
from airflow_aws_batch.options import OPTIONS, SECTION
from airflow_aws_batch.provider import PACKAGE_NAME, config_description, get_cli_commands, get_provider_info

AIRFLOW_DIR = Path(airflow.__file__).parent
AIRFLOW_BIN = Path(sys.executable).with_name("airflow")


def _airflow(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    return subprocess.run(
        [str(AIRFLOW_BIN), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_provider_info_matches_airflow_runtime_schema() -> None:
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_the_section_is_contributed_only_where_airflow_merges_sections() -> None:
    # Airflow 3.1 refuses a second provider's description of [aws_batch_executor] (the Amazon
    # provider's) and then every airflow command fails; 3.2 and later merge it.
    assert ("config" in get_provider_info()) is compat.MERGES_PROVIDER_SECTIONS


def test_config_section_matches_airflow_config_schema() -> None:
    schema = json.loads((AIRFLOW_DIR / "config_templates" / "config.yml.schema.json").read_text())
    jsonschema.validate({SECTION: config_description()}, schema)
    # The same document must survive the YAML round trip Airflow's docs tooling uses.
    assert yaml.safe_load(yaml.safe_dump({SECTION: config_description()})) == {SECTION: config_description()}


def test_package_name_is_our_distribution_and_sorts_after_the_amazon_provider() -> None:
    ours = [
        dist.metadata["Name"]
        for dist in importlib.metadata.distributions()
        if any(
            ep.group == "apache_airflow_provider" and ep.value.startswith("airflow_aws_batch.")
            for ep in dist.entry_points
        )
    ]
    assert ours == [PACKAGE_NAME]
    # Airflow lets the last provider (sorted by package name) describe a shared section.
    assert sorted([PACKAGE_NAME, "apache-airflow-providers-amazon"])[-1] == PACKAGE_NAME


def test_our_description_and_defaults_win_in_airflow_conf() -> None:
    if not compat.MERGES_PROVIDER_SECTIONS:
        pytest.skip("Airflow 3.1 keeps the Amazon provider's section: see the next test")
    names = [name for name, _ in ProvidersManager().provider_configs]
    assert names.index(PACKAGE_NAME) > names.index("apache-airflow-providers-amazon")
    options = conf.configuration_description[SECTION]["options"]
    for spec in OPTIONS:
        assert options[spec.name]["description"] == spec.description
        assert conf.get_default_value(SECTION, spec.name) == spec.default


def test_every_option_reads_our_default_through_airflow_conf() -> None:
    """On every minor, an option nobody set reads as unset (then our default), or as the Amazon
    provider's default where the section is theirs, which is ours too for the options both have."""
    ProvidersManager().initialize_providers_configuration()
    defaults = {spec.name: spec.default for spec in OPTIONS}
    saved = {k: v for k, v in os.environ.items() if k.startswith(f"AIRFLOW__{SECTION.upper()}__")}
    try:
        for name in saved:
            del os.environ[name]
        raw = read_options(conf)
    finally:
        os.environ.update(saved)
    for name, value in raw.items():
        default = defaults[name]
        assert value is None or (default is not None and value.lower() == default.lower()), (name, value)


def test_cli_entry_resolves_to_a_callable_returning_a_list() -> None:
    (path,) = get_provider_info()["cli"]
    assert path == "airflow_aws_batch.provider.get_cli_commands"
    assert isinstance(get_cli_commands(), list)


def test_airflow_providers_list_shows_the_package(tmp_path: Path) -> None:
    result = _airflow("providers", "list", "--output", "json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    providers = {entry["package_name"]: entry for entry in json.loads(result.stdout)}
    assert providers[PACKAGE_NAME]["version"] == importlib.metadata.version(PACKAGE_NAME)
    assert "missing 'cli' section" not in result.stdout + result.stderr


def test_airflow_config_list_prints_every_option_with_our_default_and_description(tmp_path: Path) -> None:
    if not compat.MERGES_PROVIDER_SECTIONS:
        # 3.1 has no --show-values (it always shows them) and describes only the Amazon provider's
        # options; what matters is that Airflow starts with us installed and our options still read.
        result = _airflow("config", "list", "--section", SECTION, "--color", "off", tmp_path=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "conn_id = aws_default" in result.stdout, result.stdout
        return
    result = _airflow(
        "config",
        "list",
        "--section",
        SECTION,
        "--show-values",
        "--include-descriptions",
        "--color",
        "off",
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for spec in OPTIONS:
        line = f"{spec.name} = {spec.default}" if spec.default is not None else f"# {spec.name} = "
        assert re.search(rf"^{re.escape(line)}$", out, re.MULTILINE), f"{line!r} not in:\n{out}"
        assert f"# {spec.description}" in out, spec.name
