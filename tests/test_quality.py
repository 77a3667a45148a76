"""Score quality (issue 14): handoffs evaluated point-in-time, the quality report, the backtest."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from handoff.models import CachedEvaluation, HandoffStatus, RejectReason
from handoff.quality import ruleset_evaluate_handoffs
from leadflow.leads import privacy
from leadflow.leads.models import Event, OutcomeKind, Stage, StageChange
from scoring import engine
from scoring.engine import EventRow
from scoring.models import ScoringModel
from scoring.selectors import lead_attributes, ruleset_spec
from tests.factories import EventFactory, HandoffFactory, LeadFactory, OutcomeFactory, ruleset_through_services
from tests.helpers import behaviour, fit

pytestmark = pytest.mark.django_db

DEMO = behaviour("demo_request", 30)
VISIT = behaviour("page_view", 5, max_points=12)
SOFTWARE = fit("industry", "eq", "Software", 20)


def _rules(**fields):
    return ruleset_through_services([DEMO, VISIT, SOFTWARE], mql=20, sql=40, **fields)


def _handoff(days_ago: float, *, lead=None, **fields):
    return HandoffFactory.create(
        created_at=timezone.now() - timedelta(days=days_ago), **({"lead": lead} if lead else {}), **fields
    )


def _event(lead, event_type: str, days_ago: float):
    return EventFactory.create(lead=lead, type=event_type, occurred_at=timezone.now() - timedelta(days=days_ago))


def _only(evaluations):
    assert len(evaluations) == 1
    return evaluations[0]


# --- Point-in-time evaluation ------------------------------------------------------------------
def test_an_event_after_the_handoff_does_not_change_its_evaluated_score():
    draft = _rules(publish=False)
    handoff = _handoff(5)
    _event(handoff.lead, "demo_request", 6)
    before = _only(ruleset_evaluate_handoffs(ruleset=draft)).score

    _event(handoff.lead, "page_view", 4)
    _event(handoff.lead, "demo_request", 1)

    assert before == Decimal(30)
    assert _only(ruleset_evaluate_handoffs(ruleset=draft)).score == before


def test_the_evaluated_score_equals_the_engine_when_nothing_happened_after_the_handoff():
    ruleset = _rules(half_life=7)
    lead = LeadFactory.create(industry="software")
    for event_type, days_ago in [("demo_request", 9), ("page_view", 8), ("page_view", 6.5), ("page_view", 5.2)]:
        _event(lead, event_type, days_ago)
    handoff = _handoff(5, lead=lead)

    evaluation = _only(ruleset_evaluate_handoffs(ruleset=ruleset))

    rows = [EventRow(e.type, e.properties, e.occurred_at, e.pk) for e in Event.objects.filter(lead=lead)]
    expected = engine.score_lead(lead_attributes(lead), rows, ruleset_spec(ruleset), handoff.created_at)
    assert (evaluation.score, evaluation.fit, evaluation.behaviour) == (
        expected.total,
        expected.fit,
        expected.behaviour,
    )
    assert evaluation.contributions == {r.rule.id: r.contribution for r in expected.results}
    assert sum(evaluation.contributions.values()) == evaluation.score
    assert evaluation.fit == Decimal(20)
    assert Decimal(0) < evaluation.behaviour < Decimal(42)  # decayed


def test_each_handoff_of_a_lead_sees_only_the_events_before_it():
    draft = _rules(publish=False)
    lead = LeadFactory.create()
    _event(lead, "page_view", 30)
    first = _handoff(
        20,
        lead=lead,
        status=HandoffStatus.REJECTED,
        reject_reason=RejectReason.BAD_TIMING,
        decided_at=timezone.now() - timedelta(days=19),
    )
    _event(lead, "page_view", 10)
    _event(lead, "demo_request", 9)
    second = _handoff(8, lead=lead)

    scores = {e.handoff_id: e.score for e in ruleset_evaluate_handoffs(ruleset=draft)}

    assert scores == {first.pk: Decimal(5), second.pk: Decimal(40)}


def test_a_recycling_in_force_at_the_handoff_counts_for_its_sql_criteria_and_a_later_one_does_not():
    draft = _rules(publish=False)
    lead = LeadFactory.create(industry="Software")
    _event(lead, "demo_request", 12)
    handoff = _handoff(5, lead=lead)
    later = StageChange.objects.create(
        lead=lead, from_stage=Stage.SQL, to_stage=Stage.RECYCLED, at=timezone.now() - timedelta(days=1)
    )
    assert _only(ruleset_evaluate_handoffs(ruleset=draft)).qualifies_sql is True

    StageChange.objects.filter(pk=later.pk).update(at=handoff.created_at - timedelta(days=2))

    # recycled 7 days ago, after the only hand-raise (12 days ago): no intent since, no SQL then
    assert _only(ruleset_evaluate_handoffs(ruleset=draft)).qualifies_sql is False


def test_units_are_each_rules_matched_amount_before_points():
    webinar = behaviour("webinar_attended", -2.5)
    draft = ruleset_through_services([DEMO, VISIT, SOFTWARE, webinar], mql=20, sql=40, publish=False)
    lead = LeadFactory.create(industry="Retail")
    for event_type in ["page_view"] * 4 + ["webinar_attended"] * 2 + ["demo_request"]:
        _event(lead, event_type, 3)
    _handoff(2, lead=lead)
    ids = {rule.name: rule.pk for rule in draft.rules.all()}

    evaluation = _only(ruleset_evaluate_handoffs(ruleset=draft))

    assert evaluation.units == {
        ids["demo_request rule"]: Decimal(1),
        ids["page_view rule"]: Decimal("2.4"),  # 4 × 5 capped at 12 → 12 ÷ 5
        ids["industry eq"]: Decimal(0),
        ids["webinar_attended rule"]: Decimal(2),  # -5 ÷ -2.5
    }
    assert evaluation.fired(ids["page_view rule"]) and not evaluation.fired(ids["industry eq"])


# --- Labels, read fresh ------------------------------------------------------------------------
def test_labels_say_accepted_rejected_or_undecided_and_won_from_outcomes_after_the_handoff():
    draft = _rules(publish=False)
    decided = timezone.now() - timedelta(days=1)
    won = _handoff(5, status=HandoffStatus.ACCEPTED, decided_at=decided)
    OutcomeFactory.create(lead=won.lead, kind=OutcomeKind.WON, occurred_at=timezone.now())
    lost = _handoff(5, status=HandoffStatus.ACCEPTED, decided_at=decided)
    OutcomeFactory.create(lead=lost.lead, kind=OutcomeKind.LOST, occurred_at=timezone.now())
    won_before = _handoff(5, status=HandoffStatus.ACCEPTED, decided_at=decided)
    OutcomeFactory.create(lead=won_before.lead, kind=OutcomeKind.WON, occurred_at=timezone.now() - timedelta(days=9))
    rejected = _handoff(5, status=HandoffStatus.REJECTED, reject_reason=RejectReason.NO_BUDGET, decided_at=decided)
    queued = _handoff(5)

    labels = {e.handoff_id: (e.accepted, e.won, e.reject_reason) for e in ruleset_evaluate_handoffs(ruleset=draft)}

    assert labels == {
        won.pk: (True, True, ""),
        lost.pk: (True, False, ""),
        won_before.pk: (True, None, ""),  # a win before the handoff says nothing of it
        rejected.pk: (False, False, "no_budget"),
        queued.pk: (None, None, ""),
    }


def test_a_published_rulesets_evaluations_are_cached_and_its_labels_read_fresh(django_assert_max_num_queries):
    ruleset = _rules()
    handoff = _handoff(5)
    _event(handoff.lead, "demo_request", 6)
    first = _only(ruleset_evaluate_handoffs(ruleset=ruleset))
    assert CachedEvaluation.objects.filter(ruleset=ruleset).count() == 1
    assert first.accepted is None

    # The cache is what is read back: the engine is not asked again.
    CachedEvaluation.objects.update(score=Decimal("99.00"))
    handoff.status, handoff.decided_at = HandoffStatus.ACCEPTED, timezone.now()
    handoff.save(update_fields=["status", "decided_at"])
    again = _only(ruleset_evaluate_handoffs(ruleset=ruleset))

    assert (again.score, again.accepted, again.contributions) == (Decimal(99), True, first.contributions)


def test_a_drafts_evaluations_are_never_cached():
    draft = _rules(publish=False)
    _handoff(5)
    ruleset_evaluate_handoffs(ruleset=draft)
    assert not CachedEvaluation.objects.exists()


def test_only_the_handoffs_of_the_rulesets_model_are_evaluated():
    ruleset = _rules()
    other = ScoringModel.objects.create(name="Analytics", slug="analytics")
    mine = _handoff(5)
    also_mine = _handoff(5, model=other, qualified_by=[other.slug, ruleset.model.slug])
    _handoff(5, model=other, qualified_by=[other.slug])
    _handoff(5, model=None, qualified_by=[])  # moved to SQL by hand

    assert {e.handoff_id for e in ruleset_evaluate_handoffs(ruleset=ruleset)} == {mine.pk, also_mine.pk}


def test_evaluating_many_handoffs_takes_a_bounded_number_of_queries(django_assert_max_num_queries):
    ruleset = _rules()
    for days_ago in range(1, 31):
        handoff = _handoff(days_ago)
        _event(handoff.lead, "demo_request", days_ago + 1)
    ruleset = type(ruleset).objects.get(pk=ruleset.pk)

    with django_assert_max_num_queries(8):  # labels, cache, spec (2), leads, events, insert
        cold = ruleset_evaluate_handoffs(ruleset=ruleset)
    ruleset = type(ruleset).objects.get(pk=ruleset.pk)
    with django_assert_max_num_queries(4):
        warm = ruleset_evaluate_handoffs(ruleset=ruleset)

    assert len(cold) == 30
    assert warm == cold


def test_a_persons_export_lists_their_cached_evaluations_and_erasure_deletes_them(admin):
    ruleset = _rules()
    handoff = _handoff(5)
    _event(handoff.lead, "demo_request", 6)
    ruleset_evaluate_handoffs(ruleset=ruleset)

    exported = privacy.person_export(lead=handoff.lead)["handoff_evaluations"]
    erasure = privacy.person_erase(lead=handoff.lead, actor=admin)

    assert [(e["ruleset_version"], e["score"]) for e in exported] == [(ruleset.version, "30.00")]
    assert erasure.counts["handoff_evaluations_deleted"] == 1
    assert not CachedEvaluation.objects.exists()
    assert ruleset_evaluate_handoffs(ruleset=ruleset) == []  # erased leads are left out
