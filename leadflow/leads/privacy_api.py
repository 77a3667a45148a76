"""HTTP API of the privacy operations (``leadflow.leads.privacy``): export and erase one
person, by lead id or by e-mail, and the suppression list of erased addresses. Scoring
admins and staff only (``can_manage_privacy``)."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from leadflow.leads import privacy, selectors
from leadflow.leads.models import Erasure, Lead
from leadflow.leads.validation import email_invisible_error, normalise_email


class CanManagePrivacy(BasePermission):
    message = "Exporting and erasing people is for scoring admins and staff."

    def has_permission(self, request: Request, view: Any) -> bool:
        return privacy.can_manage_privacy(request.user)


class PersonEmailSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=254, help_text="The person's e-mail address (any case).")

    def validate_email(self, value: str) -> str:
        if problem := email_invisible_error(value):
            raise serializers.ValidationError(problem)
        email = normalise_email(value)
        try:
            validate_email(email)
        except DjangoValidationError:
            raise serializers.ValidationError("Enter a valid e-mail address, such as ada@example.com.") from None
        return email


def _email(data: Any) -> str:
    serializer = PersonEmailSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return str(serializer.validated_data["email"])


def _lead_by_email(email: str) -> Lead:
    lead = selectors.lead_list().filter(email=email).first()
    if lead is None:
        raise exceptions.NotFound(
            "No lead has this e-mail address: check its spelling, or look the person up by lead id."
        )
    return lead


def _lead_by_id(lead_id: Any) -> Lead:
    return get_object_or_404(selectors.lead_list(), public_id=lead_id)


class ErasureSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_username", help_text="Who erased the person.")
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Records removed or scrubbed, by kind.")

    class Meta:
        model = Erasure
        fields = ["id", "at", "actor", "email_hash", "counts"]
        read_only_fields = fields


EMAIL_PARAMETER = OpenApiParameter("email", str, required=True, description="The person's e-mail address.")
EXPORT_RESPONSE = OpenApiResponse(
    response={"type": "object", "additionalProperties": True},
    description="Everything held about the person: lead (identities, profile, traits), events, stage_history, "
    "admin_log, scores (with explanations), handoffs (with notes and audit), notifications, webhook_deliveries.",
)
NO_SUCH_PERSON = OpenApiResponse(description="No lead has this e-mail address (or it was erased).")


def _erase(lead: Lead, user: Any) -> Response:
    try:
        erasure = privacy.person_erase(lead=lead, actor=user)
    except privacy.AlreadyErased:
        raise exceptions.NotFound("No such lead: it was erased already.") from None
    return Response(ErasureSerializer(erasure).data)


class LeadExportView(APIView):
    permission_classes = [CanManagePrivacy]

    @extend_schema(
        operation_id="lead_export",
        summary="Export everything held about a lead's person",
        responses={200: EXPORT_RESPONSE},
    )
    def get(self, request: Request, lead_id: Any) -> Response:
        return Response(privacy.person_export(lead=_lead_by_id(lead_id)))


class LeadEraseView(APIView):
    permission_classes = [CanManagePrivacy]

    @extend_schema(
        operation_id="lead_erase",
        summary="Erase a lead's person (their e-mail goes on the suppression list)",
        request=None,
        responses={200: ErasureSerializer},
    )
    def post(self, request: Request, lead_id: Any) -> Response:
        return _erase(_lead_by_id(lead_id), request.user)


class PersonExportView(APIView):
    permission_classes = [CanManagePrivacy]

    @extend_schema(
        operation_id="privacy_export",
        summary="Export everything held about a person, by e-mail",
        parameters=[EMAIL_PARAMETER],
        responses={200: EXPORT_RESPONSE, 404: NO_SUCH_PERSON},
    )
    def get(self, request: Request) -> Response:
        return Response(privacy.person_export(lead=_lead_by_email(_email(request.query_params))))


class PersonEraseView(APIView):
    permission_classes = [CanManagePrivacy]

    @extend_schema(
        operation_id="privacy_erase",
        summary="Erase a person, by e-mail (the address goes on the suppression list)",
        request=PersonEmailSerializer,
        responses={200: ErasureSerializer, 404: NO_SUCH_PERSON},
    )
    def post(self, request: Request) -> Response:
        return _erase(_lead_by_email(_email(request.data)), request.user)


class SuppressionSerializer(serializers.Serializer):
    suppressed = serializers.BooleanField(help_text="Always true: ingest refuses the address.")
    since = serializers.DateTimeField(help_text="When the person was erased.")


NOT_SUPPRESSED = OpenApiResponse(description="This address is not on the suppression list: ingest accepts it.")


class SuppressionView(APIView):
    """An address on the suppression list: is it, and lifting it (the person asked to be
    added again)."""

    permission_classes = [CanManagePrivacy]

    @extend_schema(
        operation_id="privacy_suppression_get",
        summary="Is this e-mail address on the suppression list?",
        parameters=[EMAIL_PARAMETER],
        responses={200: SuppressionSerializer, 404: NOT_SUPPRESSED},
    )
    def get(self, request: Request) -> Response:
        entry = privacy.suppression_get(email=_email(request.query_params))
        if entry is None:
            raise exceptions.NotFound(str(NOT_SUPPRESSED.description))
        return Response({"suppressed": True, "since": entry.created_at})

    @extend_schema(
        operation_id="privacy_suppression_lift",
        summary="Lift the suppression of an e-mail address: ingest accepts it again",
        parameters=[EMAIL_PARAMETER],
        responses={204: None, 404: NOT_SUPPRESSED},
    )
    def delete(self, request: Request) -> Response:
        if not privacy.suppression_lift(email=_email(request.query_params)):
            raise exceptions.NotFound(str(NOT_SUPPRESSED.description))
        return Response(status=status.HTTP_204_NO_CONTENT)
