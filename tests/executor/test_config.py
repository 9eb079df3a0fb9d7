"""[aws_batch_executor] read through Airflow's real config: env vars, airflow.cfg, precedence, errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from airflow.configuration import AirflowConfigParser, conf
from airflow.executors.base_executor import ExecutorConf

from airflow_aws_batch.config import ConfigError, ExecutorConfig, load_config, resolve_region
from airflow_aws_batch.options import OPTION_NAMES, OPTIONS, SECTION, env_var

REQUIRED = {"job_queue": "q", "job_definition": "jd", "job_name": "airflow", "region_name": "us-east-1"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set options through AIRFLOW__AWS_BATCH_EXECUTOR__* env vars, starting from a clean slate."""
    for name in os.environ:
        if name.startswith(f"AIRFLOW__{SECTION.upper()}__"):
            monkeypatch.delenv(name)

    def set_options(**options: str) -> None:
        for option, value in options.items():
            monkeypatch.setenv(env_var(option), value)

    return set_options


@pytest.mark.parametrize(
    ("option", "raw", "attribute", "expected"),
    [
        pytest.param("job_queue", "jq-1", "job_queue", "jq-1", id="job_queue"),
        pytest.param(
            "job_definition",
            "arn:aws:batch:x:1:job-definition/jd:3",
            "job_definition",
            "arn:aws:batch:x:1:job-definition/jd:3",
            id="job_definition",
        ),
        pytest.param("job_name", "my_jobs-1", "job_name", "my_jobs-1", id="job_name"),
        pytest.param("region_name", "eu-west-1", "region_name", "eu-west-1", id="region_name"),
        pytest.param("conn_id", "batch_conn", "conn_id", "batch_conn", id="conn_id"),
        pytest.param("aws_conn_id", "seed_name", "conn_id", "seed_name", id="aws_conn_id-alias"),
        pytest.param(
            "submit_job_kwargs",
            '{"timeout": {"attemptDurationSeconds": 600}}',
            "submit_job_kwargs",
            {"timeout": {"attemptDurationSeconds": 600}},
            id="submit_job_kwargs",
        ),
        pytest.param(
            "max_submit_job_attempts", "7", "max_submit_job_attempts", 7, id="max_submit_job_attempts"
        ),
        pytest.param(
            "check_health_on_startup",
            "False",
            "check_health_on_startup",
            False,
            id="check_health_on_startup-False",
        ),
        pytest.param(
            "check_health_on_startup", "t", "check_health_on_startup", True, id="check_health_on_startup-t"
        ),
        pytest.param("queue_map", '{"gpu": "gpu-q"}', "queue_map", {"gpu": "gpu-q"}, id="queue_map"),
        pytest.param("submit_rate", "12.5", "submit_rate", 12.5, id="submit_rate"),
        pytest.param(
            "status_calls_per_second", "2", "status_calls_per_second", 2.0, id="status_calls_per_second"
        ),
        pytest.param("retry_mode", "Standard", "retry_mode", "standard", id="retry_mode"),
    ],
)
def test_every_option_is_read_from_env(
    env: Any, option: str, raw: str, attribute: str, expected: Any
) -> None:
    env(**{**REQUIRED, option: raw})
    assert getattr(load_config(conf), attribute) == expected


def test_defaults_when_only_required_options_are_set(env: Any) -> None:
    env(**REQUIRED)
    config = load_config(conf)
    assert config == ExecutorConfig(
        job_queue="q",
        job_definition="jd",
        job_name="airflow",
        region_name="us-east-1",
        conn_id="aws_default",
        submit_job_kwargs={},
        max_submit_job_attempts=3,
        check_health_on_startup=True,
        queue_map={},
        submit_rate=50.0,
        status_calls_per_second=5.0,
        retry_mode="adaptive",
    )
    assert config.base_request() == {"jobName": "airflow", "jobQueue": "q", "jobDefinition": "jd"}


