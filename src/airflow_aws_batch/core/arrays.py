"""Which due submits go out together as one AWS Batch array job. Pure: no I/O, no clock.

Due :class:`Submit` commands whose requests are identical except for the command, the job name,
our per-task tags and the workload waiting to be written (under ``workloads_key``) are grouped, in
the order they came, into :class:`SubmitArray` commands of ``min_size`` to ``max_size`` (10,000,
Batch's limit) children. The runtime writes the children's
workloads as one object and sends one SubmitJob with ``arrayProperties.size``; child ``i`` of parent
``P`` is Batch job ``P:i``, and the core watches it like any other job.

Rules kept here:

* Only first attempts group (the caller says which those are): a child that failed, and a call whose
  answer was lost (``lookup_after_ms``), go out alone, as ordinary single jobs.
* ``dag_id``, ``task_id``, ``run_id`` and ``try_number`` are part of the grouping key, not per-task
  tags: an array is one try of one task's mapped instances in one DAG run. Children carry their
  parent's tags, so this keeps cost attribution by DAG and task, job names ``<prefix>-<dag>-<task>``
  and adoption, which tells a stale id from the current try's job by ``try_number``.
* The array's tags are the shared request's tags plus every per-task tag whose value all children
  share, and a ``submission`` of its own (see :func:`array_submission`): one lookup finds the array
  after a lost answer, and the lookup for one child's own SubmitJob (alone, after the array's) never
  takes the array for that child's job, which would end every sibling with it.
  Per-task tags that differ (``map_index``) are not on the job: Batch gives every
  child its parent's tags.
* The array's name is the longest common prefix of the children's names, cut back to a whole
  ``-``-separated part (so ``airflow-etl-load`` and ``airflow-etl-load_more`` give ``airflow-etl``).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from airflow_aws_batch.core.messages import SUBMISSION_TAG, Submit

#: Batch's limits on ``arrayProperties.size``.
ARRAY_MIN_CHILDREN = 2
ARRAY_MAX_CHILDREN = 10_000
#: Tags the request builder sets per task; an array keeps only those all its children share.
#: ``dag_id``, ``task_id``, ``run_id`` and ``try_number`` are not among them: they are part of the
#: grouping key (see the module docstring).
PER_TASK_TAGS = frozenset({"map_index", "callback_id", "callback_path", SUBMISSION_TAG})
#: Per-task tags that must be equal within one array (see the module docstring).
GROUP_TAGS = ("dag_id", "task_id", "run_id", "try_number")


@dataclass(frozen=True, slots=True)
class SubmitArray:
    """One SubmitJob for ``len(keys)`` workloads; child ``i`` runs the workload of ``keys[i]``.

    ``request`` is the shared request (the array's name and tags; the first child's placeholder
    command, which the runtime replaces by the launcher's once the object is written);
    ``workloads[i]`` and ``submissions[i]`` are what child ``i``'s own Submit carried.
    """

    keys: tuple[Hashable, ...]
    request: dict[str, Any]
    workloads: tuple[str, ...]
    submissions: tuple[str, ...]

    @property
    def submission(self) -> str:
        """The array SubmitJob's own ``submission`` tag."""
        return str(self.request["tags"][SUBMISSION_TAG])


def group_key(request: dict[str, Any], workloads_key: str) -> bytes:
    """What must be equal for two requests to share an array: the request without its command,
    job name, per-task tags (``try_number`` kept) and workloads, pickled.

    Equal keys mean equal requests (pickling is faithful); equal requests built in another member
    order would get different keys and only miss an array. Pickled, not JSON: a burst computes one per
    task on the scheduler thread, and pickling costs a fraction of sorted-key encoding.
    """
    own = ("jobName", "containerOverrides", "tags", workloads_key)
    rest = {k: v for k, v in request.items() if k not in own}
    overrides = {k: v for k, v in (request.get("containerOverrides") or {}).items() if k != "command"}
    tags = {k: v for k, v in (request.get("tags") or {}).items() if k not in PER_TASK_TAGS}
    return pickle.dumps((rest, overrides, tags), protocol=pickle.HIGHEST_PROTOCOL)


def group_submits(
    submits: Iterable[Submit],
    *,
    min_size: int,
    workloads_key: str,
    max_size: int = ARRAY_MAX_CHILDREN,
    eligible: Callable[[Submit], bool] = lambda _: True,
    key_of: Callable[[Submit], bytes | None] = lambda _: None,
) -> tuple[list[SubmitArray], list[Submit]]:
    """Split ``submits`` into arrays of ``min_size`` .. ``max_size`` children and the rest.

    ``min_size`` below 2 counts as 2 (an array of one is a single job); 0 turns grouping off.
    Only requests whose one workload waits under ``workloads_key`` (for the workload store) can be
    children. ``eligible(submit)``: may this submit be an array child (first attempts only: see the
    module docstring)? Lookups after a lost answer never are. ``key_of(submit)``: its
    :func:`group_key` if already known (None: computed here). The singles keep their order.
    """
    submits = list(submits)
    if min_size <= 0:
        return [], submits
    min_size = max(min_size, ARRAY_MIN_CHILDREN)
    max_size = max(min(max_size, ARRAY_MAX_CHILDREN), ARRAY_MIN_CHILDREN)
    groups: dict[bytes, list[int]] = {}
    for index, submit in enumerate(submits):
        if submit.lookup_after_ms is not None or submit.lookup_only or not eligible(submit):
            continue
        waiting = submit.request.get(workloads_key)
        if not isinstance(waiting, list) or len(waiting) != 1:
            continue
        key = key_of(submit) or group_key(submit.request, workloads_key)
        groups.setdefault(key, []).append(index)
    grouped: set[int] = set()
    arrays: list[SubmitArray] = []
    for members in groups.values():
        for start in range(0, len(members), max_size):
            chunk = members[start : start + max_size]
            if len(chunk) < min_size:
                continue
            arrays.append(_array([submits[i] for i in chunk], workloads_key))
            grouped.update(chunk)
    singles = [submit for index, submit in enumerate(submits) if index not in grouped]
    return arrays, singles


def _array(children: list[Submit], workloads_key: str) -> SubmitArray:
    first = children[0].request
    own = ("jobName", "containerOverrides", "tags", workloads_key)
    request = {k: v for k, v in first.items() if k not in own}
    request["jobName"] = array_job_name([str(c.request.get("jobName", "")) for c in children])
    request["containerOverrides"] = dict(first.get("containerOverrides") or {})
    all_tags = [c.request.get("tags") or {} for c in children]
    tags = dict(all_tags[0])
    for name in PER_TASK_TAGS - {SUBMISSION_TAG}:
        if name in tags and any(t.get(name) != tags[name] for t in all_tags[1:]):
            del tags[name]
    tags[SUBMISSION_TAG] = array_submission(str(all_tags[0].get(SUBMISSION_TAG, "")))
    request["tags"] = tags
    return SubmitArray(
        keys=tuple(c.key for c in children),
        request=request,
        workloads=tuple(str(c.request[workloads_key][0]) for c in children),
        submissions=tuple(str(t.get(SUBMISSION_TAG, "")) for t in all_tags),
    )


#: Appended to the first child's ``submission`` to name the array's SubmitJob. Submission ids are hex
#: digits, so no single SubmitJob ever carries a value that ends this way.
ARRAY_SUBMISSION_SUFFIX = "-array"


def array_submission(first_child: str) -> str:
    """The array SubmitJob's ``submission`` tag: unique per array (the first child's is unique per
    call), and never any child's own."""
    return first_child + ARRAY_SUBMISSION_SUFFIX


def array_job_name(names: list[str]) -> str:
    """The longest common prefix of ``names``, cut back to whole ``-``-separated parts when the
    names differ; ``airflow-array`` when nothing valid is left."""
    # The prefix all names share is the one the least and the greatest share (min and max run in C:
    # an array of thousands of children is named on the scheduler thread).
    low, high = min(names), max(names)
    cut = 0
    for a, b in zip(low, high, strict=False):
        if a != b:
            break
        cut += 1
    prefix = low[:cut]
    if low != high:
        prefix = prefix[: prefix.rfind("-")] if "-" in prefix else ""
    prefix = prefix.rstrip("-_")
    # Each name already starts with a letter or digit, so a non-empty common prefix does too.
    return prefix or "airflow-array"


def child_job_id(parent_id: str, index: int) -> str:
    """Batch's id of child ``index`` of array job ``parent_id``."""
    return f"{parent_id}:{index}"


def parent_of(job_id: str) -> str | None:
    """The array job of a child id ``<parent>:<index>``, None for any other job id."""
    parent, sep, index = job_id.rpartition(":")
    return parent if sep and parent and index.isdigit() else None
