"""Privacy operations (issue "Trust"): export and erase one person, the suppression list
that keeps an erased address out, retention of old events and anonymous visitors, the
stage history's scoping, the password reset's rate limit, and logs without addresses."""

import io
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.db.models import Model
from django.utils import timezone
from rest_framework.test import APIClient

from handoff import selectors as handoff_selectors
from handoff import services as handoff_services
from handoff.models import Handoff, Notification, WebhookDelivery
from leadflow import selectors as dashboard
from leadflow.leads import privacy
from leadflow.leads.importexport import csv_layout, leads_import
from leadflow.leads.models import AnonymousId, Erasure, Event, Lead, Outcome, Stage, StageChange, SuppressedEmail
from leadflow.leads.retention import months_before, retention_apply
from leadflow.logredact import RedactingFormatter, SummaryConsoleEmailBackend
from scoring import services as scoring_services
from scoring.models import Score
from tests.factories import EventFactory, HandoffFactory, LeadFactory, UserFactory
from tests.helpers import behaviour, browser, client_for, fit

pytestmark = pytest.mark.django_db

# Strings no generated data contains: any hit in the database after erasure is a leak.
EMAIL = "ada.quill-7q@analytical.example"
NAME = "Ada Quillfeather-7q"
NOTE = "Spoke with her husband Charles-7q on the phone"


def ingest(client, *items):
    return client.post("/api/v1/events", {"events": list(items)}, format="json")


def event(event_id, event_type, email=EMAIL, **lead):
    return {"event_id": event_id, "type": event_type, "lead": {"email": email, **lead}}


@pytest.fixture
def person(db, settings, ingest_client, publish_ruleset, rep, marketer):
    """A person who became an SQL through ingest and scoring, was claimed and rejected
    with a note: events, a score with its explanation, stage history, a handoff with its
    audit trail, notifications and webhook deliveries that name them."""
    settings.NOTIFY_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    settings.NOTIFY_WEBHOOK_SECRET = "test-secret"
    publish_ruleset([behaviour("page_view", 40), behaviour("demo_request", 30)])
    answer = ingest(
        ingest_client,
        event("p1", "page_view", name=NAME, company="Analytical Engines", traits={"phone": "+44 7q"}),
        event("p2", "demo_request"),
    )
    assert answer.json()["accepted"] == 2
    lead = Lead.objects.get(email=EMAIL)
    scoring_services.leads_score(lead_ids=[lead.pk])
    handoff = Handoff.objects.get(lead=lead)
    handoff_services.handoff_claim(handoff=handoff, user=rep)
    handoff_services.handoff_reject(handoff=handoff, user=rep, reason="no_budget", note=NOTE)
    lead.refresh_from_db()
    assert lead.stage == Stage.RECYCLED
    # Later the CRM reports an opportunity, under an id and with a note that name the person.
    outcome = {
        "outcome_id": f"deal-{EMAIL}",
        "kind": "opportunity_created",
        "amount": "5000",
        "currency": "EUR",
        "occurred_at": timezone.now().isoformat(),
        "lead": {"email": EMAIL},
        "properties": {"contact": NAME},
    }
    assert ingest_client.post("/api/v1/outcomes", outcome, format="json").json()["accepted"] == 1
    return lead


# --- Export -----
def models_referring_to_lead() -> set[type[Model]]:
    """Every model whose rows refer to a lead, directly or through another such model:
    the foreign keys to Lead, followed recursively."""
    found: set[type[Model]] = set()
    pending: list[type[Model]] = [Lead]
    while pending:
        model = pending.pop()
        for relation in model._meta.related_objects:
            related = relation.related_model
            if related not in found and related is not Lead:
                found.add(related)
                pending.append(related)
    return found


def test_every_model_holding_lead_data_is_exported_and_erased():
    covered = {model for holder in privacy.holders() for model in holder.holds}
    missing = (models_referring_to_lead() | {Lead}) - covered
    assert not missing, f"Models that refer to a lead but no privacy holder covers: {missing}"
    # Every app with models registered its holder (the core's is built in).
    assert {type(holder).__module__.split(".")[0] for holder in privacy.holders()} >= {"leadflow", "scoring", "handoff"}
    assert apps.get_model("scoring", "Score") in covered