def test_executor_conf_source_reads_the_same_values(env: Any) -> None:
    env(**REQUIRED, submit_rate="9")
    assert load_config(ExecutorConf()) == load_config(conf)


def test_default_source_is_airflow_conf(env: Any) -> None:
    env(**{**REQUIRED, "job_queue": "implicit"})
    assert load_config().job_queue == "implicit"


def test_airflow_cfg_is_read_and_env_wins_over_it(env: Any, tmp_path: Any) -> None:
    parser = AirflowConfigParser()
    parser.read_string(
        f"[{SECTION}]\njob_queue = cfg-q\njob_definition = cfg-jd\njob_name = cfg\nregion_name = us-east-2\n"
    )
    from_cfg = load_config(parser)
    assert (from_cfg.job_queue, from_cfg.job_definition, from_cfg.region_name) == (
        "cfg-q",
        "cfg-jd",
        "us-east-2",
    )

    env(job_queue="env-q")
    assert load_config(parser).job_queue == "env-q"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({}, ("q", "jd", "airflow"), id="plain-options"),
        pytest.param(
            {"submit_job_kwargs": '{"jobQueue": "kw-q"}'}, ("kw-q", "jd", "airflow"), id="kwargs-queue-wins"
        ),
        pytest.param(
            {"submit_job_kwargs": '{"jobDefinition": "kw-jd", "jobName": "kw"}'},
            ("q", "kw-jd", "kw"),
            id="kwargs-definition-and-name-win",
        ),
    ],
)
def test_submit_job_kwargs_win_over_plain_options(
    env: Any, options: dict[str, str], expected: tuple[str, ...]
) -> None:
    env(**REQUIRED, **options)
    config = load_config(conf)
    assert (config.job_queue, config.job_definition, config.job_name) == expected
    request = config.base_request()
    assert (request["jobQueue"], request["jobDefinition"], request["jobName"]) == expected


def test_submit_job_kwargs_can_replace_required_options(env: Any) -> None:
    env(
        region_name="us-east-1",
        submit_job_kwargs='{"jobQueue": "kq", "jobDefinition": "kd", "jobName": "kn", "tags": {"team": "a"}}',
    )
    config = load_config(conf)
    assert config.base_request() == {
        "jobQueue": "kq",
        "jobDefinition": "kd",
        "jobName": "kn",
        "tags": {"team": "a"},
    }


@pytest.mark.parametrize(
    ("conn_id", "aws_conn_id", "expected"),
    [
        pytest.param(None, None, "aws_default", id="default"),
        pytest.param("mine", None, "mine", id="conn_id"),
        pytest.param(None, "seed", "seed", id="alias-only"),
        pytest.param("mine", "seed", "mine", id="conn_id-wins-over-alias"),
    ],
)
def test_conn_id_alias(env: Any, conn_id: str | None, aws_conn_id: str | None, expected: str) -> None:
    env(**REQUIRED)
    if conn_id:
        env(conn_id=conn_id)
    if aws_conn_id:
        env(aws_conn_id=aws_conn_id)
    assert load_config(conf).conn_id == expected


def test_base_request_is_a_fresh_copy(env: Any) -> None:
    env(
        **REQUIRED, submit_job_kwargs='{"containerOverrides": {"environment": [{"name": "A", "value": "1"}]}}'
    )
    config = load_config(conf)
    config.base_request()["containerOverrides"]["environment"].clear()
    assert config.base_request()["containerOverrides"]["environment"] == [{"name": "A", "value": "1"}]


