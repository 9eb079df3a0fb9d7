"""The bench's scenario parameters: the events scenarios reuse steady's and scale's, with the
executor's status_events set to their own queue (ours only), and --only knows their names."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import run, scenarios

URLS = {name: f"http://127.0.0.1:1/123456789012/{name}" for name in scenarios.EVENTS_SCENARIOS}


def _params(executor: str) -> dict[str, Any]:
    service = SimpleNamespace(url="http://127.0.0.1:1", credentials={}, admin_token="t")
    params: dict[str, Any] = run.driver_params(executor, scenarios.QUICK, service, URLS)  # type: ignore[arg-type]
    return params["scenarios"]


def test_events_scenarios_are_steady_and_scale_with_their_own_queue() -> None:
    ours = _params("ours")
    for name in scenarios.EVENTS_SCENARIOS:
        base = ours["steady" if name.startswith("steady") else "scale"]
        params = ours[name]
        assert params["executor_options"] == {**base["executor_options"], "status_events": URLS[name]}
        assert params["job_queue"] == f"bench-{name}" != base["job_queue"]
        assert params["tasks"] == base["tasks"] and params["window_s"] == base["window_s"]
        assert params["status_events"] and not base["status_events"]
        # Long enough for a lost end to be reconciled (quiet_s 60 s) and measured.
        assert params["grace_s"] == scenarios.EVENTS_GRACE_S > 60
    lossy = ours["scale-events-lossy"]
    # Long enough for the executor to reconcile every job once and notice the loss (quiet_s 60 s).
    assert lossy["settle_before_window_s"] == scenarios.LOSSY_SETTLE_S > 60 + 15
    assert ours["scale-events"]["settle_before_window_s"] == ours["scale"]["settle_s"]
    for faults in (lossy["faults"], lossy["measure_faults"]):
        assert faults["events"] == {"drop_rate": 0.10}
    assert "events" not in ours["scale-events"]["measure_faults"]
    assert all("status_events" not in _params("theirs")[n]["executor_options"] for n in run.IN_PROCESS)


def test_only_refuses_an_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run.main(["--only", "scale-event"])
    assert exited.value.code == 2
    assert "unknown scenario(s) scale-event" in capsys.readouterr().err


def test_theirs_is_not_run_for_the_events_scenarios(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    # Nothing to run for theirs: no localbatch is started, its keys stay empty.
    assert run.main(["--only", "scale-events", "--executors", "theirs", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["theirs"]["scale-events"] == {} and results["ours"]["scale-events"] == {}
