"""Roles are Django groups; staff and superusers may do everything."""

from typing import Any

MARKETING = "marketing"
SALES = "sales"
SCORING_ADMIN = "scoring_admin"
ALL_ROLES = (MARKETING, SALES, SCORING_ADMIN)


def role_names(user: Any) -> frozenset[str]:
    """The user's role names, cached on the user object for the request."""
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, "_leadflow_roles", None)
    if cached is None:
        cached = frozenset(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        user._leadflow_roles = cached
    return cached


def has_role(user: Any, *roles: str) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser or user.is_staff:
        return True
    return bool(role_names(user) & set(roles))
