"""Re-apply the simulated mode and warm-interpreter edits to localbatch (idempotent-ish text edits)."""
import sys
from pathlib import Path

root = Path(sys.argv[1])


def edit(name, pairs):
    p = root / name
    s = p.read_text()
    for old, new in pairs:
        if new in s:
            continue
        if old not in s:
            raise SystemExit(f"{name}: anchor not found:\n{old[:200]}")
        s = s.replace(old, new, 1)
    p.write_text(s)


edit("faults.py", [
    ('''class FaultConfig(BaseModel):''', '''class Simulate(BaseModel):
    """Simulated execution: attempts start no process; each "runs" ``seconds``, then exits ``exit_code``.

    ``seconds`` null: the attempt runs until ``POST /_localbatch/simulate/finish`` ends it (or TerminateJob,
    a timeout or a host_lost fault does). Meant for load tests of Batch clients, where thousands of jobs
    must exist at once and what they run does not matter.
    """

    model_config = ConfigDict(extra="forbid")
    seconds: float | None = Field(default=0.0, ge=0.0)
    exit_code: int = Field(default=0, ge=0, le=255)


class FaultConfig(BaseModel):'''),
    ('''    rules: list[Rule] = Field(default_factory=list)
''', '''    rules: list[Rule] = Field(default_factory=list)
    simulate: Simulate | None = None
'''),
])

edit("app.py", [
    ('''    kill_grace_seconds: float = 30.0
''', '''    kill_grace_seconds: float = 30.0
    preload: list[str] = field(default_factory=list)
'''),
    ('''            kill_grace_seconds=settings.kill_grace_seconds,
        )''', '''            kill_grace_seconds=settings.kill_grace_seconds,
            preload=settings.preload,
        )'''),
    ('''    @app.get(f"{ADMIN_PREFIX}/health")''', '''    @app.post(f"{ADMIN_PREFIX}/simulate/finish")
    async def finish_simulated(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            job_ids = [str(job_id) for job_id in body["job_ids"]]
            exit_code = int(body.get("exit_code", 0))
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"message": f"expected {{\\"job_ids\\": [...], \\"exit_code\\": 0}}: {exc}"})
        finished = service.runner.finish_simulated(job_ids, exit_code)
        return _json(
            200,
            {
                "finished": [
                    {"jobId": job.job_id, "status": job.status.value, "stoppedAt": job.attempts[-1].stopped_at}
                    for job in finished
                ]
            },
        )

    @app.get(f"{ADMIN_PREFIX}/health")'''),
    ('''"running": len(service.runner.procs)}''', '''"running": service.runner.running_count()}'''),
])

edit("cli.py", [
    ('''    serve.add_argument(
        "--kill-grace-seconds",''', '''    serve.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="MODULE",
        help="run jobs whose command is `python -m MODULE ...` as forks of a warm interpreter that "
        "imported MODULE once (repeatable; see localbatch.warm)",
    )
    serve.add_argument(
        "--kill-grace-seconds",'''),
    ('''        kill_grace_seconds=args.kill_grace_seconds,
    )''', '''        kill_grace_seconds=args.kill_grace_seconds,
        preload=args.preload,
    )'''),
])

