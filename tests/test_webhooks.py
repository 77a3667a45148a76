"""Webhook subscriptions (issue 15, item 3): admins register endpoints for the events they
want; deliveries are signed with a timestamped HMAC (the README's snippet verifies them),
retried with exponential backoff for a day, visible in a delivery log with Replay; an
endpoint failing for a day is disabled and its owner told. The receivers are real HTTP
servers on the loopback interface, in a thread."""

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from handoff import services as handoff_services
from handoff import webhooks
from handoff.models import NotificationKind, WebhookDelivery, WebhookSubscription
from leadflow.leads.lifecycle import lead_stage_change
from leadflow.leads.models import Account, Lead, Stage
from leadflow.leads.services import events_ingest
from scoring import services as scoring_services
from scoring.models import RescoreRun, RescoreState
from tests.factories import EventFactory, HandoffFactory, LeadFactory, UserFactory
from tests.helpers import behaviour, browser, client_for

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
README = Path(__file__).resolve().parent.parent / "README.md"
PUBLIC_HOOK = "https://93.184.216.34/hooks/leadflow"  # a public address: nothing to resolve


@pytest.fixture(autouse=True)
def loopback_receivers_allowed(settings):
    """The receivers of these tests listen on 127.0.0.1: allowed, as on an intranet. No
    global webhook, so that only the subscriptions made here receive anything."""
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    settings.NOTIFY_WEBHOOK_URL = ""
    settings.NOTIFY_WEBHOOK_SECRET = ""


@pytest.fixture
def after_commit(django_capture_on_commit_callbacks):
    """Run a block and then what it scheduled for after its commit (the deliveries' tasks)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def receiver():
    """A real HTTP receiver in a thread: answers the statuses queued in ``answers`` first,
    then ``status`` (200)."""
    received: list[SimpleNamespace] = []
    state = SimpleNamespace(received=received, answers=[], status=200)

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(SimpleNamespace(path=self.path, headers=self.headers, body=body))
            self.send_response(state.answers.pop(0) if state.answers else state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}/hooks/crm"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def subscribe(owner, events, *, url=PUBLIC_HOOK, name="CRM", min_score_change=None):
    return webhooks.webhook_subscription_create(
        actor=owner, name=name, url=url, events=events, min_score_change=min_score_change
    )


def delivered_events(subscription):
    return list(subscription.deliveries.order_by("id").values_list("event", flat=True))


def documented_verify():
    """The README's verification snippet, run as a receiver would run it."""
    text = README.read_text()
    after_marker = text[text.index("<!-- webhook-verification-snippet -->") :]
    code = re.search(r"```python\n(.*?)```", after_marker, re.S)
    assert code, "the README shows the snippet in a python block after its marker"
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)  # noqa: S102 -- our own README
    return namespace["verify"]


# --- Signature ------------------------------------------------------------------------------------------
def test_a_delivery_is_signed_and_the_readmes_snippet_verifies_it(admin, marketer, receiver, after_commit):
    subscription = subscribe(admin, ["lead.mql"], url=receiver.url)
    lead = LeadFactory.create(name="Ada Lovelace")
    with after_commit():
        lead_stage_change(lead=lead, to_stage="mql", actor=marketer, reason="Met at the fair")

    (request,) = receiver.received
    header, body = request.headers["LeadFlow-Signature"], request.body
    verify = documented_verify()
    assert verify(subscription.secret, header, body)
    assert not verify(subscription.secret, header, body.replace(b"Ada", b"Eve")), "a tampered body fails"
    assert not verify("whsec_someone-else", header, body), "another secret fails"
    assert not verify(subscription.secret, header.replace("v1=", "v1=0"), body)
    with time_machine.travel(datetime.now(tz=UTC) + timedelta(minutes=10)):
        assert not verify(subscription.secret, header, body), "a captured request cannot be replayed later"
    assert "X-LeadFlow-Signature" not in request.headers, "the untimestamped signature is the global webhook's only"

    payload = json.loads(body)
    assert payload["event"] == "lead.mql" == request.headers["X-LeadFlow-Event"]
    assert payload["id"] == request.headers["X-LeadFlow-Delivery"]
    assert payload["data"]["lead"]["id"] == str(lead.public_id)
    assert payload["data"]["lead"]["name"] == "Ada Lovelace"
    assert (payload["data"]["from_stage"], payload["data"]["to_stage"]) == ("new", "mql")
    assert (payload["data"]["actor"], payload["data"]["reason"]) == ("marketer", "Met at the fair")


