"""The ``[aws_batch_executor]`` section: typed model, loading and validation at start (table in ``options``).

Precedence, lowest to highest: our defaults < airflow.cfg / environment (Airflow's own precedence)
< ``submit_job_kwargs`` (its ``jobQueue``, ``jobDefinition`` and ``jobName`` beat the plain options).
Each task's ``executor_config`` is merged over the result later, in :mod:`airflow_aws_batch.submit`.

Multi-team: a team's executor reads the section through its ``ExecutorConf``, i.e. Airflow's team
lookup: ``AIRFLOW__<TEAM>___AWS_BATCH_EXECUTOR__<OPTION>`` or the ``[<team>=aws_batch_executor]``
section of airflow.cfg, then our defaults. Airflow does not fall back to the global section for a
team, so every required option is set per team. Every problem of a team's section names the team.

Not supported: team options from ``_cmd``/``_secret`` variants (Airflow reads neither for a team);
``submit_job_kwargs`` for multi-node or ECS-properties job definitions (the executor places its
command in ``containerOverrides``, or ``eksPropertiesOverride`` for EKS job definitions).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from airflow_aws_batch import jobdefs, shapes
from airflow_aws_batch.eks import override_problems as eks_override_problems
from airflow_aws_batch.fairshare import SHARE_FIELDS, fair_share_member_problems, template_problem
from airflow_aws_batch.options import OPTIONS, SECTION, OptionSpec, OptionType, env_var

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "ConfigSource",
    "ExecutorConfig",
    "load_config",
    "parse_options",
    "read_options",
    "resolve_region",
    "team_env_var",
]

# Batch job names: first character alphanumeric, then letters, digits, hyphens, underscores.
JOB_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")

# SubmitJob members of job definitions where the executor cannot place the task's command.
UNSUPPORTED_SUBMIT_JOB_KEYS = ("nodeOverrides", "ecsPropertiesOverride")
#: SubmitJob members that would make one task try more than one job, or one job run its container
#: more than once: the executor's accounting (adoption, resubmits before start, the orphan sweep)
#: rests on one try being one job run once.
ONE_JOB_PER_TRY_KEYS = ("arrayProperties", "dependsOn")
DEPLOYMENT_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:/=+@-]{1,128}")
#: A queue URL (any endpoint: localbatch and VPC endpoints serve other hosts) or a queue name.
STATUS_EVENTS_PATTERN = re.compile(
    r"https?://[^/\s]+/[^\s]*[A-Za-z0-9_-]{1,80}(\.fifo)?|[A-Za-z0-9_-]{1,80}(\.fifo)?"
)


def one_job_per_try_problems(request: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(path, expected, found)`` for each member of ``request`` that breaks "one try, one job, run once".

    A ``retryStrategy`` of several attempts would have Batch run the same workload in a second
    container: the execution API lets a second start of a running try through when it comes with the
    same hostname, unixname and pid (``ti_run``), which two fresh containers of one image can share;
    and an attempt that failed before the task started is already resubmitted by the executor, which
    counts it (max_submit_job_attempts) and says so in the task's event log.
    """
    problems: list[tuple[str, str, str]] = []
    for key in ONE_JOB_PER_TRY_KEYS:
        if key in request:
            problems.append(
                (
                    key,
                    "no such key (a task try is exactly one Batch job: no array or dependent jobs)",
                    "a value",
                )
            )
    retry = request.get("retryStrategy")
    if isinstance(retry, Mapping):
        attempts = retry.get("attempts")
        if attempts is not None and attempts != 1:
            problems.append(
                (
                    "retryStrategy.attempts",
                    "1 or unset (the executor resubmits jobs that failed before their task started; a "
                    "Batch retry would run the same try's container twice)",
                    repr(attempts),
                )
            )
    return problems


