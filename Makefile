# LeadFlow: `make run` for a local demo, `make test` for the full suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/leadflow
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
# `make test` runs two streams side by side (two cores): the bulk of the suite on the
# database and Redis above, and the browser tests, the real-worker tests, the SQLite
# subset and the schema run on these.
SIDE_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/leadflow_side
SIDE_BROKER_URL ?= redis://127.0.0.1:6379/14
# requirements.txt alone, as the Docker image installs it: tests/test_runtime.py runs the web
# server, the worker and beat from it. Rebuilt only when requirements.txt changes (the stamp
# is named after its hash).
RUNTIME_VENV := .venv-runtime
RUNTIME_STAMP := $(RUNTIME_VENV)/requirements-$(firstword $(shell sha256sum requirements.txt)).stamp

.PHONY: help run test main-then-sqlite checks-then-side test-main test-side lint typecheck pytest pytest-sqlite schemathesis services venv dev-venv runtime-venv e2e-deps screenshots bench clean

# The help shows the values in force (defaults, or what the environment and the command line
# set), not the variables' names.
help:  ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's|$$(HOST)|$(HOST)|g' -e 's|$$(PORT)|$(PORT)|g' \
	  | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'
	@echo ""
	@echo "  make run serves on http://$(HOST):$(PORT)/  (another address: make run HOST=0.0.0.0 PORT=8080)"
	@echo "    database: $${DATABASE_URL:-SQLite, $${SQLITE_PATH:-$(CURDIR)/db.sqlite3} (set DATABASE_URL=postgres://... for PostgreSQL)}"
	@echo "    broker:   $${CELERY_BROKER_URL:-none, tasks run in-process (set CELERY_BROKER_URL=redis://... for a Celery worker)}"
	@echo "  make test, make pytest:"
	@echo "    database: $(TEST_DATABASE_URL) (browsers and workers: $(SIDE_DATABASE_URL))"
	@echo "    broker:   $(TEST_BROKER_URL) (browsers and workers: $(SIDE_BROKER_URL))"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip check
	touch $@ $(VENV)/.runtime

$(RUNTIME_STAMP):
	rm -rf $(RUNTIME_VENV)
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install --quiet -r requirements.txt
	$(RUNTIME_VENV)/bin/pip check
	touch $@

venv: $(VENV)/.runtime  ## Create .venv with the runtime dependencies
dev-venv: $(VENV)/.dev  ## Create .venv with the test and lint tools
runtime-venv: $(RUNTIME_STAMP)  ## Create .venv-runtime with requirements.txt alone (what production installs)

run: venv  ## Migrate, load the demo and serve on http://$(HOST):$(PORT) (SQLite + in-process tasks by default)
	@export DEBUG=$${DEBUG:-1}; \
	$(BIN)/python manage.py migrate --noinput && \
	$(BIN)/python manage.py seed_demo && \
	if [ -n "$$CELERY_BROKER_URL" ]; then \
	  echo "Starting a Celery worker with beat against $$CELERY_BROKER_URL"; \
	  $(BIN)/celery -A leadflow worker --beat --loglevel=INFO --concurrency=2 & WORKER=$$!; \
	  trap "kill $$WORKER 2>/dev/null" EXIT; \
	else \
	  echo "No CELERY_BROKER_URL: tasks run in-process (embedded default), periodic ones by run_schedule."; \
	  $(BIN)/python manage.py run_schedule & SCHEDULE=$$!; \
	  trap "kill $$SCHEDULE 2>/dev/null" EXIT; \
	fi; \
	echo ""; \
	echo "  LeadFlow is running at http://$(HOST):$(PORT)/   (API docs: http://$(HOST):$(PORT)/api/docs/)"; \
	echo "  Log in as admin / marketer / rep with the passwords printed above."; \
	echo ""; \
	PYTHON=$(BIN)/python bash scripts/dev-server.sh $(HOST):$(PORT)

services:  ## Start PostgreSQL and Redis if they are not running
	@bash scripts/ensure-services.sh

