"""End to end, in a real browser held like a phone (390 × 844): the pages fit the screen.
Nothing scrolls sideways, neither the page nor the navigation, and the notifications
bell is always on screen. The dashboard is saved as phone-<role>.png."""

import pytest
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
    }
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
