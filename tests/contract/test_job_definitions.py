"""Per-task job definitions (``jobDefinitionOverrides``) against localbatch and moto's server, over HTTP:
find before register, a second scheduler finding the first one's definition, refusals failing one task."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_aws_batch.jobdefs import OVERRIDES_KEY
from devstack import LocalBatchServer

from ._airflow import FastExecutor, Recorder, configure, task_workload
from .conftest import Moto, create_resources

pytestmark = pytest.mark.contract

QUEUE = "jd-queue"
DEFINITION = "jd-def"


@dataclass
class Service:
    """One Batch implementation under test: where it is, its resources, and what it refuses."""

    name: str
    url: str
    batch: Any
    job_queue: str
    job_definition: str
    #: container properties the service refuses in RegisterJobDefinition (our model check accepts them)
    refused: dict[str, Any]
    refused_reason: str
    localbatch: LocalBatchServer | None = None


@pytest.fixture(scope="module")
def localbatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBatchServer]:
    server = LocalBatchServer(tmp_path_factory.mktemp("localbatch"))
    with server:
        server.setup(compute_environment="jd-ce", job_queue=QUEUE, job_definition=DEFINITION)
        # Jobs "run" on a timer: what matters here is the definition they were submitted with.
        server.set_faults({"simulate": {"seconds": 0}})
        yield server


@pytest.fixture(scope="module")
def moto_resources(moto_server: Moto) -> tuple[str, str]:
    res = create_resources(moto_server, "jobdefs")
    return res.job_queue, res.job_definition


@pytest.fixture(params=["localbatch", "moto"])
def service(request: pytest.FixtureRequest) -> Service:
    if request.param == "localbatch":
        server: LocalBatchServer = request.getfixturevalue("localbatch")
        return Service(
            "localbatch",
            server.url,
            server.batch,
            QUEUE,
            DEFINITION,
            {"image": "no spaces allowed"},
            "Invalid image name",
            server,
        )
    moto: Moto = request.getfixturevalue("moto_server")
    queue, definition = request.getfixturevalue("moto_resources")
    return Service(
        "moto",
        moto.url,
        moto.client("batch"),
        queue,
        definition,
        {"image": "python:3.12-refused", "memory": 2},
        "memory limit must be greater than 4",
    )


@pytest.fixture
def start(service: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    started: list[FastExecutor] = []

    def new_executor() -> FastExecutor:
        configure(
            monkeypatch,
            service.localbatch or service.url,
            job_queue=service.job_queue,
            job_definition=service.job_definition,
        )
        executor = FastExecutor(parallelism=16)
        executor.start()
        started.append(executor)
        return executor

    yield new_executor
    for executor in started:
        executor.terminate()


def derived_definitions(service: Service) -> list[dict[str, Any]]:
    """Every revision of every definition derived from the service's base definition."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = service.batch.describe_job_definitions(**({"nextToken": token} if token else {}))
        found.extend(
            d
            for d in page["jobDefinitions"]
            if d["jobDefinitionName"].startswith(service.job_definition + "-")
        )
        token = page.get("nextToken")
        if not token:
            return found


def run(executor: FastExecutor, *work: Any) -> Recorder:
    rec = Recorder(executor)
    for w in work:
        executor.queue_workload(w, session=None)  # type: ignore[arg-type]
    rec.until(
        lambda: all({"success", "failed"} & set(rec.states(w.ti.key)) for w in work),
        timeout=60,
        what="every task to end",
    )
    return rec


def job_of(service: Service, rec: Recorder, w: Any) -> dict[str, Any]:
    (job,) = service.batch.describe_jobs(jobs=[rec.info(w.ti.key, "running")])["jobs"]
    return dict(job)


def register_calls(service: Service) -> int | None:
    if service.localbatch is None:
        return None
    stats = service.localbatch.stats()["operations"]
    return int(stats.get("RegisterJobDefinition", {}).get("requests", 0))


