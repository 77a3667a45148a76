import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from leadflow.leads import services
from leadflow.leads.models import Event, Lead

URL = "/api/v1/events"


def event(n, email="ada@example.com", **extra):
    payload = {
        "event_id": f"evt-{n}",
        "type": "page_view",
        "occurred_at": "2026-11-20T10:00:00Z",
        "lead": {"email": email},
        "properties": {"url": f"/page/{n}"},
    }
    payload.update(extra)
    return payload


def post(client, body, **kwargs):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **kwargs)


def test_single_event_is_stored_and_creates_its_lead(ingest_client, source):
    response = post(ingest_client, event(1, email="Ada@Example.COM"))
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    lead = Lead.objects.get()
    assert lead.email == "ada@example.com"
    assert lead.source == source
    assert lead.needs_rescore is True
    assert lead.last_activity_at == datetime(2026, 11, 20, 10, tzinfo=UTC)
    stored = Event.objects.get()
    assert (stored.type, stored.event_id, stored.properties) == ("page_view", "evt-1", {"url": "/page/1"})


def test_batch_with_bad_items_keeps_the_good_ones(ingest_client):
    body = {
        "events": [
            event(1),
            {"event_id": "evt-2", "type": "Page View", "lead": {"email": "bob@example.com"}},
            event(3, email="not-an-email"),
            {"type": "page_view", "lead": {}},
            event(5, email="carol@example.com"),
            "nonsense",
        ]
    }
    response = post(ingest_client, body)
    assert response.status_code == 202
    data = response.json()
    assert data["accepted"] == 2
    assert [item["index"] for item in data["rejected"]] == [1, 2, 3, 5]
    errors = {item["index"]: item["errors"] for item in data["rejected"]}
    assert "type" in errors[1]
    assert errors[2] == {"lead": {"email": ["Enter a valid email address."]}}
    assert errors[3]["event_id"] == ["This field is required."]
    assert "non_field_errors" in errors[3]["lead"]
    assert set(Lead.objects.values_list("email", flat=True)) == {"ada@example.com", "carol@example.com"}


def test_validation_messages_are_field_level(ingest_client):
    body = event(1, occurred_at="2026-11-20T10:00:00", properties=[1], extra="x")
    response = post(ingest_client, body)
    errors = response.json()["rejected"][0]["errors"]
    assert "time zone" in errors["occurred_at"][0]
    assert errors["properties"] == ["Must be an object."]
    assert errors["extra"] == ["Unknown field: put extra data in 'properties'."]


def test_future_event_is_rejected(ingest_client):
    future = (timezone.now() + timedelta(days=2)).isoformat()
    response = post(ingest_client, event(1, occurred_at=future))
    assert response.json()["rejected"][0]["errors"]["occurred_at"] == ["Lies in the future: check the sender's clock."]


def test_occurred_at_defaults_to_now(ingest_client):
    body = event(1)
    del body["occurred_at"]
    before = timezone.now()
    post(ingest_client, body)
    assert Event.objects.get().occurred_at >= before


def test_resent_batch_counts_duplicates_and_stores_once(ingest_client):
    body = {"events": [event(n) for n in range(10)]}
    assert post(ingest_client, body).json() == {"accepted": 10, "duplicates": 0, "rejected": []}
    assert post(ingest_client, body).json() == {"accepted": 0, "duplicates": 10, "rejected": []}
    assert Event.objects.count() == 10


def test_duplicate_within_one_batch_is_counted_once(ingest_client):
    response = post(ingest_client, {"events": [event(1), event(1)]})
    assert response.json() == {"accepted": 1, "duplicates": 1, "rejected": []}


def test_same_event_id_with_other_payload_is_rejected(ingest_client):
    post(ingest_client, event(1))
    changed = event(1, type="pricing_view")
    response = post(ingest_client, {"events": [changed]})
    data = response.json()
    assert data["accepted"] == 0
    assert "different payload" in data["rejected"][0]["errors"]["event_id"][0]
    assert Event.objects.get().type == "page_view"


def test_same_event_id_from_another_source_is_a_different_event(ingest_client, db):
    from tests.factories import SourceFactory

    _key, other_secret = services.ingest_key_create(source=SourceFactory.create(slug="crm", name="CRM"))
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_secret}")
    post(ingest_client, event(1))
    assert post(other, event(1)).json()["accepted"] == 1
    assert Event.objects.count() == 2


def test_identity_resolution_by_email_or_external_id_and_trait_upsert(ingest_client):
    post(ingest_client, event(1, lead={"email": "ada@example.com", "traits": {"plan": "free", "seats": 3}}))
    post(
        ingest_client,
        event(2, lead={"external_id": "crm-7", "email": "ADA@example.com", "company": "Analytical Engines"}),
    )
    post(ingest_client, event(3, lead={"external_id": "crm-7", "traits": {"plan": "pro", "seats": None}}))
    lead = Lead.objects.get()
    assert lead.external_id == "crm-7"
    assert lead.company == "Analytical Engines"
    assert lead.traits == {"plan": "pro"}
    assert lead.events.count() == 3


