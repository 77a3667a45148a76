"""Each process keeps the ingest keys it verified (``leadflow.leads.auth.VerifiedKeys``),
and forgets them as soon as any ingest key or source changes: in this process at the
commit, in every other at its next request (the generation of keys, in the shared cache).
With the cache down, keys are verified in the database on every request."""

import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from leadflow.leads import services
from leadflow.leads.models import Event, IngestKey
from tests.processes import ROOT, celery_env


def page_view(client, n):
    body = json.dumps({"event_id": f"kept-{n}", "type": "page_view", "lead": {"email": "ada@example.com"}})
    return client.post("/api/v1/events", data=body, content_type="application/json")


def key_queries(queries):
    return [query["sql"] for query in queries if "leads_ingestkey" in query["sql"]]


def test_a_verified_key_is_not_looked_up_again(ingest_client):
    assert page_view(ingest_client, 1).status_code == 202
    with CaptureQueriesContext(connection) as queries:
        assert page_view(ingest_client, 2).status_code == 202
    assert key_queries(queries) == []
    assert Event.objects.count() == 2


def test_a_key_revoked_after_use_is_refused_at_the_next_request(
    ingest_client, source, django_capture_on_commit_callbacks
):
    assert page_view(ingest_client, 1).status_code == 202
    with django_capture_on_commit_callbacks(execute=True):
        services.ingest_key_revoke(key=source.ingest_keys.get())
    response = page_view(ingest_client, 2)
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid or revoked ingest key."
    assert Event.objects.count() == 1


def test_a_key_deleted_after_use_is_refused_at_the_next_request(
    ingest_client, source, django_capture_on_commit_callbacks
):
    assert page_view(ingest_client, 1).status_code == 202
    with django_capture_on_commit_callbacks(execute=True):
        source.ingest_keys.get().delete()  # as the admin deletes it
    assert page_view(ingest_client, 2).status_code == 401


def test_a_segment_mapping_edited_after_use_applies_to_the_next_message(
    source, ingest_secret, marketer, django_capture_on_commit_callbacks
):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ingest_secret}")

    def track(message_id):
        message = {"type": "track", "event": "Demo Requested", "messageId": message_id, "userId": "u-1"}
        return client.post("/api/segment/v1/track", data=json.dumps(message), content_type="application/json")

    assert track("m-1").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        services.source_segment_event_types_update(
            source=source, event_types={"Demo Requested": "demo_request"}, actor=marketer
        )
    assert track("m-2").status_code == 200
    assert dict(Event.objects.values_list("event_id", "type")) == {"m-1": "demo_requested", "m-2": "demo_request"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_key_revoked_by_another_process_is_refused_at_the_next_request(ingest_client, source):
    assert page_view(ingest_client, 1).status_code == 202  # verified, and kept by this process
    revoke = (
        "from leadflow.leads import services; from leadflow.leads.models import IngestKey; "
        "services.ingest_key_revoke(key=IngestKey.objects.get())"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", revoke],
        cwd=ROOT,
        env=celery_env(settings.CELERY_BROKER_URL),
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert IngestKey.objects.get().revoked_at is not None
    assert page_view(ingest_client, 2).status_code == 401
    assert Event.objects.count() == 1


def test_keys_are_verified_in_the_database_while_the_cache_is_down(settings, ingest_client, source, caplog):
    # Nothing listens on port 1: every cache call fails at once, as with Redis down.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    assert page_view(ingest_client, 1).status_code == 202
    with CaptureQueriesContext(connection) as queries:
        assert page_view(ingest_client, 2).status_code == 202
    assert len(key_queries(queries)) == 1
    # A revocation no process could announce (the cache is down) applies at once.
    IngestKey.objects.filter(source=source).update(revoked_at=timezone.now())
    assert page_view(ingest_client, 3).status_code == 401
    assert "the cache is unavailable" in caplog.text
