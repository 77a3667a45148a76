"""A rep's day without detours (issue 17, item 6): the login lands a rep on the queue, the
queue lists the overdue handoffs first when asked and remembers it, "Accept & next" and
"Reject & next" go on to the next queued handoff, every span of time reads one way, the
lead's e-mail is a link, people are named by their full name, notification dates carry
their moment for the browser to show in its zone, and one sweep's SLA breaches are one
notification per person."""

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from handoff import services
from handoff.models import Handoff, HandoffStatus, Notification, NotificationKind, WebhookDelivery
from leadflow.leads.models import Stage
from leadflow.leads.roles import MARKETING, SALES
from leadflow.leads.templatetags import leadflow_ui
from tests.factories import HandoffFactory, SqlLeadFactory, UserFactory
from tests.helpers import browser

QUEUE = "/queue/"
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def log_in(username, **params):
    query = f"?{'&'.join(f'{key}={value}' for key, value in params.items())}" if params else ""
    return Client().post(f"/login/{query}", {"username": username, "password": PASSWORD})


def handoff_page(handoff):
    return reverse("handoff-detail", args=[handoff.public_id])


def queued(name, *, priority, due_in):
    """A queued handoff of a lead called ``name``, due ``due_in`` from now (negative: overdue)."""
    now = timezone.now()
    lead = SqlLeadFactory.create(name=name)
    return HandoffFactory.create(
        lead=lead, priority=Decimal(priority), created_at=now - timedelta(days=1), due_at=now + due_in
    )


def queue_names(client, **params):
    response = client.get(QUEUE, params)
    assert response.status_code == 200
    return [item.handoff.lead.name for item in response.context["queue"]]


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


# --- Where the login lands ----------------------------------------------------------------------------
def test_a_rep_lands_on_the_sales_queue_after_logging_in(rep):
    response = log_in("rep")
    assert response.status_code == 302 and response["Location"] == QUEUE


def test_marketing_scoring_admins_and_managers_still_land_on_the_dashboard(marketer, admin, sales_manager):
    UserFactory.create(username="both", roles=[SALES, MARKETING])  # a rep who also markets
    for username in ("marketer", "scoring_admin", "sales_manager", "both"):
        assert log_in(username)["Location"] == "/", username


def test_an_explicit_next_still_wins_over_the_reps_queue(rep):
    assert log_in("rep", next="/leads/")["Location"] == "/leads/"
    # The site's own address (what login_required carries from a bookmark of it) names no
    # page but the home page: the rep's home is the queue.
    assert log_in("rep", next="/")["Location"] == QUEUE


# --- The queue's order --------------------------------------------------------------------------------
@pytest.fixture
def mixed_queue(db):
    return [
        queued("Top score", priority=90, due_in=timedelta(hours=5)),
        queued("Long overdue", priority=60, due_in=-timedelta(hours=5)),
        queued("Just overdue", priority=80, due_in=-timedelta(minutes=10)),
    ]


def test_the_queue_lists_overdue_handoffs_first_longest_overdue_on_top_when_asked(rep, mixed_queue):
    client = browser(rep)
    assert queue_names(client) == ["Top score", "Just overdue", "Long overdue"]  # the claim order
    assert queue_names(client, sort="overdue") == ["Long overdue", "Just overdue", "Top score"]
    content = client.get(QUEUE).content.decode()
    assert re.search(r'<a href="\?sort=overdue"[^>]*aria-current="true">Overdue first</a>', content)
    assert "overdue first (the longest overdue on top)" in content


def test_claim_next_on_the_page_takes_the_top_of_the_order_the_rep_chose(rep, mixed_queue):
    client = browser(rep)
    queue_names(client, sort="overdue")
    response = client.post(reverse("handoff-claim-next"), follow=True)
    assert Handoff.objects.get(status=HandoffStatus.CLAIMED).lead.name == "Long overdue"
    assert "You claimed Long overdue, the top of the queue." in response.content.decode()
    queue_names(client, sort="claim")
    client.post(reverse("handoff-claim-next"))
    assert Handoff.objects.filter(status=HandoffStatus.CLAIMED, lead__name="Top score").exists()