def test_export_holds_every_kind_of_record_about_the_person(person, admin):
    answer = client_for(admin).get("/api/v1/privacy/export", {"email": EMAIL.upper()})

    assert answer.status_code == 200, answer.content
    document = answer.json()
    assert document["lead"]["identities"]["email"] == EMAIL
    assert document["lead"]["name"] == NAME
    assert document["lead"]["traits"] == {"phone": "+44 7q"}
    assert [e["event_id"] for e in document["events"]] == ["p1", "p2"]
    [score] = document["scores"]
    assert score["score"] == "70.00"
    assert score["explanation"]["adds_up"] is True
    assert {rule["name"] for rule in score["explanation"]["rules"] if rule["matched"]} == {
        "page_view rule",
        "demo_request rule",
    }
    assert [(c["from_stage"], c["to_stage"]) for c in document["stage_history"]] == [
        ("new", "mql"),
        ("mql", "sql"),
        ("sql", "recycled"),
    ]
    [handoff] = document["handoffs"]
    assert handoff["note"] == NOTE
    assert [a["action"] for a in handoff["audit"]] == ["opened", "claimed", "rejected"]
    assert any(NAME in n["title"] for n in document["notifications"])
    assert any(NOTE in n["body"] for n in document["notifications"])
    assert {d["key"].split(":")[-1] for d in document["webhook_deliveries"]} >= {"opened", "rejected"}
    [outcome] = document["outcomes"]
    assert (outcome["outcome_id"], outcome["kind"], outcome["amount"], outcome["currency"]) == (
        f"deal-{EMAIL}",
        "opportunity_created",
        "5000.00",
        "EUR",
    )
    assert outcome["properties"] == {"contact": NAME}
    # Every holder's sections are in the document, with the person's records.
    sections = ("lead", "events", "stage_history", "scores", "handoffs", "notifications", "webhook_deliveries")
    for section in (*sections, "outcomes"):
        assert document[section], section
    same = client_for(admin).get(f"/api/v1/leads/{person.public_id}/export").json()
    assert same["events"] == document["events"]


# --- Erase -----
def text_columns() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'character') ORDER BY 1, 2"
        )
        return cursor.fetchall()


def tables_mentioning(*terms: str) -> list[str]:
    """Every text and JSON column of every table, searched for each term in any case."""
    hits = []
    with connection.cursor() as cursor:
        for table, column in text_columns():
            for term in terms:
                cursor.execute(
                    f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE %s',  # noqa: S608 -- from the catalogue
                    [f"%{term}%"],
                )
                if cursor.fetchone()[0]:
                    hits.append(f"{table}.{column} holds {term!r}")
    return hits


def dashboard_counts():
    period = dashboard.Period.last_days(30)
    outcomes = dashboard.dashboard_sales_outcomes(period=period)
    return (
        dashboard.dashboard_funnel(period=period),
        dashboard.dashboard_stage_entries_per_day(period=period),
        outcomes.stats.accepted,
        outcomes.stats.rejected,
        outcomes.rejected_by_reason,
        dashboard.dashboard_breakdown(period=period, by="source"),
        dashboard.dashboard_breakdown(period=period, by="utm_campaign"),
        dashboard.dashboard_outcomes(period=period),
    )


