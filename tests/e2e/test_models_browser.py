"""End to end, in a real browser: several scoring models. A scoring admin creates a model,
a draft of it and a suppression rule (the rule form shows each kind's fields); a
marketer switches between the models' scores on a lead's page."""

import re

import pytest
from playwright.sync_api import Page, expect

from scoring import services
from scoring.models import RuleKind, RuleSet
from tests.e2e.conftest import assert_no_console_errors, log_in, shoot
from tests.factories import LeadFactory, default_model, score_of

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_admin_creates_a_model_a_draft_and_a_suppression_rule(page: Page, admin):
    default_model()
    log_in(page, "scoring_admin")
    page.goto("/rules/")
    page.get_by_role("link", name="New model").click()
    page.get_by_role("button", name="Create model").click()
    expect(page.get_by_text("Name the model (e.g. the product line it scores interest in).")).to_be_visible()
    page.get_by_label("Name").fill("Analytics add-on")
    page.get_by_label("Slug").fill("analytics")
    page.get_by_role("button", name="Create model").click()
    expect(page.get_by_text("Created the model Analytics add-on")).to_be_visible()

    page.locator("#model-analytics").get_by_role("link", name="New draft").click()
    expect(page.get_by_label("Intent window (days)")).to_have_value("90")
    page.get_by_label("Name", exact=True).fill("Add-on v1")
    page.get_by_label("MQL threshold").fill("30")
    page.get_by_label("SQL threshold").fill("60")
    page.get_by_label("Minimum grade for SQL").select_option("B")
    shoot(page, "ruleset-new-draft")
    page.get_by_role("button", name="Create draft").click()
    draft = RuleSet.objects.get(model__slug="analytics")
    expect(page.get_by_text(f"Draft v{draft.version} of Analytics add-on created")).to_be_visible()

    page.get_by_role("link", name="+ Add suppression rule").click()
    expect(page.get_by_label("Event type")).to_be_visible()  # a suppression may be any such event
    expect(page.get_by_label("Window (days)")).to_be_hidden()  # no points over time
    page.get_by_label("Name").fill("Unsubscribed")
    page.get_by_label("Event type").fill("unsubscribe")
    page.get_by_role("button", name="Add rule").click()
    expect(page.get_by_text("Added the rule “Unsubscribed”")).to_be_visible()

    page.get_by_role("link", name="+ Add behaviour rule").click()
    expect(page.get_by_label("Decays")).to_be_checked()
    page.get_by_label("Name").fill("Webinars")
    page.get_by_label("Points").fill("10")
    page.get_by_label("Event type").fill("webinar_attended")
    page.get_by_label("Decays").uncheck()
    page.get_by_role("button", name="Add rule").click()
    suppression = page.locator("section", has=page.get_by_role("heading", name="Suppression rules"))
    expect(suppression).to_contain_text("never promoted")
    expect(page.locator("section", has=page.get_by_role("heading", name="Behaviour rules"))).to_contain_text("no decay")
    shoot(page, "ruleset-suppression")
    rules = {rule.name: rule for rule in draft.rules.all()}
    assert rules["Unsubscribed"].kind == RuleKind.SUPPRESS and rules["Webinars"].decays is False
    assert_no_console_errors(page)


def test_a_marketer_switches_between_the_models_scores_of_a_lead(page: Page, marketer):
    platform = default_model()  # first: the default (a transactional test starts without models)
    analytics = services.scoring_model_create(name="Analytics add-on", slug="analytics")
    lead = LeadFactory.create(name="Ada Lovelace")
    score_of(lead, score="70", fit="20", grade="B", model=platform)
    score_of(lead, score="45", fit="35", grade="A", model=analytics)
    log_in(page, "marketer")
    page.goto(f"/leads/{lead.public_id}/")
    models = page.get_by_role("navigation", name="Scoring models")
    expect(models.get_by_role("link")).to_have_count(2)
    expect(models).to_contain_text("B · 70.00")
    expect(models).to_contain_text("A · 45.00")
    models.get_by_role("link", name=re.compile("Analytics add-on")).click()
    expect(page.get_by_role("heading", name="Why this score · Analytics add-on")).to_be_visible()
    expect(page.locator(".score-big .value")).to_have_text("A · 45.00")
    shoot(page, "lead-models")
    assert_no_console_errors(page)
