"""Handoff API: the sales queue (list, detail, claim, release, accept, reject,
reassign), a lead's handoff history, handoff statistics, notifications, and suggested
points (a draft ruleset learnt from sales' verdicts)."""

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import generics, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from handoff import notifications, selectors, services, suggest
from handoff.models import ChecklistItem, Handoff, HandoffEvent, HandoffStatus, Notification, RejectReason
from handoff.permissions import (
    CanConfigureChecklist,
    CanReadHandoffHistory,
    CanReadQuality,
    CanReassignHandoffs,
    CanWorkHandoffs,
)
from leadflow import query
from leadflow.leads import selectors as lead_selectors
from leadflow.pagination import PageNumberPagination
from leadflow.representation import decimal_text, iso_datetime, or_none
from scoring import selectors as scoring_selectors
from scoring.permissions import CanEditRules

CONFLICT = OpenApiResponse(description="Wrong state for this action, or the claim limit: see `detail`.")
NOT_VISIBLE = OpenApiResponse(description="No such handoff, or another rep holds it.")
CLAIM_CONFLICT = OpenApiResponse(
    description="Another rep claimed it first (`already_claimed`), it is no longer queued, or the claim limit: "
    "see `detail` and `code`."
)


def conflict(error: services.HandoffError) -> Response:
    return Response({"detail": str(error), "code": error.code}, status=status.HTTP_409_CONFLICT)


# --- Output ---------------------------------------------------------------------------------------
class HandoffLeadSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    email = serializers.CharField(allow_null=True)
    external_id = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    company = serializers.CharField()
    job_title = serializers.CharField()
    stage = serializers.CharField()


class ChecklistAnswerSerializer(serializers.Serializer):
    key = serializers.CharField(read_only=True)
    label = serializers.CharField(  # type: ignore[assignment]  # a field named "label", not Field.label
        read_only=True, help_text="The item's label when the handoff was accepted."
    )
    confirmed = serializers.BooleanField(read_only=True)


class HandoffSerializer(serializers.Serializer):
    """A handoff as the queue shows it. A plain serializer: it is on the claim hot path,
    and a ModelSerializer introspects the model on every use."""

    id = serializers.UUIDField(source="public_id", read_only=True)
    status = serializers.ChoiceField(choices=HandoffStatus.choices, read_only=True)
    priority = serializers.DecimalField(
        max_digits=12, decimal_places=2, read_only=True, help_text="The qualifying model's score at SQL."
    )
    model = serializers.CharField(
        source="model.slug", read_only=True, allow_null=True, help_text="The scoring model that qualified the lead."
    )
    qualified_by = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Every model that qualified the lead at once."
    )
    lead = HandoffLeadSerializer(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    due_at = serializers.DateTimeField(read_only=True, help_text="SLA: decide by then.")
    overdue = serializers.SerializerMethodField(help_text="Open and past its due time (SLA).")
    overdue_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="When the breach was flagged.")
    claimed_by = serializers.CharField(
        source="claimed_by.username", read_only=True, allow_null=True, help_text="The rep holding or deciding it."
    )
    claimed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    claim_expires_at = serializers.DateTimeField(read_only=True, allow_null=True)
    first_claimed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    decided_at = serializers.DateTimeField(read_only=True, allow_null=True)
    reject_reason = serializers.ChoiceField(choices=RejectReason.choices, read_only=True, allow_blank=True)
    note = serializers.CharField(
        read_only=True, help_text="The rep's note on the decision (accept or reject), or why it was closed."
    )
    confirmed = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Accepted: the keys of the checklist items sales confirmed (empty before the checklist existed).",
    )
    checklist = ChecklistAnswerSerializer(
        many=True,
        read_only=True,
        help_text="Accepted: the accept checklist as sales answered it, in order (labels as they were then).",
    )

    @extend_schema_field(serializers.BooleanField())
    def get_overdue(self, handoff: Handoff) -> bool:
        return handoff.is_overdue()