@pytest.mark.postgres
def test_erase_leaves_no_trace_of_the_person_in_any_table_and_keeps_the_dashboard_counts(person, admin):
    assert tables_mentioning(EMAIL, NAME, NOTE), "the test must find the person before erasure"
    before = dashboard_counts()

    answer = client_for(admin).post(f"/api/v1/leads/{person.public_id}/erase")

    assert answer.status_code == 200, answer.content
    assert tables_mentioning(EMAIL, NAME, NOTE, "Charles-7q", "Quillfeather") == []
    assert dashboard_counts() == before
    assert not Event.objects.filter(lead=person).exists()
    assert not Score.objects.filter(lead=person).exists()
    tombstone = Lead.objects.get(pk=person.pk)
    assert tombstone.erased_at is not None
    assert (tombstone.email, tombstone.external_id, tombstone.name, tombstone.traits) == (None, None, "", {})
    assert StageChange.objects.filter(lead=person).count() == 3
    assert Handoff.objects.get(lead=person).reject_reason == "no_budget"
    erasure = Erasure.objects.get()
    assert erasure.actor == admin
    assert erasure.email_hash == privacy.email_hash(EMAIL)
    assert erasure.counts["events"] == 2
    assert erasure.counts["scores"] == 1
    assert erasure.counts["notifications_scrubbed"] >= 2
    assert erasure.counts["outcomes_scrubbed"] == 1
    outcome = Outcome.objects.get(lead=person)  # its kind, amount and date still count; not whose it was
    assert (outcome.kind, outcome.amount, outcome.currency, outcome.properties) == (
        "opportunity_created",
        Decimal("5000.00"),
        "EUR",
        {},
    )
    assert outcome.outcome_id == f"[erased] {outcome.pk}"
    assert answer.json()["counts"] == erasure.counts
    assert SuppressedEmail.objects.filter(email_hash=privacy.email_hash(EMAIL)).exists()
    # Gone from every list and page, and by id.
    assert client_for(admin).get(f"/api/v1/leads/{person.public_id}").status_code == 404
    assert client_for(admin).get("/api/v1/leads").json()["results"] == []
    assert client_for(admin).post(f"/api/v1/leads/{person.public_id}/erase").status_code == 404


def test_erasing_a_lead_with_an_open_handoff_closes_it(admin):
    handoff = HandoffFactory.create()
    erasure = privacy.person_erase(lead=handoff.lead, actor=admin)
    handoff.refresh_from_db()
    assert handoff.status == "closed"
    assert erasure.counts["handoffs_closed"] == 1
    assert not handoff_selectors.handoff_list(user=admin).filter(status__in=["queued", "claimed"]).exists()


def test_an_erased_person_is_never_scored_again(publish_ruleset, admin):
    """A tombstone keeps its place in the funnel but has no profile: a rule that matches an
    empty value must not score it, by a full rescore or by the incremental path."""
    ruleset = publish_ruleset([fit("industry", "neq", "retail", 40)])
    erased, kept = LeadFactory.create(industry="software"), LeadFactory.create(industry="software")
    privacy.person_erase(lead=erased, actor=admin)

    run = scoring_services.rescore_run_create(ruleset=ruleset, reason="publish")
    scoring_services.rescore_run_execute(run=run)
    scoring_services.leads_score(lead_ids=[erased.pk, kept.pk])

    assert list(Score.objects.values_list("lead_id", flat=True)) == [kept.pk]
    erased.refresh_from_db()
    assert (erased.stage, erased.needs_rescore) == (Stage.NEW, False)


# --- The suppression list -----
def test_erased_email_is_rejected_on_reingest(person, admin, ingest_client):
    privacy.person_erase(lead=person, actor=admin)
    leads_before = Lead.objects.count()

    answer = ingest(
        ingest_client,
        event("n1", "page_view", email="Other-7q@example.com"),
        event("n2", "page_view", email=EMAIL.upper()),
    )

    body = answer.json()
    assert answer.status_code == 202
    assert body["accepted"] == 1
    [rejected] = body["rejected"]
    assert rejected["index"] == 1
    assert "suppression list" in rejected["errors"]["lead"]["email"][0]
    assert Lead.objects.count() == leads_before + 1  # the other person only: nothing half-written
    assert not Event.objects.filter(event_id="n2").exists()

    upsert = ingest_client.post("/api/v1/leads", {"email": EMAIL, "name": NAME}, format="json")
    assert upsert.status_code == 409
    assert "suppression list" in upsert.json()["email"][0]

    layout = csv_layout(["email", "name"])
    imported = leads_import(
        source=person.source, layout=layout, rows=[(2, [EMAIL, NAME]), (3, ["csv-7q@example.com", "X"])]
    )
    assert imported.created == 1
    assert [row.line for row in imported.rejected] == [2]
    assert not Lead.objects.filter(email=EMAIL).exists()


