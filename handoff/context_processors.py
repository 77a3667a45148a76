"""Template context of every page: the unread notification count of the navigation
(``TEMPLATES`` in settings lists ``notifications``)."""

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

from handoff.selectors import notification_unread_count
from leadflow.leads.roles import ALL_ROLES, has_role


def unread_notifications(request: HttpRequest) -> int:
    """One COUNT per request, however often the page asks (the badge, the inbox tabs)."""
    cached = getattr(request, "_leadflow_unread", None)
    if cached is None:
        user = getattr(request, "user", None)
        cached = notification_unread_count(user=user) if has_role(user, *ALL_ROLES) else 0
        request._leadflow_unread = cached  # type: ignore[attr-defined]
    return cached


def notifications(request: HttpRequest) -> dict[str, Callable[[], Any]]:
    """``unread_notifications`` is a callable: templates call it only where they show it,
    so pages without the navigation (or anonymous visitors) run no query."""
    return {"unread_notifications": lambda: unread_notifications(request)}