# --- Event filtering ----------------------------------------------------------------------------------------
def test_each_subscription_gets_only_the_events_it_chose(admin, marketer):
    mqls = subscribe(admin, ["lead.mql"], name="MQLs")
    losses = subscribe(admin, ["lead.sql", "lead.disqualified"], name="Losses")
    lead = LeadFactory.create()
    lead_stage_change(lead=lead, to_stage="mql", actor=marketer, reason="Warm")
    lead_stage_change(lead=lead, to_stage="disqualified", actor=marketer, reason="Student")

    assert delivered_events(mqls) == ["lead.mql"]
    assert delivered_events(losses) == ["lead.disqualified"]


def test_score_changes_reach_a_subscription_only_from_its_minimum_change(admin, publish_ruleset):
    publish_ruleset([behaviour("page_view", 5), behaviour("demo_request", 30)], mql=100, sql=200)
    every_change = subscribe(admin, ["lead.score_changed"], name="Every change")
    big_moves = subscribe(admin, ["lead.score_changed"], name="Big moves", min_score_change=Decimal("20"))
    lead = LeadFactory.create()

    EventFactory.create(lead=lead, type="page_view")
    scoring_services.leads_score(lead_ids=[lead.pk])
    scoring_services.leads_score(lead_ids=[lead.pk])  # nothing changed: nothing sent
    assert delivered_events(every_change) == ["lead.score_changed"]
    assert delivered_events(big_moves) == [], "5 points is under its minimum of 20"

    EventFactory.create(lead=lead, type="demo_request")
    scoring_services.leads_score(lead_ids=[lead.pk])
    assert delivered_events(every_change) == ["lead.score_changed"] * 2
    (delivery,) = big_moves.deliveries.all()
    data = delivery.payload["data"]
    assert (data["model"], data["before"], data["after"], data["change"]) == ("default", "5.00", "35.00", "30.00")
    assert data["lead"]["id"] == str(lead.public_id)


def test_a_drop_in_score_counts_as_a_change_too(admin, publish_ruleset):
    publish_ruleset([behaviour("page_view", 40), behaviour("unsubscribe", -25)], mql=100, sql=200)
    subscription = subscribe(admin, ["lead.score_changed"], min_score_change=Decimal("20"))
    lead = LeadFactory.create()
    EventFactory.create(lead=lead, type="page_view")
    scoring_services.leads_score(lead_ids=[lead.pk])
    EventFactory.create(lead=lead, type="unsubscribe")
    scoring_services.leads_score(lead_ids=[lead.pk])

    changes = [d.payload["data"]["change"] for d in subscription.deliveries.order_by("id")]
    assert changes == ["40.00", "-25.00"]


def test_handoff_events_reach_their_subscribers(admin, rep):
    subscription = subscribe(
        admin, ["handoff.claimed", "handoff.accepted", "handoff.rejected", "handoff.sla_breached", "lead.recycled"]
    )
    accepted = handoff_services.handoff_claim(handoff=HandoffFactory.create(), user=rep)
    handoff_services.handoff_accept(handoff=accepted, user=rep, note="Budget approved")
    rejected = handoff_services.handoff_claim(handoff=HandoffFactory.create(), user=rep)
    handoff_services.handoff_reject(handoff=rejected, user=rep, reason="no_budget", note="Next year")
    with time_machine.travel(datetime.now(tz=UTC) + timedelta(days=2)):
        overdue = HandoffFactory.create(due_at=datetime.now(tz=UTC) - timedelta(hours=1))
        assert handoff_services.handoffs_flag_overdue() == 1

    assert delivered_events(subscription) == [
        "handoff.claimed",
        "handoff.accepted",
        "handoff.claimed",
        "lead.recycled",
        "handoff.rejected",
        "handoff.sla_breached",
    ]
    by_event = {d.event: d.payload["data"] for d in subscription.deliveries.all()}
    assert by_event["handoff.accepted"]["handoff"]["id"] == str(accepted.public_id)
    assert by_event["handoff.accepted"]["note"] == "Budget approved"
    assert by_event["handoff.rejected"]["rep"] == "rep"
    assert (by_event["handoff.rejected"]["reason"], by_event["handoff.rejected"]["lead_stage"]) == (
        "no_budget",
        "recycled",
    )
    assert by_event["handoff.sla_breached"]["handoff"]["id"] == str(overdue.public_id)
    assert by_event["handoff.sla_breached"]["rep"] is None, "nobody held the claim"


