"""HTTP layer: FastAPI routes for the Batch, Logs, SQS and EventBridge APIs on one port, plus the
admin endpoints.

Routes only translate HTTP to a parsed request (protocol.py), apply the configured faults, call the
backend and serialise the answer. Everything else lives below.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from localbatch import protocol
from localbatch.admission import Admission, Policy
from localbatch.errors import (
    AccessDeniedException,
    ClientException,
    EventsAccessDenied,
    EventsInternal,
    EventsThrottling,
    LogsServiceUnavailable,
    LogsThrottling,
    ServerException,
    ServiceError,
    SqsAccessDenied,
    SqsInternalError,
    SqsRequestThrottled,
    TooManyRequestsException,
)
from localbatch.events import EventsBackend
from localbatch.faults import FaultConfig, Faults, Stats
from localbatch.job_events import JobEvents
from localbatch.logs import LogsBackend
from localbatch.models import ACCOUNT_ID
from localbatch.redact import mask_workloads
from localbatch.runner import Runner
from localbatch.sqs import SqsBackend
from localbatch.store import Store

ADMIN_PREFIX = "/_localbatch"
log = logging.getLogger("localbatch")
MAX_SUBMIT_BYTES = 30 * 1024
#: SubmitJob bodies kept for ``GET /_localbatch/requests/SubmitJob`` (newest last; older ones dropped).
KEPT_SUBMIT_REQUESTS = 2000
# STS GetCallerIdentity, so credential checks pointed at the same endpoint_url succeed.
STS_IDENTITY = (
    '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
    f"<Arn>arn:aws:iam::{ACCOUNT_ID}:user/localbatch</Arn><UserId>AIDALOCALBATCH</UserId>"
    f"<Account>{ACCOUNT_ID}</Account></GetCallerIdentityResult>"
    "<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
)
#: Per service, the errors of the request faults: (denied, throttled, server error).
FAULT_ERRORS: dict[str, tuple[type[ServiceError], type[ServiceError], type[ServiceError]]] = {
    "batch": (AccessDeniedException, TooManyRequestsException, ServerException),
    "logs": (AccessDeniedException, LogsThrottling, LogsServiceUnavailable),
    "sqs": (SqsAccessDenied, SqsRequestThrottled, SqsInternalError),
    "events": (EventsAccessDenied, EventsThrottling, EventsInternal),
}
THROTTLING = tuple(errors[1] for errors in FAULT_ERRORS.values())


@dataclass
class Settings:
    data_dir: Path
    faults: FaultConfig = field(default_factory=FaultConfig)
    pass_env: list[str] = field(default_factory=list)
    kill_grace_seconds: float = 30.0
    preload: list[str] = field(default_factory=list)
    sched_batch: bool = True


class LocalBatch:
    """The service: store, backends, runner and fault state, started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.data_dir)
        self.faults = Faults(settings.faults)
        self.stats = Stats()
        #: The latest SubmitJob bodies, so tests can check what the caller sent (workloads masked).
        self.submit_requests: collections.deque[str] = collections.deque(maxlen=KEPT_SUBMIT_REQUESTS)
        self.logs = LogsBackend(self.store)
        self.sqs = SqsBackend(self.store)
        self.events = EventsBackend(self.store)
        self.job_events = JobEvents(self.events, self.sqs, self.faults)
        self.runner = Runner(
            self.store,
            self.logs,
            self.faults,
            settings.data_dir,
            pass_env=settings.pass_env,
            kill_grace_seconds=settings.kill_grace_seconds,
            preload=settings.preload,
            sched_batch=settings.sched_batch,
            on_status=self.job_events.job_changed,
        )
        self.batch = self.runner.backend

    async def start(self) -> None:
        # Queues and rules first: the runner's start fails the jobs a stop left running, and their
        # state change events go out.
        self.sqs.load()
        self.events.load()
        self.job_events.bind(asyncio.get_running_loop())
        await self.runner.start()

    def stopping(self) -> None:
        """The server stops taking requests: long polls answer now instead of holding it up."""
        self.sqs.close()

    async def stop(self) -> None:
        self.sqs.close()
        await self.runner.stop()
        self.store.close()

    def replace_faults(self, config: FaultConfig) -> None:
        self.faults.replace(config)
        self.runner.release_holds()

    async def apply_faults(self, service: str, operation: str) -> None:
        """Added latency, quotas and random server errors, in the order a caller would meet them."""
        stats = self.stats.get(operation)
        config = self.faults.config
        denied, throttled, server_error = FAULT_ERRORS[service]
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        if operation in config.denied:
            raise denied(
                f"User is not authorized to perform: {service}:{operation} (injected fault 'denied')"
            )
        if not self.faults.allow(operation):
            stats.throttled += 1
            raise throttled("Rate exceeded" if service != "batch" else "Too Many Requests")
        if self.faults.server_error():
            stats.server_errors += 1
            if service == "logs":
                raise LogsServiceUnavailable("The service cannot complete the request (injected fault).")
            raise server_error("Internal server error (injected fault)")

    async def call(
        self, headers: dict[str, str], method: str, raw_path: str, query: str, body: bytes
    ) -> dict[str, Any]:
        service = protocol.service_of(headers)
        if service == "batch":
            batch_request = protocol.parse_batch(method, raw_path, query, headers, body)
            assert batch_request is not None
            return self.batch.dispatch(batch_request.operation, batch_request.params, batch_request.region)
        parsed = protocol.parse_json(service, headers, body)
        if service == "sqs":
            return await self.sqs.dispatch(parsed.operation, parsed.params, parsed.region, headers["host"])
        if service == "events":
            return self.events.dispatch(parsed.operation, parsed.params, parsed.region)
        return self.logs.dispatch(parsed.operation, parsed.params, parsed.region)


