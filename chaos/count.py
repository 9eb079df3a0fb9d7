"""The chaos figures, as pure functions over plain dicts (tested in ``tests/chaos/test_count.py``).

Inputs are what the harness read from outside the executor:

- task-instance tries: rows of Airflow's ``task_instance`` (the current try) and
  ``task_instance_history`` (earlier tries), with ``dag_id, task_id, run_id, map_index, try_number,
  max_tries, state, external_executor_id`` (and ``id``);
- execution records: the JSON lines each task appends from its own code (``chaos.tasks``): one
  ``start`` line, a ``beat`` line every half second, one ``end`` line;
- Batch jobs: DescribeJobs dicts from localbatch (``jobId, status, statusReason, isTerminated,
  isCancelled, createdAt, tags``; the executor tags every single job with its try);
- array jobs: ListJobs lists an array's parent, never its children, and the children carry the
  parent's tags, which name the DAG, task, run and try but no map index. So the harness also
  describes every child (``<arrayJobId>:<i>``) and reads the array's workload object (the URL is the
  last element of the parent's command): workload ``i`` names the task instance and try child ``i``
  ran (:func:`expand_arrays`). Every count below sees a child as a job of that try, and never the
  parent, which runs nothing;
- process exits that the harness observed, and the text of every scheduler log.

Definitions (what each figure counts):

- **lost**: a task instance that is (a) not in a final state (success, failed, skipped,
  upstream_failed, removed) when the run ended or its deadline passed, or (b) ``failed`` on a try
  with retries left (``try_number <= max_tries``: Airflow would have retried a task whose own code
  failed, so something bypassed its retries), or (c) ``success`` although no execution of its
  current try recorded its end (the task's code did not finish, yet Airflow says it did). The task
  code never fails, so a failure after the last retry is infrastructure failing four times in a
  row: that is counted apart, as **failed, retries exhausted**.
- **run twice**: tries (dag, task, run, map index, try number) with more than one execution
  record; **ran concurrently**: those of them where two executions were alive at the same time. An
  execution is alive from its ``start`` to its ``end``, or to its last ``beat`` when it was killed
  (so an overlap shorter than the beat interval with a killed execution can be missed).
- **orphan jobs**: jobs still SUBMITTED..RUNNING after the run ended and the wait; and jobs that
  ended on their own (SUCCEEDED, or FAILED without TerminateJob/CancelJob) that their task
  instance never pointed at (*unrecorded*): the try their tags name does not hold their id in
  ``external_executor_id`` (``task_instance`` / ``task_instance_history``), and no scheduler log
  line ``Setting external_executor_id for <TaskInstance: ...> to <job id>`` names them for that
  task instance. The log lines are needed because Airflow keeps only a try's last job id, and
  archives no history row for a try that failed while still queued.
  Two kinds of unrecorded job are accounted for, so not orphans, and counted apart as
  **unrecorded, accounted for**: one that FAILED without running the task's code (its container
  never ran the task: image pull, host lost before the task began; nobody had to end it), and one
  that ran the only execution of its try (the scheduler died before Airflow saved its id, and the
  task finished before the next scheduler's adoption round: nothing was lost, run twice or left
  running). An unrecorded job that SUCCEEDED without running the code (a container started for a
  try that had moved on) or that ran a try another execution also ran stays an orphan.
- **scheduler crashes**: scheduler process exits that the harness did not cause.
- **executor errors**: tracebacks in the scheduler logs that mention ``airflow_aws_batch``, but for
  one kind counted apart as **exit signals delivered again**: the scheduler's exit on SIGTERM
  (Airflow's handler raising ``SystemExit`` through the executor's guard that wraps it) raised
  while a weakref callback ran, which Python drops with an ``Exception ignored in:`` traceback, and
  which the guard then delivers again (its warning follows in the same log before any restart).
- **status events**: the job state change events localbatch's rule matched (``emitted``), delivered
  to the executor's queue, and struck by each event fault (dropped, duplicated, delayed,
  reordered), summed over its lifetimes, and the executor's ReceiveMessage calls (``received``).
  Targets: delivered, each fault and received at least 1, so that a run in which the executor
  silently stopped reading events, or a fault never struck, misses instead of passing untested.
  Its SQS calls are not Batch API calls: ``api_calls`` counts them apart.
- **arrays / array children**: array jobs the executor submitted during the run and their children.
  The target is at least one array, so that a run where grouping silently stopped (arrays off, or
  never enough tasks due together) misses instead of passing without testing arrays. **Array
  mismatches** (target 0): children whose workload names another DAG, task, run or try than the
  array's tags, or whose workload cannot be read.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaos.dag import MULTI_PHASE_TASK_IDS

#: ``outcome`` of an execution that handed its try back to Airflow to be continued (chaos.tasks).
HANDED_BACK = frozenset({"defer", "reschedule"})
FINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
ACTIVE_JOB_STATUSES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"})
#: statusReason prefix -> class of a FAILED job that was not terminated (localbatch's and AWS's texts).
REASON_CLASSES: tuple[tuple[str, str], ...] = (
    ("CannotPullContainerError", "image pull"),
    ("CannotStartContainerError", "container start"),
    ("Host EC2", "host lost"),
    ("localbatch restarted", "localbatch restart"),
    ("localbatch stopped", "localbatch restart"),
    ("localbatch: the warm interpreter", "warm interpreter lost"),
    ("Essential container in task exited", "exited non-zero"),
    ("Job attempt duration exceeded timeout", "timeout"),
)
EXECUTOR_PACKAGE = "airflow_aws_batch"

TryKey = tuple[str, str, str, int, int]


def try_key(row: Mapping[str, Any]) -> TryKey:
    """(dag_id, task_id, run_id, map_index, try_number) of a task-instance row or an execution record."""
    return (
        str(row["dag_id"]),
        str(row["task_id"]),
        str(row["run_id"]),
        int(row["map_index"]),
        int(row["try_number"]),
    )


def label(key: TryKey) -> str:
    dag_id, task_id, run_id, map_index, try_number = key
    index = f"[{map_index}]" if map_index >= 0 else ""
    return f"{dag_id}/{run_id}/{task_id}{index} try {try_number}"


# --- executions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    """One run of a task's code in one process, as its records tell it."""

    key: TryKey
    ti_id: str
    pid: int
    start: float
    last_seen: float
    ended: bool
    job_id: str | None = None
    #: Which of a try's legitimate executions this is (``execute``, ``resume <n>``, ``poke <n>``);
    #: empty for a task whose try runs its code once.
    phase: str = ""
    #: What its ``end`` record says the code did: ``done``, ``defer``, ``reschedule`` (None: no end,
    #: or a record from before outcomes were written, read as ``done``).
    outcome: str | None = None

    @property
    def unit(self) -> tuple[TryKey, str]:
        """What must run once: the try, and the phase of it."""
        return (self.key, self.phase)

    @property
    def done(self) -> bool:
        """It ran the try's code to its end (not to a deferral or a reschedule)."""
        return self.ended and self.outcome not in HANDED_BACK

    def overlaps(self, other: Execution) -> bool:
        return self.start < other.last_seen and other.start < self.last_seen

    def as_dict(self) -> dict[str, Any]:
        return {
            "ti_id": self.ti_id,
            "pid": self.pid,
            "start": self.start,
            "last_seen": self.last_seen,
            "ended": self.ended,
            "job_id": self.job_id,
            **({"phase": self.phase, "outcome": self.outcome} if self.phase else {}),
        }


