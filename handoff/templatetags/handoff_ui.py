"""Template helpers of the handoff pages (and of the handoffs shown on the lead page and
the dashboard): where a handoff stands against its SLA, what its audit trail says."""

from dataclasses import dataclass
from datetime import timedelta

from django import template
from django.utils import timezone

from handoff.models import (
    DECIDED_STATUSES,
    DISQUALIFYING_REASONS,
    Handoff,
    HandoffAction,
    HandoffEvent,
    RejectReason,
)
from leadflow.leads.templatetags.leadflow_ui import duration, stage_label

register = template.Library()


SLA_SOON = timedelta(hours=4)


@dataclass(frozen=True)
class Sla:
    overdue: bool  # open and past due: the rep should act now
    late: bool  # decided after the due time
    text: str
    soon: bool = False  # open and due within SLA_SOON
    # SLA_SOON for the page's script, which ticks the countdown (static/js/app.js).
    soon_seconds: int = int(SLA_SOON.total_seconds())


@register.filter
def sla(handoff: Handoff) -> Sla:
    """Where a handoff stands against its SLA (``due_at``)."""
    now = timezone.now()
    if handoff.is_open:
        if handoff.is_overdue(now):
            return Sla(overdue=True, late=False, text=f"overdue by {duration(now - handoff.due_at)}")
        left = handoff.due_at - now
        return Sla(overdue=False, late=False, text=f"due in {duration(left)}", soon=left <= SLA_SOON)
    if handoff.status not in DECIDED_STATUSES or handoff.decided_at is None:
        return Sla(overdue=False, late=False, text="")  # closed by hand: the SLA no longer applies
    if handoff.decided_at > handoff.due_at:
        return Sla(overdue=False, late=True, text=f"decided {duration(handoff.decided_at - handoff.due_at)} late")
    return Sla(overdue=False, late=False, text="decided within the SLA")


# The audit details that name a rep, by username (handoff.services writes them).
PERSON_DETAILS = ("claimed_by", "to")


@register.filter
def handoff_event_summary(event: HandoffEvent, people: dict[str, str] | None = None) -> str:
    """What an audit-trail entry says beyond its action, from its details; the reps its
    details name by username are named as ``people`` (username → full name) has them."""
    details = event.details if isinstance(event.details, dict) else {}
    details = {
        **details,
        **{key: (people or {}).get(details[key], details[key]) for key in PERSON_DETAILS if details.get(key)},
    }
    action = event.action
    if action == HandoffAction.OPENED:
        return "The lead became an SQL and joined the queue."
    if action == HandoffAction.RELEASED:
        return f"Back to the queue (claimed by {details.get('claimed_by', '—')})."
    if action == HandoffAction.EXPIRED:
        return f"{details.get('claimed_by', 'The rep')} held it too long: back to the queue."
    if action == HandoffAction.ACCEPTED:
        return "The lead is accepted and owned by the rep."
    if action == HandoffAction.REJECTED:
        reason = details.get("reason", "")
        label = RejectReason(reason).label if reason in RejectReason.values else reason
        stage = stage_label(str(details.get("lead_stage", ""))).lower()
        return f"{label}: the lead is {stage}." if stage else f"{label}."
    if action == HandoffAction.REASSIGNED:
        previous = details.get("claimed_by") or "the queue"
        return f"From {previous} to {details.get('to', '—')}."
    if action == HandoffAction.OVERDUE:
        return "Past its due time while still open."
    if action == HandoffAction.CLOSED:
        return str(details.get("reason") or "Closed when the lead left SQL by hand.")
    return ""


@register.filter
def reject_outcome(reason: str) -> str:
    """What a rejection for ``reason`` did to the lead."""
    return "disqualified" if reason in DISQUALIFYING_REASONS else "recycled to nurturing"