def test_config_is_immutable(env: Any) -> None:
    env(**REQUIRED)
    config = load_config(conf)
    with pytest.raises(ValueError, match="frozen"):
        config.job_queue = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "option", "expected", "found"),
    [
        pytest.param({"job_queue": ""}, "job_queue", "is required but not set", None, id="job_queue-missing"),
        pytest.param(
            {"job_definition": ""},
            "job_definition",
            "is required but not set",
            None,
            id="job_definition-missing",
        ),
        pytest.param({"job_name": ""}, "job_name", "is required but not set", None, id="job_name-missing"),
        pytest.param(
            {"job_name": "-bad name"},
            "job_name",
            "starting with a letter or digit",
            "'-bad name'",
            id="job_name-pattern",
        ),
        pytest.param({"job_name": "a" * 129}, "job_name", "up to 128", "'aaaa", id="job_name-too-long"),
        pytest.param(
            {"max_submit_job_attempts": "three"},
            "max_submit_job_attempts",
            "an integer >= 1",
            "'three'",
            id="attempts-not-int",
        ),
        pytest.param(
            {"max_submit_job_attempts": "0"},
            "max_submit_job_attempts",
            "an integer >= 1",
            "'0'",
            id="attempts-zero",
        ),
        pytest.param(
            {"check_health_on_startup": "maybe"},
            "check_health_on_startup",
            "true or false",
            "'maybe'",
            id="health-not-bool",
        ),
        pytest.param(
            {"submit_rate": "fast"}, "submit_rate", "a number > 0", "'fast'", id="submit_rate-not-number"
        ),
        pytest.param({"submit_rate": "0"}, "submit_rate", "a number > 0", "'0'", id="submit_rate-zero"),
        pytest.param(
            {"status_calls_per_second": "-1"},
            "status_calls_per_second",
            "a number > 0",
            "'-1'",
            id="status-rate-negative",
        ),
        pytest.param(
            {"retry_mode": "legacy"}, "retry_mode", "standard or adaptive", "'legacy'", id="retry_mode"
        ),
        pytest.param(
            {"queue_map": "{gpu: q}"}, "queue_map", "a JSON object", "invalid JSON", id="queue_map-json"
        ),
        pytest.param(
            {"queue_map": '["gpu"]'}, "queue_map", "a JSON object", "['gpu'] (list)", id="queue_map-list"
        ),
        pytest.param(
            {"queue_map": '{"gpu": 3}'},
            "queue_map",
            "Batch job queue name",
            '{"gpu": 3}',
            id="queue_map-value",
        ),
        pytest.param(
            {"submit_job_kwargs": "{'a': 1}"},
            "submit_job_kwargs",
            "a JSON object",
            "invalid JSON",
            id="kwargs-not-json",
        ),
        pytest.param(
            {"submit_job_kwargs": "[1]"},
            "submit_job_kwargs",
            "a JSON object",
            "[1] (list)",
            id="kwargs-not-object",
        ),
        pytest.param(
            {"submit_job_kwargs": '{"Tags": [{"Key": "k", "Value": "v"}]}'},
            "submit_job_kwargs",
            "did you mean 'tags'",
            "an unknown key",
            id="kwargs-unknown-key",
        ),
        pytest.param(
            {"submit_job_kwargs": '{"containerOverrides": {"vcpus": "2"}}'},
            "submit_job_kwargs",
            "an integer",
            "'2' (str)",
            id="kwargs-wrong-type",
        ),
        pytest.param(
            {
                "submit_job_kwargs": '{"containerOverrides": {"resourceRequirements": '
                '[{"type": "RAM", "value": "1"}]}}'
            },
            "submit_job_kwargs",
            "one of: GPU, VCPU, MEMORY",
            "'RAM' (str)",
            id="kwargs-enum",
        ),
        pytest.param(
            {
                "submit_job_kwargs": '{"retryStrategy": '
                '{"attempts": 1, "evaluateOnExit": [{"action": "EXIT"}]}, '
                '"timeout": {"attemptDurationSeconds": "60"}}'
            },
            "submit_job_kwargs",
            "an integer",
            "'60' (str)",
            id="kwargs-deep-type",
        ),
        pytest.param(
            {"submit_job_kwargs": '{"tags": {}}'},
            "submit_job_kwargs",
            "at least 1 entries",
            "0 entries",
            id="kwargs-min-size",
        ),
        pytest.param(
            {"submit_job_kwargs": '{"containerOverrides": {"command": ["echo"]}}'},
            "submit_job_kwargs",
            "the executor sets the command",
            "['echo'] (list)",
            id="kwargs-command",
        ),
        pytest.param(
            {"submit_job_kwargs": '{"nodeOverrides": {"numNodes": 2}}'},
            "submit_job_kwargs",
            "only container and EKS job definitions",
            "a value",
            id="kwargs-node-overrides",
        ),
        pytest.param(
            {"submit_job_kwargs": '{"jobQueue": ""}', "job_queue": ""},
            "job_queue",
            "is required but not set",
            None,
            id="kwargs-empty-queue-does-not-count",
        ),
    ],
)
def test_errors_name_section_option_expected_found(
    env: Any, options: dict[str, str], option: str, expected: str, found: str | None
) -> None:
    env(**{**REQUIRED, **options})
    with pytest.raises(ConfigError) as raised:
        load_config(conf)
    message = str(raised.value)
    line = next(line for line in message.splitlines() if f"] {option}" in line)
    assert line.startswith(f"[{SECTION}] {option}")
    assert expected in line
    assert env_var(option) in line
    if found is not None:
        assert f"found {found}" in line