def test_found_before_registering_and_by_a_second_scheduler(service: Service, start: Any) -> None:
    image = f"python:3.12-{service.name}-shared"
    before = derived_definitions(service)
    registered_before = register_calls(service)

    first = start()
    tasks = [task_workload(f"img_{i}", executor_config={OVERRIDES_KEY: {"image": image}}) for i in range(3)]
    plain = task_workload("plain")
    rec = run(first, *tasks, plain)
    for w in [*tasks, plain]:
        assert rec.states(w.ti.key)[-1] == "success", rec.task_events(w.ti.key)
    (derived,) = [d for d in derived_definitions(service) if d not in before]
    assert derived["containerProperties"]["image"] == image
    assert derived["jobDefinitionName"].startswith(f"{service.job_definition}-")
    for w in tasks:
        job = job_of(service, rec, w)
        assert job["jobDefinition"] == derived["jobDefinitionArn"]
        if service.localbatch is not None:  # moto's jobs without Docker report no container image
            assert job["container"]["image"] == image
    assert (
        job_of(service, rec, plain)["jobDefinition"].split("/")[-1].startswith(f"{service.job_definition}:")
    )
    assert first.job_definitions.registered == 1

    # A restarted scheduler (a new executor) finds the definition and registers nothing.
    second = start()
    again = task_workload("img_again", executor_config={OVERRIDES_KEY: {"image": image}})
    rec2 = run(second, again)
    assert rec2.states(again.ti.key)[-1] == "success", rec2.task_events(again.ti.key)
    assert job_of(service, rec2, again)["jobDefinition"] == derived["jobDefinitionArn"]
    assert second.job_definitions.registered == 0
    assert [d for d in derived_definitions(service) if d not in before] == [derived]
    if registered_before is not None:
        assert register_calls(service) == registered_before + 1


def test_a_refused_registration_fails_only_that_task(service: Service, start: Any) -> None:
    executor = start()
    bad = task_workload("refused", executor_config={OVERRIDES_KEY: service.refused})
    good = task_workload("fine", executor_config={OVERRIDES_KEY: {"image": f"python:3.13-{service.name}"}})
    rec = run(executor, bad, good)
    assert rec.states(good.ti.key)[-1] == "success", rec.task_events(good.ti.key)
    assert rec.states(bad.ti.key) == ["failed"], rec.task_events(bad.ti.key)
    events = "\n".join(rec.task_events(bad.ti.key))
    assert "RegisterJobDefinition of " in events
    assert service.refused_reason in events
    # The refusal was remembered: the task's later attempts failed without another registration.
    assert executor.job_definitions.registered == 2


