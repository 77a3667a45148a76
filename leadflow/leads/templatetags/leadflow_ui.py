"""Small template helpers of every app's pages: roles, navigation, numbers, people,
durations, times. (The handoff's own, SLAs and the audit trail, are in ``handoff_ui``.)"""

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from leadflow.leads.event_names import event_type_label
from leadflow.leads.models import Stage
from leadflow.leads.people import person_name
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
def person(user: Any) -> str:
    """``{{ handoff.claimed_by|person|default:"a rep" }}``: a full name, else the username."""
    return person_name(user)


@register.filter
def mailto(email: str | None) -> SafeString | str:
    """An e-mail address as a link that opens the person's mail client (escaped, and
    percent-encoded in the link); ``—`` when there is none."""
    if not email:
        return "—"
    return format_html('<a class="mailto" href="mailto:{}">{}</a>', quote(str(email), safe="@"), email)


@register.filter
def starts_with(text: str, prefix: str) -> bool:
    return str(text).startswith(prefix)


@register.filter
def percent(value: float | None) -> str:
    """A rate in percent for people: ``—`` when undefined."""
    if value is None:
        return "—"
    return f"{value:.0f}%" if value >= 10 or value == 0 else f"{value:.1f}%"


SCORE_PLACES = Decimal("0.01")  # scores, points and thresholds are stored with two decimals


@register.filter
def score(value: Decimal | float | None) -> str:
    """A score (or points, a threshold) as every page shows it: always two decimals, as
    stored, so that the rows of an explanation add up on screen to the total under them
    (the engine's contributions sum exactly to the stored score)."""
    if value is None or value == "":
        return "—"
    number = Decimal(str(value)).quantize(SCORE_PLACES, rounding=ROUND_HALF_UP)
    text = format(number, "f")
    return "0.00" if text == "-0.00" else text


@register.filter
def graded(value: Decimal | float | None, grade: str | None) -> str:
    """A score with its fit grade, as lists show them: ``{{ lead.score|graded:lead.grade }}``
    reads ``B · 74.00``; a lead the model never scored reads ``—``."""
    if not grade:
        return "—"
    return f"{grade} · {score(value)}"


@register.filter
def signed(value: Decimal | float | None) -> str:
    """Points with their sign, two decimals like every score: ``+12.50``, ``-5.00``, ``0.00``."""
    if value is None:
        return "—"
    text = score(value)
    return text if text.startswith("-") or text == "0.00" else f"+{text}"


@register.filter
def number(value: Decimal | float | None) -> str:
    """A quantity that is no score (a half-life in days): at most one decimal, ``14`` or ``3.5``."""
    if value is None or value == "":
        return "—"
    text = format(Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP), "f")
    return text[:-2] if text.endswith(".0") else text


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
def event_label(event_type: str) -> str:
    """An event type in words: ``demo_request`` → "Requested a demo" (``event_names``)."""
    return event_type_label(str(event_type or ""))


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def elapsed(end: Any, start: Any) -> str:
    """``{{ run.finished_at|elapsed:run.started_at }}``: the time between, as ``duration`` says it."""
    if not end or not start:
        return "—"
    return duration(end - start)


@register.filter
def stage_label(value: str) -> str:
    return str(Stage(value).label) if value in Stage.values else value


# --- Durations and times ------------------------------------------------------------------------
# One format for every span of time on every page (an SLA, a claim's expiry, a queue's
# waiting time, the dashboard's medians, a rescore's run time, "3 h ago"): static/js/app.js
# (formatDuration) says it the same way when the SLA countdown ticks in the browser.
@register.filter
def duration(value: timedelta | None) -> str:
    """A span of time as a person says it: ``under a minute``, ``42 min``, ``5 h 20 min``,
    ``26 h``, ``3 days 4 h``, ``12 days``; its sign is the caller's to say (``relative``);
    ``—`` when undefined."""
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


# The same filter under the name the SLA pages first gave it (templates and imports of
# branches written before the formats became one keep working).
countdown = duration
register.filter("countdown", duration)


@register.filter
def age(moment: datetime | None) -> str:
    """How long ago: ``3 days 4 h`` (a queue's waiting time)."""
    return "—" if moment is None else duration(timezone.now() - moment)


@register.filter
def relative(moment: datetime | None) -> str:
    """``in 3 h 10 min`` or ``2 days ago``."""
    if moment is None:
        return "—"
    delta = moment - timezone.now()
    return f"in {duration(delta)}" if delta.total_seconds() > 0 else f"{duration(delta)} ago"


@register.filter
def row_count(paginator: Any) -> str:
    """A list's size as pages say it: "1,234", or "more than 1,000" past the count's cap
    (``leadflow.pagination.CappedCountPaginator``: no COUNT(*) of a million rows)."""
    if getattr(paginator, "count_exact", True):
        return f"{paginator.count:,}"
    return f"more than {paginator.cap:,}"