def test_an_admin_can_lift_a_suppression(person, admin, ingest_client):
    privacy.person_erase(lead=person, actor=admin)
    client = client_for(admin)
    assert client.get("/api/v1/privacy/suppressions", {"email": EMAIL}).json()["suppressed"] is True

    assert client.delete(f"/api/v1/privacy/suppressions?email={EMAIL}").status_code == 204

    assert client.get("/api/v1/privacy/suppressions", {"email": EMAIL}).status_code == 404
    assert client.delete(f"/api/v1/privacy/suppressions?email={EMAIL}").status_code == 404
    assert ingest(ingest_client, event("again", "page_view")).json()["accepted"] == 1


def test_the_suppression_list_keeps_a_keyed_hash_of_the_normalised_address(settings):
    assert privacy.email_hash(" Ada.Quill-7q@Analytical.Example ") == privacy.email_hash(EMAIL)
    keyed = privacy.email_hash(EMAIL)
    settings.PRIVACY_HASH_KEY = "another key"
    assert privacy.email_hash(EMAIL) != keyed
    assert EMAIL not in keyed


# --- Who may, and bad input -----
@pytest.mark.parametrize("role", ["marketer", "rep", "outsider"])
def test_only_scoring_admins_and_staff_may_export_or_erase(person, role, request):
    user = request.getfixturevalue(role)
    client = client_for(user)
    assert client.get("/api/v1/privacy/export", {"email": EMAIL}).status_code == 403
    assert client.post(f"/api/v1/leads/{person.public_id}/erase").status_code == 403
    assert client.post("/api/v1/privacy/erase", {"email": EMAIL}, format="json").status_code == 403
    assert client.delete(f"/api/v1/privacy/suppressions?email={EMAIL}").status_code == 403
    assert browser(user).get(f"/leads/{person.public_id}/export.json").status_code == 403
    assert browser(user).post(f"/leads/{person.public_id}/erase").status_code == 403
    assert APIClient().get("/api/v1/privacy/export", {"email": EMAIL}).status_code == 401
    assert Lead.objects.get(pk=person.pk).erased_at is None


def test_privacy_endpoints_refuse_bad_input_on_its_field(admin, sales_manager):
    client = client_for(admin)
    unknown = client.get("/api/v1/privacy/export", {"email": "nobody-7q@example.com"})
    assert unknown.status_code == 404
    assert "No lead has this e-mail address" in unknown.json()["detail"]
    malformed = client.get("/api/v1/privacy/export", {"email": "not an address"})
    assert malformed.status_code == 400
    assert "valid e-mail" in malformed.json()["email"][0]
    assert client.get("/api/v1/privacy/export").json() == {"email": ["This field is required."]}
    invisible = client.post("/api/v1/privacy/erase", {"email": "ada\u200b@example.com"}, format="json")
    assert invisible.status_code == 400
    assert "U+200B" in invisible.json()["email"][0]
    assert client.post("/api/v1/privacy/erase", {"email": ["a@b.c"]}, format="json").status_code == 400
    assert client.post("/api/v1/privacy/erase", {}, format="json").status_code == 400
    assert client.get("/api/v1/leads/00000000-0000-0000-0000-000000000000/export").status_code == 404
    assert (
        client_for(sales_manager)
        .post("/api/v1/privacy/erase", {"email": "x-7q@example.com"}, format="json")
        .status_code
        == 404
    )


def test_erase_by_email_erases_the_person(person, sales_manager):
    answer = client_for(sales_manager).post("/api/v1/privacy/erase", {"email": EMAIL.upper()}, format="json")
    assert answer.status_code == 200
    assert answer.json()["actor"] == "sales_manager"
    assert Lead.objects.get(pk=person.pk).erased_at is not None


# --- Pages -----
def test_lead_page_offers_export_and_erase_to_scoring_admins_only(person, admin, marketer):
    url = f"/leads/{person.public_id}/"
    assert "Erase person" in browser(admin).get(url).content.decode()
    assert "Erase person" not in browser(marketer).get(url).content.decode()
    exported = browser(admin).get(f"/leads/{person.public_id}/export.json")
    assert exported.status_code == 200
    assert "attachment" in exported["Content-Disposition"]
    assert exported.json()["lead"]["identities"]["email"] == EMAIL


