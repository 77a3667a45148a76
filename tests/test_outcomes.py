"""Outcomes (issue 14, item 1): what the CRM learns after the handoff — an opportunity, a
win, a loss — posted with an ingest key like events, idempotent by outcome_id, shown on
the lead and the handoff, summed on the dashboard (per currency), exported and erased
with the person."""

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from leadflow import selectors as dashboard
from leadflow.leads import services
from leadflow.leads.models import Outcome
from leadflow.management import demo_outcomes
from scoring.models import ScoringModel
from tests.factories import HandoffFactory, LeadFactory, OutcomeFactory, SourceFactory, default_model
from tests.helpers import browser, client_for, count_queries

pytestmark = pytest.mark.django_db

URL = "/api/v1/outcomes"
WHEN = "2026-11-20T10:00:00Z"
DAY = datetime(2026, 11, 20, 10, tzinfo=UTC)


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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_ten_threads_posting_the_same_outcome_store_one_and_refuse_another_payload(ingest_secret, ada):
    barrier = threading.Barrier(10)
    answers = []

    def worker(n):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {ingest_secret}")
        barrier.wait()
        try:
            answers.append(post(client, outcome(1, amount=12000 if n < 9 else 99)).json())
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stored = Outcome.objects.get()
    same = 9 if stored.amount == Decimal("12000.00") else 1  # whichever payload came first is the outcome
    assert sum(a["accepted"] for a in answers) == 1
    assert sum(a["duplicates"] for a in answers) == same - 1
    assert sum(len(a["rejected"]) for a in answers) == 10 - same


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


# --- The lead page and the handoff page ---------------------------------------------------------
def test_the_lead_page_shows_its_outcomes_with_amount_currency_and_date(marketer, ada):
    OutcomeFactory.create(lead=ada, kind="won", amount=Decimal("1234567.5"), currency="USD", occurred_at=DAY)
    OutcomeFactory.create(lead=ada, kind="lost", amount=None, currency="", occurred_at=DAY - timedelta(days=1))

    page = browser(marketer).get(reverse("lead-detail", args=[ada.public_id])).content.decode()

    section = page[page.index('id="outcomes-title"') :]
    assert "Won" in section and "USD 1,234,567.50" in section and "Nov 20, 2026" in section
    assert "Lost" in section and "no amount" in section
    assert section.index("Won") < section.index("Lost")  # newest first


def test_the_lead_page_says_when_no_outcome_came_yet(marketer, ada):
    page = browser(marketer).get(reverse("lead-detail", args=[ada.public_id])).content.decode()

    assert "No outcome yet." in page


def test_the_handoff_page_shows_the_leads_outcomes(rep, marketer):
    handoff = HandoffFactory.create()
    OutcomeFactory.create(lead=handoff.lead, kind="opportunity_created", amount=Decimal("800"), currency="EUR")
    url = reverse("handoff-detail", args=[handoff.public_id])

    for user in (rep, marketer):
        page = browser(user).get(url).content.decode()
        assert "Opportunity created" in page and "EUR 800.00" in page


def test_the_handoff_page_says_when_no_outcome_came_yet(rep):
    handoff = HandoffFactory.create()

    page = browser(rep).get(reverse("handoff-detail", args=[handoff.public_id])).content.decode()

    assert "No outcome yet." in page


def test_the_lead_and_handoff_pages_read_outcomes_in_a_constant_number_of_queries(
    marketer, django_assert_max_num_queries
):
    handoff = HandoffFactory.create()
    OutcomeFactory.create(lead=handoff.lead)
    client = browser(marketer)
    urls = [reverse("lead-detail", args=[handoff.lead.public_id]), reverse("handoff-detail", args=[handoff.public_id])]
    few = [count_queries(client, url) for url in urls]
    OutcomeFactory.create_batch(15, lead=handoff.lead, source=SourceFactory.create())

    for url, queries in zip(urls, few, strict=True):
        with django_assert_max_num_queries(queries):
            client.get(url)