def handoff_row(handoff: Handoff, *, now: datetime | None = None) -> dict[str, Any]:
    """The handoff as ``HandoffSerializer`` shows it, built by hand (``leadflow.representation``):
    the claims' answers and the queue's pages. Reads the same related rows (lead, model,
    claimed_by) as the serializer, so select them beforehand as before."""
    lead, model, rep = handoff.lead, handoff.model, handoff.claimed_by
    return {
        "id": str(handoff.public_id),
        "status": str(handoff.status),
        "priority": or_none(decimal_text, handoff.priority),
        "model": model.slug if model is not None else None,
        "qualified_by": [str(slug) for slug in handoff.qualified_by],
        "lead": {
            "id": str(lead.public_id),
            "email": lead.email,
            "external_id": lead.external_id,
            "name": lead.name,
            "company": lead.company,
            "job_title": lead.job_title,
            "stage": lead.stage,
        },
        "created_at": iso_datetime(handoff.created_at),
        "due_at": iso_datetime(handoff.due_at),
        "overdue": handoff.is_overdue(now),
        "overdue_at": or_none(iso_datetime, handoff.overdue_at),
        "claimed_by": rep.username if rep is not None else None,
        "claimed_at": or_none(iso_datetime, handoff.claimed_at),
        "claim_expires_at": or_none(iso_datetime, handoff.claim_expires_at),
        "first_claimed_at": or_none(iso_datetime, handoff.first_claimed_at),
        "decided_at": or_none(iso_datetime, handoff.decided_at),
        "reject_reason": str(handoff.reject_reason),
        "note": handoff.note,
        "confirmed": handoff.confirmed,
        "checklist": [
            {"key": str(item["key"]), "label": str(item["label"]), "confirmed": bool(item["confirmed"])}
            for item in handoff.checklist
        ],
    }


class HandoffEventSerializer(serializers.ModelSerializer):
    actor: "serializers.SlugRelatedField[Any]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Null for the system (opening, expiry, SLA)."
    )

    class Meta:
        model = HandoffEvent
        fields = ["action", "actor", "at", "details"]
        read_only_fields = fields


class HandoffDetailSerializer(HandoffSerializer):
    events = HandoffEventSerializer(many=True, read_only=True, help_text="The audit trail, oldest first.")


# --- The queue ------------------------------------------------------------------------------------
class HandoffFilter(query.FilterSet):
    # No DISTINCT (django-filter's default for a multiple choice): one row per handoff anyway.
    status = django_filters.MultipleChoiceFilter(
        choices=HandoffStatus.choices, distinct=False, help_text="Repeat for several."
    )
    mine = query.BooleanFilter(method="filter_mine", help_text="true: the handoffs I hold or held.")
    overdue = query.BooleanFilter(method="filter_overdue", help_text="true: open and past due.")
    model = query.SlugFilter(field_name="model__slug", help_text="The scoring model (slug) that qualified the lead.")

    class Meta:
        model = Handoff
        fields = ["status"]

    # django-filter calls a filter method only with a value: here True or False.
    def filter_mine(self, queryset: QuerySet[Handoff], name: str, value: bool) -> QuerySet[Handoff]:
        user = self.request.user if self.request else None
        return queryset.filter(claimed_by=user) if value else queryset.exclude(claimed_by=user)

    def filter_overdue(self, queryset: QuerySet[Handoff], name: str, value: bool) -> QuerySet[Handoff]:
        return selectors.handoffs_overdue(queryset, overdue=value)


# Each order the queue offers, whole (ties broken to the id: pages never skip or repeat a
# row) and as an index of every handoff reads it, first page without a sort
# (``Handoff.Meta.indexes``): priority both ways by ``handoff_priority_order``, the age
# by ``handoff_created``, the due time by ``handoff_due``.
QUEUE_ORDERS: dict[str, tuple[str, ...]] = {
    "-priority": ("-priority", "created_at", "id"),  # the queue's own order
    "priority": ("priority", "-created_at", "-id"),
    "created_at": ("created_at", "id"),
    "-created_at": ("-created_at", "-id"),
    "due_at": ("due_at", "id"),
    "-due_at": ("-due_at", "-id"),
}


