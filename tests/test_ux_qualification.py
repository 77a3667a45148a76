"""Issue 17, item 3: why one lead is an SQL and another, with a higher score, an MQL. The
lead page and the leads list show the state of the model's qualification criteria (the
engine's own, ``scoring.engine.mql_criteria``/``sql_criteria``), and the list finds the
MQLs whose score has decayed below the MQL threshold (stale MQLs)."""

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from leadflow.leads.models import Event, Lead, Stage
from scoring import engine, services
from scoring.models import RuleSet, RuleSetStatus
from scoring.selectors import published_ruleset, ruleset_spec
from tests.factories import EventFactory, LeadFactory
from tests.helpers import behaviour, browser, client_for, count_queries, fit
from tests.test_list_plans import full_sorts, plan_of, seeded_leads  # noqa: F401 -- a fixture

NEEDS_INTENT = "needs a contact request or demo request"  # the ruleset keeps its types sorted


def score_now(capture, *leads):
    with capture(execute=True):
        services.leads_score(lead_ids=[lead.pk for lead in leads])
    for lead in leads:
        lead.refresh_from_db()


def row_of(page, name):
    """The leads list's table row of the lead called ``name``."""
    rows = re.findall(r"<tr>.*?</tr>", page, flags=re.S)
    (row,) = [row for row in rows if f">{name}</a>" in row]
    return row


def marks(row):
    """The criteria of a row as ``{"score": True, "intent": False}``."""
    found = re.findall(r'<li class="criterion (met|unmet)"[^>]*>([a-z ]+) <span aria-hidden="true">([✓✗])', row)
    assert all((state == "met") == (mark == "✓") for state, _label, mark in found)
    return {label: state == "met" for state, label, _mark in found}


@pytest.fixture
def ada_and_dominic(publish_ruleset, django_capture_on_commit_callbacks):
    """Ada (66: a page view and a demo request) is an SQL; Dominic (67.30: a page view and
    pricing, no hand-raise) an MQL."""
    publish_ruleset(
        [behaviour("page_view", 40), behaviour("demo_request", 26), behaviour("pricing_view", "27.30")],
        mql=30,
        sql=60,
        intent=("demo_request", "contact_request"),
    )
    ada, dominic = LeadFactory.create(name="Ada"), LeadFactory.create(name="Dominic")
    EventFactory.create(lead=ada, type="page_view")
    EventFactory.create(lead=ada, type="demo_request")
    EventFactory.create(lead=dominic, type="page_view")
    EventFactory.create(lead=dominic, type="pricing_view")
    score_now(django_capture_on_commit_callbacks, ada, dominic)
    assert (ada.stage, dominic.stage) == (Stage.SQL, Stage.MQL)
    return ada, dominic


def test_the_leads_list_shows_why_a_lower_score_is_an_sql_and_a_higher_one_an_mql(marketer, ada_and_dominic):
    page = browser(marketer).get(reverse("lead-list")).content.decode()
    ada, dominic = row_of(page, "Ada"), row_of(page, "Dominic")
    assert marks(ada) == {"score": True, "fit": True, "intent": True}
    assert marks(dominic) == {"score": True, "fit": True, "intent": False}
    assert "B · 66.00" not in dominic and "67.30" in dominic and "66.00" in ada
    assert NEEDS_INTENT.capitalize() in dominic and "needs" not in ada.lower()
    assert "Next stage criteria" in page


def test_the_lead_page_lists_the_mql_and_sql_criteria_in_words(marketer, ada_and_dominic):
    _ada, dominic = ada_and_dominic
    response = browser(marketer).get(reverse("lead-detail", args=[dominic.public_id]))
    mql, sql = response.context["qualifications"]
    assert (mql.target, mql.met, [c.key for c in mql.criteria]) == (Stage.MQL, True, ["score"])
    assert (sql.target, sql.met) == (Stage.SQL, False)
    assert [(c.key, c.met) for c in sql.criteria] == [("score", True), ("fit", True), ("intent", False)]
    page = response.content.decode()
    assert "Score 67.30 ≥ SQL threshold 60.00" in page
    assert "No minimum fit" in page
    assert f"{NEEDS_INTENT.capitalize()} (inside the 90-day intent window)" in page
    assert "SQL criteria" in page and "MQL criteria" in page


def test_a_fit_below_the_models_minimum_fails_the_fit_criterion(
    marketer, publish_ruleset, django_capture_on_commit_callbacks
):
    publish_ruleset(
        [fit("industry", "eq", "Software", 15), behaviour("page_view", 40), behaviour("demo_request", 30)],
        mql=30,
        sql=60,
        min_fit=10,
    )
    lead = LeadFactory.create(name="Grace", industry="Retail")
    EventFactory.create(lead=lead, type="page_view")
    EventFactory.create(lead=lead, type="demo_request")
    score_now(django_capture_on_commit_callbacks, lead)
    assert lead.stage == Stage.MQL  # score 70 and intent, but no fit
    page = browser(marketer).get(reverse("lead-list")).content.decode()
    row = row_of(page, "Grace")
    assert marks(row) == {"score": True, "fit": False, "intent": True}
    assert "Fit 0.00 is below the minimum 10.00" in row


