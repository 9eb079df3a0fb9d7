"""``airflow aws-batch prune``: deregister the derived job definitions nobody used for a while.

Each distinct ``jobDefinitionOverrides`` registers a revision (see :mod:`airflow_aws_batch.jobdefs`),
and without this they pile up for good. A revision is a candidate when it is ACTIVE, named
``<base>-<16 hex digits>`` and tagged with this deployment's ``deployment`` id (it was registered
by one of this deployment's schedulers). Its last use is the later of

* its ``last_used`` tag (a UTC day; every scheduler that uses the definition, of any deployment,
  brings it up to date at most once a day), and
* the creation time of the newest job, in any of the executor's job queues, that names it (ListJobs
  sees about the last 7 days; Batch forgets older jobs).

A candidate is deregistered when its last use is more than ``days`` days ago and no job names it
that is still queued or running. One without a readable ``last_used`` tag is kept and said so.
Dry run by default: the command says what it would deregister; ``--apply`` does it.

Not supported: definitions registered by releases that set no tags (they are not recognised as
this deployment's), and definitions shared by deployments whose schedulers cannot tag them (no
``batch:TagResource``): their use by those deployments is seen only through the jobs, for about a week.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_aws_batch.core.messages import ACTIVE_STATUSES
from airflow_aws_batch.core.ownership import DEPLOYMENT_TAG
from airflow_aws_batch.jobdefs import HASH_CHARS, LAST_USED_TAG

DERIVED_NAME = re.compile(rf"-[0-9a-f]{{{HASH_CHARS}}}$")
DAY_S = 86400
DEFAULT_DAYS = 30


@dataclass
class Revision:
    name: str
    revision: int
    arn: str
    #: Epoch seconds of the end of the ``last_used`` day (UTC); None when the tag is missing or unreadable.
    tagged_use_s: float | None
    #: Epoch seconds of the newest job that names this revision, if any was found.
    job_use_s: float | None = None
    #: A job that names it is still queued or running.
    in_use: bool = False

    @property
    def label(self) -> str:
        return f"{self.name}:{self.revision}"

    @property
    def last_use_s(self) -> float | None:
        uses = [u for u in (self.tagged_use_s, self.job_use_s) if u is not None]
        return max(uses) if uses else None


@dataclass
class Plan:
    deployment: str
    days: int
    now_s: float
    remove: list[Revision] = field(default_factory=list)
    keep: list[tuple[Revision, str]] = field(default_factory=list)

    def lines(self, applied: dict[str, str | None] | None = None) -> list[str]:
        """What the plan does (``applied``: ARN -> None when deregistered, else the error)."""
        out = []
        for rev in self.remove:
            why = f"last used {self._when(rev.last_use_s)}"
            if applied is None:
                out.append(f"would deregister {rev.label} ({why})")
            elif applied.get(rev.arn) is None:
                out.append(f"deregistered {rev.label} ({why})")
            else:
                out.append(f"FAILED to deregister {rev.label}: {applied[rev.arn]}")
        out.extend(f"keeping {rev.label} ({why})" for rev, why in self.keep)
        total = len(self.remove) + len(self.keep)
        verb = "would deregister" if applied is None else "deregistered"
        done = len(self.remove) if applied is None else sum(1 for e in applied.values() if e is None)
        summary = (
            f"{total} derived job definition revision(s) of deployment {self.deployment}; "
            f"{verb} {done} not used for {self.days} day(s)"
        )
        if applied is None and self.remove:
            summary += " (dry run: add --apply to deregister)"
        return [*out, summary]

    def _when(self, at_s: float | None) -> str:
        if at_s is None:
            return "never, as far as can be seen"
        days = max(0, int((self.now_s - at_s) // DAY_S))
        return f"{time.strftime('%Y-%m-%d', time.gmtime(at_s))}, {days} day(s) ago"


def _day_end_s(text: str) -> float | None:
    try:
        day = time.strptime(text, "%Y-%m-%d")
    except (TypeError, ValueError):
        return None
    return float(calendar.timegm(day) + DAY_S)


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        response = getattr(client, operation)(**kwargs, **({"nextToken": token} if token else {}))
        yield from response.get(key) or []
        token = response.get("nextToken")
        if not token:
            return


def candidates(client: Any, deployment: str) -> list[Revision]:
    """This deployment's ACTIVE derived revisions (see the module's rules)."""
    out = []
    for entry in _pages(client, "describe_job_definitions", "jobDefinitions", status="ACTIVE"):
        tags = entry.get("tags") or {}
        name = str(entry.get("jobDefinitionName", ""))
        if entry.get("status") != "ACTIVE" or tags.get(DEPLOYMENT_TAG) != deployment:
            continue
        if not DERIVED_NAME.search(name):
            continue
        out.append(
            Revision(
                name=name,
                revision=int(entry.get("revision", 0)),
                arn=str(entry["jobDefinitionArn"]),
                tagged_use_s=_day_end_s(str(tags.get(LAST_USED_TAG, ""))),
            )
        )
    return out


def _note_jobs(revisions: dict[str, Revision], summaries: Iterable[dict[str, Any]], cutoff_ms: int) -> None:
    for summary in summaries:
        rev = revisions.get(str(summary.get("jobDefinition", "")))
        if rev is None:
            continue
        if summary.get("status") in ACTIVE_STATUSES:
            rev.in_use = True
        created = summary.get("createdAt")
        if isinstance(created, int | float) and created >= cutoff_ms:
            at = created / 1000.0
            rev.job_use_s = at if rev.job_use_s is None else max(rev.job_use_s, at)


def plan_prune(
    client: Any, deployment: str, queues: Iterable[str], days: int, now_s: float | None = None
) -> Plan:
    """What prune would do, read through ``client`` (a boto3 Batch client); no change is made."""
    now_s = time.time() if now_s is None else now_s
    plan = Plan(deployment, days, now_s)
    found = candidates(client, deployment)
    if not found:
        return plan
    by_arn = {rev.arn: rev for rev in found}
    cutoff_s = now_s - days * DAY_S
    cutoff_ms = int(cutoff_s * 1000)
    for queue in dict.fromkeys(queues):
        # Every job created since the cutoff, whatever its status (with a filter, ListJobs ignores
        # jobStatus), then the jobs still queued or running, whenever they were created.
        since = [{"name": "AFTER_CREATED_AT", "values": [str(cutoff_ms)]}]
        _note_jobs(
            by_arn, _pages(client, "list_jobs", "jobSummaryList", jobQueue=queue, filters=since), cutoff_ms
        )
        for status in sorted(ACTIVE_STATUSES):
            jobs = _pages(client, "list_jobs", "jobSummaryList", jobQueue=queue, jobStatus=status)
            _note_jobs(by_arn, jobs, cutoff_ms)
    for rev in sorted(found, key=lambda r: (r.name, r.revision)):
        last = rev.last_use_s
        if rev.in_use:
            plan.keep.append((rev, "a job that names it is queued or running"))
        elif rev.tagged_use_s is None and rev.job_use_s is None:
            plan.keep.append((rev, f"no readable {LAST_USED_TAG} tag and no recent job: cannot tell"))
        elif last is not None and last >= cutoff_s:
            plan.keep.append((rev, f"last used {plan._when(last)}"))
        else:
            plan.remove.append(rev)
    return plan


def apply(client: Any, plan: Plan) -> dict[str, str | None]:
    """Deregister what ``plan`` removes; ARN -> None when done, else the error."""
    done: dict[str, str | None] = {}
    for rev in plan.remove:
        try:
            client.deregister_job_definition(jobDefinition=rev.arn)
            done[rev.arn] = None
        except Exception as exc:  # one refusal must not stop the others
            done[rev.arn] = str(exc)
    return done
