"""Command line of localbatch: `serve` runs the service, `setup` creates the resources Airflow needs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from localbatch.faults import FaultConfig
from localbatch.privacy import make_private, read_credentials, write_admin_token

SERVE_DESCRIPTION = """\
Run the Batch, CloudWatch Logs, SQS and EventBridge APIs on one port. Only AWS clients on this
machine are admitted: each request needs a Host naming this address (127.0.0.1, localhost, [::1] or
--host, with the port), no Origin, a JSON Content-Type and an `Authorization: AWS4-HMAC-SHA256 ...`
header (any key unless --credentials is given, then a valid signature). Anything else gets a 403;
CORS preflights are never approved. /_localbatch/* admin routes also take
`Authorization: Bearer <token>`, the token in DATA_DIR/admin-token (0600, new at every start)."""


def _quota(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected OPERATION=RATE, found {text!r}")
    try:
        return name, float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"rate must be a number in {text!r}") from exc


def _range(text: str) -> tuple[float, float]:
    least, sep, most = text.partition(":")
    try:
        return (float(least), float(most)) if sep else (float(least), float(least))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected SECONDS or LEAST:MOST, found {text!r}") from exc


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, found {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localbatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the Batch-compatible service",
        description=SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; also a Host header it admits"
    )
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="SQLite store, job working directories and the admin token (made private: 0700/0600)",
    )
    credentials = serve.add_mutually_exclusive_group()
    credentials.add_argument(
        "--credentials",
        metavar="KEY:SECRET",
        help="verify every SigV4 signature with this key (visible to `ps`: prefer --credentials-file)",
    )
    credentials.add_argument(
        "--credentials-file", type=Path, metavar="PATH", help="as --credentials, read from PATH's first line"
    )
    serve.add_argument("--ready-file", type=Path, help="write the service URL here once listening")
    serve.add_argument("--faults", type=Path, help="fault config JSON (flags below override its fields)")
    serve.add_argument("--seed", type=int)
    serve.add_argument("--latency-ms", type=float)
    serve.add_argument("--quota", type=_quota, action="append", default=[], metavar="OPERATION=RATE")
    serve.add_argument("--error-rate", type=float)
    serve.add_argument("--fail-before-start-rate", type=float)
    serve.add_argument("--host-lost-rate", type=float)
    serve.add_argument(
        "--lost-response-rate", type=float, help="SubmitJob creates the job, then loses the answer"
    )
    serve.add_argument(
        "--lost-response-mode",
        choices=["server_error", "drop"],
        help="how an answer is lost: 500 ServerException (default) or a dropped connection",
    )
    serve.add_argument("--hold-runnable-rate", type=float)
    events = serve.add_argument_group(
        "job state change event faults", "each a share of the deliveries of an event to an SQS queue"
    )
    events.add_argument("--event-drop-rate", type=float, metavar="SHARE", help="lost on the way")
    events.add_argument(
        "--event-duplicate-rate", type=float, metavar="SHARE", help="delivered twice (same event id)"
    )
    events.add_argument("--event-delay-rate", type=float, metavar="SHARE", help="delivered late")
    events.add_argument(
        "--event-delay-seconds",
        type=_range,
        metavar="LEAST:MOST",
        help="how late a delayed event is, drawn in this range (default 1:10)",
    )
    events.add_argument(
        "--event-reorder-rate",
        type=float,
        metavar="SHARE",
        help="held back until the next event to the same queue has gone out (at most 2 s)",
    )
    serve.add_argument(
        "--pass-env", action="append", default=[], metavar="NAME", help="pass this variable on to jobs"
    )
    serve.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE once in a warm interpreter and fork `python -m MODULE ...` jobs from it",
    )
    serve.add_argument(
        "--sched-policy",
        choices=["batch", "normal"],
        default="batch",
        help="Linux scheduling policy of job processes (default batch: they do not preempt on wake-up)",
    )
    serve.add_argument(
        "--simulate-seconds",
        type=float,
        metavar="S",
        help="simulated execution: jobs start no process, run S seconds and exit 0 (fault 'simulate')",
    )
    serve.add_argument(
        "--kill-grace-seconds", type=float, default=30.0, help="SIGTERM to SIGKILL delay (AWS: 30)"
    )

    setup = sub.add_parser("setup", help="create a compute environment, job queue and job definition")
    setup.add_argument("--endpoint-url", required=True)
    setup.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    setup.add_argument("--compute-environment", default="localbatch-ce")
    setup.add_argument("--job-queue", default="airflow-jobs")
    setup.add_argument("--job-definition", default="airflow-task")
    setup.add_argument("--max-vcpus", type=int, default=8)
    setup.add_argument("--image", default="apache/airflow:3.3.2", help="recorded only, never pulled")
    setup.add_argument("--vcpus", default="1")
    setup.add_argument("--memory", default="2048", help="MiB")
    setup.add_argument("--env", type=_pair, action="append", default=[], metavar="KEY=VALUE")
    setup.add_argument(
        "--api-server-url", help="sets AIRFLOW__CORE__EXECUTION_API_SERVER_URL=<url>/execution/"
    )
    return parser


def fault_config(args: argparse.Namespace) -> FaultConfig:
    data: dict[str, Any] = json.loads(args.faults.read_text()) if args.faults else {}
    for flag, key in (
        ("seed", "seed"),
        ("latency_ms", "latency_ms"),
        ("error_rate", "error_rate"),
        ("fail_before_start_rate", "fail_before_start_rate"),
        ("host_lost_rate", "host_lost_rate"),
        ("lost_response_rate", "lost_response_rate"),
        ("lost_response_mode", "lost_response_mode"),
    ):
        if getattr(args, flag) is not None:
            data[key] = getattr(args, flag)
    if args.quota:
        data["quotas"] = {**data.get("quotas", {}), **dict(args.quota)}
    if args.simulate_seconds is not None:
        data["simulate"] = {**(data.get("simulate") or {}), "seconds": args.simulate_seconds}
    if args.hold_runnable_rate is not None:
        data["hold_runnable"] = {**data.get("hold_runnable", {}), "rate": args.hold_runnable_rate}
    events = dict(data.get("events", {}))
    for flag in ("drop_rate", "duplicate_rate", "delay_rate", "delay_seconds", "reorder_rate"):
        if getattr(args, f"event_{flag}") is not None:
            events[flag] = getattr(args, f"event_{flag}")
    if events:
        data["events"] = events
    return FaultConfig.model_validate(data)


def credentials(args: argparse.Namespace) -> tuple[str, str] | None:
    if args.credentials_file is not None:
        return read_credentials(args.credentials_file.read_text())
    if args.credentials is not None:
        return read_credentials(args.credentials)
    return None


async def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from localbatch.admission import Policy, served_hosts
    from localbatch.app import LocalBatch, Settings, create_app

    make_private(args.data_dir)
    admin_token = write_admin_token(args.data_dir)

    settings = Settings(
        data_dir=args.data_dir,
        faults=fault_config(args),
        pass_env=args.pass_env,
        kill_grace_seconds=args.kill_grace_seconds,
        preload=args.preload,
        sched_batch=args.sched_policy == "batch",
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    port = sock.getsockname()[1]
    policy = Policy(served_hosts(args.host, port), admin_token, credentials(args))
    service = LocalBatch(settings)
    await service.start()
    config = uvicorn.Config(
        create_app(service, policy), log_level="warning", access_log=False, lifespan="off", backlog=2048
    )
    server = uvicorn.Server(config)
    # uvicorn captures SIGINT/SIGTERM only while it serves; these cover the moments around that.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    serve_task = asyncio.create_task(server.serve(sockets=[sock]))

    async def release_long_polls() -> None:
        # uvicorn waits for every request in flight before it stops: SQS long polls answer at once.
        while not server.should_exit and not serve_task.done():
            await asyncio.sleep(0.1)
        service.stopping()

    watcher = asyncio.create_task(release_long_polls())
    try:
        while not server.started and not serve_task.done():
            await asyncio.sleep(0.01)
        if server.started:
            url = f"http://{args.host}:{port}"
            if args.ready_file:
                tmp = args.ready_file.with_suffix(".tmp")
                tmp.write_text(url + "\n")
                tmp.replace(args.ready_file)
            print(f"localbatch listening on {url}", flush=True)
        await serve_task
    finally:
        watcher.cancel()
        await service.stop()


def _serve_main(args: argparse.Namespace) -> int:
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args))
    else:
        uvloop.run(_serve(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            fault_config(args)
        except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            parser.error(f"invalid fault configuration: {exc}")
        try:
            credentials(args)
        except (OSError, ValueError) as exc:
            parser.error(f"invalid credentials: {exc}")
        return _serve_main(args)
    from localbatch.setup import run_setup

    return run_setup(args)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
