"""The lifecycle of a lead: moving it between stages and writing the audit log of
qualification (StageChange). Every stage change, automatic or manual, goes through
``transitions_apply``.

Who decides a transition is not this module's business: scoring computes the
automatic ones (its thresholds, ``scoring.selectors.automatic_path``), the sales
handoff applies a rep's decision, a person moves a lead by hand
(``lead_stage_change``). Apps above the core learn of the changes through one
signal, so that the core imports none of them.

``stages_changed`` — the contract
    Sent by ``transitions_apply`` (and by scoring's set-based transitions after a full
    rescore, ``scoring.bulk``) once per call that moved at least one lead, inside
    the caller's transaction, after the leads' new stages and their StageChanges are
    written. ``sender`` is the StageChange model; ``applied`` is a
    ``TransitionsApplied``: the moment, the StageChanges written, and which of them
    took a lead into SQL or out of it (``change.lead`` is the lead, locked by the
    caller and already at its new stage).

    Receivers run synchronously in that transaction: what they write commits or
    rolls back with the stage change, and an exception they raise propagates to the
    caller and rolls the change back (``send``, not ``send_robust``). They never
    talk to the network inside it (defer that with ``transaction.on_commit``) and
    lock their own rows only after the lead, which the caller already holds.

    Receivers:

    - ``handoff.receivers.handoffs_follow_stages`` (connected when
      ``handoff.apps.HandoffConfig.ready`` imports ``handoff.receivers``): a lead that
      entered SQL gets a queued handoff; a lead that left SQL with a handoff still
      open (a change by hand) has it closed. A rep's accept or reject decides the
      handoff before applying the lead's transition, so the receiver finds it no
      longer open and leaves it alone.
    - ``scoring.receivers.scores_follow_stages`` (connected when
      ``scoring.apps.ScoringConfig.ready`` imports ``scoring.receivers``): the moved
      leads' score rows take their new stage (``Score.stage``, with which an index
      orders a stage's leads by score for the lists).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from leadflow.db import update_from_values
from leadflow.leads.models import Lead, Stage, StageChange
from leadflow.leads.rollups import COUNTED_STAGES, Entry, LeadFacts, LeadMove, lead_entries, rollups_record

stages_changed = Signal()


class StageChangeError(Exception):
    """A stage change the lifecycle refuses; the message says what to do instead."""


@dataclass
class Transition:
    lead: Lead
    from_stage: str
    to_stage: str
    reason: str
    actor: Any = None
    # An automatic transition: the scoring models that qualified the lead (slugs), and
    # the ruleset version and score of the first of them.
    qualified_by: list[str] = field(default_factory=list)
    ruleset_version: int | None = None
    score: Decimal | None = None


@dataclass(frozen=True)
class TransitionsApplied:
    """What ``transitions_apply`` wrote: one StageChange per transition, in order."""

    at: datetime
    changes: list[StageChange]

    @property
    def entered_sql(self) -> list[StageChange]:
        """The changes that took a lead into SQL."""
        return [change for change in self.changes if change.to_stage == Stage.SQL]

    @property
    def left_sql(self) -> list[StageChange]:
        """The changes that took a lead out of SQL."""
        return [change for change in self.changes if change.from_stage == Stage.SQL and change.to_stage != Stage.SQL]


def transitions_apply(transitions: Sequence[Transition], *, at: datetime) -> TransitionsApplied:
    """Move leads (locked by the caller, inside its transaction) and write one
    StageChange per step, record what the dashboard's rollups count differently
    (``rollups``), then send ``stages_changed`` in the same transaction (entering SQL
    opens the sales handoff)."""
    changes = []
    touched: dict[int, Lead] = {}
    before: dict[int, LeadFacts] = {}
    for transition in transitions:
        lead = transition.lead
        before.setdefault(lead.pk, LeadFacts.of(lead))
        lead.stage = transition.to_stage
        if transition.to_stage == Stage.MQL and lead.mql_at is None:
            lead.mql_at = at
        elif transition.to_stage == Stage.SQL:
            lead.sql_at = at
            if lead.mql_at is None:
                lead.mql_at = at
        elif transition.to_stage == Stage.RECYCLED:
            lead.recycled_at = at
        touched[lead.pk] = lead
        changes.append(
            StageChange(
                lead=lead,
                from_stage=transition.from_stage,
                to_stage=transition.to_stage,
                at=at,
                actor=transition.actor,
                reason=transition.reason,
                qualified_by=transition.qualified_by,
                ruleset_version=transition.ruleset_version,
                score=transition.score,
            )
        )
    applied = TransitionsApplied(at=at, changes=changes)
    if touched:
        history = lead_entries(touched)
        added: dict[int, list[Entry]] = {}
        for change in changes:
            if change.to_stage in COUNTED_STAGES:
                added.setdefault(change.lead.pk, []).append(Entry.of(change))
        rollups_record(
            LeadMove(before[pk], LeadFacts.of(lead), history.get(pk, []), added.get(pk, []))
            for pk, lead in touched.items()
        )
        fields = ["stage", "mql_at", "sql_at", "recycled_at"]
        update_from_values(Lead, fields, [[lead.pk, *(getattr(lead, f) for f in fields)] for lead in touched.values()])
        StageChange.objects.bulk_create(changes, batch_size=1000)
        stages_changed.send(sender=StageChange, applied=applied)
    return applied


def _manual_change_checked(*, to_stage: str, reason: str) -> str:
    """The reason of a change by hand, stripped; refuses a blank reason or an unknown stage."""
    reason = reason.strip()
    if not reason:
        raise StageChangeError("Give a reason for the stage change: it is shown in the lead's history.")
    if to_stage not in Stage.values:
        raise StageChangeError(f"Unknown stage {to_stage!r}; choose one of {', '.join(Stage.values)}.")
    return reason


def lead_stage_change(*, lead: Lead, to_stage: str, actor: Any, reason: str) -> StageChange:
    """A person moves a lead by hand (any direction), with a reason. Out of SQL, the
    lead's open handoff is closed; into SQL, one is opened (``stages_changed``)."""
    reason = _manual_change_checked(to_stage=to_stage, reason=reason)
    with transaction.atomic():
        locked = Lead.objects.select_for_update().get(pk=lead.pk)
        if locked.stage == to_stage:
            raise StageChangeError(f"The lead is already {to_stage}.")
        applied = transitions_apply([Transition(locked, locked.stage, to_stage, reason, actor)], at=timezone.now())
    return applied.changes[0]


