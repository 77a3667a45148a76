"""Roles are Django groups; staff and superusers may do everything."""

from typing import Any

MARKETING = "marketing"
SALES = "sales"
SCORING_ADMIN = "scoring_admin"
ALL_ROLES = (MARKETING, SALES, SCORING_ADMIN)
# Who moves leads between stages by hand (one on its page, several from the leads list).
STAGE_EDITORS = (MARKETING, SCORING_ADMIN)
# Who imports leads from a CSV export on the import pages.
IMPORTERS = (MARKETING, SCORING_ADMIN)
# Who reads Segment ingest's drop log and edits a source's Segment event names.
SEGMENT_MAPPING_EDITORS = (MARKETING, SCORING_ADMIN)


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


def sees_every_decision(user: Any) -> bool:
    """Marketing, scoring admins and staff see the work of every rep: every handoff
    (``handoff.roles.sees_every_handoff``) and who decided each one in a lead's stage
    history. A rep sees only their own (``leadflow.leads.selectors.lead_stage_history``)."""
    return has_role(user, MARKETING, SCORING_ADMIN)


def is_rep_only(user: Any) -> bool:
    """A sales rep and nothing more (no marketing, scoring admin or staff): their day is
    the sales queue, which is where they land after logging in."""
    if not getattr(user, "is_authenticated", False) or user.is_staff or user.is_superuser:
        return False
    return SALES in role_names(user) and not role_names(user) & {MARKETING, SCORING_ADMIN}
