"""End to end, in a real browser: the sales side. Events reach the API, a lead becomes an
SQL, a rep works it from the queue, and marketing reads the rep's feedback. Each page
visited is saved to docs/screenshots/<name>.png (1280 pixels wide)."""

import re
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from playwright.sync_api import Page, expect

from handoff.models import Handoff, HandoffStatus
from leadflow.leads.models import Lead, Stage
from leadflow.leads.services import ingest_key_create, source_get_or_create
from tests.e2e.conftest import assert_no_console_errors, log_in, shoot
from tests.helpers import behaviour, fit

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DEMO_REP_PASSWORD = "leadflow-rep"  # seed_demo's documented demo password


def post_journey(live_server) -> Lead:
    """Ada's visits, pricing view and demo request, posted with an ingest key as a website would."""
    source, _ = source_get_or_create(name="Website")
    _key, secret = ingest_key_create(source=source)
    now = timezone.now()
    lead = {
        "email": "ada@analytical.example",
        "name": "Ada Lovelace",
        "company": "Analytical Engines",
        "job_title": "Director of Engineering",
        "utm_campaign": "spring-launch",
    }
    steps = [
        ("page_view", {"url": "/blog/scoring", "topic": "lead scoring"}),
        ("page_view", {"url": "/product", "topic": "lead scoring"}),
        ("pricing_view", {"url": "/pricing"}),
        ("page_view", {"url": "/customers", "topic": "sales handoff"}),
        ("demo_request", {"form": "demo", "intent": "book a demo"}),
    ]
    events = [
        {
            "event_id": f"ada-{n}",
            "type": kind,
            "occurred_at": (now - timedelta(hours=10 - n)).isoformat(),
            "lead": lead,
            "properties": properties,
        }
        for n, (kind, properties) in enumerate(steps)
    ]
    response = requests.post(
        f"{live_server.url}/api/v1/events",
        json={"events": events},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return Lead.objects.get(email="ada@analytical.example")


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login/"))


def test_a_rep_rejects_a_new_sql_with_a_reason_and_marketing_reads_the_feedback(
    page: Page, live_server, rep, marketer, publish_ruleset
):
    publish_ruleset(
        [
            fit("job_title", "contains", "director", 10),
            behaviour("page_view", 2, max_points=10),
            behaviour("pricing_view", 10),
            behaviour("demo_request", 30),
        ],
        mql=20,
        sql=50,
    )
    ada = post_journey(live_server)
    assert ada.stage == Stage.SQL  # scored after commit (tasks run in-process in tests)
    handoff = Handoff.objects.get(lead=ada)

    # A rep finds Ada in the queue, with why she qualified, and claims her.
    log_in(page, "rep")
    page.get_by_role("link", name="Sales queue").click()
    expect(page.get_by_role("heading", name="Sales queue")).to_be_visible()
    row = page.locator("table.queue tbody tr", has_text="Ada Lovelace")
    expect(row.locator(".chip").first).to_contain_text("+30.00 demo_request rule")
    expect(row.locator(".chip")).to_have_count(3)
    expect(row).to_contain_text("Hand raised")
    expect(row).to_contain_text("book a demo")
    expect(row).to_contain_text(re.compile(r"due in 2\d h"))
    row.get_by_role("button", name="Claim Ada Lovelace").click()
    expect(page.get_by_text("You claimed Ada Lovelace.")).to_be_visible()
    claim = page.locator(".claim", has_text="Ada Lovelace")
    expect(claim).to_contain_text("Claim expires")
    expect(page.locator("table.queue")).to_have_count(0)  # nothing else is queued

    # On the handoff's page: the explanation, the audit trail, and the reject form.
    claim.get_by_role("link", name="Ada Lovelace").click()
    expect(page.get_by_role("heading", name="Ada Lovelace")).to_be_visible()
    expect(page.locator(".qualified")).to_contain_text("Intent shown and score 56.00 reached the SQL threshold")
    trail = page.locator("section", has=page.get_by_role("heading", name="Audit trail"))
    expect(trail.locator("li")).to_have_count(2)
    expect(trail).to_contain_text("Claimed")
    page.get_by_label("Reason").select_option("bad_timing")
    page.get_by_label("Note for marketing").fill("Budget opens in Q3: call back in June, she wants the ABM module.")
    shoot(page, "handoff-detail")
    page.get_by_role("button", name="Reject the lead").click()
    expect(page.get_by_text("Rejected Ada Lovelace (Bad timing)")).to_be_visible()
    expect(trail.locator("li")).to_have_count(3)
    expect(page.locator(".badge.status-rejected").first).to_be_visible()
    assert_no_console_errors(page)
    handoff.refresh_from_db()
    assert (handoff.status, handoff.reject_reason, handoff.claimed_by) == (HandoffStatus.REJECTED, "bad_timing", rep)
    assert Lead.objects.get(pk=ada.pk).stage == Stage.RECYCLED

    # The marketer is told, and reads the reason and the note on the lead page.
    log_out(page)
    log_in(page, "marketer")
    bell = page.get_by_role("link", name=re.compile("Notifications"))
    expect(bell.locator(".count")).to_have_text("1")
    bell.click()
    item = page.locator(".notification", has_text="Sales rejected Ada Lovelace: Bad timing")
    expect(item).to_contain_text("rep wrote: Budget opens in Q3")
    item.get_by_role("link", name="Open").click()
    expect(page).to_have_url(re.compile(rf"/queue/{handoff.public_id}/$"))
    expect(page.get_by_text("Sales reps claim, accept and reject handoffs")).to_be_visible()
    page.get_by_role("link", name="Lead page →").click()
    feedback = page.locator(".feedback")
    expect(feedback).to_contain_text("Bad timing")
    expect(feedback).to_contain_text("Budget opens in Q3: call back in June")
    expect(feedback).to_contain_text("recycled to nurturing")
    expect(page.locator(".lead-header .badge")).to_have_text("Recycled")
    shoot(page, "lead-feedback")

    page.get_by_role("link", name="Dashboard").click()
    outcomes = page.locator("section", has=page.get_by_role("heading", name="Sales outcomes"))
    expect(outcomes.locator(".mini-kpis > div", has_text="Handoffs rejected").locator(".value")).to_have_text("1")
    expect(outcomes.locator(".reasons")).to_contain_text("Bad timing")
    page.goto("/notifications/")
    page.get_by_role("button", name="Mark all read").click()
    expect(page.get_by_text("Marked 1 notification read.")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Notifications")).locator(".count")).to_have_count(0)
    assert_no_console_errors(page)


def test_a_rep_works_the_demo_queue(page: Page, demo_data):
    log_in(page, "rep", DEMO_REP_PASSWORD)
    page.get_by_role("link", name="Sales queue").click()
    queued = Handoff.objects.filter(status=HandoffStatus.QUEUED).count()
    expect(page.get_by_text(f"{queued} SQLs waiting")).to_be_visible()
    top = Handoff.objects.filter(status=HandoffStatus.QUEUED).order_by("-priority", "created_at", "id").first()
    first_row = page.locator("table.queue tbody tr").first
    expect(first_row).to_contain_text(top.lead.display_name)
    expect(first_row.locator(".chip")).to_have_count(3)

    page.get_by_role("button", name="Claim next").click()
    expect(page.get_by_text(f"You claimed {top.lead.display_name}, the top of the queue.")).to_be_visible()
    expect(page.get_by_role("button", name="Accept the lead")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sales queue").click()
    claim = page.locator(".claim", has_text=top.lead.display_name)
    expect(claim).to_be_visible()
    claim.locator("summary", has_text="Reject…").click()
    expect(claim.get_by_label("Reason")).to_be_visible()
    shoot(page, "queue")
    claim.locator("summary", has_text="Reject…").click()  # closed again
    # The demo asks the accept checklist (budget, authority, need, timeline): Accept… opens it.
    claim.get_by_role("link", name="Accept…").click()
    page.get_by_label("Budget", exact=True).check()
    page.get_by_role("button", name="Accept the lead").click()
    expect(page.get_by_text(f"Accepted {top.lead.display_name}: the lead is yours now.")).to_be_visible()
    assert Lead.objects.get(pk=top.lead_id).owner.username == "rep"
    assert Handoff.objects.get(pk=top.pk).confirmed == ["budget"]

    page.get_by_role("link", name=re.compile("Notifications")).click()
    expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
    expect(page.locator(".notification.unread").first).to_be_visible()
    shoot(page, "notifications")
    assert_no_console_errors(page)
