"""Issue 17, item 2: the dashboard's figures name their cohort in their label — leads
created in the period, stage changes in the period, handoffs created in the period — and
two figures under the same label are the same figure."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from handoff.models import Handoff
from leadflow.leads.models import Stage, StageChange
from leadflow.leads.rollups import rollups_rebuild
from tests.factories import LeadFactory
from tests.helpers import browser
from tests.test_pages import funnel_data  # noqa: F401 -- a fixture

FIGURE = re.compile(r'<div class="label">(.*?)</div><div class="value[^"]*">(.*?)</div>', re.S)
COHORTS = ("in the period", "created at any time")


def text(html):
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def figures(page):
    """Every labelled figure of the dashboard (the key figures, the model's funnel, the
    sales outcomes) as (label, value)."""
    return [(text(label), text(value)) for label, value in FIGURE.findall(page)]


@pytest.fixture
def two_cohorts(funnel_data):  # noqa: F811
    """The funnel's leads, plus a lead created long before the period that entered SQL in
    it and was accepted, and a handoff for each lead that entered SQL in the period: the
    leads created in the period and the stage changes in the period are different groups."""
    now = timezone.now()
    veteran = LeadFactory.create(
        created_at=now - timedelta(days=200),
        mql_at=now - timedelta(days=150),
        sql_at=now - timedelta(days=2),
        stage=Stage.ACCEPTED,
    )
    StageChange.objects.create(lead=veteran, from_stage=Stage.NEW, to_stage=Stage.MQL, at=veteran.mql_at)
    StageChange.objects.create(lead=veteran, from_stage=Stage.MQL, to_stage=Stage.SQL, at=veteran.sql_at)
    StageChange.objects.create(lead=veteran, from_stage=Stage.SQL, to_stage=Stage.ACCEPTED, at=now)
    for lead, status in [(veteran, "accepted"), (funnel_data["accepted"], "accepted"), (funnel_data["sql"], "queued")]:
        Handoff.objects.create(
            lead=lead,
            status=status,
            created_at=lead.sql_at,
            due_at=lead.sql_at + timedelta(days=1),
            decided_at=now if status == "accepted" else None,
        )
    rollups_rebuild()  # written behind the services' back
    return funnel_data


def test_every_figure_of_the_dashboard_names_its_cohort_in_its_label(marketer, two_cohorts):
    page = browser(marketer).get(reverse("dashboard")).content.decode()
    found = figures(page)
    assert len(found) >= 18  # key figures, the model's funnel, the sales outcomes
    unnamed = [label for label, _value in found if not any(cohort in label for cohort in COHORTS)]
    assert unnamed == []


def test_figures_with_the_same_label_agree(marketer, two_cohorts):
    page = browser(marketer).get(reverse("dashboard")).content.decode()
    values: dict[str, set[str]] = {}
    for label, value in figures(page):
        values.setdefault(label, set()).add(value)
    assert {label: found for label, found in values.items() if len(found) > 1} == {}
    assert values["Leads created in the period"] == {"7"}  # the key figure and the model's funnel


def test_the_two_cohorts_are_told_apart_where_they_differ(marketer, two_cohorts):
    response = browser(marketer).get(reverse("dashboard"))
    page = response.content.decode()
    found = dict(figures(page))
    # Leads created in the period that became SQL: 2; leads of any age that entered SQL in it: 3.
    assert found["Became SQL of leads created in the period"] == "2"
    assert found["Entered SQL in the period"] == "3"
    assert "3 entered SQL in the period" in text(page)  # the chart's header says the same figure
    assert found["Entered MQL in the period"] == "3"
    # Accepted: 1 of the leads created in the period; 2 of the handoffs created in it.
    assert found["Accepted by sales of leads created in the period"] == "1"
    assert found["Handoffs accepted of handoffs created in the period"] == "2"
    assert "Accepted" not in found and "Became SQL" not in found and "New leads" not in found


def test_the_period_moves_every_in_the_period_figure_together(marketer, two_cohorts):
    """One day, the one the veteran entered SQL on: its SQL and its handoff are in it; none
    of the funnel's leads was created on it."""
    day = timezone.localdate(Handoff.objects.get(lead__created_at__lt=timezone.now() - timedelta(days=150)).created_at)
    on_that_day = [h for h in Handoff.objects.all() if timezone.localdate(h.created_at) == day]
    found = dict(
        figures(
            browser(marketer)
            .get(reverse("dashboard"), {"from": day.isoformat(), "to": day.isoformat()})
            .content.decode()
        )
    )
    assert found["Leads created in the period"] == "0"
    assert found["Entered SQL in the period"] == str(len(on_that_day))  # one handoff per SQL entry here
    accepted = sum(1 for h in on_that_day if h.status == "accepted")
    assert found["Handoffs accepted of handoffs created in the period"] == str(accepted)
    assert accepted >= 1
