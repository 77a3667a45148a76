"""End to end, in a real browser: DRF's browsable API (what a person sees opening an
/api/v1/ URL while logged in) works under the app's strict Content-Security-Policy.
The leads list is saved as api-browsable.png."""

import pytest
from playwright.sync_api import Page, expect

from leadflow.middleware import CONTENT_SECURITY_POLICY
from scoring.models import RuleSet, RuleSetStatus
from tests.e2e.conftest import assert_no_console_errors, install_default_ruleset, log_in, shoot
from tests.factories import LeadFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_browsable_api_renders_under_the_strict_policy_without_console_errors(page: Page, admin):
    install_default_ruleset()
    lead = LeadFactory.create(name="Ada Lovelace")
    version = RuleSet.objects.get(status=RuleSetStatus.PUBLISHED, model__slug="default").version
    log_in(page, "scoring_admin")
    pages = [
        "/api/v1/leads",
        f"/api/v1/leads/{lead.public_id}",
        "/api/v1/rulesets",
        f"/api/v1/rulesets/{version}/rules",  # with the POST form of a rule
        "/api/v1/notifications",
    ]
    for url in pages:
        response = page.goto(url)
        assert response and response.ok, url
        assert response.headers["content-type"].startswith("text/html"), url
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, url
        expect(page.locator(".navbar")).to_be_visible()
        assert_no_console_errors(page)

    page.goto("/api/v1/leads")
    expect(page.locator("#content")).to_contain_text("Ada Lovelace")
    filters = page.get_by_role("button", name="Filters")
    expect(filters).to_have_css("float", "right")  # DRF's inline style, now a class in our stylesheet
    shoot(page, "api-browsable")
    filters.click()  # Bootstrap's modal: script from a static file
    expect(page.locator("#filtersModal")).to_be_visible()
    expect(page.locator("#filtersModal")).to_contain_text("Ordering")
    assert_no_console_errors(page)

    response = page.goto("/")  # the app's pages keep the same strict policy
    assert response and response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert_no_console_errors(page)