# --- The dashboard ------------------------------------------------------------------------------
@pytest.fixture
def pipeline(db):
    """Outcomes of leads from two sources and two campaigns, qualified by two models, in
    EUR and USD, with one outcome before the period and one without an amount."""
    now = timezone.now()
    web, ads = SourceFactory.create(slug="web", name="Web"), SourceFactory.create(slug="ads", name="Ads")
    default = default_model()
    enterprise = ScoringModel.objects.create(name="Enterprise", slug="enterprise", position=5)
    earlier = now - timedelta(days=40)
    ada = HandoffFactory.create(
        lead__source=web, lead__utm_campaign="spring", created_at=earlier, status="closed", decided_at=earlier
    ).lead
    HandoffFactory.create(lead=ada, model=enterprise, created_at=now - timedelta(days=9))
    bob = HandoffFactory.create(lead__source=ads, lead__utm_campaign="spring", model=default).lead
    cid = LeadFactory.create(source=web, utm_campaign="")  # never handed over
    OutcomeFactory.create(lead=ada, kind="opportunity_created", amount=Decimal("100"), currency="EUR")
    OutcomeFactory.create(lead=ada, kind="won", amount=Decimal("90.50"), currency="EUR")
    OutcomeFactory.create(lead=bob, kind="opportunity_created", amount=Decimal("200"), currency="USD")
    OutcomeFactory.create(lead=bob, kind="won", amount=Decimal("150"), currency="USD")
    OutcomeFactory.create(lead=bob, kind="lost", amount=None, currency="")
    OutcomeFactory.create(lead=cid, kind="opportunity_created", amount=Decimal("40"), currency="EUR")
    OutcomeFactory.create(lead=cid, kind="opportunity_created", amount=None, currency="")
    OutcomeFactory.create(lead=cid, kind="won", amount=Decimal("5000"), occurred_at=now - timedelta(days=45))
    return {"web": web, "ads": ads, "enterprise": enterprise, "default": default}


def by_key(rows):
    return {row.key: row for row in rows}


def test_the_dashboard_sums_pipeline_and_won_per_currency_never_across(marketer, pipeline):
    numbers = browser(marketer).get(reverse("dashboard")).context["crm_outcomes"]

    total = numbers.total
    assert (total.opportunities, total.won, total.lost) == (4, 2, 1)
    assert total.pipeline == (("EUR", Decimal("140.00")), ("USD", Decimal("200.00")))
    assert total.won_amount == (("EUR", Decimal("90.50")), ("USD", Decimal("150.00")))


def test_the_dashboard_breaks_outcomes_down_by_source_campaign_and_model(marketer, pipeline):
    numbers = browser(marketer).get(reverse("dashboard")).context["crm_outcomes"]

    sources = by_key(numbers.by_source)
    assert sources["Web"].pipeline == (("EUR", Decimal("140.00")),)
    assert (sources["Web"].opportunities, sources["Web"].won, sources["Web"].won_amount) == (
        3,
        1,
        (("EUR", Decimal("90.50")),),
    )
    assert (sources["Ads"].pipeline, sources["Ads"].won_amount, sources["Ads"].lost) == (
        (("USD", Decimal("200.00")),),
        (("USD", Decimal("150.00")),),
        1,
    )
    campaigns = by_key(numbers.by_campaign)
    assert campaigns["spring"].pipeline == (("EUR", Decimal("100.00")), ("USD", Decimal("200.00")))
    assert campaigns[""].opportunities == 2
    models = by_key(numbers.by_model)
    # Ada's latest handoff was qualified by Enterprise (her older one by the default model).
    assert models["Enterprise"].won_amount == (("EUR", Decimal("90.50")),)
    assert models[pipeline["default"].name].won_amount == (("USD", Decimal("150.00")),)
    assert models[""].opportunities == 2  # Cid never had a handoff


def test_the_dashboards_period_and_source_filters_apply_to_the_outcomes(marketer, pipeline):
    client = browser(marketer)
    ads = client.get(reverse("dashboard"), {"source": "ads"}).context["crm_outcomes"].total
    longer = client.get(reverse("dashboard"), {"period": "90"}).context["crm_outcomes"].total

    assert (ads.opportunities, ads.won, ads.pipeline) == (1, 1, (("USD", Decimal("200.00")),))
    assert longer.won_amount == (("EUR", Decimal("5090.50")), ("USD", Decimal("150.00")))


def test_the_dashboard_shows_the_amounts_per_currency_with_their_cohort(marketer, pipeline):
    page = browser(marketer).get(reverse("dashboard")).content.decode()

    for label in ("Opportunities created in the period", "Won in the period", "Lost in the period"):
        assert f'<div class="label">{label}</div>' in page
    assert "EUR 140.00" in page and "USD 200.00" in page and "EUR 90.50" in page
    assert "EUR 340" not in page  # EUR and USD are never added
    for title in ("by source", "by campaign", "by scoring model"):
        assert f"Pipeline and wins {title}" in page