def derive_deployment_id(database_url: str) -> str:
    """A stable id for the deployment whose metadata database is ``database_url`` (password left out)."""
    try:
        from sqlalchemy.engine import make_url

        text = make_url(database_url).render_as_string(hide_password=True)
    except Exception:
        text = database_url
    return "db-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def team_env_var(option: str, team: str | None) -> str:
    """The environment variable of ``option`` for ``team`` (Airflow's team lookup), or the global one."""
    if team is None:
        return env_var(option)
    return f"AIRFLOW__{team.upper()}___{SECTION.upper()}__{option.upper()}"


@dataclass(frozen=True)
class ConfigProblem:
    """``found`` is None when the option is required but not set; ``team`` names a team's executor."""

    option: str
    expected: str
    found: str | None
    path: str = ""  # key path inside a JSON option, e.g. containerOverrides.vcpus
    team: str | None = None

    def __str__(self) -> str:
        where = f"(env {team_env_var(self.option, self.team)})"
        whose = f" (team {self.team!r})" if self.team is not None else ""
        if self.found is None:
            return (
                f"[{SECTION}] {self.option}{whose} is required but not set: expected {self.expected} {where}"
            )
        what = f"{self.option}, key {self.path}" if self.path else self.option
        return f"[{SECTION}] {what}{whose}: expected {self.expected}, found {self.found} {where}"


class ConfigError(ValueError):
    """The section is unusable. ``problems`` lists every finding; the message has one line each."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in problems))

    def for_team(self, team: str | None) -> ConfigError:
        """The same problems, each naming ``team`` (unchanged when ``team`` is None)."""
        if team is None:
            return self
        return ConfigError([dataclasses.replace(problem, team=team) for problem in self.problems])


class ConfigSource(Protocol):
    """What we need of Airflow's ``conf`` / an executor's ``ExecutorConf``."""

    def get(self, section: str, key: str, **kwargs: Any) -> Any: ...


_SPECS = {spec.name: spec for spec in OPTIONS}


class ExecutorConfig(BaseModel):
    """The validated section. ``job_queue``, ``job_definition`` and ``job_name`` already include
    ``submit_job_kwargs``' overrides; ``submit_job_kwargs`` keeps the remaining SubmitJob members.

    Treat ``submit_job_kwargs`` and ``queue_map`` as read-only; :meth:`base_request` hands out copies.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_queue: str
    job_definition: str
    job_name: str
    region_name: str | None = None
    conn_id: str = "aws_default"
    submit_job_kwargs: dict[str, Any] = {}
    max_submit_job_attempts: int = 3
    #: Seconds a MISCONFIGURATION:* RUNNABLE reason may persist before the task fails (0: never).
    misconfiguration_grace_seconds: int = 300
    check_health_on_startup: bool = True
    queue_map: dict[str, str] = {}
    submit_rate: float = 50.0
    status_calls_per_second: float = 5.0
    retry_mode: Literal["standard", "adaptive"] = "adaptive"
    #: None until the executor derives it from the metadata database (see ``derive_deployment_id``).
    deployment_id: str | None = None
    #: ``clamp`` or ``off``: see ``fairshare.priority_override``.
    scheduling_priority: Literal["clamp", "off"] = "clamp"
    #: Template of a job's shareIdentifier on fair-share queues; None: ``fairshare.DEFAULT_SHARE_TEMPLATE``.
    share_identifier: str | None = None
    #: Least tasks grouped into one array job (0: arrays off); arrays also need ``workload_store``.
    array_min_size: int = 10
    #: ``s3://bucket/prefix`` or ``file:///dir``: where workloads are written (see ``workloads``);
    #: None: in the job's command.
    workload_store: str | None = None
    #: The SQS queue (URL or name) of Batch's job state change events; None: polling only.
    status_events: str | None = None
    #: Ways jobDefinitionOverrides may reach the host (``jobdefs.HOST_ACCESS``); empty: none.
    allowed_job_definition_overrides: frozenset[str] = frozenset()
    #: The team whose executor this is (Airflow's multi-team mode), None for a global executor. Not an
    #: option: set from the executor's ``team_name``; it names the team in the ``airflow_team`` tag.
    team: str | None = None

    def base_request(self) -> dict[str, Any]:
        """SubmitJob kwargs before any per-task change (a fresh deep copy each call)."""
        request = copy.deepcopy(self.submit_job_kwargs)
        request.update(jobName=self.job_name, jobQueue=self.job_queue, jobDefinition=self.job_definition)
        return request

    def job_queue_for(self, airflow_queue: str | None) -> str:
        """The Batch queue of a task in Airflow queue ``airflow_queue``: queue_map, else job_queue."""
        if airflow_queue is not None and airflow_queue in self.queue_map:
            return self.queue_map[airflow_queue]
        return self.job_queue


