"""The pages with several scoring models: the lead page's scores side by side, the leads
list and its export by a model's score, the queue by qualifying model, the rules editor
per model (models, drafts, grades, suppression, decay opt-out) and the dashboard's
per-model funnel and grade × engagement matrix."""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from leadflow.leads.models import Stage, StageChange
from leadflow.leads.rollups import rollups_rebuild
from scoring import services
from scoring.models import Rule, RuleKind, RuleSet, RuleSetStatus, Score, ScoringModel
from tests.factories import (
    EventFactory,
    HandoffFactory,
    LeadFactory,
    SqlLeadFactory,
    default_model,
    ruleset_through_services,
    score_of,
)
from tests.helpers import SCRIPT, behaviour, browser, fit

pytestmark = pytest.mark.django_db


@pytest.fixture
def analytics(db):
    """A second scoring model beside the default one."""
    return services.scoring_model_create(name="Analytics add-on", slug="analytics", description="The add-on")


def suppression(name="Competitor domain", **condition):
    return {
        "kind": "suppress",
        "name": name,
        "points": 0,
        **(condition or {"attribute": "email_domain", "operator": "eq", "value": "rival.test"}),
    }


# --- The lead page ------------------------------------------------------------------------------
def test_lead_page_shows_every_models_score_side_by_side(marketer, analytics):
    suppressing = ruleset_through_services([suppression()], model=analytics, publish=False)
    rule = Rule.objects.get(ruleset=suppressing)
    lead = LeadFactory.create(name="Ada")
    score_of(lead, score="70", fit="20", grade="B")
    suppressed = score_of(lead, score="45", fit="35", grade="A", model=analytics)
    Score.objects.filter(pk=suppressed.pk).update(suppressed_by=rule.pk)

    response = browser(marketer).get(reverse("lead-detail", args=[lead.public_id]))
    page = response.content.decode()
    cards = response.context["score_cards"]
    assert [card.model.slug for card in cards] == [default_model().slug, "analytics"]
    assert "B · 70.00" in page and "A · 45.00" in page  # grade and score together, each model
    assert "fit 20.00 · behaviour 50.00" in page and "fit 35.00 · behaviour 10.00" in page
    assert "Suppressed: Competitor domain" in page
    assert f'href="?model={default_model().slug}"' in page and 'href="?model=analytics"' in page
    assert response.context["model"] == default_model()  # the default model is explained first


def test_lead_page_explains_the_chosen_model_exactly_with_its_intent_window(
    marketer, analytics, django_capture_on_commit_callbacks
):
    ruleset_through_services([behaviour("page_view", 2)], mql=100, sql=200)
    ruleset_through_services(
        [fit("job_title", "contains", "CTO", 15), behaviour("demo_request", 30, decays=False)],
        model=analytics,
        mql=100,
        sql=200,
        half_life=30,
        intent_window_days=30,
    )
    lead = LeadFactory.create(name="Grace", job_title="CTO")
    EventFactory.create_batch(2, lead=lead, type="page_view")
    EventFactory.create(lead=lead, type="demo_request", occurred_at=timezone.now() - timedelta(days=10))
    with django_capture_on_commit_callbacks(execute=True):
        services.leads_score(lead_ids=[lead.pk])

    response = browser(marketer).get(reverse("lead-detail", args=[lead.public_id]), {"model": "analytics"})
    page = response.content.decode()
    stored = Score.objects.get(lead=lead, model=analytics)
    explanation = response.context["explanation"]
    assert explanation["model"] == "analytics" and explanation["adds_up"]
    assert sum(rule["contribution"] for rule in response.context["matched_rules"]) == stored.score == Decimal("45")
    assert "Why this score · Analytics add-on" in page and "no decay" in page
    assert "Intent window: 30 days" in page and "latest hand-raise inside it" in page
    assert 'aria-current="true"' in page.split('href="?model=analytics"')[1].split(">")[0]


def test_lead_page_with_an_unknown_model_explains_the_default_and_says_so(marketer):
    lead = LeadFactory.create(score="12")
    response = browser(marketer).get(reverse("lead-detail", args=[lead.public_id]), {"model": "nope"})
    assert response.status_code == 200
    assert response.context["model"] == default_model()
    assert "No scoring model “nope”: showing the default model." in response.content.decode()


def test_lead_page_escapes_model_names(marketer):
    model = services.scoring_model_create(name=f"Evil {SCRIPT}", slug="evil")
    lead = LeadFactory.create(score="10")
    score_of(lead, score="5", model=model)
    page = browser(marketer).get(reverse("lead-detail", args=[lead.public_id])).content.decode()
    assert SCRIPT not in page and "Evil &lt;script&gt;" in page


