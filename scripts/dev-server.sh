#!/usr/bin/env bash
# The development server that `make run` starts (tests/test_connections.py starts it the same
# way): Django's runserver with autoreload. It serves each request on a new thread, so a
# database connection must not outlive its request: keep DB_CONN_MAX_AGE at its default, 0.
#   PYTHON=.venv/bin/python scripts/dev-server.sh 127.0.0.1:8000
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" manage.py runserver "$@"
