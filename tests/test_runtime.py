"""requirements.txt alone runs every process we ship: the web server, the worker, beat, the commands.

These tests start those processes with the Python of a virtualenv built from requirements.txt
alone, as the Docker image installs it (no test, lint or type tools, which bring packages of
their own). `make test` builds it (.venv-runtime) and passes it in RUNTIME_PYTHON; without it
these tests skip, so a bare `pytest` still runs the rest.
"""

import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import redis
import requests
from django.conf import settings

from leadflow.leads.models import Lead, Stage
from tests.factories import EventFactory, LeadFactory
from tests.helpers import behaviour, clean_env, lead_score
from tests.processes import ROOT, Process, answers, broker_queues, celery_env, free_port, started, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def runtime_python():
    python = os.environ.get("RUNTIME_PYTHON")
    if not python:
        pytest.skip("RUNTIME_PYTHON is not set: `make test` builds .venv-runtime from requirements.txt and sets it")
    has_test_tools = subprocess.run([python, "-c", "import pytest"], capture_output=True, timeout=30).returncode == 0
    assert not has_test_tools, (
        f"{python} has the test tools installed: point RUNTIME_PYTHON at a virtualenv built from "
        "requirements.txt alone (`make runtime-venv` builds .venv-runtime)"
    )
    return python


def production_env(**extra):
    """The test settings (DEBUG=0, a secret key…) against the test database and broker, tasks sent to the broker."""
    # The sweep runs every 2 s and takes leads flagged a moment ago (defaults: 60 s and 30 s).
    return celery_env(settings.CELERY_BROKER_URL, SWEEP_INTERVAL_SECONDS="2", SWEEP_GRACE_SECONDS="0", **extra)


def web_url(port):
    return f"http://127.0.0.1:{port}"


@pytest.mark.worker
def test_web_worker_and_beat_from_the_runtime_requirements_score_leads_end_to_end(
    runtime_python, transactional_db, tmp_path, ingest_secret, publish_ruleset
):
    publish_ruleset([behaviour("page_view", 10), behaviour("demo_request", 40)], mql=30, sql=60)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(*broker_queues())
    env = production_env()
    port = free_port()
    # The commands of the Dockerfile and docker-compose.yml (one process each, as there).
    web = Process(
        "web",
        [runtime_python, "-m", "gunicorn", "leadflow.wsgi", "--bind", f"127.0.0.1:{port}", "--access-logfile", "-"]
        + ["--workers", "1", "--control-socket", str(tmp_path / "gunicorn.ctl")],
        env=env,
        log_dir=tmp_path,
    )
    worker = Process(
        "worker",
        [runtime_python, "-m", "celery", "-A", "leadflow", "worker", "-l", "INFO", "--concurrency", "1"],
        env=env,
        log_dir=tmp_path,
    )
    with started(web, worker):
        wait_for(lambda: answers(f"{web_url(port)}/login/"), processes=[web, worker], what="gunicorn to answer")

        # 1. Events posted over HTTP: the web process enqueues, the worker scores the lead to SQL.
        now = datetime.now(UTC)
        events = [
            {
                "event_id": f"rt-{n}",
                "type": event_type,
                "occurred_at": (now - timedelta(minutes=10 - n)).isoformat(),
                "lead": {"email": "grace@example.com"},
            }
            for n, event_type in enumerate(["page_view", "page_view", "page_view", "demo_request"])
        ]
        response = requests.post(
            f"{web_url(port)}/api/v1/events",
            json={"events": events},
            headers={"Authorization": f"Bearer {ingest_secret}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 4
        wait_for(
            lambda: Lead.objects.filter(email="grace@example.com", stage=Stage.SQL, needs_rescore=False).exists(),
            processes=[web, worker],
            what="the worker to score the posted lead to SQL",
        )
        assert lead_score(Lead.objects.get(email="grace@example.com")) == 70

        # 2. A lead flagged with no task enqueued (a lost message): only beat's sweep can score it.
        forgotten = LeadFactory.create(email="ada@example.com", needs_rescore=True)
        EventFactory.create(lead=forgotten, type="demo_request", occurred_at=now - timedelta(minutes=1))
        beat = Process(
            "beat",
            [runtime_python, "-m", "celery", "-A", "leadflow", "beat", "-l", "INFO"]
            + ["--schedule", str(tmp_path / "beat-schedule"), "--pidfile", str(tmp_path / "beat.pid")],
            env=env,
            log_dir=tmp_path,
        )
        with started(beat):
            wait_for(
                # The stage, not only the flag: a scoring clears the flag when it takes the
                # lead, then commits the score and the stage together.
                lambda: Lead.objects.filter(pk=forgotten.pk, needs_rescore=False, stage=Stage.MQL).exists(),
                processes=[web, worker, beat],
                what="beat's sweep to have the worker score the flagged lead",
            )
            forgotten.refresh_from_db()
            assert (lead_score(forgotten), forgotten.stage) == (40, Stage.MQL)
            assert "Sending due task sweep-dirty-leads" in beat.output()


def test_runtime_requirements_pass_the_deploy_check_and_load_every_command(runtime_python):
    env = clean_env(
        DEBUG="0",
        SECRET_KEY="a-long-random-production-secret-" + "x" * 40,
        ALLOWED_HOSTS="leadflow.example.com",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/leadflow",
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
    )
    check = subprocess.run(
        [runtime_python, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # Every command `manage.py help` lists: its module imports and its parser builds (what --help does).
    script = (
        "import django; django.setup(); "
        "from django.core.management import get_commands, load_command_class; "
        "names = sorted(get_commands().items()); "
        "[load_command_class(app, name).create_parser('manage.py', name) for name, app in names]; "
        "print(len(names), 'commands')"
    )
    commands = subprocess.run(
        [runtime_python, "-c", script],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "leadflow.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert commands.returncode == 0, commands.stderr
    assert int(commands.stdout.split()[0]) > 30


def test_runtime_requirements_run_the_schedule_once_against_the_broker(
    runtime_python, transactional_db, publish_ruleset
):
    # With a broker configured the tasks it runs enqueue more work: a windowed rule makes the
    # daily decay refresh enqueue a rescore.
    publish_ruleset([behaviour("demo_request", 40, window_days=90)], mql=30, sql=60)
    flagged = LeadFactory.create(needs_rescore=True)
    EventFactory.create(lead=flagged, type="demo_request")
    queue = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue.delete(settings.RESCORE_QUEUE)
    try:
        result = subprocess.run(
            [runtime_python, "manage.py", "run_schedule", "--once"],
            cwd=ROOT,
            env=production_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert queue.llen(settings.RESCORE_QUEUE) >= 1, "the daily decay refresh enqueues a rescore"
    finally:
        queue.delete(settings.RESCORE_QUEUE)
    flagged.refresh_from_db()
    assert (flagged.needs_rescore, lead_score(flagged)) == (False, 40)