def test_the_queue_remembers_the_order_each_rep_chose(rep, other_rep, mixed_queue):
    client = browser(rep)
    queue_names(client, sort="overdue")
    assert queue_names(client) == ["Long overdue", "Just overdue", "Top score"], "remembered on the next visit"
    assert queue_names(client, page=1) == ["Long overdue", "Just overdue", "Top score"]
    assert queue_names(browser(other_rep)) == ["Top score", "Just overdue", "Long overdue"], "another rep's is theirs"
    queue_names(client, sort="claim")
    assert queue_names(client) == ["Top score", "Just overdue", "Long overdue"]


# --- Accept & next, reject & next ---------------------------------------------------------------------
def claimed(rep, name="Claimed"):
    handoff = queued(name, priority=99, due_in=timedelta(hours=20))
    return services.handoff_claim(handoff=handoff, user=rep)


def test_the_handoff_page_offers_accept_and_next_and_reject_and_next_to_the_claimer(rep):
    content = browser(rep).get(handoff_page(claimed(rep))).content.decode()
    assert re.search(r'<button type="submit" name="then" value="next"[^>]*>Accept &amp; next</button>', content)
    assert re.search(r'<button type="submit" name="then" value="next"[^>]*>Reject &amp; next</button>', content)


def test_accept_and_next_opens_the_next_queued_handoff_without_claiming_it(rep, mixed_queue):
    handoff = claimed(rep)
    client = browser(rep)
    response = client.post(handoff_page(handoff) + "accept", {"then": "next"}, follow=True)
    top = mixed_queue[0]
    assert response.redirect_chain[-1][0] == handoff_page(top)
    assert messages_of(response) == [
        "Accepted Claimed: the lead is yours now.",
        "Next in the queue: Top score. Claim it to work on it.",
    ]
    assert "Claim it to work on it: it is yours for" in response.content.decode()  # its page offers the claim
    top.refresh_from_db()
    assert top.status == HandoffStatus.QUEUED and top.claimed_by is None
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.ACCEPTED and handoff.lead.stage == Stage.ACCEPTED


def test_reject_and_next_follows_the_order_the_rep_chose_for_the_queue(rep, mixed_queue):
    handoff = claimed(rep)
    client = browser(rep)
    client.get(QUEUE, {"sort": "overdue"})
    response = client.post(
        handoff_page(handoff) + "reject", {"reason": "no_budget", "note": "", "then": "next"}, follow=True
    )
    assert response.redirect_chain[-1][0] == handoff_page(mixed_queue[1])  # "Long overdue"
    assert messages_of(response)[-1] == "Next in the queue: Long overdue. Claim it to work on it."
    handoff.refresh_from_db()
    assert (handoff.status, handoff.reject_reason) == (HandoffStatus.REJECTED, "no_budget")


