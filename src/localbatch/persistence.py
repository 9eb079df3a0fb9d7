"""Reading every record back at start and writing the jobs that changed."""

from __future__ import annotations

from localbatch.models import ArrayState, Job
from localbatch.records import Records


class Persistence(Records):
    def load(self) -> list[Job]:
        """Load every record; return the jobs that were STARTING/RUNNING when the service stopped."""
        for ce in self.store.load("compute_environment"):
            self.compute_environments[ce["computeEnvironmentName"]] = ce
        for jq in self.store.load("job_queue"):
            self.job_queues[jq["jobQueueName"]] = jq
        for jd in self.store.load("job_definition"):
            self.job_definitions[jd["jobDefinitionArn"]] = jd
        for sp in self.store.load("scheduling_policy"):
            self.scheduling_policies[sp["name"]] = sp
        records = list(self.store.load("job"))
        jobs = sorted(
            (Job.from_record(r) for r in records if r.get("array_parent_id") is None),
            key=lambda j: j.created_at,
        )
        orphans = []
        for job in jobs:
            if job.is_array_parent:
                job.array = ArrayState()
                self.array_parents += 1
            self.jobs[job.job_id] = job
            for dep in job.depends_on:
                self.dependents.setdefault(dep["jobId"], set()).add(job.job_id)
        children = sorted(
            (r for r in records if r.get("array_parent_id") is not None),
            key=lambda r: (r["array_parent_id"], r["array_index"]),
        )
        for record in children:
            parent = self.jobs.get(record["array_parent_id"])
            if parent is None or parent.array is None:
                continue  # its parent's record was lost: nothing can describe or finish the array
            child = parent.child_from_record(record)
            parent.array.children.append(child)
            parent.array.move(None, child.status)
            self.jobs[child.job_id] = child
            self.array_children += 1
        # Index in creation order (children follow their parent, in index order): FIFO survives.
        for job in jobs:
            for member in [job, *(job.array.children if job.array is not None else ())]:
                self._index_add(member)
                if member.status.is_active:
                    orphans.append(member)
        for job in jobs:
            if job.array is not None and not job.status.is_final:
                self._follow_children(job)
        return orphans

    def flush_dirty(self) -> int:
        dirty, self._dirty = self._dirty, set()
        for job_id in dirty:
            job = self.jobs.get(job_id)
            if job is not None:
                self.store.put("job", job_id, job.to_record())
        return len(dirty)