class QueueOrdering(query.OrderingFilter):
    """Queue order by default (highest priority, then oldest); one field asked for is
    ordered as ``QUEUE_ORDERS`` says (an index serves it); several, with the id last."""

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: Any) -> list[str]:
        ordering = list(super().get_ordering(request, queryset, view) or [])
        if len(ordering) == 1 and ordering[0] in QUEUE_ORDERS:
            return list(QUEUE_ORDERS[ordering[0]])
        return [*ordering, "id"]


class HandoffListView(generics.ListAPIView):
    """The sales queue. Reps see queued handoffs and their own claims; marketing,
    scoring admins and sales managers see everything. `ordering`: `priority`,
    `created_at` (age), `due_at`; prefix `-` for descending."""

    permission_classes = [CanWorkHandoffs]
    serializer_class = HandoffSerializer
    pagination_class = PageNumberPagination
    filterset_class = HandoffFilter
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend, QueueOrdering]
    ordering_fields = ["priority", "created_at", "due_at"]
    ordering = ["-priority"]  # QUEUE_ORDERS: then oldest, then by id

    def get_queryset(self) -> QuerySet[Handoff]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Handoff.objects.none()
        return selectors.handoff_list(user=self.request.user)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        handoffs = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        now = timezone.now()
        return self.get_paginated_response([handoff_row(handoff, now=now) for handoff in handoffs or ()])


class HandoffDetailView(generics.RetrieveAPIView):
    permission_classes = [CanWorkHandoffs]
    serializer_class = HandoffDetailSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "handoff_id"

    def get_queryset(self) -> QuerySet[Handoff]:
        return selectors.handoff_with_events(selectors.handoff_list(user=self.request.user))


def actionable_or_404(request: Request, handoff_id: Any) -> Handoff:
    return get_object_or_404(selectors.handoff_actionable(user=request.user), public_id=handoff_id)


class HandoffClaimNextView(APIView):
    permission_classes = [CanWorkHandoffs]

    @extend_schema(
        request=None,
        responses={
            200: HandoffSerializer,
            204: OpenApiResponse(description="The queue is empty."),
            409: CONFLICT,
        },
        summary="Claim the highest-priority (then oldest) queued handoff",
    )
    def post(self, request: Request) -> Response:
        try:
            handoff = services.handoff_claim_next(user=request.user)
        except services.HandoffError as error:
            return conflict(error)
        if handoff is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(handoff_row(handoff))


class _HandoffActionView(APIView):
    """POST one service action (claim, release) on a handoff the user may act on."""

    permission_classes = [CanWorkHandoffs]
    perform: Callable[..., Handoff]

    def target(self, request: Request, handoff_id: Any) -> Handoff:
        return actionable_or_404(request, handoff_id)

    def post(self, request: Request, handoff_id: Any) -> Response:
        try:
            handoff = type(self).perform(handoff=self.target(request, handoff_id), user=request.user)
        except services.HandoffError as error:
            return conflict(error)
        return Response(handoff_row(handoff))


def _action_schema(
    summary: str, *, not_found: OpenApiResponse = NOT_VISIBLE, conflicts: OpenApiResponse = CONFLICT
) -> Any:
    return extend_schema_view(
        post=extend_schema(
            request=None, responses={200: HandoffSerializer, 404: not_found, 409: conflicts}, summary=summary
        )
    )


@_action_schema(
    "Claim this queued handoff", not_found=OpenApiResponse(description="No such handoff."), conflicts=CLAIM_CONFLICT
)
class HandoffClaimView(_HandoffActionView):
    perform = staticmethod(services.handoff_claim)

    def target(self, request: Request, handoff_id: Any) -> Handoff:
        # Every handoff was queued, in every rep's sight, before its first claim: a rep
        # who claims one that another rep took meanwhile lost a race (409, with advice),
        # not a handoff they may not see (404).
        return get_object_or_404(Handoff, public_id=handoff_id)