def test_a_reassignment_is_a_claim_for_the_rep_it_goes_to(admin, rep):
    subscription = subscribe(admin, ["handoff.claimed"])
    handoff_services.handoff_reassign(handoff=HandoffFactory.create(), actor=admin, to_user=rep)
    (delivery,) = subscription.deliveries.all()
    data = delivery.payload["data"]
    assert (data["handoff"]["status"], data["rep"], data["by"]) == ("claimed", "rep", admin.username)


def test_an_account_becoming_an_mqa_is_sent_once(admin, publish_ruleset):
    publish_ruleset([behaviour("page_view", 30)], mql=100, sql=200, mqa_threshold=Decimal("50"))
    subscription = subscribe(admin, ["account.mqa"])
    acme = Account.objects.create(key="acme", name="Acme", domain="acme.test")
    ada, grace = LeadFactory.create(account=acme), LeadFactory.create(account=acme)
    EventFactory.create(lead=ada)
    EventFactory.create(lead=grace)
    scoring_services.leads_score(lead_ids=[ada.pk, grace.pk])
    scoring_services.leads_score(lead_ids=[ada.pk, grace.pk])

    (delivery,) = subscription.deliveries.all()
    data = delivery.payload["data"]
    assert (data["account"]["name"], data["model"], data["score"], data["threshold"]) == (
        "Acme",
        "default",
        "60.00",
        "50.00",
    )


def test_a_full_rescore_is_announced_once_with_where_to_read_the_new_scores(
    admin, publish_ruleset, receiver, after_commit
):
    rescores = subscribe(admin, ["model.rescored"], url=receiver.url)
    every_change = subscribe(admin, ["lead.score_changed"], name="Every change")
    for lead in LeadFactory.create_batch(3):
        EventFactory.create(lead=lead, type="page_view")
    with after_commit():
        ruleset = publish_ruleset([behaviour("page_view", 40)], mql=30, sql=200)

    run = RescoreRun.objects.get(ruleset=ruleset)
    assert run.state == RescoreState.DONE
    (request,) = receiver.received
    payload = json.loads(request.body)
    assert payload["event"] == "model.rescored" and payload["id"] == f"model.rescored:{run.pk}"
    data = payload["data"]
    assert (data["model"], data["ruleset"]) == ("default", ruleset.version)
    assert {key: data["run"][key] for key in ("id", "reason", "leads", "stage_changes")} == {
        "id": run.pk,
        "reason": "publish",
        "leads": 3,
        "stage_changes": 3,
    }
    assert data["run"]["link"] == f"/rules/runs/{run.pk}/"
    assert data["leads"] == "/api/v1/leads?model=default", "where the new scores are read"
    assert delivered_events(every_change) == [], "not one lead.score_changed per lead"

    scoring_services.rescore_run_execute(run=run)
    assert rescores.deliveries.count() == 1, "a finished run executed again announces nothing"


def test_automatic_scoring_that_makes_a_lead_sql_sends_lead_sql_naming_the_lead(
    admin, source, publish_ruleset, receiver, after_commit
):
    publish_ruleset([behaviour("page_view", 10), behaviour("demo_request", 60)], mql=30, sql=60)
    subscription = subscribe(admin, ["lead.sql"], url=receiver.url)
    events = [
        {"event_id": "pv-1", "type": "page_view", "lead": {"email": "ada@engines.test", "name": "Ada Lovelace"}},
        {"event_id": "demo-1", "type": "demo_request", "lead": {"email": "ada@engines.test"}},
    ]
    with after_commit():  # the ingest's scoring, then the delivery, run as after its commit
        assert events_ingest(source=source, payloads=events).accepted == 2

    lead = Lead.objects.get()
    assert lead.stage == Stage.SQL, "scored and promoted by the ingest's own scoring, nobody's hand"
    (delivery,) = subscription.deliveries.all()
    assert delivery.event == "lead.sql" and delivery.delivered_at is not None
    data = delivery.payload["data"]
    assert (data["lead"]["id"], data["lead"]["email"], data["lead"]["name"]) == (
        str(lead.public_id),
        "ada@engines.test",
        "Ada Lovelace",
    )
    assert (data["from_stage"], data["to_stage"], data["actor"]) == ("mql", "sql", None), "through MQL, by scoring"
    (request,) = receiver.received
    assert json.loads(request.body) == delivery.payload
    assert request.headers["X-LeadFlow-Event"] == "lead.sql"


