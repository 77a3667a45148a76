"""A manager's view of all handoffs (issue 17, item 7): every open handoff, who holds it and
for how long, the overdue ones first, with reassign and release in the page for sales
managers (staff users); marketing and scoring admins read it; reps are refused."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from handoff import services
from handoff.models import Handoff, HandoffAction, HandoffEvent, HandoffStatus, NotificationKind
from leadflow.leads.roles import MARKETING, SALES
from tests.factories import HandoffFactory, SqlLeadFactory, UserFactory

OVERVIEW = "/handoffs/"


def reassign_url(handoff):
    return reverse("handoff-overview-reassign", args=[handoff.public_id])


def release_url(handoff):
    return reverse("handoff-overview-release", args=[handoff.public_id])


def queued(name, *, due_in=timedelta(hours=20), priority="70"):
    """A queued handoff of a lead called ``name``, due ``due_in`` from now (negative: overdue)."""
    now = timezone.now()
    lead = SqlLeadFactory.create(name=name, company=f"{name} Inc")
    return HandoffFactory.create(
        lead=lead, priority=Decimal(priority), created_at=now - timedelta(hours=30), due_at=now + due_in
    )


def claimed(name, rep, *, held_for=timedelta(hours=2), due_in=timedelta(hours=20), priority="70"):
    """A handoff ``rep`` has held for ``held_for``."""
    now = timezone.now()
    lead = SqlLeadFactory.create(name=name, company=f"{name} Inc")
    return HandoffFactory.create(
        lead=lead,
        priority=Decimal(priority),
        created_at=now - timedelta(hours=30),
        due_at=now + due_in,
        status=HandoffStatus.CLAIMED,
        claimed_by=rep,
        claimed_at=now - held_for,
        first_claimed_at=now - held_for,
        claim_expires_at=now + timedelta(hours=4),
    )


def page_as(client, user, **params):
    client.force_login(user)
    return client.get(OVERVIEW, params)


def listed(response):
    return [handoff.lead.name for handoff in response.context["handoffs"]]


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def ada(db):
    return UserFactory.create(username="ada", first_name="Ada", last_name="Lovelace", roles=[SALES])


# --- Who may see and act ------------------------------------------------------------------------------
def test_a_sales_manager_sees_every_open_handoff_with_its_holder_and_the_actions(client, sales_manager, rep, ada):
    claimed("Held Lead", ada, held_for=timedelta(hours=3))
    queued("Waiting Lead")
    decided = queued("Decided Lead")
    Handoff.objects.filter(pk=decided.pk).update(status=HandoffStatus.CLOSED, decided_at=timezone.now())

    response = page_as(client, sales_manager)

    assert response.status_code == 200
    assert sorted(listed(response)) == ["Held Lead", "Waiting Lead"]
    html = response.content.decode()
    assert "Ada Lovelace" in html and "3 h" in html  # who holds it, and for how long
    assert html.count(">Reassign</button>") == 2
    assert html.count(">Release</button>") == 1  # only a claim can be released
    assert f'href="{OVERVIEW}"' in html  # the navigation links the page for staff


@pytest.mark.parametrize("reader", ["marketer", "admin"])
def test_marketing_and_scoring_admins_read_the_overview_without_buttons_and_may_not_act(request, client, reader, rep):
    user = request.getfixturevalue(reader)
    handoff = claimed("Held Lead", rep)

    response = page_as(client, user)

    assert response.status_code == 200
    assert listed(response) == ["Held Lead"]
    html = response.content.decode()
    assert "Reassign</button>" not in html and "Release</button>" not in html
    assert "read only" in html
    assert f'href="{OVERVIEW}" aria-current="page">Handoffs</a>' in html  # in their navigation, to find it
    assert client.post(reassign_url(handoff), {"username": "rep"}).status_code == 403
    assert client.post(release_url(handoff)).status_code == 403
    handoff.refresh_from_db()
    assert (handoff.status, handoff.claimed_by) == (HandoffStatus.CLAIMED, rep)
    assert not HandoffEvent.objects.filter(handoff=handoff).exclude(action=HandoffAction.OPENED).exists()


def test_a_rep_is_refused_the_overview_and_its_actions(client, rep, other_rep):
    handoff = claimed("Held Lead", other_rep)
    client.force_login(rep)

    assert client.get(OVERVIEW).status_code == 403
    assert client.post(reassign_url(handoff), {"username": "rep"}).status_code == 403
    assert client.post(release_url(handoff)).status_code == 403
    assert f'href="{OVERVIEW}"' not in client.get("/queue/").content.decode()
    handoff.refresh_from_db()
    assert handoff.claimed_by == other_rep


def test_an_anonymous_visitor_is_sent_to_log_in(client):
    response = client.get(OVERVIEW)
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- Order, summary and filters -----------------------------------------------------------------------
def test_overdue_handoffs_come_first_the_longest_overdue_on_top(client, sales_manager, rep):
    queued("On time, high score", priority="95")
    queued("Overdue by an hour", due_in=timedelta(hours=-1), priority="60")
    claimed("Overdue by a day", rep, due_in=timedelta(days=-1), priority="50")
    queued("On time, low score", priority="40")

    response = page_as(client, sales_manager)

    assert listed(response) == ["Overdue by a day", "Overdue by an hour", "On time, high score", "On time, low score"]
    assert response.content.decode().count('class="is-overdue"') >= 2


def test_the_summary_says_per_rep_how_many_claims_how_many_overdue_and_the_oldest(client, sales_manager, rep, ada):
    claimed("First", ada, held_for=timedelta(hours=5), due_in=timedelta(hours=-2))
    claimed("Second", ada, held_for=timedelta(minutes=30))
    claimed("Third", rep, held_for=timedelta(hours=1))

    response = page_as(client, sales_manager)

    loads = {load.rep.username: load for load in response.context["loads"]}
    assert (loads["ada"].held, loads["ada"].overdue) == (2, 1)
    assert (loads["rep"].held, loads["rep"].overdue) == (1, 0)
    assert [load.rep.username for load in response.context["loads"]][0] == "ada"  # the most overdue first
    html = response.content.decode()
    assert "held for 5 h" in html


def test_the_summary_lists_reps_who_hold_nothing(client, sales_manager, rep, other_rep):
    claimed("Held", rep)

    response = page_as(client, sales_manager)

    loads = {load.rep.username: (load.held, load.oldest_claimed_at) for load in response.context["loads"]}
    assert loads["other_rep"] == (0, None)


def test_the_overview_filters_by_rep_status_and_overdue(client, sales_manager, rep, ada):
    claimed("Ada's late claim", ada, due_in=timedelta(hours=-3))
    claimed("Ada's claim", ada)
    claimed("Rep's claim", rep)
    queued("Late in the queue", due_in=timedelta(hours=-1))
    queued("In the queue")

    assert sorted(listed(page_as(client, sales_manager, rep="ada"))) == ["Ada's claim", "Ada's late claim"]
    assert listed(page_as(client, sales_manager, rep="ada", overdue="1")) == ["Ada's late claim"]
    assert listed(page_as(client, sales_manager, status="queued")) == ["Late in the queue", "In the queue"]
    assert sorted(listed(page_as(client, sales_manager, status="claimed"))) == [
        "Ada's claim",
        "Ada's late claim",
        "Rep's claim",
    ]
    assert listed(page_as(client, sales_manager, overdue="1")) == ["Ada's late claim", "Late in the queue"]
    unknown = page_as(client, sales_manager, rep="nobody")
    assert len(listed(unknown)) == 5
    assert any("nobody" in message for message in messages_of(unknown))


def test_the_overview_says_when_no_handoff_is_open(client, sales_manager, rep):
    response = page_as(client, sales_manager)
    assert response.status_code == 200
    assert "No open handoff" in response.content.decode()

    queued("In the queue")
    filtered = page_as(client, sales_manager, overdue="1").content.decode()
    assert "No open handoff matches" in filtered and "Show every open handoff" in filtered


# --- Reassign and release -----------------------------------------------------------------------------
def test_a_manager_reassigns_a_handoff_through_the_page_and_the_service_records_it(client, sales_manager, rep, ada):
    handoff = claimed("Held Lead", rep)
    client.force_login(sales_manager)
    back = f"{OVERVIEW}?status=claimed"

    response = client.post(reassign_url(handoff), {"username": "ada", "next": back}, follow=True)

    assert response.redirect_chain == [(back, 302)]
    handoff.refresh_from_db()
    assert (handoff.status, handoff.claimed_by) == (HandoffStatus.CLAIMED, ada)
    event = HandoffEvent.objects.get(handoff=handoff, action=HandoffAction.REASSIGNED)
    assert (event.actor, event.details) == (sales_manager, {"claimed_by": "rep", "to": "ada"})
    assert ada.notifications.get().kind == NotificationKind.HANDOFF_ASSIGNED
    assert any("Gave Held Lead to Ada Lovelace" in message for message in messages_of(response))


def test_a_manager_gives_a_queued_handoff_to_a_rep(client, sales_manager, ada):
    handoff = queued("Waiting Lead")
    client.force_login(sales_manager)

    response = client.post(reassign_url(handoff), {"username": "ada"})

    assert (response.status_code, response["Location"]) == (302, OVERVIEW)
    handoff.refresh_from_db()
    assert (handoff.status, handoff.claimed_by) == (HandoffStatus.CLAIMED, ada)


def test_a_manager_releases_a_claim_through_the_page(client, sales_manager, rep):
    handoff = claimed("Held Lead", rep)
    client.force_login(sales_manager)

    response = client.post(release_url(handoff), {"next": OVERVIEW}, follow=True)

    assert response.redirect_chain == [(OVERVIEW, 302)]
    handoff.refresh_from_db()
    assert (handoff.status, handoff.claimed_by) == (HandoffStatus.QUEUED, None)
    event = HandoffEvent.objects.get(handoff=handoff, action=HandoffAction.RELEASED)
    assert (event.actor, event.details) == (sales_manager, {"claimed_by": "rep"})
    assert any("Released Held Lead" in message for message in messages_of(response))


def test_a_reassign_to_someone_who_is_not_a_rep_shows_the_field_error(client, sales_manager, rep):
    UserFactory.create(username="mara", roles=[MARKETING])
    handoff = claimed("Held Lead", rep)
    client.force_login(sales_manager)

    back = f"{OVERVIEW}?status=claimed"

    response = client.post(reassign_url(handoff), {"username": "mara", "next": back})

    assert response.status_code == 400
    assert response.context["status"] == "claimed"  # the page as the manager left it
    assert f'name="next" value="{back}"' in response.content.decode()  # and its forms return there
    assert response.context["failed_form"].errors == {
        "username": ["No active sales rep is called 'mara': choose someone in the sales group."]
    }
    html = response.content.decode()
    assert "Held Lead was not reassigned." in html
    assert 'aria-invalid="true"' in html
    handoff.refresh_from_db()
    assert handoff.claimed_by == rep
    assert not HandoffEvent.objects.filter(handoff=handoff, action=HandoffAction.REASSIGNED).exists()


def test_a_refused_action_becomes_a_message(client, sales_manager, rep):
    handoff = queued("Waiting Lead")
    services.handoff_reassign(handoff=handoff, actor=sales_manager, to_user=rep)
    client.force_login(sales_manager)

    again = client.post(reassign_url(handoff), {"username": "rep"}, follow=True)
    assert any("already holds" in message for message in messages_of(again))

    services.handoff_release(handoff=handoff, user=sales_manager)
    release = client.post(release_url(handoff), follow=True)
    assert release.status_code == 200
    assert messages_of(release)  # nothing to release: said, not an error page


# --- Cost ---------------------------------------------------------------------------------------------
def _handoffs(count, reps):
    for index in range(count):
        if index % 3 == 0:
            claimed(f"Lead {index}", reps[index % len(reps)], due_in=timedelta(hours=index - 10))
        else:
            queued(f"Lead {index}", due_in=timedelta(hours=index - 10))


def test_the_overview_costs_the_same_queries_for_5_and_30_handoffs(
    client, sales_manager, django_assert_max_num_queries
):
    reps = [UserFactory.create(username=f"rep{n}", roles=[SALES]) for n in range(6)]
    _handoffs(5, reps)
    client.force_login(sales_manager)
    with CaptureQueriesContext(connection) as few:
        assert client.get(OVERVIEW).status_code == 200

    _handoffs(30, reps)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(OVERVIEW)
    assert len(response.context["handoffs"]) == 25
    assert len(few.captured_queries) <= 12, [query["sql"][:80] for query in few.captured_queries]