def read_options(source: ConfigSource) -> dict[str, str | None]:
    """Every option of the section as text, stripped; None when not set (or blank)."""
    raw: dict[str, str | None] = {}
    for spec in OPTIONS:
        value = source.get(SECTION, spec.name, fallback=None)
        raw[spec.name] = (str(value).strip() or None) if value is not None else None
    return raw


def load_config(source: ConfigSource | None = None, *, team: str | None = None) -> ExecutorConfig:
    """Read and validate the section through Airflow's config; raise :class:`ConfigError` listing
    every problem. ``source`` defaults to ``airflow.configuration.conf``.

    ``team``: the team whose executor reads the section (``source`` is then that executor's
    ``ExecutorConf``, which resolves the team's values); every problem names it, and the result
    carries it in ``team``.
    """
    if source is None:
        from airflow.configuration import conf

        source = conf
    return parse_options(read_options(source), team=team)


class _Unreadable(ValueError):
    """A value its option's type cannot read; ``found`` says what was there instead."""

    def __init__(self, found: str) -> None:
        super().__init__(found)
        self.found = found


_TRUE = {"true", "t", "1", "yes", "y", "on"}
_FALSE = {"false", "f", "0", "no", "n", "off"}


def _read_integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _Unreadable(repr(text)) from None


def _read_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise _Unreadable(repr(text)) from None


