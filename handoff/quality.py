"""Score quality: a ruleset's score of each handoff's lead **as of the handoff's creation**
(point-in-time), beside what sales and the CRM said of it afterwards.

``ruleset_evaluate_handoffs`` is the one definition every measure builds on (the quality
report, the backtest of a draft, suggested points):

* The handoffs of a ruleset are those of its scoring model: the model that opened them
  (``Handoff.model``) or one of the models that qualified the lead at once
  (``Handoff.qualified_by``, PostgreSQL only). Handoffs opened by hand (no model) and
  those of erased leads are left out.
* The lead is scored by the pure engine (``scoring.engine.score_lead``) as of
  ``handoff.created_at``, from its events with ``occurred_at <= created_at`` only, and
  with the recycling in force then (the latest StageChange to ``recycled`` by that time):
  nothing that happened later leaks in. The lead's attributes (fit) are today's: there
  is no history of attributes.
* Labels are read fresh every time: ``accepted`` (True, False when rejected, None while
  undecided or closed by hand), ``won`` (True when the lead has a ``won`` outcome at or
  after the handoff's creation; False when it has a ``lost`` one and no win since, or sales
  rejected the handoff; None otherwise: no verdict from the CRM yet).
* Evaluations under a published or archived ruleset (its rules never change again) are
  kept in ``CachedEvaluation`` and computed only for the handoffs missing there; a draft's
  are computed every time.

Loading is set-based: one query for the labels of every handoff, one for the cached
evaluations, then per chunk of ``EVALUATION_CHUNK`` missing handoffs one query for their
leads and one for their events up to the handoff's creation (a join on the handoff's
``created_at``) — never a query per handoff.
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery

from handoff.models import CachedEvaluation, Handoff, HandoffStatus
from leadflow.leads.models import Event, Outcome, OutcomeKind, Stage, StageChange
from scoring import engine
from scoring.engine import EventRow, LeadScore, RuleSetSpec
from scoring.models import RuleSet, RuleSetStatus
from scoring.selectors import LEAD_ATTRIBUTE_FIELDS, ruleset_spec

EVALUATION_CHUNK = 2000
IMMUTABLE_STATUSES = (RuleSetStatus.PUBLISHED, RuleSetStatus.ARCHIVED)
UNITS_QUANTUM = Decimal("0.000001")


@dataclass(frozen=True)
class HandoffEvaluation:
    """One handoff, its lead scored by a ruleset as of the handoff's creation, and its labels.

    ``contributions``: rule id → points the rule gave (fit and behaviour rules; they add up to
    ``score``). ``units``: rule id → the rule's matched amount before points (a fit rule 1 or 0;
    a behaviour rule its capped, decayed count of matching events: contribution ÷ points)."""

    handoff_id: int
    lead_id: int
    created_at: datetime
    status: str
    accepted: bool | None
    won: bool | None
    reject_reason: str
    score: Decimal
    fit: Decimal
    behaviour: Decimal
    grade: str
    qualifies_sql: bool
    contributions: dict[int, Decimal]
    units: dict[int, Decimal]

    @property
    def decided(self) -> bool:
        return self.accepted is not None

    def fired(self, rule_id: int) -> bool:
        """Whether the rule matched (a fit rule's condition, a behaviour rule's events)."""
        return self.units.get(rule_id, Decimal(0)) != 0


@dataclass(frozen=True)
class _Labels:
    handoff_id: int
    lead_id: int
    created_at: datetime
    status: str
    reject_reason: str
    won: bool | None
    recycled_at: datetime | None

    @property
    def accepted(self) -> bool | None:
        if self.status == HandoffStatus.ACCEPTED:
            return True
        if self.status == HandoffStatus.REJECTED:
            return False
        return None


@dataclass(frozen=True)
class _Scored:
    score: Decimal
    fit: Decimal
    behaviour: Decimal
    grade: str
    qualifies_sql: bool
    contributions: dict[int, Decimal]
    units: dict[int, Decimal]


# --- Which handoffs, and their labels --------------------------------------------------------
def ruleset_handoffs(*, ruleset: RuleSet, handoffs: QuerySet[Handoff] | None = None) -> QuerySet[Handoff]:
    """The handoffs of the ruleset's scoring model (of ``handoffs`` when given), leads not erased."""
    of_model = Q(model_id=ruleset.model_id)
    if connection.vendor == "postgresql":  # JSON containment: not on SQLite
        of_model |= Q(qualified_by__contains=[ruleset.model.slug])
    queryset = handoffs if handoffs is not None else Handoff.objects.all()
    return queryset.filter(of_model, lead__erased_at__isnull=True)


