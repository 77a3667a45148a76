"""/healthz and /readyz: liveness without the database; readiness of the database, the broker,
the workers (their heartbeats) and the scoring lag."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from leadflow.health import worker_heartbeat_record
from leadflow.leads.models import Lead
from leadflow.models import WorkerHeartbeat
from tests.factories import LeadFactory
from tests.helpers import clean_env, real_broker
from tests.processes import ROOT, celery_env, celery_worker, free_port, own_redis, started, wait_for

ALL_QUEUES = ["celery", "notifications", "rescore", "scoring"]


def readiness(client=None):
    response = (client or Client()).get("/readyz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, response.json()


def failing(body):
    return sorted(name for name, check in body["checks"].items() if not check["ok"])


@pytest.mark.django_db
def test_healthz_answers_alive_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


@pytest.mark.django_db(transaction=True)
def test_readyz_on_the_embedded_default_is_ready_without_broker_or_worker_and_says_so():
    # The test settings run tasks in-process, as the embedded default does.
    status, body = readiness()
    assert status == 200, body
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "broker", "worker", "scoring_lag"}
    assert "in-process" in body["checks"]["broker"]["detail"]
    assert "in-process" in body["checks"]["worker"]["detail"]
    assert body["checks"]["scoring_lag"]["waiting"] == 0


@pytest.mark.django_db(transaction=True)
def test_readyz_fails_when_the_oldest_flagged_lead_waited_past_the_threshold(settings):
    settings.READINESS_SCORING_LAG_SECONDS = 300
    LeadFactory.create(needs_rescore=True)
    old = LeadFactory.create(needs_rescore=True)
    Lead.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(minutes=10))

    status, body = readiness()
    assert status == 503
    assert failing(body) == ["scoring_lag"]
    lag = body["checks"]["scoring_lag"]
    assert (lag["waiting"], lag["threshold_seconds"]) == (2, 300)
    assert 600 <= lag["oldest_seconds"] < 700
    assert lag["detail"].startswith("2 lead(s) wait for scoring, the oldest for 6")

    settings.READINESS_SCORING_LAG_SECONDS = 0  # reported, never a failure
    status, body = readiness()
    assert status == 200
    assert body["checks"]["scoring_lag"]["waiting"] == 2


@pytest.mark.django_db(transaction=True)
def test_readyz_needs_a_recent_heartbeat_from_a_worker_of_every_queue(settings):
    with real_broker():  # the test broker, up; tasks no longer run in-process
        status, body = readiness()
        assert status == 503
        assert failing(body) == ["worker"]
        assert "celery, notifications, rescore, scoring" in body["checks"]["worker"]["detail"]

        worker_heartbeat_record(hostname="scoring@a", queues=["scoring"])
        worker_heartbeat_record(hostname="default@a", queues=["celery", "notifications", "rescore"])
        status, body = readiness()
        assert status == 200, body
        assert set(body["checks"]["worker"]["heartbeat_age_seconds"]) == set(ALL_QUEUES)

        # The scoring worker went quiet two minutes ago.
        WorkerHeartbeat.objects.filter(hostname="scoring@a").update(beat_at=timezone.now() - timedelta(minutes=2))
        status, body = readiness()
        assert status == 503
        assert body["checks"]["worker"]["heartbeat_age_seconds"]["scoring"] >= 120
        assert "queue(s) scoring:" in body["checks"]["worker"]["detail"]

        settings.READINESS_WORKER_QUEUES = ["celery"]  # this deployment waits on the default queue only
        assert readiness()[0] == 200


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_readyz_answers_503_with_the_broker_down_and_200_when_it_is_back(tmp_path):
    with own_redis(tmp_path) as broker, real_broker(broker.url):
        worker = celery_worker("worker", env=celery_env(broker.url, WORKER_HEARTBEAT_SECONDS="1"), log_dir=tmp_path)
        with started(worker):
            # The worker's heartbeat names every queue it consumes (all of them, without -Q).
            wait_for(
                lambda: WorkerHeartbeat.objects.filter(queues=ALL_QUEUES).exists(),
                processes=[worker],
                what="the worker's first heartbeat",
            )
            status, body = readiness()
            assert status == 200, body

            broker.stop()
            status, body = readiness()
            assert status == 503
            assert failing(body) == ["broker"]
            assert body["checks"]["broker"]["detail"].startswith("The broker refused the connection")
            assert body["checks"]["database"]["ok"]

            broker.start()  # the same port: the broker is back
            wait_for(lambda: readiness()[0] == 200, processes=[worker], what="readiness once the broker is back")
            # The worker reconnected and beats again.
            beat_at = WorkerHeartbeat.objects.get().beat_at
            wait_for(
                lambda: WorkerHeartbeat.objects.get().beat_at > beat_at,
                processes=[worker],
                what="a heartbeat after the outage",
            )


DATABASE_DOWN = """
import json
import django
django.setup()
from django.test import Client
client = Client()
alive = client.get("/healthz")
ready = client.get("/readyz")
metrics = client.get("/metrics")
print(json.dumps({
    "healthz": alive.status_code,
    "readyz": ready.status_code,
    "checks": ready.json()["checks"],
    "metrics": metrics.status_code,
    "database_up": [
        line for line in metrics.content.decode().splitlines() if line.startswith("leadflow_metrics_database_up")
    ],
}))
"""


def test_with_the_database_down_healthz_is_alive_readyz_says_why_and_metrics_still_answer():
    env = clean_env(
        DEBUG="1",
        DJANGO_SETTINGS_MODULE="leadflow.settings",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/nothing-listens-here",
        ALLOWED_HOSTS="testserver",
        LOG_LEVEL="CRITICAL",
        REQUEST_LOG_LEVEL="CRITICAL",
    )
    result = subprocess.run(
        [sys.executable, "-c", DATABASE_DOWN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert (answers["healthz"], answers["readyz"], answers["metrics"]) == (200, 503, 200)
    checks = answers["checks"]
    assert sorted(name for name, check in checks.items() if not check["ok"]) == ["database", "scoring_lag"]
    assert (
        checks["scoring_lag"]["detail"] == "Could not read the leads waiting for scoring: the database did not answer."
    )
    assert "in-process" in checks["worker"]["detail"]  # no broker here: nothing to read
    assert answers["database_up"] == ["leadflow_metrics_database_up 0.0"]
