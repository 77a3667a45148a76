"""One person, one address: ingest stores an e-mail in one form (NFC, lower-cased, the
domain in IDNA), and refuses an address with an invisible or control character, which
would otherwise look like a known person and become a second lead."""

import json
import unicodedata

import pytest

from leadflow.leads.models import Lead
from leadflow.leads.validation import normalise_email, validate_lead

EVENTS_URL = "/api/v1/events"


def event(n, email):
    return {"event_id": f"evt-{n}", "type": "page_view", "lead": {"email": email}}


def post(client, items):
    return client.post(EVENTS_URL, data=json.dumps(items), content_type="application/json")


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Ada@Example.COM", "ada@example.com"),
        ("  ada@example.com ", "ada@example.com"),
        ("zoe@Bücher.de", "zoe@xn--bcher-kva.de"),
        ("zoe@xn--bcher-kva.de", "zoe@xn--bcher-kva.de"),
        # "ü" as u + combining diaeresis (NFD) is the same address as the composed one.
        (unicodedata.normalize("NFD", "zoe@bücher.de"), "zoe@xn--bcher-kva.de"),
    ],
)
def test_email_is_normalised_to_one_form(given, stored):
    assert normalise_email(given) == stored
    lead, errors = validate_lead({"email": given})
    assert errors == {}
    assert lead.email == stored


def test_spellings_of_one_address_make_one_lead(ingest_client):
    spellings = ["Zoe@Bücher.DE", unicodedata.normalize("NFD", "zoe@bücher.de"), "zoe@xn--bcher-kva.de"]
    response = post(ingest_client, [event(n, email) for n, email in enumerate(spellings)])
    assert response.status_code == 202
    assert response.json()["accepted"] == 3
    assert list(Lead.objects.values_list("email", flat=True)) == ["zoe@xn--bcher-kva.de"]


@pytest.mark.parametrize(
    ("email", "code_point"),
    [
        ("user@exa\u200bmple.com", "U+200B"),  # zero-width space
        ("us\u200der@example.com", "U+200D"),  # zero-width joiner
        ("\ufeffuser@example.com", "U+FEFF"),  # byte-order mark
        ("user@example.com\u202e", "U+202E"),  # right-to-left override
        ("user@exam\u00a0ple.com", "U+00A0"),  # no-break space
        ("user@exam\x07ple.com", "U+0007"),  # a control character
    ],
)
def test_address_with_an_invisible_character_is_refused_on_its_field(email, code_point):
    lead, errors = validate_lead({"email": email})
    assert lead is None
    assert list(errors) == ["email"]
    assert code_point in errors["email"][0]
    assert "remove it" in errors["email"][0]


def test_spoofed_address_is_rejected_by_ingest_and_does_not_become_a_second_lead(ingest_client):
    response = post(ingest_client, [event(1, "user@example.com"), event(2, "user@exa\u200bmple.com")])
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    [rejected] = body["rejected"]
    assert rejected["index"] == 1
    assert "U+200B ZERO WIDTH SPACE" in rejected["errors"]["lead"]["email"][0]
    assert list(Lead.objects.values_list("email", flat=True)) == ["user@example.com"]


def test_lead_upsert_refuses_a_spoofed_address_with_a_field_message(ingest_client):
    response = ingest_client.post(
        "/api/v1/leads", data=json.dumps({"email": "user@exa\u200bmple.com"}), content_type="application/json"
    )
    assert response.status_code == 400
    assert "invisible or control character" in response.json()["email"][0]
    assert not Lead.objects.exists()
