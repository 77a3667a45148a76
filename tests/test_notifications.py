import hashlib
import hmac
import json
import socket
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import time_machine
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models.functions import Now

from handoff import services, webhooks
from handoff.models import Handoff, HandoffEvent, Notification, WebhookDelivery
from handoff.tasks import deliver_webhook, flag_overdue
from tests.factories import HandoffFactory, SqlLeadFactory, UserFactory
from tests.helpers import browser, client_for, entered_sql

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
SECRET = "whsec-test-0123456789abcdef"


@pytest.fixture
def after_commit(django_capture_on_commit_callbacks):
    """Run a block and then what it scheduled for after its commit (the notifications)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def webhook(settings):
    """A real HTTP receiver on the loopback interface, in a thread. It answers the
    statuses queued in ``answers`` first, then 200. While ``gate`` is cleared it holds
    every request it received (``arrived`` is set) until the test sets ``gate`` again."""
    received: list[SimpleNamespace] = []
    answers: list[int] = []
    arrived, gate = threading.Event(), threading.Event()
    gate.set()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(SimpleNamespace(path=self.path, headers=self.headers, body=body))
            arrived.set()
            gate.wait(timeout=30)
            self.send_response(answers.pop(0) if answers else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.NOTIFY_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hooks/leadflow"
    settings.NOTIFY_WEBHOOK_SECRET = SECRET
    try:
        yield SimpleNamespace(received=received, answers=answers, arrived=arrived, gate=gate)
    finally:
        gate.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def kinds(user):
    return sorted(user.notifications.values_list("kind", flat=True))


def claimed_handoff(user, **extra):
    handoff = HandoffFactory.create(**extra)
    return services.handoff_claim(handoff=handoff, user=user)


# --- Who is told what ----------------------------------------------------------------------------------
def test_a_new_sql_notifies_the_sales_group_in_app_and_by_email(rep, other_rep, marketer, mailoutbox, after_commit):
    lead = SqlLeadFactory.create(name="Grace Hopper", company="Navy")
    with after_commit():
        services.handoffs_open_for_changes(changes=entered_sql([lead]), at=NOW)
    assert kinds(rep) == kinds(other_rep) == ["handoff_new"]
    assert kinds(marketer) == []
    notification = rep.notifications.get()
    assert notification.title == "New SQL: Grace Hopper (Navy)"
    assert notification.link == f"/queue/{Handoff.objects.get(lead=lead).public_id}/"
    assert sorted(m.to[0] for m in mailoutbox) == ["other_rep@leadflow.test", "rep@leadflow.test"]
    assert mailoutbox[0].subject == "[LeadFlow] New SQL: Grace Hopper (Navy)"


def test_many_new_sqls_at_once_make_one_digest_per_rep(rep, mailoutbox, after_commit):
    leads = SqlLeadFactory.create_batch(12)
    with after_commit():
        services.handoffs_open_for_changes(changes=entered_sql(leads), at=NOW)
    assert rep.notifications.get().title == "12 new SQLs are waiting in the queue"
    assert len(mailoutbox) == 1


def test_nothing_is_sent_for_a_rolled_back_promotion(rep, mailoutbox, django_capture_on_commit_callbacks):
    lead = SqlLeadFactory.create()
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.handoffs_open_for_changes(changes=entered_sql([lead]), at=NOW)
        raise RuntimeError("the scoring transaction failed")
    assert callbacks == []
    assert not Notification.objects.exists() and mailoutbox == []


def test_a_rejection_tells_marketing_why(rep, marketer, mailoutbox, after_commit):
    handoff = claimed_handoff(rep, lead=SqlLeadFactory.create(name="Alan Turing"))
    with after_commit():
        response = client_for(rep).post(
            f"/api/v1/handoffs/{handoff.public_id}/reject",
            {"reason": "bad_timing", "note": "Re-org until March."},
            format="json",
        )
    assert response.status_code == 200
    notification = marketer.notifications.get()
    assert (notification.kind, notification.title) == ("handoff_rejected", "Sales rejected Alan Turing: Bad timing")
    assert "Re-org until March." in notification.body and "recycled" in notification.body
    assert kinds(rep) == []
    assert [m.to for m in mailoutbox] == [["marketer@leadflow.test"]]


def test_sla_breach_is_flagged_once_and_notifies_only_the_claiming_rep(
    rep, other_rep, marketer, mailoutbox, after_commit, webhook
):
    with time_machine.travel(NOW, tick=False) as clock:
        handoff = claimed_handoff(rep)
        untouched = HandoffFactory.create(due_at=NOW + timedelta(days=3))
        clock.shift(timedelta(hours=24))
        for _ in range(2):
            with after_commit():
                flag_overdue.delay()
    handoff.refresh_from_db()
    assert handoff.overdue_at == NOW + timedelta(hours=24)
    untouched.refresh_from_db()
    assert untouched.overdue_at is None
    assert HandoffEvent.objects.filter(action="overdue").count() == 1
    assert kinds(rep) == ["sla_breach"]
    assert kinds(other_rep) == [], "another rep's claim is 404 to them: nothing to act on"
    assert kinds(marketer) == []
    assert [m.to for m in mailoutbox] == [["rep@leadflow.test"]]
    assert len(webhook.received) == 1
    assert webhook.received[0].headers["X-LeadFlow-Delivery"] == f"handoff:{handoff.public_id}:breach"


def test_sla_breach_of_a_claim_held_outside_the_sales_group_notifies_only_its_holder(
    rep, other_rep, mailoutbox, after_commit
):
    boss = UserFactory.create(username="boss", is_staff=True)  # a manager outside the sales group holds the claim
    with time_machine.travel(NOW, tick=False) as clock:
        handoff = claimed_handoff(boss)
        clock.shift(timedelta(hours=24))
        with after_commit():
            services.handoffs_flag_overdue()
    assert kinds(boss) == ["sla_breach"]
    assert kinds(rep) == kinds(other_rep) == []
    assert boss.notifications.get().link == f"/queue/{handoff.public_id}/"
    assert [m.to for m in mailoutbox] == [["boss@leadflow.test"]]


def test_sla_breach_of_an_unclaimed_handoff_notifies_all_of_sales(rep, other_rep, marketer, mailoutbox, after_commit):
    with time_machine.travel(NOW, tick=False) as clock:
        handoff = HandoffFactory.create()
        clock.shift(timedelta(hours=25))
        with after_commit():
            services.handoffs_flag_overdue()
    assert kinds(rep) == kinds(other_rep) == ["sla_breach"]
    assert kinds(marketer) == []
    assert rep.notifications.get().link == f"/queue/{handoff.public_id}/"
    assert sorted(m.to[0] for m in mailoutbox) == ["other_rep@leadflow.test", "rep@leadflow.test"]


# --- Links --------------------------------------------------------------------------------------------
def test_notifications_link_to_the_handoffs_page_absolute_in_email_and_webhook_with_the_api_url_beside(
    rep, mailoutbox, after_commit, webhook, settings
):
    settings.NOTIFY_BASE_URL = "https://leadflow.example.com/"
    lead = SqlLeadFactory.create()
    with after_commit():
        services.handoffs_open_for_changes(changes=entered_sql([lead]), at=NOW)
    handoff = Handoff.objects.get(lead=lead)
    page = f"/queue/{handoff.public_id}/"
    assert rep.notifications.get().link == page
    assert f"https://leadflow.example.com{page}" in mailoutbox[0].body
    payload = json.loads(webhook.received[0].body)
    assert payload["link"] == f"https://leadflow.example.com{page}"
    assert payload["api_link"] == f"https://leadflow.example.com/api/v1/handoffs/{handoff.public_id}"
    assert browser(rep).get(page).status_code == 200, "the link opens the handoff's page"


def test_a_digest_of_new_sqls_links_to_the_queue_page(rep, after_commit, webhook):
    with after_commit():
        services.handoffs_open_for_changes(changes=entered_sql(SqlLeadFactory.create_batch(12)), at=NOW)
    assert rep.notifications.get().link == "/queue/"
    payload = json.loads(webhook.received[0].body)
    assert (payload["link"], payload["api_link"]) == ("/queue/", "/api/v1/handoffs")


# --- Webhook ------------------------------------------------------------------------------------------
def test_the_webhook_is_signed_with_an_hmac_of_the_raw_body_and_sent_once(rep, after_commit, webhook):
    with time_machine.travel(NOW, tick=False) as clock:
        handoff = claimed_handoff(rep)
        clock.shift(timedelta(days=2))
        with after_commit():
            services.handoffs_flag_overdue()
    (request,) = webhook.received
    assert request.path == "/hooks/leadflow"
    assert request.headers["Content-Type"] == "application/json"
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-LeadFlow-Signature"], expected)
    tampered = request.body.replace(b"sla_breach", b"sla_breach ")
    assert not hmac.compare_digest(request.headers["X-LeadFlow-Signature"], webhooks.legacy_signature(tampered, SECRET))
    timestamp = request.headers["LeadFlow-Signature"].split(",")[0].removeprefix("t=")
    assert request.headers["LeadFlow-Signature"] == webhooks.webhook_signature(request.body, SECRET, int(timestamp))
    payload = json.loads(request.body)
    assert payload["event"] == "sla_breach" == request.headers["X-LeadFlow-Event"]
    assert payload["id"] == request.headers["X-LeadFlow-Delivery"] == f"handoff:{handoff.public_id}:breach"
    assert payload["data"]["handoff"] == str(handoff.public_id)
    assert payload["data"]["claimed_by"] == "rep"

    delivery = WebhookDelivery.objects.get()
    assert (delivery.attempts, delivery.last_status, delivery.delivered_at is not None) == (1, 200, True)
    assert deliver_webhook.delay(delivery.pk).get() == "skipped"
    assert len(webhook.received) == 1, "a delivered webhook is never sent again"


def test_the_webhook_is_retried_until_the_receiver_answers(rep, after_commit, webhook):
    webhook.answers.extend([503, 500])
    with time_machine.travel(NOW, tick=False) as clock:
        handoff = claimed_handoff(rep)
        with after_commit():
            services.handoff_reject(handoff=handoff, user=rep, reason="no_response")
        delivery = WebhookDelivery.objects.get()
        assert (delivery.attempts, delivery.last_status, delivery.next_attempt_at) == (
            1,
            503,
            NOW + timedelta(seconds=30),
        )
        for wait in (30, 60):
            clock.shift(timedelta(seconds=wait))
            with after_commit():
                assert webhooks.webhooks_sweep() == 1, "the beat sweep sends the due retry"
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status, delivery.failed_at) == (3, 200, None)
    assert delivery.delivered_at is not None
    assert len(webhook.received) == 3
    assert len({r.headers["X-LeadFlow-Delivery"] for r in webhook.received}) == 1, "one idempotency key per event"


def test_a_refused_webhook_is_not_retried(rep, after_commit, webhook):
    webhook.answers.append(410)
    handoff = claimed_handoff(rep)
    with after_commit():
        services.handoff_reject(handoff=handoff, user=rep, reason="no_response")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.attempts, delivery.last_status, delivery.delivered_at) == (1, 410, None)
    assert delivery.failed_at is not None
    assert "410" in delivery.last_error


def test_an_unreachable_webhook_never_blocks_the_handoff(rep, marketer, after_commit, settings):
    settings.NOTIFY_WEBHOOK_URL = f"http://127.0.0.1:{closed_port()}/down"
    settings.NOTIFY_WEBHOOK_SECRET = SECRET
    handoff = claimed_handoff(rep)
    with after_commit():
        response = client_for(rep).post(f"/api/v1/handoffs/{handoff.public_id}/reject", {"reason": "no_budget"})
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert kinds(marketer) == ["handoff_rejected"]
    delivery = WebhookDelivery.objects.get()
    assert delivery.attempts == 1, "the first attempt; the sweep retries it later"
    assert delivery.next_attempt_at is not None
    assert delivery.failed_at is None and delivery.delivered_at is None
    assert "Connection refused" in delivery.last_error


def test_a_failing_mail_server_never_blocks_the_handoff(rep, marketer, after_commit, settings, caplog):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", closed_port(), 2
    handoff = claimed_handoff(rep)
    with after_commit():
        response = client_for(rep).post(f"/api/v1/handoffs/{handoff.public_id}/accept")
    assert response.status_code == 200
    with after_commit():
        services.handoffs_open_for_changes(changes=entered_sql([SqlLeadFactory.create()]), at=NOW)
    assert kinds(rep) == ["handoff_new"], "the in-app notification is there even though the email failed"
    assert "Email notification" in caplog.text


def recorded(key, **fields):
    """A delivery to the global webhook's subscription, as ``notify`` records it."""
    subscription = webhooks.settings_subscription_sync()
    assert subscription is not None
    return WebhookDelivery.objects.create(
        subscription=subscription, key=key, event="sla_breach", payload={"event": "sla_breach"}, **fields
    )


