"""End to end, in a real browser: a sales manager's view of every open handoff (issue 17,
item 7). The manager finds it in the navigation, reads who holds what (the overdue first),
gives a handoff to another rep and releases a claim, without leaving the page; the page
fits a phone's screen."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from handoff.models import Handoff, HandoffStatus
from leadflow.leads.roles import SALES
from tests.e2e.conftest import assert_no_console_errors, log_in, shoot
from tests.e2e.test_phone_layout import assert_fits_the_screen
from tests.factories import HandoffFactory, SqlLeadFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def handoff(name: str, *, due_in: timedelta, holder=None) -> Handoff:
    now = timezone.now()
    claim = (
        {
            "status": HandoffStatus.CLAIMED,
            "claimed_by": holder,
            "claimed_at": now - timedelta(hours=3),
            "first_claimed_at": now - timedelta(hours=3),
            "claim_expires_at": now + timedelta(hours=1),
        }
        if holder
        else {}
    )
    return HandoffFactory.create(
        lead=SqlLeadFactory.create(name=name, company="Analytical Engines"),
        priority=Decimal(70),
        created_at=now - timedelta(hours=30),
        due_at=now + due_in,
        **claim,
    )


@pytest.fixture
def reps(transactional_db):
    return (
        UserFactory.create(username="ada", first_name="Ada", last_name="Byron", roles=[SALES]),
        UserFactory.create(username="grace", first_name="Grace", last_name="Brewster", roles=[SALES]),
    )


def test_a_sales_manager_reassigns_and_releases_from_the_overview(page: Page, sales_manager, reps):
    ada, grace = reps
    handoff("Charles Babbage", due_in=timedelta(hours=-5), holder=ada)
    handoff("Mary Somerville", due_in=timedelta(hours=10))
    handoff("Hertha Ayrton", due_in=timedelta(hours=6), holder=grace)

    log_in(page, "sales_manager")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Handoffs").click()
    expect(page).to_have_url(re.compile(r"/handoffs/$"))
    rows = page.locator("table.overview tbody tr")
    expect(rows.first).to_contain_text("Charles Babbage")  # the overdue one first
    expect(rows.first).to_have_class(re.compile(r"\bis-overdue\b"))
    expect(page.locator("table.rep-loads tbody tr").first).to_contain_text("Ada Byron")
    shoot(page, "handoff-overview")

    babbage = rows.filter(has_text="Charles Babbage")
    babbage.get_by_label("Reassign Charles Babbage to").select_option("grace")
    babbage.get_by_role("button", name="Reassign Charles Babbage").click()
    expect(page.get_by_text("Gave Charles Babbage to Grace Brewster")).to_be_visible()
    assert Handoff.objects.get(lead__name="Charles Babbage").claimed_by == grace

    page.locator("table.overview tbody tr", has_text="Hertha Ayrton").get_by_role(
        "button", name="Release Hertha Ayrton to the queue"
    ).click()
    expect(page.get_by_text("Released Hertha Ayrton from Grace Brewster")).to_be_visible()
    assert Handoff.objects.get(lead__name="Hertha Ayrton").status == HandoffStatus.QUEUED
    assert_no_console_errors(page)


def test_the_overview_fits_a_phone_screen(phone: Page, sales_manager, reps):
    ada, _grace = reps
    handoff("Charles Babbage", due_in=timedelta(hours=-5), holder=ada)
    handoff("Mary Somerville", due_in=timedelta(hours=10))

    log_in(phone, "sales_manager")
    phone.goto("/handoffs/")
    expect(phone.locator("table.overview tbody tr").first).to_contain_text("Charles Babbage")
    shoot(phone, "phone-handoff-overview")
    assert_fits_the_screen(phone, "/handoffs/")
    assert_no_console_errors(phone)