def test_a_full_valid_submit_job_kwargs_is_accepted(env: Any) -> None:
    kwargs = (
        '{"containerOverrides": {"environment": [{"value": "1"}], "resourceRequirements": '
        '[{"type": "MEMORY", "value": "2048"}]}, "retryStrategy": {"attempts": 1, "evaluateOnExit": '
        '[{"onStatusReason": "Host EC2*", "action": "EXIT"}]}, "timeout": {"attemptDurationSeconds": 600}, '
        '"tags": {"team": "data"}, "schedulingPriorityOverride": 5, "parameters": {"p": "v"}}'
    )
    env(**REQUIRED, submit_job_kwargs=kwargs)
    assert load_config(conf).submit_job_kwargs["timeout"]["attemptDurationSeconds"] == 600


@pytest.mark.parametrize(
    ("kwargs", "path", "expected"),
    [
        pytest.param(
            '{"arrayProperties": {"size": 10}}', "arrayProperties", "exactly one Batch job", id="array"
        ),
        pytest.param(
            '{"dependsOn": [{"jobId": "j"}]}', "dependsOn", "exactly one Batch job", id="depends-on"
        ),
        pytest.param(
            '{"retryStrategy": {"attempts": 3}}', "retryStrategy.attempts", "1 or unset", id="batch-retries"
        ),
        pytest.param(
            '{"nodeOverrides": {"numNodes": 2}}', "nodeOverrides", "container and EKS job", id="multi-node"
        ),
    ],
)
def test_a_try_is_exactly_one_job_run_once(env: Any, kwargs: str, path: str, expected: str) -> None:
    env(**REQUIRED, submit_job_kwargs=kwargs)
    with pytest.raises(ConfigError) as raised:
        load_config(conf)
    assert f"submit_job_kwargs, key {path}: expected" in str(raised.value)
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        pytest.param(None, True, id="unset-derived-later"),
        pytest.param("analytics-prod", True, id="name"),
        pytest.param("has space", False, id="space"),
        pytest.param("x" * 129, False, id="too-long"),
    ],
)
def test_deployment_id(env: Any, value: str | None, ok: bool) -> None:
    env(**REQUIRED, **({"deployment_id": value} if value is not None else {}))
    if ok:
        assert load_config(conf).deployment_id == value
        return
    with pytest.raises(ConfigError, match=r"deployment_id: expected up to 128 letters"):
        load_config(conf)


