#!/usr/bin/env bash
# Entrypoint of the airflow-aws-batch task image.
#
# 1. Drops AWS variables the image left empty, so boto and the AWS CLI fall through to the job
#    role instead of reading blank credentials.
# 2. When S3_URI is set, syncs DAGs from it into CONTAINER_DAG_PATH; a failed sync stops the
#    container before the task starts, and its message is in the job's log stream.
# 3. Execs the command (the executor sends `python -m airflow.sdk.execution_time.execute_workload
#    --json-string ...`), so its exit code is the container's. A first word that is not a program
#    is taken as an airflow subcommand: `docker run IMAGE version` runs `airflow version`.
# 4. Runs it under Linux's SCHED_BATCH policy (AIRFLOW_AWS_BATCH_SCHED_BATCH=0 turns this off).
#    Airflow's task supervisor checks whether the task process has exited right after that process
#    closes its sockets; woken with the normal policy it preempts the exiting process and finds it
#    still alive, then sleeps until its next heartbeat tick ([workers] min_heartbeat_interval, 5 s by
#    default) before it notices. A SCHED_BATCH process does not preempt on wake-up, so the container
#    ends tens of milliseconds after its task instead of seconds. No privilege is needed.
set -euo pipefail

for name in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_DEFAULT_REGION S3_URI; do
    if [[ -z "${!name:-}" ]]; then
        unset "$name"
    fi
done

if [[ -n "${S3_URI:-}" ]]; then
    dag_path="${CONTAINER_DAG_PATH:-/opt/airflow/dags}"
    mkdir -p "$dag_path"
    echo "entrypoint: syncing DAGs from ${S3_URI} to ${dag_path}" >&2
    if ! aws s3 sync --no-progress "$S3_URI" "$dag_path"; then
        echo "entrypoint: 'aws s3 sync ${S3_URI} ${dag_path}' failed; check S3_URI and the job role's s3 permissions" >&2
        exit 70
    fi
fi

if [[ $# -eq 0 ]]; then
    set -- airflow version
fi
if ! command -v -- "$1" >/dev/null 2>&1; then
    set -- airflow "$@"
fi
if [[ "${AIRFLOW_AWS_BATCH_SCHED_BATCH:-1}" != 0 ]] && chrt --batch 0 true 2>/dev/null; then
    set -- chrt --batch 0 "$@"
fi
exec "$@"