def _read_boolean(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise _Unreadable(repr(text))


def _read_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise _Unreadable(f"invalid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(value, dict):
        raise _Unreadable(shapes.describe_found(value))
    return value


#: How each option type is read, and what its error messages say is expected.
_READERS: dict[OptionType, tuple[Callable[[str], Any], str]] = {
    "string": (str, "a string"),
    "integer": (_read_integer, "an integer"),
    "float": (_read_float, "a number"),
    "boolean": (_read_boolean, "true or false"),
    "json": (_read_json, "a JSON object"),
}


def _expected(spec: OptionSpec) -> str:
    if spec.expected is not None:
        return spec.expected
    if spec.choices:
        return " or ".join(spec.choices)
    return _READERS[spec.type][1]


def _read(spec: OptionSpec, text: str) -> Any:
    """``text`` as a value of ``spec``; :class:`_Unreadable` when its type, choices or rule refuse it."""
    value = _READERS[spec.type][0](text)
    if spec.choices:
        if value.lower() not in spec.choices:
            raise _Unreadable(repr(text))
        value = value.lower()
    if spec.valid is not None and not spec.valid(value):
        raise _Unreadable(repr(text))
    return value


def parse_options(raw: Mapping[str, str | None], *, team: str | None = None) -> ExecutorConfig:
    """Validate raw option strings (``None`` = not set); the pure half of :func:`load_config`.

    ``team``: named in every problem, and kept in the result's ``team``.
    """
    try:
        config = _parse_options(raw)
    except ConfigError as err:
        raise err.for_team(team) from None
    return config if team is None else config.model_copy(update={"team": team})


def _parse_options(raw: Mapping[str, str | None]) -> ExecutorConfig:
    problems: list[ConfigProblem] = []
    # Each option read by its type; an unset option without a default is None, an unreadable one absent.
    read: dict[str, Any] = {}
    for spec in OPTIONS:
        text = raw.get(spec.name)
        if text is None:
            text = spec.default
        if text is None:
            read[spec.name] = None
            continue
        try:
            read[spec.name] = _read(spec, text)
        except _Unreadable as err:
            problems.append(ConfigProblem(spec.name, _expected(spec), err.found))
    fields = ExecutorConfig.model_fields
    values: dict[str, Any] = {name: value for name, value in read.items() if name in fields}

    alias = read.get("aws_conn_id")
    # conn_id always resolves to a value (its default), so the Amazon provider's name can only fill in
    # while conn_id still holds that default.
    if alias is not None and read["conn_id"] == _SPECS["conn_id"].default:
        values["conn_id"] = alias

    deployment_id = read.get("deployment_id")
    if deployment_id is not None and not DEPLOYMENT_ID_PATTERN.fullmatch(deployment_id):
        problems.append(
            ConfigProblem(
                "deployment_id",
                "up to 128 letters, digits or _.:/=+@- (a Batch tag value)",
                repr(deployment_id),
            )
        )

    share_template = read.get("share_identifier")
    if share_template is not None:
        found = template_problem(share_template)
        if found is not None:
            names = ", ".join(f"{{{name}}}" for name in SHARE_FIELDS)
            problems.append(ConfigProblem("share_identifier", f"a template of the fields {names}", found))

    allowed = values.pop("allowed_job_definition_overrides", None)
    if allowed is not None:
        values["allowed_job_definition_overrides"] = frozenset(
            part.strip() for part in allowed.split(",") if part.strip()
        )

    store = read.get("workload_store")
    if store is not None:
        from airflow_aws_batch.workload_rules import parse_store_url

        try:
            values["workload_store"] = parse_store_url(store).url
        except ValueError as err:
            problems.append(ConfigProblem("workload_store", str(err).split(", found ")[0], repr(store)))

    events = read.get("status_events")
    if events is not None and not STATUS_EVENTS_PATTERN.fullmatch(events):
        problems.append(
            ConfigProblem(
                "status_events",
                "an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME) or a queue name of up "
                "to 80 letters, digits, - and _",
                repr(events),
            )
        )

    queue_map = read.get("queue_map")
    if queue_map is not None:
        bad = {k: v for k, v in queue_map.items() if not isinstance(v, str) or not v}
        if bad:
            problems.append(
                ConfigProblem(
                    "queue_map",
                    "a JSON object of Airflow queue -> Batch job queue name (non-empty strings)",
                    f"{json.dumps(bad)}",
                )
            )

    kwargs = read.get("submit_job_kwargs")
    # An unreadable submit_job_kwargs may or may not name the queue, definition and name: nothing is
    # said about them missing until it can be read.
    if kwargs is not None:
        values["submit_job_kwargs"] = _check_submit_job_kwargs(kwargs, problems)
        for option, member in (
            ("job_queue", "jobQueue"),
            ("job_definition", "jobDefinition"),
            ("job_name", "jobName"),
        ):
            from_kwargs = kwargs.get(member)
            chosen = from_kwargs if isinstance(from_kwargs, str) and from_kwargs else read[option]
            if chosen is None:
                problems.append(ConfigProblem(option, f"a value, or {member} in submit_job_kwargs", None))
            values[option] = chosen

    job_name = values.get("job_name")
    if isinstance(job_name, str) and not JOB_NAME_PATTERN.fullmatch(job_name):
        problems.append(
            ConfigProblem(
                "job_name",
                "up to 128 letters, digits, - or _, starting with a letter or digit",
                repr(job_name),
            )
        )

    defaults = (values.get("submit_job_kwargs") or {}).get(jobdefs.OVERRIDES_KEY)
    if isinstance(defaults, Mapping):
        allowed_kinds = values.get("allowed_job_definition_overrides", frozenset())
        for path, kind, found in jobdefs.host_access(defaults, allowed_kinds):
            problems.append(
                ConfigProblem(
                    "submit_job_kwargs",
                    jobdefs.host_access_expected(kind),
                    found,
                    f"{jobdefs.OVERRIDES_KEY}.{path}",
                )
            )

    if problems:
        raise ConfigError(problems)
    config = ExecutorConfig(**values)
    # Checking the assembled request catches what no single option shows, e.g. an empty queue name.
    request_problems = shapes.validate(
        {k: v for k, v in config.base_request().items() if k != jobdefs.OVERRIDES_KEY}
    )
    if request_problems:
        raise ConfigError(
            [ConfigProblem("submit_job_kwargs", p.expected, p.found, p.path) for p in request_problems]
        )
    return config


def _check_submit_job_kwargs(kwargs: dict[str, Any], problems: list[ConfigProblem]) -> dict[str, Any]:
    """Problems of ``submit_job_kwargs`` on its own; returns it without the three named members."""
    overrides = kwargs.get("containerOverrides")
    if isinstance(overrides, dict) and overrides.get("command", ...) in (None, []):
        # The Amazon provider's executor requires an empty or null placeholder here; accept it so its
        # configuration works unchanged (drop-in), and let the executor fill in the command.
        kwargs = {**kwargs, "containerOverrides": {k: v for k, v in overrides.items() if k != "command"}}
        overrides = kwargs["containerOverrides"]
    if isinstance(overrides, Mapping) and "command" in overrides:
        problems.append(
            ConfigProblem(
                "submit_job_kwargs",
                "no command (the executor sets the command of every job)",
                shapes.describe_found(overrides["command"]),
                "containerOverrides.command",
            )
        )
    for key in UNSUPPORTED_SUBMIT_JOB_KEYS:
        if key in kwargs:
            problems.append(
                ConfigProblem(
                    "submit_job_kwargs",
                    "no such key (only container and EKS job definitions are supported: the task's "
                    "command goes into containerOverrides or eksPropertiesOverride)",
                    "a value",
                    key,
                )
            )
    for path, expected, found in eks_override_problems(kwargs):
        problems.append(ConfigProblem("submit_job_kwargs", expected, found, path))
    for path, expected, found in one_job_per_try_problems(kwargs):
        problems.append(ConfigProblem("submit_job_kwargs", expected, found, path))
    for path, expected, found in fair_share_member_problems(kwargs):
        problems.append(ConfigProblem("submit_job_kwargs", expected, found, path))
    if jobdefs.OVERRIDES_KEY in kwargs:
        # A deployment-wide default of the job definition properties each task may override.
        for path, expected, found in jobdefs.overrides_problems(kwargs[jobdefs.OVERRIDES_KEY]):
            problems.append(ConfigProblem("submit_job_kwargs", expected, found, path))
    submit_members = {k: v for k, v in kwargs.items() if k != jobdefs.OVERRIDES_KEY}
    for problem in shapes.validate(submit_members, partial=True):
        if problem.path.startswith("containerOverrides.command"):
            continue
        problems.append(ConfigProblem("submit_job_kwargs", problem.expected, problem.found, problem.path))
    return {k: v for k, v in kwargs.items() if k not in ("jobQueue", "jobDefinition", "jobName")}


def resolve_region(config: ExecutorConfig, connection_region: str | None) -> str:
    """The region to use: ``region_name`` if set, else the connection's; ConfigError if neither."""
    region = config.region_name or connection_region
    if not region:
        raise ConfigError(
            [
                ConfigProblem(
                    "region_name",
                    f"a region, or region_name in the extra of the connection {config.conn_id!r}",
                    None,
                    team=config.team,
                )
            ]
        )
    return region