@_action_schema("Put my claimed handoff back in the queue")
class HandoffReleaseView(_HandoffActionView):
    perform = staticmethod(services.handoff_release)


class AcceptInputSerializer(serializers.Serializer):
    confirmed = serializers.ListField(
        child=serializers.CharField(max_length=40),
        required=False,
        default=list,
        max_length=100,
        help_text="Keys of the accept checklist's active items the rep confirmed (GET /api/v1/handoff-checklist). "
        "None is allowed.",
    )
    note = serializers.CharField(
        max_length=services.NOTE_MAX_LENGTH, required=False, allow_blank=True, default="", trim_whitespace=False
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The service's rules; DRF attaches the Django ValidationError to its field.
        services.handoff_accept_validate(confirmed=attrs["confirmed"], note=attrs["note"])
        return attrs


class HandoffAcceptView(APIView):
    permission_classes = [CanWorkHandoffs]

    @extend_schema(
        request=AcceptInputSerializer,
        responses={200: HandoffSerializer, 404: NOT_VISIBLE, 409: CONFLICT},
        summary="Accept my claimed handoff, saying what I confirmed: the lead becomes accepted and mine",
    )
    def post(self, request: Request, handoff_id: Any) -> Response:
        handoff = actionable_or_404(request, handoff_id)
        serializer = AcceptInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            handoff = services.handoff_accept(
                handoff=handoff,
                user=request.user,
                confirmed=serializer.validated_data["confirmed"],
                note=serializer.validated_data["note"],
            )
        except services.HandoffError as error:
            return conflict(error)
        return Response(handoff_row(handoff))


class RejectInputSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=RejectReason.choices)
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The service's rules; DRF attaches the Django ValidationError to its field.
        services.handoff_reject_validate(reason=attrs["reason"], note=attrs.get("note", ""))
        return attrs


class HandoffRejectView(APIView):
    permission_classes = [CanWorkHandoffs]

    @extend_schema(
        request=RejectInputSerializer,
        responses={200: HandoffSerializer, 404: NOT_VISIBLE, 409: CONFLICT},
        summary="Reject my claimed handoff: the lead is recycled (or disqualified: not_a_fit, duplicate)",
    )
    def post(self, request: Request, handoff_id: Any) -> Response:
        handoff = actionable_or_404(request, handoff_id)
        serializer = RejectInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            handoff = services.handoff_reject(
                handoff=handoff,
                user=request.user,
                reason=serializer.validated_data["reason"],
                note=serializer.validated_data["note"],
            )
        except services.HandoffError as error:
            return conflict(error)
        return Response(handoff_row(handoff))


class ReassignInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, help_text="The rep who gets the handoff.")

    def validate_username(self, value: str) -> Any:
        # The service's rule; DRF attaches the Django ValidationError to this field.
        return services.handoff_reassign_target(username=value)


class HandoffReassignView(APIView):
    permission_classes = [CanReassignHandoffs]

    @extend_schema(
        request=ReassignInputSerializer,
        responses={200: HandoffSerializer, 404: NOT_VISIBLE, 409: CONFLICT},
        summary="Give an open handoff to a rep (sales managers and scoring admins)",
    )
    def post(self, request: Request, handoff_id: Any) -> Response:
        handoff = get_object_or_404(Handoff, public_id=handoff_id)
        serializer = ReassignInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            handoff = services.handoff_reassign(
                handoff=handoff, actor=request.user, to_user=serializer.validated_data["username"]
            )
        except services.HandoffError as error:
            return conflict(error)
        return Response(handoff_row(handoff))


