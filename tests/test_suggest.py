"""Suggested points (issue 14, item 4): a logistic regression of sales' verdicts on the rules'
point-in-time units, proposed as a draft ruleset with its reasons."""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from handoff.models import HandoffStatus, RejectReason
from handoff.quality import ruleset_evaluate_handoffs
from handoff.suggest import SuggestionRefused, readable_points, ruleset_suggest
from scoring.models import Rule, RuleSet, RuleSetStatus
from tests.factories import EventFactory, HandoffFactory, LeadFactory, ruleset_through_services
from tests.helpers import behaviour, client_for, fit

pytestmark = pytest.mark.django_db

# The useless rule starts with more points than the predictive one: the suggestion must turn that round.
PREDICTIVE = fit("industry", "eq", "Software", 10)
USELESS = behaviour("webinar_attended", 20, max_points=40)
NEVER = behaviour("pricing_view", 5)
SUPPRESS = {"kind": "suppress", "name": "Competitors", "attribute": "industry", "operator": "eq", "value": "Rival"}


def _ruleset(**fields):
    return ruleset_through_services([PREDICTIVE, USELESS, NEVER, SUPPRESS], mql=20, sql=30, **fields)


def _history(count: int, *, seed: int = 7):
    """Decided handoffs where sales accepts mostly the Software leads (85 % against 15 %) and
    pays no heed to webinars, which half the leads attended (1 or 2 of them) at random."""
    rng = random.Random(seed)
    now = timezone.now()
    for _ in range(count):
        software = rng.random() < 0.5
        lead = LeadFactory.create(industry="Software" if software else "Retail")
        created = now - timedelta(days=5)
        if rng.random() < 0.5:
            for _ in range(rng.choice((1, 2))):
                EventFactory.create(lead=lead, type="webinar_attended", occurred_at=created - timedelta(days=1))
        accepted = rng.random() < (0.85 if software else 0.15)
        HandoffFactory.create(
            lead=lead,
            created_at=created,
            status=HandoffStatus.ACCEPTED if accepted else HandoffStatus.REJECTED,
            reject_reason="" if accepted else RejectReason.NOT_A_FIT,
            decided_at=now - timedelta(days=4),
        )


def _suggestion(draft: RuleSet) -> dict:
    assert draft.suggestion is not None
    return draft.suggestion


def _rows(draft: RuleSet) -> dict[str, dict]:
    return {row["name"]: row for row in _suggestion(draft)["rules"]}


def _points(draft: RuleSet) -> dict[str, Decimal]:
    return {rule.name: rule.points for rule in draft.rules.all()}


# --- The numbers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("weight", "points"),
    [(37.4, "35"), (22.6, "25"), (20.0, "20"), (17.6, "18"), (3.4, "3"), (0.2, "1"), (-0.2, "-1"), (-27.5, "-30")],
)
def test_points_are_rounded_to_fives_from_twenty_up_to_whole_points_below_and_never_to_zero(weight, points):
    assert readable_points(weight) == Decimal(points)


# --- The suggestion -----------------------------------------------------------------------------
def test_the_suggestion_recovers_the_planted_direction_and_beats_flat_points_held_out(admin):
    ruleset = _ruleset()
    _history(160)

    draft = ruleset_suggest(ruleset=ruleset, user=admin)

    points = _points(draft)
    rows = _rows(draft)
    assert points["industry eq"] > points["webinar_attended rule"]  # was 10 against 20
    assert points["industry eq"] >= 20
    assert rows["industry eq"]["low"] > 0  # a clear effect
    assert rows["webinar_attended rule"]["low"] < 0 < rows["webinar_attended rule"]["high"]  # none
    assert _suggestion(draft)["auc_suggested"] > _suggestion(draft)["auc_flat"]
    assert _suggestion(draft)["auc_suggested"] > _suggestion(draft)["auc_old"]
    # the sum of the fitted rules' positive points is kept, up to rounding
    positive = sum(p for name, p in points.items() if p > 0 and name != "pricing_view rule")
    assert abs(positive - Decimal(30)) <= Decimal(5)