def _labels(handoffs: QuerySet[Handoff]) -> list[_Labels]:
    after_handoff = {"lead": OuterRef("lead_id"), "occurred_at__gte": OuterRef("created_at")}
    recycled = StageChange.objects.filter(
        lead=OuterRef("lead_id"), to_stage=Stage.RECYCLED, at__lte=OuterRef("created_at")
    ).order_by("-at")
    rows = (
        handoffs.annotate(
            has_won=Exists(Outcome.objects.filter(kind=OutcomeKind.WON, **after_handoff)),
            has_lost=Exists(Outcome.objects.filter(kind=OutcomeKind.LOST, **after_handoff)),
            recycled_then=Subquery(recycled.values("at")[:1]),
        )
        .order_by("id")
        .values_list("id", "lead_id", "created_at", "status", "reject_reason", "has_won", "has_lost", "recycled_then")
    )
    labels = []
    for handoff_id, lead_id, created_at, status, reason, has_won, has_lost, recycled_at in rows.iterator(5000):
        won = True if has_won else (False if has_lost or status == HandoffStatus.REJECTED else None)
        labels.append(_Labels(handoff_id, lead_id, created_at, status, reason, won, recycled_at))
    return labels


# --- Scoring as of the handoff -----------------------------------------------------------------
def _scored(
    spec: RuleSetSpec,
    lead: dict[str, Any],
    events: Sequence[EventRow],
    labels: _Labels,
) -> _Scored:
    result: LeadScore = engine.score_lead(lead, events, spec, labels.created_at, labels.recycled_at)
    contributions: dict[int, Decimal] = {}
    units: dict[int, Decimal] = {}
    for rule_result in result.results:
        rule = rule_result.rule
        contributions[rule.id] = rule_result.contribution
        if rule.kind == "fit":
            units[rule.id] = Decimal(rule_result.matched)
        else:  # rules never have 0 points (``scoring.services.rule_validate``)
            units[rule.id] = (rule_result.contribution / rule.points).quantize(UNITS_QUANTUM)
    qualifies = engine.qualifies_sql(
        spec,
        score=result.total,
        fit=result.fit,
        grade=result.grade,
        suppressed=result.suppressed_by is not None,
        last_intent_at=result.last_intent_at,
        recycled_at=labels.recycled_at,
    )
    return _Scored(result.total, result.fit, result.behaviour, result.grade, qualifies, contributions, units)


def _events_until_handoff(handoff_ids: Sequence[int], types: Iterable[str]) -> dict[int, list[EventRow]]:
    """Each handoff's lead's events of these types that occurred by the handoff's creation,
    by handoff id: one query, joining the events to the handoffs on the lead and the time.
    (Both conditions on ``lead__handoffs`` sit in one ``filter``: one join, the same handoff.)"""
    rows = Event.objects.filter(
        type__in=list(types),
        lead__handoffs__id__in=handoff_ids,
        occurred_at__lte=F("lead__handoffs__created_at"),
    ).values_list("lead__handoffs__id", "id", "type", "properties", "occurred_at")
    grouped: dict[int, list[EventRow]] = defaultdict(list)
    for handoff_id, event_id, event_type, properties, occurred_at in rows.iterator(chunk_size=5000):
        grouped[handoff_id].append(
            EventRow(type=event_type, properties=properties, occurred_at=occurred_at, id=event_id)
        )
    return grouped


