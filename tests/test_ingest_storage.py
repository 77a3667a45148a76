"""How ingest stores a batch: set-based SQL helpers, fingerprints, indexes, concurrency."""

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from leadflow.db import insert_ignore_conflicts_returning, pg_array, update_from_values
from leadflow.leads import services
from leadflow.leads.models import Event, Lead
from leadflow.leads.validation import LeadInput, event_fingerprint, validate_event
from tests.factories import LeadFactory, SourceFactory

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    properties=st.dictionaries(st.text(), json_values, max_size=5),
    email=st.none() | st.emails(),
    external_id=st.none() | st.text(max_size=20),
)
def test_fingerprint_is_the_hash_of_the_canonical_payload(properties, email, external_id):
    # The stored fingerprints of earlier events must keep matching their resends:
    # the formula is sha256 of one canonical JSON list, however it is built.
    occurred_at = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    lead = LeadInput(email=email, external_id=external_id)
    canonical = json.dumps(
        ["page_view", occurred_at.isoformat(), email, external_id, properties],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    assert (
        event_fingerprint("page_view", occurred_at, lead, properties) == hashlib.sha256(canonical.encode()).hexdigest()
    )


def test_validated_event_carries_the_fingerprint_of_its_properties():
    payload: dict[str, Any] = {
        "event_id": "e-1",
        "type": "content_download",
        "occurred_at": "2026-11-20T11:30:00+01:00",
        "lead": {"email": "ada@example.com", "name": "Ada"},
        "properties": {"topic": "scoring", "asset": "guide.pdf", "tags": ["é", 1]},
    }
    event, errors = validate_event(payload, now=datetime(2026, 11, 25, tzinfo=UTC))
    assert errors == {}
    assert event is not None
    assert json.loads(event.properties_json) == payload["properties"]
    expected = event_fingerprint(
        "content_download", datetime(2026, 11, 20, 10, 30, tzinfo=UTC), event.lead, payload["properties"]
    )
    assert event.fingerprint == expected


def test_properties_over_the_limit_are_measured_in_utf8_bytes():
    # 6,000 "é" are 12,000 bytes of UTF-8 (under 16 KiB) but 36,000 characters escaped.
    payload = {"event_id": "e-1", "type": "page_view", "lead": {"email": "a@example.com"}}
    accepted, errors = validate_event({**payload, "properties": {"text": "é" * 6000}})
    assert errors == {}
    assert accepted is not None
    _rejected, errors = validate_event({**payload, "properties": {"text": "é" * 9000}})
    assert "properties" in errors


def test_pg_array_writes_integers_and_datetimes_as_literals():
    moment = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert pg_array([3, 1, 2]) == "{3,1,2}"
    assert pg_array([moment, None]) == '{"2026-11-20T10:00:00+00:00",NULL}'
    assert pg_array(["a", "b"]) == ["a", "b"]
    assert pg_array([True, False]) == [True, False]


def test_update_from_values_sets_varying_nullable_and_shared_values(db):
    leads = LeadFactory.create_batch(3, needs_rescore=False)
    moment = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    rows = [
        [leads[0].pk, moment, True, {"plan": "pro"}],
        [leads[1].pk, None, True, {}],
        [leads[2].pk, moment + timedelta(hours=1), True, {"plan": "free", "seats": 3}],
    ]
    assert update_from_values(Lead, ["last_activity_at", "needs_rescore", "traits"], rows) == 3
    fresh = {lead.pk: lead for lead in Lead.objects.all()}
    assert [fresh[lead.pk].last_activity_at for lead in leads] == [moment, None, moment + timedelta(hours=1)]
    assert all(fresh[lead.pk].needs_rescore for lead in leads)
    assert [fresh[lead.pk].traits for lead in leads] == [{"plan": "pro"}, {}, {"plan": "free", "seats": 3}]


def test_bulk_insert_keeps_rows_that_share_every_value_but_the_first(db):
    source = SourceFactory.create()
    lead = LeadFactory.create()
    moment = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    columns = ["event_id", "lead", "source", "type", "properties", "occurred_at", "received_at", "fingerprint"]
    rows = [[f"e-{n}", lead.pk, source.pk, "page_view", {"url": "/"}, moment, moment, "f" * 64] for n in range(3)]
    inserted = insert_ignore_conflicts_returning(Event, columns, rows, ["event_id"])
    assert sorted(inserted) == [("e-0",), ("e-1",), ("e-2",)]
    # One row: nothing to unnest but the row itself; a conflict returns nothing.
    assert insert_ignore_conflicts_returning(Event, columns, rows[:1], ["event_id"]) == []
    assert Event.objects.filter(lead=lead, properties={"url": "/"}).count() == 3


def _indexes(table):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [table])
        return {name for (name,) in cursor.fetchall()}


@pytest.mark.postgres
def test_event_writes_maintain_only_the_indexes_queries_use(db):
    # Each index costs every ingested event an insertion; these three serve the
    # primary key, idempotency and a lead's timeline (scoring and the lead page).
    assert _indexes("leads_event") == {"leads_event_pkey", "event_source_event_id_unique", "event_lead_occurred"}
    lead_indexes = _indexes("leads_lead")
    assert "leads_lead_source_id_a5f74de9" not in lead_indexes  # covered by lead_source_created
    assert "lead_owner" in lead_indexes  # partial: leads without an owner cost nothing


@pytest.mark.postgres
def test_known_event_ids_are_probed_through_the_unique_index(db):
    source = SourceFactory.create()
    sql, params = services.event_fingerprints_sql(source, [f"e-{n}" for n in range(1000)])
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "event_source_event_id_unique" in plan
    assert "Index Cond: ((source_id = " in plan and "event_id" in plan.split("Index Cond:")[1]
    assert "Seq Scan on leads_event" not in plan


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_sharing_new_and_known_leads_all_succeed(ingest_secret):
    # Six clients post at once, each a batch over the same twelve leads, half of
    # which exist already: no deadlock, no lost event, one lead per identity.
    for n in range(6):
        Lead.objects.create(email=f"lead{n}@example.com", needs_rescore=False)
    barrier = threading.Barrier(6)
    answers = []

    def client_posts(number):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {ingest_secret}")
        events = [
            {
                "event_id": f"c{number}-{n}",
                "type": "page_view",
                "occurred_at": f"2026-11-20T10:{n:02d}:00Z",
                "lead": {"email": f"lead{(n + number) % 12}@example.com", "traits": {"client": number}},
            }
            for n in range(60)
        ]
        barrier.wait()
        try:
            response = client.post("/api/v1/events", {"events": events}, format="json")
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=client_posts, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in answers] == [202] * 6
    assert all(body == {"accepted": 60, "duplicates": 0, "rejected": []} for _, body in answers)
    assert Event.objects.count() == 360
    assert Lead.objects.count() == 12
    for lead in Lead.objects.all():  # every lead took its batches' upserts
        assert lead.traits["client"] in range(6)
        assert lead.last_activity_at in {datetime(2026, 11, 20, 10, minute, tzinfo=UTC) for minute in range(60)}