def executions(records: Iterable[Mapping[str, Any]]) -> list[Execution]:
    """Merge start/beat/end records into executions, one per (try, pid, start time)."""
    merged: dict[tuple[TryKey, int, float], dict[str, Any]] = {}
    for record in records:
        key = try_key(record)
        ident = (key, int(record["pid"]), float(record["start"]))
        entry = merged.setdefault(
            ident,
            {
                "ti_id": str(record.get("ti_id")),
                "job_id": record.get("job_id"),
                "last_seen": float(record["start"]),
                "ended": False,
                "phase": str(record.get("phase") or ""),
                "outcome": None,
            },
        )
        seen = float(record.get("end") or record.get("t") or record["start"])
        entry["last_seen"] = max(entry["last_seen"], seen)
        if record.get("event") == "end":
            entry["ended"] = True
            entry["outcome"] = record.get("outcome")
    return sorted(
        (
            Execution(
                key, e["ti_id"], pid, start, e["last_seen"], e["ended"], e["job_id"], e["phase"], e["outcome"]
            )
            for (key, pid, start), e in merged.items()
        ),
        key=lambda e: (e.key, e.start),
    )


def _by_unit(runs: Iterable[Execution]) -> dict[tuple[TryKey, str], list[Execution]]:
    grouped: dict[tuple[TryKey, str], list[Execution]] = defaultdict(list)
    for run in runs:
        grouped[run.unit].append(run)
    return grouped


def unit_label(unit: tuple[TryKey, str]) -> str:
    key, phase = unit
    return f"{label(key)} {phase}" if phase else label(key)


def run_twice(runs: Iterable[Execution]) -> list[dict[str, Any]]:
    """Tries (phases of a try, for a deferring task or a sensor) whose code ran more than once."""
    return [
        {"try": unit_label(unit), "executions": [r.as_dict() for r in group]}
        for unit, group in sorted(_by_unit(runs).items())
        if len(group) > 1
    ]


def ran_concurrently(runs: Iterable[Execution]) -> list[dict[str, Any]]:
    """Tries (or phases of a try) whose code ran in two processes at the same time."""
    found = []
    for unit, group in sorted(_by_unit(runs).items()):
        pairs = [(a, b) for i, a in enumerate(group) for b in group[i + 1 :] if a.overlaps(b)]
        if pairs:
            found.append(
                {
                    "try": unit_label(unit),
                    "pids": sorted({r.pid for pair in pairs for r in pair}),
                    "overlap_s": max(min(a.last_seen, b.last_seen) - max(a.start, b.start) for a, b in pairs),
                }
            )
    return found