# --- The leads list and its export -------------------------------------------------------------
def test_leads_list_shows_grade_and_score_and_sorts_by_the_chosen_model(marketer, analytics):
    platform_fan = LeadFactory.create(name="Platform fan", score__grade="A", score="80")
    addon_fan = LeadFactory.create(name="Add-on fan", score__grade="C", score="20")
    score_of(platform_fan, score="10", fit="5", grade="D", model=analytics)
    score_of(addon_fan, score="90", fit="30", grade="A", model=analytics)
    client = browser(marketer)

    default = client.get(reverse("lead-list"))
    assert [lead.name for lead in default.context["page"].object_list] == ["Platform fan", "Add-on fan"]
    assert "A · 80.00" in default.content.decode() and "C · 20.00" in default.content.decode()
    assert 'name="model"' in default.content.decode() and "Analytics add-on" in default.content.decode()

    chosen = client.get(reverse("lead-list"), {"model": "analytics", "sort": "-score"})
    page = chosen.content.decode()
    assert [lead.name for lead in chosen.context["page"].object_list] == ["Add-on fan", "Platform fan"]
    assert "A · 90.00" in page and "D · 10.00" in page and "Scores of Analytics add-on" in page
    assert chosen.context["filtered"] is False  # choosing a model is not a filter

    only_high = client.get(reverse("lead-list"), {"model": "analytics", "score_min": "50"})
    assert [lead.name for lead in only_high.context["page"].object_list] == ["Add-on fan"]


