"""/metrics: Prometheus's text format with django-prometheus's series and LeadFlow's own,
for the monitoring system only (a token or an allowed address)."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from handoff.models import HandoffStatus, WebhookDelivery, WebhookSubscription
from handoff.tasks import deliver_webhook
from leadflow.leads.models import AnonymousId, Lead
from leadflow.logconfig import formatter
from scoring.models import RescoreRun
from tests.factories import HandoffFactory, LeadFactory
from tests.helpers import behaviour, clean_env
from tests.processes import ROOT


def scrape(client=None, **headers):
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


def samples(text):
    """{(sample name, frozenset of labels): value}"""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())), 0.0)


def event(n, event_type="page_view", email="ada@example.com"):
    return {"event_id": f"m-{n}", "type": event_type, "lead": {"email": email, "name": "Ada Lovelace"}}


@pytest.mark.django_db
def test_a_segment_batch_is_counted_like_a_native_one_its_dropped_messages_as_rejected(
    ingest_client, django_capture_on_commit_callbacks
):
    before = samples(scrape())
    batch = [
        {"type": "track", "event": "Webinar Attended", "userId": "u-1", "messageId": "s-1"},
        {"type": "track", "event": "Webinar Attended", "userId": "u-1", "messageId": "s-1"},
        {"type": "track", "messageId": "s-2"},  # no person and no event name: dropped
    ]
    with django_capture_on_commit_callbacks(execute=True):
        assert ingest_client.post("/api/segment/v1/batch", {"batch": batch}, format="json").status_code == 200

    after = samples(scrape())
    for outcome, count in (("accepted", 1), ("duplicate", 1), ("rejected", 1)):
        name, labels = "leadflow_ingest_events_total", {"source": "website", "outcome": outcome}
        assert value(after, name, **labels) - value(before, name, **labels) == count
    batches = "leadflow_ingest_batch_seconds_count"
    assert value(after, batches, source="website") - value(before, batches, source="website") == 1


@pytest.mark.django_db
def test_a_segment_batch_of_identify_group_and_alias_counts_its_messages_as_accepted_in_the_series_and_the_log(
    ingest_client, caplog, django_capture_on_commit_callbacks
):
    before = samples(scrape())
    batch = [
        {"type": "identify", "userId": "u-1", "traits": {"email": "ada@example.com"}, "messageId": "i-1"},
        {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"name": "Analytical"}, "messageId": "g-1"},
        {"type": "alias", "previousId": "anon-1", "userId": "u-1", "messageId": "a-1"},
        {"type": "identify", "traits": {"email": "nobody@example.com"}, "messageId": "i-2"},  # no id: dropped
    ]
    with caplog.at_level("INFO", logger="leadflow.ingest"), django_capture_on_commit_callbacks(execute=True):
        assert ingest_client.post("/api/segment/v1/batch", {"batch": batch}, format="json").status_code == 200
    lead = Lead.objects.get()
    assert (lead.external_id, lead.traits["account"]) == ("u-1", "Analytical")
    assert AnonymousId.objects.get().lead_id == lead.pk

    after = samples(scrape())
    for outcome, count in (("accepted", 3), ("duplicate", 0), ("rejected", 1)):
        name, labels = "leadflow_ingest_events_total", {"source": "website", "outcome": outcome}
        assert value(after, name, **labels) - value(before, name, **labels) == count
    [record] = [record for record in caplog.records if record.name == "leadflow.ingest"]
    line = json.loads(formatter(log_format="json").format(record))
    assert {key: line[key] for key in ("event", "accepted", "duplicates", "rejected", "accepted_by_kind")} == {
        "event": "ingest_batch",
        "accepted": 3,
        "duplicates": 0,
        "rejected": 1,
        "accepted_by_kind": {"events": 0, "leads": 2, "aliases": 1},
    }
    assert "ada@example.com" not in json.dumps(line)


@pytest.mark.django_db
def test_metrics_count_ingested_events_by_source_and_outcome_and_time_each_batch(
    ingest_client, publish_ruleset, django_capture_on_commit_callbacks
):
    publish_ruleset([behaviour("page_view", 10)], mql=30, sql=60)
    before = samples(scrape())

    body = {"events": [event(1), event(2), event(1), {"event_id": "m-bad", "type": "page_view"}]}
    with django_capture_on_commit_callbacks(execute=True):
        response = ingest_client.post("/api/v1/events", body, format="json")
    assert response.json()["accepted"] == 2 and response.json()["duplicates"] == 1

    after = samples(scrape())
    for outcome, count in (("accepted", 2), ("duplicate", 1), ("rejected", 1)):
        name, labels = "leadflow_ingest_events_total", {"source": "website", "outcome": outcome}
        assert value(after, name, **labels) - value(before, name, **labels) == count
    batches = "leadflow_ingest_batch_seconds_count"
    assert value(after, batches, source="website") - value(before, batches, source="website") == 1
    # The ingest enqueued the scoring, which ran in-process (the embedded default): timed.
    scoring = "leadflow_task_seconds_count"
    labels = {"task": "scoring.tasks.score_leads", "queue": "in-process", "state": "SUCCESS"}
    assert value(after, scoring, **labels) - value(before, scoring, **labels) >= 1
    # django-prometheus: requests by view, database queries.
    assert (
        value(
            after,
            "django_http_requests_total_by_view_transport_method_total",
            view="metrics",
            transport="http",
            method="GET",
        )
        >= 1
    )
    assert any(name == "django_db_execute_total" for name, _labels in after)


@pytest.mark.django_db
def test_metrics_read_the_backlog_rescores_handoffs_and_webhooks_from_the_database(publish_ruleset, rep):
    now = timezone.now()
    ruleset = publish_ruleset([behaviour("page_view", 10)], mql=30, sql=60)
    waiting = LeadFactory.create(needs_rescore=True)
    LeadFactory.create(needs_rescore=True)
    type(waiting).objects.filter(pk=waiting.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    run = RescoreRun.objects.create(ruleset=ruleset, state="running", total=200, done=50, reason="publish")
    HandoffFactory.create()
    HandoffFactory.create(due_at=timezone.now() - timedelta(hours=1))  # overdue
    claimed = HandoffFactory.create(
        status=HandoffStatus.CLAIMED, claimed_by=rep, claimed_at=now, claim_expires_at=now + timedelta(hours=4)
    )
    HandoffFactory.create(status=HandoffStatus.ACCEPTED, decided_at=now)
    hook = WebhookSubscription.objects.create(
        name="CRM", url="https://crm.example.com/hook", secret="whsec_metrics", events=["lead.sql"]
    )
    WebhookDelivery.objects.create(subscription=hook, key="a", payload={}, delivered_at=now)
    WebhookDelivery.objects.create(subscription=hook, key="b", payload={}, delivered_at=now)
    WebhookDelivery.objects.create(subscription=hook, key="c", payload={}, failed_at=now)
    WebhookDelivery.objects.create(subscription=hook, key="d", payload={})
    WebhookDelivery.objects.create(subscription=hook, key="e", payload={}, attempts=2)
    assert claimed.status == HandoffStatus.CLAIMED

    found = samples(scrape())
    assert value(found, "leadflow_leads_waiting_for_scoring") == 2
    assert 300 <= value(found, "leadflow_scoring_lag_seconds") < 400
    model = ruleset.model.slug
    labels = {"run": str(run.pk), "model": model, "reason": "publish", "state": "running"}
    assert value(found, "leadflow_rescore_progress_ratio", **labels) == 0.25
    assert value(found, "leadflow_rescore_leads_done", run=str(run.pk)) == 50
    assert value(found, "leadflow_rescore_leads_total", run=str(run.pk)) == 200
    assert value(found, "leadflow_rescore_runs", state="running") == 1
    assert value(found, "leadflow_handoffs_open", status="queued") == 2
    assert value(found, "leadflow_handoffs_open", status="claimed") == 1
    assert value(found, "leadflow_handoffs_overdue") == 1
    for state, count in (("delivered", 2), ("failed", 1), ("pending", 1), ("retrying", 1)):
        assert value(found, "leadflow_webhook_deliveries_by_state", state=state) == count


@pytest.mark.django_db
def test_metrics_count_webhook_delivery_attempts_by_outcome():
    before = samples(scrape())
    deliver_webhook.delay(0)  # no such delivery: the sender skips it
    after = samples(scrape())
    name = "leadflow_webhook_deliveries_total"
    assert value(after, name, outcome="skipped") - value(before, name, outcome="skipped") == 1


@pytest.mark.django_db
def test_metrics_answer_the_token_or_an_allowed_address_and_nobody_else(settings):
    client = Client(REMOTE_ADDR="203.0.113.9")
    refused = client.get("/metrics")
    assert refused.status_code == 403
    assert "METRICS_TOKEN" in refused.json()["detail"]
    assert "leadflow_" not in refused.content.decode()

    settings.METRICS_TOKEN = "a-long-metrics-token"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 403
    assert "leadflow_leads_waiting_for_scoring" in scrape(client, HTTP_AUTHORIZATION="Bearer a-long-metrics-token")

    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    settings.METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8", "203.0.113.0/24"]
    assert "leadflow_handoffs_overdue" in scrape(client)
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403  # loopback no longer listed


def test_a_malformed_allowed_address_stops_the_process_at_start_up():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean_env(DEBUG="1", METRICS_ALLOWED_ADDRESSES="10.0.0.0/8,intranet"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "METRICS_ALLOWED_ADDRESSES: 'intranet' is neither an address nor a network" in result.stderr


COUNT_IN_A_PROCESS = """
import django
django.setup()
from leadflow import metrics
metrics.ingest_batch_done(source="website", accepted=3, duplicates=0, rejected=1, seconds=0.01)
"""

SCRAPE_IN_A_PROCESS = """
import django
django.setup()
from prometheus_client import generate_latest
from leadflow.metrics import exported_registry
print(generate_latest(exported_registry()).decode())
"""


def test_with_a_multiprocess_directory_the_counters_of_every_process_add_up(tmp_path):
    env = clean_env(
        DEBUG="1",
        DJANGO_SETTINGS_MODULE="leadflow.settings",
        SQLITE_PATH="/nonexistent/never-opened.sqlite3",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )

    def run(script):
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    run(COUNT_IN_A_PROCESS)
    run(COUNT_IN_A_PROCESS)  # two gunicorn workers, say
    found = samples(run(SCRAPE_IN_A_PROCESS))
    assert value(found, "leadflow_ingest_events_total", source="website", outcome="accepted") == 6
    assert value(found, "leadflow_ingest_events_total", source="website", outcome="rejected") == 2
    assert value(found, "leadflow_ingest_batch_seconds_count", source="website") == 2
