"""Multi-team: each team's executor reads its own [aws_batch_executor] through Airflow's team lookup.

Airflow resolves a team's option from ``AIRFLOW__<TEAM>___AWS_BATCH_EXECUTOR__<OPTION>`` or the
``[<team>=aws_batch_executor]`` section of airflow.cfg, without falling back to the global section.
These tests go through Airflow's real ``conf`` and ``ExecutorConf`` and the executor class itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.configuration import conf
from airflow.executors.base_executor import ExecutorConf

from airflow_aws_batch import AwsBatchExecutor, compat
from airflow_aws_batch.config import ConfigError, load_config, resolve_region, team_env_var
from airflow_aws_batch.health import CheckItem, format_failures
from airflow_aws_batch.options import SECTION, env_var

pytestmark = pytest.mark.skipif(not compat.MULTI_TEAM, reason="Airflow 3.1 has no multi-team executors")

REQUIRED = {"job_definition": "jd", "job_name": "airflow", "region_name": "us-east-1"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``env(team, **options)`` sets a team's options (team None: the global section's)."""
    for name in os.environ:
        if f"{SECTION.upper()}__" in name and name.startswith("AIRFLOW__"):
            monkeypatch.delenv(name)

    def set_options(team: str | None, **options: str) -> None:
        for option, value in options.items():
            monkeypatch.setenv(team_env_var(option, team), value)

    yield set_options


def test_team_env_var_is_airflows_own_name_for_the_option() -> None:
    assert team_env_var("job_queue", None) == env_var("job_queue")
    assert team_env_var("job_queue", "team_a") == "AIRFLOW__TEAM_A___AWS_BATCH_EXECUTOR__JOB_QUEUE"


def test_two_teams_read_their_own_job_queues(env: Any) -> None:
    env(None, **REQUIRED, job_queue="global-q")
    env("team_a", **REQUIRED, job_queue="a-q", submit_rate="7")
    env("team_b", **REQUIRED, job_queue="b-q")
    a = load_config(ExecutorConf("team_a"), team="team_a")
    b = load_config(ExecutorConf("team_b"), team="team_b")
    everyone = load_config(ExecutorConf(None))
    assert (a.job_queue, a.team, a.submit_rate) == ("a-q", "team_a", 7.0)
    assert (b.job_queue, b.team, b.submit_rate) == ("b-q", "team_b", 50.0)
    assert (everyone.job_queue, everyone.team) == ("global-q", None)


def test_the_executor_reads_its_teams_section(env: Any) -> None:
    env(None, **REQUIRED, job_queue="global-q")
    env("team_a", **REQUIRED, job_queue="a-q")
    assert AwsBatchExecutor.supports_multi_team is True
    team_executor = AwsBatchExecutor(team_name="team_a")
    assert (team_executor.config.job_queue, team_executor.config.team) == ("a-q", "team_a")
    global_executor = AwsBatchExecutor()
    assert (global_executor.config.job_queue, global_executor.config.team) == ("global-q", None)


def test_a_team_does_not_inherit_the_global_section(env: Any) -> None:
    # Airflow's team lookup has no fallback to [aws_batch_executor]: a team sets its required options.
    env(None, **REQUIRED, job_queue="global-q")
    env("team_a", job_queue="a-q")
    with pytest.raises(ConfigError) as raised:
        load_config(ExecutorConf("team_a"), team="team_a")
    assert {p.option for p in raised.value.problems} == {"job_definition", "job_name"}


def test_a_bad_option_of_one_team_names_that_team_and_its_variable(env: Any) -> None:
    env("team_a", **REQUIRED, job_queue="a-q")
    env("team_b", **REQUIRED, job_queue="b-q", submit_rate="fast")
    assert load_config(ExecutorConf("team_a"), team="team_a").job_queue == "a-q"
    with pytest.raises(ConfigError) as raised:
        AwsBatchExecutor(team_name="team_b").start()
    assert str(raised.value) == (
        "[aws_batch_executor] submit_rate (team 'team_b'): expected a number > 0 (calls per second), "
        "found 'fast' (env AIRFLOW__TEAM_B___AWS_BATCH_EXECUTOR__SUBMIT_RATE)"
    )


def test_a_missing_option_of_a_team_names_the_team(env: Any) -> None:
    env("team_a", **REQUIRED)
    with pytest.raises(ConfigError) as raised:
        load_config(ExecutorConf("team_a"), team="team_a")
    assert str(raised.value).startswith(
        "[aws_batch_executor] job_queue (team 'team_a') is required but not set: expected a value, or "
        "jobQueue in submit_job_kwargs (env AIRFLOW__TEAM_A___AWS_BATCH_EXECUTOR__JOB_QUEUE)"
    )


def test_a_teams_airflow_cfg_section_is_read(env: Any, tmp_path: Any) -> None:
    # The [<team>=aws_batch_executor] section of airflow.cfg, read by Airflow's own parser.
    conf.read_string(
        "[team_c=aws_batch_executor]\n"
        "job_queue = c-q\njob_definition = jd-c\njob_name = c\nregion_name = eu-west-1\n"
    )
    try:
        config = AwsBatchExecutor(team_name="team_c").config
    finally:
        conf.remove_section("team_c=aws_batch_executor")
    assert (config.job_queue, config.job_definition, config.region_name, config.team) == (
        "c-q",
        "jd-c",
        "eu-west-1",
        "team_c",
    )


def test_region_and_health_errors_name_the_team(env: Any) -> None:
    env("team_a", job_queue="a-q", job_definition="jd", job_name="airflow")
    config = load_config(ExecutorConf("team_a"), team="team_a")
    with pytest.raises(ConfigError, match=r"region_name \(team 'team_a'\) is required"):
        resolve_region(config, None)
    message = format_failures(config, [CheckItem("job_queue", False, "job queue 'a-q' does not exist")])
    assert message.startswith("AwsBatchExecutor (team 'team_a') startup check failed"), message
    global_message = format_failures(config.model_copy(update={"team": None}), [])
    assert "team" not in global_message


@pytest.mark.parametrize(
    ("team", "user_tags", "expected"),
    [
        pytest.param("team_a", "{}", {"airflow_team": "team_a"}, id="team-tag"),
        pytest.param(None, "{}", {}, id="global-executor-no-team-tag"),
        pytest.param(
            "team_a",
            '{"tags": {"team": "data", "airflow_team": "spoofed"}}',
            {"team": "data", "airflow_team": "team_a"},
            id="ours-wins-users-team-tag-kept",
        ),
    ],
)
def test_jobs_carry_the_team_tag(
    env: Any, team: str | None, user_tags: str, expected: dict[str, str]
) -> None:
    from airflow_aws_batch.submit import build_submit_job_request

    env(team, **REQUIRED, job_queue="q", submit_job_kwargs=user_tags)
    config = load_config(ExecutorConf(team), team=team)
    request = build_submit_job_request(
        config,
        command=["true"],
        dag_id="d",
        task_id="t",
        run_id="r",
        try_number=1,
        map_index=-1,
        queue=None,
        executor_config=None,
    )
    team_tags = {k: v for k, v in request["tags"].items() if "team" in k}
    assert team_tags == expected