# --- task instances -------------------------------------------------------------------------------


def lost(tis: Sequence[Mapping[str, Any]], runs: Iterable[Execution]) -> list[dict[str, Any]]:
    """Task instances (current tries) lost by the system; see the module docstring."""
    finished = {run.key for run in runs if run.done}
    found = []
    for ti in tis:
        key, state = try_key(ti), ti.get("state")
        if state not in FINAL_TI_STATES:
            why = f"not in a final state at the end: {state}"
        elif state == "failed" and int(ti["try_number"]) <= int(ti["max_tries"]):
            left = int(ti["max_tries"]) - int(ti["try_number"]) + 1
            why = f"failed with {left} retries left"
        elif state == "success" and key not in finished:
            why = "success, but no execution of this try recorded its end"
        else:
            continue
        found.append({"try": label(key), "state": state, "why": why})
    return found


def failed_retries_exhausted(tis: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"try": label(try_key(ti)), "max_tries": ti["max_tries"]}
        for ti in tis
        if ti.get("state") == "failed" and int(ti["try_number"]) > int(ti["max_tries"])
    ]


# --- Batch jobs -----------------------------------------------------------------------------------


def job_outcome(job: Mapping[str, Any]) -> str:
    """SUCCEEDED, an active status, or ``FAILED: <class>`` (``terminated`` for TerminateJob/CancelJob)."""
    status = str(job.get("status"))
    if status != "FAILED":
        return status
    if job.get("isTerminated") or job.get("isCancelled"):
        return "FAILED: terminated"
    reason = str(job.get("statusReason") or "")
    for prefix, name in REASON_CLASSES:
        if reason.startswith(prefix):
            return f"FAILED: {name}"
    return "FAILED: other"


def job_outcomes(jobs: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(job_outcome(job) for job in jobs).items()))


def job_try_key(job: Mapping[str, Any]) -> TryKey | None:
    """The try a job's tags name, or None when it carries no (or unreadable) try tags."""
    tags = job.get("tags") or {}
    try:
        return try_key(tags)
    except (KeyError, ValueError):
        return None


#: Fields of a try, as tags and in the identity the harness reads from an array's workloads.
TRY_FIELDS = ("dag_id", "task_id", "run_id", "map_index", "try_number")
#: The fields an array's tags must share with every child's workload (the executor's grouping key).
ARRAY_TAGS = ("dag_id", "task_id", "run_id", "try_number")


def is_array_parent(job: Mapping[str, Any]) -> bool:
    return bool((job.get("arrayProperties") or {}).get("size"))


def expand_arrays(
    jobs: Sequence[Mapping[str, Any]],
    children: Sequence[Mapping[str, Any]],
    arrays: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the jobs that ran tasks, array mismatches): single jobs as listed; each array parent
    replaced by its children, each child's tags completed from its workload (``map_index``, and the
    other try fields, which the workload names authoritatively).

    ``children``: DescribeJobs of ``<arrayJobId>:<i>``; ``arrays``: per parent ``jobId``, ``size``
    and ``tries`` (child index -> the ``ti`` fields of its workload) or ``error``. A child whose
    workload is unknown keeps its parent's tags only, so it names no try (and counts as such).
    """
    described = {str(child.get("jobId")): child for child in children}
    read = {str(array.get("jobId")): array for array in arrays}
    expanded: list[dict[str, Any]] = []
    mismatches: list[dict[str, Any]] = []
    for job in jobs:
        if not is_array_parent(job):
            expanded.append(dict(job))
            continue
        parent_id, size = str(job.get("jobId")), int(job["arrayProperties"]["size"])
        array = read.get(parent_id, {})
        tries = list(array.get("tries") or [])
        parent_tags = dict(job.get("tags") or {})
        for index in range(size):
            child_id = f"{parent_id}:{index}"
            child = dict(described.get(child_id) or {"jobId": child_id, "status": "NOT DESCRIBED"})
            child["arrayJobId"] = parent_id
            tags = dict(child.get("tags") or parent_tags)
            if index >= len(tries):
                why = array.get("error") or f"the object holds {len(tries)} workloads, the array {size}"
                mismatches.append({"job_id": child_id, "why": why})
                child["tags"] = {k: v for k, v in tags.items() if k != "map_index"}
                expanded.append(child)
                continue
            workload = tries[index]
            differs = {
                name: (tags.get(name), workload.get(name))
                for name in ARRAY_TAGS
                if str(tags.get(name)) != str(workload.get(name))
            }
            if differs:
                mismatches.append(
                    {"job_id": child_id, "why": "workload differs from the array's tags", **differs}
                )
            child["tags"] = {**tags, **{name: str(workload.get(name)) for name in TRY_FIELDS}}
            child["workload_ti_id"] = workload.get("ti_id")
            expanded.append(child)
    return expanded, mismatches


def array_parents(jobs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The array jobs among the listed jobs: id, size, status and its children's status counts."""
    return [
        {
            "job_id": job.get("jobId"),
            "size": int(job["arrayProperties"]["size"]),
            "status": job.get("status"),
            "children": job["arrayProperties"].get("statusSummary"),
            "tags": job.get("tags"),
        }
        for job in jobs
        if is_array_parent(job)
    ]


