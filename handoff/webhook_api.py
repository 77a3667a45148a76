"""The API of webhook subscriptions (scoring admins and staff, personal token or session):
register an endpoint (its secret answered once), list, read, change, disable or enable
it, read its delivery log and replay a delivery. Every change goes through
``handoff.webhooks``, the rules (``webhook_subscription_validate``) included."""

from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from handoff import selectors, webhooks
from handoff.models import WebhookDelivery, WebhookSubscription
from handoff.permissions import CanManageWebhooks
from leadflow.pagination import PageNumberPagination


class WebhookSubscriptionSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    name = serializers.CharField(max_length=100)
    url = serializers.CharField(max_length=500)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=list(webhooks.WEBHOOK_EVENTS)),
        allow_empty=False,
        help_text="The events it receives.",
    )
    min_score_change = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        required=False,
        allow_null=True,
        min_value=Decimal("0"),
        help_text="lead.score_changed only from this change on, up or down (0: any change).",
    )
    active = serializers.BooleanField(read_only=True)
    disabled_at = serializers.DateTimeField(read_only=True, allow_null=True)
    disabled_reason = serializers.CharField(read_only=True)
    failing_since = serializers.DateTimeField(read_only=True, allow_null=True)
    managed_by_settings = serializers.BooleanField(read_only=True)
    owner = serializers.SerializerMethodField(help_text="Who registered it (told when it is disabled).")
    secret_hint = serializers.CharField(read_only=True, help_text="The secret's last four characters.")
    created_at = serializers.DateTimeField(read_only=True)

    def get_owner(self, subscription: WebhookSubscription) -> str | None:
        return subscription.owner.get_username() if subscription.owner else None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The service's rules; DRF attaches the Django ValidationError to its field.
        webhooks.webhook_subscription_validate(
            name=attrs["name"],
            url=attrs["url"],
            events=attrs["events"],
            min_score_change=attrs.get("min_score_change"),
            operator_url=bool((subscription := self.context.get("subscription")) and subscription.managed_by_settings),
        )
        return attrs


class WebhookSubscriptionCreatedSerializer(WebhookSubscriptionSerializer):
    secret = serializers.CharField(read_only=True, help_text="The signing secret: answered this once only.")


class WebhookDeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    key = serializers.CharField(help_text="Sent as X-LeadFlow-Delivery: the receiver's idempotency key.")
    event = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "retrying", "delivered", "failed"])
    created_at = serializers.DateTimeField()
    attempts = serializers.IntegerField()
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status = serializers.IntegerField(allow_null=True, help_text="HTTP status of the last attempt.")
    last_error = serializers.CharField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)
    replayed_at = serializers.DateTimeField(allow_null=True)
    payload = serializers.JSONField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


def _subscription(subscription_id: Any) -> WebhookSubscription:
    return get_object_or_404(WebhookSubscription.objects.select_related("owner"), public_id=subscription_id)


class WebhookListView(APIView):
    permission_classes = [CanManageWebhooks]

    @extend_schema(responses=WebhookSubscriptionSerializer(many=True), summary="The webhook subscriptions")
    def get(self, request: Request) -> Response:
        return Response(WebhookSubscriptionSerializer(selectors.webhook_subscriptions(), many=True).data)

    @extend_schema(
        request=WebhookSubscriptionSerializer,
        responses={201: WebhookSubscriptionCreatedSerializer},
        summary="Register an endpoint; the answer holds its signing secret, this once",
    )
    def post(self, request: Request) -> Response:
        serializer = WebhookSubscriptionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscription = webhooks.webhook_subscription_create(actor=request.user, **serializer.validated_data)
        body = WebhookSubscriptionCreatedSerializer(subscription).data
        return Response(body, status=status.HTTP_201_CREATED)


class WebhookDetailView(APIView):
    permission_classes = [CanManageWebhooks]

    @extend_schema(responses=WebhookSubscriptionSerializer, summary="One webhook subscription")
    def get(self, request: Request, subscription_id: Any) -> Response:
        return Response(WebhookSubscriptionSerializer(_subscription(subscription_id)).data)

    @extend_schema(
        request=WebhookSubscriptionSerializer,
        responses=WebhookSubscriptionSerializer,
        summary="Change an endpoint's name, URL, events or minimum score change",
    )
    def put(self, request: Request, subscription_id: Any) -> Response:
        subscription = _subscription(subscription_id)
        serializer = WebhookSubscriptionSerializer(data=request.data, context={"subscription": subscription})
        serializer.is_valid(raise_exception=True)
        webhooks.webhook_subscription_update(actor=request.user, subscription=subscription, **serializer.validated_data)
        return Response(WebhookSubscriptionSerializer(subscription).data)


class WebhookDisableView(APIView):
    permission_classes = [CanManageWebhooks]

    @extend_schema(request=None, responses=WebhookSubscriptionSerializer, summary="Stop sending to an endpoint")
    def post(self, request: Request, subscription_id: Any) -> Response:
        subscription = _subscription(subscription_id)
        webhooks.webhook_subscription_disable(actor=request.user, subscription=subscription)
        return Response(WebhookSubscriptionSerializer(subscription).data)


class WebhookEnableView(APIView):
    permission_classes = [CanManageWebhooks]

    @extend_schema(
        request=None,
        responses={200: WebhookSubscriptionSerializer, 409: ErrorSerializer},
        summary="Send to an endpoint again (what waited too)",
    )
    def post(self, request: Request, subscription_id: Any) -> Response:
        subscription = _subscription(subscription_id)
        try:
            webhooks.webhook_subscription_enable(actor=request.user, subscription=subscription)
        except webhooks.WebhookError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return Response(WebhookSubscriptionSerializer(subscription).data)


class WebhookDeliveryListView(generics.ListAPIView):
    """An endpoint's delivery log, newest first."""

    permission_classes = [CanManageWebhooks]
    serializer_class = WebhookDeliverySerializer
    pagination_class = PageNumberPagination

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no subscription
            return WebhookDelivery.objects.none()
        return selectors.webhook_deliveries(subscription=_subscription(self.kwargs["subscription_id"]))


class WebhookDeliveryReplayView(APIView):
    permission_classes = [CanManageWebhooks]

    @extend_schema(
        request=None,
        responses={202: WebhookDeliverySerializer, 409: ErrorSerializer},
        summary="Send a delivery again as it was (same key and payload, signed anew)",
    )
    def post(self, request: Request, subscription_id: Any, delivery_id: int) -> Response:
        subscription = _subscription(subscription_id)
        delivery = get_object_or_404(selectors.webhook_deliveries(subscription=subscription), pk=delivery_id)
        try:
            replayed = webhooks.webhook_delivery_replay(actor=request.user, delivery=delivery)
        except webhooks.WebhookError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return Response(WebhookDeliverySerializer(replayed).data, status=status.HTTP_202_ACCEPTED)