def test_conflicting_identities_are_rejected_without_touching_either_lead(ingest_client):
    post(ingest_client, event(1, lead={"email": "ada@example.com", "external_id": "crm-1"}))
    post(ingest_client, event(2, lead={"email": "bob@example.com", "external_id": "crm-2"}))
    response = post(ingest_client, event(3, lead={"email": "ada@example.com", "external_id": "crm-2", "name": "X"}))
    data = response.json()
    assert data["accepted"] == 0
    assert "another lead" in data["rejected"][0]["errors"]["lead"]["external_id"][0]
    assert not Lead.objects.filter(name="X").exists()


def test_events_of_one_new_lead_in_a_batch_create_one_lead(ingest_client):
    body = {"events": [event(1, lead={"external_id": "x-1"}), event(2, lead={"external_id": "x-1", "email": "z@z.io"})]}
    assert post(ingest_client, body).json()["accepted"] == 2
    lead = Lead.objects.get()
    assert (lead.email, lead.external_id, lead.events.count()) == ("z@z.io", "x-1", 2)


def test_latest_activity_wins(ingest_client):
    post(
        ingest_client,
        {"events": [event(1, occurred_at="2026-11-20T10:00:00Z"), event(2, occurred_at="2026-11-21T10:00:00+02:00")]},
    )
    post(ingest_client, event(3, occurred_at="2026-11-01T10:00:00Z"))
    assert Lead.objects.get().last_activity_at.isoformat() == "2026-11-21T08:00:00+00:00"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer nonsense", "Bearer lfi_000000000000_wrong", "Token abc", "Bearer lfp_000000000000_x"],
)
def test_missing_or_invalid_key_is_401(db, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = post(client, event(1))
    assert response.status_code == 401
    assert Event.objects.count() == 0


def test_revoked_key_is_401(ingest_client, source):
    services.ingest_key_revoke(key=source.ingest_keys.get())
    assert post(ingest_client, event(1)).status_code == 401


def test_personal_token_cannot_post_events(marketer):
    _token, secret = services.api_token_create(user=marketer)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert post(client, event(1)).status_code == 403


def test_key_is_stored_hashed(source):
    key, secret = services.ingest_key_create(source=source)
    assert secret not in (key.key_hash, key.prefix)
    assert len(key.key_hash) == 64


def test_malformed_json_is_400(ingest_client):
    response = ingest_client.post(URL, data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert "Malformed JSON" in response.json()["detail"]


@pytest.mark.parametrize("body", [{"events": []}, {"events": "x"}, 42, []])
def test_empty_or_misshapen_body_is_400(ingest_client, body):
    assert post(ingest_client, body).status_code == 400


def test_more_than_1000_events_is_413(ingest_client):
    response = post(ingest_client, {"events": [event(n) for n in range(1001)]})
    assert response.status_code == 413
    assert Event.objects.count() == 0


def test_body_over_the_size_limit_is_413(ingest_client, settings):
    settings.INGEST_MAX_BODY_BYTES = 2048
    response = post(ingest_client, {"events": [event(n) for n in range(50)]})
    assert response.status_code == 413


def test_full_batch_of_1000_is_accepted(ingest_client):
    body = {"events": [event(n, email=f"lead{n % 100}@example.com") for n in range(1000)]}
    assert post(ingest_client, body).json()["accepted"] == 1000
    assert Lead.objects.count() == 100
    assert Lead.objects.filter(needs_rescore=True).count() == 100


def test_lead_upsert_creates_then_updates(ingest_client):
    response = ingest_client.post("/api/v1/leads", {"email": "ada@example.com", "company": "AE"}, format="json")
    assert response.status_code == 201
    lead_id = response.json()["id"]
    response = ingest_client.post(
        "/api/v1/leads", {"email": "ada@example.com", "job_title": "CTO", "traits": {"k": 1}}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["id"] == lead_id
    lead = Lead.objects.get()
    assert (lead.company, lead.job_title, lead.traits) == ("AE", "CTO", {"k": 1})


def test_lead_upsert_validation_is_field_level(ingest_client):
    response = ingest_client.post("/api/v1/leads", {"email": "x", "company_size": -1, "colour": "red"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"email", "company_size", "colour"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_threads_posting_the_same_event_store_one_row(ingest_secret):
    barrier = threading.Barrier(20)
    statuses = []

    def worker():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {ingest_secret}")
        barrier.wait()
        try:
            statuses.append(post(client, {"events": [event(1), event(2, email="bob@example.com")]}).json())
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Event.objects.count() == 2
    assert Lead.objects.count() == 2
    assert sum(s["accepted"] for s in statuses) == 2
    assert sum(s["duplicates"] for s in statuses) == 38
    assert all(s["rejected"] == [] for s in statuses)