def test_a_rolled_back_change_records_no_delivery(admin, marketer):
    subscription = subscribe(admin, ["lead.mql"])
    lead = LeadFactory.create()
    with pytest.raises(RuntimeError), transaction.atomic():
        lead_stage_change(lead=lead, to_stage="mql", actor=marketer, reason="Warm")
        assert subscription.deliveries.count() == 1, "recorded in the change's transaction"
        raise RuntimeError("the change rolls back")
    assert not subscription.deliveries.exists()


def test_erasing_a_person_scrubs_them_from_the_webhook_deliveries(admin, marketer):
    from leadflow.leads import privacy

    subscription = subscribe(admin, ["lead.mql"])
    lead = LeadFactory.create(name="Ada Lovelace", email="ada@engines.test")
    lead_stage_change(lead=lead, to_stage="mql", actor=marketer, reason="Warm")
    assert "ada@engines.test" in json.dumps(subscription.deliveries.get().payload)

    privacy.person_erase(lead=lead, actor=admin)
    payload = json.dumps(subscription.deliveries.get().payload)
    assert "ada@engines.test" not in payload and "Ada Lovelace" not in payload


# --- Retries, giving up, disabling ------------------------------------------------------------------------
def test_a_failed_delivery_is_retried_with_exponential_backoff_until_it_gets_through(
    admin, marketer, receiver, after_commit
):
    subscription = subscribe(admin, ["lead.mql"], url=receiver.url)
    receiver.answers.extend([500, 503, 502])
    with time_machine.travel(NOW, tick=False) as clock:
        with after_commit():
            lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
        delivery = WebhookDelivery.objects.get()
        waits = []
        while delivery.delivered_at is None:
            assert delivery.next_attempt_at is not None and delivery.last_attempt_at is not None
            assert delivery.failed_at is None
            due = delivery.next_attempt_at
            waits.append((due - delivery.last_attempt_at).total_seconds())
            clock.move_to(due - timedelta(seconds=1))
            with after_commit():
                assert webhooks.webhooks_sweep() == 0, "not due yet"
            clock.move_to(due)
            with after_commit():
                assert webhooks.webhooks_sweep() == 1
            delivery.refresh_from_db()

    assert waits == [30, 60, 120], "30 s, then doubling"
    assert (delivery.attempts, delivery.last_status, delivery.last_error) == (4, 200, "")
    assert len({r.headers["X-LeadFlow-Delivery"] for r in receiver.received}) == 1, "one idempotency key"
    subscription.refresh_from_db()
    assert subscription.active and subscription.failing_since is None, "a success ends the failing streak"


def test_the_backoff_doubles_up_to_an_hour():
    assert [webhooks.backoff(n).total_seconds() for n in (1, 2, 3, 4, 7, 8, 20)] == [
        30,
        60,
        120,
        240,
        1920,
        3600,
        3600,
    ]


def test_an_endpoint_failing_for_a_day_is_given_up_disabled_and_its_owner_told(
    admin, marketer, receiver, after_commit, mailoutbox
):
    subscription = subscribe(admin, ["lead.mql"], url=receiver.url)
    receiver.status = 500
    with time_machine.travel(NOW, tick=False) as clock:
        with after_commit():
            lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
        delivery = WebhookDelivery.objects.get()
        while delivery.failed_at is None:
            assert delivery.attempts < 60
            clock.move_to(delivery.next_attempt_at)
            with after_commit():
                webhooks.webhooks_sweep()
            delivery.refresh_from_db()

        assert NOW + timedelta(hours=23) < delivery.failed_at <= NOW + timedelta(hours=24)
        assert delivery.last_status == 500 and "500" in delivery.last_error
        assert len(receiver.received) == delivery.attempts
        subscription.refresh_from_db()
        assert not subscription.active
        assert "Failing for 24 hours" in subscription.disabled_reason
        (notice,) = admin.notifications.filter(kind=NotificationKind.WEBHOOK_DISABLED)
        assert notice.link == f"/webhooks/{subscription.public_id}/"
        assert "CRM" in notice.title
        assert [m.to for m in mailoutbox] == [[admin.email]]

        # Disabled, it records nothing new; enabled again, it gets the next events.
        lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
        assert subscription.deliveries.count() == 1
        receiver.status = 200
        response = browser(admin).post(f"/webhooks/{subscription.public_id}/enable", follow=True)
        assert "Enabled" in response.content.decode()
        with after_commit():
            lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
    assert subscription.deliveries.filter(delivered_at__isnull=False).count() == 1