def test_the_dashboard_says_when_no_outcome_is_in_the_period(marketer):
    LeadFactory.create()

    page = browser(marketer).get(reverse("dashboard")).content.decode()

    assert "No outcome dated in this period." in page


def test_the_dashboard_reads_outcomes_in_a_constant_number_of_queries(
    marketer, pipeline, django_assert_max_num_queries
):
    client = browser(marketer)
    few = count_queries(client, reverse("dashboard"))
    for n in range(6):
        lead = HandoffFactory.create(lead__utm_campaign=f"c{n}", lead__source=SourceFactory.create()).lead
        OutcomeFactory.create_batch(3, lead=lead, currency=["EUR", "USD", "GBP"][n % 3])

    with django_assert_max_num_queries(few):
        client.get(reverse("dashboard"))


# --- Privacy ------------------------------------------------------------------------------------
def test_a_persons_export_holds_their_outcomes_and_erasure_scrubs_them(admin, ada):
    OutcomeFactory.create(lead=ada, outcome_id="crm-ada-deal", kind="won", properties={"contact": "Ada Lovelace"})
    period = dashboard.Period.last_days(30)
    before = dashboard.dashboard_outcomes(period=period)

    document = client_for(admin).get(f"/api/v1/leads/{ada.public_id}/export").json()
    erased = client_for(admin).post(f"/api/v1/leads/{ada.public_id}/erase").json()

    assert [(o["outcome_id"], o["kind"], o["amount"]) for o in document["outcomes"]] == [
        ("crm-ada-deal", "won", "12000.00")
    ]
    assert erased["counts"]["outcomes_scrubbed"] == 1
    kept = Outcome.objects.get()
    assert (kept.outcome_id, kept.properties) == (f"[erased] {kept.pk}", {})
    assert dashboard.dashboard_outcomes(period=period) == before


# --- The demo's outcomes (for seed_demo) ----------------------------------------------------------
def demo_deals(count, now):
    return [
        demo_outcomes.DemoDeal(
            email=f"deal{n}@demo.test",
            decided_at=now - timedelta(days=40),
            score=Decimal(45 + n % 40),
            country=["Germany", "United States"][n % 2],
            company_size=20 + n,
        )
        for n in range(count)
    ]


def test_the_demo_wins_more_often_with_a_higher_score_and_sells_in_two_currencies():
    now = timezone.now()
    deals = demo_deals(400, now)
    score_of = {deal.email: deal.score for deal in deals}

    payloads = demo_outcomes.demo_outcome_payloads(deals=deals, seed=7, now=now)

    decided = [p for p in payloads if p["kind"] in ("won", "lost")]
    high = [p["kind"] == "won" for p in decided if score_of[p["lead"]["email"]] >= 65]
    low = [p["kind"] == "won" for p in decided if score_of[p["lead"]["email"]] < 65]
    assert sum(high) / len(high) > sum(low) / len(low) + 0.25
    assert {p["currency"] for p in payloads} == {"EUR", "USD"}
    assert all(datetime.fromisoformat(p["occurred_at"]) <= now for p in payloads)
    assert payloads == demo_outcomes.demo_outcome_payloads(deals=deals, seed=7, now=now)  # the same every run


def test_the_demo_records_outcomes_of_accepted_handoffs_only_and_again_as_duplicates(db):
    now = timezone.now()
    web = SourceFactory.create(slug="website", name="Website")
    decided = now - timedelta(days=40)
    for n in range(12):
        status = "accepted" if n % 3 else "closed"
        HandoffFactory.create(
            lead__source=web, lead__email=f"demo{n}@demo.test", status=status, decided_at=decided, created_at=decided
        )

    first = demo_outcomes.demo_outcomes_record(source=web, seed=1, now=now)
    again = demo_outcomes.demo_outcomes_record(source=web, seed=1, now=now)

    assert first.accepted > 0 and first.rejected == []
    assert (again.accepted, again.duplicates) == (0, first.accepted)
    assert set(Outcome.objects.values_list("source__name", flat=True)) == {"CRM"}
    accepted = {f"demo{n}@demo.test" for n in range(12) if n % 3}
    assert set(Outcome.objects.values_list("lead__email", flat=True)) <= accepted