def test_a_lost_webhook_task_is_sent_again_by_the_sweep(db, after_commit, webhook):
    with time_machine.travel(NOW, tick=False) as clock:
        stale = recorded("handoff:x:breach")
        clock.shift(timedelta(minutes=45))
        recorded("handoff:y:breach")  # its task is on its way
        with after_commit():
            assert webhooks.webhooks_sweep() == 1
    stale.refresh_from_db()
    assert stale.delivered_at is not None
    assert [r.headers["X-LeadFlow-Delivery"] for r in webhook.received] == ["handoff:x:breach"]


@contextmanager
def held_at_the_receiver(webhook, key):
    """A delivery sent in the background, by ``webhook_deliver`` in a thread of its own with
    its own database connection (as a worker would), whose POST the receiver holds until
    the block ends. Yields the delivery and the list that then holds what the sender
    returned (or raised)."""
    delivery = recorded(key)
    outcome: list[object] = []

    def send():
        try:
            outcome.append(webhooks.webhook_deliver(delivery_id=delivery.pk))
        except BaseException as error:  # reported by the test
            outcome.append(error)
        finally:
            connection.close()

    webhook.gate.clear()
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        assert webhook.arrived.wait(timeout=10), "the POST reached the receiver"
        yield delivery, outcome
    finally:
        webhook.gate.set()
        thread.join(timeout=30)


