"""The what-if preview shows the change (issue 17, item 8): the draft against the published
ruleset rule by rule, the leads each rule matches, the top movers both ways, and the leads
whose stage the draft changes apart from those already below under the published rules."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from leadflow.leads.models import Lead, Stage, StageChange
from scoring import selectors, services
from scoring.models import RuleSet, Score
from scoring.selectors import PREVIEW_MOVERS
from tests.factories import EventFactory, LeadFactory
from tests.helpers import behaviour, browser, client_for, fit

PUBLISHED_RULES = [
    {**fit("company_size", "gte", 50, 10), "name": "Big company"},
    {**fit("industry", "eq", "software", 5), "name": "Software"},
    {**behaviour("pricing_view", 10, window_days=30), "name": "Pricing views"},
    {**behaviour("webinar_attended", 5), "name": "Webinars"},
]


def events(lead, event_type, count, *, days_ago=1):
    EventFactory.create_batch(count, lead=lead, type=event_type, occurred_at=timezone.now() - timedelta(days=days_ago))


@pytest.fixture
def published_v(publish_ruleset):
    """Published: Big company (size ≥ 50) 10, Software 5, Pricing views 10 (30 days),
    Webinars 5; MQL 20, SQL 40; intent: contact requests only."""
    return publish_ruleset(PUBLISHED_RULES, mql=20, sql=40, intent=("contact_request",))


@pytest.fixture
def draft_v(published_v, admin):
    """The published ruleset cloned, then: Big company needs 100 people and gives 20;
    Software renamed; Webinars removed; Germany (+3) added; MQL 25, SQL 50; demo
    requests are intent too. Pricing views is unchanged."""
    draft = services.ruleset_clone(ruleset=published_v, user=admin)
    rules = {rule.name: rule for rule in draft.rules.all()}
    services.rule_update(rule=rules["Big company"], changes=services.RuleChanges(points=Decimal(20), value=100))
    services.rule_update(rule=rules["Software"], changes=services.RuleChanges(name="Software industry"))
    services.rule_delete(rule=rules["Webinars"])
    services.rule_create(
        ruleset=draft, kind="fit", name="Germany", attribute="country", operator="eq", value="DE", points=Decimal(3)
    )
    services.ruleset_update(
        ruleset=draft,
        changes=services.RuleSetChanges(
            mql_threshold=Decimal(25),
            sql_threshold=Decimal(50),
            intent_event_types=["contact_request", "demo_request"],
        ),
    )
    draft.refresh_from_db()
    return draft


@pytest.fixture
def cast(published_v):
    """Leads scored under the published ruleset (stored score → score under the draft):
    newly_mql 15 → 28; no_longer_mql 25 → 10; stale_mql 10 → 10; back_mql 15 → 28;
    no_longer_sql 40 → 20; stale_sql 10 → 10; newly_sql 45 → 58 (a demo request, intent
    under the draft only); mid_size 10 → 0; old_pricing 0 → 0 (its view is 40 days old)."""
    big = {"company_size": 200, "industry": "Software", "country": "DE"}
    leads = {
        "newly_mql": LeadFactory.create(name="Newly MQL", **big),
        "no_longer_mql": LeadFactory.create(name="No longer MQL", stage=Stage.MQL),
        "stale_mql": LeadFactory.create(name="Stale MQL", stage=Stage.MQL),
        "back_mql": LeadFactory.create(name="Back MQL", stage=Stage.MQL, **big),
        "no_longer_sql": LeadFactory.create(name="No longer SQL", stage=Stage.SQL),
        "stale_sql": LeadFactory.create(name="Stale SQL", stage=Stage.SQL),
        "newly_sql": LeadFactory.create(name="Newly SQL", stage=Stage.MQL, **big),
        "mid_size": LeadFactory.create(name="Mid size", company_size=60),
        "old_pricing": LeadFactory.create(name="Old pricing"),
    }
    events(leads["no_longer_mql"], "webinar_attended", 3)
    events(leads["no_longer_mql"], "pricing_view", 1)
    events(leads["stale_mql"], "pricing_view", 1)
    events(leads["no_longer_sql"], "webinar_attended", 4)
    events(leads["no_longer_sql"], "pricing_view", 2)
    events(leads["stale_sql"], "pricing_view", 1)
    events(leads["newly_sql"], "pricing_view", 3)
    events(leads["newly_sql"], "demo_request", 1)
    events(leads["old_pricing"], "pricing_view", 1, days_ago=40)
    services.leads_score(lead_ids=[lead.pk for lead in leads.values()])
    stored = dict(Score.objects.values_list("lead__name", "score"))
    assert stored == {
        "Newly MQL": Decimal("15.00"),
        "No longer MQL": Decimal("25.00"),
        "Stale MQL": Decimal("10.00"),
        "Back MQL": Decimal("15.00"),
        "No longer SQL": Decimal("40.00"),
        "Stale SQL": Decimal("10.00"),
        "Newly SQL": Decimal("45.00"),
        "Mid size": Decimal("10.00"),
        "Old pricing": Decimal("0.00"),
    }
    assert {lead.name: lead.stage for lead in Lead.objects.all()}["Newly MQL"] == Stage.NEW  # 15 < 20
    return leads


def preview_api(user, ruleset):
    response = client_for(user).post(f"/api/v1/rulesets/{ruleset.version}/preview")
    assert response.status_code == 200, response.content[:500]
    return response.json()


def names(rows):
    return [row["name"] for row in rows]


# --- The diff ---------------------------------------------------------------------------------
def test_the_diff_lists_rules_added_removed_changed_and_unchanged_with_what_changed(admin, draft_v, cast):
    diff = preview_api(admin, draft_v)["diff"]
    published = RuleSet.objects.get(status="published")
    assert diff["published_version"] == published.version
    assert diff["no_changes"] is False
    assert names(diff["added"]) == ["Germany"]
    assert names(diff["removed"]) == ["Webinars"]
    assert names(diff["unchanged"]) == ["Pricing views"]
    changed = {row["name"]: row["changes"] for row in diff["changed"]}
    assert changed == {
        "Big company": [
            {"field": "points", "label": "Points", "before": "+10.00", "after": "+20.00"},
            {"field": "condition", "label": "Condition", "before": "Company size ≥ 50", "after": "Company size ≥ 100"},
        ],
        # Matched by its definition, not its name: one rule renamed, not one removed and one added.
        "Software industry": [{"field": "name", "label": "Name", "before": "Software", "after": "Software industry"}],
    }
    assert diff["added"][0]["condition"] == "Country equals DE"
    assert diff["removed"][0]["rule_id"] is None and diff["removed"][0]["published_rule_id"] is not None
    assert {(row["label"], row["before"], row["after"]) for row in diff["settings"]} == {
        ("MQL threshold", "20.00", "25.00"),
        ("SQL threshold", "40.00", "50.00"),
        ("Intent events", "contact_request", "contact_request, demo_request"),
    }


def test_a_behaviour_rule_change_names_its_cap_window_and_decay_old_and_new(admin, published_v):
    draft = services.ruleset_clone(ruleset=published_v, user=admin)
    pricing = draft.rules.get(name="Pricing views")
    services.rule_update(
        rule=pricing, changes=services.RuleChanges(max_points=Decimal(30), window_days=14, decays=False)
    )
    (row,) = preview_api(admin, draft)["diff"]["changed"]
    assert row["name"] == "Pricing views"
    assert [(c["label"], c["before"], c["after"]) for c in row["changes"]] == [
        ("Cap", "no cap", "at most +30.00 per lead"),
        ("Window", "the last 30 days", "the last 14 days"),
        ("Decay", "decays", "keeps its full value"),
    ]


def test_a_draft_identical_to_the_published_ruleset_shows_no_changes(admin, published_v, cast):
    draft = services.ruleset_clone(ruleset=published_v, user=admin)
    body = preview_api(admin, draft)
    assert body["diff"]["no_changes"] is True
    assert body["diff"]["added"] == body["diff"]["removed"] == body["diff"]["changed"] == []
    assert body["diff"]["settings"] == []
    assert len(body["diff"]["unchanged"]) == len(PUBLISHED_RULES)
    assert body["movers"] == {"up": [], "down": []}
    assert body["counts"]["enter_mql"] == body["counts"]["no_longer_mql"] == body["counts"]["no_longer_sql"] == 0
    page = browser(admin).get(reverse("ruleset-preview", args=[draft.version])).content.decode()
    assert "No changes" in page and f"the same rules and settings as the published v{published_v.version}" in page


def test_a_model_without_a_published_ruleset_shows_every_rule_as_added(admin, publish_ruleset):
    RuleSet.objects.filter(status="published").update(status="archived")
    draft = publish_ruleset([behaviour("page_view", 1)], publish=False)
    body = preview_api(admin, draft)
    assert body["published_version"] is None and body["diff"]["no_changes"] is False
    assert names(body["diff"]["added"]) == ["page_view rule"]
    page = browser(admin).get(reverse("ruleset-preview", args=[draft.version])).content.decode()
    assert "has no published ruleset yet" in page


# --- Leads matched by each rule ------------------------------------------------------------------
def test_each_rule_counts_the_leads_it_matches_under_the_draft_and_changed_rules_under_published(admin, draft_v, cast):
    diff = preview_api(admin, draft_v)["diff"]
    rows = {row["name"]: row for status in ("added", "removed", "changed", "unchanged") for row in diff[status]}
    # Big company: size ≥ 100 under the draft (3 leads of 200), ≥ 50 under published (and the 60).
    assert (rows["Big company"]["leads"], rows["Big company"]["leads_published"]) == (3, 4)
    assert rows["Software industry"]["leads"] == 3
    assert rows["Germany"]["leads"] == 3 and rows["Germany"]["leads_published"] is None
    # A pricing view 40 days old is outside the rule's 30-day window.
    assert rows["Pricing views"]["leads"] == 5
    assert rows["Webinars"]["leads"] is None and rows["Webinars"]["leads_published"] == 2


def test_match_counts_skip_erased_leads_and_see_event_suppressions_of_any_age(admin, published_v, cast):
    draft = services.ruleset_clone(ruleset=published_v, user=admin)
    services.rule_create(
        ruleset=draft, kind="suppress", name="Webinar people", event_type="webinar_attended", points=Decimal(0)
    )
    Lead.objects.filter(pk=cast["no_longer_sql"].pk).update(erased_at=timezone.now())
    events(cast["stale_mql"], "webinar_attended", 1, days_ago=400)
    rows = {row["name"]: row for row in preview_api(admin, draft)["diff"]["added"]}
    assert rows["Webinar people"]["leads"] == 2  # no_longer_mql and stale_mql; not the erased one


# --- Top movers ------------------------------------------------------------------------------------
def test_top_movers_list_the_biggest_increases_and_decreases_both_ways(admin, draft_v, cast):
    movers = preview_api(admin, draft_v)["movers"]
    # Ties (+13.00 each) in the leads' order.
    assert [(row["name"], row["change"]) for row in movers["up"]] == [
        ("Newly MQL", "13.00"),
        ("Back MQL", "13.00"),
        ("Newly SQL", "13.00"),
    ]
    assert [(row["name"], row["change"]) for row in movers["down"]] == [
        ("No longer SQL", "-20.00"),
        ("No longer MQL", "-15.00"),
        ("Mid size", "-10.00"),
    ]
    assert movers["down"][0]["score_before"] == "40.00" and movers["down"][0]["score_after"] == "20.00"
    assert movers["up"][0]["id"] == str(cast["newly_mql"].public_id)


def test_top_movers_keep_the_ten_biggest_of_each_direction(admin, published_v):
    draft = services.ruleset_clone(ruleset=published_v, user=admin)
    services.rule_create(
        ruleset=draft, kind="behaviour", name="Downloads", event_type="content_download", points=Decimal(1)
    )
    leads = LeadFactory.create_batch(PREVIEW_MOVERS + 2)
    for count, lead in enumerate(leads, start=1):
        events(lead, "content_download", count)
    up = preview_api(admin, draft)["movers"]["up"]
    assert [row["change"] for row in up] == [f"{n}.00" for n in range(PREVIEW_MOVERS + 2, 2, -1)]


def test_the_page_links_each_top_mover_to_its_lead(admin, draft_v, cast):
    page = browser(admin).get(reverse("ruleset-preview", args=[draft_v.version])).content.decode()
    assert "Top movers up" in page and "Top movers down" in page
    for key in ("newly_mql", "no_longer_sql", "mid_size"):
        assert reverse("lead-detail", args=[cast[key].public_id]) in page
    assert "+13.00" in page and "-20.00" in page


# --- Stage changes -----------------------------------------------------------------------------------
def test_stage_changes_are_separated_from_leads_already_below_under_the_published_rules(admin, draft_v, cast):
    body = preview_api(admin, draft_v)
    counts = body["counts"]
    assert names(body["enter_mql"]) == ["Newly MQL"]
    assert names(body["enter_sql"]) == ["Newly SQL"]
    assert names(body["no_longer_mql"]) == ["No longer MQL"]
    assert names(body["already_below_mql"]) == ["Stale MQL"]
    assert names(body["no_longer_sql"]) == ["No longer SQL"]
    assert names(body["already_below_sql"]) == ["Stale SQL"]
    assert (counts["back_above_mql"], counts["back_above_sql"]) == (1, 0)
    # The totals of before stay: every MQL (SQL) below the draft's threshold.
    assert names(body["leave_mql"]) == ["No longer MQL", "Stale MQL"]
    assert (counts["leave_mql"], counts["leave_sql"]) == (2, 2)
    categories = {category["key"]: (category["label"], category["count"]) for category in body["categories"]}
    assert categories["no_longer_mql"] == ("MQLs that would no longer qualify", 1)
    assert categories["already_below_sql"] == ("SQLs already below under the published rules", 1)


def test_the_page_names_each_stage_category_and_writes_nothing(admin, draft_v, cast):
    stages = dict(Lead.objects.values_list("id", "stage"))
    changes = StageChange.objects.count()
    response = browser(admin).get(reverse("ruleset-preview", args=[draft_v.version]))
    page = response.content.decode()
    for title in (
        "Would newly become MQL",
        "Would newly become SQL",
        "MQLs that would no longer qualify",
        "SQLs that would no longer qualify",
        "MQLs already below under the published rules",
        "SQLs already below under the published rules",
    ):
        assert title in page
    assert "Would no longer qualify" in page and "not the draft&#x27;s doing" in page
    assert [row["name"] for row in response.context["preview"]["already_below_mql"]] == ["Stale MQL"]
    assert "Country equals DE" in page and "Company size ≥ 100" in page and "+20.00" in page
    published = RuleSet.objects.get(status="published").version
    assert f"4 under v{published}" in page  # Big company matches 4 leads under the published rules
    assert dict(Lead.objects.values_list("id", "stage")) == stages and StageChange.objects.count() == changes


# --- Cost and permissions -----------------------------------------------------------------------------
def test_the_preview_costs_the_same_few_queries_however_many_leads_and_rules(
    admin, draft_v, cast, django_assert_max_num_queries
):
    client = browser(admin)
    url = reverse("ruleset-preview", args=[draft_v.version])
    client.get(url)  # warm: the session, the event types seen
    with django_assert_max_num_queries(25) as few:
        assert client.get(url).status_code == 200
    for n in range(5):
        services.rule_create(
            ruleset=draft_v,
            kind="fit",
            name=f"Extra {n}",
            attribute="country",
            operator="eq",
            value=f"C{n}",
            points=Decimal(1),
        )
    LeadFactory.create_batch(10, country="DE")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(url).status_code == 200
    api = client_for(admin)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert api.post(f"/api/v1/rulesets/{draft_v.version}/preview").status_code == 200


@pytest.mark.parametrize("role", ["marketer", "rep", "outsider"])
def test_only_scoring_admins_preview(role, request, draft_v):
    user = request.getfixturevalue(role)
    assert client_for(user).post(f"/api/v1/rulesets/{draft_v.version}/preview").status_code == 403
    assert browser(user).get(reverse("ruleset-preview", args=[draft_v.version])).status_code == 403


def test_a_staff_member_previews_and_an_unknown_version_is_404(admin, draft_v):
    staff = type(admin).objects.create_user(username="boss", is_staff=True)
    assert browser(staff).get(reverse("ruleset-preview", args=[draft_v.version])).status_code == 200
    assert client_for(admin).post("/api/v1/rulesets/99999/preview").status_code == 404
    assert browser(admin).get(reverse("ruleset-preview", args=[99999])).status_code == 404


def test_each_lead_is_previewed_beside_its_stage_and_stored_score(admin, draft_v, cast):
    """The preview reads every lead's stage and stored score beside its draft score (on
    PostgreSQL one joined stream, holding no lead: in dicts they cost 500 MB at 1M leads).
    Unscored leads have no stored score, and count from 0."""
    LeadFactory.create_batch(3, name="Unscored")
    draft = selectors.ruleset_by_version(draft_v.version)
    assert draft is not None
    spec, as_of = selectors.ruleset_spec(draft), timezone.now()
    stages = dict(Lead.objects.values_list("id", "stage"))
    stored = dict(Score.objects.filter(model_id=spec.model_id).values_list("lead_id", "score"))
    expected = [(row.id, row.score, stages[row.id], stored.get(row.id)) for row in selectors.iter_scores(spec, as_of)]
    assert len(expected) == 12 and sum(1 for *_, score in expected if score is None) == 3
    beside = [
        (row.id, row.score, stage, score) for row, stage, _at, score in selectors._scores_beside_leads(spec, as_of)
    ]
    assert beside == expected
    preview = selectors.ruleset_preview(ruleset=draft)
    assert preview.leads == 12 and preview.stages_before == {
        stage: sum(1 for _, _, lead_stage, _ in expected if lead_stage == stage) for stage in set(stages.values())
    }