def test_lead_export_uses_the_chosen_models_scores(marketer, analytics):
    lead = LeadFactory.create(email="ada@acme.test", score="80", score__grade="A")
    score_of(lead, score="15", fit="5", grade="D", model=analytics)
    response = browser(marketer).get(reverse("lead-export"), {"model": "analytics"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(row["email"], row["score"], row["grade"]) for row in rows] == [("ada@acme.test", "15.00", "D")]


def test_leads_list_hides_the_model_choice_with_one_model(marketer):
    LeadFactory.create(score="5")
    page = browser(marketer).get(reverse("lead-list")).content.decode()
    assert re.search(r'<input type="hidden" name="model"', page)
    assert "Score of model" not in page


# --- The queue and the handoff page --------------------------------------------------------------
def test_queue_filters_by_qualifying_model(rep, analytics):
    platform = HandoffFactory.create(lead=SqlLeadFactory.create(name="Platform SQL"))
    addon_lead = SqlLeadFactory.create(name="Add-on SQL")
    score_of(addon_lead, score="64", fit="30", grade="A", model=analytics)
    HandoffFactory.create(lead=addon_lead, model=analytics, priority=Decimal("64"))
    client = browser(rep)

    everything = client.get(reverse("sales-queue"))
    page = everything.content.decode()
    assert [item.handoff.lead.name for item in everything.context["queue"]] == ["Platform SQL", "Add-on SQL"]
    assert '<select name="model" id="id_model">' in page and "Analytics add-on" in page

    only_addon = client.get(reverse("sales-queue"), {"model": "analytics"})
    assert [item.handoff.lead.name for item in only_addon.context["queue"]] == ["Add-on SQL"]
    assert platform.lead.name not in only_addon.content.decode()

    overdue_addon = client.get(reverse("sales-queue"), {"model": "analytics", "show": "overdue"})
    assert overdue_addon.context["queue"] == [] and overdue_addon.context["overdue_count"] == 0


def test_queue_shows_the_qualifying_model_and_grade_with_the_score(rep, analytics):
    lead = SqlLeadFactory.create(name="Add-on SQL")
    score_of(lead, score="64", fit="30", grade="A", model=analytics)
    HandoffFactory.create(lead=lead, model=analytics, priority=Decimal("64"))
    response = browser(rep).get(reverse("sales-queue"))
    assert response.context["queue"][0].why.grade == "A"  # the qualifying model's grade, not the default's B
    row = response.content.decode().split('<table class="queue cards queue-cards">')[1]
    assert "A · 64.00" in row and "Analytics add-on" in row


def test_queue_without_a_second_model_shows_no_model_choice(rep):
    HandoffFactory.create()
    page = browser(rep).get(reverse("sales-queue")).content.decode()
    assert 'name="model"' not in page


def test_queue_with_an_unknown_model_shows_every_sql_and_says_so(rep, analytics):
    HandoffFactory.create(lead=SqlLeadFactory.create(name="Platform SQL"))
    response = browser(rep).get(reverse("sales-queue"), {"model": "nope"}, follow=True)
    assert [item.handoff.lead.name for item in response.context["queue"]] == ["Platform SQL"]
    assert "No scoring model “nope”" in response.content.decode()


def test_handoff_page_names_the_qualifying_model_and_every_model_that_qualified(rep, analytics):
    lead = SqlLeadFactory.create(name="Both")
    score_of(lead, score="64", fit="30", grade="A", model=analytics)
    handoff = HandoffFactory.create(lead=lead, model=analytics, qualified_by=["analytics", default_model().slug])
    page = browser(rep).get(reverse("handoff-detail", args=[handoff.public_id])).content.decode()
    assert "Why it qualified · Analytics add-on" in page
    assert f"Qualified by Analytics add-on, {default_model().name}" in page


# --- The rules editor per model ------------------------------------------------------------------
def test_rules_page_groups_rulesets_by_model(marketer, analytics):
    ruleset_through_services([behaviour("page_view", 1)], model=analytics, publish=False)
    response = browser(marketer).get(reverse("ruleset-list"))
    page = response.content.decode()
    groups = response.context["models"]
    assert [group["model"].slug for group in groups] == [default_model().slug, "analytics"]
    assert len(groups[1]["drafts"]) == 1 and groups[1]["published"] == []
    assert 'id="model-analytics"' in page and "No ruleset of Analytics add-on is published" in page
    assert "New model" not in page and "New draft" not in page  # marketers read


def test_admin_creates_a_model_with_field_errors(admin, analytics):
    client = browser(admin, enforce_csrf_checks=False)
    url = reverse("scoring-model-create")
    assert 'name="csrfmiddlewaretoken"' in client.get(url).content.decode()

    blank = client.post(url, {"name": "", "slug": "Not A Slug"})
    assert blank.status_code == 400
    assert blank.context["form"].errors == {
        "name": ["Name the model (e.g. the product line it scores interest in)."],
        "slug": ["A slug is lower-case letters, digits, '-' and '_' (at most 50), e.g. analytics-addon."],
    }
    taken = client.post(url, {"name": "analytics ADD-ON", "slug": "analytics"})
    assert taken.status_code == 400
    assert taken.context["form"].errors == {
        "name": ["Another model has this name."],
        "slug": ["Another model has this slug."],
    }
    assert "Another model has this slug." in taken.content.decode()

    created = client.post(url, {"name": "Security", "slug": "security", "description": "The security suite"})
    assert created.status_code == 302 and created["Location"].endswith("#model-security")
    model = ScoringModel.objects.get(slug="security")
    assert (model.name, model.description) == ("Security", "The security suite")
    assert list(ScoringModel.objects.values_list("slug", flat=True))[-1] == "security"  # last in order


def test_only_scoring_admins_create_models_and_drafts(marketer, rep, analytics):
    for user in (marketer, rep):
        client = browser(user)
        assert client.get(reverse("scoring-model-create")).status_code == 403
        assert client.post(reverse("scoring-model-create"), {"name": "X", "slug": "x"}).status_code == 403
        assert client.post(reverse("ruleset-create", args=["analytics"]), {"name": "X"}).status_code == 403
    assert not ScoringModel.objects.filter(slug="x").exists()


def test_admin_creates_a_draft_for_a_model_with_grades_windows_and_thresholds(admin, analytics):
    client = browser(admin)
    url = reverse("ruleset-create", args=["analytics"])
    form = client.get(url)
    assert form.status_code == 200 and "New draft of Analytics add-on" in form.content.decode()
    assert form.context["form"]["intent_window_days"].value() == "90"  # the defaults to start from

    fields = {
        "name": "Add-on v1",
        "mql_threshold": "30",
        "sql_threshold": "60",
        "intent_event_types": "demo_request",
        "grade_a_min": "40",
        "grade_b_min": "30",
        "grade_c_min": "50",  # above B's: refused on its field
        "grade_d_min": "0",
        "mql_min_grade": "C",
        "sql_min_grade": "B",
        "intent_window_days": "30",
        "requalify_threshold": "12",
        "mqa_threshold": "",
    }
    refused = client.post(url, fields)
    assert refused.status_code == 400
    assert "grade_b_min" in refused.context["form"].errors
    assert not RuleSet.objects.filter(model=analytics).exists()

    created = client.post(url, {**fields, "grade_c_min": "20", "mqa_threshold": "150"})
    ruleset = RuleSet.objects.get(model=analytics)
    assert created["Location"] == reverse("ruleset-detail", args=[ruleset.version])
    assert ruleset.status == RuleSetStatus.DRAFT
    assert (ruleset.grade_a_min, ruleset.grade_b_min, ruleset.grade_c_min, ruleset.grade_d_min) == (40, 30, 20, 0)
    assert (ruleset.mql_min_grade, ruleset.sql_min_grade, ruleset.intent_window_days) == ("C", "B", 30)
    assert (ruleset.requalify_threshold, ruleset.mqa_threshold) == (Decimal("12"), Decimal("150"))

    detail = client.get(reverse("ruleset-detail", args=[ruleset.version])).content.decode()
    assert "Analytics add-on" in detail and "30 days" in detail and "<b>B</b> ≥ 30" in detail


def test_admin_edits_a_drafts_grades_and_clears_its_mqa_threshold(admin, analytics):
    draft = ruleset_through_services([], model=analytics, publish=False, mqa_threshold=Decimal("100"))
    client = browser(admin)
    edit = client.get(reverse("ruleset-edit", args=[draft.version]))
    assert edit.context["form"]["mqa_threshold"].value() == "100"
    response = client.post(
        reverse("ruleset-edit", args=[draft.version]),
        {
            "name": draft.name,
            "mql_threshold": "30",
            "sql_threshold": "60",
            "intent_event_types": "demo_request",
            "grade_a_min": "50",
            "grade_b_min": "30",
            "grade_c_min": "10",
            "grade_d_min": "5",
            "mql_min_grade": "",
            "sql_min_grade": "A",
            "intent_window_days": "",  # required: refused on its field
            "requalify_threshold": "15",
            "mqa_threshold": "",
        },
    )
    assert response.status_code == 400 and "intent_window_days" in response.context["form"].errors
    fixed = client.post(
        reverse("ruleset-edit", args=[draft.version]),
        {**response.context["form"].data.dict(), "intent_window_days": "60"},
    )
    assert fixed.status_code == 302
    draft.refresh_from_db()
    assert (draft.grade_a_min, draft.sql_min_grade, draft.intent_window_days, draft.mqa_threshold) == (
        50,
        "A",
        60,
        None,
    )


def test_admin_adds_a_suppression_rule_and_a_rule_that_does_not_decay(admin, analytics):
    draft = ruleset_through_services([], model=analytics, publish=False)
    client = browser(admin)
    url = reverse("rule-create", args=[draft.version])
    form = client.get(url, {"kind": "suppress"}).content.decode()
    assert '<option value="suppress" selected>' in form and 'name="decays"' in form

    client.post(url, {"kind": "suppress", "name": "Unsubscribed", "event_type": "unsubscribe"})
    client.post(
        url,
        {"kind": "behaviour", "name": "Webinar", "points": "10", "event_type": "webinar_attended"},  # box unticked
    )
    refused = client.post(url, {"kind": "suppress", "name": "Bad", "points": "5", "event_type": "unsubscribe"})
    assert refused.status_code == 400
    assert refused.context["form"].errors["points"] == [
        "A suppression rule has no points (0): it blocks promotion outright."
    ]

    rules = {rule.name: rule for rule in draft.rules.all()}
    assert set(rules) == {"Unsubscribed", "Webinar"}
    assert (rules["Unsubscribed"].kind, rules["Unsubscribed"].points) == (RuleKind.SUPPRESS, 0)
    assert rules["Webinar"].decays is False
    edit = client.get(reverse("rule-edit", args=[draft.version, rules["Webinar"].pk])).content.decode()
    assert re.search(r'<input type="checkbox" name="decays"[^>]*>', edit)
    assert "checked" not in re.search(r'<input type="checkbox" name="decays"[^>]*>', edit).group(0)

    detail = client.get(reverse("ruleset-detail", args=[draft.version])).content.decode()
    assert "Suppression rules" in detail and "never promoted" in detail and "any unsubscribe" in detail
    assert "no decay" in detail and "+ Add suppression rule" in detail


# --- The dashboard -------------------------------------------------------------------------------
def _mql(grade, behaviour_points, *, model=None, fit="10"):
    lead = LeadFactory.create(stage=Stage.MQL, mql_at=timezone.now())
    score_of(lead, score=str(Decimal(fit) + Decimal(behaviour_points)), fit=fit, grade=grade, model=model)
    return lead


def test_dashboard_grade_matrix_counts_mqls(marketer, analytics):
    _mql("A", "5")
    _mql("A", "60")
    _mql("B", "10")  # a band's low end is inclusive
    _mql("B", "24.99")
    _mql("F", "30")
    new = LeadFactory.create(stage=Stage.NEW)
    score_of(new, score="90", fit="10", grade="A")  # not an MQL: not counted
    _mql("C", "70", model=analytics)  # another model's score: not in the default model's matrix

    response = browser(marketer).get(reverse("dashboard"))
    matrix = response.context["grade_matrix"]
    assert matrix.bands == ["under 10", "10–25", "25–50", "50+"]
    assert matrix.rows == [
        ("A", [1, 0, 0, 1], 2),
        ("B", [0, 2, 0, 0], 2),
        ("C", [0, 0, 0, 0], 0),
        ("D", [0, 0, 0, 0], 0),
        ("F", [0, 0, 1, 0], 1),
    ]
    assert matrix.total == 5
    assert "MQLs by grade and engagement" in response.content.decode()

    addon = browser(marketer).get(reverse("dashboard"), {"model": "analytics"})
    assert addon.context["grade_matrix"].rows[2] == ("C", [0, 0, 0, 1], 1)
    assert addon.context["model"] == analytics


def test_dashboard_grade_matrix_has_an_empty_state(marketer):
    LeadFactory.create(stage=Stage.NEW, score="5")
    page = browser(marketer).get(reverse("dashboard")).content.decode()
    assert f"No current MQL has a {default_model().name} score" in page


def test_dashboard_funnel_per_model_counts_the_leads_each_model_qualified(marketer, analytics):
    platform = default_model().slug
    both, platform_only, addon_only, by_hand = LeadFactory.create_batch(4)
    for lead, models in ((both, [platform, "analytics"]), (platform_only, [platform]), (addon_only, ["analytics"])):
        StageChange.objects.create(lead=lead, from_stage=Stage.NEW, to_stage=Stage.MQL, qualified_by=models)
    StageChange.objects.create(lead=addon_only, from_stage=Stage.MQL, to_stage=Stage.SQL, qualified_by=["analytics"])
    StageChange.objects.create(lead=addon_only, from_stage=Stage.SQL, to_stage=Stage.ACCEPTED)
    StageChange.objects.create(lead=by_hand, from_stage=Stage.NEW, to_stage=Stage.MQL, reason="by hand")
    # A slug that contains another's is not that model.
    services.scoring_model_create(name="Analytics Pro", slug="analytics-pro")
    StageChange.objects.create(lead=by_hand, from_stage=Stage.NEW, to_stage=Stage.SQL, qualified_by=["analytics-pro"])
    rollups_rebuild()  # the stage log above was written behind the lifecycle's back

    client = browser(marketer)
    default = client.get(reverse("dashboard")).context["model_funnel"]
    assert (default.created, default.mql, default.sql, default.accepted) == (4, 2, 0, 0)
    addon = client.get(reverse("dashboard"), {"model": "analytics"})
    funnel = addon.context["model_funnel"]
    assert (funnel.created, funnel.mql, funnel.sql, funnel.accepted) == (4, 2, 1, 1)
    page = addon.content.decode()
    assert "Qualified by Analytics add-on" in page and '<option value="analytics" selected>' in page


def test_an_unknown_model_on_the_list_and_the_dashboard_is_explained_and_the_default_shown(marketer, analytics):
    LeadFactory.create(name="Ada", score="40")
    client = browser(marketer)
    listing = client.get(reverse("lead-list"), {"model": "nope"})
    assert [lead.name for lead in listing.context["page"].object_list] == ["Ada"]
    assert "No scoring model “nope”: showing the default model&#x27;s scores." in listing.content.decode()
    dashboard = client.get(reverse("dashboard"), {"model": "nope"})
    page = dashboard.content.decode()
    assert dashboard.context["model"] == default_model()
    assert "No scoring model “nope”: showing the default model." in page and "last 30 days instead" not in page


def test_lead_page_stage_history_names_the_models_that_qualified_it(marketer, analytics):
    lead = LeadFactory.create(stage=Stage.MQL, score="50")
    StageChange.objects.create(
        lead=lead, from_stage=Stage.NEW, to_stage=Stage.MQL, qualified_by=["default", "analytics"], reason="Score 50"
    )
    page = browser(marketer).get(reverse("lead-detail", args=[lead.public_id])).content.decode()
    assert "scoring · default, analytics" in page
