"""Outcomes (issue 14, item 1): what the CRM learns after the handoff — an opportunity, a
win, a loss — posted with an ingest key like events, idempotent by outcome_id, shown on
the lead and the handoff, summed on the dashboard (per currency), exported and erased
with the person."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from leadflow.leads import services
from leadflow.leads.models import Outcome
from tests.factories import LeadFactory, OutcomeFactory, SourceFactory
from tests.helpers import client_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/outcomes"
WHEN = "2026-11-20T10:00:00Z"


def outcome(n, email="ada@example.com", **extra):
    payload = {
        "outcome_id": f"opp-{n}",
        "kind": "opportunity_created",
        "amount": 12000,
        "currency": "EUR",
        "occurred_at": WHEN,
        "lead": {"email": email},
        "properties": {"deal": f"D-{n}"},
    }
    payload.update(extra)
    return payload


def post(client, body, **kwargs):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **kwargs)


@pytest.fixture
def ada(source):
    return LeadFactory.create(email="ada@example.com", external_id="crm-ada", source=source)


# --- Ingest ------------------------------------------------------------------------------------
def test_a_single_outcome_is_stored_for_its_lead(ingest_client, source, ada):
    response = post(ingest_client, outcome(1, email="Ada@Example.COM"))

    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    stored = Outcome.objects.get()
    assert (stored.lead, stored.source, stored.outcome_id, stored.kind) == (ada, source, "opp-1", "opportunity_created")
    assert (stored.amount, stored.currency) == (Decimal("12000.00"), "EUR")
    assert stored.occurred_at == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert stored.properties == {"deal": "D-1"}


def test_a_lead_is_found_by_its_external_id(ingest_client, ada):
    response = post(ingest_client, outcome(1, email=None, lead={"external_id": "crm-ada"}, kind="won"))

    assert response.json()["accepted"] == 1
    assert Outcome.objects.get().lead == ada


def test_outcome_is_idempotent_by_outcome_id(ingest_client, ada):
    first = post(ingest_client, {"outcomes": [outcome(1), outcome(1)]})
    again = post(ingest_client, outcome(1))

    assert first.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert again.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert Outcome.objects.count() == 1


def test_the_same_outcome_id_from_another_source_is_another_outcome(ingest_client, ada):
    _key, other = services.ingest_key_create(source=SourceFactory.create(slug="crm", name="CRM"))
    crm = APIClient()
    crm.credentials(HTTP_AUTHORIZATION=f"Bearer {other}")

    assert post(ingest_client, outcome(1)).json()["accepted"] == 1
    assert post(crm, outcome(1)).json()["accepted"] == 1
    assert Outcome.objects.count() == 2


def test_a_resent_outcome_id_with_another_payload_is_rejected(ingest_client, ada):
    post(ingest_client, outcome(1))

    response = post(ingest_client, {"outcomes": [outcome(1, amount="13000"), outcome(2)]})

    data = response.json()
    assert (data["accepted"], data["duplicates"]) == (1, 0)
    [rejected] = data["rejected"]
    assert rejected["index"] == 0
    assert "different payload" in rejected["errors"]["outcome_id"][0]
    assert Outcome.objects.get(outcome_id="opp-1").amount == Decimal("12000.00")


def test_an_outcome_id_repeated_in_a_batch_with_another_payload_is_rejected(ingest_client, ada):
    response = post(ingest_client, [outcome(1), outcome(1, kind="won")])

    data = response.json()
    assert data["accepted"] == 1
    assert data["rejected"] == [
        {"index": 1, "errors": {"outcome_id": ["Repeats an outcome_id of this batch with a different payload."]}}
    ]


def test_an_equal_amount_written_otherwise_is_the_same_outcome(ingest_client, ada):
    post(ingest_client, outcome(1, amount=12000))

    assert post(ingest_client, outcome(1, amount="12000.00")).json()["duplicates"] == 1
    assert (
        post(ingest_client, outcome(1, amount=12000.0, occurred_at="2026-11-20T11:00:00+01:00")).json()["duplicates"]
        == 1
    )


def test_a_batch_with_bad_items_keeps_the_good_ones(ingest_client, ada):
    body = {
        "outcomes": [
            outcome(1),
            outcome(2, kind="signed"),
            "nonsense",
            outcome(4, email="nobody@example.com"),
            outcome(5, kind="won", amount=50000, currency="USD"),
        ]
    }

    response = post(ingest_client, body)

    assert response.status_code == 202
    data = response.json()
    assert data["accepted"] == 2
    assert [item["index"] for item in data["rejected"]] == [1, 2, 3]
    assert set(Outcome.objects.values_list("outcome_id", flat=True)) == {"opp-1", "opp-5"}


def test_an_outcome_of_an_unknown_lead_is_rejected_on_its_lead(ingest_client, ada):
    response = post(ingest_client, [outcome(1, email="nobody@example.com"), outcome(2, lead={"external_id": "x-9"})])

    errors = [item["errors"] for item in response.json()["rejected"]]
    assert len(errors) == 2
    for error in errors:
        assert error["lead"][0].startswith("No lead with this email or external_id")
    assert not Outcome.objects.exists()
    assert not type(ada).objects.filter(email="nobody@example.com").exists()


def test_identities_of_two_different_leads_are_rejected(ingest_client, ada):
    LeadFactory.create(email="bob@example.com", external_id="crm-bob")

    response = post(ingest_client, outcome(1, lead={"email": "ada@example.com", "external_id": "crm-bob"}))

    assert "external_id" in response.json()["rejected"][0]["errors"]["lead"]
    assert not Outcome.objects.exists()


def test_an_erased_person_gets_no_outcome(ingest_client, admin, ada):
    client_for(admin).post(f"/api/v1/leads/{ada.public_id}/erase")

    response = post(ingest_client, outcome(1))

    assert response.json()["rejected"][0]["errors"]["lead"][0].startswith("No lead with this email")


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"kind": "signed"}, "kind", "Must be one of: opportunity_created, won, lost."),
        ({"kind": None}, "kind", "This field is required."),
        ({"outcome_id": ""}, "outcome_id", "This field is required."),
        ({"outcome_id": "x" * 129}, "outcome_id", "At most 128 characters (got 129)."),
        ({"amount": -1}, "amount", "Must be 0 or more: send the deal's value, not a change of it."),
        ({"amount": "12k"}, "amount", 'Must be a number (e.g. 12000 or "12000.50"), or null when there is none.'),
        ({"amount": True}, "amount", 'Must be a number (e.g. 12000 or "12000.50"), or null when there is none.'),
        ({"amount": "10.005"}, "amount", "At most 2 decimal places (cents): round the amount."),
        ({"amount": 1e12}, "amount", "At most 999999999999.99 (got 1000000000000"),
        ({"amount": "NaN"}, "amount", "Contains NaN"),
        ({"currency": None}, "currency", "Required with an amount: its ISO 4217 code in upper case, e.g. EUR or USD."),
        ({"currency": "eur"}, "currency", "Must be an ISO 4217 code of 3 upper-case letters, e.g. EUR or USD."),
        ({"currency": "EURO"}, "currency", "Must be an ISO 4217 code of 3 upper-case letters, e.g. EUR or USD."),
        ({"occurred_at": None}, "occurred_at", "This field is required: when the CRM recorded it"),
        ({"occurred_at": "2026-11-20T10:00:00"}, "occurred_at", "Include a time zone offset"),
        ({"occurred_at": "yesterday"}, "occurred_at", "Not a valid ISO 8601 date-time"),
        ({"lead": None}, "lead", "Must be an object with 'email' and/or 'external_id' of a known lead."),
        ({"properties": [1]}, "properties", "Must be an object."),
        ({"stage": "won"}, "stage", "Unknown field: put extra data in 'properties'."),
    ],
)
def test_each_bad_field_is_named_with_what_to_send(ingest_client, ada, changes, field, message):
    response = post(ingest_client, outcome(1, **changes))

    [rejected] = response.json()["rejected"]
    assert list(rejected["errors"]) == [field]
    assert rejected["errors"][field][0].startswith(message)


def test_an_outcome_in_the_future_beyond_the_clock_skew_allowance_is_rejected(ingest_client, ada):
    soon = (timezone.now() + timedelta(minutes=30)).isoformat()
    late = (timezone.now() + timedelta(hours=2)).isoformat()

    response = post(ingest_client, [outcome(1, occurred_at=soon), outcome(2, occurred_at=late)])

    data = response.json()
    assert data["accepted"] == 1
    future = ["Lies in the future: check the sender's clock."]
    assert data["rejected"] == [{"index": 1, "errors": {"occurred_at": future}}]


def test_a_lead_object_takes_only_identities(ingest_client, ada):
    response = post(ingest_client, outcome(1, lead={"email": "ada@example.com", "name": "Ada"}))

    errors = response.json()["rejected"][0]["errors"]
    assert errors == {"lead": {"name": ["Unknown field: an outcome names its lead by 'email' and/or 'external_id'."]}}


def test_an_outcome_without_amount_needs_no_currency(ingest_client, ada):
    response = post(ingest_client, outcome(1, kind="lost", amount=None, currency=None))

    assert response.json()["accepted"] == 1
    assert Outcome.objects.values_list("amount", "currency").get() == (None, "")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [({"outcomes": []}, 400, "outcomes"), ({"outcomes": {}}, 400, "outcomes"), (3, 400, "non_field_errors")],
)
def test_a_body_without_outcomes_is_a_bad_request(ingest_client, body, status, field):
    response = post(ingest_client, body)

    assert response.status_code == status
    assert field in response.json()


def test_more_outcomes_than_a_batch_takes_are_refused(ingest_client, settings):
    settings.INGEST_MAX_BATCH = 2

    response = post(ingest_client, [outcome(1), outcome(2), outcome(3)])

    assert response.status_code == 413
    assert "3 outcomes in one request; the limit is 2." in response.json()["detail"]


def test_outcomes_need_an_ingest_key(api_client, marketer, admin):
    _token, personal = services.api_token_create(user=admin)
    with_token = APIClient()
    with_token.credentials(HTTP_AUTHORIZATION=f"Bearer {personal}")

    assert post(api_client, outcome(1)).status_code == 401
    assert post(with_token, outcome(1)).status_code == 403
    assert post(client_for(marketer), outcome(1)).status_code == 403
    assert not Outcome.objects.exists()


def test_outcomes_count_against_the_ingest_key_quota(ingest_client, ada, settings):
    settings.INGEST_RATE_LIMIT = 2

    answers = [post(ingest_client, outcome(n)).status_code for n in range(3)]

    assert answers == [202, 202, 429]


def test_the_schema_documents_outcome_ingest_and_the_lead_outcomes(client):
    paths = client.get("/api/schema/?format=json").json()["paths"]

    ingest = paths["/api/v1/outcomes"]["post"]
    assert ingest["operationId"] == "outcomes_ingest"
    assert {"202", "400", "401", "413"} <= set(ingest["responses"])
    assert "/api/v1/leads/{lead_id}/outcomes" in paths


# --- Reading a lead's outcomes ---------------------------------------------------------------
def test_people_read_a_leads_outcomes_newest_first(marketer, rep, admin, ada, django_assert_max_num_queries):
    now = timezone.now()
    OutcomeFactory.create(lead=ada, outcome_id="o1", kind="opportunity_created", occurred_at=now - timedelta(days=3))
    OutcomeFactory.create(lead=ada, outcome_id="o2", kind="won", amount=Decimal("9.5"), currency="USD", occurred_at=now)
    OutcomeFactory.create(outcome_id="someone-else")

    for user in (marketer, rep, admin):
        with django_assert_max_num_queries(6):
            response = client_for(user).get(f"/api/v1/leads/{ada.public_id}/outcomes")
        assert response.status_code == 200
        results = response.json()["results"]
        assert [row["outcome_id"] for row in results] == ["o2", "o1"]
        assert (results[0]["kind"], results[0]["amount"], results[0]["currency"]) == ("won", "9.50", "USD")
        assert results[0]["source"] == ada.source.slug


def test_a_leads_outcomes_are_not_for_outsiders_nor_for_unknown_leads(outsider, marketer, ada):
    assert client_for(outsider).get(f"/api/v1/leads/{ada.public_id}/outcomes").status_code == 403
    assert APIClient().get(f"/api/v1/leads/{ada.public_id}/outcomes").status_code == 401
    missing = "00000000-0000-4000-8000-000000000000"
    assert client_for(marketer).get(f"/api/v1/leads/{missing}/outcomes").status_code == 404