#: Logged by Airflow's scheduler each time it saves an executor's job id on a task instance, e.g.
#: ``Setting external_executor_id for <TaskInstance: chaos.work manual__... map_index=6 [queued]
#: ti_id=...> to 8eac9e07-...``.
_POINTER = re.compile(
    r"Setting external_executor_id for <TaskInstance: (?P<dag_task>\S+) (?P<run_id>\S+)"
    r"(?: map_index=(?P<map_index>-?\d+))? \[[^\]]*\][^>]*> to (?P<job_id>\S+)"
)

TiKey = tuple[str, str, str, int]


def logged_pointers(logs: Mapping[str, str], tis: Iterable[Mapping[str, Any]]) -> dict[str, set[TiKey]]:
    """Job id -> task instances (dag, task, run, map index) the scheduler logs say it was saved on.

    ``dag_id.task_id`` is split by matching the task instances' own ids, since either may hold dots.
    """
    names = {f"{ti['dag_id']}.{ti['task_id']}": (str(ti["dag_id"]), str(ti["task_id"])) for ti in tis}
    found: dict[str, set[TiKey]] = defaultdict(set)
    for text in logs.values():
        for match in _POINTER.finditer(_ANSI.sub("", text)):
            dag_task = names.get(match["dag_task"])
            if dag_task is not None:
                index = int(match["map_index"]) if match["map_index"] is not None else -1
                found[match["job_id"]].add((*dag_task, match["run_id"], index))
    return found


def orphan_jobs(
    jobs: Sequence[Mapping[str, Any]],
    tries: Iterable[Mapping[str, Any]],
    runs: Iterable[Execution] = (),
    logged: Mapping[str, set[TiKey]] | None = None,
) -> list[dict[str, Any]]:
    """Jobs nobody accounts for; see the module docstring.

    ``tries``: task_instance + history rows; ``logged``: :func:`logged_pointers`. ``runs`` only adds
    evidence: the pids of executions whose records name the job (it ran the task's code).
    """
    return [item for kind, item in _classify_jobs(jobs, tries, runs, logged) if kind == "orphan"]


def unrecorded_accounted(
    jobs: Sequence[Mapping[str, Any]],
    tries: Iterable[Mapping[str, Any]],
    runs: Iterable[Execution] = (),
    logged: Mapping[str, set[TiKey]] | None = None,
) -> list[dict[str, Any]]:
    """The unrecorded jobs :func:`orphan_jobs` leaves out, each with why (shown, no target)."""
    return [item for kind, item in _classify_jobs(jobs, tries, runs, logged) if kind == "accounted"]


def _classify_jobs(
    jobs: Sequence[Mapping[str, Any]],
    tries: Iterable[Mapping[str, Any]],
    runs: Iterable[Execution],
    logged: Mapping[str, set[TiKey]] | None,
) -> list[tuple[str, dict[str, Any]]]:
    """``("orphan" | "accounted", evidence with why)`` for each job that is not plainly recorded."""
    ran_in, executions_of, pointers = _job_context(tries, runs)
    found: list[tuple[str, dict[str, Any]]] = []
    for job in jobs:
        status, key = str(job.get("status")), job_try_key(job)
        job_id = str(job.get("jobId"))
        outcome = job_outcome(job)
        evidence = {
            "job_id": job.get("jobId"),
            "status": status,
            "reason": job.get("statusReason"),
            "try": label(key) if key else None,
            "ran_code_in_pids": sorted(run.pid for run in ran_in.get(job_id, [])),
        }
        if status in ACTIVE_JOB_STATUSES:
            found.append(("orphan", {**evidence, "why": f"still {status} after the run ended"}))
            continue
        if outcome == "FAILED: terminated":
            continue
        if key is None:
            why = "ended on its own and carries no try tags"
            if job.get("arrayJobId"):
                why = "array child that ended on its own; no workload names its try"
            found.append(("orphan", {**evidence, "why": why}))
            continue
        if job_id in pointers.get(key, set()) or key[:4] in (logged or {}).get(job_id, set()):
            continue
        accounted = accounted_for(job, key, ran_in, executions_of)
        if accounted is not None:
            found.append(("accounted", {**evidence, "why": accounted}))
            continue
        points_at = sorted(pointers.get(key, set())) or "no job"
        why = f"{outcome} on its own, never saved on its task instance; its try points at {points_at}"
        found.append(("orphan", {**evidence, "why": why}))
    return found