def test_access_denied_fails_the_task_with_the_reason(
    localbatch: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    localbatch.set_faults({"simulate": {"seconds": 0}, "denied": ["RegisterJobDefinition"]})
    configure(monkeypatch, localbatch, job_queue=QUEUE, job_definition=DEFINITION)
    executor = FastExecutor(parallelism=4)
    executor.start()
    try:
        w = task_workload("denied", executor_config={OVERRIDES_KEY: {"image": "python:3.12-denied"}})
        rec = run(executor, w)
    finally:
        executor.terminate()
        localbatch.set_faults({"simulate": {"seconds": 0}})
    assert rec.states(w.ti.key) == ["failed"]
    events = "\n".join(rec.task_events(w.ti.key))
    assert "AccessDeniedException" in events and "batch:RegisterJobDefinition" in events


def test_check_says_whether_the_credentials_may_register(service: Service) -> None:
    from airflow_aws_batch.config import parse_options
    from airflow_aws_batch.health import job_definition_registration_items

    config = parse_options(
        {"job_queue": service.job_queue, "job_definition": service.job_definition, "job_name": "a"}
    )
    before = derived_definitions(service)
    # Neither server answers iam:SimulatePrincipalPolicy: the Batch probe decides.
    register, pass_role = job_definition_registration_items(service.batch, config)
    assert (register.name, register.ok, register.fatal) == ("register_job_definitions", True, False)
    assert "allowed" in register.detail
    assert (pass_role.ok, pass_role.fatal) == (False, False) and "not verified" in pass_role.detail
    assert derived_definitions(service) == before  # the probe registered nothing
    if service.localbatch is None:
        return
    service.localbatch.set_faults({"simulate": {"seconds": 0}, "denied": ["RegisterJobDefinition"]})
    try:
        register, _ = job_definition_registration_items(service.batch, config)
    finally:
        service.localbatch.set_faults({"simulate": {"seconds": 0}})
    assert (register.ok, register.fatal) == (False, False)
    assert "denied (AccessDeniedException)" in register.detail


def test_overrides_that_reach_the_host_fail_unless_allowed(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    host_volume = {
        "volumes": [{"name": "hostroot", "host": {"sourcePath": "/"}}],
        "mountPoints": [{"sourceVolume": "hostroot", "containerPath": "/host"}],
    }
    asks = {
        "privileged": ({"privileged": True}, "privileged"),
        "host_volumes": (host_volume, "volumes[0].host.sourcePath"),
        "devices": ({"linuxParameters": {"devices": [{"hostPath": "/dev/mem"}]}}, "linuxParameters.devices"),
        "root_user": ({"user": "root"}, "user"),
    }

    def run_with(allowed: str | None, name: str) -> tuple[Recorder, dict[str, Any]]:
        options = {"allowed_job_definition_overrides": allowed} if allowed else {}
        configure(
            monkeypatch,
            service.localbatch or service.url,
            job_queue=service.job_queue,
            job_definition=service.job_definition,
            **options,
        )
        executor = FastExecutor(parallelism=8)
        executor.start()
        try:
            work = {
                kind: task_workload(f"{name}_{kind}", executor_config={OVERRIDES_KEY: overrides})
                for kind, (overrides, _) in asks.items()
            }
            return run(executor, *work.values()), work
        finally:
            executor.terminate()

    before = derived_definitions(service)
    rec, work = run_with(None, "refused")
    for kind, (_, path) in asks.items():
        assert rec.states(work[kind].ti.key) == ["failed"], rec.task_events(work[kind].ti.key)
        events = "\n".join(rec.task_events(work[kind].ti.key))
        assert f"{OVERRIDES_KEY}.{path}" in events
        assert f"allowed_job_definition_overrides includes {kind}" in events
    # Refused before any call: nothing was registered.
    assert derived_definitions(service) == before

    rec, work = run_with("host_volumes,devices,root_user", "allowed")
    for kind in ("host_volumes", "devices", "root_user"):
        assert rec.states(work[kind].ti.key)[-1] == "success", rec.task_events(work[kind].ti.key)
    assert rec.states(work["privileged"].ti.key) == ["failed"]
    registered = [d for d in derived_definitions(service) if d not in before]
    assert len(registered) == 3
    assert not any(d["containerProperties"].get("privileged") for d in registered)


def test_equal_content_is_found_again_whatever_its_order_and_carries_the_use_tags(service: Service) -> None:
    """Two schedulers (two caches) asking for the same content in another order: one registration,
    tagged with the deployment and the day; the second scheduler's use moves ``last_used`` on."""
    from airflow_aws_batch.aws.batch import BatchApi
    from airflow_aws_batch.jobdefs import JobDefinitions, PagedCalls

    api = BatchApi(lambda: service.batch)
    marker = uuid.uuid4().hex
    env = [{"name": "A", "value": marker}, {"name": "B", "value": "2"}]

    def request(environment: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "jobName": "j",
            "jobQueue": service.job_queue,
            "jobDefinition": service.job_definition,
            "tags": {"deployment": "db-hygiene"},
            OVERRIDES_KEY: {"environment": environment},
        }

    def refusal(exc: Exception) -> str | None:
        return None

    first = JobDefinitions(PagedCalls(lambda: api, lambda: None), refusal, today=lambda: "2026-01-01")
    arn = first.resolve(request(env))["jobDefinition"]
    assert first.registered == 1
    second = JobDefinitions(PagedCalls(lambda: api, lambda: None), refusal, today=lambda: "2026-01-02")
    assert second.resolve(request(list(reversed(env))))["jobDefinition"] == arn
    assert second.registered == 0  # equal content, another order: found, not registered again
    (entry,) = service.batch.describe_job_definitions(jobDefinitions=[arn])["jobDefinitions"]
    assert entry["tags"] == {"deployment": "db-hygiene", "last_used": "2026-01-02"}