# --- The accept checklist ------------------------------------------------------------------------
class ChecklistItemSerializer(serializers.Serializer):
    # Lengths and shapes are the service's rules (checklist_item_validate), in its words.
    key = serializers.CharField(help_text="A slug (budget). Never changes: accepted handoffs refer to it.")
    label = serializers.CharField(  # type: ignore[assignment]  # a field named "label", not Field.label
        allow_blank=True, trim_whitespace=False, help_text="What the rep reads."
    )
    position = serializers.IntegerField(required=False, help_text="Order on the accept form, smallest first.")
    active = serializers.BooleanField(required=False, default=True, help_text="Asked when a rep accepts.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The service's rules; DRF attaches the Django ValidationError to its field.
        services.checklist_item_validate(key=attrs["key"], label=attrs["label"], position=attrs.get("position"))
        return attrs


class ChecklistItemChangeSerializer(serializers.Serializer):
    key = serializers.CharField(required=False, help_text="Cannot change; sent, it must be the item's key.")
    label = serializers.CharField(  # type: ignore[assignment]  # a field named "label", not Field.label
        required=False, allow_blank=True, trim_whitespace=False
    )
    position = serializers.IntegerField(required=False)
    active = serializers.BooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        services.checklist_item_validate(
            key=attrs.get("key"), label=attrs.get("label"), position=attrs.get("position"), item=self.context["item"]
        )
        return attrs


def checklist_row(item: ChecklistItem) -> dict[str, Any]:
    return {"key": item.key, "label": item.label, "position": item.position, "active": item.active}


class ChecklistListView(APIView):
    """The accept checklist: what a rep confirms when accepting a handoff. Everyone with a
    role reads it; scoring admins and staff add items."""

    permission_classes = [CanConfigureChecklist]

    @extend_schema(responses=ChecklistItemSerializer(many=True), summary="The accept checklist's items, in order")
    def get(self, request: Request) -> Response:
        return Response([checklist_row(item) for item in selectors.checklist_items()])

    @extend_schema(
        request=ChecklistItemSerializer,
        responses={201: ChecklistItemSerializer},
        summary="Add an item to the accept checklist (scoring admins)",
    )
    def post(self, request: Request) -> Response:
        serializer = ChecklistItemSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item = services.checklist_item_create(actor=request.user, **serializer.validated_data)
        return Response(checklist_row(item), status=status.HTTP_201_CREATED)


class ChecklistItemView(APIView):
    permission_classes = [CanConfigureChecklist]

    @extend_schema(responses=ChecklistItemSerializer, summary="One item of the accept checklist")
    def get(self, request: Request, key: str) -> Response:
        return Response(checklist_row(get_object_or_404(selectors.checklist_items(), key=key)))

    @extend_schema(
        request=ChecklistItemChangeSerializer,
        responses=ChecklistItemSerializer,
        summary="Change an item's label or position, or (de)activate it (scoring admins); the key stays",
    )
    def patch(self, request: Request, key: str) -> Response:
        item = get_object_or_404(selectors.checklist_items(), key=key)
        serializer = ChecklistItemChangeSerializer(data=request.data, context={"item": item})
        serializer.is_valid(raise_exception=True)
        changes = {name: value for name, value in serializer.validated_data.items() if name != "key"}
        return Response(checklist_row(services.checklist_item_update(actor=request.user, item=item, **changes)))


# --- Feedback for marketing -------------------------------------------------------------------------
class LeadHandoffsView(APIView):
    permission_classes = [CanReadHandoffHistory]

    @extend_schema(
        responses=HandoffDetailSerializer(many=True),
        summary="The lead's handoffs, newest first, with reject reasons, notes and audit trail",
    )
    def get(self, request: Request, lead_id: Any) -> Response:
        lead = get_object_or_404(lead_selectors.lead_list(), public_id=lead_id)
        return Response(HandoffDetailSerializer(selectors.lead_handoffs(lead=lead, user=request.user), many=True).data)


class HandoffStatsSerializer(serializers.Serializer):
    since = serializers.DateTimeField(allow_null=True)
    until = serializers.DateTimeField(allow_null=True)
    total = serializers.IntegerField()
    queued = serializers.IntegerField()
    claimed = serializers.IntegerField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    closed = serializers.IntegerField(help_text="Closed when a person moved the lead out of SQL.")
    rejected_by_reason = serializers.DictField(child=serializers.IntegerField())
    median_seconds_to_claim = serializers.FloatField(allow_null=True, help_text="From creation to first claim.")
    median_seconds_to_decision = serializers.FloatField(allow_null=True, help_text="From creation to accept/reject.")
    sla_breaches = serializers.IntegerField(help_text="Flagged overdue, or decided after the due time.")
    overdue_now = serializers.IntegerField(help_text="Open and past due at this moment.")


DATE_OR_DATE_TIME = {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}


def parse_bound(name: str, raw: str | None, *, end: bool) -> datetime | None:
    """An ISO date (a whole day; ``until`` includes it) or date-time; naive means UTC."""
    if not raw:
        return None
    try:
        day = parse_date(raw)
        moment = None if day else parse_datetime(raw)
    except ValueError:
        moment = day = None
    if day is not None and end and day == date.max:
        return None  # until the end of time
    if day is not None:
        moment = datetime.combine(day + timedelta(days=1) if end else day, time.min)
    if moment is None:
        raise serializers.ValidationError({name: ["Use an ISO date (2026-11-01) or date-time (2026-11-01T09:00Z)."]})
    return query.as_utc(moment, name) if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


class HandoffStatsView(APIView):
    permission_classes = [CanReadHandoffHistory]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "since", DATE_OR_DATE_TIME, description="ISO date or date-time: handoffs created from then."
            ),
            OpenApiParameter("until", DATE_OR_DATE_TIME, description="ISO date (inclusive) or date-time (exclusive)."),
            OpenApiParameter(
                "source", query.SLUG_SCHEMA, description="Source slug: only the handoffs of that source's leads."
            ),
        ],
        responses=HandoffStatsSerializer,
        summary="Handoff outcomes: counts, reject reasons, median time to claim and to decision, SLA breaches",
    )
    def get(self, request: Request) -> Response:
        since = parse_bound("since", query.query_value(request, "since"), end=False)
        until = parse_bound("until", query.query_value(request, "until"), end=True)
        if since and until and until <= since:
            raise serializers.ValidationError({"until": ["Must be after since."]})
        source = None
        if slug := query.slug_value(request, "source"):
            source = lead_selectors.source_get(slug=slug)
            if source is None:
                raise serializers.ValidationError(
                    {"source": [f"No source has the slug {slug!r}: use the slug of an existing source."]}
                )
        stats = selectors.handoff_stats(since=since, until=until, source=source)
        return Response(HandoffStatsSerializer(stats).data)


