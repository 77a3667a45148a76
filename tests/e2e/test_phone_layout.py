"""End to end, in a real browser held like a phone (390 × 844): the pages fit the screen.
Nothing scrolls sideways, neither the page nor the navigation nor a list (lists are cards
on phones), and the notifications bell is always on screen. What a role comes for is in
view: the leads' scores and next-stage criteria, the queue's SLA and Claim, the handoff's
decision; chart text stays readable. The dashboard is saved as phone-<role>.png."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Page, expect

from handoff.models import Handoff, HandoffStatus
from leadflow.leads.models import Lead, Stage
from leadflow.leads.scores import leads_annotate_scores
from scoring.models import RuleSet, RuleSetStatus
from tests.e2e.conftest import assert_no_console_errors, log_in, shoot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DEMO_PASSWORDS = {"marketer": "leadflow-marketer", "rep": "leadflow-rep"}  # seed_demo's documented ones


def main_pages(role: str) -> dict[str, str]:
    # ``score`` is the annotation of ``leads_annotate_scores`` (the default model).
    lead = leads_annotate_scores(Lead.objects.filter(stage=Stage.SQL)).order_by("-score").first()  # type: ignore[misc]
    handoff = Handoff.objects.filter(status=HandoffStatus.QUEUED).order_by("-priority").first()
    ruleset = RuleSet.objects.get(status=RuleSetStatus.PUBLISHED, model__slug="default")
    assert lead and handoff, "the demo has SQLs and queued handoffs"
    pages = {
        "dashboard": "/",
        "leads": "/leads/",
        "lead": f"/leads/{lead.public_id}/",
        "rules": "/rules/",
        "ruleset": f"/rules/{ruleset.version}/",
        "notifications": "/notifications/",
        "accounts": "/accounts/",
    }
    if role == "marketer":
        pages |= {"handoffs": "/handoffs/"}
    if role == "rep":
        pages |= {"queue": "/queue/", "handoff": f"/queue/{handoff.public_id}/"}
    return pages


def assert_fits_the_screen(phone: Page, url: str) -> None:
    width = phone.evaluate("window.innerWidth")
    assert width == 390, f"{url}: the layout viewport grew to {width}px to fit the page"
    scroll_width = phone.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{url}: the page is {scroll_width}px wide on a {width}px screen"
    nav = phone.get_by_role("navigation", name="Main")
    hidden = nav.evaluate("nav => nav.scrollWidth - nav.clientWidth")
    assert hidden <= 0, f"{url}: {hidden}px of the navigation are scrolled out of sight"
    for link in nav.get_by_role("link").all():
        box = link.bounding_box()
        assert box, f"{url}: {link.inner_text()!r} is not displayed"
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, f"{url}: {link.inner_text()!r} is off screen: {box}"
    # A list is a column of cards: its table does not scroll sideways inside the page either.
    for wrap in phone.locator(".table-wrap:has(table.cards)").all():
        hidden = wrap.evaluate("wrap => wrap.scrollWidth - wrap.clientWidth")
        assert hidden <= 0, f"{url}: {hidden}px of a list are scrolled out of sight"


@pytest.mark.parametrize("role", ["marketer", "rep"])
def test_the_main_pages_fit_a_phone_screen_with_the_notifications_bell_in_view(phone: Page, demo_data, role):
    log_in(phone, role, DEMO_PASSWORDS[role])
    for name, url in main_pages(role).items():
        phone.goto(url)
        bell = phone.get_by_role("navigation", name="Main").get_by_role("link", name="Notifications")
        expect(bell).to_be_in_viewport(ratio=1)
        assert_fits_the_screen(phone, url)
        if name == "dashboard":
            shoot(phone, f"phone-{role}")
    assert_no_console_errors(phone)


def rendered_chart_font_sizes(phone: Page) -> list[tuple[str, float]]:
    """The size at which each chart text of the page is drawn on screen: its font size in the
    SVG's units times the SVG's scale (a 640-unit drawing on a 320 px card halves it)."""
    return phone.evaluate(
        """() => [...document.querySelectorAll("svg text")]
            .filter(text => text.getBoundingClientRect().width > 0)
            .map(text => [text.textContent, parseFloat(getComputedStyle(text).fontSize) * text.getScreenCTM().a])"""
    )


def test_a_marketers_lists_are_cards_with_the_score_and_readable_charts(phone: Page, demo_data):
    log_in(phone, "marketer", DEMO_PASSWORDS["marketer"])
    sizes = rendered_chart_font_sizes(phone)
    assert len(sizes) > 20, "the dashboard draws its funnel, its per-day chart and its histogram"
    small = [(text, round(size, 1)) for text, size in sizes if size < 11]
    assert not small, f"chart text under 11 px on a phone: {small[:10]}"

    phone.goto("/leads/")
    card = phone.locator("table.cards tbody tr").first
    card.scroll_into_view_if_needed()
    score = card.locator("td[data-label='Score']")
    expect(score).to_be_in_viewport(ratio=1)
    assert score.evaluate("cell => getComputedStyle(cell, '::before').content") == '"Score"'
    assert score.inner_text().strip().endswith(tuple("0123456789")), score.inner_text()
    expect(card.locator(".badge")).to_be_in_viewport(ratio=1)  # the stage, not clipped
    row, title = card.bounding_box(), card.locator("td.card-title").bounding_box()
    assert row and title and row["x"] >= 0 and row["x"] + row["width"] <= 390, row
    assert title["width"] > 0.8 * row["width"], "the lead's name runs across its card"
    shoot(phone, "phone-leads")

    # Why an MQL is not yet an SQL, as the desktop's criteria column says it: a compact line
    # of its card (score ✓, fit ✓, intent ✗).
    phone.goto("/leads/?stage=mql")
    card = phone.locator("table.cards tbody tr").first
    card.scroll_into_view_if_needed()
    criteria = card.locator("td[data-label='SQL criteria']")
    expect(criteria).to_be_in_viewport(ratio=1)
    pills = criteria.locator(".criterion")
    states = [re.sub(r"\s+", " ", text).strip() for text in pills.all_inner_texts()]
    said = [re.fullmatch(r"([a-z ]+) [✓✗] (?:met|not met)", state) for state in states]
    assert all(said), states
    assert {"score", "fit", "intent"} <= {match.group(1) for match in said if match}, states
    for pill in pills.all():
        expect(pill).to_be_in_viewport(ratio=1)
    line, first = criteria.bounding_box(), pills.first.bounding_box()
    assert line and first and line["height"] < 2.5 * first["height"], f"the criteria take {line}: not one compact line"
    shoot(phone, "phone-leads-criteria")

    lead = Lead.objects.filter(stage=Stage.SQL).order_by("created_at").first()
    assert lead
    phone.goto(f"/leads/{lead.public_id}/")
    history = phone.locator("table.stage-history tbody tr").first
    history.scroll_into_view_if_needed()
    change = history.locator("td[data-label='Change']")
    expect(change.locator(".badge").last).to_be_in_viewport(ratio=1)
    box, reason = history.bounding_box(), history.locator("td[data-label='Reason']").bounding_box()
    assert box and reason and reason["width"] > 0.8 * box["width"], "the reason runs across the row, not in a sliver"
    assert box["height"] < 260, f"a stage change takes {box['height']}px: mostly blank"
    assert_no_console_errors(phone)


def test_a_rep_sees_the_queues_sla_and_claim_and_the_handoffs_decision_first(phone: Page, demo_data):
    log_in(phone, "rep", DEMO_PASSWORDS["rep"])
    phone.goto("/queue/")
    row = phone.locator("table.queue tbody tr").first
    row.scroll_into_view_if_needed()
    expect(row.locator("td[data-label='SLA']")).to_be_in_viewport(ratio=1)
    expect(row.get_by_role("button", name=re.compile("^Claim "))).to_be_in_viewport(ratio=1)
    expect(row.locator(".score-pill")).to_be_in_viewport(ratio=1)
    shoot(phone, "phone-queue")

    queued = Handoff.objects.filter(status=HandoffStatus.QUEUED).order_by("-priority").first()
    assert queued
    phone.goto(f"/queue/{queued.public_id}/")  # the first screen, not scrolled
    expect(phone.get_by_role("button", name="Claim", exact=True)).to_be_in_viewport(ratio=1)

    rep = get_user_model()._default_manager.get(username="rep")
    now = timezone.now()
    Handoff.objects.filter(pk=queued.pk).update(
        status=HandoffStatus.CLAIMED, claimed_by=rep, claimed_at=now, claim_expires_at=now + timedelta(hours=4)
    )
    phone.goto(f"/queue/{queued.public_id}/")
    expect(phone.get_by_role("button", name="Accept the lead")).to_be_in_viewport(ratio=1)
    # The accept checklist comes first; the reject form follows it, within the next screen.
    reject = phone.get_by_role("button", name="Reject the lead").bounding_box()
    assert reject and reject["y"] + reject["height"] < 2 * 844, reject
    shoot(phone, "phone-handoff")
    assert_no_console_errors(phone)
