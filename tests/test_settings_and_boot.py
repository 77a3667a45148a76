"""The two ways LeadFlow starts: the embedded default (SQLite, in-process tasks) and production."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import clean_env
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


def manage(*args, env, timeout=120):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = manage("check", env=clean_env(DEBUG="0"))
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_malformed_setting_fails_loudly():
    result = manage("check", env=clean_env(DEBUG="ture"))
    assert result.returncode != 0
    assert "DEBUG='ture' is not a boolean" in result.stderr


def test_production_settings_pass_the_deploy_check():
    env = clean_env(
        DEBUG="0",
        SECRET_KEY="a-long-random-production-secret-" + "x" * 40,
        ALLOWED_HOSTS="leadflow.example.com",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/leadflow",
    )
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_segment_allowed_origins_comes_from_the_environment_and_a_malformed_origin_fails_the_check():
    script = "from django.conf import settings; print(settings.CORS_ALLOW_ALL_ORIGINS, *settings.CORS_ALLOWED_ORIGINS)"
    env = clean_env(DEBUG="1", SQLITE_PATH="/nonexistent/never-opened.sqlite3")
    default = manage("shell", "-c", script, env=env)
    assert default.stdout.splitlines()[-1].split() == ["True"], default.stderr
    listed = manage(
        "shell", "-c", script, env={**env, "SEGMENT_ALLOWED_ORIGINS": "https://a.example, https://b.example"}
    )
    assert listed.stdout.splitlines()[-1].split() == ["False", "https://a.example", "https://b.example"], listed.stderr
    malformed = manage("check", env={**env, "SEGMENT_ALLOWED_ORIGINS": "www.example.com"})
    assert malformed.returncode != 0 and "www.example.com" in malformed.stderr


def gunicorn_timeout(env):
    gunicorn = Path(sys.executable).parent / "gunicorn"
    result = subprocess.run(
        [str(gunicorn), "--print-config", "leadflow.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line.split("=")[1].strip() for line in result.stdout.splitlines() if line.startswith("timeout ")]
    return result.returncode, lines, result.stderr


def test_gunicorn_gives_a_worker_two_minutes_unless_gunicorn_timeout_says_otherwise():
    # The what-if preview takes about 30 s at 1M leads: gunicorn's own default would kill it.
    env = clean_env(DEBUG="1", SQLITE_PATH="/nonexistent/never-opened.sqlite3")
    assert gunicorn_timeout(env)[:2] == (0, ["120"])
    assert gunicorn_timeout({**env, "GUNICORN_TIMEOUT": "300"})[:2] == (0, ["300"])
    code, _lines, stderr = gunicorn_timeout({**env, "GUNICORN_TIMEOUT": "two minutes"})
    assert code != 0 and "two minutes" in stderr


def database_options(env):
    script = "from django.conf import settings; db = settings.DATABASES['default']; "
    script += "print(db['CONN_MAX_AGE'], db['CONN_HEALTH_CHECKS'])"
    result = manage("shell", "-c", script, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[-2:]


def test_database_connections_close_after_each_request_unless_the_process_opts_in():
    # runserver starts a thread per request: a kept connection would stay with each thread.
    env = clean_env(DEBUG="1", DATABASE_URL="postgres://postgres@127.0.0.1:5432/leadflow")
    env.pop("DB_CONN_MAX_AGE", None)
    assert database_options(env) == ["0", "True"]
    # gunicorn.conf.py and the worker's service set it; a kept connection is checked before reuse.
    assert database_options({**env, "DB_CONN_MAX_AGE": "60"}) == ["60", "True"]


def test_scoring_rescores_and_notifications_go_to_queues_of_their_own_unless_folded_into_one():
    script = "from leadflow.celery import app; route = app.amqp.router.route; "
    script += "print(*(route({}, name)['queue'].name for name in "
    script += "('scoring.tasks.score_leads', 'scoring.tasks.rescore_chunk', 'scoring.tasks.rescore_all', "
    script += "'handoff.tasks.deliver_webhook', 'scoring.tasks.sweep_dirty')), *sorted(app.amqp.queues))"
    env = clean_env(DEBUG="1", SQLITE_PATH="/nonexistent/never-opened.sqlite3", CELERY_BROKER_URL="memory://")
    split = manage("shell", "-c", script, env=env)
    # Routes, then the queues a worker started without -Q consumes: every one.
    assert split.stdout.split()[-9:] == ["scoring", "rescore", "rescore", "notifications", "celery"] + [
        "celery",
        "notifications",
        "rescore",
        "scoring",
    ], split.stderr
    folded = {"SCORING_QUEUE": "celery", "RESCORE_QUEUE": "celery", "NOTIFICATIONS_QUEUE": "celery"}
    one = manage("shell", "-c", script, env={**env, **folded})
    assert one.stdout.split()[-6:] == ["celery"] * 6, one.stderr


def test_embedded_default_boots_on_sqlite_and_scores_an_event_in_process(tmp_path):
    env = clean_env(DEBUG="1", SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    assert manage("migrate", "--noinput", env=env).returncode == 0
    key = manage("create_ingest_key", "website", env=env).stdout.strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = json.dumps(
            {"events": [{"event_id": "smoke-1", "type": "demo_request", "lead": {"email": "smoke@example.com"}}]}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/events",
            data=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        for _ in range(100):
            try:
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 -- our own http URL
                    assert response.status == 202
                    assert json.load(response) == {"accepted": 1, "duplicates": 0, "rejected": []}
                break
            except (ConnectionError, urllib.error.URLError):
                time.sleep(0.1)
        else:
            pytest.fail("the development server never answered")
    finally:
        server.terminate()
        server.wait(timeout=10)
    check = manage(
        "shell",
        "-c",
        "from leadflow.leads.models import Lead; lead = Lead.objects.get(); score = lead.scores.get(); "
        "print(lead.needs_rescore, score.score, score.ruleset_version)",
        env=env,
    )
    assert check.stdout.split()[-3:] == ["False", "30.00", "1"], check.stdout + check.stderr


def test_openapi_schema_generates_without_warnings():
    env = clean_env(DEBUG="1", SQLITE_PATH="/nonexistent/never-opened.sqlite3")
    result = manage("spectacular", "--fail-on-warn", "--file", os.devnull, env=env)
    assert result.returncode == 0, result.stderr


def test_web_worker_boots_with_views_loaded_and_its_boot_objects_out_of_the_collector():
    # leadflow.wsgi (what gunicorn loads) imports every view at boot, freezes the
    # objects created so far out of the cyclic collector, and collects young
    # objects every 50,000 allocations: a fifth of an ingest worker's CPU otherwise.
    script = (
        "import gc, sys, leadflow.wsgi; "
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 10000, 'leadflow.leads.api' in sys.modules)"
    )
    env = clean_env(DEBUG="1", SQLITE_PATH="/nonexistent/never-opened.sqlite3")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["50000", "True", "True"]


def test_a_web_process_loads_its_urls_without_scikit_learn():
    """Suggested points import scikit-learn when they fit, not with the URLconf: it would
    cost every web and worker process about a second at its first request."""
    code = (
        "import sys, django; django.setup(); from django.urls import resolve; resolve('/api/v1/events'); "
        "import leadflow.celery; print(sorted(name for name in ('sklearn', 'scipy') if name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean_env(DEBUG="1", DJANGO_SETTINGS_MODULE="leadflow.settings"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
