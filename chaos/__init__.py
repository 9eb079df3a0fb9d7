"""Chaos harness: ``make chaos`` / ``make chaos-quick`` (``python -m chaos [--quick] [--seeds 1,2,3]``).

For each fault seed, a fresh ``devstack.Stack``: localbatch (with faults) and Airflow 3 on this
machine's PostgreSQL with ``[core] executor = airflow_aws_batch.AwsBatchExecutor``. One DAG (``chaos``,
written by :mod:`chaos.dag`) maps one task over N indexes (500; quick: 100; ``--tasks N``); each sleeps
1-4 s, fixed by the seed and its map index (:func:`chaos.tasks.sleep_seconds`), with ``retries=3`` and
``retry_delay=2 s``. Beside it, in the same DAG run (:mod:`chaos.operators`), a task mapped over D lanes
that defers twice on a ``DateTimeTrigger`` (so the stack's triggerer is in play) and resumes, and a
reschedule-mode sensor mapped over S lanes that pokes 3-5 times with ``poke_interval`` 1 s, shorter than
the executor's detection delay under faults, so that a poke's SUCCESS often reaches Airflow after the
task instance was rescheduled for its next poke (30 each; quick: 8). Their first deferral / first
reschedule waits until ``lane / D * stagger_s`` after the DAG run started (360 s; quick: 90 s), so
that the steps below, spread over the run, meet deferrals and pokes in flight. Each execution of a
task's code appends JSON lines (``start``, a ``beat`` every 0.5 s, ``end``: ti id, dag/task/run ids,
map index, try number, pid, times; for the deferring task and the sensor the ``phase`` of the try it
ran, ``execute``, ``resume <n>`` or ``poke <n>``, and on ``end`` its ``outcome``, done, defer or
reschedule) to ``$CHAOS_RECORD_DIR/executions.jsonl`` with single ``O_APPEND`` writes.

The matrix, every part in every seed's run:

- localbatch faults (:func:`chaos.settings.fault_config`): 10 % of Batch API calls answer 5xx, SubmitJob
  above 50/s answers 429, 5 % of jobs fail before start (CannotPullContainerError), 2 % of hosts are
  lost mid-run, 2 % of SubmitJob answers are lost after the job was created (answered 500 until the
  localbatch restart, a dropped connection after it), 2 % of jobs are held in RUNNABLE until revoked
  (past ``task_queued_timeout``); 20 ms latency on every call. Rules add one of each job-level fault
  per localbatch start, so that 100 tasks cannot miss one by chance. The restarted localbatch gets
  the config through ``--faults`` so that it is in force from its first request.
- Status events (:data:`chaos.settings.EVENT_FAULTS`): the stack creates an SQS queue and an
  EventBridge rule sending it the job queue's "Batch Job State Change" events in localbatch
  (``devstack.Stack(status_events=True)``; both survive its restart) and sets the executor's
  ``status_events`` to it, so job state changes come from events and polling only reconciles. On
  their way to the queue 5 % of the events are dropped, 10 % delivered twice, 10 % delivered 1-10 s
  late and 10 % swapped with the next delivery, plus one of each per localbatch start (rules). The
  request faults above strike the SQS calls too (10 % answer 5xx: the executor then polls every job
  until a receive succeeds again). With two schedulers (the HA step) both read the one queue, each
  taking and deleting events of the other's jobs, which reconciling makes up for.
- Array jobs (:mod:`chaos.settings`): the executor writes workloads to a ``file://`` store in the work
  dir (``workloads/``) and sends mapped instances due together at one try as one array job once
  there are ``array_min_size`` 4 of them (half of ``parallelism``: the first burst forms an array,
  and so do later batches of tasks queued together, up to the executor's 2 s hold apart). Every
  fault above and every step below meets array children as well as single jobs: the first
  SIGKILL lands within a second of the first array's SubmitJob, before Airflow saved its children's
  ids.
- Steps, in this order (:class:`chaos.drive.Harness`). Each waits until the given share of task
  instances is final, 5 s have passed since the previous step, and the current scheduler has
  heartbeated for 5 s (so a fault meets a working scheduler, not one still starting):
  SIGKILL the scheduler within a second of the first submit burst (>= 6 tasks submitted within 1 s:
  single jobs and array children, from localbatch's health counts, since one SubmitJob may submit a
  whole array), restart it; at 15 % restart localbatch (SIGTERM; same port and data dir); at
  25 % start a second scheduler (HA) and, once both have heartbeated for 10 s, SIGKILL the older one
  (the newer carries on alone); at 45 % SIGKILL and restart; at 60 % SIGTERM, time the exit (SIGKILL
  after 90 s), restart; at 75 % SIGKILL and restart. A step the run ends before is reported as not
  performed, which misses a target. Shares ("15 %") are of all the run's task instances, the
  deferring task's and the sensor's included.

Timing options, chosen so that a 100-task run ends in minutes on a 2-core machine yet lasts long
enough for every step (:mod:`chaos.settings`, on top of devstack's 2 s heartbeats):

- ``[core] parallelism`` and ``max_active_tasks_per_dag`` 8 (at 16, 100 tasks were done before the
  later steps); localbatch ``max_vcpus`` 12, so a queued task never waits for capacity; task
  processes are forked warm (``--preload``, as in ``bench.dag``, plus the launcher that reads the
  workload store: run cold, it took 8.6 s from job start to the task's code with 8 tasks on 2 cores).
- ``[scheduler] task_queued_timeout`` 60 s (checked every 5 s): held jobs are revoked after a minute,
  while a warm task normally leaves queued within seconds.
- ``[scheduler] scheduler_health_check_threshold`` 15 s: a killed scheduler's tasks are adopted 15 s
  after its last heartbeat (long enough that a live scheduler on a loaded machine is not taken for dead).
- ``[scheduler] orphaned_tasks_check_interval`` 5 s; ``task_instance_heartbeat_timeout`` 60 s (checked
  every 5 s), the backstop for a task whose process died without its job being reported.
- ``[workers] min_heartbeat_interval`` 1 s.

Figures, counted outside the executor (definitions in :mod:`chaos.count`): lost task instances, tries
run twice and run concurrently, orphan jobs (counted 60 s after the run ended; quick: 30 s, so that
it fits in six minutes), scheduler crashes, executor errors (tracebacks naming ``airflow_aws_batch``
in every ``logs/scheduler*.log``, which every restart appends to), the SIGTERM exit time, jobs per
outcome, faulted answers and Batch API calls per task (localbatch's stats from the trigger to the end
of the run, summed over its restart; the status events thread's SQS calls apart), the status events
(delivered, dropped, duplicated, delayed, reordered, from localbatch's health, summed likewise),
array jobs and their children; executions whose work a
scheduler's reset threw away (``Reset the following N orphaned TaskInstances`` in a scheduler log
names the task instance id the execution recorded: the code ran, Airflow archived the try and runs the
task again, having never taken what it did; the phases of a try reset while it waited for its next
phase are shown apart),
and tries of the deferring task or the sensor that Airflow failed on the executor's event (its "state
mismatch" audit-log entries: a SUCCESS read as the task killed externally, or a FAILED that no
injected fault explains: none of that try's jobs failed for one, and not every SubmitJob met one).
Each array counts as its children, each a job of the try its workload names (read from the array's
object in the store), so orphans, outcomes and run-twice evidence cover children as they do single
jobs. A try of the
deferring task or the sensor runs its code once per phase, one job each: "run twice" and "run
concurrently" count a phase run twice, and an unrecorded job that ran the only execution of its phase
is accounted for. Targets: 0 for each count, SIGTERM exit <= 30 s, every step performed, at least
one array job formed (a run in which grouping silently stopped misses) and no child whose workload
disagrees with its array's tags, and status events in play (delivered, each event fault struck,
the executor's ReceiveMessage calls: at least 1 each); ``python -m chaos`` exits 1 when a seed
misses one. A run not
finished ``run_deadline_s`` after its trigger (1200 s; quick: 420 s) ends there and its unfinished task
instances count as lost.

Output: the table on stdout, ``chaos-results.json`` (figures, misses and evidence per seed: which
task instances, tries, job ids, pids, exits and traceback texts), and per seed in the work dir
(``--work-dir``, default a new temp dir, kept): ``stack/logs/`` of every process, ``records/`` and
``raw.json`` (every task instance, history row and job, for post-mortems).

Not covered: SQLite (the stacks run on PostgreSQL only), more than two schedulers, real AWS.
"""