def test_erase_page_asks_first_and_erases_on_post(person, admin):
    page = browser(admin)
    confirm = page.get(f"/leads/{person.public_id}/erase")
    assert confirm.status_code == 200
    assert "cannot be undone" in confirm.content.decode()
    assert Lead.objects.get(pk=person.pk).erased_at is None

    done = page.post(f"/leads/{person.public_id}/erase")

    assert done.status_code == 302
    assert Lead.objects.get(pk=person.pk).erased_at is not None
    assert page.get(f"/leads/{person.public_id}/").status_code == 404


# --- Retention -----
NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


def test_months_before_counts_calendar_months():
    assert months_before(NOW, 1) == datetime(2026, 2, 28, 12, 0, tzinfo=UTC)
    assert months_before(NOW, 15) == datetime(2024, 12, 31, 12, 0, tzinfo=UTC)


def test_retention_deletes_old_events_and_rescores_their_leads(publish_ruleset):
    publish_ruleset([behaviour("page_view", 10)])
    lead = LeadFactory.create()
    old = EventFactory.create(lead=lead, occurred_at=NOW - timedelta(days=200))
    recent = EventFactory.create(lead=lead, occurred_at=NOW - timedelta(days=10))
    untouched = LeadFactory.create()
    EventFactory.create(lead=untouched, occurred_at=NOW - timedelta(days=1))

    dry = retention_apply(now=NOW, events_months=6, dry_run=True)
    assert (dry.events, dry.rescored_leads) == (1, 1)
    assert Event.objects.count() == 3

    result = retention_apply(now=NOW, events_months=6)

    assert (result.events, result.rescored_leads) == (1, 1)
    assert set(Event.objects.values_list("pk", flat=True)) == {recent.pk, untouched.events.get().pk}
    assert not Event.objects.filter(pk=old.pk).exists()
    lead.refresh_from_db()
    assert lead.needs_rescore  # scored after commit; the sweeper catches it otherwise
    scoring_services.leads_score(lead_ids=[lead.pk], as_of=NOW)
    assert Score.objects.get(lead=lead).behaviour == 10


def test_retention_is_off_by_default(settings):
    EventFactory.create(occurred_at=NOW - timedelta(days=5000))
    assert settings.RETENTION_EVENTS_MONTHS == 0
    result = retention_apply(now=NOW)
    assert (result.events, result.anonymous_leads, result.events_cutoff) == (0, 0, None)
    assert Event.objects.count() == 1


def test_retention_deletes_inactive_anonymous_visitors_only():
    long_ago = NOW - timedelta(days=100)
    visitor = LeadFactory.create(email=None, external_id="anon-1", name="", created_at=long_ago)
    EventFactory.create(lead=visitor, occurred_at=long_ago)
    active = LeadFactory.create(email=None, external_id="anon-2", name="", created_at=long_ago)
    EventFactory.create(lead=active, occurred_at=NOW - timedelta(days=2))
    known = LeadFactory.create(created_at=long_ago)  # an e-mail: a person, not a visitor
    qualified = LeadFactory.create(email=None, external_id="anon-3", name="", created_at=long_ago, stage=Stage.MQL)
    # A visitor known by Segment's anonymousId alone, and a cookie of the known person's.
    cookie = LeadFactory.create(email=None, external_id=None, name="", visitor=True, created_at=long_ago)
    AnonymousId.objects.create(anonymous_id="cookie-old", lead=cookie, created_at=long_ago)
    AnonymousId.objects.create(anonymous_id="cookie-known", lead=known, created_at=long_ago)

    result = retention_apply(now=NOW, anonymous_days=30)

    assert result.anonymous_leads == 2
    assert set(Lead.objects.values_list("pk", flat=True)) == {active.pk, known.pk, qualified.pk}
    assert list(AnonymousId.objects.values_list("anonymous_id", flat=True)) == ["cookie-known"]


def test_apply_retention_command_reports_a_dry_run(settings):
    settings.RETENTION_EVENTS_MONTHS = 1
    EventFactory.create(occurred_at=timezone.now() - timedelta(days=90))
    out = io.StringIO()
    call_command("apply_retention", "--dry-run", stdout=out)
    assert "Would delete 1 events" in out.getvalue()
    assert "Dry run: nothing was deleted." in out.getvalue()
    assert Event.objects.count() == 1
    call_command("apply_retention", stdout=out)
    assert Event.objects.count() == 0


