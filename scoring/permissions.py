from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from leadflow.leads.roles import ALL_ROLES, MARKETING, SCORING_ADMIN, has_role


class CanEditRules(BasePermission):
    message = "Only scoring admins may change rulesets; other roles may read them."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return has_role(request.user, *ALL_ROLES)
        return has_role(request.user, SCORING_ADMIN)


class CanChangeStage(BasePermission):
    message = "You need the marketing or scoring_admin role to change a lead's stage by hand."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return has_role(request.user, *ALL_ROLES)
        return has_role(request.user, MARKETING, SCORING_ADMIN)
