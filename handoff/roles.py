"""Who may do what in the sales queue.

A **sales manager** is simply a staff user (or a superuser): there is no separate
group. Sales managers see every handoff, may release any claim and reassign
handoffs; scoring admins may reassign too (they run the process). Reps (the
``sales`` group) see queued handoffs and their own claims and act on those.
Marketers read everything, including reject reasons, but do not act.
"""

from typing import Any

from leadflow.leads.roles import MARKETING, SALES, SCORING_ADMIN, has_role, sees_every_decision


def is_sales_manager(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and (user.is_staff or user.is_superuser))


def can_read_handoffs(user: Any) -> bool:
    return has_role(user, SALES, MARKETING, SCORING_ADMIN)


def can_work_handoffs(user: Any) -> bool:
    """Claim, release, accept, reject: reps (and staff)."""
    return has_role(user, SALES)


def can_reassign_handoffs(user: Any) -> bool:
    return is_sales_manager(user) or has_role(user, SCORING_ADMIN)


def sees_every_handoff(user: Any) -> bool:
    """Marketers, scoring admins and sales managers see the whole queue; a rep sees
    queued handoffs and their own claims."""
    return is_sales_manager(user) or sees_every_decision(user)


def can_read_quality(user: Any) -> bool:
    """Score quality and backtests (``handoff.quality``): scoring admins and marketing (and staff)."""
    return has_role(user, MARKETING, SCORING_ADMIN)


def can_configure_checklist(user: Any) -> bool:
    """The accept checklist (what sales confirms) is set by scoring admins and staff."""
    return has_role(user, SCORING_ADMIN)


def can_manage_webhooks(user: Any) -> bool:
    """Webhook subscriptions (``handoff.webhooks``) are registered by scoring admins and staff."""
    return has_role(user, SCORING_ADMIN)
