"""The harness itself: devstack.LocalBatchServer against a real `localbatch serve` process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from devstack import LocalBatchServer, StackError, aws_client, wait_until

pytestmark = pytest.mark.contract

HOLD = {"rules": [{"job_name_contains": "held", "fault": "hold_runnable"}]}


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _status(server: LocalBatchServer, job_id: str) -> tuple[bool, str]:
    status: str = server.describe([job_id])[0]["status"]
    return status == "RUNNABLE", status


def test_start_setup_restart_stop(tmp_path: Path) -> None:
    server = LocalBatchServer(tmp_path, args=["--kill-grace-seconds", "1"])
    server.start(faults=HOLD)
    with server:
        server.setup(job_queue="q", job_definition="d", max_vcpus=2)
        assert server.job_queue == "q"
        job_id = server.batch.submit_job(jobName="held-1", jobQueue="q", jobDefinition="d")["jobId"]
        assert server.stats()["operations"]["SubmitJob"]["requests"] == 1
        wait_until("the job to be held", lambda: _status(server, job_id), timeout=30)
        with pytest.raises(StackError, match="already runs"):
            server.start()

        port, pid = server.port, server.pid
        server.restart(faults=HOLD)
        assert (server.port, server.url) == (port, f"http://127.0.0.1:{port}")
        assert server.pid != pid and not _group_alive(pid)
        # The stats and faults live in memory: they start over, the faults from those given again.
        assert server.stats() == {"operations": {}}
        assert [rule["job_name_contains"] for rule in server.faults()["rules"]] == ["held"]
        # The data dir persists, and the hold is in force from the first request: the job held
        # before the restart is still held.
        assert [(job["jobId"], job["status"]) for job in server.all_jobs()] == [(job_id, "RUNNABLE")]

        server.reset_stats()
        assert server.stats() == {"operations": {}}
        server.set_faults({})
        assert server.faults()["rules"] == []
        pid = server.pid
    assert not server.alive() and not _group_alive(pid)
    with pytest.raises(httpx.ConnectError):
        server.admin("GET", "stats")


def test_restart_after_the_server_was_killed(tmp_path: Path) -> None:
    with LocalBatchServer(tmp_path) as server:
        server.setup(job_queue="q", job_definition="d")
        os.kill(server.pid, signal.SIGKILL)
        server.restart()
        assert server.alive()
        assert [queue["jobQueueName"] for queue in server.batch.describe_job_queues()["jobQueues"]] == ["q"]
        # Each start appends to the log; the tail shows only the current start's output.
        assert server.process is not None
        assert server.process.tail().count("localbatch listening on") == 1
    assert server.log_path.read_text().count("localbatch listening on") == 2


def test_a_server_that_exits_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    server = LocalBatchServer(tmp_path, args=["--faults", str(tmp_path / "missing.json")])
    with pytest.raises(StackError) as info:
        server.start()
    message = str(info.value)
    assert message.startswith("localbatch exited with code 2 before it listened")
    assert str(server.log_path) in message
    assert "invalid fault configuration" in message
    assert not server.alive()


def test_a_server_not_ready_in_time_is_stopped_and_reported(tmp_path: Path) -> None:
    # Python alone takes longer than no time at all to start, so the deadline passes first.
    server = LocalBatchServer(tmp_path, ready_timeout=0.0)
    with pytest.raises(StackError, match=r"localbatch did not listen within 0 s; last lines of "):
        server.start()
    assert server.process is not None and server.process.pid is not None
    assert server.process.poll() is not None and not _group_alive(server.process.pid)


def test_aws_client_reaches_the_server_in_the_testing_region(tmp_path: Path) -> None:
    with LocalBatchServer(tmp_path) as server:
        client = aws_client("sts", server.url, credentials=server.credentials)
        assert client.meta.region_name == "us-east-1"
        assert client.get_caller_identity()["Account"]


def test_status_events_of_one_job_queue_reach_the_subscribed_queue_across_a_restart(tmp_path: Path) -> None:
    import json

    with LocalBatchServer(tmp_path, args=["--kill-grace-seconds", "1"]) as server:
        server.setup(job_queue="q", job_definition="d", max_vcpus=2)
        server.batch.create_job_queue(
            jobQueueName="other",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "localbatch-ce"}],
        )
        url = server.subscribe_status_events("status", "q")
        server.restart()  # the queue and the rule are kept in the data dir
        server.set_faults({"simulate": {"seconds": 0}})
        ours = server.batch.submit_job(jobName="mine", jobQueue="q", jobDefinition="d")["jobId"]
        server.batch.submit_job(jobName="theirs", jobQueue="other", jobDefinition="d")
        sqs = server.client("sqs")
        seen: list[dict[str, object]] = []

        def succeeded() -> tuple[bool, object]:
            for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                seen.append(json.loads(message["Body"])["detail"])
            return any(d["status"] == "SUCCEEDED" for d in seen), seen

        wait_until("the job's SUCCEEDED event", succeeded, timeout=30)
        assert {d["jobId"] for d in seen} == {ours}
        assert server.health()["events"]["delivered"] >= len(seen)
