"""Through a real Celery worker process and Redis: nothing mocked, nothing eager."""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection

from leadflow.leads.models import Lead, Stage
from scoring.models import StageChange
from tests.conftest import behaviour, real_broker

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def celery_worker_process(transactional_db):
    """A `celery worker` subprocess consuming the test broker, writing to the test database."""
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("celery")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "DJANGO_SETTINGS_MODULE": "leadflow.settings",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "leadflow",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield worker
    worker.terminate()
    try:
        output, _ = worker.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        worker.kill()
        output, _ = worker.communicate()
    print(output[-5000:])


def wait_for(condition, timeout=45.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.worker
def test_events_posted_over_http_promote_a_lead_to_sql_through_a_real_worker(
    celery_worker_process, live_server, ingest_secret, publish_ruleset
):
    publish_ruleset([behaviour("page_view", 10), behaviour("demo_request", 40)], mql=30, sql=60)
    now = datetime.now(UTC)
    events = [
        {
            "event_id": f"w-{n}",
            "type": event_type,
            "occurred_at": (now - timedelta(minutes=10 - n)).isoformat(),
            "lead": {"email": "grace@example.com", "name": "Grace"},
        }
        for n, event_type in enumerate(["page_view", "page_view", "page_view", "demo_request"])
    ]
    with real_broker():
        response = requests.post(
            f"{live_server.url}/api/v1/events",
            json={"events": events},
            headers={"Authorization": f"Bearer {ingest_secret}"},
            timeout=10,
        )
    assert response.status_code == 202
    assert response.json()["accepted"] == 4

    assert wait_for(lambda: Lead.objects.filter(stage=Stage.SQL, needs_rescore=False).exists()), "worker never scored"
    lead = Lead.objects.get()
    assert lead.score == 70
    trail = list(StageChange.objects.filter(lead=lead).order_by("at", "id").values_list("from_stage", "to_stage"))
    assert trail == [("new", "mql"), ("mql", "sql")]
    assert celery_worker_process.poll() is None, "the worker is still alive"