class _DroppedResponse(Response):
    """Headers and the start of a body, then the connection closes (uvicorn closes it when the app
    returns with the response incomplete, and logs that it did): the client sees a broken read."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"jobArn": "arn:aws:batch:', "more_body": True})


def _error(error: ServiceError, service: str) -> Response:
    status, headers, payload = protocol.error_body(error, service)
    return Response(payload, status_code=status, headers=headers)


def _json(
    status: int, payload: Any, headers: dict[str, str] | None = None, media: str = "application/json"
) -> Response:
    return Response(json.dumps(payload).encode(), status_code=status, headers=headers, media_type=media)


def create_app(service: LocalBatch, policy: Policy) -> FastAPI:
    """The routes behind :class:`Admission`, which refuses what ``policy`` does not admit."""
    app = FastAPI(title="localbatch", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Admission, policy=policy)

    @app.get(f"{ADMIN_PREFIX}/faults")
    async def get_faults() -> Response:
        return _json(200, service.faults.config.model_dump())

    @app.put(f"{ADMIN_PREFIX}/faults")
    async def put_faults(request: Request) -> Response:
        try:
            config = FaultConfig.model_validate_json(await request.body())
        except ValidationError as exc:
            return _json(400, {"message": "invalid fault config", "errors": json.loads(exc.json())})
        service.replace_faults(config)
        return _json(200, config.model_dump())

    @app.get(f"{ADMIN_PREFIX}/stats")
    async def get_stats() -> Response:
        return _json(200, {"operations": service.stats.as_dict()})

    @app.delete(f"{ADMIN_PREFIX}/stats")
    async def reset_stats() -> Response:
        service.stats.operations.clear()
        return _json(200, {"operations": {}})

    @app.get(f"{ADMIN_PREFIX}/requests/SubmitJob")
    async def get_submit_requests() -> Response:
        return _json(200, {"requests": list(service.submit_requests)})

    @app.post(f"{ADMIN_PREFIX}/simulate/finish")
    async def finish_simulated(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            job_ids = [str(j) for j in body["job_ids"]]
            exit_code = body.get("exit_code")
            if exit_code is not None and not (isinstance(exit_code, int) and 0 <= exit_code <= 255):
                raise ValueError(f"exit_code must be an integer 0..255, found {exit_code!r}")
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"message": f'expected {{"job_ids": [...], "exit_code": 0}}: {exc}'})
        jobs = service.runner.finish_simulated(job_ids, exit_code)
        finished = [
            {"jobId": job.job_id, "status": job.status.value, "stoppedAt": job.attempts[-1].stopped_at}
            for job in jobs
        ]
        return _json(200, {"finished": finished})

    @app.get(f"{ADMIN_PREFIX}/health")
    async def health() -> Response:
        runner = service.runner
        return _json(
            200,
            {
                "status": "ok",
                # Every job record: single jobs, array parents and their children.
                "jobs": len(service.batch.jobs),
                "array_jobs": service.batch.array_parents,
                "array_children": service.batch.array_children,
                "running": len(runner.processes.procs) + len(runner.simulation.runs),
                "simulated": len(runner.simulation.runs),
                "warm": None if runner.processes.warm is None else runner.processes.warm.stats(),
                "sqs": service.sqs.counts(),
                "events": service.job_events.stats(),
            },
        )

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def aws(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        raw_path = (request.scope.get("raw_path", b"").decode() or request.url.path).split("?")[0]
        service_name = protocol.service_of(headers)
        if request.method == "POST" and raw_path == "/" and service_name == "batch":
            body = await request.body()
            if parse_qs(body.decode(errors="replace")).get("Action") == ["GetCallerIdentity"]:
                service.stats.get("GetCallerIdentity").requests += 1
                return Response(STS_IDENTITY.format(uuid.uuid4()).encode(), media_type="text/xml")
        if service_name != "batch":
            operation = protocol.json_operation(service_name, headers)
            if operation is None:
                unknown = protocol.JSON_SERVICES[service_name][1]
                return _error(unknown(f"Unknown operation {headers['x-amz-target']!r}"), service_name)
        else:
            operation = protocol.batch_operation(request.method, raw_path)
            if operation is None:
                return _json(404, {"message": f"No AWS operation at {request.method} {raw_path}"})
        stats = service.stats.get(operation)
        stats.requests += 1
        try:
            await service.apply_faults(service_name, operation)
            body = await request.body()
            if operation == "SubmitJob":
                service.submit_requests.append(mask_workloads(body.decode(errors="replace")))
                if len(body) > MAX_SUBMIT_BYTES:
                    raise ClientException("SubmitJob request payload exceeds the 30 KiB limit")
            result = await service.call(headers, request.method, raw_path, request.url.query, body)
            if operation == "SubmitJob" and service.faults.lost_response(str(result["jobName"])):
                # The job exists and runs; only the caller never learns its id.
                stats.server_errors += 1
                stats.lost_responses += 1
                if service.faults.config.lost_response_mode == "drop":
                    log.warning("Dropping the connection of a SubmitJob that created %s", result["jobId"])
                    return _DroppedResponse()
                raise ServerException(
                    "Internal server error (injected fault: the job was created, the response lost)"
                )
        except ServiceError as error:
            if error.status < 500 and not isinstance(error, THROTTLING):
                stats.client_errors += 1
            return _error(error, service_name)
        except Exception as exc:  # a bug must still reach the client in AWS's shape, and our log
            log.exception("%s failed", operation)
            stats.server_errors += 1
            unavailable = FAULT_ERRORS[service_name][2]
            return _error(unavailable(f"localbatch failed: {exc!r}"), service_name)
        media = "application/json" if service_name == "batch" else protocol.json_media_type(service_name)
        return _json(200, result, media=media)

    return app
