"""Reads of the sales handoff: the queue as each person may see it, a lead's handoff
history, notifications, and the handoff statistics marketing learns from; then the
reads of handoff's pages: the queue with why each lead qualified (from the scoring
engine), one handoff with what the current person may do with it, and the inbox."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from django.contrib.auth import get_user_model
from django.db.models import Case, Count, F, FloatField, Func, Min, Prefetch, Q, QuerySet, Value, When
from django.utils import timezone

from handoff.models import (
    DECIDED_STATUSES,
    OPEN_STATUSES,
    ChecklistItem,
    Handoff,
    HandoffEvent,
    HandoffStatus,
    Notification,
    RejectReason,
    WebhookDelivery,
    WebhookSubscription,
    overdue_q,
)
from handoff.roles import can_work_handoffs, is_sales_manager, sees_every_handoff
from leadflow.db import Median, database_has_median, median_in_python
from leadflow.leads.models import Event, Lead, Source, Stage, StageChange
from leadflow.leads.people import person_name
from leadflow.leads.roles import SALES
from scoring import engine
from scoring.models import Score, ScoringModel
from scoring.selectors import Explanation, lead_attributes, model_default, ruleset_specs


def _with_relations(queryset: QuerySet[Handoff]) -> QuerySet[Handoff]:
    return queryset.select_related("lead", "claimed_by", "model")


def _queued_or_held_by(user: Any) -> Q:
    """Queued handoffs (every rep may claim them) and those ``user`` holds or held."""
    return Q(status=HandoffStatus.QUEUED) | Q(claimed_by_id=user.pk)


def handoffs_visible(queryset: QuerySet[Handoff], *, user: Any) -> QuerySet[Handoff]:
    """The handoffs of ``queryset`` that ``user`` may see: **the one rule**, used by every
    read of handoffs a person makes (the queue, a handoff, a lead's handoff history in the
    API and on the lead page, the dashboard's overdue list).

    Marketing, scoring admins and sales managers see every handoff. A rep sees queued
    handoffs and those they hold or held; another rep's claim, open or decided, is not
    there at all (who holds it, its notes, its audit trail), and asking for it by id
    answers 404, as for one that does not exist. Anybody else sees none."""
    if sees_every_handoff(user):
        return queryset
    if not getattr(user, "is_authenticated", False) or not can_work_handoffs(user):
        return queryset.none()
    return queryset.filter(_queued_or_held_by(user))


def handoff_list(*, user: Any) -> QuerySet[Handoff]:
    """Handoffs ``user`` may see (``handoffs_visible``), with their lead and rep."""
    return handoffs_visible(_with_relations(Handoff.objects.all()), user=user)


def handoff_actionable(*, user: Any) -> QuerySet[Handoff]:
    """Handoffs ``user`` may act on: another rep's claim is not among them (the API
    answers 404, as for a handoff that does not exist). The services lock and reload
    what they change, so no relations are loaded here."""
    queryset = Handoff.objects.all()
    if is_sales_manager(user):
        return queryset
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    return queryset.filter(_queued_or_held_by(user))


def handoff_with_events(queryset: QuerySet[Handoff]) -> QuerySet[Handoff]:
    return queryset.prefetch_related(
        Prefetch("events", queryset=HandoffEvent.objects.select_related("actor").order_by("at", "id"))
    )


def handoffs_overdue(queryset: QuerySet[Handoff], *, overdue: bool) -> QuerySet[Handoff]:
    """The overdue handoffs of ``queryset`` (or the others): ``overdue_q``."""
    condition = overdue_q(timezone.now())
    return queryset.filter(condition) if overdue else queryset.exclude(condition)


def lead_handoffs(*, lead: Lead, user: Any) -> QuerySet[Handoff]:
    """The lead's handoffs ``user`` may see (``handoffs_visible``), newest first, with
    their audit trail."""
    handoffs = handoffs_visible(_with_relations(Handoff.objects.filter(lead=lead)), user=user)
    return handoff_with_events(handoffs).order_by("-created_at", "-id")


# --- Notifications --------------------------------------------------------------------------------
def notification_list(*, user: Any, unread: bool | None = None) -> QuerySet[Notification]:
    queryset = Notification.objects.filter(recipient=user)
    if unread is True:
        queryset = queryset.filter(read_at__isnull=True)
    elif unread is False:
        queryset = queryset.filter(read_at__isnull=False)
    return queryset.order_by("-created_at", "-id")


def notification_unread_count(*, user: Any) -> int:
    return Notification.objects.filter(recipient=user, read_at__isnull=True).count()


# --- Statistics -----------------------------------------------------------------------------------
def _seconds_between(start: str, end: str) -> Func:
    return Func(F(end) - F(start), template="EXTRACT(EPOCH FROM %(expressions)s)", output_field=FloatField())


@dataclass
class HandoffStats:
    since: datetime | None
    until: datetime | None
    total: int = 0
    queued: int = 0
    claimed: int = 0
    accepted: int = 0
    rejected: int = 0
    closed: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    median_seconds_to_claim: float | None = None
    median_seconds_to_decision: float | None = None
    sla_breaches: int = 0
    overdue_now: int = 0


def handoff_stats(
    *, since: datetime | None = None, until: datetime | None = None, source: Source | None = None
) -> HandoffStats:
    """Counts by status and reject reason, median time to (first) claim and to a
    decision, and SLA breaches, for handoffs created in [since, until), of the leads
    of ``source`` when given.

    A breach is a handoff flagged overdue, decided after its due time, or open past
    it (whether or not the sweep has flagged it yet)."""
    handoffs = Handoff.objects.all()
    if since is not None:
        handoffs = handoffs.filter(created_at__gte=since)
    if until is not None:
        handoffs = handoffs.filter(created_at__lt=until)
    if source is not None:
        handoffs = handoffs.filter(lead__source=source)
    now = timezone.now()
    overdue_now = overdue_q(now)
    breached = Q(overdue_at__isnull=False) | Q(decided_at__gt=F("due_at")) | overdue_now
    counts: dict[str, Any] = {
        "total": Count("id"),
        **{status: Count("id", filter=Q(status=status)) for status in HandoffStatus.values},
        **{
            f"reason_{reason}": Count("id", filter=Q(status=HandoffStatus.REJECTED, reject_reason=reason))
            for reason in RejectReason.values
        },
        "sla_breaches": Count("id", filter=breached),
        "overdue_now": Count("id", filter=overdue_now),
    }
    decided = Q(status__in=DECIDED_STATUSES)
    if database_has_median():
        counts["to_claim"] = Median(
            _seconds_between("created_at", "first_claimed_at"), filter=Q(first_claimed_at__isnull=False)
        )
        counts["to_decision"] = Median(_seconds_between("created_at", "decided_at"), filter=decided)
    row = handoffs.aggregate(**counts)
    if not database_has_median():
        row["to_claim"] = median_seconds_in_python(handoffs.filter(first_claimed_at__isnull=False), "first_claimed_at")
        row["to_decision"] = median_seconds_in_python(handoffs.filter(decided), "decided_at")
    return HandoffStats(
        since=since,
        until=until,
        total=row["total"],
        queued=row[HandoffStatus.QUEUED],
        claimed=row[HandoffStatus.CLAIMED],
        accepted=row[HandoffStatus.ACCEPTED],
        rejected=row[HandoffStatus.REJECTED],
        closed=row[HandoffStatus.CLOSED],
        rejected_by_reason={reason: row[f"reason_{reason}"] for reason in RejectReason.values},
        median_seconds_to_claim=row["to_claim"],
        median_seconds_to_decision=row["to_decision"],
        sla_breaches=row["sla_breaches"],
        overdue_now=row["overdue_now"],
    )


def median_seconds_in_python(handoffs: QuerySet[Handoff], end: str) -> float | None:
    """Median seconds from creation to ``end``, for databases without ``Median`` (SQLite)."""
    seconds = [(finished - created).total_seconds() for created, finished in handoffs.values_list("created_at", end)]
    return median_in_python(seconds)


# --- Why a lead qualified (the sales pages) -------------------------------------------------------
TOP_RULES = 3


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


class _EventLike(Protocol):
    """An event as the engine's rows and the Event model both have it."""

    @property
    def type(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def properties(self) -> Any: ...
    @property
    def id(self) -> int: ...


def _latest_intent(events: Iterable[_EventLike], intent_types: Iterable[str]) -> IntentEvent | None:
    """The lead's latest hand-raise: the last of its events of an intent type (ties: the last stored)."""
    types = set(intent_types)
    latest = max((event for event in events if event.type in types), key=lambda e: (e.occurred_at, e.id), default=None)
    if latest is None:
        return None
    return IntentEvent(type=latest.type, occurred_at=latest.occurred_at, properties=latest.properties)


@dataclass(frozen=True)
class Qualification:
    """The rules that contribute most to the lead's stored score, and its latest hand-raise."""

    scored: bool
    top_rules: tuple[RuleContribution, ...] = ()
    intent: IntentEvent | None = None
    grade: str = ""
    score: Decimal | None = None


def leads_qualification(
    *, leads: Iterable[Lead], models: dict[int, int | None] | None = None, top: int = TOP_RULES
) -> dict[int, Qualification]:
    """Why each lead is where it is, by lead id, in four queries however many leads:
    their scores under the model that qualified them (``models``: lead id → model id;
    the default model for a lead not in it), the rulesets (and rules) that computed
    them, then their events. The single-lead engine recomputes each score as of its
    ``computed_at`` with the ruleset that produced it, exactly as the lead page's
    explanation does, so the points shown here add up the same way."""
    leads = list({lead.pk: lead for lead in leads}.values())
    models = models or {}
    default = model_default()
    wanted = {lead.pk: models.get(lead.pk) or (default.pk if default else None) for lead in leads}
    scores: dict[tuple[int, int | None], Score] = {
        (score.lead_id, score.model_id): score
        for score in Score.objects.filter(lead_id__in=list(wanted), model_id__in=set(wanted.values()) - {None})
    }
    scored = {
        lead.pk: scores[(lead.pk, model_id)] for lead in leads if (lead.pk, model_id := wanted[lead.pk]) in scores
    }
    specs = ruleset_specs(versions={score.ruleset_version for score in scored.values()})
    event_types = set().union(*(spec.event_types for spec in specs.values()))
    events: dict[int, list[engine.EventRow]] = defaultdict(list)
    rows = Event.objects.filter(lead_id__in=list(scored), type__in=event_types).values_list(
        "lead_id", "id", "type", "properties", "occurred_at"
    )
    for lead_id, event_id, event_type, properties, occurred_at in rows:
        row = engine.EventRow(type=event_type, properties=properties, occurred_at=occurred_at, id=event_id)
        events[lead_id].append(row)

    qualifications = {lead.pk: Qualification(scored=False) for lead in leads}
    for lead in leads:
        score = scored.get(lead.pk)
        spec = specs.get(score.ruleset_version) if score else None
        if score is None or spec is None:
            continue
        lead_events = events.get(lead.pk, [])
        result = engine.score_lead(lead_attributes(lead), lead_events, spec, score.computed_at, lead.recycled_at)
        # Largest first; ties keep the ruleset's order (fit rules, then behaviour, by position).
        contributions = sorted((r for r in result.results if r.contribution > 0), key=lambda r: -r.contribution)
        qualifications[lead.pk] = Qualification(
            scored=True,
            top_rules=tuple(
                RuleContribution(name=r.rule.name, kind=r.rule.kind, points=r.contribution, matched=r.matched)
                for r in contributions[:top]
            ),
            intent=_latest_intent(lead_events, spec.intent_event_types),
            grade=score.grade,
            score=score.score,
        )
    return qualifications


def explanation_intent(explanation: Explanation) -> IntentEvent | None:
    """The latest hand-raise among the events a single-lead explanation loaded."""
    if explanation.ruleset is None:
        return None
    return _latest_intent(explanation.events.values(), explanation.ruleset.intent_event_types)


@dataclass(frozen=True)
class QueueItem:
    handoff: Handoff
    why: Qualification


def queue_items(handoffs: Sequence[Handoff]) -> list[QueueItem]:
    """Handoffs (with their leads loaded) and why each lead qualified."""
    why = leads_qualification(
        leads=[handoff.lead for handoff in handoffs], models={h.lead_id: h.model_id for h in handoffs}
    )
    return [QueueItem(handoff=handoff, why=why[handoff.lead_id]) for handoff in handoffs]


# --- The sales queue page -------------------------------------------------------------------------
def sales_queue_order(*, overdue_first: bool = False) -> list[Any]:
    """The queue's order: the claim order (highest priority, the qualifying model's score
    at SQL, then oldest); or, ``overdue_first``, the overdue handoffs on top, the longest
    overdue first, then the others in claim order."""
    claim_order: list[Any] = ["-priority", "created_at", "id"]
    if not overdue_first:
        return claim_order
    late = overdue_q(timezone.now())
    return [
        Case(When(late, then=Value(0)), default=Value(1)).asc(),
        Case(When(late, then=F("due_at"))).asc(nulls_last=True),
        *claim_order,
    ]


def sales_queue(
    *, user: Any, overdue_only: bool = False, model: ScoringModel | None = None, overdue_first: bool = False
) -> QuerySet[Handoff]:
    """Queued handoffs in the queue's order (``sales_queue_order``); only those ``model``
    qualified when given."""
    queued = handoff_list(user=user).filter(status=HandoffStatus.QUEUED)
    if model is not None:
        queued = queued.filter(model=model)
    if overdue_only:
        queued = handoffs_overdue(queued, overdue=True)
    return queued.order_by(*sales_queue_order(overdue_first=overdue_first))


def sales_queue_next(*, user: Any, overdue_first: bool = False) -> Handoff | None:
    """The handoff a rep works next after a decision ("Accept & next"): the top of the
    queue in the order they chose, or None when nothing is queued."""
    return sales_queue(user=user, overdue_first=overdue_first).first()


def sales_queue_overdue_count(*, user: Any, model: ScoringModel | None = None) -> int:
    queued = handoff_list(user=user).filter(status=HandoffStatus.QUEUED)
    if model is not None:
        queued = queued.filter(model=model)
    return handoffs_overdue(queued, overdue=True).count()


def sales_claims(*, user: Any) -> list[Handoff]:
    """The rep's open claims, the one expiring first on top (bounded by the claim limit)."""
    claims = handoff_list(user=user).filter(status=HandoffStatus.CLAIMED, claimed_by=user)
    return list(claims.order_by("claim_expires_at", "id"))


# --- The handoff page -----------------------------------------------------------------------------
def handoff_visible(*, user: Any) -> QuerySet[Handoff]:
    """Handoffs ``user`` may open, with their audit trail (another rep's claim is not one)."""
    return handoff_with_events(handoff_list(user=user))


def trail_people(handoff: Handoff, trail: Sequence[HandoffEvent]) -> dict[str, str]:
    """The people an audit trail's details name by username (``claimed_by``, ``to``), by
    username: their full name, else the username. Read from the people already loaded
    with the trail, no query: whoever a detail names claimed, released or was given the
    handoff in an earlier step (its actor), or holds it now; anyone else keeps their
    username."""
    people = [event.actor for event in trail if event.actor_id] + [handoff.claimed_by]
    return {user.get_username(): person_name(user) for user in people if user is not None}


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


# --- The managers' page ---------------------------------------------------------------------------
# Which open handoffs the page lists (``?status=``): every open one, or only the claimed or
# the queued ones.
OVERVIEW_STATUSES: dict[str, tuple[str, ...]] = {
    "open": OPEN_STATUSES,
    "claimed": (HandoffStatus.CLAIMED,),
    "queued": (HandoffStatus.QUEUED,),
}


def handoffs_open_overview(
    *, user: Any, status: str = "open", rep: Any = None, overdue_only: bool = False
) -> QuerySet[Handoff]:
    """The open handoffs ``user`` may see (``handoffs_visible``: all of them, for the people
    the page is for), the overdue ones first, the longest overdue on top, then the others in
    claim order (``sales_queue_order``); only those ``rep`` holds when given."""
    handoffs = handoff_list(user=user).filter(status__in=OVERVIEW_STATUSES.get(status, OPEN_STATUSES))
    if rep is not None:
        handoffs = handoffs.filter(claimed_by=rep)
    if overdue_only:
        handoffs = handoffs_overdue(handoffs, overdue=True)
    return handoffs.order_by(*sales_queue_order(overdue_first=True))


def sales_reps() -> list[Any]:
    """The active people of the sales group, by name: whom a handoff may be given to
    (``handoff.services.handoff_reassign_target`` has the rule; staff outside the group
    may be named there too, but are not offered)."""
    reps = get_user_model().objects.filter(is_active=True, groups__name=SALES).distinct()
    return sorted(reps, key=lambda user: (person_name(user).casefold(), user.pk))


@dataclass(frozen=True)
class RepLoad:
    """What one rep holds: their open claims, how many of them are overdue, since when
    they hold the oldest."""

    rep: Any
    held: int = 0
    overdue: int = 0
    oldest_claimed_at: datetime | None = None


def rep_loads(*, reps: Sequence[Any]) -> list[RepLoad]:
    """Every rep of ``reps`` (holding claims or not) and anyone else holding a claim, with
    what they hold: the most overdue claims first, then the most claims, then by name. One
    aggregate query (and one more for holders outside ``reps``: a rep since deactivated)."""
    now = timezone.now()
    rows = (
        Handoff.objects.filter(status=HandoffStatus.CLAIMED)
        .values("claimed_by_id")
        .annotate(held=Count("id"), overdue=Count("id", filter=overdue_q(now)), oldest=Min("claimed_at"))
        .order_by()
    )
    held = {row["claimed_by_id"]: row for row in rows}
    people = {user.pk: user for user in reps}
    missing = set(held) - set(people)
    if missing:
        people.update({user.pk: user for user in get_user_model().objects.filter(pk__in=missing)})
    loads = [
        RepLoad(rep=user, held=row["held"], overdue=row["overdue"], oldest_claimed_at=row["oldest"])
        if (row := held.get(pk))
        else RepLoad(rep=user)
        for pk, user in people.items()
    ]
    return sorted(loads, key=lambda load: (-load.overdue, -load.held, person_name(load.rep).casefold()))


# --- The notifications page -----------------------------------------------------------------------
def notification_inbox(*, user: Any, unread_only: bool = False) -> QuerySet[Notification]:
    return notification_list(user=user, unread=True if unread_only else None)


# --- The accept checklist: what sales confirmed ----------------------------------------------------
def checklist_items(*, active_only: bool = False) -> QuerySet[ChecklistItem]:
    """The accept checklist's items in their order (the active ones: what a rep is asked)."""
    items = ChecklistItem.objects.order_by("position", "id")
    return items.filter(active=True) if active_only else items


def handoffs_checklists(*, handoffs: QuerySet[Handoff]) -> dict[int, dict[str, bool]]:
    """The accept checklist as answered on each accepted handoff of ``handoffs``: item key →
    confirmed, in the order asked, by handoff id. Handoffs not accepted, or accepted before
    the checklist existed, are absent. One query, whatever the number of handoffs (the
    quality report passes its handoffs as a queryset, not 20k ids)."""
    rows = handoffs.filter(status=HandoffStatus.ACCEPTED).exclude(checklist=[]).values_list("pk", "checklist")
    return {
        pk: {str(item["key"]): bool(item.get("confirmed")) for item in checklist}
        for pk, checklist in rows.iterator(chunk_size=5000)
    }


@dataclass(frozen=True)
class ConfirmationRate:
    """How often sales confirmed one checklist item when accepting: of the ``asked``
    accepted handoffs whose checklist had the item, ``confirmed`` confirmed it."""

    key: str
    label: str
    asked: int
    confirmed: int

    @property
    def missing(self) -> int:
        return self.asked - self.confirmed

    @property
    def missing_rate(self) -> float:
        """Percent of the accepted handoffs asked about the item that left it unconfirmed."""
        return 100 * self.missing / self.asked if self.asked else 0.0

    @property
    def confirmed_rate(self) -> float | None:
        """The share (0 to 1) of the accepted handoffs asked about the item that confirmed
        it; None when none was asked."""
        return self.confirmed / self.asked if self.asked else None

    @property
    def confirmed_shown(self) -> str:
        """The share confirmed for people: ``75%``, ``—`` when none was asked."""
        rate = self.confirmed_rate
        return "—" if rate is None else f"{100 * rate:.0f}%"


@dataclass(frozen=True)
class AcceptedConfirmations:
    accepted: int  # accepted in the period
    answered: int  # of those, accepted with the checklist (the others predate it)
    nothing_confirmed: int  # of those, accepted with no item confirmed
    items: list[ConfirmationRate]  # most often missing first

    @property
    def unrecorded(self) -> int:
        """Accepted before the checklist existed: nothing recorded."""
        return self.accepted - self.answered


def accepted_confirmations(*, since: datetime, until: datetime, source: Source | None = None) -> AcceptedConfirmations:
    """For the handoffs accepted in [since, until) (of ``source``'s leads when given): how
    often each checklist item was confirmed, the most often missing first. Counted over
    the checklists as answered (an item deactivated since still counts where it was
    asked), labelled as the checklist names the item today. Two queries."""
    accepted = Handoff.objects.filter(status=HandoffStatus.ACCEPTED, decided_at__gte=since, decided_at__lt=until)
    if source is not None:
        accepted = accepted.filter(lead__source=source)
    asked: dict[str, int] = defaultdict(int)
    confirmed: dict[str, int] = defaultdict(int)
    labels: dict[str, str] = {}
    total = answered = nothing = 0
    for checklist in accepted.values_list("checklist", flat=True).iterator(chunk_size=2000):
        total += 1
        if not checklist:
            continue
        answered += 1
        nothing += not any(item.get("confirmed") for item in checklist)
        for item in checklist:
            key = str(item["key"])
            asked[key] += 1
            confirmed[key] += bool(item.get("confirmed"))
            labels.setdefault(key, str(item.get("label") or key))
    if asked:
        labels.update(ChecklistItem.objects.filter(key__in=list(asked)).values_list("key", "label"))
    rates = [ConfirmationRate(key, labels[key], asked[key], confirmed[key]) for key in asked]
    rates.sort(key=lambda rate: (-rate.missing_rate, -rate.missing, rate.label, rate.key))
    return AcceptedConfirmations(accepted=total, answered=answered, nothing_confirmed=nothing, items=rates)


# --- Webhook subscriptions ------------------------------------------------------------------------
def webhook_subscriptions() -> QuerySet[WebhookSubscription]:
    """Every subscription with its owner and its deliveries' counts (one query)."""
    pending = Q(deliveries__delivered_at__isnull=True, deliveries__failed_at__isnull=True)
    return (
        WebhookSubscription.objects.select_related("owner")
        .annotate(
            pending_count=Count("deliveries", filter=pending),
            failed_count=Count("deliveries", filter=Q(deliveries__failed_at__isnull=False)),
        )
        .order_by("name", "id")
    )


# A delivery's state (``WebhookDelivery.status``) as a filter of the delivery log.
WEBHOOK_DELIVERY_STATES: dict[str, Q] = {
    "pending": Q(delivered_at__isnull=True, failed_at__isnull=True, attempts=0),
    "retrying": Q(delivered_at__isnull=True, failed_at__isnull=True, attempts__gt=0),
    "delivered": Q(delivered_at__isnull=False),
    "failed": Q(failed_at__isnull=False),
}


def webhook_deliveries(*, subscription: WebhookSubscription, state: str = "") -> QuerySet[WebhookDelivery]:
    """The subscription's delivery log, newest first; ``state``: only the deliveries in it."""
    deliveries = WebhookDelivery.objects.filter(subscription=subscription)
    if state in WEBHOOK_DELIVERY_STATES:
        deliveries = deliveries.filter(WEBHOOK_DELIVERY_STATES[state])
    return deliveries.order_by("-created_at", "-id")
