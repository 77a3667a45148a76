"""Reads of the sales pages: the queue with why each lead qualified, one handoff with
what the current person may do with it, and the notification inbox. They build on
``handoff.selectors`` (who sees which handoff) and the scoring engine (why)."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from handoff import selectors as handoff_selectors
from handoff.models import Handoff, HandoffStatus, Notification
from handoff.roles import can_work_handoffs, is_sales_manager
from leadflow.leads.models import Event, Lead, Stage, StageChange
from scoring import engine
from scoring.models import RuleSet
from scoring.selectors import ruleset_spec
from scoring.services import Explanation, lead_attributes

TOP_RULES = 3


# --- Why a lead qualified -------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleContribution:
    name: str
    kind: str
    points: Decimal
    matched: int


@dataclass(frozen=True)
class IntentEvent:
    type: str
    occurred_at: datetime
    properties: dict[str, Any]


@dataclass(frozen=True)
class Qualification:
    """The rules that contribute most to the lead's stored score, and its latest hand-raise."""

    scored: bool
    top_rules: tuple[RuleContribution, ...] = ()
    intent: IntentEvent | None = None


def leads_qualification(*, leads: Iterable[Lead], top: int = TOP_RULES) -> dict[int, Qualification]:
    """Why each lead is where it is, by lead id, in three queries however many leads:
    their rulesets (and rules), then their events. The single-lead engine recomputes
    each score as of ``scored_at`` with the ruleset that produced it, exactly as the
    lead page's explanation does, so the points shown here add up the same way."""
    leads = list({lead.pk: lead for lead in leads}.values())
    scored = [lead for lead in leads if lead.scored_at is not None and lead.ruleset_version is not None]
    versions = {lead.ruleset_version for lead in scored if lead.ruleset_version is not None}
    specs = {
        ruleset.version: ruleset_spec(ruleset)
        for ruleset in RuleSet.objects.filter(version__in=versions).prefetch_related("rules")
    }
    event_types = set().union(*(spec.event_types for spec in specs.values()))
    events: dict[int, list[engine.EventRow]] = defaultdict(list)
    rows = Event.objects.filter(lead_id__in=[lead.pk for lead in scored], type__in=event_types).values_list(
        "lead_id", "id", "type", "properties", "occurred_at"
    )
    for lead_id, event_id, event_type, properties, occurred_at in rows:
        row = engine.EventRow(type=event_type, properties=properties, occurred_at=occurred_at, id=event_id)
        events[lead_id].append(row)

    qualifications = {lead.pk: Qualification(scored=False) for lead in leads}
    for lead in scored:
        spec = specs.get(lead.ruleset_version) if lead.ruleset_version is not None else None
        if spec is None or lead.scored_at is None:
            continue
        lead_events = events.get(lead.pk, [])
        result = engine.score_lead(lead_attributes(lead), lead_events, spec, lead.scored_at)
        # Largest first; ties keep the ruleset's order (fit rules, then behaviour, by position).
        contributions = sorted((r for r in result.results if r.contribution > 0), key=lambda r: -r.contribution)
        intents = [event for event in lead_events if event.type in spec.intent_event_types]
        latest = max(intents, key=lambda event: (event.occurred_at, event.id), default=None)
        qualifications[lead.pk] = Qualification(
            scored=True,
            top_rules=tuple(
                RuleContribution(name=r.rule.name, kind=r.rule.kind, points=r.contribution, matched=r.matched)
                for r in contributions[:top]
            ),
            intent=IntentEvent(type=latest.type, occurred_at=latest.occurred_at, properties=latest.properties)
            if latest
            else None,
        )
    return qualifications


def explanation_intent(explanation: Explanation) -> IntentEvent | None:
    """The latest hand-raise among the events a single-lead explanation loaded."""
    if explanation.ruleset is None:
        return None
    intent_types = set(explanation.ruleset.intent_event_types)
    intents = [event for event in explanation.events.values() if event.type in intent_types]
    latest = max(intents, key=lambda event: (event.occurred_at, event.pk), default=None)
    if latest is None:
        return None
    return IntentEvent(type=latest.type, occurred_at=latest.occurred_at, properties=latest.properties)


@dataclass(frozen=True)
class QueueItem:
    handoff: Handoff
    why: Qualification


def queue_items(handoffs: Sequence[Handoff]) -> list[QueueItem]:
    """Handoffs (with their leads loaded) and why each lead qualified."""
    why = leads_qualification(leads=[handoff.lead for handoff in handoffs])
    return [QueueItem(handoff=handoff, why=why[handoff.lead_id]) for handoff in handoffs]


# --- The queue -------------------------------------------------------------------------------------
def sales_queue(*, user: Any, overdue_only: bool = False) -> QuerySet[Handoff]:
    """Queued handoffs in claim order: highest priority (the score at SQL), then oldest."""
    queued = handoff_selectors.handoff_list(user=user).filter(status=HandoffStatus.QUEUED)
    if overdue_only:
        queued = handoff_selectors.handoffs_overdue(queued, overdue=True)
    return queued.order_by("-priority", "created_at", "id")


def sales_queue_overdue_count(*, user: Any) -> int:
    queued = handoff_selectors.handoff_list(user=user).filter(status=HandoffStatus.QUEUED)
    return handoff_selectors.handoffs_overdue(queued, overdue=True).count()


def sales_claims(*, user: Any) -> list[Handoff]:
    """The rep's open claims, the one expiring first on top (bounded by the claim limit)."""
    claims = handoff_selectors.handoff_list(user=user).filter(status=HandoffStatus.CLAIMED, claimed_by=user)
    return list(claims.order_by("claim_expires_at", "id"))


# --- One handoff -------------------------------------------------------------------------------------
def handoff_visible(*, user: Any) -> QuerySet[Handoff]:
    """Handoffs ``user`` may open, with their audit trail (another rep's claim is not one)."""
    return handoff_selectors.handoff_with_events(handoff_selectors.handoff_list(user=user))


def handoff_actionable(*, user: Any) -> QuerySet[Handoff]:
    """Handoffs ``user`` may act on (another rep's claim is not one)."""
    return handoff_selectors.handoff_actionable(user=user)


def handoff_allowed_actions(*, handoff: Handoff, user: Any) -> frozenset[str]:
    """What the page offers ``user`` for this handoff; the services enforce the same rules."""
    if not can_work_handoffs(user):
        return frozenset()
    if handoff.status == HandoffStatus.QUEUED:
        return frozenset({"claim"})
    if handoff.status == HandoffStatus.CLAIMED:
        if handoff.claimed_by_id == user.pk:
            return frozenset({"accept", "reject", "release"})
        if is_sales_manager(user):
            return frozenset({"release"})
    return frozenset()


def lead_sql_change(*, lead: Lead) -> StageChange | None:
    """The stage change that made the lead an SQL most recently: scoring's reason."""
    return StageChange.objects.filter(lead=lead, to_stage=Stage.SQL).order_by("-at", "-id").first()


# --- Notifications -----------------------------------------------------------------------------------
def notification_inbox(*, user: Any, unread_only: bool = False) -> QuerySet[Notification]:
    return handoff_selectors.notification_list(user=user, unread=True if unread_only else None)