def sessions_idle_in_transaction():
    """Other connections to the test database that hold a transaction open doing nothing."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND state IN ('idle in transaction', 'idle in transaction (aborted)')"
        )
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_transaction_and_no_row_lock_is_held_while_the_receiver_answers(webhook):
    with held_at_the_receiver(webhook, "handoff:slow:breach") as (delivery, outcome):
        assert sessions_idle_in_transaction() == 0, "the sender holds no transaction open across the POST"
        with transaction.atomic():
            locked = WebhookDelivery.objects.select_for_update(nowait=True).get(pk=delivery.pk)
        assert locked.sending_until is not None, "claimed, by a lease in the row, not by a lock on it"
    assert outcome == ["delivered"]
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status, delivery.sending_until) == (1, 200, None)


@pytest.mark.django_db(transaction=True)
def test_a_delivery_in_flight_is_skipped_by_a_second_sender_and_posted_once(webhook):
    with held_at_the_receiver(webhook, "handoff:twice:breach") as (delivery, outcome):
        assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "skipped"
    assert outcome == ["delivered"]
    assert len(webhook.received) == 1, "the receiver saw one POST"
    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "skipped"
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.delivered_at is not None


def test_a_sender_that_lost_its_claim_does_not_record_its_result(db, webhook, monkeypatch):
    """An attempt that outlived its lease (a frozen worker) was taken over: the attempt
    that took it over records its result, the late one's is dropped."""
    delivery = recorded("handoff:late:breach")
    post = webhooks._post
    took_over: list[str] = []

    def frozen_past_the_lease(sending, subscription):
        if sending.attempts == 1:
            WebhookDelivery.objects.filter(pk=sending.pk).update(sending_until=Now() - timedelta(seconds=1))
            took_over.append(webhooks.webhook_deliver(delivery_id=sending.pk))
        return post(sending, subscription)

    monkeypatch.setattr(webhooks, "_post", frozen_past_the_lease)
    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "superseded"
    assert took_over == ["delivered"]
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status, delivery.sending_until) == (2, 200, None)
    assert delivery.delivered_at is not None


