from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from handoff.roles import (
    can_configure_checklist,
    can_manage_webhooks,
    can_read_handoffs,
    can_read_quality,
    can_reassign_handoffs,
    can_work_handoffs,
)
from leadflow.leads.roles import ALL_ROLES, has_role


class CanWorkHandoffs(BasePermission):
    """Sales acts on the queue; marketing and scoring admins may read it."""

    message = "You need the sales role to work the queue; marketing and scoring admins may only read it."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return can_read_handoffs(request.user)
        return can_work_handoffs(request.user)


class CanReassignHandoffs(BasePermission):
    message = "Only sales managers (staff users) and scoring admins may reassign handoffs."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_reassign_handoffs(request.user)


class CanReadHandoffHistory(BasePermission):
    message = "You need the marketing, sales or scoring_admin role to see handoff history and statistics."

    def has_permission(self, request: Request, view: Any) -> bool:
        return has_role(request.user, *ALL_ROLES)


class CanReadQuality(BasePermission):
    message = "Score quality is for scoring admins and marketing: ask an administrator for one of these roles."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_read_quality(request.user)


class CanConfigureChecklist(BasePermission):
    """Everyone with a role reads the accept checklist (reps answer it); scoring admins
    and staff change it."""

    message = "Only scoring admins and staff change the accept checklist; everyone with a role may read it."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return has_role(request.user, *ALL_ROLES)
        return can_configure_checklist(request.user)


class CanManageWebhooks(BasePermission):
    message = "Webhook subscriptions are managed by scoring admins and staff: ask one of them."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_manage_webhooks(request.user)
