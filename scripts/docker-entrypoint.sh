#!/bin/sh
# Entry point of the LeadFlow image. Runs the migrations first when
# MIGRATE_ON_START=1 (only the `web` service sets it, so the worker and beat
# never race it), then runs the command given (gunicorn, celery worker, beat…).
set -eu

if [ "${MIGRATE_ON_START:-0}" = "1" ]; then
    echo "docker-entrypoint: applying migrations"
    python manage.py migrate --noinput
fi

exec "$@"