def test_a_claim_left_by_a_dead_sender_expires_and_the_sweep_sends_it(db, webhook, after_commit):
    with time_machine.travel(NOW, tick=False) as clock:
        delivery = recorded("handoff:orphan:breach", attempts=1, last_attempt_at=NOW)
        # The worker died mid-send: its claim stays in the row until the lease runs out.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(sending_until=Now() - timedelta(seconds=1))
        clock.shift(timedelta(minutes=45))
        with after_commit():
            assert webhooks.webhooks_sweep() == 1
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.sending_until) == (2, None)
    assert delivery.delivered_at is not None
    assert [r.headers["X-LeadFlow-Delivery"] for r in webhook.received] == ["handoff:orphan:breach"]


# --- In-app API -----------------------------------------------------------------------------------------
def test_my_notifications_can_be_listed_counted_and_marked_read(rep, other_rep, after_commit, api_client):
    with after_commit():
        services.handoffs_open_for_changes(changes=entered_sql(SqlLeadFactory.create_batch(3)), at=NOW)
    client = client_for(rep)
    listing = client.get("/api/v1/notifications?page_size=2").json()
    assert listing["count"] == 3 and len(listing["results"]) == 2 and listing["next"]
    assert all(item["unread"] for item in listing["results"])
    assert client.get("/api/v1/notifications/unread-count").json() == {"unread": 3}

    first = listing["results"][0]["id"]
    response = client.post(f"/api/v1/notifications/{first}/read")
    assert response.status_code == 200 and response.json()["unread"] is False
    assert client.get("/api/v1/notifications/unread-count").json() == {"unread": 2}
    assert client.get("/api/v1/notifications?unread=true").json()["count"] == 2
    assert client.get("/api/v1/notifications?unread=false").json()["count"] == 1
    assert client_for(other_rep).post(f"/api/v1/notifications/{first}/read").status_code == 404

    assert client.post("/api/v1/notifications/read-all").json() == {"marked_read": 2}
    assert client.get("/api/v1/notifications/unread-count").json() == {"unread": 0}
    assert client_for(other_rep).get("/api/v1/notifications/unread-count").json() == {"unread": 3}
    assert api_client.get("/api/v1/notifications").status_code == 401