def test_accept_and_next_with_nothing_queued_lands_on_the_queue_with_a_message(rep):
    handoff = claimed(rep)
    response = browser(rep).post(handoff_page(handoff) + "accept", {"then": "next"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("sales-queue")
    assert messages_of(response)[-1] == "Nothing else is waiting in the queue. New SQLs appear here as leads qualify."


def test_accept_and_next_at_the_claim_limit_lands_on_the_queue_with_a_message(rep, settings, mixed_queue):
    first, *_others = [claimed(rep, name) for name in ("First", "Second", "Third")]
    settings.HANDOFF_MAX_OPEN_CLAIMS = 2  # lowered since: two claims left after the decision
    response = browser(rep).post(handoff_page(first) + "accept", {"then": "next"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("sales-queue")
    assert messages_of(response)[-1] == (
        "You hold 2 claims, the limit: accept, reject or release one before claiming the next."
    )


def test_accept_without_next_stays_on_the_decided_handoff(rep, mixed_queue):
    handoff = claimed(rep)
    response = browser(rep).post(handoff_page(handoff) + "accept")
    assert response["Location"] == handoff_page(handoff)


# --- One duration format ------------------------------------------------------------------------------
def test_every_span_of_time_reads_one_way():
    duration = leadflow_ui.duration
    assert [
        duration(timedelta(seconds=20)),
        duration(timedelta(minutes=42)),
        duration(timedelta(hours=5, minutes=20)),
        duration(timedelta(hours=26, minutes=10)),
        duration(timedelta(days=3, hours=4)),
        duration(timedelta(days=12, hours=4)),
        duration(None),
    ] == ["under a minute", "42 min", "5 h 20 min", "26 h", "3 days 4 h", "12 days", "—"]
    assert leadflow_ui.countdown is duration  # the SLA's name for the same filter
    start = timezone.now()
    assert leadflow_ui.elapsed(start + timedelta(days=3, hours=4), start) == "3 days 4 h"
    assert leadflow_ui.relative(start - timedelta(hours=3, minutes=1)) == "3 h 1 min ago"
    assert leadflow_ui.relative(start + timedelta(hours=3, minutes=1, seconds=30)) == "in 3 h 1 min"


def test_no_template_formats_a_span_of_time_another_way():
    others = re.compile(r"\|\s*(naturaltime|timesince|timeuntil)\b")
    offenders = [
        str(path.relative_to(TEMPLATES)) for path in TEMPLATES.rglob("*.html") if others.search(path.read_text())
    ]
    assert offenders == []


def test_a_decided_handoff_says_when_in_the_one_format(rep):
    handoff = claimed(rep)
    services.handoff_accept(handoff=handoff, user=rep)
    Handoff.objects.filter(pk=handoff.pk).update(decided_at=timezone.now() - timedelta(hours=2, minutes=5))
    content = browser(rep).get(handoff_page(handoff)).content.decode()
    assert "Accepted by <strong>rep</strong> 2 h 5 min ago." in content
    assert "hours ago" not in content


# --- E-mail, names --------------------------------------------------------------------------------------
def test_the_leads_email_is_a_mailto_link_on_the_handoff_and_lead_pages(rep, marketer):
    lead = SqlLeadFactory.create(name="Ada", email="ada+sales@analytical.example")
    handoff = HandoffFactory.create(lead=lead)
    link = '<a class="mailto" href="mailto:ada%2Bsales@analytical.example">ada+sales@analytical.example</a>'
    assert browser(rep).get(handoff_page(handoff)).content.decode().count(link) == 2  # header and profile
    assert browser(marketer).get(reverse("lead-detail", args=[lead.public_id])).content.decode().count(link) == 2


def test_people_are_named_by_their_full_name_else_their_username(rep, marketer):
    rep.first_name, rep.last_name = "Rita", "Moreno"
    rep.save(update_fields=["first_name", "last_name"])
    handoff = claimed(rep)
    services.handoff_accept(handoff=handoff, user=rep)
    on_handoff = browser(marketer).get(handoff_page(handoff)).content.decode()
    assert "Accepted by <strong>Rita Moreno</strong>" in on_handoff and "<dd>Rita Moreno</dd>" in on_handoff
    assert "by Rita Moreno" in on_handoff  # the audit trail's actor
    on_lead = browser(marketer).get(reverse("lead-detail", args=[handoff.lead.public_id])).content.decode()
    assert "Owner: Rita Moreno" in on_lead and "Accepted by Rita Moreno." in on_lead  # the stage change's reason
    released = services.handoff_release(handoff=claimed(rep, "Released"), user=rep)
    trail = browser(marketer).get(handoff_page(released)).content.decode()
    assert "Back to the queue (claimed by Rita Moreno)." in trail  # the audit details keep the username
    nameless = UserFactory.create(username="kim", roles=[SALES])
    other = claimed(nameless, "Other")
    assert "Claimed by <strong>kim</strong>" in browser(marketer).get(handoff_page(other)).content.decode()


# --- Notification dates ---------------------------------------------------------------------------------
def test_a_notification_date_carries_its_moment_for_the_browser_to_show_in_its_zone(rep):
    Notification.objects.create(recipient=rep, kind=NotificationKind.SLA_BREACH, event_key="k", title="Late")
    created = Notification.objects.get().created_at
    content = browser(rep).get(reverse("notification-list")).content.decode()
    iso = created.isoformat()
    assert (
        f'<time datetime="{iso}" data-local-time>{created:%b} {created.day}, {created:%Y %H:%M} UTC</time>' in content
    )


# --- SLA breaches, grouped --------------------------------------------------------------------------------
@pytest.fixture
def after_commit(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def overdue_handoffs(count, **extra):
    now = timezone.now()
    return [
        HandoffFactory.create(created_at=now - timedelta(days=2), due_at=now - timedelta(hours=1, minutes=n), **extra)
        for n in range(count)
    ]


def test_one_sweeps_breaches_are_one_notification_per_rep_linking_to_the_queue_overdue_first(
    rep, other_rep, marketer, mailoutbox, after_commit
):
    overdue_handoffs(9)
    with after_commit():
        assert services.handoffs_flag_overdue() == 9
    for user in (rep, other_rep):
        [notification] = user.notifications.all()
        assert (notification.kind, notification.title) == ("sla_breach", "9 handoffs overdue")
        assert notification.link == "/queue/?sort=overdue"
        assert "and 6 more" in notification.body and "Nobody has claimed them." in notification.body
    assert marketer.notifications.count() == 0
    assert sorted(m.to[0] for m in mailoutbox) == ["other_rep@leadflow.test", "rep@leadflow.test"]
    assert mailoutbox[0].subject == "[LeadFlow] 9 handoffs overdue"
    assert "/queue/?sort=overdue" in mailoutbox[0].body


def test_a_reps_digest_counts_their_own_overdue_claims_with_the_unclaimed_ones(rep, other_rep, after_commit):
    overdue_handoffs(2)
    services.handoff_claim(handoff=overdue_handoffs(1)[0], user=rep)
    with after_commit():
        services.handoffs_flag_overdue()
    [digest] = rep.notifications.all()
    assert digest.title == "3 handoffs overdue"
    assert "1 of them is your claim, the others unclaimed." in digest.body
    [theirs] = other_rep.notifications.all()
    assert theirs.title == "2 handoffs overdue"  # another rep's claim is not theirs to see


def test_a_single_breach_is_still_told_by_itself_and_each_sweep_tells_its_own(rep, after_commit):
    [first] = overdue_handoffs(1)
    with after_commit():
        services.handoffs_flag_overdue()
    [single] = rep.notifications.all()
    assert single.title == f"SLA breached: {first.lead.display_name}" and single.link == handoff_page(first)
    overdue_handoffs(2)
    with after_commit():
        services.handoffs_flag_overdue()
    assert sorted(rep.notifications.values_list("title", flat=True)) == [
        "2 handoffs overdue",
        f"SLA breached: {first.lead.display_name}",
    ]


def test_the_webhook_still_gets_one_event_per_breached_handoff(rep, settings):
    settings.NOTIFY_WEBHOOK_URL = "http://127.0.0.1:9/hooks"  # rows only: nothing is sent before the commit
    handoffs = overdue_handoffs(3)
    services.handoffs_flag_overdue()
    assert sorted(WebhookDelivery.objects.values_list("key", flat=True)) == sorted(
        f"handoff:{h.public_id}:breach" for h in handoffs
    )
    assert rep.notifications.count() == 1