lint: dev-venv  ## ruff check + ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: dev-venv  ## mypy with django-stubs
	DEBUG=1 $(BIN)/mypy

pytest: dev-venv runtime-venv services  ## The test suite against PostgreSQL and Redis (but the schemathesis run)
	RUNTIME_PYTHON=$(CURDIR)/$(RUNTIME_VENV)/bin/python DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(BIN)/python -m pytest -m "not schemathesis" $(PYTEST_ARGS)

# In process (Django's WSGI application, the test database), all checks but those
# tests/test_api_schema.py switches off with its reasons; fixed seed, about a minute.
schemathesis: dev-venv services  ## The API against its OpenAPI schema (schemathesis)
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(BIN)/python -m pytest -m schemathesis -q tests/test_api_schema.py

# The same services on SQLite, where the raw PostgreSQL paths give way to their ORM twins
# (ingest's identity lookups, the claim, the chunked rescore, the set-based helpers).
SQLITE_TESTS := tests/test_ingest.py tests/test_ingest_storage.py tests/test_handoff.py tests/test_scoring.py \
	tests/test_rescore_runs.py tests/test_notifications.py tests/test_rollups.py tests/test_preview_diff.py
pytest-sqlite: dev-venv services  ## The ORM twins of the raw SQL: a subset of the suite on SQLite (about 40 s)
	DATABASE_URL= CELERY_BROKER_URL=$(TEST_BROKER_URL) SQLITE_PATH=$${TMPDIR:-/tmp}/leadflow-test-sqlite.sqlite3 \
	  $(BIN)/python -m pytest -q -m "not postgres and not worker" $(SQLITE_TESTS)

test:  ## Everything CI runs
	@# The two virtualenvs and Chromium install side by side, then two test streams run
	@# side by side, each on its own test database and Redis database: the bulk of the
	@# suite then the SQLite subset; the lint and type checks then the browser, worker,
	@# subprocess and schema tests.
	@$(MAKE) --no-print-directory -j3 dev-venv runtime-venv e2e-deps
	@$(MAKE) --no-print-directory services
	@$(MAKE) --no-print-directory -j2 --output-sync=target main-then-sqlite checks-then-side

main-then-sqlite:
	@$(MAKE) --no-print-directory test-main
	@$(MAKE) --no-print-directory pytest-sqlite

checks-then-side:
	@$(MAKE) --no-print-directory lint typecheck
	@$(MAKE) --no-print-directory test-side

test-main: dev-venv runtime-venv services  ## The suite but browsers, real workers, subprocess-heavy files, SQLite and the schema run
	RUNTIME_PYTHON=$(CURDIR)/$(RUNTIME_VENV)/bin/python DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  $(BIN)/python -m pytest -m "not schemathesis and not e2e and not worker and not side" $(PYTEST_ARGS)

test-side: dev-venv runtime-venv services e2e-deps  ## Browsers, real workers, the "side" files and the schema run
	RUNTIME_PYTHON=$(CURDIR)/$(RUNTIME_VENV)/bin/python DATABASE_URL=$(SIDE_DATABASE_URL) CELERY_BROKER_URL=$(SIDE_BROKER_URL) \
	  $(BIN)/python -m pytest -q -m "e2e or worker or side or schemathesis" $(PYTEST_ARGS)

e2e-deps:  ## Headless Chromium (Debian package) and Segment's browser SDK (npm) for the browser tests
	@command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null
	@bash scripts/fetch-analytics-js.sh

screenshots: dev-venv services e2e-deps  ## Refresh the README's screenshots (docs/screenshots) from the browser tests
	E2E_SCREENSHOTS=1 DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(BIN)/python -m pytest tests/e2e -q

bench: dev-venv services  ## Run the benchmarks (see bench/RESULTS.md)
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python bench/ingest.py

clean:  ## Remove the virtualenvs, the SQLite file and collected static files
	rm -rf $(VENV) $(RUNTIME_VENV) db.sqlite3 db.sqlite3-* staticfiles