def test_the_notification_list_answers_in_a_constant_number_of_queries(
    rep, after_commit, django_assert_max_num_queries
):
    with after_commit():
        services.handoffs_open_for_changes(changes=entered_sql(SqlLeadFactory.create_batch(8)), at=NOW)
    with django_assert_max_num_queries(2):
        assert client_for(rep).get("/api/v1/notifications").json()["count"] == 8


@pytest.mark.django_db(transaction=True)
def test_the_migration_rewrites_stored_api_links_to_the_pages(rep):
    before, after = ("handoff", "0002_drop_redundant_fk_indexes"), ("handoff", "0003_notification_page_links")
    handoff_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    stored = {
        "one": f"/api/v1/handoffs/{handoff_id}",
        "digest": "/api/v1/handoffs",
        "none": "",
        "page": "/leads/",
    }
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([before])
        executor.loader.build_graph()
        old = executor.loader.project_state([before]).apps.get_model("handoff", "Notification")
        for key, link in stored.items():
            old.objects.create(recipient_id=rep.pk, kind="handoff_new", event_key=key, title=key, link=link)
        executor.migrate([after])
        executor.loader.build_graph()
        links = dict(Notification.objects.values_list("event_key", "link"))
        assert links == {"one": f"/queue/{handoff_id}/", "digest": "/queue/", "none": "", "page": "/leads/"}
        executor.migrate([before])
        executor.loader.build_graph()
        assert dict(Notification.objects.values_list("event_key", "link")) == stored, "reversible"
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


