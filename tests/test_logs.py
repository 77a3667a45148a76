"""Structured logs: a request id from X-Request-ID (or made) that is echoed, follows the
request into the Celery tasks it enqueues and appears in their log lines; one line per
ingest batch with its counts and none of its personal data; JSON or readable text."""

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
import redis
import requests
from django.conf import settings

from leadflow.leads.models import Lead
from leadflow.logconfig import formatter
from tests.helpers import behaviour, clean_env, real_broker
from tests.processes import ROOT, broker_queues, celery_env, celery_worker, started, wait_for


@pytest.mark.django_db
def test_a_request_keeps_the_id_it_came_with_or_gets_one_and_the_answer_says_which(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a.42").headers["X-Request-ID"] == "lb-7f3a.42"

    made = client.get("/healthz").headers["X-Request-ID"]
    assert uuid.UUID(made)
    assert client.get("/healthz").headers["X-Request-ID"] != made

    # What could break a log line or a header is not an id: replaced by a new one.
    for hostile in ("two words", 'quote"d', "x" * 129, "line\\nbreak"):
        answered = client.get("/healthz", HTTP_X_REQUEST_ID=hostile).headers["X-Request-ID"]
        assert uuid.UUID(answered), hostile


def json_lines(text):
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


@pytest.mark.worker
@pytest.mark.postgres
def test_the_request_id_follows_the_request_into_the_task_and_its_log_line_in_a_real_worker(
    transactional_db, live_server, ingest_secret, publish_ruleset, tmp_path
):
    publish_ruleset([behaviour("page_view", 10)], mql=30, sql=60)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(*broker_queues())
    env = celery_env(settings.CELERY_BROKER_URL, LOG_FORMAT="json", DEBUG="0")
    with started(celery_worker("worker", env=env, log_dir=tmp_path)) as (worker,), real_broker():
        response = requests.post(
            f"{live_server.url}/api/v1/events",
            json={
                "events": [
                    {
                        "event_id": "log-1",
                        "type": "page_view",
                        "occurred_at": datetime.now(UTC).isoformat(),
                        "lead": {"email": "ada@example.com", "name": "Ada Lovelace"},
                    }
                ]
            },
            headers={"Authorization": f"Bearer {ingest_secret}", "X-Request-ID": "req-follow-me-1"},
            timeout=10,
        )
        assert response.status_code == 202
        assert response.headers["X-Request-ID"] == "req-follow-me-1"
        wait_for(
            lambda: (
                Lead.objects.filter(needs_rescore=False).exists()
                and any(line.get("event") == "task_succeeded" for line in json_lines(worker.output()))
            ),
            processes=[worker],
            what="the worker to score the lead and log it",
        )
    task_lines = [line for line in json_lines(worker.output()) if line.get("request_id") == "req-follow-me-1"]
    started_line = next(line for line in task_lines if line["event"] == "task_started")
    assert started_line["task"].startswith("scoring.tasks.score_")
    assert {line["event"] for line in task_lines} >= {"task_started", "task_succeeded"}
    assert all(line["task_id"] == started_line["task_id"] for line in task_lines)
    # The worker's lines hold no personal data of the lead.
    assert "ada@example.com" not in worker.output() and "Lovelace" not in worker.output()


@pytest.mark.django_db
def test_each_ingest_batch_logs_its_source_and_counts_and_none_of_its_personal_data(ingest_client, caplog):
    events = [
        {"event_id": "b-1", "type": "page_view", "lead": {"email": "grace@example.com", "name": "Grace Hopper"}},
        {"event_id": "b-1", "type": "page_view", "lead": {"email": "grace@example.com", "name": "Grace Hopper"}},
        {"event_id": "b-2", "type": "not a slug!", "lead": {"email": "grace@example.com", "company": "Navy"}},
    ]
    with caplog.at_level("INFO", logger="leadflow.ingest"):
        response = ingest_client.post("/api/v1/events", {"events": events}, format="json")
    assert response.status_code == 202
    [record] = [record for record in caplog.records if record.name == "leadflow.ingest"]
    line = json.loads(formatter(log_format="json").format(record))
    assert {key: line[key] for key in ("event", "source", "accepted", "duplicates", "rejected", "level")} == {
        "event": "ingest_batch",
        "source": "website",
        "accepted": 1,
        "duplicates": 1,
        "rejected": 1,
        "level": "info",
    }
    assert line["duration_ms"] >= 0
    assert len(line["request_id"]) == 36  # the request's
    rendered = json.dumps(line)
    for personal in ("grace@example.com", "Grace", "Hopper", "Navy"):
        assert personal not in rendered


def log_a_line(**env):
    script = (
        "import logging, django; django.setup(); "
        "logging.getLogger('leadflow.check').warning('Lead %s could not be scored', 'ada@example.com')"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=clean_env(DJANGO_SETTINGS_MODULE="leadflow.settings", SQLITE_PATH="/nonexistent/x.sqlite3", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_logs_json_without_email_addresses_and_development_logs_readable_text():
    production = log_a_line(DEBUG="0", SECRET_KEY="a-long-random-production-secret-" + "x" * 40)
    assert production.returncode == 0, production.stderr
    [line] = [line for line in json_lines(production.stderr) if line["logger"] == "leadflow.check"]
    assert line["event"] == "Lead [email] could not be scored"
    assert (line["level"], line["logger"]) == ("warning", "leadflow.check")
    assert line["timestamp"].endswith("Z")

    development = log_a_line(DEBUG="1")
    assert development.returncode == 0, development.stderr
    assert "Lead ada@example.com could not be scored" in development.stderr
    assert not json_lines(development.stderr)

    forced = log_a_line(DEBUG="1", LOG_FORMAT="json")
    assert json_lines(forced.stderr)[-1]["event"] == "Lead ada@example.com could not be scored"

    wrong = log_a_line(DEBUG="1", LOG_FORMAT="xml")
    assert wrong.returncode != 0
    assert "LOG_FORMAT='xml' must be one of: json, console" in wrong.stderr