# --- Notifications ----------------------------------------------------------------------------------
class NotificationSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    unread = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "kind", "title", "body", "link", "created_at", "read_at", "unread"]
        read_only_fields = fields

    @extend_schema_field(serializers.BooleanField())
    def get_unread(self, notification: Notification) -> bool:
        return notification.read_at is None


class NotificationFilter(query.FilterSet):
    unread = query.BooleanFilter(field_name="read_at", lookup_expr="isnull", help_text="true: unread only.")

    class Meta:
        model = Notification
        fields = ["unread"]


class NotificationListView(generics.ListAPIView):
    """My notifications, newest first."""

    permission_classes = [IsAuthenticated]
    serializer_class = NotificationSerializer
    pagination_class = PageNumberPagination
    filterset_class = NotificationFilter

    def get_queryset(self) -> QuerySet[Notification]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Notification.objects.none()
        return selectors.notification_list(user=self.request.user)


class UnreadCountSerializer(serializers.Serializer):
    unread = serializers.IntegerField()


class NotificationUnreadCountView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=UnreadCountSerializer, summary="How many of my notifications are unread")
    def get(self, request: Request) -> Response:
        return Response({"unread": selectors.notification_unread_count(user=request.user)})


class NotificationReadView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses=NotificationSerializer, summary="Mark one of my notifications read")
    def post(self, request: Request, notification_id: Any) -> Response:
        notification = get_object_or_404(selectors.notification_list(user=request.user), public_id=notification_id)
        return Response(NotificationSerializer(notifications.notification_mark_read(notification=notification)).data)