def test_a_refused_delivery_is_not_retried(admin, marketer, receiver, after_commit):
    subscribe(admin, ["lead.mql"], url=receiver.url)
    receiver.answers.append(410)
    with after_commit():
        lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.attempts, delivery.last_status, delivery.next_attempt_at) == (1, 410, None)
    assert delivery.failed_at is not None
    assert webhooks.webhooks_sweep() == 0


def test_a_redirect_is_not_followed(admin, marketer, receiver, after_commit):
    subscribe(admin, ["lead.mql"], url=receiver.url)
    receiver.answers.append(307)
    with after_commit():
        lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
    delivery = WebhookDelivery.objects.get()
    assert len(receiver.received) == 1, "one POST, to the registered URL only"
    assert delivery.failed_at is not None and "do not follow redirects" in delivery.last_error


def test_a_delivery_whose_task_was_lost_is_sent_by_the_sweep(
    admin, marketer, receiver, django_capture_on_commit_callbacks, after_commit
):
    subscribe(admin, ["lead.mql"], url=receiver.url)
    with time_machine.travel(NOW, tick=False) as clock:
        # The commit happened, the task never ran (the broker was down).
        with django_capture_on_commit_callbacks(execute=False):
            lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
        assert webhooks.webhooks_sweep() == 0, "its task may still be on its way"
        clock.shift(timedelta(minutes=3))
        with after_commit():
            assert webhooks.webhooks_sweep() == 1
    assert WebhookDelivery.objects.get().delivered_at is not None
    assert len(receiver.received) == 1


# --- The delivery log and replay --------------------------------------------------------------------------
def csrf_token(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "the form carries a CSRF token"
    return match.group(1)


def test_replay_from_the_delivery_log_sends_the_delivery_again(admin, marketer, receiver, after_commit):
    subscription = subscribe(admin, ["lead.mql"], url=receiver.url)
    with after_commit():
        lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
    delivery = WebhookDelivery.objects.get()
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    log_url = f"/webhooks/{subscription.public_id}/deliveries/"
    page = client.get(log_url).content.decode()
    assert "lead.mql" in page and "HTTP 200" in page and "Delivered" in page
    replay_url = f"{log_url}{delivery.pk}/replay"
    assert f'action="{replay_url}"' in page

    assert client.post(replay_url).status_code == 403, "no CSRF token, no replay"
    with after_commit():
        response = client.post(replay_url, {"csrfmiddlewaretoken": csrf_token(page), "page": "1"})
    assert response.status_code == 302 and response["Location"] == f"{log_url}?page=1"

    assert len(receiver.received) == 2
    first, again = receiver.received
    assert first.body == again.body
    assert first.headers["X-LeadFlow-Delivery"] == again.headers["X-LeadFlow-Delivery"], "the same delivery"
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.replayed_at is not None and delivery.delivered_at is not None


def test_a_replay_to_a_disabled_endpoint_says_to_enable_it_first(admin, marketer, receiver, after_commit):
    subscription = subscribe(admin, ["lead.mql"], url=receiver.url)
    with after_commit():
        lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
    delivery = WebhookDelivery.objects.get()
    webhooks.webhook_subscription_disable(actor=admin, subscription=subscription)
    response = browser(admin).post(f"/webhooks/{subscription.public_id}/deliveries/{delivery.pk}/replay", follow=True)
    assert "enable it first" in response.content.decode()
    assert len(receiver.received) == 1


def test_the_delivery_log_is_paginated_in_a_constant_number_of_queries(admin, django_assert_max_num_queries):
    subscription = subscribe(admin, ["lead.mql"])
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                subscription=subscription, key=f"lead.mql:{n}", event="lead.mql", payload={}, attempts=n % 3
            )
            for n in range(30)
        ]
    )
    client = browser(admin)
    client.get(f"/webhooks/{subscription.public_id}/deliveries/")  # the session, once
    with django_assert_max_num_queries(8):
        first = client.get(f"/webhooks/{subscription.public_id}/deliveries/").content.decode()
    assert first.count(">Replay</button>") == 25
    second = client.get(f"/webhooks/{subscription.public_id}/deliveries/?page=2").content.decode()
    assert second.count(">Replay</button>") == 5
    pending = client.get(f"/webhooks/{subscription.public_id}/deliveries/?state=pending").content.decode()
    assert pending.count(">Replay</button>") == 10, "the 10 never attempted"
    assert (
        "No failed delivery"
        in client.get(f"/webhooks/{subscription.public_id}/deliveries/?state=failed").content.decode()
    )


