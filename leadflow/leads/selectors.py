"""Reads of the lead core."""

from django.db.models import QuerySet
from django.db.models.functions import Coalesce

from leadflow.leads.models import Event, Lead

RECENT_EVENTS = 20


def lead_list() -> QuerySet[Lead]:
    """Leads with what list views show; ``activity_at`` orders leads that never acted by creation."""
    return Lead.objects.select_related("source", "owner").annotate(
        activity_at=Coalesce("last_activity_at", "created_at")
    )


def lead_recent_events(*, lead: Lead, limit: int = RECENT_EVENTS) -> list[Event]:
    return list(lead.events.select_related("source").order_by("-occurred_at", "-id")[:limit])
