"""The Airflow UI in a real browser: one dev stack and one headless Chromium for the session.

Run with ``make test-ui`` (not part of ``make test``: this directory is outside pytest's testpaths).
Everything lands in ``.ui-test/`` at the repository root (``UI_TEST_DIR`` to move it), emptied when a
session starts and kept after it:

- ``.ui-test/screenshots/``: the PNGs the tests take, plus ``FAILED-<test>.png`` of a failing test;
- ``.ui-test/stack/``: the stack's work dir (``logs/`` of every component, ``task_logs/``, localbatch's
  data, the SQLite database).

The browser is Debian's Chromium (``apt-get install chromium``), driven by Playwright; Playwright's
own browser download is not used. ``UI_TEST_CHROMIUM`` points at another Chromium binary.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from devstack import Stack  # noqa: E402

DAGS = Path(__file__).resolve().parent / "dags"
UI_TEST_DIR = Path(os.environ.get("UI_TEST_DIR") or REPO / ".ui-test").resolve()
CHROMIUM = os.environ.get("UI_TEST_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
]
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}
#: Milliseconds a UI assertion waits for what it expects. The page polls the API every few seconds, but
#: on a loaded 2-core machine the api-server can stall for tens of seconds (seen: 20 s for every request
#: while the first /api/v2/plugins/importErrors loaded Airflow's plugins).
UI_TIMEOUT_MS = 120_000
#: Seconds to wait for a run or a task to reach a state (tasks start cold on a loaded 2-core machine).
RUN_TIMEOUT = 240
FAILED_BEFORE_START = "ui_failed_before_start"
LIVE_LOG = "ui_live_log"
#: localbatch fails the first job of ui_failed_before_start before its container starts (Batch's
#: CannotPullContainerError); the executor resubmits it, and the next jobs fail in their entrypoint.
FAULTS = {
    "rules": [
        {
            "job_name_contains": f"ui-{FAILED_BEFORE_START}-never_starts",
            "fault": "fail_before_start",
            "times": 1,
        }
    ]
}


#: Seconds pytest-timeout gives each UI test (the project's default, 300, is for single REST checks).
TEST_TIMEOUT = 600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


def pytest_configure(config: pytest.Config) -> None:
    # Playwright's assertions wait 5 s unless told otherwise (a context's default timeout is for actions).
    expect.set_options(timeout=UI_TIMEOUT_MS)
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise pytest.UsageError(
            f"the UI tests need Chromium at {CHROMIUM}, which is missing. Install Debian's:\n"
            "    sudo apt-get update && sudo apt-get install -y chromium\n"
            "or set UI_TEST_CHROMIUM to a Chromium binary. (Playwright's own browser download is not used.)"
        )


@dataclass
class UI:
    stack: Stack
    screenshots: Path
    #: The live-log task waits for files in this directory (see dags/ui_live_log.py).
    release_dir: Path
    run_ids: dict[str, str]

    def task_url(self, dag_id: str, task_id: str) -> str:
        run_id = quote(self.run_ids[dag_id], safe="")
        return f"{self.stack.ui_url}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}"

    def screenshot(self, page: Page, name: str) -> Path:
        path = self.screenshots / f"{name}.png"
        page.screenshot(path=str(path))
        return path


@pytest.fixture(scope="session")
def ui() -> Iterator[UI]:
    shutil.rmtree(UI_TEST_DIR, ignore_errors=True)
    screenshots = UI_TEST_DIR / "screenshots"
    release_dir = UI_TEST_DIR / "release"
    for path in (screenshots, release_dir):
        path.mkdir(parents=True)
    work_dir = UI_TEST_DIR / "stack"
    stack = Stack(
        work_dir,
        dags_folder=DAGS,
        job_name="ui",
        # Long log lines (the executor's, with the job's status reason) wrap, so screenshots show them whole.
        env={"AIRFLOW__API__DEFAULT_WRAP": "True"},
        # As in a Batch container, a task writes its log files on a disk the api-server cannot read:
        # what the UI shows of a running task is what the executor reads from the job's log stream.
        task_env={"AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(work_dir / "container_disk")},
    )
    print(f"\nUI test stack work dir: {work_dir}")
    with stack:
        stack.batch.set_faults(FAULTS)
        stack.airflow.wait_for_dags([FAILED_BEFORE_START, LIVE_LOG], timeout=180)
        run_ids = {}
        for dag_id, conf in ((FAILED_BEFORE_START, {}), (LIVE_LOG, {"release_dir": str(release_dir)})):
            stack.airflow.unpause(dag_id)
            run_ids[dag_id] = stack.airflow.trigger(dag_id, conf=conf)
        # A task still running when the session ends (a test failed) is killed with the stack.
        yield UI(stack, screenshots, release_dir, run_ids)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


def new_context(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport=VIEWPORT, timezone_id="UTC")
    context.set_default_timeout(UI_TIMEOUT_MS)
    return context


def log_in(page: Page, ui: UI, *, screenshots: bool = False) -> None:
    """Sign in through the simple auth manager's login form, as a user does."""
    stack = ui.stack
    page.goto(stack.ui_url + "/")
    expect(page, "an anonymous visit should land on the login page").to_have_url(
        f"{stack.ui_url}/auth/login?next=%2F"
    )
    page.get_by_label("Username").fill(stack.username)
    page.get_by_label("Password").fill(stack.password)
    if screenshots:
        ui.screenshot(page, "01-login-form")
    page.get_by_role("button", name="Sign in").click()
    expect(page, "signing in should lead back to the home page").to_have_url(stack.ui_url + "/")
    expect(page.get_by_role("link", name="Dags"), "the home page's navigation should show").to_be_visible()
    expect(page.get_by_role("heading", name="Welcome"), "the home page should greet the user").to_be_visible()


@pytest.fixture(scope="session")
def page(browser: Browser, ui: UI) -> Iterator[Page]:
    """One signed-in page for the tests that look at task pages."""
    context = new_context(browser)
    page = context.new_page()
    log_in(page, ui)
    yield page
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call" and report.failed:
        page = getattr(item, "funcargs", {}).get("page")
        if isinstance(page, Page) and not page.is_closed():
            name = item.name.replace("/", "_")
            page.screenshot(path=str(UI_TEST_DIR / "screenshots" / f"FAILED-{name}.png"))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    shots = UI_TEST_DIR / "screenshots"
    if shots.is_dir():
        names = ", ".join(sorted(p.name for p in shots.glob("*.png")))
        terminalreporter.write_line(f"UI screenshots in {shots}: {names}")
        terminalreporter.write_line(f"UI test stack logs in {UI_TEST_DIR / 'stack' / 'logs'}")
