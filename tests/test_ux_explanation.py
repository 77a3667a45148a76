"""Issue 17, item 1: every score on the pages has the same precision (two decimals), so
the rows of an explanation add up on screen to the total printed under them."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from leadflow.leads.models import Stage
from leadflow.leads.templatetags.leadflow_ui import graded, score, signed
from scoring import services
from scoring.models import Score
from tests.factories import EventFactory, LeadFactory
from tests.helpers import behaviour, browser, fit

ROW_POINTS = re.compile(r'<td class="num points-(?:pos|neg)">([^<]+)</td>')
TOTAL = re.compile(r'<td class="num">([^<]+)</td></tr></tfoot>')
HEADER = re.compile(r'<div class="value">([^<]+)</div>\s*<div class="parts">fit ([^ ]+) · behaviour ([^<]+)</div>')


@pytest.fixture
def uneven_lead(publish_ruleset, django_capture_on_commit_callbacks):
    """A lead whose contributions do not round evenly to one decimal: three fit rules of
    33.33, 33.33 and 33.34 points (100.00) and a decayed page view."""
    publish_ruleset(
        [
            fit("company", "eq", "Acme", "33.33"),
            fit("industry", "eq", "Software", "33.33"),
            fit("country", "eq", "FR", "33.34"),
            behaviour("page_view", "10"),
        ],
        mql=50,
        sql=200,
        half_life=7,
    )
    lead = LeadFactory.create(name="Dwayne Sanders", company="Acme", industry="Software", country="FR")
    EventFactory.create(lead=lead, type="page_view", occurred_at=timezone.now() - timedelta(days=2, hours=7))
    with django_capture_on_commit_callbacks(execute=True):
        services.leads_score(lead_ids=[lead.pk])
    lead.refresh_from_db()
    return lead


def test_the_explanations_rows_add_up_on_screen_to_the_total_it_shows(marketer, uneven_lead):
    stored = Score.objects.get(lead=uneven_lead)
    page = browser(marketer).get(reverse("lead-detail", args=[uneven_lead.public_id])).content.decode()

    rows = [Decimal(text) for text in ROW_POINTS.findall(page)]
    assert len(rows) == 4
    assert all(text.count(".") == 1 and len(text.split(".")[1]) == 2 for text in ROW_POINTS.findall(page))
    (total,) = TOTAL.findall(page)
    assert sum(rows) == Decimal(total) == stored.score  # what a person adds up is what the page says
    assert stored.score != stored.score.quantize(Decimal("0.1"))  # a score one decimal would misstate


def test_the_lead_header_shows_the_score_as_the_stage_history_and_the_explanation_do(marketer, uneven_lead):
    stored = Score.objects.get(lead=uneven_lead)
    page = browser(marketer).get(reverse("lead-detail", args=[uneven_lead.public_id])).content.decode()
    value, fit_text, behaviour_text = HEADER.search(page).groups()
    assert value == f"{stored.grade} · {stored.score}"
    assert Decimal(fit_text) + Decimal(behaviour_text) == stored.score
    assert uneven_lead.stage == Stage.MQL
    assert f"Score {stored.score} reached the MQL threshold 50.00" in page  # the stage history says the same
    assert TOTAL.findall(page) == [str(stored.score)]


def test_the_leads_list_shows_the_score_the_lead_page_shows(marketer, uneven_lead):
    stored = Score.objects.get(lead=uneven_lead)
    listing = browser(marketer).get(reverse("lead-list")).content.decode()
    assert f"<strong>{stored.grade} · {stored.score}</strong>" in listing


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("66"), "66.00"),
        (Decimal("65.99"), "65.99"),
        (Decimal("123.755"), "123.76"),
        (Decimal("-5"), "-5.00"),
        (Decimal("-0.001"), "0.00"),
        (67.3, "67.30"),
        (None, "—"),
    ],
)
def test_every_score_reads_with_two_decimals(value, text):
    assert score(value) == text


def test_signed_points_and_graded_scores_keep_the_two_decimals():
    assert signed(Decimal("30")) == "+30.00"
    assert signed(Decimal("-2.5")) == "-2.50"
    assert signed(Decimal("0")) == "0.00"
    assert graded(Decimal("66"), "B") == "B · 66.00"
    assert graded(Decimal("66"), "") == "—"
