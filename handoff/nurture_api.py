"""Nurture API, for marketing and scoring admins: the segments with their next content,
the content attribution, and pushing a segment to the outbound webhook."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from handoff import nurture as nurture_push
from leadflow.leads import nurture
from leadflow.leads.roles import MARKETING, SCORING_ADMIN, has_role


class CanSeeNurture(BasePermission):
    message = "You need the marketing or scoring_admin role for nurture segments."

    def has_permission(self, request: Request, view: Any) -> bool:
        return has_role(request.user, MARKETING, SCORING_ADMIN)


class AttributionWindowSerializer(serializers.Serializer):
    days = serializers.IntegerField(
        min_value=1,
        max_value=nurture.MAX_DAYS,
        default=nurture.DEFAULT_DAYS,
        help_text="Attribution window: engagement in the days before becoming SQL (and MQL). Default 30.",
    )
    min_leads = serializers.IntegerField(
        min_value=1,
        max_value=1_000_000,
        default=nurture.DEFAULT_MIN_LEADS,
        help_text="Below this many MQLs on either side, an asset's comparison is marked not enough data. Default 10.",
    )


class SegmentsWindowSerializer(AttributionWindowSerializer):
    topic_days = serializers.IntegerField(
        min_value=1,
        max_value=nurture.MAX_DAYS,
        default=nurture.DEFAULT_TOPIC_DAYS,
        help_text="A lead's top interest topic is the one of most of its events in these days. Default 90.",
    )


def _window(request: Request, serializer: type[serializers.Serializer]) -> dict[str, int]:
    window = serializer(data=request.query_params)
    window.is_valid(raise_exception=True)
    return dict(window.validated_data)


# --- Output ---------------------------------------------------------------------------------------
class ConversionRateSerializer(serializers.Serializer):
    converted = serializers.IntegerField(help_text="Leads that became SQL.")
    leads = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True, help_text="converted / leads, null without leads.")
    low = serializers.FloatField(allow_null=True, help_text="95 % Wilson interval, lower bound.")
    high = serializers.FloatField(allow_null=True, help_text="95 % Wilson interval, upper bound.")


class AssetConversionSerializer(serializers.Serializer):
    asset = serializers.CharField()
    topic = serializers.CharField(allow_null=True)
    engaged = ConversionRateSerializer(help_text="MQLs that engaged with the asset, and how many became SQL.")
    not_engaged = ConversionRateSerializer(help_text="The other MQLs.")
    lift = serializers.FloatField(allow_null=True, help_text="Engaged rate / not-engaged rate.")
    enough_data = serializers.BooleanField()


def conversion_data(conversion: nurture.AssetConversion | None) -> dict[str, Any] | None:
    if conversion is None:
        return None
    return {
        "asset": conversion.asset,
        "topic": conversion.topic or None,
        "engaged": conversion.engaged.as_dict(),
        "not_engaged": conversion.not_engaged.as_dict(),
        "lift": conversion.lift,
        "enough_data": conversion.enough_data,
    }


class ContentCountSerializer(serializers.Serializer):
    value = serializers.CharField(help_text="The asset or the topic.")
    sql = serializers.IntegerField(help_text="SQLs that engaged with it in the window before becoming SQL.")
    accepted = serializers.IntegerField(help_text="Of those, accepted by sales.")
    won = serializers.IntegerField(help_text="Of those, with a won outcome.")


class AttributionSerializer(serializers.Serializer):
    days = serializers.IntegerField()
    min_leads = serializers.IntegerField()
    sql_leads = serializers.IntegerField()
    accepted_leads = serializers.IntegerField()
    won_leads = serializers.IntegerField()
    overall = ConversionRateSerializer(help_text="MQL→SQL of every MQL.")
    assets = ContentCountSerializer(many=True)
    topics = ContentCountSerializer(many=True)
    conversions = AssetConversionSerializer(many=True, help_text="Per asset, best converting first.")


def attribution_data(attribution: nurture.Attribution) -> dict[str, Any]:
    def counts(rows: list[nurture.ContentCount]) -> list[dict[str, Any]]:
        return [{"value": r.value, "sql": r.sql, "accepted": r.accepted, "won": r.won} for r in rows]

    return {
        "days": attribution.days,
        "min_leads": attribution.min_leads,
        "sql_leads": attribution.sql_leads,
        "accepted_leads": attribution.accepted_leads,
        "won_leads": attribution.won_leads,
        "overall": attribution.overall.as_dict(),
        "assets": counts(attribution.assets),
        "topics": counts(attribution.topics),
        "conversions": [conversion_data(c) for c in attribution.conversions],
    }


class SegmentSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="Its address: /nurture/<key>/ and …/segments/<key>/push.")
    topic = serializers.CharField(allow_null=True, help_text="The top interest topic; null: no topic in the window.")
    recency = serializers.ChoiceField(choices=list(nurture.RECENCIES), help_text="Of the leads' last event.")
    leads = serializers.IntegerField()
    next_content = AssetConversionSerializer(allow_null=True, help_text="Best converting, not seen by every lead.")
    not_seen_by = serializers.IntegerField(help_text="Leads of the segment that have not seen the next content.")


class SegmentsSerializer(serializers.Serializer):
    days = serializers.IntegerField()
    topic_days = serializers.IntegerField()
    leads = serializers.IntegerField(help_text="Leads in nurture (stage mql or recycled).")
    computed_at = serializers.DateTimeField(
        help_text="When the segments were computed: a snapshot at most NURTURE_CACHE_SECONDS old."
    )
    segments = SegmentSerializer(many=True)


class PushSerializer(serializers.Serializer):
    delivery = serializers.CharField(help_text="The delivery's key, sent as X-LeadFlow-Delivery.")
    segment = serializers.CharField()
    leads = serializers.IntegerField(help_text="Leads in the payload.")
    truncated = serializers.BooleanField(help_text="The segment had more leads than one push carries.")


# --- Views ----------------------------------------------------------------------------------------
class NurtureSegmentsView(APIView):
    permission_classes = [CanSeeNurture]

    @extend_schema(
        parameters=[SegmentsWindowSerializer],
        responses=SegmentsSerializer,
        summary="Nurture segments: MQLs not yet SQL by top topic and recency, each with its next content",
    )
    def get(self, request: Request) -> Response:
        window = _window(request, SegmentsWindowSerializer)
        segments = nurture.nurture_segments(
            days=window["days"], topic_days=window["topic_days"], min_leads=window["min_leads"]
        )
        return Response(
            {
                "days": window["days"],
                "topic_days": window["topic_days"],
                "leads": segments.leads,
                "computed_at": segments.computed_at,
                "segments": [
                    {
                        "key": s.key,
                        "topic": s.topic or None,
                        "recency": s.recency,
                        "leads": s.leads,
                        "next_content": conversion_data(s.next_content),
                        "not_seen_by": s.not_seen_by,
                    }
                    for s in segments.segments
                ],
            }
        )


class NurtureAttributionView(APIView):
    permission_classes = [CanSeeNurture]

    @extend_schema(
        parameters=[AttributionWindowSerializer],
        responses=AttributionSerializer,
        summary="Content attribution: what SQLs engaged with before, and each asset's MQL→SQL conversion",
    )
    def get(self, request: Request) -> Response:
        window = _window(request, AttributionWindowSerializer)
        attribution = nurture.content_attribution(days=window["days"], min_leads=window["min_leads"])
        return Response(attribution_data(attribution))


class NurtureSegmentPushView(APIView):
    permission_classes = [CanSeeNurture]

    @extend_schema(
        request=None,
        responses={
            202: PushSerializer,
            404: OpenApiResponse(description="Not a segment key."),
            409: OpenApiResponse(
                OpenApiTypes.OBJECT, description="No webhook configured (`no_webhook`) or no lead in the segment now."
            ),
        },
        summary="Push the segment as it is now to the e-mail tool: one signed webhook POST",
    )
    def post(self, request: Request, segment: str) -> Response:
        key = segment
        try:
            pushed = nurture_push.nurture_segment_push(key=key)
        except nurture_push.NurturePushError as error:
            code = status.HTTP_404_NOT_FOUND if error.code == "unknown_segment" else status.HTTP_409_CONFLICT
            return Response({"detail": str(error), "code": error.code}, status=code)
        body = {"delivery": pushed.delivery.key, "segment": key, "leads": pushed.leads, "truncated": pushed.truncated}
        return Response(body, status=status.HTTP_202_ACCEPTED)
