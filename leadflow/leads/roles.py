"""Roles are Django groups; staff and superusers may do everything."""

from typing import Any, TypeVar

from django.contrib.auth.models import Group
from django.db.models import Exists, Model, OuterRef, QuerySet

MARKETING = "marketing"
SALES = "sales"
SCORING_ADMIN = "scoring_admin"
ALL_ROLES = (MARKETING, SALES, SCORING_ADMIN)

_ROLES_CACHE = "_leadflow_roles"
M = TypeVar("M", bound=Model)


def _role_flag(role: str) -> str:
    return f"has_role_{role}"


def role_names(user: Any) -> frozenset[str]:
    """The user's role names, cached on the user object for the request."""
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, _ROLES_CACHE, None)
    if cached is None:
        cached = frozenset(user.groups.filter(name__in=ALL_ROLES).values_list("name", flat=True))
        setattr(user, _ROLES_CACHE, cached)
    return cached


def roles_annotate(rows: QuerySet[M], *, user_path: str) -> QuerySet[M]:
    """``rows`` with a flag per role of the user at ``user_path`` (one EXISTS each, so
    the roles come with the query that loads the user; ``roles_remember`` reads them)."""
    return rows.annotate(
        **{_role_flag(role): Exists(Group.objects.filter(name=role, user=OuterRef(user_path))) for role in ALL_ROLES}
    )


def roles_remember(user: Any, row: Any) -> None:
    """Cache on ``user`` the roles ``roles_annotate`` loaded on ``row``, for the request."""
    setattr(user, _ROLES_CACHE, frozenset(role for role in ALL_ROLES if getattr(row, _role_flag(role))))


def has_role(user: Any, *roles: str) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser or user.is_staff:
        return True
    return bool(role_names(user) & set(roles))
