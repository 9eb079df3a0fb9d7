# Every target bootstraps what it needs: a fresh machine needs only Python >= 3.10.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: venv test test-ui lint unit contract e2e e2e-postgres demo bench bench-quick chaos chaos-quick clean \
	compat-lock test-compat docs

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --python $(PYTHON)
	touch $@

venv: $(VENV)/.synced

lint: venv
	$(VENV)/bin/ruff check src tests tests_ui devstack demo bench chaos
	$(VENV)/bin/ruff format --check src tests tests_ui devstack demo bench chaos
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy devstack demo/run.py demo/__main__.py bench chaos tests_ui

# The option reference of docs/configuration.md, regenerated from src/airflow_aws_batch/options.py
# (tests/test_docs.py fails when the page and the code disagree).
docs: venv
	$(VENV)/bin/python -m airflow_aws_batch.options --update docs/configuration.md

# The README's test command: lint, types, unit, contract (moto + localbatch) and end-to-end on SQLite.
test: venv lint
	$(VENV)/bin/pytest

unit: venv
	$(VENV)/bin/pytest tests -m "not contract and not e2e and not packaging"

contract: venv
	$(VENV)/bin/pytest tests -m contract

e2e: venv
	$(VENV)/bin/pytest tests -m e2e

# The Airflow UI in headless Chromium (Debian's, through Playwright) against the dev stack: login, a task
# whose job failed before it started, a running task's live log. Screenshots and the stack's logs land in
# .ui-test/ (tests_ui/conftest.py). Not part of `make test`.
CHROMIUM ?= /usr/bin/chromium
test-ui: venv
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "make test-ui: no Chromium at $(CHROMIUM). Install Debian's:" >&2; \
		echo "    sudo apt-get update && sudo apt-get install -y chromium" >&2; \
		echo "or run: make test-ui CHROMIUM=/path/to/chromium" >&2; \
		exit 1; \
	fi
	UI_TEST_CHROMIUM="$(CHROMIUM)" $(VENV)/bin/pytest tests_ui

# CI runs the end-to-end suite a second time on PostgreSQL.
# E2E_POSTGRES_TESTS narrows it (CI: the files where the metadata DB's engine matters most).
E2E_POSTGRES_URL ?= postgresql+psycopg2://postgres@127.0.0.1:5432/postgres
E2E_POSTGRES_TESTS ?= tests
e2e-postgres: venv
	AIRFLOW_AWS_BATCH_E2E_DB="$(E2E_POSTGRES_URL)" $(VENV)/bin/pytest $(E2E_POSTGRES_TESTS) -m e2e

# The README's first command: localbatch + Airflow + the example DAG, a summary, then the UI until Ctrl-C
# (exits after the summary with no terminal or DEMO_EXIT=1). DEMO_DB_URL=postgresql+psycopg2://... for PostgreSQL.
demo: venv
	$(VENV)/bin/python -m demo

# Our executor and the Amazon provider's, side by side against localbatch (docs/performance.md).
bench: venv
	$(VENV)/bin/python -m bench --out bench-results.json

# The same scenarios at a tenth of the sizes, same JSON keys.
bench-quick: venv
	$(VENV)/bin/python -m bench --quick --out bench-results.json

# docs/reliability.md: localbatch with faults + Airflow on PostgreSQL (127.0.0.1:5432) with our executor: 500 mapped tasks per
# fault seed under scheduler kills, HA, SIGTERM and a localbatch restart (chaos/__init__.py). Exits 1 on a miss.
chaos: venv
	$(VENV)/bin/python -m chaos --seeds 1,2,3 --out chaos-results.json

# The same matrix with 100 tasks and one seed (a few minutes).
chaos-quick: venv
	$(VENV)/bin/python -m chaos --quick --out chaos-results.json

# Every Airflow minor we support, each in its own venv from its own lock: 3.1 and 3.2 from
# compat/airflow-X.Y.txt (resolved from compat/airflow-X.Y.in + pyproject.toml by `make compat-lock`),
# 3.3 from the default lock (uv.lock, exported). In each: the unit and contract suites, the end-to-end
# tests of submit, adoption, revoke, arrays and the workload store, then the demo.
# CI runs COMPAT_MINORS="3.1 3.2": `make test` already runs everything on the default lock.
COMPAT_MINORS ?= 3.1 3.2 3.3
#: The unit and contract suites run per minor (CI narrows them for 3.2, the closest to 3.3).
COMPAT_TESTS ?= tests/executor tests/ops tests/contract tests/test_layout.py
COMPAT_RESOLVED := 3.1 3.2
COMPAT_E2E := tests/e2e/test_arrays.py tests/e2e/test_workload_store.py \
	"tests/e2e/test_e2e.py::test_run_outcome[success]" \
	tests/e2e/test_e2e.py::test_success_runs_one_batch_job_per_task \
	tests/e2e/test_e2e.py::test_task_stuck_in_runnable_has_its_job_terminated \
	tests/e2e/test_e2e.py::test_scheduler_killed_while_tasks_run_is_restarted_and_adopts_them

compat-lock: $(UV)
	for minor in $(COMPAT_RESOLVED); do \
		$(UV) pip compile pyproject.toml --group pyproject.toml:dev --constraints compat/airflow-$$minor.in \
			--python-version 3.11 --generate-hashes --quiet --custom-compile-command "make compat-lock" \
			--output-file compat/airflow-$$minor.txt || exit 1; \
	done

# The newest minor's lock is the default one, never a second copy of it.
compat/airflow-3.3.txt: uv.lock $(UV)
	$(UV) export --frozen --no-emit-project --quiet --output-file $@

.compat/%/.synced: compat/airflow-%.txt $(UV)
	rm -rf .compat/$*
	$(UV) venv --quiet --python $(PYTHON) .compat/$*
	VIRTUAL_ENV=.compat/$* $(UV) pip sync --quiet compat/airflow-$*.txt
	VIRTUAL_ENV=.compat/$* $(UV) pip install --quiet --no-deps -e .
	touch $@

test-compat: $(foreach minor,$(COMPAT_MINORS),.compat/$(minor)/.synced)
	set -e; for minor in $(COMPAT_MINORS); do \
		echo "=== Airflow $$minor: $$(.compat/$$minor/bin/python -c 'import airflow; print(airflow.__version__)')"; \
		.compat/$$minor/bin/pytest $(COMPAT_TESTS) -m "not e2e and not packaging" -p no:cacheprovider; \
		.compat/$$minor/bin/pytest $(COMPAT_E2E) -p no:cacheprovider; \
		DEMO_EXIT=1 DEMO_DIR=.demo-$$minor .compat/$$minor/bin/python -m demo; \
	done

# An sdist and a wheel in dist/ for `pip install dist/aws_batch_airflow-*.whl` (README). uv builds the
# wheel from the sdist, so a broken sdist fails here. dist/ is emptied first so that glob matches one wheel.
.PHONY: dist
dist: $(UV)
	rm -rf dist
	$(UV) build --python $(PYTHON) --out-dir dist

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .pytest_cache .ruff_cache .demo .demo-* .ui-test dist .compat
