"""Small template helpers of the pages: roles, navigation, numbers, durations, SLAs."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django import template
from django.utils import timezone

from handoff.models import (
    DECIDED_STATUSES,
    DISQUALIFYING_REASONS,
    OPEN_STATUSES,
    Handoff,
    HandoffAction,
    HandoffEvent,
    RejectReason,
)
from leadflow.leads.models import Stage
from leadflow.leads.roles import ALL_ROLES, role_names
from leadflow.leads.roles import has_role as user_has_role

register = template.Library()


@register.filter
def has_role(user: Any, roles: str) -> bool:
    """``user|has_role:"marketing,scoring_admin"`` (staff always pass)."""
    return user_has_role(user, *[role.strip() for role in roles.split(",") if role.strip()])


@register.filter
def has_any_role(user: Any) -> bool:
    return user_has_role(user, *ALL_ROLES)


@register.filter
def role_labels(user: Any) -> str:
    if getattr(user, "is_superuser", False):
        return "superuser"
    labels = sorted(role.replace("_", " ") for role in role_names(user))
    if getattr(user, "is_staff", False):
        labels.append("staff")
    return ", ".join(labels)


@register.filter
def starts_with(text: str, prefix: str) -> bool:
    return str(text).startswith(prefix)


@register.filter
def percent(value: float | None) -> str:
    """A rate in percent for people: ``—`` when undefined."""
    if value is None:
        return "—"
    return f"{value:.0f}%" if value >= 10 or value == 0 else f"{value:.1f}%"


@register.filter
def score(value: Decimal | float | None) -> str:
    """A score as people read it: at most one decimal."""
    if value is None:
        return "—"
    number = Decimal(value).quantize(Decimal("0.1"))
    text = format(number, "f")
    return text[:-2] if text.endswith(".0") else text


@register.filter
def signed(value: Decimal | float | None) -> str:
    if value is None:
        return "—"
    text = score(value)
    return text if text.startswith("-") or text == "0" else f"+{text}"


@register.filter
def duration(value: timedelta | None) -> str:
    """``3.2 days``, ``5 h``, ``12 min``; ``—`` when undefined."""
    if value is None:
        return "—"
    seconds = value.total_seconds()
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{max(seconds, 0) / 60:.0f} min"


@register.filter
def properties_summary(properties: Any, limit: int = 4) -> list[tuple[str, str]]:
    """The first few properties of an event as (key, text) pairs."""
    if not isinstance(properties, dict):
        return []
    pairs = []
    for key, value in list(properties.items())[:limit]:
        text = value if isinstance(value, str) else str(value)
        pairs.append((str(key), text if len(text) <= 80 else text[:79] + "…"))
    return pairs


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def elapsed(end: Any, start: Any) -> str:
    """``{{ run.finished_at|elapsed:run.started_at }}``: ``4 s``, ``2.5 min``."""
    if not end or not start:
        return "—"
    seconds = (end - start).total_seconds()
    if seconds < 1:
        return "under a second"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return duration(end - start)


@register.filter
def stage_label(value: str) -> str:
    return str(Stage(value).label) if value in Stage.values else value


# --- The sales pages --------------------------------------------------------------------------------
@register.filter
def countdown(value: timedelta | None) -> str:
    """A span of time as an SLA reads it: ``42 min``, ``5 h 20 min``, ``3 days 4 h``."""
    if value is None:
        return "—"
    minutes = int(abs(value.total_seconds()) // 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    if hours == 0:
        return f"{minutes} min"
    if hours < 10:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if hours < 48:
        return f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h" if days < 10 and hours else f"{days} days"


@register.filter
def age(moment: datetime | None) -> str:
    """How long ago: ``3 days 4 h`` (a queue's waiting time)."""
    return "—" if moment is None else countdown(timezone.now() - moment)


@register.filter
def relative(moment: datetime | None) -> str:
    """``in 3 h 10 min`` or ``2 days ago``."""
    if moment is None:
        return "—"
    delta = moment - timezone.now()
    return f"in {countdown(delta)}" if delta.total_seconds() > 0 else f"{countdown(delta)} ago"


@dataclass(frozen=True)
class Sla:
    overdue: bool  # open and past due: the rep should act now
    late: bool  # decided after the due time
    text: str
    soon: bool = False  # open and due within SLA_SOON


SLA_SOON = timedelta(hours=4)


@register.filter
def sla(handoff: Handoff) -> Sla:
    """Where a handoff stands against its SLA (``due_at``)."""
    now = timezone.now()
    if handoff.status in OPEN_STATUSES:
        if handoff.due_at <= now:
            return Sla(overdue=True, late=False, text=f"overdue by {countdown(now - handoff.due_at)}")
        left = handoff.due_at - now
        return Sla(overdue=False, late=False, text=f"due in {countdown(left)}", soon=left <= SLA_SOON)
    if handoff.status not in DECIDED_STATUSES or handoff.decided_at is None:
        return Sla(overdue=False, late=False, text="")  # closed by hand: the SLA no longer applies
    if handoff.decided_at > handoff.due_at:
        return Sla(overdue=False, late=True, text=f"decided {countdown(handoff.decided_at - handoff.due_at)} late")
    return Sla(overdue=False, late=False, text="decided within the SLA")


@register.filter
def handoff_event_summary(event: HandoffEvent) -> str:
    """What an audit-trail entry says beyond its action, from its details."""
    details = event.details if isinstance(event.details, dict) else {}
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