def _evaluate(spec: RuleSetSpec, labels: Sequence[_Labels]) -> Iterator[tuple[_Labels, _Scored]]:
    """Score each handoff's lead as of its creation, a chunk of handoffs at a time."""
    for start in range(0, len(labels), EVALUATION_CHUNK):
        chunk = labels[start : start + EVALUATION_CHUNK]
        ids = [label.handoff_id for label in chunk]
        leads = {
            row["id"]: row
            for row in Handoff.objects.filter(id__in=ids)
            .values("id", *(f"lead__{name}" for name in LEAD_ATTRIBUTE_FIELDS))
            .iterator(chunk_size=EVALUATION_CHUNK)
        }
        events = _events_until_handoff(ids, spec.event_types)
        for label in chunk:
            row = leads[label.handoff_id]
            lead = {name: row[f"lead__{name}"] for name in LEAD_ATTRIBUTE_FIELDS}
            yield label, _scored(spec, lead, events.get(label.handoff_id, []), label)


# --- The cache of immutable rulesets ------------------------------------------------------------
def _decimals(values: dict[str, Any]) -> dict[int, Decimal]:
    return {int(rule_id): Decimal(value) for rule_id, value in values.items()}


def _texts(values: dict[int, Decimal]) -> dict[str, str]:
    return {str(rule_id): str(value) for rule_id, value in values.items()}


def _cached(ruleset: RuleSet, handoffs: QuerySet[Handoff]) -> dict[int, _Scored]:
    rows = CachedEvaluation.objects.filter(ruleset=ruleset, handoff__in=handoffs.values("id")).values_list(
        "handoff_id", "score", "fit", "behaviour", "grade", "qualifies_sql", "contributions", "units"
    )
    return {
        handoff_id: _Scored(score, fit, behaviour, grade, qualifies, _decimals(contributions), _decimals(units))
        for handoff_id, score, fit, behaviour, grade, qualifies, contributions, units in rows.iterator(5000)
    }


def _cache_store(ruleset: RuleSet, scored: Sequence[tuple[_Labels, _Scored]]) -> None:
    CachedEvaluation.objects.bulk_create(
        [
            CachedEvaluation(
                ruleset=ruleset,
                handoff_id=label.handoff_id,
                score=value.score,
                fit=value.fit,
                behaviour=value.behaviour,
                grade=value.grade,
                qualifies_sql=value.qualifies_sql,
                contributions=_texts(value.contributions),
                units=_texts(value.units),
            )
            for label, value in scored
        ],
        batch_size=1000,
        ignore_conflicts=True,  # a concurrent reader filled them first: the same values
    )


# --- The evaluation ---------------------------------------------------------------------------------
def _evaluation(label: _Labels, value: _Scored) -> HandoffEvaluation:
    return HandoffEvaluation(
        handoff_id=label.handoff_id,
        lead_id=label.lead_id,
        created_at=label.created_at,
        status=label.status,
        accepted=label.accepted,
        won=label.won,
        reject_reason=label.reject_reason,
        score=value.score,
        fit=value.fit,
        behaviour=value.behaviour,
        grade=value.grade,
        qualifies_sql=value.qualifies_sql,
        contributions=value.contributions,
        units=value.units,
    )


def ruleset_evaluate_handoffs(
    *, ruleset: RuleSet, handoffs: QuerySet[Handoff] | None = None
) -> list[HandoffEvaluation]:
    """Every handoff of the ruleset's model (of ``handoffs`` when given) evaluated by the
    ruleset as of its creation, with its labels, in handoff id order. Fills the cache of a
    published or archived ruleset with the handoffs it lacked."""
    selected = ruleset_handoffs(ruleset=ruleset, handoffs=handoffs)
    labels = _labels(selected)
    if not labels:
        return []
    spec = ruleset_spec(ruleset)
    if ruleset.status not in IMMUTABLE_STATUSES:
        return [_evaluation(label, value) for label, value in _evaluate(spec, labels)]
    cached = _cached(ruleset, selected)
    missing = [label for label in labels if label.handoff_id not in cached]
    fresh: dict[int, _Scored] = {}
    if missing:
        scored = list(_evaluate(spec, missing))
        _cache_store(ruleset, scored)
        fresh = {label.handoff_id: value for label, value in scored}
    return [_evaluation(label, cached.get(label.handoff_id) or fresh[label.handoff_id]) for label in labels]
