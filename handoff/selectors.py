"""Reads of the sales handoff: the queue as each person may see it, a lead's handoff
history, notifications, and the handoff statistics marketing learns from."""

import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Func, Prefetch, Q, QuerySet
from django.utils import timezone

from handoff.models import (
    DECIDED_STATUSES,
    OPEN_STATUSES,
    Handoff,
    HandoffEvent,
    HandoffStatus,
    Notification,
    RejectReason,
)
from handoff.roles import is_sales_manager, sees_every_handoff
from leadflow.leads.models import Lead, Source


def _with_relations(queryset: QuerySet[Handoff]) -> QuerySet[Handoff]:
    return queryset.select_related("lead", "claimed_by")


def handoff_list(*, user: Any) -> QuerySet[Handoff]:
    """Handoffs ``user`` may see: everything for marketing, scoring admins and sales
    managers; queued handoffs and the rep's own claims (and their history) for a rep."""
    queryset = _with_relations(Handoff.objects.all())
    if sees_every_handoff(user):
        return queryset
    return queryset.filter(Q(status=HandoffStatus.QUEUED) | Q(claimed_by=user))


def handoff_actionable(*, user: Any) -> QuerySet[Handoff]:
    """Handoffs ``user`` may act on: another rep's claim is not among them (the API
    answers 404, as for a handoff that does not exist). The services lock and reload
    what they change, so no relations are loaded here."""
    queryset = Handoff.objects.all()
    if is_sales_manager(user):
        return queryset
    return queryset.filter(Q(status=HandoffStatus.QUEUED) | Q(claimed_by=user))


def handoff_with_events(queryset: QuerySet[Handoff]) -> QuerySet[Handoff]:
    return queryset.prefetch_related(
        Prefetch("events", queryset=HandoffEvent.objects.select_related("actor").order_by("at", "id"))
    )


def handoffs_overdue(queryset: QuerySet[Handoff], *, overdue: bool) -> QuerySet[Handoff]:
    """Open and past due (whether or not the sweep has flagged it yet)."""
    condition = Q(status__in=OPEN_STATUSES, due_at__lte=timezone.now())
    return queryset.filter(condition) if overdue else queryset.exclude(condition)


def lead_handoffs(*, lead: Lead) -> QuerySet[Handoff]:
    """The lead's handoffs, newest first, with their audit trail."""
    return handoff_with_events(_with_relations(Handoff.objects.filter(lead=lead))).order_by("-created_at", "-id")


# --- Notifications ------------------------------------------------------------------------------
def notification_list(*, user: Any, unread: bool | None = None) -> QuerySet[Notification]:
    queryset = Notification.objects.filter(recipient=user)
    if unread is True:
        queryset = queryset.filter(read_at__isnull=True)
    elif unread is False:
        queryset = queryset.filter(read_at__isnull=False)
    return queryset.order_by("-created_at", "-id")


def notification_unread_count(*, user: Any) -> int:
    return Notification.objects.filter(recipient=user, read_at__isnull=True).count()


# --- Statistics ----------------------------------------------------------------------------------
class Median(Aggregate):
    """PostgreSQL's ``percentile_cont(0.5)``: the median, interpolated."""

    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


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
    overdue_now = Q(status__in=OPEN_STATUSES, due_at__lte=now)
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
    if connection.vendor == "postgresql":
        counts["to_claim"] = Median(
            _seconds_between("created_at", "first_claimed_at"), filter=Q(first_claimed_at__isnull=False)
        )
        counts["to_decision"] = Median(_seconds_between("created_at", "decided_at"), filter=decided)
    row = handoffs.aggregate(**counts)
    if connection.vendor != "postgresql":
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
    """The Python fallback for databases without ``percentile_cont`` (SQLite)."""
    seconds = [(finished - created).total_seconds() for created, finished in handoffs.values_list("created_at", end)]
    return float(statistics.median(seconds)) if seconds else None
