"""Scoring models: several per lead, fit grades, qualification that holds up (intent
window, suppression, no-decay rules, requalification after recycling), the narrow
scores table and its set-based transitions, and the models API."""

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection, transaction

from handoff.models import Handoff
from leadflow.leads.models import Lead, Stage, StageChange
from scoring import services
from scoring.models import RescoreRun, RescoreState, RuleSetStatus, Score, ScoringModel
from tests.factories import EventFactory, LeadFactory, default_model
from tests.helpers import behaviour, client_for, fit, score_row

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EVENT_IDS = itertools.count()


def post(client, *events, email="ada@example.com", **lead):
    """Post events (type, age in days) for one lead; scoring runs after the commit."""
    body = {
        "events": [
            {
                "event_id": f"{email}-{event_type}-{next(EVENT_IDS)}",
                "type": event_type,
                "occurred_at": (NOW - timedelta(days=age)).isoformat(),
                "lead": {"email": email, **lead},
            }
            for event_type, age in events
        ]
    }
    response = client.post("/api/v1/events", json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    return Lead.objects.get(email=email)


@pytest.fixture
def send(ingest_client, django_capture_on_commit_callbacks):
    def sender(*events, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            lead = post(ingest_client, *events, **kwargs)
        lead.refresh_from_db()  # scored after the commit
        return lead

    return sender


@pytest.fixture
def addon(db):
    return services.scoring_model_create(name="Analytics add-on", slug="analytics")


# --- Several models --------------------------------------------------------------------------
@time_machine.travel(NOW, tick=False)
def test_two_models_score_the_same_lead_and_the_one_whose_criteria_hold_qualifies_it(publish_ruleset, addon, send):
    publish_ruleset([behaviour("page_view", 10), behaviour("demo_request", 10)], mql=50, sql=80)
    publish_ruleset(
        [behaviour("report_view", 20), behaviour("demo_request", 20)],
        model=addon,
        mql=30,
        sql=50,
        intent=["demo_request"],
    )

    lead = send(("page_view", 1), ("report_view", 1), ("report_view", 2))
    assert (score_row(lead).score, score_row(lead, addon).score) == (Decimal(10), Decimal(40))
    assert lead.stage == Stage.MQL
    change = StageChange.objects.get(lead=lead, to_stage=Stage.MQL)
    assert (change.qualified_by, change.score) == (["analytics"], Decimal(40))

    lead = send(("demo_request", 0))
    assert lead.stage == Stage.SQL, "the add-on's SQL criteria hold (60 ≥ 50) though the default's do not (20 < 80)"
    handoff = Handoff.objects.get(lead=lead)
    assert (handoff.model, handoff.qualified_by, handoff.priority) == (addon, ["analytics"], Decimal(60))


@time_machine.travel(NOW, tick=False)
def test_a_lead_both_models_qualify_at_once_records_both_and_sorts_by_the_first(publish_ruleset, addon, send):
    publish_ruleset([behaviour("demo_request", 70)], mql=30, sql=60)
    publish_ruleset([behaviour("demo_request", 90)], model=addon, mql=30, sql=60)
    lead = send(("demo_request", 0))
    assert [c.qualified_by for c in StageChange.objects.filter(lead=lead).order_by("id")] == [
        ["default", "analytics"],
        ["default", "analytics"],
    ]
    handoff = Handoff.objects.get(lead=lead)
    assert (handoff.model.slug, handoff.priority) == ("default", Decimal(70))


def test_existing_rulesets_and_scores_belong_to_the_default_model(db):
    (model,) = ScoringModel.objects.all()
    assert (model.slug, model.name) == ("default", "Default")
    published = model.rulesets.get(status=RuleSetStatus.PUBLISHED)
    assert published.version == 1


def test_the_migration_moves_each_leads_score_into_the_default_model(transactional_db):
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    before = [("leads", "0004_stagechange_from_scoring"), ("scoring", "0004_stagechange_moves_to_leads")]
    before.append(("handoff", "0004_webhook_sending_lease"))
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    lead_model = old.get_model("leads", "Lead")
    ruleset_model = old.get_model("scoring", "RuleSet")
    if not ruleset_model.objects.filter(status="published").exists():  # a transactional test may start empty
        ruleset_model.objects.create(
            version=1, name="Old", status="published", mql_threshold=Decimal(30), sql_threshold=Decimal(60)
        )
    scored = lead_model.objects.create(
        email="old@x.io",
        stage="mql",
        fit_score=Decimal("25"),
        behaviour_score=Decimal("30"),
        score=Decimal("55"),
        scored_at=NOW,
        ruleset_version=1,
    )
    lead_model.objects.create(email="never@x.io")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    (row,) = Score.objects.all()
    assert (row.lead_id, row.model.slug, row.score, row.fit, row.behaviour, row.grade) == (
        scored.pk,
        "default",
        Decimal("55"),
        Decimal("25"),
        Decimal("30"),
        "B",
    )
    assert (row.ruleset_version, row.computed_at) == (1, NOW)
    run = RescoreRun.objects.get()
    assert (run.reason, run.state, run.ruleset.version) == ("models", RescoreState.QUEUED, 1), "the sweep rescores"


# --- Grades ------------------------------------------------------------------------------------
@time_machine.travel(NOW, tick=False)
def test_fit_maps_to_a_grade_by_the_models_thresholds(publish_ruleset, send):
    publish_ruleset(
        [fit("job_title", "contains", "vp", 30), fit("industry", "eq", "software", 12), behaviour("page_view", 1)],
        mql=100,
        sql=200,
        grade_a_min=Decimal(40),
        grade_b_min=Decimal(30),
        grade_c_min=Decimal(12),
        grade_d_min=Decimal(1),
    )
    grades = {
        email: score_row(send(("page_view", 0), email=email, **profile)).grade
        for email, profile in {
            "a@x.io": {"job_title": "VP Sales", "industry": "Software"},
            "b@x.io": {"job_title": "VP Sales"},
            "c@x.io": {"industry": "software"},
            "f@x.io": {},
        }.items()
    }
    assert grades == {"a@x.io": "A", "b@x.io": "B", "c@x.io": "C", "f@x.io": "F"}


@time_machine.travel(NOW, tick=False)
def test_an_sql_can_require_a_minimum_grade(publish_ruleset, send):
    publish_ruleset(
        [fit("industry", "eq", "software", 20), behaviour("demo_request", 70)], mql=30, sql=60, sql_min_grade="B"
    )
    poor = send(("demo_request", 0), email="poor@x.io")
    good = send(("demo_request", 0), email="good@x.io", industry="Software")
    assert (score_row(poor).grade, poor.stage) == ("D", Stage.MQL)
    assert (score_row(good).grade, good.stage) == ("B", Stage.SQL)


def test_grade_thresholds_must_descend_field_by_field(admin):
    response = client_for(admin).post(
        "/api/v1/rulesets",
        {"name": "G", "mql_threshold": 10, "sql_threshold": 20, "grade_a_min": 10, "grade_b_min": 20},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"grade_a_min"}


# --- Qualification that holds up ------------------------------------------------------------------
@time_machine.travel(NOW, tick=False)
def test_a_hand_raise_older_than_the_intent_window_does_not_make_an_sql(publish_ruleset, send):
    publish_ruleset([behaviour("page_view", 40, decays=False), behaviour("demo_request", 30)], mql=30, sql=60)
    stale = send(("page_view", 1), ("demo_request", 400), email="stale@x.io")
    fresh = send(("page_view", 1), ("demo_request", 89), email="fresh@x.io")
    assert (stale.stage, score_row(stale).last_intent_at) == (Stage.MQL, None)
    assert fresh.stage == Stage.SQL


@time_machine.travel(NOW, tick=False)
def test_a_suppressed_lead_is_never_promoted_and_says_by_which_rule(publish_ruleset, send, marketer):
    rules = [
        behaviour("demo_request", 100),
        {"kind": "suppress", "name": "Competitor", "attribute": "email_domain", "operator": "eq", "value": "rival.io"},
        {"kind": "suppress", "name": "Unsubscribed", "event_type": "unsubscribe"},
    ]
    ruleset = publish_ruleset(rules, mql=30, sql=60)
    rival = send(("demo_request", 0), email="spy@rival.io")
    gone = send(("unsubscribe", 300), ("demo_request", 0), email="gone@x.io")
    keen = send(("demo_request", 0), email="keen@x.io")
    assert (rival.stage, gone.stage, keen.stage) == (Stage.NEW, Stage.NEW, Stage.SQL)
    competitor, unsubscribed = ruleset.rules.filter(kind="suppress").order_by("position")
    assert (score_row(rival).suppressed_by, score_row(gone).suppressed_by) == (competitor.pk, unsubscribed.pk)
    body = client_for(marketer).get(f"/api/v1/leads/{rival.public_id}/score").json()
    assert (body["suppressed_by"]["name"], body["score"]) == ("Competitor", "100.00"), "it still scores"


def test_a_suppression_rule_has_no_points(admin):
    client = client_for(admin)
    version = client.post("/api/v1/rulesets", {"name": "S", "mql_threshold": 10, "sql_threshold": 20}).json()["version"]
    rule = {
        "kind": "suppress",
        "name": "Students",
        "attribute": "email_domain",
        "operator": "contains",
        "value": ".edu",
    }
    assert client.post(f"/api/v1/rulesets/{version}/rules", {**rule, "points": 5}, format="json").json() == {
        "points": ["A suppression rule has no points (0): it blocks promotion outright."]
    }
    assert client.post(f"/api/v1/rulesets/{version}/rules", {**rule, "points": 0}, format="json").status_code == 201


@time_machine.travel(NOW, tick=False)
def test_a_rule_may_opt_out_of_decay(publish_ruleset, send):
    publish_ruleset(
        [behaviour("webinar_attended", 20, decays=False), behaviour("page_view", 20)], mql=100, sql=200, half_life=10
    )
    lead = send(("webinar_attended", 10), ("page_view", 10))
    assert score_row(lead).behaviour == Decimal("30.00"), "20 kept whole + 20 halved after one half-life"


@time_machine.travel(NOW, tick=False)
def test_a_recycled_lead_requalifies_only_on_engagement_after_its_recycling(publish_ruleset, send, marketer):
    publish_ruleset(
        [behaviour("page_view", 10, decays=False), behaviour("demo_request", 50, decays=False)],
        mql=30,
        sql=60,
        requalify_threshold=Decimal(25),
    )
    lead = send(("page_view", 5), ("page_view", 5), ("page_view", 5))
    assert lead.stage == Stage.MQL
    lead = send(("demo_request", 4))
    assert lead.stage == Stage.SQL
    response = client_for(marketer).post(
        f"/api/v1/leads/{lead.public_id}/stage", {"stage": "recycled", "reason": "Not now"}, format="json"
    )
    assert response.status_code == 201
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        lead = send(("page_view", -1), ("page_view", -1))  # 20 points since: below 25
        assert (lead.stage, score_row(lead).behaviour_since_recycled) == (Stage.RECYCLED, Decimal(20))
        lead = send(("page_view", -1))
        assert lead.stage == Stage.MQL, "30 points of new engagement"
        assert score_row(lead).last_intent_at is not None, "the old demo request is inside the window…"
        assert lead.stage != Stage.SQL, "…but it came before the recycling"
        lead = send(("demo_request", -1))
        assert lead.stage == Stage.SQL


# --- The bulk engine's transitions equal the single-lead path's -------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_full_rescore_moves_the_same_leads_as_the_single_lead_path(publish_ruleset):
    """The same leads and rules through the set-based statements (PostgreSQL) and the
    single-lead engine: stages, StageChanges and handoffs are identical."""
    with time_machine.travel(NOW, tick=False):
        ruleset = publish_ruleset(
            [
                behaviour("page_view", 10, max_points=40),
                behaviour("demo_request", 30),
                fit("industry", "eq", "software", 20),
                {
                    "kind": "suppress",
                    "name": "Rival",
                    "attribute": "email_domain",
                    "operator": "eq",
                    "value": "rival.io",
                },
            ],
            mql=30,
            sql=60,
            sql_min_grade="C",
            requalify_threshold=Decimal(20),
            publish=False,
        )
        cases = [
            ("new", None, ["page_view"] * 3),
            ("new", None, ["page_view"] * 4 + ["demo_request"]),
            ("new", None, ["demo_request", "demo_request"]),
            ("mql", None, ["demo_request", "page_view", "page_view"]),
            ("recycled", 3, ["page_view"] * 4),
            ("recycled", 3, ["page_view", "page_view", "page_view", "page_view"]),
            ("recycled", 30, ["page_view"] * 4 + ["demo_request"]),
            ("sql", None, ["page_view"] * 9),
        ]
        leads = []
        for n, (stage, recycled_days, types) in enumerate(cases * 2):
            domain = "rival.io" if n == len(cases) else "x.io"
            lead = LeadFactory.create(
                email=f"l{n}@{domain}",
                stage=stage,
                industry="Software" if n % 3 else "",
                recycled_at=NOW - timedelta(days=recycled_days) if recycled_days else None,
            )
            for m, event_type in enumerate(types):
                EventFactory.create(lead=lead, type=event_type, occurred_at=NOW - timedelta(days=m + (n % 5)))
            leads.append(lead)
        services.ruleset_publish(ruleset=ruleset, user=None)

    def outcome():
        return (
            list(Lead.objects.order_by("id").values_list("id", "stage", "mql_at", "sql_at")),
            sorted(
                StageChange.objects.values_list(
                    "lead_id", "from_stage", "to_stage", "reason", "qualified_by", "ruleset_version", "score"
                )
            ),
            sorted(Handoff.objects.values_list("lead_id", "priority", "model__slug")),
            sorted(Score.objects.values_list("lead_id", "score", "fit", "grade", "suppressed_by")),
        )

    run = RescoreRun.objects.get(ruleset=ruleset)
    bulk = _executed(run, postgres=True, outcome=outcome)
    single = _executed(run, postgres=False, outcome=outcome)
    assert bulk == single
    stages = {stage for _id, stage, *_ in bulk[0]}
    assert {Stage.MQL, Stage.SQL, Stage.RECYCLED, Stage.NEW} <= stages, "the cases cover every kind of transition"


def _executed(run, *, postgres, outcome):
    """Run the rescore with one engine inside a transaction that is rolled back."""
    from unittest import mock

    with (
        transaction.atomic(),
        mock.patch.object(services, "_is_postgres", return_value=postgres),
        time_machine.travel(NOW + timedelta(minutes=5), tick=False),
    ):
        services.rescore_run_execute(run=run)
        result = outcome()
        transaction.set_rollback(True)
    RescoreRun.objects.filter(pk=run.pk).update(state=RescoreState.QUEUED, attempts=0, last_lead_id=0, done=0)
    return result


# --- The models API -----------------------------------------------------------------------------------
def test_scoring_admins_create_models_with_field_level_errors(admin, marketer, rep):
    url = "/api/v1/models"
    assert client_for(marketer).post(url, {"name": "X", "slug": "x"}).status_code == 403
    assert client_for(rep).patch(f"{url}/default", {"name": "Mine"}, format="json").status_code == 403
    assert client_for(rep).get(url).status_code == 200, "every role reads the models (the queue names them)"
    assert ScoringModel.objects.get().name == "Default"
    client = client_for(admin)
    bad = client.post(url, {"name": " ", "slug": "Not A Slug", "position": 2147483647}, format="json")
    assert (bad.status_code, set(bad.json())) == (400, {"name", "slug", "position"})
    taken = client.post(url, {"name": "Default", "slug": "default"}, format="json")
    assert (taken.status_code, set(taken.json())) == (400, {"name", "slug"})
    created = client.post(url, {"name": "Platform", "slug": "platform", "description": "Core"}, format="json")
    assert created.status_code == 201
    assert created.json()["published_version"] is None
    assert [m["slug"] for m in client.get(url).json()] == ["default", "platform"]
    renamed = client.patch(f"{url}/platform", {"name": "Core platform"}, format="json")
    assert renamed.json()["name"] == "Core platform"
    assert client.get(f"{url}/nope").status_code == 404


def test_a_model_that_scored_leads_cannot_be_deleted_but_an_unpublished_one_can(admin):
    client = client_for(admin)
    assert client.delete("/api/v1/models/default").status_code == 409
    client.post("/api/v1/models", {"name": "Trial", "slug": "trial"}, format="json")
    draft = client.post(
        "/api/v1/rulesets", {"model": "trial", "name": "T", "mql_threshold": 5, "sql_threshold": 9}, format="json"
    )
    assert draft.json()["model"] == "trial"
    assert client.delete("/api/v1/models/trial").status_code == 204
    assert not ScoringModel.objects.filter(slug="trial").exists()


def test_rulesets_are_per_model_and_publishing_one_keeps_the_others(admin, addon, publish_ruleset):
    default_published = default_model().rulesets.get(status=RuleSetStatus.PUBLISHED)
    publish_ruleset([behaviour("report_view", 5)], model=addon)
    default_published.refresh_from_db()
    assert default_published.status == RuleSetStatus.PUBLISHED
    client = client_for(admin)
    assert [r["model"] for r in client.get("/api/v1/rulesets?model=analytics").json()] == ["analytics"]
    assert client.get("/api/v1/rulesets?model=nope").status_code == 400


def test_lead_detail_lists_every_models_score_and_the_list_sorts_by_a_chosen_model(marketer, addon):
    first, second = LeadFactory.create(email="a@x.io", score=50), LeadFactory.create(email="b@x.io", score=10)
    Score.objects.create(
        lead=first, model=addon, score=5, fit=0, behaviour=5, grade="F", ruleset_version=9, computed_at=NOW, stage="new"
    )
    Score.objects.create(
        lead=second,
        model=addon,
        score=80,
        fit=30,
        behaviour=50,
        grade="A",
        ruleset_version=9,
        computed_at=NOW,
        stage="new",
    )
    client = client_for(marketer)
    detail = client.get(f"/api/v1/leads/{first.public_id}").json()
    assert [(s["model"], s["score"], s["grade"]) for s in detail["scores"]] == [
        ("default", "50.00", "B"),
        ("analytics", "5.00", "F"),
    ]
    emails = lambda query: [r["email"] for r in client.get("/api/v1/leads" + query).json()["results"]]  # noqa: E731
    assert emails("?ordering=-score") == ["a@x.io", "b@x.io"]
    assert emails("?ordering=-score&model=analytics") == ["b@x.io", "a@x.io"]
    assert emails("?model=analytics&score_min=50") == ["b@x.io"]
    listed = client.get("/api/v1/leads?model=analytics&ordering=-score").json()["results"][0]
    assert (listed["score"], listed["grade"]) == ("80.00", "A")
    unknown = client.get("/api/v1/leads?model=nope")
    assert (unknown.status_code, list(unknown.json())) == (400, ["model"])


def test_the_queue_filters_by_the_qualifying_model(rep, addon):
    from tests.factories import HandoffFactory

    HandoffFactory.create(lead=LeadFactory.create(email="d@x.io", stage=Stage.SQL))
    HandoffFactory.create(lead=LeadFactory.create(email="a@x.io", stage=Stage.SQL), model=addon)
    client = client_for(rep)
    rows = client.get("/api/v1/handoffs?model=analytics").json()["results"]
    assert [(r["lead"]["email"], r["model"], r["qualified_by"]) for r in rows] == [
        ("a@x.io", "analytics", ["analytics"])
    ]