class LeadsStageChangeError(StageChangeError):
    """Some of the leads of a change by hand cannot move: ``refused`` says why, by lead
    (its pk). Nothing was written."""

    def __init__(self, refused: dict[int, str]):
        super().__init__(f"{len(refused)} of the leads cannot move: nothing was changed.")
        self.refused = refused


def leads_stage_change(*, leads: Sequence[Lead], to_stage: str, actor: Any, reason: str) -> list[StageChange]:
    """A person moves several leads by hand at once (the leads list's bulk action), with
    one reason: all of them or none. The leads are locked in one query (by id, the order
    every locker uses) and moved by one ``transitions_apply``: a StageChange each, one
    set-based update. A lead already at ``to_stage`` (or erased meanwhile) is refused,
    with the others left as they were (``LeadsStageChangeError``)."""
    reason = _manual_change_checked(to_stage=to_stage, reason=reason)
    ids = sorted({lead.pk for lead in leads})
    if not ids:
        raise StageChangeError("Select at least one lead to move.")
    with transaction.atomic():
        locked = {lead.pk: lead for lead in Lead.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        refused: dict[int, str] = {}
        for pk in ids:
            lead = locked.get(pk)
            if lead is None or lead.erased_at is not None:
                refused[pk] = "This lead no longer exists."
            elif lead.stage == to_stage:
                refused[pk] = f"Already {Stage(to_stage).label}: leave it out of the selection."
        if refused:
            raise LeadsStageChangeError(refused)
        transitions = [Transition(locked[pk], locked[pk].stage, to_stage, reason, actor) for pk in ids]
        applied = transitions_apply(transitions, at=timezone.now())
    return applied.changes


# The forward path an import may move a lead along; recycled and disqualified are reached
# from it only by sales' decisions, so an import sets them on new leads alone.
_IMPORT_ORDER: dict[str, int] = {Stage.NEW: 0, Stage.MQL: 1, Stage.SQL: 2, Stage.ACCEPTED: 3}


def import_stage_applies(*, current: str, imported: str) -> bool:
    """Whether an imported lifecycle stage moves a lead at ``current``: only forward along
    new → MQL → SQL → accepted, and to recycled or disqualified only from new. An import
    never undoes what scoring or sales decided here."""
    if current not in _IMPORT_ORDER:
        return False
    if imported not in _IMPORT_ORDER:
        return current == Stage.NEW and imported in (Stage.RECYCLED, Stage.DISQUALIFIED)
    return _IMPORT_ORDER[imported] > _IMPORT_ORDER[current]


def leads_stage_import(*, stages: dict[int, tuple[str, str]], actor: Any, at: datetime) -> int:
    """Move imported leads to the stage their old tool had them at (``stages``: lead pk ->
    (our stage, the StageChange's reason, which says "imported")), inside the caller's
    transaction: the leads are locked in one query in id order, those the import may move
    (``import_stage_applies``) are moved by one ``transitions_apply`` (a StageChange each;
    entering SQL opens a handoff). Returns how many moved."""
    if not stages:
        return 0
    locked = Lead.objects.select_for_update().filter(pk__in=sorted(stages), erased_at__isnull=True).order_by("pk")
    transitions = [
        Transition(lead, lead.stage, stages[lead.pk][0], stages[lead.pk][1], actor)
        for lead in locked
        if import_stage_applies(current=lead.stage, imported=stages[lead.pk][0])
    ]
    return len(transitions_apply(transitions, at=at).changes)
