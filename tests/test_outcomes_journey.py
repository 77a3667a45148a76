"""The Outcomes issue's "done when", on the demo's data (``seed_demo``), through the pages:
an admin opens the quality page of the published model, sees which rules predict
acceptance and which do not, asks for suggested points, previews the draft with its
backtest beside the current model and publishes it; a marketer opens the nurture
segments and sees, per topic, which MQLs to send which content next."""

import io

import pytest
from django.core.management import call_command
from django.test import Client

from handoff.quality import ruleset_quality
from leadflow.leads import nurture
from scoring.models import RuleSet, RuleSetStatus
from scoring.selectors import published_ruleset

pytestmark = pytest.mark.django_db


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def demo(db):
    call_command("seed_demo", "--leads", "60", "--history", "250", "--seed", "11", stdout=io.StringIO())
    return RuleSet.objects.get(status=RuleSetStatus.PUBLISHED, model__slug="default")


def test_an_admin_learns_from_sales_publishes_better_points_and_a_marketer_sees_what_to_send(demo, admin, marketer):
    browser = _browser(admin)

    # The quality page: the planted rule leads by lift, the rule sales ignores makes no clear difference.
    page = browser.get(f"/rules/{demo.version}/quality/")
    assert page.status_code == 200
    report = ruleset_quality(ruleset=demo)
    ranked = [rule for rule in report.rules if rule.enough_data]
    assert ranked[0].name == "Company of 50+ employees", [rule.name for rule in ranked]
    industry = next(rule for rule in report.rules if rule.name == "Target industry")
    assert industry.accept.spans_one
    html = page.content.decode()
    assert "Company of 50+ employees" in html and "no clear effect" in html

    # Suggested points: a draft, with its reasons, whose held-out AUC is no worse than the old points'.
    made = browser.post(f"/rules/{demo.version}/suggest")
    draft = RuleSet.objects.get(status=RuleSetStatus.DRAFT, model=demo.model)
    assert made.status_code == 302 and made["Location"] == f"/rules/{draft.version}/"
    assert draft.suggestion is not None and draft.suggestion["auc_suggested"] >= draft.suggestion["auc_old"]
    assert 'id="suggestion-title"' in browser.get(f"/rules/{draft.version}/").content.decode()

    # The preview, and its backtest beside the published ruleset.
    assert browser.get(f"/rules/{draft.version}/preview").status_code == 200
    backtest = browser.get(f"/rules/{draft.version}/backtest?fragment=1")
    assert backtest.status_code == 200
    text = backtest.content.decode()
    assert f"v{draft.version}" in text and f"v{demo.version}" in text and "AUC" in text

    # Publish: the draft scores every lead from now on.
    published = browser.post(f"/rules/{draft.version}/publish")
    assert published.status_code == 302
    assert published_ruleset(demo.model) == RuleSet.objects.get(pk=draft.pk)

    # The marketer's nurture page: segments by topic, each with content to send next.
    segments = nurture.nurture_segments().segments
    assert segments and any(segment.next_content for segment in segments)
    nurture_page = _browser(marketer).get("/nurture/")
    assert nurture_page.status_code == 200
    first = next(segment for segment in segments if segment.next_content)
    assert first.next_content is not None and first.next_content.asset in nurture_page.content.decode()
