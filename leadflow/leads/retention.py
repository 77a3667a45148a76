"""Retention: old events and anonymous visitors are deleted on a schedule.

``RETENTION_EVENTS_MONTHS`` (0: keep for ever): events that occurred more than that many
calendar months ago are deleted, and the leads that lost events are flagged for
rescoring and scored through the incremental path (``request_scoring_after_commit``;
the sweeper catches any the broker missed), so behaviour points earned from deleted
events disappear from their scores.

``RETENTION_ANONYMOUS_DAYS`` (0: keep): an anonymous visitor — a lead with no e-mail and
no name, known by Segment's ``anonymousId`` alone (``Lead.visitor``) or by an external id
alone — that never qualified (stage ``new``, no handoff) and was not active (no event, no
creation) for that many days is deleted with its events, scores and anonymous ids (the
same id seen again starts a new visitor).

Set-based and chunked: each chunk of event ids is deleted, and its leads flagged, in a
short transaction of its own, so a large first run never holds one huge transaction.
"""

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from leadflow.leads import rollups
from leadflow.leads.models import Event, Lead, Stage
from leadflow.leads.services import request_scoring_after_commit

RETENTION_CHUNK = 10_000


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time ``months`` calendar months earlier (the month's last day
    when it is shorter: 31 March minus one month is 28 or 29 February)."""
    month_index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(month_index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


@dataclass
class RetentionResult:
    events_cutoff: datetime | None = None
    anonymous_cutoff: datetime | None = None
    events: int = 0
    rescored_leads: int = 0
    anonymous_leads: int = 0
    dry_run: bool = False


def _anonymous_visitors(cutoff: datetime) -> Q:
    recent_event = Event.objects.filter(lead=OuterRef("pk"), occurred_at__gte=cutoff)
    condition = Q(email__isnull=True, name="", erased_at__isnull=True, stage=Stage.NEW, created_at__lt=cutoff) & ~Q(
        Exists(recent_event)
    )
    # Handoffs are handoff's (a layer above): looked up by the reverse relation's name.
    if apps.is_installed("handoff"):
        condition &= Q(handoffs__isnull=True)
    return condition


def retention_apply(
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    events_months: int | None = None,
    anonymous_days: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> RetentionResult:
    """Apply the retention settings (or the given values) as of ``now``. ``dry_run``
    counts what would be deleted and deletes nothing. ``progress(kind, count)`` is
    called after each chunk with the running total of that kind."""
    now = now or timezone.now()
    months = settings.RETENTION_EVENTS_MONTHS if events_months is None else events_months
    days = settings.RETENTION_ANONYMOUS_DAYS if anonymous_days is None else anonymous_days
    result = RetentionResult(dry_run=dry_run)
    if months:
        result.events_cutoff = cutoff = months_before(now, months)
        old = Event.objects.filter(occurred_at__lt=cutoff)
        if dry_run:
            result.events = old.count()
            result.rescored_leads = old.values("lead_id").distinct().count()
        else:
            touched: set[int] = set()
            while True:
                with transaction.atomic():
                    chunk = list(old.order_by("id").values_list("id", "lead_id")[:RETENTION_CHUNK])
                    if not chunk:
                        break
                    lead_ids = sorted({lead_id for _id, lead_id in chunk})
                    # Leads first, in id order (ingest's lock order), then their events.
                    Lead.objects.filter(id__in=lead_ids).update(needs_rescore=True, updated_at=now)
                    Event.objects.filter(id__in=[event_id for event_id, _lead in chunk]).delete()
                    request_scoring_after_commit(lead_ids)
                result.events += len(chunk)
                touched.update(lead_ids)
                if progress:
                    progress("events", result.events)
            result.rescored_leads = len(touched)
    if days:
        result.anonymous_cutoff = cutoff = now - timedelta(days=days)
        visitors = Lead.objects.annotate(active_at=Coalesce("last_activity_at", "created_at")).filter(
            _anonymous_visitors(cutoff), active_at__lt=cutoff
        )
        if dry_run:
            result.anonymous_leads = visitors.count()
        else:
            while True:
                with transaction.atomic():
                    ids = list(visitors.order_by("id").values_list("id", flat=True)[:RETENTION_CHUNK])
                    if not ids:
                        break
                    rollups.leads_deleted_record(ids)  # the dashboard's counts follow
                    Lead.objects.filter(id__in=ids).delete()
                result.anonymous_leads += len(ids)
                if progress:
                    progress("anonymous leads", result.anonymous_leads)
    return result