edit("runner.py", [
    ("from localbatch.faults import Faults\n", "from localbatch.faults import Faults, StartFault\n"),
    ('''from dataclasses import dataclass, field''', '''from collections.abc import Sequence
from dataclasses import dataclass, field'''),
    ('''from localbatch.models import ACCOUNT_ID, Attempt, Job, JobStatus
''', '''from localbatch.models import ACCOUNT_ID, Attempt, Job, JobStatus
from localbatch.warm import WarmChild, WarmPool
'''),
    ('''    popen: subprocess.Popen[bytes]
    pidfd: int''', '''    popen: subprocess.Popen[bytes] | WarmChild
    # -1 for a warm child: its parent is the zygote, which reports its exit.
    pidfd: int'''),
    ('''class Runner:''', '''@dataclass
class Simulated:
    """An attempt in simulated mode (faults.simulate): no process, only the timers that end it."""

    attempt: Attempt
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


SIMULATED_LINE = "localbatch: simulated run, no process started (faults.simulate)"


class Runner:'''),
    ('''        kill_grace_seconds: float = 30.0,
    ) -> None:''', '''        kill_grace_seconds: float = 30.0,
        preload: Sequence[str] = (),
    ) -> None:'''),
    ('''        self.procs: dict[str, Proc] = {}
''', '''        self.procs: dict[str, Proc] = {}
        self.simulated: dict[str, Simulated] = {}
        self.warm = WarmPool(preload, self._on_warm_exit, cwd=self.workdir) if preload else None
        self._warm_jobs: dict[int, str] = {}  # pid of a warm child -> job id
'''),
    ('''    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
''', '''    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.warm is not None:
            self.warm.attach(self._loop)
'''),
    ('''            proc.popen.wait()
            self._on_exit(job_id)
''', '''            proc.popen.wait()
            self._on_exit(job_id)
        for job_id in list(self.simulated):
            job = self.backend.jobs[job_id]
            job.stop_kind, job.stop_reason = "stopped", STOPPED_REASON
            self._end_simulated(job_id, None)
        if self.warm is not None:
            self.warm.close()
'''),
    ('''    def _child_env(self, job: Job, jq: dict[str, Any], ce: dict[str, Any]) -> dict[str, str]:
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)])
        env = {
            "PATH": path,
            "HOME": os.environ.get("HOME", "/"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "TMPDIR": os.environ.get("TMPDIR", tempfile.gettempdir()),
        }
        for name in self.pass_env:
            if name in os.environ:
                env[name] = os.environ[name]
''', '''    def running_count(self) -> int:
        return len(self.procs) + len(self.simulated)

    def _minimal_env(self) -> dict[str, str]:
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)])
        env = {
            "PATH": path,
            "HOME": os.environ.get("HOME", "/"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "TMPDIR": os.environ.get("TMPDIR", tempfile.gettempdir()),
        }
        for name in self.pass_env:
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    def _base_env(self, job: Job) -> dict[str, str]:
        """What every attempt of this job definition shares: no overrides, no AWS_BATCH_* variables."""
        env = self._minimal_env()
        definition = self.backend.job_definitions.get(job.job_definition_arn) or {}
        for item in definition.get("containerProperties", {}).get("environment", []):
            env[item["name"]] = item.get("value", "")
        return env

    def _child_env(self, job: Job, jq: dict[str, Any], ce: dict[str, Any]) -> dict[str, str]:
        env = self._minimal_env()
'''),
    ('''        if not command:
            reason = (''', '''        simulate = self.faults.config.simulate
        if simulate is not None:
            self._start_simulated(job, attempt, simulate.seconds, simulate.exit_code, fault)
            return
        if not command:
            reason = ('''),
    ('''        read_fd, write_fd = os.pipe()
        try:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                env=self._child_env(job, jq, ce),
                cwd=self.workdir,
                start_new_session=True,
                close_fds=True,
            )
''', '''        read_fd, write_fd = os.pipe()
        env = self._child_env(job, jq, ce)
        try:
            popen: subprocess.Popen[bytes] | WarmChild | None = None
            if self.warm is not None:
                popen = self.warm.spawn(command, env, self.workdir, write_fd, base_env=self._base_env(job))
            if popen is None:
                popen = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=write_fd,
                    stderr=write_fd,
                    env=env,
                    cwd=self.workdir,
                    start_new_session=True,
                    close_fds=True,
                )
'''),
    ('''        pidfd = os.pidfd_open(popen.pid)
        proc = Proc(job.job_id, popen, pidfd, read_fd, attempt.log_stream)
        self.procs[job.job_id] = proc
        loop = self._loop
        assert loop is not None
        loop.add_reader(pidfd, self._on_exit, job.job_id)''', '''        pidfd = -1 if isinstance(popen, WarmChild) else os.pidfd_open(popen.pid)
        proc = Proc(job.job_id, popen, pidfd, read_fd, attempt.log_stream)
        self.procs[job.job_id] = proc
        loop = self._loop
        assert loop is not None
        if pidfd >= 0:
            loop.add_reader(pidfd, self._on_exit, job.job_id)
        else:
            self._warm_jobs[popen.pid] = job.job_id'''),
    ('''    # -- while it runs -----------------------------------------------------------------------------''', '''    # -- simulated attempts (faults.simulate) --------------------------------------------------------
    def _start_simulated(
        self, job: Job, attempt: Attempt, seconds: float | None, exit_code: int, fault: StartFault | None
    ) -> None:
        self.logs.create_stream(attempt.log_stream)
        self.logs.append(attempt.log_stream, [(now_ms(), SIMULATED_LINE)])
        run = self.simulated[job.job_id] = Simulated(attempt)
        attempt.started_at = job.started_at = now_ms()
        self.backend.set_status(job, JobStatus.RUNNING)
        loop = self._loop
        assert loop is not None
        if seconds is not None:
            run.timers.append(loop.call_later(seconds, self._simulated_done, job.job_id, attempt, exit_code))
        if job.timeout_seconds is not None:
            run.timers.append(
                loop.call_later(
                    job.timeout_seconds, self._simulated_stop, job.job_id, attempt, "timeout", TIMEOUT_REASON
                )
            )
        if fault is not None and fault.kind == "host_lost":
            reason = fault.reason or f"Host EC2 (instance {self.faults.instance_id()}) terminated."
            run.timers.append(
                loop.call_later(
                    fault.after_seconds, self._simulated_stop, job.job_id, attempt, "host_lost", reason
                )
            )

    def _simulated_done(self, job_id: str, attempt: Attempt, exit_code: int) -> None:
        run = self.simulated.get(job_id)
        if run is not None and run.attempt is attempt:
            self._end_simulated(job_id, exit_code)

    def _simulated_stop(self, job_id: str, attempt: Attempt, kind: str, reason: str) -> None:
        run = self.simulated.get(job_id)
        job = self.backend.jobs.get(job_id)
        if run is None or run.attempt is not attempt or job is None or job.stop_kind is not None:
            return
        job.stop_kind, job.stop_reason = kind, reason
        self._end_simulated(job_id, None)

    def _end_simulated(self, job_id: str, exit_code: int | None) -> None:
        run = self.simulated.pop(job_id)
        for timer in run.timers:
            timer.cancel()
        job = self.backend.jobs[job_id]
        if job.stop_kind == "host_lost":
            self._finish(job, None, None, job.stop_reason)
        elif job.stop_kind is not None:
            # Stopped like a container sent SIGTERM, which Docker reports as 143.
            self._finish(job, 143 if exit_code is None else exit_code, None, job.stop_reason)
        else:
            self._finish(job, exit_code, None, EXITED_REASON)

    def finish_simulated(self, job_ids: list[str], exit_code: int = 0) -> list[Job]:
        """End these running simulated attempts now with ``exit_code``; other ids are skipped."""
        finished = []
        for job_id in job_ids:
            if job_id in self.simulated:
                self._end_simulated(job_id, exit_code)
                finished.append(self.backend.jobs[job_id])
        return finished

    # -- while it runs -----------------------------------------------------------------------------'''),
    ('''    def _terminate_running(self, job: Job) -> None:
        if job.job_id in self.procs:
            self._signal_then_kill(job.job_id)''', '''    def _terminate_running(self, job: Job) -> None:
        if job.job_id in self.procs:
            self._signal_then_kill(job.job_id)
        elif job.job_id in self.simulated:
            self._end_simulated(job.job_id, None)'''),
    ('''    def _on_exit(self, job_id: str) -> None:
        proc = self.procs.get(job_id)
        if proc is None:
            return
        returncode = proc.popen.poll()
        if returncode is None:
            return  # not reaped yet; the pidfd stays readable and calls again
        loop = self._loop
        assert loop is not None
        loop.remove_reader(proc.pidfd)
        os.close(proc.pidfd)
''', '''    def _on_warm_exit(self, child: WarmChild) -> None:
        job_id = self._warm_jobs.pop(child.pid, None)
        if job_id is not None:
            self._on_exit(job_id)

    def _on_exit(self, job_id: str) -> None:
        proc = self.procs.get(job_id)
        if proc is None:
            return
        returncode = proc.popen.poll()
        if returncode is None:
            return  # not reaped yet; the pidfd stays readable and calls again
        loop = self._loop
        assert loop is not None
        if proc.pidfd >= 0:
            loop.remove_reader(proc.pidfd)
            os.close(proc.pidfd)
        else:
            self._warm_jobs.pop(proc.popen.pid, None)
'''),
])
print("applied")
