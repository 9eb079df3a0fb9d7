"""A small client for Airflow 3's public REST API (``/api/v2``), enough to drive and check DAG runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
#: Task instance states after which nothing more happens without a user's action.
FINISHED_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


class ApiError(RuntimeError):
    """An Airflow API call answered with an error status."""


class WaitTimeout(TimeoutError):
    """A wait reached its deadline; the message carries the last state seen."""


def wait_until(
    what: str, probe: Callable[[], tuple[bool, Any]], timeout: float, interval: float = 1.0
) -> Any:
    """Call ``probe`` until it returns ``(True, value)``; return value, or raise with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        done, last = probe()
        if done:
            return last
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"gave up after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


class AirflowClient:
    """Airflow's public API with a JWT from ``/auth/token`` (the simple auth manager's login)."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    # --- plumbing -------------------------------------------------------------------------------

    def login(self) -> str:
        response = self._http.post("/auth/token", json={"username": self.username, "password": self.password})
        if response.status_code not in (200, 201):
            raise ApiError(f"POST /auth/token -> {response.status_code}: {response.text[:500]}")
        token = str(response.json()["access_token"])
        self._token = token
        return token

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        ok: Iterable[int] = (200, 201, 204),
    ) -> Any:
        """One call to ``/api/v2`` + path; logs in on first use and again once on a 401."""
        url = "/api/v2" + path
        for attempt in range(2):
            if self._token is None:
                self.login()
            response = self._http.request(
                method,
                url,
                params=_clean(params),
                json=json,
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            )
            if response.status_code == 401 and attempt == 0:
                self._token = None
                continue
            if response.status_code not in set(ok):
                raise ApiError(f"{method} {url} -> {response.status_code}: {response.text[:1000]}")
            return response.json() if response.content else None
        raise AssertionError("unreachable")

    def _paged(self, path: str, key: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.request("GET", path, params={**(params or {}), "limit": 100, "offset": offset})
            batch = page[key]
            items.extend(batch)
            offset += len(batch)
            if not batch or offset >= page.get("total_entries", 0):
                return items

    # --- health and DAGs ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``/api/v2/monitor/health``; needs no login."""
        response = self._http.get("/api/v2/monitor/health")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def dag_ids(self) -> set[str]:
        return {dag["dag_id"] for dag in self._paged("/dags", "dags")}

    def import_errors(self) -> list[dict[str, Any]]:
        return self._paged("/importErrors", "import_errors")

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120.0) -> None:
        """Wait until the dag-processor has parsed every DAG in ``dag_ids``; import errors are reported."""
        wanted = set(dag_ids)

        def probe() -> tuple[bool, Any]:
            missing = wanted - self.dag_ids()
            if not missing:
                return True, None
            errors = {e["filename"]: e["stack_trace"][-300:] for e in self.import_errors()}
            return False, {"missing": sorted(missing), "import_errors": errors}

        wait_until(f"DAGs {sorted(wanted)} to be parsed", probe, timeout, interval=2.0)

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        """Trigger a run now; returns its run id."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        run = self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)
        return str(run["dag_run_id"])

    # --- runs and task instances ----------------------------------------------------------------

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return result

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run, mapped ones included (one entry per map index)."""
        return self._paged(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", "task_instances")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``task_id`` (``task_id[i]`` for mapped) -> state."""
        return {ti_label(ti): ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180.0) -> dict[str, Any]:
        """Wait until the run is success or failed; the timeout message names every task's state."""

        def probe() -> tuple[bool, Any]:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in TERMINAL_RUN_STATES:
                return True, run
            return False, {"run": run["state"], "tasks": self.task_states(dag_id, run_id)}

        result: dict[str, Any] = wait_until(f"run {dag_id}/{run_id} to finish", probe, timeout, 2.0)
        return result

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str | None],
        *,
        timeout: float = 120.0,
        map_index: int = -1,
    ) -> dict[str, Any]:
        wanted = set(states)

        def probe() -> tuple[bool, Any]:
            ti = self.task_instance(dag_id, run_id, task_id, map_index)
            return ti["state"] in wanted, ti if ti["state"] in wanted else ti["state"]

        result: dict[str, Any] = wait_until(
            f"{dag_id}/{run_id}/{task_id} to reach one of {sorted(map(str, wanted))}", probe, timeout, 1.0
        )
        return result

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        result: dict[str, Any] = self.request("GET", path)
        return result

    def task_tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        path += f"/{map_index}/tries" if map_index >= 0 else "/tries"
        return self._paged(path, "task_instances")

    def event_logs(self, **filters: Any) -> list[dict[str, Any]]:
        """``/api/v2/eventLogs`` filtered by e.g. ``dag_id``, ``task_id``, ``run_id``, ``event``."""
        return self._paged("/eventLogs", "event_logs", filters)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The task log as the UI shows it, one line per log record."""
        body = self.request(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true", "map_index": map_index},
        )
        content = body.get("content", [])
        if isinstance(content, str):
            return content
        return "\n".join(_render_log_record(record) for record in content)


def ti_label(ti: Mapping[str, Any]) -> str:
    index = ti.get("map_index", -1)
    return ti["task_id"] if index is None or index < 0 else f"{ti['task_id']}[{index}]"


# Keys every record of a task log repeats; leaving them out keeps lines readable.
_LOG_CONTEXT_KEYS = frozenset(
    {"event", "timestamp", "level", "logger", "run_id", "dag_id", "task_id", "try_number", "ti_id"}
    | {"map_index", "filename", "lineno", "bundle_name", "bundle_version"}
)


def _render_log_record(record: Any) -> str:
    if not isinstance(record, dict):
        return str(record)
    extra = {k: v for k, v in record.items() if k not in _LOG_CONTEXT_KEYS}
    text = str(record.get("event", ""))
    if extra:
        text += " " + " ".join(f"{k}={v}" for k, v in extra.items())
    return text


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None}