def test_an_endpoint_without_deliveries_says_so(admin):
    subscription = subscribe(admin, ["lead.mql"])
    page = browser(admin).get(f"/webhooks/{subscription.public_id}/deliveries/").content.decode()
    assert "No delivery yet" in page


# --- Who registers, and what ---------------------------------------------------------------------------------
def test_only_scoring_admins_and_staff_register_endpoints(marketer, rep, outsider, admin):
    for person in (marketer, rep, outsider):
        assert browser(person).get("/webhooks/").status_code == 403
        answer = client_for(person).post(
            "/api/v1/webhooks", {"name": "Mine", "url": PUBLIC_HOOK, "events": ["lead.sql"]}, format="json"
        )
        assert answer.status_code == 403
    assert not WebhookSubscription.objects.exists()
    assert browser(UserFactory.create(is_staff=True)).get("/webhooks/").status_code == 200
    assert browser(admin).get("/webhooks/").status_code == 200


def test_the_secret_is_shown_once_on_the_page(admin):
    client = browser(admin)
    assert "No endpoint yet" in client.get("/webhooks/").content.decode()
    response = client.post(
        "/webhooks/",
        {"name": "Slack #sales", "url": PUBLIC_HOOK, "events": ["lead.sql", "handoff.accepted"]},
        follow=True,
    )
    subscription = WebhookSubscription.objects.get()
    assert subscription.owner == admin and subscription.events == ["lead.sql", "handoff.accepted"]
    assert subscription.secret.startswith("whsec_") and len(subscription.secret) > 40
    assert subscription.secret in response.content.decode()
    again = client.get(f"/webhooks/{subscription.public_id}/").content.decode()
    assert subscription.secret not in again
    assert subscription.secret[-4:] in again, "its last four characters, to tell secrets apart"