# --- Read when acted on ---------------------------------------------------------------------------------
def unread_new_sqls(user):
    """The handoffs whose "new SQL" notification ``user`` has not read."""
    keys = user.notifications.filter(kind="handoff_new", read_at__isnull=True).values_list("event_key", flat=True)
    return sorted(key.split(":")[1] for key in keys)


def open_handoffs(count, after_commit):
    with after_commit():
        services.handoffs_open_for_changes(changes=entered_sql(SqlLeadFactory.create_batch(count)), at=NOW)
    return [str(public_id) for public_id in Handoff.objects.order_by("id").values_list("public_id", flat=True)]


def test_claiming_a_handoff_marks_my_new_sql_notification_of_it_read(rep, other_rep, after_commit):
    first, second, third = open_handoffs(3, after_commit)
    assert client_for(rep).post(f"/api/v1/handoffs/{first}/claim").status_code == 200
    assert unread_new_sqls(rep) == sorted([second, third])
    assert client_for(other_rep).post("/api/v1/handoffs/claim-next").json()["id"] == second
    assert unread_new_sqls(other_rep) == sorted([first, third]), "only the rep who acts on a handoff"
    assert unread_new_sqls(rep) == sorted([second, third])


@pytest.mark.parametrize(
    "claim",
    [pytest.param(services._claim_sql, marks=pytest.mark.postgres), services._claim_orm],
    ids=["postgresql", "orm"],
)
def test_both_claim_paths_mark_the_claimers_new_sql_notification_read(claim, rep, other_rep, after_commit):
    (handoff_id,) = open_handoffs(1, after_commit)
    with transaction.atomic():
        _open_claims, handoff = claim(user=rep, handoff_id=Handoff.objects.get().pk, now=NOW + timedelta(minutes=5))
    assert str(handoff.public_id) == handoff_id
    assert rep.notifications.get().read_at == NOW + timedelta(minutes=5)
    assert unread_new_sqls(other_rep) == [handoff_id]


@pytest.mark.parametrize(("action", "body"), [("accept", {}), ("reject", {"reason": "no_budget"}), ("release", {})])
def test_deciding_or_releasing_a_handoff_marks_my_new_sql_notification_of_it_read(
    action, body, rep, other_rep, sales_manager, after_commit
):
    (handoff_id,) = open_handoffs(1, after_commit)
    # A manager gives it to the rep, who never claimed it: their notification is still unread.
    with after_commit():
        services.handoff_reassign(handoff=Handoff.objects.get(), actor=sales_manager, to_user=rep)
    assert unread_new_sqls(rep) == [handoff_id]
    with after_commit():
        response = client_for(rep).post(f"/api/v1/handoffs/{handoff_id}/{action}", body, format="json")
    assert response.status_code == 200, response.content
    assert unread_new_sqls(rep) == []
    assert unread_new_sqls(other_rep) == [handoff_id]


def test_notifications_commit_with_the_change_and_mail_waits_for_the_commit(db, rep, webhook, mailoutbox):
    lead = SqlLeadFactory.create()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.handoffs_open_for_changes(changes=entered_sql([lead]), at=NOW)
        # Written with the handoff, in its transaction: a crash after the commit loses none.
        assert Notification.objects.filter(recipient=rep).count() == 1
        assert WebhookDelivery.objects.count() == 1
        assert mailoutbox == [], "e-mail leaves only after the commit"
        raise RuntimeError("the change rolls back")

    assert not Handoff.objects.exists()
    assert not Notification.objects.exists(), "no notification outlives a rolled-back change"
    assert not WebhookDelivery.objects.exists()
    assert mailoutbox == []
    assert webhook.received == []
