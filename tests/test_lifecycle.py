"""The lifecycle (leadflow.leads.lifecycle): every stage change goes through
transitions_apply, which tells the apps above the core through stages_changed."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction

from leadflow.leads.lifecycle import (
    StageChangeError,
    Transition,
    TransitionsApplied,
    lead_stage_change,
    stages_changed,
    transitions_apply,
)
from leadflow.leads.models import Lead, Stage, StageChange
from tests.factories import LeadFactory, SqlLeadFactory, UserFactory

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
def received():
    """What stages_changed's receivers are sent, and what they see when it arrives."""
    calls = []

    def receiver(sender, applied, **kwargs):
        written = set(StageChange.objects.filter(pk__in=[c.pk for c in applied.changes]).values_list("pk", flat=True))
        stages = dict(Lead.objects.filter(pk__in=[c.lead.pk for c in applied.changes]).values_list("pk", "stage"))
        calls.append(
            {
                "sender": sender,
                "applied": applied,
                "in_transaction": connection.in_atomic_block,
                "written": written == {c.pk for c in applied.changes},
                "stages": stages,
            }
        )

    stages_changed.connect(receiver, dispatch_uid="tests.received")
    yield calls
    stages_changed.disconnect(dispatch_uid="tests.received")


def test_transitions_apply_tells_receivers_what_it_wrote_inside_the_transaction(db, received):
    fresh, sql, mql = LeadFactory.create(), SqlLeadFactory.create(), LeadFactory.create(stage=Stage.MQL)
    marketer = UserFactory.create()
    with transaction.atomic():
        leads = {lead.pk: lead for lead in Lead.objects.select_for_update().filter(pk__in=[fresh.pk, sql.pk, mql.pk])}
        applied = transitions_apply(
            [
                Transition(
                    leads[fresh.pk],
                    Stage.NEW,
                    Stage.MQL,
                    "Score reached the MQL threshold.",
                    qualified_by=["default"],
                    ruleset_version=7,
                    score=Decimal("40"),
                ),
                Transition(leads[sql.pk], Stage.SQL, Stage.RECYCLED, "Asked us to wait", marketer),
                Transition(
                    leads[mql.pk],
                    Stage.MQL,
                    Stage.SQL,
                    "Intent shown.",
                    qualified_by=["default", "addon"],
                    ruleset_version=7,
                    score=Decimal("70"),
                ),
            ],
            at=NOW,
        )

    assert isinstance(applied, TransitionsApplied) and applied.at == NOW
    assert [(c.lead.pk, c.from_stage, c.to_stage) for c in applied.changes] == [
        (fresh.pk, Stage.NEW, Stage.MQL),
        (sql.pk, Stage.SQL, Stage.RECYCLED),
        (mql.pk, Stage.MQL, Stage.SQL),
    ]
    assert [c.lead.pk for c in applied.entered_sql] == [mql.pk]
    assert [(c.lead.pk, c.actor, c.reason) for c in applied.left_sql] == [(sql.pk, marketer, "Asked us to wait")]
    (call,) = received
    assert call["sender"] is StageChange and call["applied"] is applied
    assert call["in_transaction"] and call["written"], "sent inside the transaction, after the StageChanges"
    assert call["stages"] == {fresh.pk: Stage.MQL, sql.pk: Stage.RECYCLED, mql.pk: Stage.SQL}
    recorded = {(c.lead_id, c.ruleset_version, c.score, tuple(c.qualified_by)) for c in StageChange.objects.all()}
    assert recorded == {
        (fresh.pk, 7, Decimal("40"), ("default",)),
        (sql.pk, None, None, ()),  # by hand: no model qualified it
        (mql.pk, 7, Decimal("70"), ("default", "addon")),
    }


def test_nothing_moved_sends_nothing(db, received):
    applied = transitions_apply([], at=NOW)
    assert applied.changes == [] and received == []


def test_a_receivers_failure_rolls_the_stage_change_back(db):
    lead = LeadFactory.create()

    def fail(sender, applied, **kwargs):
        raise RuntimeError("receiver failed")

    stages_changed.connect(fail, dispatch_uid="tests.fail")
    try:
        with pytest.raises(RuntimeError, match="receiver failed"):
            lead_stage_change(lead=lead, to_stage=Stage.MQL, actor=None, reason="Met at the fair")
    finally:
        stages_changed.disconnect(dispatch_uid="tests.fail")
    assert Lead.objects.get(pk=lead.pk).stage == Stage.NEW
    assert not StageChange.objects.exists()


@pytest.mark.parametrize(
    ("to_stage", "reason", "message"),
    [
        (Stage.MQL, "   ", "Give a reason for the stage change"),
        ("hot", "Met at the fair", "Unknown stage 'hot'"),
        (Stage.NEW, "Met at the fair", "The lead is already new."),
    ],
)
def test_a_stage_change_by_hand_needs_a_reason_a_known_stage_and_a_move(db, received, to_stage, reason, message):
    lead = LeadFactory.create()
    with pytest.raises(StageChangeError, match=message):
        lead_stage_change(lead=lead, to_stage=to_stage, actor=None, reason=reason)
    assert not StageChange.objects.exists() and received == []


def test_a_stage_change_by_hand_is_written_with_its_reason_and_actor(db, received):
    lead, marketer = LeadFactory.create(), UserFactory.create()
    change = lead_stage_change(lead=lead, to_stage=Stage.MQL, actor=marketer, reason="  Met at the fair ")
    assert (change.from_stage, change.to_stage, change.actor, change.reason) == (
        Stage.NEW,
        Stage.MQL,
        marketer,
        "Met at the fair",
    )
    lead.refresh_from_db()
    assert lead.stage == Stage.MQL and lead.mql_at == change.at
    assert [c["applied"].changes for c in received] == [[change]]