def _job_context(
    tries: Iterable[Mapping[str, Any]], runs: Iterable[Execution]
) -> tuple[dict[str, list[Execution]], Counter[tuple[TryKey, str]], dict[TryKey, set[str]]]:
    """(job id -> the executions that ran the code in it, executions per try and phase, try -> job ids
    saved on it)."""
    ran_in: dict[str, list[Execution]] = defaultdict(list)
    executions_of: Counter[tuple[TryKey, str]] = Counter()
    for run in runs:
        executions_of[run.unit] += 1
        if run.job_id:
            ran_in[run.job_id].append(run)
    pointers: dict[TryKey, set[str]] = defaultdict(set)
    for row in tries:
        if row.get("external_executor_id"):
            pointers[try_key(row)].add(str(row["external_executor_id"]))
    return ran_in, executions_of, pointers


def accounted_for(
    job: Mapping[str, Any],
    key: TryKey,
    ran_in: Mapping[str, list[Execution]],
    executions_of: Mapping[tuple[TryKey, str], int],
) -> str | None:
    """Why an unrecorded job that ended on its own is accounted for (not an orphan), or None.

    A deferring task's or a sensor's try runs one job per phase (execute, each resume, each poke), so
    "the only execution" is of the phase the job ran, not of the whole try.
    """
    ran = ran_in.get(str(job.get("jobId")), [])
    if not ran and job.get("status") == "FAILED":
        return "failed without running the task's code"
    if len(ran) == 1 and ran[0].key == key and executions_of.get(ran[0].unit, 0) == 1:
        return "ran the only execution of its try" + (f" ({ran[0].phase})" if ran[0].phase else "")
    return None


# --- processes and logs ---------------------------------------------------------------------------


