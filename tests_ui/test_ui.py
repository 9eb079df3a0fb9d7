"""What a user sees of AwsBatchExecutor in the Airflow UI, checked in headless Chromium.

Real processes throughout: localbatch, Airflow's api-server, scheduler, dag-processor and triggerer
(devstack), and Debian's Chromium. REST calls only wait for states; every assertion is on the page.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Browser, Locator, Page, expect

from devstack import wait_until

from .conftest import FAILED_BEFORE_START, LIVE_LOG, RUN_TIMEOUT, UI, VIEWPORT, log_in, new_context
from .dags.ui_failed_before_start import BOOT_MESSAGE
from .dags.ui_live_log import FIRST_LINE, SECOND_LINE


def _log_view(page: Page) -> Locator:
    """The log viewer of a task instance page (its lines are rendered as a virtualized list)."""
    return page.locator("[data-testid^='virtualized-item-']")


def _open_source_details(page: Page) -> None:
    page.get_by_text("Log message source details").click()


def test_log_in_with_the_stacks_user(browser: Browser, ui: UI) -> None:
    context = new_context(browser)
    try:
        page = context.new_page()
        log_in(page, ui, screenshots=True)
        ui.screenshot(page, "02-home")
    finally:
        context.close()


def test_task_whose_job_failed_before_it_started_shows_the_job_output_and_status_reason(
    page: Page, ui: UI
) -> None:
    stack, dag_id, task_id = ui.stack, FAILED_BEFORE_START, "never_starts"
    run_id = ui.run_ids[dag_id]
    stack.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    jobs = stack.batch.wait_final(dag_id, task_id, run_id)
    # The first job never started (the fault); the others ran the failing entrypoint and exited 3.
    reasons = [(job["status"], job.get("statusReason", "")) for job in jobs]
    assert len(jobs) == 3 and reasons[0][1].startswith("CannotPullContainerError"), reasons
    assert reasons[1:] == [("FAILED", "Essential container in task exited")] * 2, reasons
    last = jobs[-1]

    page.goto(ui.task_url(dag_id, task_id))
    expect(page.get_by_text("Failed", exact=True).first, "the task should read Failed").to_be_visible()
    logs = _log_view(page)
    # The executor copies the failed job's output into the task log, under a line with the reason.
    expect(logs.filter(has_text=BOOT_MESSAGE), "the job's output should be in the task log").to_have_count(1)
    reason_line = logs.filter(has_text=f"AWS Batch job {last['jobId']} FAILED and the task wrote no log")
    expect(reason_line, "the task log should say which job failed").to_have_count(1)
    expect(reason_line, "the task log should carry Batch's status reason").to_contain_text(
        f"statusReason: {last['statusReason']}; exitCode: 3"
    )
    ui.screenshot(page, "03-failed-before-start-log")

    # The Audit Log tab lists the executor's events: each resubmit and the final failure, with reasons.
    page.get_by_role("link", name="Audit Log").click()
    rows = page.get_by_role("row")
    final = rows.filter(has_text="aws_batch_task_failed")
    expect(final, "the Audit Log should show the executor's failure event").to_have_count(1)
    expect(final).to_contain_text(f"Batch job {last['jobId']} FAILED; statusReason: {last['statusReason']}")
    expect(final).to_contain_text("no submit attempts left")
    # aws_batch_job_failed_before_start: the container never started; ..._before_task_start: it did,
    # but the task did not.
    resubmits = rows.filter(has_text=re.compile(r"aws_batch_job_failed_before_(task_)?start"))
    expect(resubmits, "each resubmitted job should have its event").to_have_count(len(jobs) - 1)
    for job in jobs[:-1]:
        reason = f"Batch job {job['jobId']} FAILED; statusReason: {job['statusReason']}"
        expect(resubmits.filter(has_text=reason), f"the Audit Log should say: {reason}").to_have_count(1)
    # Tall enough for every row: the table scrolls inside the page, which a full-page shot does not see.
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 1400})
    ui.screenshot(page, "04-failed-before-start-audit-log")
    page.set_viewport_size(VIEWPORT)


def test_running_task_shows_its_live_log_from_the_jobs_log_stream(page: Page, ui: UI) -> None:
    stack, dag_id, task_id = ui.stack, LIVE_LOG, "waiter"
    run_id = ui.run_ids[dag_id]
    stack.airflow.wait_for_task_state(dag_id, run_id, task_id, ["running"], timeout=RUN_TIMEOUT)

    def running_job() -> tuple[bool, Any]:
        jobs = stack.batch.jobs_for(dag_id, task_id, run_id)
        return [j["status"] for j in jobs] == ["RUNNING"], jobs

    [job] = wait_until("the task's one Batch job to run", running_job, timeout=60, interval=1.0)

    page.goto(ui.task_url(dag_id, task_id))
    expect(page.get_by_text("Running", exact=True).first, "the task should read Running").to_be_visible()
    logs = _log_view(page)
    # Once: the task's own log file is on the "container's" disk, out of the api-server's reach.
    expect(logs.filter(has_text=FIRST_LINE), "the task's first line should show").to_have_count(1)
    _open_source_details(page)
    expect(
        page.get_by_text(f"AWS Batch job {job['jobId']} (RUNNING) in queue"),
        "the log should come from the running Batch job",
    ).to_be_visible()
    stream = job["attempts"][-1]["container"]["logStreamName"] if job.get("attempts") else None
    stream = stream or job["container"]["logStreamName"]
    expect(
        page.get_by_text(f"Reading CloudWatch Logs /aws/batch/job/{stream}"),
        "the log should be read from the job's log stream",
    ).to_be_visible()
    ui.screenshot(page, "05-live-log-first-line")

    # The page follows the log: a line the task prints now shows up without a reload.
    (ui.release_dir / "more").touch()
    expect(logs.filter(has_text=SECOND_LINE), "a new line should show while the page is open").to_have_count(
        1
    )
    ui.screenshot(page, "06-live-log-second-line")
    (ui.release_dir / "done").touch()
    run = stack.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    assert run["state"] == "success", run
