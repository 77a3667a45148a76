"""A rep never sees another rep's claim: not in a lead's handoff history (API and lead
page), not on the dashboard, not by id. One rule, ``handoff.selectors.handoffs_visible``;
the access matrix (tests/test_access_matrix.py) checks every route, these tests check
what the pages and answers contain."""

from datetime import timedelta

from django.utils import timezone

from handoff import services
from handoff.models import Handoff
from tests.factories import HandoffFactory
from tests.helpers import browser, client_for


def overdue_claim(rep):
    handoff = HandoffFactory.create(
        created_at=timezone.now() - timedelta(days=3), due_at=timezone.now() - timedelta(days=2)
    )
    services.handoff_claim(handoff=handoff, user=rep)
    return Handoff.objects.select_related("lead").get(pk=handoff.pk)


def test_lead_handoff_history_hides_another_reps_claim(rep, other_rep, marketer):
    handoff = overdue_claim(other_rep)
    url = f"/api/v1/leads/{handoff.lead.public_id}/handoffs"

    assert client_for(rep).get(url).json() == []
    [seen] = client_for(other_rep).get(url).json()
    assert seen["claimed_by"] == "other_rep"
    [seen] = client_for(marketer).get(url).json()
    assert seen["claimed_by"] == "other_rep"


def test_lead_page_hides_another_reps_claim(rep, other_rep, marketer):
    handoff = overdue_claim(other_rep)
    url = f"/leads/{handoff.lead.public_id}/"

    page = browser(rep).get(url).content.decode()
    assert "other_rep" not in page
    assert "Claimed by" not in page
    assert "Claimed by" in browser(other_rep).get(url).content.decode()
    assert "other_rep" in browser(marketer).get(url).content.decode()


def overdue_list(page):
    """The dashboard's list of the oldest overdue handoffs (its "recent SQLs" list names
    leads too, which every role may see)."""
    start = page.index("Oldest overdue")
    return page[start : page.index("</ul>", start)]


def test_dashboard_overdue_list_hides_another_reps_claim(rep, other_rep, marketer):
    theirs = overdue_claim(other_rep)
    mine = overdue_claim(rep)

    page = browser(rep).get("/").content.decode()
    assert mine.lead.display_name in overdue_list(page)
    assert theirs.lead.display_name not in overdue_list(page)
    assert "other_rep" not in page
    page = browser(marketer).get("/").content.decode()
    assert theirs.lead.display_name in overdue_list(page)
    assert mine.lead.display_name in overdue_list(page)


def test_a_reps_queued_handoffs_stay_visible_to_every_rep(rep, other_rep):
    handoff = HandoffFactory.create()
    url = f"/api/v1/leads/{handoff.lead.public_id}/handoffs"
    assert [h["status"] for h in client_for(rep).get(url).json()] == ["queued"]
    services.handoff_claim(handoff=handoff, user=other_rep)
    services.handoff_release(handoff=handoff, user=other_rep)
    # Released: queued again, claimable by anyone, so visible to anyone.
    assert [h["status"] for h in client_for(rep).get(url).json()] == ["queued"]