def test_derived_deployment_id_is_stable_and_ignores_the_password() -> None:
    from airflow_aws_batch.config import derive_deployment_id

    one = derive_deployment_id("postgresql+psycopg2://airflow:secret@db:5432/airflow")
    assert one == derive_deployment_id("postgresql+psycopg2://airflow:other@db:5432/airflow")
    assert one != derive_deployment_id("postgresql+psycopg2://airflow:secret@db:5432/airflow2")
    assert one.startswith("db-")


@pytest.mark.parametrize(
    "placeholder",
    [pytest.param("[]", id="empty-list"), pytest.param("null", id="null")],
)
def test_amazon_provider_command_placeholder_is_accepted(env: Any, placeholder: str) -> None:
    # The Amazon provider's executor demands an empty/null command placeholder in submit_job_kwargs;
    # the same setting must work here unchanged, and the placeholder must not reach the request.
    kwargs = '{"containerOverrides": {"command": ' + placeholder + ', "vcpus": 2}}'
    env(**REQUIRED, submit_job_kwargs=kwargs)
    assert load_config(conf).base_request()["containerOverrides"] == {"vcpus": 2}


def test_error_message_for_missing_queue_matches_the_documented_form(env: Any) -> None:
    env(**{**REQUIRED, "job_queue": ""})
    with pytest.raises(ConfigError) as raised:
        load_config(conf)
    assert str(raised.value).startswith(
        "[aws_batch_executor] job_queue is required but not set: expected a value, or jobQueue in "
        "submit_job_kwargs (env AIRFLOW__AWS_BATCH_EXECUTOR__JOB_QUEUE)"
    )


def test_every_problem_is_reported_at_once(env: Any) -> None:
    env(job_definition="jd", submit_rate="x", retry_mode="y")
    with pytest.raises(ConfigError) as raised:
        load_config(conf)
    assert {problem.option for problem in raised.value.problems} == {
        "job_queue",
        "job_name",
        "submit_rate",
        "retry_mode",
    }
    assert len(str(raised.value).splitlines()) == 4


def test_key_path_is_named_for_json_options(env: Any) -> None:
    env(**REQUIRED, submit_job_kwargs='{"containerOverrides": {"environment": [{"name": 5}]}}')
    with pytest.raises(ConfigError) as raised:
        load_config(conf)
    assert (
        "submit_job_kwargs, key containerOverrides.environment[0].name: expected a string, found 5 (int)"
        in str(raised.value)
    )


@pytest.mark.parametrize(
    ("option_region", "connection_region", "expected"),
    [
        pytest.param("eu-west-1", "us-east-1", "eu-west-1", id="option-wins"),
        pytest.param(None, "us-east-1", "us-east-1", id="from-connection"),
        pytest.param(None, None, None, id="neither"),
    ],
)
def test_region_from_option_or_connection(
    env: Any, option_region: str | None, connection_region: str | None, expected: str | None
) -> None:
    env(**{k: v for k, v in REQUIRED.items() if k != "region_name"})
    if option_region:
        env(region_name=option_region)
    config = load_config(conf)
    if expected is None:
        with pytest.raises(ConfigError, match=r"\[aws_batch_executor\] region_name is required but not set"):
            resolve_region(config, connection_region)
    else:
        assert resolve_region(config, connection_region) == expected


def test_option_table_covers_every_model_field() -> None:
    # ``team`` is the executor's team_name, not an option.
    assert set(ExecutorConfig.model_fields) - {"team"} <= set(OPTION_NAMES)
    assert {spec.name for spec in OPTIONS} - set(ExecutorConfig.model_fields) == {"aws_conn_id"}


@pytest.mark.parametrize(
    "spec", [pytest.param(spec, id=spec.name) for spec in OPTIONS if spec.name != "aws_conn_id"]
)
def test_configuration_page_documents_every_option_and_default(spec: Any) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    row = next((line for line in page.splitlines() if line.startswith(f"| [`{spec.name}`]")), None)
    assert row is not None, f"docs/configuration.md has no row for {spec.name}"
    if spec.default is not None:
        assert f"`{spec.default}`" in row