def test_a_rule_that_never_fired_keeps_its_old_points_and_says_so(admin):
    ruleset = _ruleset()
    _history(80)

    draft = ruleset_suggest(ruleset=ruleset, user=admin)

    never = _rows(draft)["pricing_view rule"]
    assert _points(draft)["pricing_view rule"] == Decimal(5)
    assert (never["fitted"], never["fired"], never["coefficient"]) == (False, 0, None)
    assert "never fired" in never["why"] and "old points kept" in never["why"]


def test_an_intent_rule_is_left_out_of_the_fit_and_keeps_its_points(admin):
    demo = behaviour("demo_request", 30, max_points=30)
    ruleset = ruleset_through_services([PREDICTIVE, USELESS, demo], mql=20, sql=30)
    _history(80)
    leads = list(LeadFactory._meta.model.objects.order_by("id"))
    for lead in leads[: len(leads) * 9 // 10]:  # nine in ten SQLs raised their hand before the handoff
        EventFactory.create(lead=lead, type="demo_request", occurred_at=timezone.now() - timedelta(days=6))

    draft = ruleset_suggest(ruleset=ruleset, user=admin)

    row = _rows(draft)["demo_request rule"]
    assert _points(draft)["demo_request rule"] == Decimal(30)
    assert (row["fitted"], row["coefficient"]) == (False, None) and row["fired"] > 0
    assert "hand-raise (demo_request)" in row["why"] and "old points kept" in row["why"]
    assert _rows(draft)[PREDICTIVE["name"]]["fitted"] is True


def test_the_suggestion_is_a_new_draft_and_the_old_ruleset_is_untouched(admin):
    ruleset = _ruleset()
    before = [(r.pk, r.name, r.points, r.max_points) for r in ruleset.rules.all()]
    _history(80)

    draft = ruleset_suggest(ruleset=ruleset, user=admin)

    ruleset.refresh_from_db()
    assert (draft.status, draft.model_id, draft.created_by) == (RuleSetStatus.DRAFT, ruleset.model_id, admin)
    assert draft.version > ruleset.version and draft.published_at is None
    assert ruleset.status == RuleSetStatus.PUBLISHED and ruleset.suggestion is None
    assert [(r.pk, r.name, r.points, r.max_points) for r in ruleset.rules.all()] == before
    # thresholds and the suppression rule are copied as they were
    assert (draft.mql_threshold, draft.sql_threshold) == (ruleset.mql_threshold, ruleset.sql_threshold)
    suppress = draft.rules.get(kind="suppress")
    assert (suppress.name, suppress.points, suppress.value) == ("Competitors", Decimal(0), "Rival")
    assert _suggestion(draft)["thresholds"] == "kept"


def test_a_behaviour_rules_cap_is_scaled_with_its_points(admin):
    ruleset = _ruleset()
    _history(80)

    draft = ruleset_suggest(ruleset=ruleset, user=admin)

    webinar = draft.rules.get(name="webinar_attended rule")
    assert webinar.max_points is not None
    assert (webinar.max_points > 0) == (webinar.points > 0)
    assert abs(webinar.max_points) >= abs(webinar.points)
    row = _rows(draft)["webinar_attended rule"]
    assert (row["old_max_points"], Decimal(row["new_max_points"])) == ("40.00", webinar.max_points)


def test_the_sql_threshold_is_re_derived_only_when_asked(admin):
    ruleset = _ruleset()
    _history(120)

    draft = ruleset_suggest(ruleset=ruleset, user=admin, keep_thresholds=False)

    old_scores = [e.score for e in ruleset_evaluate_handoffs(ruleset=ruleset)]
    new_scores = [e.score for e in ruleset_evaluate_handoffs(ruleset=draft)]
    sent_before = sum(1 for score in old_scores if score >= ruleset.sql_threshold)
    sent_after = sum(1 for score in new_scores if score >= draft.sql_threshold)
    sent_above = sum(1 for score in new_scores if score >= draft.sql_threshold + 1)
    assert draft.mql_threshold == ruleset.mql_threshold < draft.sql_threshold != ruleset.sql_threshold
    assert sent_above < sent_before <= sent_after  # the highest threshold that sends as many
    assert _suggestion(draft)["thresholds"] == f"SQL threshold re-derived: 30.00 → {draft.sql_threshold}"


def test_the_suggestion_is_refused_below_the_minimum_of_decided_handoffs_with_the_message(admin):
    ruleset = _ruleset()
    _history(40)
    HandoffFactory.create()  # undecided: does not count

    with pytest.raises(SuggestionRefused) as refused:
        ruleset_suggest(ruleset=ruleset, user=admin)

    assert str(refused.value).startswith("Not enough decided handoffs to suggest points: 40 decided")
    assert "at least 50 are needed" in str(refused.value)
    assert not RuleSet.objects.filter(version__gt=ruleset.version).exists()


def test_the_suggestion_is_refused_with_too_few_of_one_verdict(admin, settings):
    settings.SUGGEST_MIN_PER_CLASS = 60
    ruleset = _ruleset()
    _history(80)

    with pytest.raises(SuggestionRefused, match="with 60 accepted and 60 rejected"):
        ruleset_suggest(ruleset=ruleset, user=admin)


# --- The API ------------------------------------------------------------------------------------
def _url(version: int) -> str:
    return f"/api/v1/rulesets/{version}/suggest"


def test_the_api_answers_201_with_the_drafts_version_rules_and_aucs(admin):
    ruleset = _ruleset()
    _history(80)

    answer = client_for(admin).post(_url(ruleset.version), {}, format="json")

    assert answer.status_code == 201, answer.content
    body = answer.json()
    draft = RuleSet.objects.get(version=body["version"])
    assert draft.status == RuleSetStatus.DRAFT and body["from_version"] == ruleset.version
    assert {row["name"] for row in body["rules"]} == {"industry eq", "webinar_attended rule", "pricing_view rule"}
    draft_rules = set(Rule.objects.filter(ruleset=draft).values_list("pk", flat=True))
    assert {row["rule_id"] for row in body["rules"]} <= draft_rules
    assert 0 <= body["auc_old"] <= 1 and 0 <= body["auc_suggested"] <= 1
    assert body["decided"] == 80 and body["held_out"] == 24


def test_the_api_refuses_below_the_minimum_with_409_and_the_message(admin):
    ruleset = _ruleset()
    _history(10)

    answer = client_for(admin).post(_url(ruleset.version), {}, format="json")

    assert answer.status_code == 409
    assert answer.json()["detail"].startswith("Not enough decided handoffs to suggest points: 10 decided")


def test_the_api_answers_400_for_a_keep_thresholds_that_is_no_boolean_and_404_for_no_ruleset(admin):
    ruleset = _ruleset()
    client = client_for(admin)

    bad = client.post(_url(ruleset.version), {"keep_thresholds": "perhaps"}, format="json")

    assert bad.status_code == 400 and "keep_thresholds" in bad.json()
    assert client.post(_url(ruleset.version + 99), {}, format="json").status_code == 404


@pytest.mark.parametrize("role", ["marketer", "rep", "outsider"])
def test_only_scoring_admins_may_ask_for_a_suggestion(role, request):
    ruleset = _ruleset()
    _history(60)

    answer = client_for(request.getfixturevalue(role)).post(_url(ruleset.version), {}, format="json")

    assert answer.status_code == 403
    assert not RuleSet.objects.filter(version__gt=ruleset.version).exists()


def test_anonymous_people_may_not_ask_for_a_suggestion():
    ruleset = _ruleset()

    assert APIClient().post(_url(ruleset.version), {}, format="json").status_code in (401, 403)
    assert not RuleSet.objects.filter(version__gt=ruleset.version).exists()


# --- The pages ----------------------------------------------------------------------------------
def _page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_suggest_button_makes_the_draft_and_opens_its_page_with_the_table(admin, django_assert_max_num_queries):
    ruleset = _ruleset()
    _history(80)
    client = _page_client(admin)

    answer = client.post(f"/rules/{ruleset.version}/suggest")

    draft = RuleSet.objects.get(version__gt=ruleset.version)
    assert answer.status_code == 302 and answer["Location"] == f"/rules/{draft.version}/"
    with django_assert_max_num_queries(20):
        page = client.get(f"/rules/{draft.version}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="suggestion-title"' in html
    webinar = _rows(draft)["webinar_attended rule"]
    assert f"{Decimal(webinar['new_points']):+.2f}" in html and "+20.00" in html  # new and old points
    assert f"{_suggestion(draft)['auc_suggested']:.3f}" in html and f"{_suggestion(draft)['auc_old']:.3f}" in html
    assert "never fired among the 80 decided handoffs" in html


def test_the_suggest_button_says_why_it_refused_on_the_rulesets_page(admin):
    ruleset = _ruleset()
    _history(10)

    answer = _page_client(admin).post(f"/rules/{ruleset.version}/suggest", follow=True)

    assert answer.redirect_chain[-1][0] == f"/rules/{ruleset.version}/"
    assert "Not enough decided handoffs to suggest points" in answer.content.decode()
    assert not RuleSet.objects.filter(version__gt=ruleset.version).exists()


def test_a_marketer_may_not_press_the_suggest_button(marketer):
    ruleset = _ruleset()

    assert _page_client(marketer).post(f"/rules/{ruleset.version}/suggest").status_code == 403
    assert not RuleSet.objects.filter(version__gt=ruleset.version).exists()


def test_a_ruleset_without_a_suggestion_shows_no_suggestion_table(admin):
    ruleset = _ruleset()

    html = _page_client(admin).get(f"/rules/{ruleset.version}/").content.decode()

    assert 'id="suggestion-title"' not in html


# --- Who reads a suggestion: scoring admins and marketing, as the score quality ---------------
def _suggested_draft(admin) -> RuleSet:
    ruleset = _ruleset()
    _history(60)
    return ruleset_suggest(ruleset=ruleset, user=admin)


@pytest.mark.parametrize("role", ["admin", "marketer"])
def test_scoring_admins_and_marketing_read_a_drafts_suggestion_on_its_page_and_in_the_api(role, admin, request):
    draft = _suggested_draft(admin)
    reader = request.getfixturevalue(role)

    page = _page_client(reader).get(f"/rules/{draft.version}/")
    answer = client_for(reader).get(f"/api/v1/rulesets/{draft.version}/suggestion")

    assert page.status_code == 200 and 'id="suggestion-title"' in page.content.decode()
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["version"] == draft.version and body["auc_suggested"] == _suggestion(draft)["auc_suggested"]
    assert {row["name"] for row in body["rules"]} == set(_rows(draft))


def test_sales_reads_the_draft_but_not_its_suggestion(admin, rep):
    draft = _suggested_draft(admin)

    page = _page_client(rep).get(f"/rules/{draft.version}/")
    answer = client_for(rep).get(f"/api/v1/rulesets/{draft.version}/suggestion")

    assert page.status_code == 200 and 'id="suggestion-title"' not in page.content.decode()
    assert answer.status_code == 403


def test_a_ruleset_not_made_by_a_suggestion_answers_404_with_how_to_ask_for_one(admin):
    ruleset = _ruleset()

    answer = client_for(admin).get(f"/api/v1/rulesets/{ruleset.version}/suggestion")

    assert answer.status_code == 404
    assert f"POST …/rulesets/{ruleset.version}/suggest" in answer.json()["detail"]
    assert client_for(admin).get(f"/api/v1/rulesets/{ruleset.version + 99}/suggestion").status_code == 404