def scheduler_crashes(exits: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Scheduler exits the harness did not cause (``exits``: component, caused_by_harness, ...)."""
    return [dict(e) for e in exits if e.get("component") == "scheduler" and not e.get("caused_by_harness")]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TRACEBACK = "Traceback (most recent call last):"
_CHAIN = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


def tracebacks(text: str) -> list[tuple[int, str]]:
    """(1-based line number, text) of every Python traceback in a log, chained ones as one.

    Reads plain tracebacks (Airflow's default) and rich's boxed ones (``DEV=1``).
    """
    lines = [_ANSI.sub("", line) for line in text.splitlines()]
    found: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "╭" in line and "Traceback" in line:
            start = i
            while i < len(lines) and not lines[i].lstrip().startswith("╰"):
                i += 1
            end = min(i + 2, len(lines))  # the bottom of the box, then the exception line
            found.append((start + 1, "\n".join(lines[start:end])))
            i = end
            continue
        if _TRACEBACK not in line:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines):
            current = lines[i]
            if current.startswith((" ", "\t")) or (current.strip() == "" and _chained(lines, i)):
                i += 1
                continue
            if current.strip() in _CHAIN or current.startswith(_TRACEBACK):
                i += 1
                continue
            i += 1  # the exception line ends the traceback, unless another of its chain follows
            if not (i < len(lines) and lines[i].strip() == "" and _chained(lines, i)):
                break
        found.append((start + 1, "\n".join(lines[start:i])))
    return found


def _chained(lines: Sequence[str], i: int) -> bool:
    """Whether the blank line at ``i`` separates two tracebacks of one chain."""
    following = next((line for line in lines[i + 1 :] if line.strip()), "")
    return following.strip() in _CHAIN or following.startswith(_TRACEBACK)


#: Printed by Python before the traceback of an exception it drops (raised in a weakref callback).
_IGNORED = "Exception ignored in:"
#: The executor's exit signal guard (``exit_signals``), delivering again a signal whose exit Python
#: dropped; a component's restart in a devstack log.
_REDELIVERED = "did not stop the scheduler (Python drops an exception raised while a weakref callback runs)"
_RESTARTED = "=== devstack: starting"


def _exit_redelivered(lines: Sequence[str], line_no: int, text: str) -> bool:
    """Whether the traceback at ``line_no`` is the scheduler's own exit on a signal (Airflow's
    handler raising SystemExit, through the executor's guard that wraps it) that Python dropped
    because it ran inside a weakref callback, and that the guard then delivered again (its warning
    follows before the process restarted): handled by the executor, not an error of it."""
    last = text.strip().splitlines()[-1] if text.strip() else ""
    if not last.startswith("SystemExit") or line_no < 2 or _IGNORED not in lines[line_no - 2]:
        return False
    for following in lines[line_no:]:
        if _REDELIVERED in following:
            return True
        if following.startswith(_RESTARTED):
            return False
    return False


def exit_signals_redelivered(logs: Mapping[str, str]) -> list[dict[str, Any]]:
    """The exits on a signal that Python dropped and the executor delivered again (see
    :func:`_exit_redelivered`); counted apart from :func:`executor_errors`."""
    found = []
    for name, log_text in sorted(logs.items()):
        lines = [_ANSI.sub("", line) for line in log_text.splitlines()]
        for line_no, text in tracebacks(log_text):
            if _exit_redelivered(lines, line_no, text):
                found.append({"log": name, "line": line_no, "traceback": text})
    return found


def executor_errors(logs: Mapping[str, str]) -> list[dict[str, Any]]:
    """Tracebacks that mention the executor's package, from each named log's text, but for exits
    Python dropped and the executor delivered again (:func:`exit_signals_redelivered`)."""
    found = []
    for name, log_text in sorted(logs.items()):
        lines = [_ANSI.sub("", line) for line in log_text.splitlines()]
        for line_no, text in tracebacks(log_text):
            if EXECUTOR_PACKAGE in text and not _exit_redelivered(lines, line_no, text):
                found.append({"log": name, "line": line_no, "traceback": text})
    return found


# --- tries Airflow reset or failed on the executor's word ----------------------------------------

#: Logged by Airflow's scheduler when it resets the task instances the executor did not adopt
#: (``adopt_or_reset_orphaned_tasks``): ``Reset the following 2 orphaned TaskInstances:`` then one
#: ``<TaskInstance: dag.task run [map_index=i ][state] ti_id=...>`` a line, each tab-indented. The repr
#: is taken before Airflow archives the try and gives the task instance a new id, so ``ti_id`` is the
#: id the reset try's executions recorded.
_RESET_HEADER = re.compile(r"Reset the following \d+ orphaned TaskInstances:")
_TI_ID = re.compile(r"<TaskInstance: [^>]*\[(?P<state>[^\]]*)\] ti_id=(?P<ti_id>[0-9a-fA-F-]{32,36})>")


@dataclass(frozen=True)
class Reset:
    """A try a scheduler reset: the log that says so and the task instance's state at the reset."""

    log: str
    state: str


def reset_tis(logs: Mapping[str, str]) -> dict[str, Reset]:
    """Task instance id -> its reset, for every try a scheduler reset."""
    found: dict[str, Reset] = {}
    for name, text in sorted(logs.items()):
        lines = [_ANSI.sub("", line) for line in text.splitlines()]
        for i, line in enumerate(lines):
            if not _RESET_HEADER.search(line):
                continue
            block = [line]
            for following in lines[i + 1 :]:
                if not following[:1].isspace() or "<TaskInstance:" not in following:
                    break
                block.append(following)
            for text_line in block:
                for match in _TI_ID.finditer(text_line):
                    found.setdefault(match["ti_id"].lower(), Reset(name, match["state"]))
    return found


def _resets(
    runs: Iterable[Execution], logs: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(uncounted, between phases): the executions of the tries a scheduler reset, split by whether
    Airflow took what they did before the reset (see :func:`reset_executions`)."""
    reset = reset_tis(logs)
    of_reset: dict[str, list[Execution]] = defaultdict(list)
    for run in runs:
        if run.ti_id.lower() in reset:
            of_reset[run.ti_id.lower()].append(run)
    uncounted: list[dict[str, Any]] = []
    between: list[dict[str, Any]] = []
    for ti_id, group in sorted(of_reset.items()):
        found = reset[ti_id]
        group.sort(key=lambda run: run.start)
        for i, run in enumerate(group):
            item = {"try": unit_label(run.unit), "reset_in": found.log, "state_at_reset": found.state}
            item.update(run.as_dict())
            handed_back = run.ended and run.outcome in HANDED_BACK
            # A hand-back Airflow took: a later phase of the try ran, or the try waited, queued or
            # scheduled, for its next phase when it was reset (it could not have left RUNNING else).
            taken = handed_back and (i + 1 < len(group) or found.state != "running")
            (between if taken else uncounted).append(item)
    return uncounted, between


def reset_executions(runs: Iterable[Execution], logs: Mapping[str, str]) -> list[dict[str, Any]]:
    """Executions whose work a scheduler's reset threw away: the code ran for a try, then Airflow reset
    that try (``Reset the following N orphaned TaskInstances``; it archives the try as abandoned and
    runs the task again as its next try) without having taken what the execution did: it ran to its
    end or was cut short (Airflow never counted its success), or it handed its try back (deferral,
    reschedule) while Airflow still had the try running.

    An execution that handed its try back before the reset, Airflow having taken it (the try then
    waited for its next phase, or a later phase ran), is not counted: Airflow reset a try that was
    waiting, queued or scheduled, for a job not yet running, and starts the deferral or sensor over
    in the next try as it does for any executor (:func:`reset_between_phases`, shown apart).
    """
    return _resets(runs, logs)[0]


def reset_between_phases(runs: Iterable[Execution], logs: Mapping[str, str]) -> list[dict[str, Any]]:
    """Executions of a reset try whose hand-back Airflow had taken (see :func:`reset_executions`)."""
    return _resets(runs, logs)[1]


STATE_MISMATCH = "state mismatch"
#: The executor's task event for a SUCCEEDED job whose try Airflow had moved on (no state reported).
SUCCESS_NOT_REPORTED = "aws_batch_success_not_reported"
#: ``extra`` of Airflow's "state mismatch" log entry: ``Executor <name> reported that the task instance
#: <TaskInstance: ...> finished with state success, but the task instance's state attribute is
#: scheduled. ...``
_MISMATCH = re.compile(
    r"finished with state (?P<reported>\w+), but the task instance's state attribute is (?P<was>\w+)"
)
#: Job outcomes that are an infrastructure failure of the job itself (injected by the fault matrix):
#: an executor's FAILED for such a job reports what happened, not a mistake.
#: What localbatch says in the answers it faults on purpose (``Internal server error (injected fault)``).
INJECTED = "injected fault"
FAULT_OUTCOMES = frozenset(
    f"FAILED: {name}" for name in ("image pull", "container start", "host lost", "localbatch restart")
)


def failed_by_executor(
    task_events: Iterable[Mapping[str, Any]],
    jobs: Iterable[Mapping[str, Any]],
    task_ids: Iterable[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(counted, explained): tries of ``task_ids`` (the deferring and rescheduling tasks) that Airflow
    failed on the executor's event, read from its "state mismatch" log entries (Airflow fails the try
    of a task instance still scheduled, queued or running when the executor reports it finished:
    "killed externally").

    Counted: a SUCCESS so read (the job did its part, the task had handed its try back, and Airflow
    failed the try), and a FAILED that no fault explains. Explained: a FAILED for a try that one of
    its jobs really failed (image pull, host lost, localbatch restart), or whose every SubmitJob
    failed: the executor gave up submitting (``SubmitJob failed N times``) and localbatch's own
    answers to that try's submits say they were injected faults (the executor's task events quote
    them). The executor reported what happened.
    """
    wanted = set(task_ids)
    faulted: set[TryKey] = set()
    for job in jobs:
        key = job_try_key(job)
        if key is not None and job_outcome(job) in FAULT_OUTCOMES:
            faulted.add(key)
    events = list(task_events)
    # Tries whose SubmitJob answers localbatch faulted on purpose, as the executor's events quote them.
    submit_faulted = {
        try_key(event)
        for event in events
        if str(event.get("event", "")).startswith("aws_batch_submit") and INJECTED in str(event.get("extra"))
    }
    counted: list[dict[str, Any]] = []
    explained: list[dict[str, Any]] = []
    for event in events:
        if event.get("event") != STATE_MISMATCH or event.get("task_id") not in wanted:
            continue
        key = try_key(event)
        match = _MISMATCH.search(str(event.get("extra") or ""))
        reported, was = (match["reported"], match["was"]) if match else (None, None)
        item = {"try": label(key), "reported": reported, "state_was": was, "at": event.get("dttm")}
        gave_up = "Extra info: SubmitJob failed" in str(event.get("extra") or "")
        if reported != "success" and key in faulted:
            explained.append({**item, "why": "a job of this try failed for an infrastructure fault"})
        elif reported != "success" and gave_up and key in submit_faulted:
            explained.append({**item, "why": "every SubmitJob of this try met an injected fault"})
        else:
            counted.append(item)
    return counted, explained


# --- API calls ------------------------------------------------------------------------------------


#: The SQS operations the executor's status events thread calls (not Batch API calls).
SQS_OPERATIONS = frozenset(
    {
        "ReceiveMessage",
        "DeleteMessage",
        "DeleteMessageBatch",
        "GetQueueAttributes",
        "GetQueueUrl",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
    }
)


def api_calls(stats_parts: Iterable[Mapping[str, Any]], tasks: int) -> dict[str, Any]:
    """Requests per operation summed over localbatch's lifetimes (a restart zeroes its stats): the
    Batch (and Logs) API's in ``total``, ``per_task`` and ``by_operation``; the status events
    thread's SQS calls apart, in ``sqs_by_operation``. Faulted answers count both."""
    totals: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    for part in stats_parts:
        for operation, counts in (part.get("operations", part) or {}).items():
            totals[operation] += int(counts.get("requests", 0))
            for name in ("throttled", "server_errors", "lost_responses"):
                faults[name] += int(counts.get(name, 0))
    batch = {op: n for op, n in sorted(totals.items()) if op not in SQS_OPERATIONS}
    total = sum(batch.values())
    return {
        "total": total,
        "per_task": round(total / tasks, 2) if tasks else None,
        "by_operation": batch,
        "sqs_by_operation": {op: n for op, n in sorted(totals.items()) if op in SQS_OPERATIONS},
        # Answers localbatch faulted (server_errors include the lost SubmitJob answers).
        "faulted": {name: faults[name] for name in ("throttled", "server_errors", "lost_responses")},
    }


#: localbatch's counts of the job state change events (``GET /_localbatch/health``'s ``events``).
STATUS_EVENT_COUNTS = (
    "emitted",
    "delivered",
    "dropped",
    "duplicated",
    "delayed",
    "reordered",
    "undeliverable",
)
#: Those that must be above 0 in a run: events reached the queue and each injected event fault struck.
STATUS_EVENTS_MET = ("delivered", "dropped", "duplicated", "delayed", "reordered")


def status_events(parts: Iterable[Mapping[str, Any]], sqs_by_operation: Mapping[str, int]) -> dict[str, int]:
    """The run's status events, summed over localbatch's lifetimes (a restart zeroes its counts; no
    job exists before the trigger, so none is counted from the stack's set-up), and ``received``:
    the ReceiveMessage calls that read them (the executor's events thread: none means it never
    looked at the queue)."""
    totals: Counter[str] = Counter()
    for part in parts:
        for name in STATUS_EVENT_COUNTS:
            totals[name] += int(part.get(name, 0))
    return {
        **{name: totals[name] for name in STATUS_EVENT_COUNTS},
        "received": sqs_by_operation.get("ReceiveMessage", 0),
    }


# --- targets --------------------------------------------------------------------------------------

#: Figures whose target is 0, in table order.
ZERO_TARGETS = (
    "lost",
    "run_twice",
    "ran_concurrently",
    "orphan_jobs",
    "scheduler_crashes",
    "executor_errors",
    "reset_executions",
    "failed_by_executor",
)
SIGTERM_EXIT_LIMIT_S = 30.0


def misses(figures: Mapping[str, Any]) -> list[str]:
    """The targets one seed's figures miss, as short sentences (empty when every target is met)."""
    found = [f"{name} = {figures.get(name)} (target 0)" for name in ZERO_TARGETS if figures.get(name) != 0]
    exit_s = figures.get("sigterm_exit_s")
    if exit_s is None or exit_s > SIGTERM_EXIT_LIMIT_S:
        found.append(f"sigterm_exit_s = {exit_s} (target <= {SIGTERM_EXIT_LIMIT_S:.0f})")
    if not figures.get("arrays"):
        found.append(f"arrays = {figures.get('arrays')} (target >= 1: no array job formed)")
    if figures.get("array_mismatches"):
        found.append(f"array_mismatches = {figures['array_mismatches']} (target 0)")
    if figures.get("not_performed"):
        found.append(f"fault steps not performed: {', '.join(figures['not_performed'])}")
    events = figures.get("status_events") or {}
    for name in (*STATUS_EVENTS_MET, "received"):
        if not events.get(name):
            found.append(
                f"status_events.{name} = {events.get(name)} (target >= 1: status events or one of "
                "their faults were not in play)"
            )
    return found


def figures(raw: Mapping[str, Any], tasks: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(figures, evidence) of one seed from what the harness collected (keys as ``chaos.drive`` sets)."""
    tis = list(raw.get("task_instances", []))
    runs = executions(raw.get("records", []))
    listed = list(raw.get("jobs", []))
    jobs, mismatches = expand_arrays(listed, raw.get("array_children", []), raw.get("arrays", []))
    logged = logged_pointers(raw.get("scheduler_logs", {}), tis)
    tries = [*tis, *raw.get("history", [])]
    failed, explained = failed_by_executor(raw.get("task_events", []), jobs, MULTI_PHASE_TASK_IDS)
    events = list(raw.get("task_events", []))
    found = {
        "lost": lost(tis, runs),
        "run_twice": run_twice(runs),
        "ran_concurrently": ran_concurrently(runs),
        "orphan_jobs": orphan_jobs(jobs, tries, runs, logged),
        "scheduler_crashes": scheduler_crashes(raw.get("exits", [])),
        "executor_errors": executor_errors(raw.get("scheduler_logs", {})),
        "exit_signals_redelivered": exit_signals_redelivered(raw.get("scheduler_logs", {})),
        "reset_executions": reset_executions(runs, raw.get("scheduler_logs", {})),
        "reset_between_phases": reset_between_phases(runs, raw.get("scheduler_logs", {})),
        "failed_by_executor": failed,
        "failed_by_executor_explained": explained,
        "success_not_reported": [e for e in events if e.get("event") == SUCCESS_NOT_REPORTED],
        "failed_retries_exhausted": failed_retries_exhausted(tis),
        "unrecorded_accounted": unrecorded_accounted(jobs, tries, runs, logged),
        "arrays": array_parents(listed),
        "array_mismatches": mismatches,
    }
    result: dict[str, Any] = {name: len(items) for name, items in found.items()}
    calls = api_calls(raw.get("stats_parts", []), tasks)
    result.update(
        {
            "sigterm_exit_s": raw.get("sigterm_exit_s"),
            "not_performed": list(raw.get("not_performed", [])),
            "run_state": raw.get("run_state"),
            "run_s": raw.get("run_s"),
            "task_instances": len(tis),
            "executions": len(runs),
            "jobs": job_outcomes(jobs),
            "array_children": sum(array["size"] for array in found["arrays"]),
            "api_calls": calls,
            "status_events": status_events(raw.get("status_events_parts", []), calls["sqs_by_operation"]),
        }
    )
    return result, found
