from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from leadflow.leads.models import IngestKey
from leadflow.leads.roles import ALL_ROLES, MARKETING, SCORING_ADMIN, has_role


class HasIngestKey(BasePermission):
    message = "This endpoint takes an ingest key: 'Authorization: Bearer lfi_…'."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, IngestKey)


class CanReadLeads(BasePermission):
    message = "You need the marketing, sales or scoring_admin role to see leads."

    def has_permission(self, request: Request, view: Any) -> bool:
        return has_role(request.user, *ALL_ROLES)


class CanEditLeads(BasePermission):
    message = "You need the marketing or scoring_admin role to edit leads."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return has_role(request.user, *ALL_ROLES)
        return has_role(request.user, MARKETING, SCORING_ADMIN)