class MarkedReadSerializer(serializers.Serializer):
    marked_read = serializers.IntegerField()


class NotificationReadAllView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses=MarkedReadSerializer, summary="Mark all my notifications read")
    def post(self, request: Request) -> Response:
        return Response({"marked_read": notifications.notifications_mark_all_read(user=request.user)})


# --- Suggested points ------------------------------------------------------------------------------
class SuggestInputSerializer(serializers.Serializer):
    keep_thresholds = serializers.BooleanField(
        default=True, help_text="False: re-derive the SQL threshold so the draft sends about as many SQLs."
    )


class SuggestedRuleSerializer(serializers.Serializer):
    rule_id = serializers.IntegerField(help_text="The draft's rule.")
    name = serializers.CharField()
    kind = serializers.CharField()
    old_points = serializers.CharField()
    new_points = serializers.CharField()
    old_max_points = serializers.CharField(allow_null=True)
    new_max_points = serializers.CharField(allow_null=True)
    fired = serializers.IntegerField(help_text="Decided handoffs where the rule matched.")
    fitted = serializers.BooleanField(help_text="False: never fired (or always): old points kept.")
    coefficient = serializers.FloatField(allow_null=True, help_text="Log-odds of acceptance per unit.")
    low = serializers.FloatField(allow_null=True, help_text="95 % interval of the coefficient.")
    high = serializers.FloatField(allow_null=True)
    why = serializers.CharField()


class SuggestionSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The new draft's version.")
    from_version = serializers.IntegerField()
    decided = serializers.IntegerField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    trained_on = serializers.IntegerField()
    held_out = serializers.IntegerField()
    auc_old = serializers.FloatField(help_text="Held-out AUC of the old points.")
    auc_suggested = serializers.FloatField(help_text="Held-out AUC of the suggested (rounded) points.")
    auc_flat = serializers.FloatField(help_text="Held-out AUC of flat points (every rule alike).")
    points_per_log_odds = serializers.FloatField()
    thresholds = serializers.CharField()
    seconds = serializers.FloatField()
    rules = SuggestedRuleSerializer(many=True)


class RuleSetSuggestView(APIView):
    """Only scoring admins (and staff) create drafts; nothing is published."""

    permission_classes = [CanEditRules]

    @extend_schema(
        request=SuggestInputSerializer,
        responses={
            201: SuggestionSerializer,
            409: OpenApiResponse(description="Not enough decided handoffs to learn from: see `detail`."),
        },
        summary="Suggest points from sales' verdicts, as a new draft",
    )
    def post(self, request: Request, version: int) -> Response:
        ruleset = get_object_or_404(scoring_selectors.ruleset_list(), version=version)
        given = SuggestInputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            draft = suggest.ruleset_suggest(
                ruleset=ruleset, user=request.user, keep_thresholds=given.validated_data["keep_thresholds"]
            )
        except suggest.SuggestionRefused as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        data = SuggestionSerializer({"version": draft.version, **(draft.suggestion or {})}).data
        return Response(data, status=status.HTTP_201_CREATED)


NO_SUGGESTION = "This ruleset was not made by a suggestion: ask for one with POST …/rulesets/{version}/suggest."


class RuleSetSuggestionView(APIView):
    """The suggestion a draft was made from (what ``…/suggest`` answered when it made it):
    read by scoring admins and marketing (and staff), like the score quality."""

    permission_classes = [CanReadQuality]

    @extend_schema(
        responses={200: SuggestionSerializer, 404: OpenApiResponse(description="No such ruleset, or not suggested.")},
        summary="The suggestion a ruleset was made from",
    )
    def get(self, request: Request, version: int) -> Response:
        ruleset = get_object_or_404(scoring_selectors.ruleset_list(), version=version)
        if not ruleset.suggestion:
            return Response({"detail": NO_SUGGESTION.format(version=version)}, status=status.HTTP_404_NOT_FOUND)
        return Response(SuggestionSerializer({"version": ruleset.version, **ruleset.suggestion}).data)
