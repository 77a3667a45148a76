"""The sales pages: the queue reps work from, a handoff's page, notifications and the
navigation badge, and the sales feedback marketing reads on the lead page and the
dashboard. Who may open and do what, what they show, and that they stay safe and fast."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from handoff import services
from handoff.models import ChecklistItem, Handoff, HandoffEvent, HandoffStatus, Notification, NotificationKind
from leadflow.leads import rollups
from leadflow.leads.models import Lead, Stage
from leadflow.leads.templatetags.leadflow_ui import countdown
from scoring.models import Score
from scoring.services import leads_score
from tests.factories import EventFactory, HandoffFactory, LeadFactory, SqlLeadFactory
from tests.helpers import (
    ESCAPED_SCRIPT,
    INLINE_HANDLER,
    INLINE_SCRIPT,
    INLINE_STYLE,
    SCRIPT,
    behaviour,
    browser,
    client_for,
    count_queries,
    fit,
)

QUEUE = "/queue/"
RULES = [
    fit("job_title", "contains", "director", 10),
    behaviour("page_view", 2, max_points=10),
    behaviour("pricing_view", 10),
    behaviour("demo_request", 30),
]


def handoff_url(handoff, action=""):
    return reverse("handoff-detail", args=[handoff.public_id]) + action


def page(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200, response.content[:300]
    return response.content.decode()


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def act(client, url, data=None):
    """POST as a browser does, following the redirect (which shows and consumes the messages)."""
    response = client.post(url, data or {}, follow=True)
    assert response.status_code == 200, response.content[:300]
    return response


@pytest.fixture
def sql_leads(publish_ruleset):
    """Leads that became SQLs through scoring (queued handoffs, with events to explain)."""
    publish_ruleset(RULES, mql=20, sql=50)

    def make(count=1, **lead_fields):
        leads = []
        for _ in range(count):
            lead = LeadFactory.create(job_title="Director of Sales", **lead_fields)
            EventFactory.create_batch(3, lead=lead, type="page_view", properties={"topic": "pricing"})
            EventFactory.create(lead=lead, type="pricing_view")
            EventFactory.create(lead=lead, type="demo_request", properties={"intent": "book a demo"})
            leads.append(lead)
        leads_score(lead_ids=[lead.pk for lead in leads])
        return [Lead.objects.get(pk=lead.pk) for lead in leads]

    return make


# --- Who may open and do what -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "queue", "handoff_page", "notifications"),
    [
        ("rep", 200, 200, 200),
        ("other_rep", 200, 200, 200),
        ("sales_manager", 200, 200, 200),
        ("marketer", 403, 200, 200),
        ("admin", 403, 200, 200),
        ("outsider", 403, 403, 403),
    ],
)
def test_the_sales_pages_open_for_the_roles_that_use_them(db, request, role, queue, handoff_page, notifications):
    handoff = HandoffFactory.create()
    client = browser(request.getfixturevalue(role))
    assert client.get(QUEUE).status_code == queue
    assert client.get(handoff_url(handoff)).status_code == handoff_page
    assert client.get(reverse("notification-list")).status_code == notifications


def test_anonymous_visitors_of_the_sales_pages_are_sent_to_the_login_page(db):
    handoff = HandoffFactory.create()
    for url in [QUEUE, handoff_url(handoff), reverse("notification-list")]:
        response = browser().get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url
    response = browser().post(handoff_url(handoff, "claim"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert Handoff.objects.get().status == HandoffStatus.QUEUED


@pytest.mark.parametrize("role", ["marketer", "admin", "outsider"])
def test_only_sales_reps_claim_accept_reject_and_release(db, request, role, rep):
    queued, claimed = HandoffFactory.create(), HandoffFactory.create()
    services.handoff_claim(handoff=claimed, user=rep)
    client = browser(request.getfixturevalue(role))
    assert client.post(reverse("handoff-claim-next")).status_code == 403
    assert client.post(handoff_url(queued, "claim")).status_code == 403
    for action in ("accept", "release"):
        assert client.post(handoff_url(claimed, action)).status_code == 403
    assert client.post(handoff_url(claimed, "reject"), {"reason": "no_budget"}).status_code == 403
    statuses = dict(Handoff.objects.values_list("pk", "status"))
    assert statuses == {queued.pk: HandoffStatus.QUEUED, claimed.pk: HandoffStatus.CLAIMED}


def test_a_marketer_reads_a_handoff_without_its_actions(marketer):
    handoff = HandoffFactory.create()
    content = page(browser(marketer), handoff_url(handoff))
    assert "Waiting in the queue for a rep." in content
    assert "Sales reps claim, accept and reject handoffs" in content
    assert 'action="' + handoff_url(handoff, "claim") not in content


def test_another_reps_claim_is_404_for_every_action_and_its_page(rep, other_rep):
    handoff = HandoffFactory.create()
    services.handoff_claim(handoff=handoff, user=other_rep)
    client = browser(rep)
    assert client.get(handoff_url(handoff)).status_code == 404
    for action in ("accept", "release"):
        assert client.post(handoff_url(handoff, action)).status_code == 404, action
    assert client.post(handoff_url(handoff, "reject"), {"reason": "no_budget"}).status_code == 404
    handoff.refresh_from_db()
    assert (handoff.status, handoff.claimed_by) == (HandoffStatus.CLAIMED, other_rep)
    assert handoff.lead.stage == Stage.SQL


def test_a_rep_who_lost_the_race_for_a_claim_is_told_so_and_sent_back_to_the_queue(rep, other_rep):
    handoff = HandoffFactory.create()
    services.handoff_claim(handoff=handoff, user=other_rep)

    response = browser(rep).post(handoff_url(handoff, "claim"), follow=True)

    assert response.redirect_chain == [(reverse("sales-queue"), 302)]
    page = response.content.decode()
    assert "Another rep claimed this handoff first" in page
    assert "other_rep" not in page, "the winner is not named"
    handoff.refresh_from_db()
    assert (handoff.status, handoff.claimed_by) == (HandoffStatus.CLAIMED, other_rep)


def test_the_action_urls_answer_only_post(rep):
    handoff = HandoffFactory.create()
    client = browser(rep)
    for url in [reverse("handoff-claim-next"), handoff_url(handoff, "claim"), reverse("notification-read-all")]:
        assert client.get(url).status_code == 405, url


def test_the_sales_forms_refuse_a_post_without_the_csrf_token(rep):
    handoff = HandoffFactory.create()
    client = browser(rep, enforce_csrf_checks=True)
    assert client.post(handoff_url(handoff, "claim")).status_code == 403
    assert client.post(reverse("handoff-claim-next")).status_code == 403
    assert Handoff.objects.get().status == HandoffStatus.QUEUED


def test_every_form_of_the_sales_pages_carries_a_csrf_token(rep):
    queued, mine = HandoffFactory.create(), HandoffFactory.create()
    services.handoff_claim(handoff=mine, user=rep)
    Notification.objects.create(recipient=rep, kind=NotificationKind.HANDOFF_NEW, event_key="k", title="New SQL")
    client = browser(rep)
    for url in [QUEUE, handoff_url(queued), handoff_url(mine), reverse("notification-list")]:
        content = page(client, url)
        post_forms = re.findall(r'<form[^>]*method="post"[^>]*>(.*?)</form>', content, flags=re.S)
        assert len(post_forms) >= 2, url  # an action and the logout form
        for form in post_forms:
            assert 'name="csrfmiddlewaretoken"' in form, url


# --- The queue --------------------------------------------------------------------------------------
def test_the_queue_lists_sqls_by_score_then_age_with_why_they_qualified(rep, sql_leads):
    first, second = sql_leads(2)
    first_score = Score.objects.get(lead=first).score
    Score.objects.filter(lead=second).update(score=first_score + 5)
    Handoff.objects.filter(lead=second).update(priority=first_score + 5)
    never_scored = LeadFactory.create(name="Older tie", stage=Stage.SQL)
    HandoffFactory.create(lead=never_scored, priority=first_score, created_at=timezone.now())
    Handoff.objects.filter(lead=first).update(created_at=timezone.now() + timedelta(minutes=1))
    response = browser(rep).get(QUEUE)
    names = [item.handoff.lead.display_name for item in response.context["queue"]]
    assert names == [second.name, "Older tie", first.name]

    why = response.context["queue"][0].why
    assert [(rule.name, rule.points) for rule in why.top_rules] == [
        ("demo_request rule", 30),
        ("job_title contains", 10),  # ties in the ruleset's order: fit rules first
        ("pricing_view rule", 10),
    ]
    assert why.intent.type == "demo_request" and why.intent.properties == {"intent": "book a demo"}
    content = response.content.decode()
    assert "+30.00</b> demo_request rule" in content and "Hand raised" in content and "book a demo" in content
    assert response.context["queue"][1].why.scored is False  # this lead has no score
    assert "Not scored yet." in content


def test_the_queue_shows_the_sla_countdown_and_flags_overdue_handoffs(rep):
    now = timezone.now()
    HandoffFactory.create(
        lead=SqlLeadFactory.create(name="Fresh"), created_at=now, due_at=now + timedelta(hours=5, minutes=30)
    )
    late = SqlLeadFactory.create(name="Late")
    HandoffFactory.create(lead=late, created_at=now - timedelta(days=2), due_at=now - timedelta(hours=26))
    client = browser(rep)
    content = page(client, QUEUE)
    assert "due in 5 h 29 min" in content or "due in 5 h 30 min" in content
    assert "Overdue</span>" in content and "by 26 h" in content
    overdue = client.get(QUEUE, {"show": "overdue"})
    assert [item.handoff.lead.name for item in overdue.context["queue"]] == ["Late"]
    assert overdue.context["overdue_count"] == 1


def test_the_sla_countdown_reads_like_a_person_would_say_it():
    assert countdown(timedelta(seconds=20)) == "under a minute"
    assert countdown(timedelta(minutes=42)) == "42 min"
    assert countdown(timedelta(hours=5, minutes=20)) == "5 h 20 min"
    assert countdown(timedelta(hours=3)) == "3 h"
    assert countdown(timedelta(hours=26, minutes=10)) == "26 h"
    assert countdown(timedelta(days=3, hours=4)) == "3 days 4 h"
    assert countdown(timedelta(days=12, hours=4)) == "12 days"
    assert countdown(-timedelta(hours=2)) == "2 h"


def test_my_claims_show_their_expiry_and_actions(rep, other_rep):
    ChecklistItem.objects.update(active=False)  # nothing to confirm: Accept is one click (see test_accept_checklist)
    mine, theirs = (
        HandoffFactory.create(lead=SqlLeadFactory.create(name="Mine")),
        HandoffFactory.create(lead=SqlLeadFactory.create(name="Theirs")),
    )
    services.handoff_claim(handoff=mine, user=rep)
    services.handoff_claim(handoff=theirs, user=other_rep)
    response = browser(rep).get(QUEUE)
    assert [item.handoff.lead.name for item in response.context["claims"]] == ["Mine"]
    assert response.context["queue"] == []  # another rep's claim is neither queued nor mine
    content = response.content.decode()
    assert "Claim expires" in content and "You hold <strong>1</strong> of 10 claims" in content
    for action in ("accept", "reject", "release"):
        assert f'action="{handoff_url(mine, action)}"' in content
    assert "Theirs" not in content


def test_a_lead_named_like_a_script_renders_as_text_on_the_sales_pages(rep, marketer):
    lead = SqlLeadFactory.create(name=SCRIPT, company=SCRIPT, job_title=SCRIPT)
    handoff = HandoffFactory.create(lead=lead)
    mine = HandoffFactory.create(lead=SqlLeadFactory.create(name=SCRIPT))
    services.handoff_claim(handoff=mine, user=rep)
    Notification.objects.create(
        recipient=rep, kind=NotificationKind.HANDOFF_NEW, event_key="x", title=SCRIPT, body=SCRIPT, link=SCRIPT
    )
    client = browser(rep)
    for url in [QUEUE, handoff_url(handoff), reverse("notification-list")]:
        content = page(client, url)
        assert SCRIPT not in content, url
        assert ESCAPED_SCRIPT in content, url


def test_the_sales_pages_need_no_inline_script_style_or_handler(rep, marketer):
    queued, mine = HandoffFactory.create(), HandoffFactory.create()
    services.handoff_claim(handoff=mine, user=rep)
    Notification.objects.create(recipient=rep, kind=NotificationKind.SLA_BREACH, event_key="k", title="Late")
    for client, urls in [
        (browser(rep), [QUEUE, handoff_url(queued), handoff_url(mine), reverse("notification-list")]),
        (browser(marketer), [reverse("lead-detail", args=[mine.lead.public_id]), reverse("dashboard")]),
    ]:
        for url in urls:
            content = page(client, url)
            assert not INLINE_SCRIPT.search(content), url
            assert not INLINE_STYLE.search(content), url
            assert not INLINE_HANDLER.search(content), url


# --- Working the queue through the pages ------------------------------------------------------------------
def test_a_rep_claims_the_next_sql_and_accepts_it(rep, sql_leads):
    lead = sql_leads()[0]
    client = browser(rep)
    response = client.post(reverse("handoff-claim-next"), follow=True)
    handoff = Handoff.objects.get(lead=lead)
    assert response.redirect_chain[-1][0] == handoff_url(handoff)
    assert messages_of(response) == [
        f"You claimed {lead.name}, the top of the queue. Accept or reject it within 4 h, or release it."
    ]
    assert (handoff.status, handoff.claimed_by) == (HandoffStatus.CLAIMED, rep)
    content = response.content.decode()
    assert "Accept the lead" in content and "Reject the lead" in content and "Release to the queue" in content
    assert "Hand raised" in content and "book a demo" in content  # why it qualified
    assert "Intent shown and score 56.00 reached the SQL threshold" in content

    response = client.post(handoff_url(handoff, "accept"), follow=True)
    assert messages_of(response) == [f"Accepted {lead.name}: the lead is yours now."]
    lead.refresh_from_db()
    assert (lead.stage, lead.owner) == (Stage.ACCEPTED, rep)
    content = response.content.decode()
    assert "Accepted by <strong>rep</strong>" in content
    assert [e.action for e in HandoffEvent.objects.filter(handoff=handoff)] == ["opened", "claimed", "accepted"]


def test_a_rep_claims_from_the_queue_and_stays_on_it(rep):
    handoff = HandoffFactory.create()
    response = browser(rep).post(handoff_url(handoff, "claim"), {"next": QUEUE})
    assert response.status_code == 302 and response["Location"] == QUEUE
    handoff.refresh_from_db()
    assert handoff.claimed_by == rep


def test_an_unsafe_next_address_is_ignored(rep):
    handoff = HandoffFactory.create()
    response = browser(rep).post(handoff_url(handoff, "claim"), {"next": "https://evil.example/"})
    assert response["Location"] == handoff_url(handoff)


def test_a_rep_rejects_with_a_reason_and_a_note_and_marketing_reads_it(
    rep, marketer, sql_leads, django_capture_on_commit_callbacks
):
    lead = sql_leads()[0]
    handoff = Handoff.objects.get(lead=lead)
    client = browser(rep)
    act(client, handoff_url(handoff, "claim"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            handoff_url(handoff, "reject"),
            {"reason": "bad_timing", "note": "Budget opens in Q3; call back in June.", "next": QUEUE},
        )
    assert response.status_code == 302 and response["Location"] == QUEUE
    handoff.refresh_from_db()
    assert (handoff.status, handoff.reject_reason, handoff.note) == (
        HandoffStatus.REJECTED,
        "bad_timing",
        "Budget opens in Q3; call back in June.",
    )
    assert Lead.objects.get(pk=lead.pk).stage == Stage.RECYCLED
    assert messages_of(client.get(QUEUE)) == [
        f"Rejected {lead.name} (Bad timing): the lead is Recycled and marketing has your feedback."
    ]

    reader = browser(marketer)
    lead_page = page(reader, reverse("lead-detail", args=[lead.public_id]))
    assert "Sales feedback" in lead_page and "Bad timing" in lead_page
    assert "Budget opens in Q3; call back in June." in lead_page and "recycled to nurturing" in lead_page
    notification = Notification.objects.get(recipient=marketer)
    assert notification.kind == NotificationKind.HANDOFF_REJECTED
    inbox = page(reader, reverse("notification-list"))
    assert notification.link == handoff_url(handoff)
    assert f'href="{handoff_url(handoff)}"' in inbox
    detail = page(reader, handoff_url(handoff))
    assert "Budget opens in Q3" in detail and "Bad timing: the lead is recycled." in detail


def test_a_rejection_without_a_reason_is_refused_on_the_form(rep):
    handoff = HandoffFactory.create()
    client = browser(rep)
    client.post(handoff_url(handoff, "claim"))
    response = client.post(handoff_url(handoff, "reject"), {"note": "no idea"})
    assert response.status_code == 400
    assert "Choose why you reject the lead: marketing learns from it." in response.content.decode()
    response = client.post(handoff_url(handoff, "reject"), {"reason": "other", "note": "  "})
    assert response.status_code == 400
    assert "Say why in the note when the reason is “Other”: marketing reads it." in response.content.decode()
    assert Handoff.objects.get().status == HandoffStatus.CLAIMED


def test_the_note_rule_of_other_is_one_rule_shown_on_the_note_field_by_the_api_and_the_form(rep):
    handoff = HandoffFactory.create()
    services.handoff_claim(handoff=handoff, user=rep)
    with pytest.raises(services.HandoffError) as refused:
        services.handoff_reject(handoff=handoff, user=rep, reason="other", note="  ")
    rule = str(refused.value)
    api = client_for(rep).post(f"/api/v1/handoffs/{handoff.public_id}/reject", {"reason": "other", "note": " "})
    assert (api.status_code, api.json()) == (400, {"note": [rule]})
    form = browser(rep).post(handoff_url(handoff, "reject"), {"reason": "other", "note": " "})
    assert form.status_code == 400
    assert form.context["reject_form"].errors == {"note": [rule]}
    assert Handoff.objects.get().status == HandoffStatus.CLAIMED


def test_a_rep_releases_a_claim_back_to_the_queue(rep):
    handoff = HandoffFactory.create()
    client = browser(rep)
    act(client, handoff_url(handoff, "claim"))
    response = act(client, handoff_url(handoff, "release"), {"next": QUEUE})
    assert messages_of(response) == [
        f"Released {handoff.lead.display_name}: it is back in the queue for anyone to claim."
    ]
    assert [item.handoff.pk for item in response.context["queue"]] == [handoff.pk]
    assert Handoff.objects.get().status == HandoffStatus.QUEUED


def test_a_sales_manager_releases_a_reps_claim_from_its_page(rep, sales_manager):
    handoff = HandoffFactory.create()
    services.handoff_claim(handoff=handoff, user=rep)
    client = browser(sales_manager)
    assert "Release rep's claim" in page(client, handoff_url(handoff))
    client.post(handoff_url(handoff, "release"))
    assert Handoff.objects.get().status == HandoffStatus.QUEUED


def test_wrong_state_errors_become_messages_not_errors(rep):
    handoff = HandoffFactory.create()
    client = browser(rep)
    response = client.post(handoff_url(handoff, "accept"), follow=True)
    assert response.status_code == 200
    assert messages_of(response) == ["Cannot accept this handoff: it is queued; claim it first."]
    act(client, handoff_url(handoff, "claim"))
    act(client, handoff_url(handoff, "accept"))
    response = client.post(handoff_url(handoff, "reject"), {"reason": "no_budget"}, follow=True)
    assert response.status_code == 200
    assert messages_of(response) == ["Cannot reject this handoff: it is accepted; nothing more to do."]
    assert Handoff.objects.get().status == HandoffStatus.ACCEPTED


def test_the_claim_limit_and_an_empty_queue_are_explained(rep, settings):
    settings.HANDOFF_MAX_OPEN_CLAIMS = 1
    client = browser(rep)
    response = client.post(reverse("handoff-claim-next"), follow=True)
    assert messages_of(response) == ["The queue is empty: nothing to claim. New SQLs appear here as leads qualify."]
    first, second = HandoffFactory.create_batch(2)
    act(client, handoff_url(first, "claim"))
    response = client.post(handoff_url(second, "claim"), {"next": QUEUE}, follow=True)
    assert response.status_code == 200 and response.redirect_chain[-1][0] == QUEUE
    assert messages_of(response) == [
        "You already hold 1 open claims, the limit: accept, reject or release one before claiming more."
    ]
    assert response.context["at_claim_limit"] is True
    assert "disabled" in response.content.decode()
    response = client.post(reverse("handoff-claim-next"), follow=True)
    assert response.redirect_chain[-1][0] == QUEUE and "the limit" in messages_of(response)[0]
    assert Handoff.objects.get(pk=second.pk).status == HandoffStatus.QUEUED


# --- Notifications ----------------------------------------------------------------------------------------
def notify(user, n=1, **fields):
    return [
        Notification.objects.create(
            recipient=user,
            kind=fields.get("kind", NotificationKind.HANDOFF_NEW),
            event_key=f"{user.pk}:{Notification.objects.count()}:{i}",
            title=fields.get("title", f"New SQL {i}"),
            link=fields.get("link", ""),
        )
        for i in range(n)
    ]


def test_the_notifications_page_lists_filters_and_marks_read(rep, other_rep):
    first, second, third = notify(rep, 3)
    notify(other_rep, 2)
    client = browser(rep)
    response = client.get(reverse("notification-list"))
    assert [n.pk for n in response.context["page"].object_list] == [third.pk, second.pk, first.pk]
    assert response.context["unread"] == 3

    response = client.post(
        reverse("notification-read", args=[second.public_id]), {"next": reverse("notification-list") + "?show=unread"}
    )
    assert response["Location"] == reverse("notification-list") + "?show=unread"
    unread = client.get(response["Location"])
    assert [n.pk for n in unread.context["page"].object_list] == [third.pk, first.pk]

    response = client.post(reverse("notification-read-all"), follow=True)
    assert messages_of(response) == ["Marked 2 notifications read."]
    assert not Notification.objects.filter(recipient=rep, read_at__isnull=True).exists()
    assert Notification.objects.filter(recipient=other_rep, read_at__isnull=True).count() == 2
    assert "All caught up" in page(client, reverse("notification-list"), show="unread")


def test_someone_elses_notification_cannot_be_marked_read(rep, other_rep):
    (theirs,) = notify(other_rep)
    assert browser(rep).post(reverse("notification-read", args=[theirs.public_id])).status_code == 404
    assert Notification.objects.get(pk=theirs.pk).read_at is None


def test_the_navigation_shows_the_queue_to_sales_and_the_unread_count_to_everyone(rep, marketer, outsider):
    notify(rep, 3)
    notify(marketer, 1)
    as_rep = page(browser(rep), reverse("lead-list"))
    assert f'href="{QUEUE}">Sales queue</a>' in as_rep
    assert 'aria-label="3 unread">3</span>' in as_rep
    as_marketer = page(browser(marketer), reverse("lead-list"))
    assert "Sales queue" not in as_marketer and 'aria-label="1 unread">1</span>' in as_marketer
    forbidden = browser(outsider).get(reverse("lead-list")).content.decode()
    assert "Notifications" not in forbidden


def test_the_unread_badge_costs_one_count_query(rep):
    notify(rep, 4)
    with CaptureQueriesContext(connection) as queries:
        page(browser(rep), reverse("lead-list"))
    notification_queries = [q["sql"] for q in queries if "handoff_notification" in q["sql"]]
    assert len(notification_queries) == 1
    assert notification_queries[0].startswith("SELECT COUNT(*)")
    with CaptureQueriesContext(connection) as queries:
        browser().get(reverse("login"))
    assert not [q for q in queries if "handoff_notification" in q["sql"]]


# --- Constant query counts ---------------------------------------------------------------------------------
def test_the_queue_runs_as_many_queries_for_30_sqls_as_for_2(rep, sql_leads, django_assert_max_num_queries):
    leads = sql_leads(3)
    services.handoff_claim(handoff=Handoff.objects.get(lead=leads[0]), user=rep)
    client = browser(rep)
    few = count_queries(client, QUEUE)
    more = sql_leads(30)
    for lead in more[:4]:
        services.handoff_claim(handoff=Handoff.objects.get(lead=lead), user=rep)
    with django_assert_max_num_queries(few):
        response = client.get(QUEUE)
    assert len(response.context["queue"]) == 25 and len(response.context["claims"]) == 5
    assert all(item.why.top_rules for item in response.context["queue"])
    assert count_queries(client, QUEUE + "?page=2") <= few


def test_the_notifications_page_runs_as_many_queries_for_40_as_for_2(rep, django_assert_max_num_queries):
    notify(rep, 2)
    client = browser(rep)
    few = count_queries(client, reverse("notification-list"))
    notify(rep, 38, link="/queue/0f8fad5b-d9cb-469f-a165-70867728950e/")
    with django_assert_max_num_queries(few):
        client.get(reverse("notification-list"))


def test_a_handoffs_page_runs_a_constant_number_of_queries(rep, sql_leads, django_assert_max_num_queries):
    handoff = Handoff.objects.get(lead=sql_leads()[0])
    client = browser(rep)
    few = count_queries(client, handoff_url(handoff))
    for _ in range(3):
        services.handoff_claim(handoff=handoff, user=rep)
        services.handoff_release(handoff=handoff, user=rep)
    EventFactory.create_batch(20, lead=handoff.lead, type="page_view")
    with django_assert_max_num_queries(few):
        client.get(handoff_url(handoff))


# --- Marketing's side: the lead page and the dashboard ------------------------------------------------------
def test_the_lead_page_shows_the_handoff_its_rep_due_time_and_history(marketer, rep):
    lead = SqlLeadFactory.create(name="Ada")
    old = HandoffFactory.create(lead=lead, created_at=timezone.now() - timedelta(days=20))
    services.handoff_claim(handoff=old, user=rep)
    services.handoff_reject(handoff=old, user=rep, reason="no_budget", note="Frozen until Q3.")
    Lead.objects.filter(pk=lead.pk).update(stage=Stage.SQL)
    current = HandoffFactory.create(lead=lead)
    services.handoff_claim(handoff=current, user=rep)
    content = page(browser(marketer), reverse("lead-detail", args=[lead.public_id]))
    assert "Claimed by</dt><dd>rep</dd>" in content
    assert "due in 23 h" in content
    assert "Earlier handoffs" in content and "No budget" in content and "Frozen until Q3." in content
    assert handoff_url(current) in content and handoff_url(old) in content


def test_the_dashboard_reports_sales_outcomes_from_the_handoff_statistics(marketer, rep):
    now = timezone.now()
    LeadFactory.create()
    for reason in ("bad_timing", "bad_timing", "no_budget", None):
        handoff = HandoffFactory.create(created_at=now - timedelta(hours=30), due_at=now - timedelta(hours=6))
        services.handoff_claim(handoff=handoff, user=rep)
        if reason:
            services.handoff_reject(handoff=handoff, user=rep, reason=reason)
        else:
            services.handoff_accept(handoff=handoff, user=rep)
    overdue = HandoffFactory.create(lead=SqlLeadFactory.create(name="Forgotten"), due_at=now - timedelta(hours=2))
    response = browser(marketer).get(reverse("dashboard"))
    outcomes = response.context["outcomes"]
    assert (outcomes.stats.accepted, outcomes.stats.rejected, outcomes.accepted_rate) == (1, 3, 25)
    assert [(reason, n) for reason, _label, n in outcomes.rejected_by_reason] == [("bad_timing", 2), ("no_budget", 1)]
    assert outcomes.stats.sla_breaches == 5  # four decided after their due time, one open past it
    # From the rollups' duration buckets: within their precision of the exact 30 hours.
    assert outcomes.median_to_claim is not None
    assert outcomes.median_to_claim >= timedelta(hours=30) * (1 - rollups.DURATION_PRECISION)
    assert response.context["overdue"].count == 1
    assert response.context["overdue"].oldest == [overdue]
    content = response.content.decode()
    assert "Bad timing" in content and "Forgotten" in content and "Median time to decision" in content