# --- The stage history names the deciding rep only to those who see every handoff -----
def test_stage_history_hides_the_rep_who_decided_from_other_reps(person, rep, other_rep, marketer):
    url = f"/leads/{person.public_id}/"
    assert "Accepted by" not in browser(other_rep).get(url).content.decode()
    page = browser(other_rep).get(url).content.decode()
    assert ">rep<" not in page
    assert NOTE not in page
    assert NOTE in browser(marketer).get(url).content.decode()
    assert NOTE in browser(rep).get(url).content.decode()

    history = client_for(other_rep).get(f"/api/v1/leads/{person.public_id}/stage").json()
    decided = history[0]
    assert (decided["to_stage"], decided["actor"], decided["actor_hidden"], decided["reason"]) == (
        "recycled",
        None,
        True,
        "",
    )
    mine = client_for(rep).get(f"/api/v1/leads/{person.public_id}/stage").json()[0]
    assert (mine["actor"], mine["actor_hidden"]) == ("rep", False)
    theirs = client_for(marketer).get(f"/api/v1/leads/{person.public_id}/stage").json()[0]
    assert (theirs["actor"], theirs["actor_hidden"]) == ("rep", False)


# --- The password reset's rate limit -----
def test_password_reset_is_rate_limited_per_address_and_per_email(settings, mailoutbox):
    settings.PASSWORD_RESET_LIMIT = 2
    UserFactory.create(username="forgetful", email="forgetful@leadflow.test")
    page = browser()
    for _ in range(2):
        assert page.post("/password/reset/", {"email": "forgetful@leadflow.test"}).status_code == 302

    refused = page.post("/password/reset/", {"email": "forgetful@leadflow.test"})

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "Too many password resets" in refused.content.decode()
    assert len(mailoutbox) == 2
    # The same address from elsewhere is still limited: the count is per e-mail too.
    elsewhere = browser(REMOTE_ADDR="203.0.113.9")
    assert elsewhere.post("/password/reset/", {"email": "FORGETFUL@leadflow.test"}).status_code == 429
    assert elsewhere.post("/password/reset/", {"email": "someone-else@leadflow.test"}).status_code == 302


# --- Logs -----
def test_production_logs_never_hold_email_addresses(caplog):
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "Could not reach %s", (EMAIL,), None)
    assert EMAIL not in RedactingFormatter("%(message)s").format(record)
    assert "[email]" in RedactingFormatter("%(message)s").format(record)

    from django.core.mail import EmailMessage

    with caplog.at_level(logging.INFO, logger="leadflow.mail"):
        sent = SummaryConsoleEmailBackend().send_messages(
            [EmailMessage(subject=f"New SQL: {NAME}", body=f"{NAME} <{EMAIL}>", to=["rep@leadflow.test"])]
        )
    assert sent == 1
    assert "1 message(s) to 1 recipient(s)" in caplog.text
    assert EMAIL not in caplog.text and NAME not in caplog.text and "rep@leadflow.test" not in caplog.text


def test_production_settings_replace_the_console_email_backend(tmp_path):
    import subprocess
    import sys

    from tests.helpers import clean_env

    script = "from django.conf import settings; print(settings.EMAIL_BACKEND)"
    env = clean_env(
        DJANGO_SETTINGS_MODULE="leadflow.settings",
        DEBUG="0",
        SECRET_KEY="x" * 50,
        EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend",
    )
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent),
    )
    assert result.stdout.strip() == "leadflow.logredact.SummaryConsoleEmailBackend", result.stderr


def test_notifications_and_webhooks_are_scrubbed_on_erase(person, admin):
    privacy.person_erase(lead=person, actor=admin)
    for notification in Notification.objects.all():
        assert NAME not in notification.title and NOTE not in notification.body
    for delivery in WebhookDelivery.objects.all():
        assert NAME not in str(delivery.payload) and NOTE not in str(delivery.payload)