def test_the_api_answers_the_secret_once_and_manages_the_endpoint(admin, marketer, receiver, after_commit):
    api = client_for(admin)
    created = api.post(
        "/api/v1/webhooks",
        {"name": "CRM", "url": receiver.url, "events": ["lead.mql"], "min_score_change": "5"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["owner"] == admin.username
    detail = api.get(f"/api/v1/webhooks/{body['id']}").json()
    assert "secret" not in detail and detail["secret_hint"] == f"…{body['secret'][-4:]}"

    with after_commit():
        lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
    log = api.get(f"/api/v1/webhooks/{body['id']}/deliveries").json()
    assert [(d["event"], d["status"], d["last_status"]) for d in log["results"]] == [("lead.mql", "delivered", 200)]
    with after_commit():
        replayed = api.post(f"/api/v1/webhooks/{body['id']}/deliveries/{log['results'][0]['id']}/replay")
    assert replayed.status_code == 202
    assert len(receiver.received) == 2

    assert api.post(f"/api/v1/webhooks/{body['id']}/disable").json()["active"] is False
    changed = api.put(
        f"/api/v1/webhooks/{body['id']}", {"name": "CRM", "url": receiver.url, "events": ["lead.sql"]}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["events"] == ["lead.sql"]


def test_bad_input_gets_field_errors_and_writes_nothing(admin):
    page = browser(admin).post("/webhooks/", {"name": " ", "url": "ftp://crm.example.com/hook"})
    assert page.status_code == 400
    text = page.content.decode()
    assert "Name the endpoint" in text and "http:// or https://" in text and "at least one event" in text

    answer = client_for(admin).post(
        "/api/v1/webhooks",
        {"name": "CRM", "url": PUBLIC_HOOK, "events": ["lead.won"], "min_score_change": "-1"},
        format="json",
    )
    assert answer.status_code == 400
    assert set(answer.json()) == {"events", "min_score_change"}
    assert not WebhookSubscription.objects.exists()
    with pytest.raises(ValidationError) as refused:
        webhooks.webhook_subscription_validate(name="CRM", url=PUBLIC_HOOK, events=[], min_score_change=None)
    assert set(refused.value.message_dict) == {"events"}


def test_others_deliveries_answer_404(admin):
    mine, theirs = subscribe(admin, ["lead.mql"], name="Mine"), subscribe(admin, ["lead.mql"], name="Theirs")
    delivery = WebhookDelivery.objects.create(subscription=theirs, key="lead.mql:x", event="lead.mql", payload={})
    response = browser(admin).post(f"/webhooks/{mine.public_id}/deliveries/{delivery.pk}/replay")
    assert response.status_code == 404
    answer = client_for(admin).post(f"/api/v1/webhooks/{mine.public_id}/deliveries/{delivery.pk}/replay")
    assert answer.status_code == 404


# --- SSRF -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        "http://user:pass@93.184.216.34/hook",
    ],
)
def test_urls_into_our_own_network_are_refused(admin, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    with pytest.raises(ValidationError) as refused:
        subscribe(admin, ["lead.mql"], url=url)
    assert set(refused.value.message_dict) == {"url"}


def test_a_public_address_is_allowed(admin, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    assert subscribe(admin, ["lead.mql"], url=PUBLIC_HOOK).url == PUBLIC_HOOK


def test_a_url_that_became_private_is_refused_at_send_time_without_a_post(
    admin, marketer, receiver, settings, after_commit
):
    subscribe(admin, ["lead.mql"], url=receiver.url)
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    with after_commit():
        lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
    delivery = WebhookDelivery.objects.get()
    assert receiver.received == []
    assert delivery.failed_at is not None and "private" in delivery.last_error


# --- The global webhook ---------------------------------------------------------------------------------------
def test_the_global_webhook_follows_the_settings(admin, settings, receiver, rep, after_commit):
    settings.NOTIFY_WEBHOOK_URL, settings.NOTIFY_WEBHOOK_SECRET = receiver.url, "whsec-global"
    with after_commit():
        handoff_services.handoff_claim(handoff=HandoffFactory.create(), user=rep)
        assert handoff_services.handoff_reject(
            handoff=handoff_services.handoff_claim(handoff=HandoffFactory.create(), user=rep),
            user=rep,
            reason="no_budget",
        )
    (managed,) = WebhookSubscription.objects.all()
    assert managed.managed_by_settings and managed.events == webhooks.LEGACY_EVENTS
    assert [json.loads(r.body)["event"] for r in receiver.received] == ["handoff_rejected"], "notifications only"
    assert receiver.received[0].headers["X-LeadFlow-Signature"].startswith("sha256=")

    # Its page saves its events although its URL is on the loopback: the operator's URL is trusted.
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    response = browser(admin).post(
        f"/webhooks/{managed.public_id}/", {"name": managed.name, "events": ["notifications", "lead.sql"]}
    )
    assert response.status_code == 302, response.content.decode()
    managed.refresh_from_db()
    assert managed.events == ["notifications", "lead.sql"] and managed.url == receiver.url

    settings.NOTIFY_WEBHOOK_URL = ""
    assert webhooks.active_subscriptions() == []
    managed.refresh_from_db()
    assert not managed.active and "NOTIFY_WEBHOOK_URL" in managed.disabled_reason


@pytest.mark.django_db(transaction=True)
def test_the_migration_makes_the_global_webhook_a_subscription_of_the_existing_deliveries(settings):
    settings.NOTIFY_WEBHOOK_URL, settings.NOTIFY_WEBHOOK_SECRET = "https://hooks.example.com/leadflow", "whsec-old"
    before, after = (
        ("handoff", "0011_merge_checklist_and_evaluations"),
        ("handoff", "0014_webhook_delivery_belongs_to_a_subscription"),
    )
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([before])
        executor.loader.build_graph()
        old = executor.loader.project_state([before]).apps.get_model("handoff", "WebhookDelivery")
        old.objects.create(key="handoff:x:breach", payload={"event": "sla_breach"})
        executor.migrate([after])
        executor.loader.build_graph()
        (subscription,) = WebhookSubscription.objects.all()
        assert (subscription.url, subscription.secret) == ("https://hooks.example.com/leadflow", "whsec-old")
        assert subscription.managed_by_settings and subscription.active
        assert subscription.events == ["notifications", "nurture.segment"]
        assert list(subscription.deliveries.values_list("key", flat=True)) == ["handoff:x:breach"]
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


# --- Secrets at rest --------------------------------------------------------------------------------------
def stored_secret(subscription) -> str:
    """The secret column as the database holds it, past the field that decrypts it."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT secret FROM {WebhookSubscription._meta.db_table} WHERE id = %s",  # noqa: S608 -- our table
            [subscription.pk],
        )
        return cursor.fetchone()[0]


def test_a_secret_is_stored_encrypted_and_deliveries_are_signed_with_the_secret_itself(
    admin, marketer, receiver, after_commit
):
    subscription = subscribe(admin, ["lead.mql"], url=receiver.url)
    secret = subscription.secret
    stored = stored_secret(subscription)
    assert stored.startswith("fernet:") and secret not in stored and secret[-8:] not in stored
    assert WebhookSubscription.objects.get(pk=subscription.pk).secret == secret

    with after_commit():
        lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
    (request,) = receiver.received
    assert documented_verify()(secret, request.headers["LeadFlow-Signature"], request.body)


def test_a_secret_key_rotation_keeps_secrets_readable_and_reencrypt_secrets_moves_them_to_the_new_key(admin, settings):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the-key-of-2025", []
    subscription = subscribe(admin, ["lead.mql"])
    secret, before = subscription.secret, stored_secret(subscription)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the-key-of-2026", ["the-key-of-2025"]
    assert WebhookSubscription.objects.get().secret == secret, "read with the former key, among the fallbacks"

    out = StringIO()
    call_command("reencrypt_secrets", "--check", stdout=out)
    assert "Would re-encrypt 1 secret(s) under the current SECRET_KEY; 0 already were." in out.getvalue()
    assert stored_secret(subscription) == before, "--check changes nothing"

    call_command("reencrypt_secrets", stdout=(out := StringIO()))
    assert "Re-encrypted 1 secret(s) under the current SECRET_KEY; 0 already were." in out.getvalue()
    settings.SECRET_KEY_FALLBACKS = []
    assert WebhookSubscription.objects.get().secret == secret, "readable with the new key alone"
    call_command("reencrypt_secrets", stdout=(out := StringIO()))
    assert "Re-encrypted 0 secret(s) under the current SECRET_KEY; 1 already were." in out.getvalue()


def test_a_secret_no_key_reads_is_never_sent_retried_with_what_to_do_and_kept_for_when_the_key_is_back(
    admin, marketer, receiver, after_commit, settings
):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "the-key-of-2025", []
    subscription = subscribe(admin, ["lead.mql"], url=receiver.url)
    secret = subscription.secret
    settings.SECRET_KEY = "a-key-set-without-the-former-one-in-the-fallbacks"

    with time_machine.travel(NOW, tick=False) as clock:
        with after_commit():
            lead_stage_change(lead=LeadFactory.create(), to_stage="mql", actor=marketer, reason="Warm")
        delivery = WebhookDelivery.objects.get()
        assert receiver.received == [], "nothing is signed with what cannot be read"
        assert delivery.delivered_at is None and delivery.failed_at is None
        assert delivery.next_attempt_at == NOW + timedelta(seconds=30), "retried: the operator may bring the key back"
        assert "SECRET_KEY_FALLBACKS" in delivery.last_error

        page = browser(admin).get(f"/webhooks/{subscription.public_id}/").content.decode()
        assert "unreadable: make a new secret" in page
        with pytest.raises(CommandError, match=f"handoff.WebhookSubscription {subscription.pk}"):
            call_command("reencrypt_secrets", stdout=StringIO())
        unreadable = WebhookSubscription.objects.get()
        unreadable.name = "CRM, renamed"
        unreadable.save()  # every column, the secret's too

        settings.SECRET_KEY_FALLBACKS = ["the-key-of-2025"]
        assert WebhookSubscription.objects.get().secret == secret, "saving the endpoint kept the secret"
        clock.move_to(delivery.next_attempt_at)
        with after_commit():
            assert webhooks.webhooks_sweep() == 1
        (request,) = receiver.received
        assert documented_verify()(secret, request.headers["LeadFlow-Signature"], request.body)


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_the_stored_secrets_and_backwards_writes_them_in_the_clear():
    before, after = ("handoff", "0015_handoff_keeps_lead_attributes"), ("handoff", "0016_webhook_secrets_encrypted")
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([before])
        executor.loader.build_graph()
        old = executor.loader.project_state([before]).apps.get_model("handoff", "WebhookSubscription")
        subscription = old.objects.create(name="CRM", url=PUBLIC_HOOK, secret="whsec_stored-before", events=[])
        executor.migrate([after])
        executor.loader.build_graph()
        assert stored_secret(subscription).startswith("fernet:")
        assert WebhookSubscription.objects.get().secret == "whsec_stored-before"

        executor.migrate([before])
        executor.loader.build_graph()
        assert stored_secret(subscription) == "whsec_stored-before"
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
