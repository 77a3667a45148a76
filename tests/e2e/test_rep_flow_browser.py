"""End to end, in a real browser: a rep's flow (issue 17, item 6). The login lands a rep on
the queue; the SLA countdown ticks there without a reload (Playwright drives the browser's
clock; the server's text is where it starts, and what the page says without the script);
"Accept & next" goes on to the next queued handoff, which the rep claims from its page; the
reject form, opened on one claim, leaves the next claim's buttons where a click reaches them;
notification dates read in the viewer's time zone."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from handoff import services
from handoff.models import Handoff, HandoffStatus, Notification, NotificationKind
from tests.e2e.conftest import assert_no_console_errors, browser_tab, log_in, shoot
from tests.factories import HandoffFactory, SqlLeadFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def queued(name: str, *, priority: int, due_in: timedelta) -> Handoff:
    now = timezone.now()
    return HandoffFactory.create(
        lead=SqlLeadFactory.create(name=name),
        priority=Decimal(priority),
        created_at=now - timedelta(hours=20),
        due_at=now + due_in,
    )


def test_a_rep_lands_on_the_queue_watches_the_sla_tick_and_accepts_and_goes_on_to_the_next(screen: Page, rep):
    mine = services.handoff_claim(handoff=queued("Ada Lovelace", priority=95, due_in=timedelta(hours=6)), user=rep)
    queued("Grace Hopper", priority=90, due_in=timedelta(hours=1, seconds=40))
    queued("Alan Turing", priority=80, due_in=timedelta(seconds=40))

    screen.clock.install()  # before the first page: the browser's timers and Date are Playwright's
    log_in(screen, "rep")
    expect(screen).to_have_url(re.compile(r"/queue/$"))  # a rep's day starts on the queue

    # The countdown ticks: a minute later the page says so, without a reload.
    grace = screen.locator("table.queue tbody tr", has_text="Grace Hopper")
    alan = screen.locator("table.queue tbody tr", has_text="Alan Turing")
    expect(grace.locator(".sla")).to_have_text("due in 1 h")
    expect(alan.locator(".sla")).to_have_text("due in under a minute")
    expect(alan).not_to_have_class(re.compile(r"\bis-overdue\b"))
    screen.clock.fast_forward("01:00")
    expect(grace.locator(".sla")).to_have_text("due in 59 min")
    expect(alan.locator(".sla")).to_have_text("Overdue by under a minute")
    expect(alan).to_have_class(re.compile(r"\bis-overdue\b"))

    # Accept & next: Ada is accepted and the rep is on Grace's page, the next in the queue.
    screen.locator(".claim", has_text="Ada Lovelace").get_by_role("link", name="Ada Lovelace").click()
    shoot(screen, "handoff-accept-next")
    screen.get_by_role("button", name="Accept & next").click()
    expect(screen.get_by_text("Accepted Ada Lovelace: the lead is yours now.")).to_be_visible()
    expect(screen.get_by_text("Next in the queue: Grace Hopper. Claim it to work on it.")).to_be_visible()
    expect(screen.get_by_role("heading", name="Grace Hopper")).to_be_visible()
    mine.refresh_from_db()
    assert mine.status == HandoffStatus.ACCEPTED
    assert Handoff.objects.get(lead__name="Grace Hopper").status == HandoffStatus.QUEUED  # opened, not claimed

    # One click claims it; Reject & next then goes on to Alan.
    screen.get_by_role("button", name="Claim", exact=True).click()
    screen.get_by_label("Reason").select_option("no_budget")
    screen.get_by_role("button", name="Reject & next").click()
    expect(screen.get_by_text("Next in the queue: Alan Turing. Claim it to work on it.")).to_be_visible()
    expect(screen.get_by_role("heading", name="Alan Turing")).to_be_visible()
    assert Handoff.objects.get(lead__name="Grace Hopper").status == HandoffStatus.REJECTED
    assert_no_console_errors(screen)


# Whether the element at the centre of this one (in the viewport) is it or inside it: what a
# click there would reach.
HIT_AT_CENTRE = """element => {
    const box = element.getBoundingClientRect();
    const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
    return hit !== null && (hit === element || element.contains(hit));
}"""


def test_opening_reject_on_a_claim_leaves_the_next_claims_accept_button_uncovered(screen: Page, rep):
    for name, priority in (("Ada Lovelace", 95), ("Grace Hopper", 90)):
        services.handoff_claim(handoff=queued(name, priority=priority, due_in=timedelta(hours=6)), user=rep)

    log_in(screen, "rep")
    expect(screen).to_have_url(re.compile(r"/queue/$"))
    first, second = screen.locator(".claim", has_text="Ada Lovelace"), screen.locator(".claim", has_text="Grace Hopper")
    # Accept: a button, or "Accept…" leading to the accept checklist when there is one.
    accept = second.locator(".claim-actions .primary")
    expect(accept).to_have_text(re.compile(r"^Accept"))

    first.get_by_text("Reject…").click()
    expect(first.get_by_label("Reason")).to_be_visible()
    shoot(screen, "queue-reject-open")
    accept.scroll_into_view_if_needed()

    assert accept.evaluate(HIT_AT_CENTRE), "the open reject form covers the next claim's Accept"
    assert_no_console_errors(screen)


def test_notification_dates_read_in_the_viewers_time_zone(chromium: Browser, live_server, rep):
    """The server writes UTC (and says so); app.js rewrites each date in the browser's zone,
    daylight saving time included, the day too when the zone's is another."""
    for key, moment in (
        ("summer", datetime(2026, 7, 4, 15, 30, tzinfo=UTC)),
        ("winter", datetime(2026, 1, 15, 3, 5, tzinfo=UTC)),
    ):
        Notification.objects.create(
            recipient=rep, kind=NotificationKind.SLA_BREACH, event_key=key, title=f"Late ({key})", created_at=moment
        )

    with browser_tab(chromium, live_server, width=1366, height=900, timezone_id="America/New_York") as tab:
        log_in(tab, "rep")
        tab.goto("/notifications/")
        dates = tab.locator(".notification time[data-local-time]")
        expect(dates).to_have_text(["Jul 4, 2026, 11:30 EDT", "Jan 14, 2026, 22:05 EST"])
        # What the server said stays at hand, in the tooltip.
        expect(dates.first).to_have_attribute("title", "Jul 4, 2026 15:30 UTC")
        assert_no_console_errors(tab)