def test_every_criterion_the_pages_show_met_is_what_qualifies_a_lead_for_sql(ada_and_dominic):
    """The criteria are the engine's: all met exactly when ``qualifies_sql`` holds."""
    ruleset = published_ruleset()
    assert ruleset is not None
    spec = ruleset_spec(ruleset)
    now = timezone.now()
    for score in (Decimal("59.99"), Decimal("60.00")):
        for last_intent_at in (None, now):
            for recycled_at in (None, now - timedelta(days=1), now + timedelta(days=1)):
                given: dict[str, Any] = {
                    "score": score,
                    "fit": Decimal("0"),
                    "grade": "F",
                    "suppressed": False,
                    "last_intent_at": last_intent_at,
                    "recycled_at": recycled_at,
                }
                criteria = engine.sql_criteria(spec, **given)
                assert all(c.met for c in criteria) == engine.qualifies_sql(spec, **given)


# --- Stale MQLs --------------------------------------------------------------------------------
@pytest.fixture
def decayed(publish_ruleset, django_capture_on_commit_callbacks):
    """Hedy became an MQL with a page view (40 ≥ 30) that has since decayed to 5; Alan is an
    MQL still above the threshold; Barbara is new and low; Carl is an MQL the model never scored."""
    publish_ruleset([behaviour("page_view", 40)], mql=30, sql=60, half_life=1)
    hedy, alan, barbara = (LeadFactory.create(name=name) for name in ("Hedy", "Alan", "Barbara"))
    for lead in (hedy, alan):
        EventFactory.create(lead=lead, type="page_view", occurred_at=timezone.now())
    EventFactory.create(lead=barbara, type="page_view", occurred_at=timezone.now() - timedelta(days=4))
    score_now(django_capture_on_commit_callbacks, hedy, alan, barbara)
    assert (hedy.stage, alan.stage, barbara.stage) == (Stage.MQL, Stage.MQL, Stage.NEW)
    Event.objects.filter(lead=hedy).update(occurred_at=timezone.now() - timedelta(days=3))
    score_now(django_capture_on_commit_callbacks, hedy)
    assert hedy.stage == Stage.MQL  # decay never demotes
    carl = LeadFactory.create(name="Carl", stage=Stage.MQL, mql_at=timezone.now())
    return {"hedy": hedy, "alan": alan, "barbara": barbara, "carl": carl}


def test_an_mql_whose_score_decayed_below_the_threshold_is_flagged_stale(marketer, decayed):
    page = browser(marketer).get(reverse("lead-list")).content.decode()
    assert "stale MQL" in row_of(page, "Hedy")
    for name in ("Alan", "Barbara", "Carl"):
        assert "stale MQL" not in row_of(page, name), name
    lead_page = browser(marketer).get(reverse("lead-detail", args=[decayed["hedy"].public_id])).content.decode()
    assert lead_page.count("stale MQL</span>") == 1
    assert "Score 5.00 is below the MQL threshold 30.00" in lead_page


@pytest.mark.parametrize("sort", ["-score", "score", "-activity", "-created"])
def test_the_stale_filter_lists_only_the_stale_mqls(marketer, decayed, sort):
    response = browser(marketer).get(reverse("lead-list"), {"stale": "on", "sort": sort})
    assert [lead.name for lead in response.context["page"].object_list] == ["Hedy"]
    assert response.context["filtered"]


@pytest.mark.parametrize("ordering", ["-score", "score", "-activity_at", "created_at"])
def test_the_lead_api_filters_stale_mqls(marketer, decayed, ordering):
    client = client_for(marketer)
    stale = client.get("/api/v1/leads", {"stale_mql": "true", "ordering": ordering})
    assert stale.status_code == 200, stale.content
    assert [row["name"] for row in stale.json()["results"]] == ["Hedy"]
    everyone = client.get("/api/v1/leads", {"stale_mql": "false", "ordering": ordering}).json()["results"]
    assert len(everyone) == 4
    assert client.get("/api/v1/leads", {"stale_mql": "yes"}).status_code == 400


def test_no_mql_is_stale_when_the_model_has_no_published_ruleset(marketer, decayed):
    RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED).update(status=RuleSetStatus.ARCHIVED)
    response = browser(marketer).get(reverse("lead-list"), {"stale": "on"})
    assert list(response.context["page"].object_list) == []
    assert "No stale MQL" in response.content.decode()


@pytest.mark.postgres
@pytest.mark.parametrize("ordering", ["-score", "score"])
def test_the_first_page_of_stale_mqls_by_score_is_read_from_the_mqls_index(seeded_leads, marketer, ordering):  # noqa: F811
    with CaptureQueriesContext(connection) as queries:
        response = client_for(marketer).get(f"/api/v1/leads?stale_mql=true&ordering={ordering}&page_size=20")
    assert response.status_code == 200
    assert response.json()["results"]
    ruleset = published_ruleset()
    assert ruleset is not None
    threshold = ruleset.mql_threshold
    assert all(Decimal(row["score"]) < threshold and row["stage"] == "mql" for row in response.json()["results"])
    first_page = next(q["sql"] for q in queries if q["sql"].startswith('SELECT "leads_lead"'))
    plan = plan_of(first_page)
    assert " using score_model_stage_rank " in plan, plan
    assert not full_sorts(plan), plan


def test_the_leads_list_shows_criteria_in_as_many_queries_for_40_leads_as_for_4(
    marketer, django_assert_max_num_queries
):
    LeadFactory.create_batch(4, stage=Stage.MQL, score=35)
    client = browser(marketer)
    few = count_queries(client, reverse("lead-list"))
    LeadFactory.create_batch(36, stage=Stage.MQL, score=35)
    with django_assert_max_num_queries(few):
        response = client.get(reverse("lead-list"))
    rows = response.context["page"].object_list
    assert len(rows) == 40 and all(lead.qualification is not None for lead in rows)
    assert Lead.objects.count() == 40
