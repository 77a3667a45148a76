"""HTTP API of the lead core: event and lead ingestion (ingest keys) and the lead
list/detail for people (personal tokens or session)."""

import json
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import django_filters
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django_filters.utils import translate_validation
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, generics, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.mediatypes import media_type_matches
from rest_framework.views import APIView

from leadflow import metrics, query
from leadflow.leads import selectors, services
from leadflow.leads.merge import MergeError, lead_merge
from leadflow.leads.models import (
    LEAD_PROFILE_FIELDS,
    LEAD_UTM_FIELDS,
    Event,
    IngestKey,
    Lead,
    Outcome,
    OutcomeKind,
    Stage,
)
from leadflow.leads.permissions import CanEditLeads, CanReadLeads, HasIngestKey
from leadflow.leads.scores import UnknownModel, leads_annotate_scores, leads_scores
from leadflow.leads.validation import (
    COMPANY_SIZE_MAX,
    COMPANY_SIZE_MIN,
    MAX_JSON_DEPTH,
    MAX_TRAITS_BYTES,
    PROFILE_TEXT_FIELDS,
    validate_lead,
    validate_lead_changes,
)
from leadflow.pagination import CursorPagination
from leadflow.representation import decimal_text, iso_datetime, or_none


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


def read_json_body(request: Request) -> Any:
    """Parse the body as JSON within the configured size limit (413 past it). A body
    without a Content-Type is read as JSON; one declared as anything else (a form)
    answers 415, as DRF's JSONParser would."""
    if request.content_type and not media_type_matches(JSONParser.media_type, request.content_type):
        raise exceptions.UnsupportedMediaType(
            request.content_type,
            detail=f"Unsupported media type {request.content_type!r}: send JSON with Content-Type: application/json.",
        )
    limit = settings.INGEST_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise PayloadTooLarge(f"Body of {declared} bytes exceeds the limit of {limit} bytes: split the batch.")
    raw = request._request.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"Body exceeds the limit of {limit} bytes: split the batch.")
    if not raw.strip():
        raise exceptions.ParseError("Empty body: send a JSON object.")
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """A JSON body as Python values, or a 400 that says why there are none.

    NaN, Infinity and numbers too large for a float (1e400, read as infinity) are
    read, not refused: validation refuses them where they stand, so one such value
    is one field's error rather than the whole body's."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError as error:
        raise exceptions.ParseError(
            f"The body is not valid UTF-8 ({error.reason} at byte {error.start}): send JSON encoded as UTF-8."
        ) from None
    except ValueError as error:
        raise exceptions.ParseError(f"Malformed JSON: {error}.") from None
    except RecursionError:
        raise exceptions.ParseError(
            f"JSON nested too deeply to read: properties and traits may nest at most {MAX_JSON_DEPTH} levels."
        ) from None


class JsonBodyParser(JSONParser):
    """DRF's JSON parser with ``parse_json``: DRF's refuses a whole body for one NaN and
    lets a body nested too deeply to read fail with a 500."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return parse_json(stream.read())


def ingest_source(request: Request) -> Any:
    key = request.auth
    if not isinstance(key, IngestKey):  # guarded by HasIngestKey; never reached
        raise exceptions.PermissionDenied(HasIngestKey.message)
    return key.source


# --- Documentation-only shapes of the ingest payloads (validated in leads.validation).
def _with_profile(declared: dict[str, Any], *, nullable_text: bool) -> dict[str, Any]:
    """The declared fields with the lead's profile before ``traits``, as validate_lead
    reads it, in the model's order: text up to its column's length (empty clears it; with
    ``nullable_text``, null too), the company size a whole number or null."""
    profile: dict[str, serializers.Field] = {}
    for name in (*LEAD_PROFILE_FIELDS, *LEAD_UTM_FIELDS):
        if name == "company_size":
            profile[name] = serializers.IntegerField(
                required=False, min_value=COMPANY_SIZE_MIN, max_value=COMPANY_SIZE_MAX, allow_null=True
            )
        else:
            profile[name] = serializers.CharField(
                required=False, allow_blank=True, allow_null=nullable_text, max_length=PROFILE_TEXT_FIELDS[name]
            )
    traits = declared.pop("traits")
    return {**declared, **profile, "traits": traits}


@extend_schema_field(
    {"anyOf": [{"type": "string", "format": "email", "maxLength": 254}, {"type": "string", "maxLength": 0}]}
)
class _EmailDoc(serializers.EmailField):
    """An e-mail address, or empty (as validate_lead reads it: no e-mail)."""


class LeadIdentityDoc(serializers.Serializer):
    email = _EmailDoc(required=False, allow_blank=True, allow_null=True, help_text="Identity; stored lower-case.")
    external_id = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=128,
        help_text="Identity in the sender's system.",
    )
    traits = serializers.DictField(
        required=False, allow_null=True, help_text="Custom attributes, merged; null removes a trait."
    )

    def get_fields(self) -> dict[str, Any]:
        return _with_profile(super().get_fields(), nullable_text=True)


class EventDoc(serializers.Serializer):
    event_id = serializers.CharField(max_length=128, help_text="Idempotency key, unique per source.")
    type = serializers.RegexField(r"^[a-z][a-z0-9_]{0,63}$", help_text="e.g. page_view, demo_request.")
    occurred_at = serializers.DateTimeField(required=False, help_text="ISO 8601 with a zone; default now.")
    lead = LeadIdentityDoc()
    properties = serializers.DictField(required=False, help_text="url, asset, topic, campaign…")


class EventBatchDoc(serializers.Serializer):
    events = serializers.ListField(
        child=EventDoc(),
        min_length=1,
        max_length=settings.INGEST_MAX_BATCH,
        help_text=f"1 to {settings.INGEST_MAX_BATCH} events; or post a single event object.",
    )


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.ListField(
        child=inline_serializer(
            "RejectedItem", {"index": serializers.IntegerField(), "errors": serializers.DictField()}
        )
    )


class EventIngestView(APIView):
    permission_classes = [HasIngestKey]
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="events_ingest",
        summary="Post one event or a batch of up to 1000",
        request=EventBatchDoc,
        responses={
            202: IngestResultSerializer,
            400: OpenApiResponse(description="Malformed JSON or no events"),
            401: OpenApiResponse(description="Missing or invalid ingest key"),
            413: OpenApiResponse(description="More than 1000 events or body too large"),
        },
    )
    def post(self, request: Request) -> Response:
        source = ingest_source(request)
        started = time.monotonic()
        items = ingest_items(request, key="events", noun="event")
        result = services.events_ingest(source=source, payloads=items)
        metrics.ingest_batch_done(
            source=source.slug,
            accepted=result.accepted,
            duplicates=result.duplicates,
            rejected=len(result.rejected),
            seconds=time.monotonic() - started,
        )
        return ingest_answer(result)


def ingest_items(request: Request, *, key: str, noun: str) -> list[Any]:
    """The items of an ingest body: ``{"<key>": [...]}``, a bare list, or one object; 400 for
    none or another shape, 413 past ``INGEST_MAX_BATCH``. Each item is validated on its own."""
    body = read_json_body(request)
    if isinstance(body, dict) and key in body:
        items = body[key]
        if not isinstance(items, list):
            raise exceptions.ValidationError({key: [f"Must be a list of {noun} objects."]})
    elif isinstance(body, list):
        items = body
    elif isinstance(body, dict):
        items = [body]
    else:
        raise exceptions.ValidationError({"non_field_errors": [f'Send an {noun} object or {{"{key}": [...]}}.']})
    if not items:
        raise exceptions.ValidationError({key: [f"Send at least one {noun}."]})
    if len(items) > settings.INGEST_MAX_BATCH:
        raise PayloadTooLarge(f"{len(items)} {key} in one request; the limit is {settings.INGEST_MAX_BATCH}.")
    return items


def ingest_answer(result: services.IngestResult) -> Response:
    return Response(
        {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected},
        status=status.HTTP_202_ACCEPTED,
    )


# --- Outcomes (from the CRM) ------------------------------------------------------------
class OutcomeLeadDoc(serializers.Serializer):
    email = _EmailDoc(required=False, allow_blank=True, allow_null=True, help_text="The lead's e-mail.")
    external_id = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=128, help_text="The lead's id in your system."
    )


class OutcomeDoc(serializers.Serializer):
    outcome_id = serializers.CharField(max_length=128, help_text="Idempotency key, unique per source.")
    kind = serializers.ChoiceField(choices=OutcomeKind.choices)
    amount = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=Decimal(0),
        required=False,
        allow_null=True,
        coerce_to_string=False,
        help_text="The deal's value, 0 or more, at most 2 decimals; a number or a numeric string.",
    )
    currency = serializers.RegexField(
        r"^[A-Z]{3}$", required=False, allow_blank=True, help_text="ISO 4217, upper case; required with an amount."
    )
    occurred_at = serializers.DateTimeField(help_text="ISO 8601 with a zone: when the CRM recorded it.")
    lead = OutcomeLeadDoc(help_text="A lead LeadFlow knows, by e-mail and/or external_id; an unknown one is refused.")
    properties = serializers.DictField(required=False, help_text="Anything else: deal id, stage name, owner…")


class OutcomeBatchDoc(serializers.Serializer):
    outcomes = serializers.ListField(
        child=OutcomeDoc(),
        min_length=1,
        max_length=settings.INGEST_MAX_BATCH,
        help_text=f"1 to {settings.INGEST_MAX_BATCH} outcomes; or post a single outcome object.",
    )


class OutcomeIngestView(APIView):
    permission_classes = [HasIngestKey]
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="outcomes_ingest",
        summary="Post one outcome (opportunity created, won, lost) or a batch of up to 1000",
        request=OutcomeBatchDoc,
        responses={
            202: IngestResultSerializer,
            400: OpenApiResponse(description="Malformed JSON or no outcomes"),
            401: OpenApiResponse(description="Missing or invalid ingest key"),
            413: OpenApiResponse(description="More than 1000 outcomes or body too large"),
        },
    )
    def post(self, request: Request) -> Response:
        items = ingest_items(request, key="outcomes", noun="outcome")
        return ingest_answer(services.outcomes_record(source=ingest_source(request), payloads=items))


class OutcomeSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[assignment,var-annotated]
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True, allow_null=True)

    class Meta:
        model = Outcome
        fields = ["outcome_id", "kind", "amount", "currency", "occurred_at", "received_at", "properties", "source"]
        read_only_fields = fields


class OutcomePagination(CursorPagination):
    ordering = ("-occurred_at", "-id")


class LeadOutcomesView(generics.ListAPIView):
    """GET: what the CRM reported about one lead, newest first (marketing, sales, scoring admins)."""

    permission_classes = [CanReadLeads]
    serializer_class = OutcomeSerializer
    pagination_class = OutcomePagination

    def get_queryset(self) -> QuerySet[Outcome]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no database
            return Outcome.objects.none()
        lead = generics.get_object_or_404(selectors.lead_list(), public_id=self.kwargs["lead_id"])
        return selectors.lead_outcomes(lead=lead)

    @extend_schema(summary="The lead's outcomes from the CRM (opportunity created, won, lost), newest first")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


# --- Leads for people ---------------------------------------------------------------
class RecentEventSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[assignment,var-annotated]

    class Meta:
        model = Event
        fields = ["event_id", "type", "occurred_at", "received_at", "properties", "source"]


class LeadListSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    source: "serializers.SlugRelatedField[Any]" = serializers.SlugRelatedField(  # type: ignore[assignment]
        slug_field="slug", read_only=True, allow_null=True
    )
    owner: "serializers.SlugRelatedField[Any]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    # The scores of the chosen scoring model (``model=``; the default model otherwise).
    score = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)
    fit_score = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)
    behaviour_score = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)
    grade = serializers.CharField(
        read_only=True, help_text="Fit grade A–F; empty when the model never scored the lead."
    )

    class Meta:
        model = Lead
        fields = [
            "id",
            "email",
            "external_id",
            "visitor",
            "name",
            "company",
            "job_title",
            "stage",
            "score",
            "fit_score",
            "behaviour_score",
            "grade",
            "source",
            "owner",
            "last_activity_at",
            "mql_at",
            "sql_at",
            "created_at",
        ]
        read_only_fields = fields


# The list's rows without a serializer per row: DRF's ``Serializer.to_representation``
# over 50 leads x 17 fields, and the 200 model instances behind them, were 40 % of the
# hot-MQL request's CPU once its query took 3 ms (bench/RESULTS.md, "Lists, part 3"). The rows
# are read with ``values()`` and built here; ``LeadListSerializer`` still documents them,
# and a test holds both to the same output.
LIST_VALUES = (
    *("public_id", "email", "external_id", "visitor", "name", "company", "job_title", "stage"),
    *("score", "fit_score", "behaviour_score", "grade", "source__slug", "owner__username"),
    *("last_activity_at", "mql_at", "sql_at", "created_at", "activity_at"),
)


def lead_list_row(row: dict[str, Any]) -> dict[str, Any]:
    """One ``LIST_VALUES`` row as ``LeadListSerializer`` shows the lead."""
    return {
        "id": str(row["public_id"]),
        "email": row["email"],
        "external_id": row["external_id"],
        "visitor": row["visitor"],
        "name": row["name"],
        "company": row["company"],
        "job_title": row["job_title"],
        "stage": row["stage"],
        "score": or_none(decimal_text, row["score"]),
        "fit_score": or_none(decimal_text, row["fit_score"]),
        "behaviour_score": or_none(decimal_text, row["behaviour_score"]),
        "grade": row["grade"],
        "source": row["source__slug"],
        "owner": row["owner__username"],
        "last_activity_at": or_none(iso_datetime, row["last_activity_at"]),
        "mql_at": or_none(iso_datetime, row["mql_at"]),
        "sql_at": or_none(iso_datetime, row["sql_at"]),
        "created_at": or_none(iso_datetime, row["created_at"]),
    }


class ModelScoreSerializer(serializers.Serializer):
    """A lead's score under one scoring model."""

    model = serializers.CharField(help_text="The scoring model's slug.")
    model_name = serializers.CharField()
    score = serializers.DecimalField(max_digits=12, decimal_places=2)
    fit = serializers.DecimalField(max_digits=12, decimal_places=2)
    behaviour = serializers.DecimalField(max_digits=12, decimal_places=2)
    grade = serializers.CharField(help_text="Fit grade, A (best) to F.")
    ruleset_version = serializers.IntegerField()
    computed_at = serializers.DateTimeField()
    last_intent_at = serializers.DateTimeField(allow_null=True, help_text="Latest hand-raise inside the intent window.")
    suppressed = serializers.BooleanField(help_text="A suppression rule keeps the lead from being promoted.")


class LeadDetailSerializer(LeadListSerializer):
    recent_events = serializers.SerializerMethodField()
    scores = serializers.SerializerMethodField(help_text="The lead's score under every scoring model that scored it.")

    class Meta(LeadListSerializer.Meta):
        fields = [
            *LeadListSerializer.Meta.fields,
            *(name for name in (*LEAD_PROFILE_FIELDS, *LEAD_UTM_FIELDS) if name not in LeadListSerializer.Meta.fields),
            "traits",
            "scores",
            "recycled_at",
            "needs_rescore",
            "updated_at",
            "recent_events",
        ]
        read_only_fields = fields

    @extend_schema_field(ModelScoreSerializer(many=True))
    def get_scores(self, lead: Lead) -> list[dict[str, Any]]:
        return ModelScoreSerializer(leads_scores([lead])[lead.pk], many=True).data  # type: ignore[return-value]

    @extend_schema_field(RecentEventSerializer(many=True))
    def get_recent_events(self, lead: Lead) -> list[dict[str, Any]]:
        events = selectors.lead_recent_events(lead=lead)
        return RecentEventSerializer(events, many=True).data  # type: ignore[return-value]


class LeadUpdateSerializer(serializers.Serializer):
    """The profile fields people may edit; identity, stage and scores are not editable here.

    The fields document the shape; the rules are ingest's (``validate_lead_changes``), so
    a value an event may not carry may not be typed in either."""

    traits = serializers.DictField(
        required=False,
        help_text=f"Merged into the lead's traits; null removes a trait. At most {MAX_TRAITS_BYTES} bytes of JSON.",
    )

    def get_fields(self) -> dict[str, Any]:
        return _with_profile(super().get_fields(), nullable_text=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        changes, errors = validate_lead_changes(data)
        if changes is None:
            raise serializers.ValidationError(errors)
        return changes


class LeadFilter(query.FilterSet):
    """The lead API's query parameters, read into the ``LeadFilters`` the leads page uses:
    both lists are ``selectors.lead_search`` (the filter methods below only document and
    validate; ``filter_queryset`` does the filtering)."""

    # No DISTINCT: django-filter's default for a multiple choice adds one over every
    # column, and 106k MQLs at 1M leads were sorted (spilling to disk) before the LIMIT.
    stage = django_filters.MultipleChoiceFilter(
        choices=Stage.choices, distinct=False, help_text="Repeat for several stages."
    )
    source = query.SlugFilter(field_name="source__slug", help_text="Source slug.")
    score_min = query.NumberFilter(field_name="score", lookup_expr="gte")
    score_max = query.NumberFilter(field_name="score", lookup_expr="lte")
    created_after = query.DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = query.DateTimeFilter(field_name="created_at", lookup_expr="lt")
    active_after = query.DateTimeFilter(field_name="last_activity_at", lookup_expr="gte")
    active_before = query.DateTimeFilter(field_name="last_activity_at", lookup_expr="lt")
    q = query.TextFilter(method="search", help_text="Search email, name and company.")
    account = query.NumberFilter(field_name="account_id", help_text="An account's id: its contacts only.")
    utm_source = query.TextFilter(method="exact_utm", help_text="Exactly this utm_source.")
    utm_medium = query.TextFilter(method="exact_utm", help_text="Exactly this utm_medium.")
    utm_campaign = query.TextFilter(method="exact_utm", help_text="Exactly this utm_campaign.")
    owner = query.TextFilter(method="owned_by", help_text="The owner's username: the leads they own.")
    stale_mql = query.BooleanFilter(
        method="stale_only",
        help_text="true: only MQLs whose score (of the model) is now below its published MQL threshold "
        "(decay lowers scores but never demotes a stage).",
    )
    visitors = django_filters.ChoiceFilter(
        choices=[choice for choice in selectors.VISITOR_CHOICES if choice[0]],
        method="with_visitors",
        help_text="Visitors (known only by an anonymous id) are hidden by default: 'include' lists them "
        "with the others, 'only' lists only them.",
    )
    model = query.SlugFilter(
        method="scored_by",
        help_text="The scoring model (slug) whose score the list shows, filters (score_min/max) and sorts by; "
        "the default model otherwise.",
    )

    class Meta:
        model = Lead
        fields = ["stage", "source"]

    def search(self, queryset: QuerySet[Lead], name: str, value: str) -> QuerySet[Lead]:
        return selectors.leads_matching(queryset, text=value)

    def scored_by(self, queryset: QuerySet[Lead], name: str, value: str) -> QuerySet[Lead]:
        return queryset  # lead_search annotates the model's scores

    def stale_only(self, queryset: QuerySet[Lead], name: str, value: bool | None) -> QuerySet[Lead]:
        return queryset  # lead_search filters (LeadFilters.stale_mql)

    def exact_utm(self, queryset: QuerySet[Lead], name: str, value: str) -> QuerySet[Lead]:
        return queryset  # lead_search filters (LeadFilters.utm_*)

    def owned_by(self, queryset: QuerySet[Lead], name: str, value: str) -> QuerySet[Lead]:
        return queryset  # lead_search filters (LeadFilters.owner)

    def with_visitors(self, queryset: QuerySet[Lead], name: str, value: str) -> QuerySet[Lead]:
        return queryset  # lead_search filters (LeadFilters.visitors)

    def lead_filters(self, *, sort: str) -> selectors.LeadFilters:
        """The valid parameters as the ``LeadFilters`` of ``selectors.lead_search``."""
        data = self.form.cleaned_data
        account = data.get("account")
        return selectors.LeadFilters(
            q=data.get("q") or "",
            stages=tuple(data.get("stage") or ()),
            score_min=data.get("score_min"),
            score_max=data.get("score_max"),
            source_slug=data.get("source") or "",
            created_after=data.get("created_after"),
            created_before=data.get("created_before"),
            active_after=data.get("active_after"),
            active_before=data.get("active_before"),
            sort=sort,
            model=data.get("model") or None,
            account=int(account) if account is not None else None,
            stale_mql=bool(data.get("stale_mql")),
            utm_source=(data.get("utm_source") or "").strip(),
            utm_medium=(data.get("utm_medium") or "").strip(),
            utm_campaign=(data.get("utm_campaign") or "").strip(),
            owner=(data.get("owner") or "").strip(),
            visitors=data.get("visitors") or "",
        )


# The API's orderings that are one of the page's sorts (``selectors.LEAD_SORTS``).
_PAGE_SORTS = {
    "-score": "-score",
    "score": "score",
    "-activity_at": "-activity",
    "activity_at": "activity",
    "-created_at": "-created",
    "created_at": "created",
}


def _with_scores(leads: QuerySet[Lead], model: str | None) -> QuerySet[Lead]:
    try:
        return leads_annotate_scores(leads, model=model)
    except UnknownModel as error:
        raise exceptions.ValidationError({"model": [str(error)]}) from None


class LeadCursorPagination(CursorPagination):
    ordering = "-activity_at"

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: Any) -> tuple[str, ...]:
        # Ties (many leads share a score) need a stable order, or pages skip and repeat rows.
        ordering = tuple(super().get_ordering(request, queryset, view))
        if ordering in (("-score",), ("score",)):  # the page's sorts by score, with their ties
            return selectors.LEAD_SORTS[ordering[0]]
        tie_breaker = "-id" if ordering[0].startswith("-") else "id"
        return (*ordering, tie_breaker)

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        """A page from the start of the list an index serves (``lead_search_head``: by
        score, the leads scored above zero) when the page lies inside it, else from the
        whole list. The head is a prefix of the list in the same order, so such a page
        and the cursors around it are the list's own."""
        head = getattr(view, "head", None)
        if head is not None:
            rows: list[Any] | None = super().paginate_queryset(head, request, view)
            if self._inside_head():
                return rows
            queryset = view.whole_list()
        return super().paginate_queryset(queryset, request, view)

    def _inside_head(self) -> bool:
        if self.cursor is None or not self.cursor.reverse:
            return bool(self.has_next)  # the head held the page and the row after it
        # Backwards from a score on the head's side of 0: every row before it is in the head.
        try:
            position = Decimal(self.cursor.position) if self.cursor.position is not None else None
        except InvalidOperation:
            return False
        if position is None:
            return False
        return position >= 0 if self.ordering[0] == "-score" else position <= 0


class LeadCollectionView(generics.ListAPIView):
    """GET: leads for people (any role). POST: upsert one lead with an ingest key."""

    serializer_class = LeadListSerializer
    pagination_class = LeadCursorPagination
    parser_classes = [JSONParser]
    filterset_class = LeadFilter
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend, query.OrderingFilter]
    ordering_fields = ["score", "activity_at", "created_at"]

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [HasIngestKey()]
        return [CanEditLeads()]

    head: QuerySet[Any] | None = None  # the start of the list an index serves (lead_search_head)
    filters: selectors.LeadFilters

    def get_queryset(self) -> QuerySet[Lead]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no database
            return Lead.objects.none()
        return selectors.lead_list()

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The leads page's list, ``selectors.lead_search``, with the parameters read and
        refused (400) as the schema states them (``LeadFilter``, ``query.OrderingFilter``),
        in the order the pagination applies. When an index serves the start of that list
        (``lead_search_head``), the start: the pagination reads the whole list
        (``whole_list``) only for a page past it."""
        filterset = LeadFilter(self.request.query_params, queryset=queryset, request=self.request)
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        ordering = query.OrderingFilter().get_ordering(self.request, queryset, self)
        sort = _PAGE_SORTS.get(",".join(ordering or [LeadCursorPagination.ordering]), "")
        self.filters = filterset.lead_filters(sort=sort)
        # An unknown model scored nobody: its head is empty, and the whole list refuses it.
        head = selectors.lead_search_head(filters=self.filters)
        self.head = head.values(*LIST_VALUES) if head is not None else None
        return self.head if self.head is not None else self.whole_list()

    def whole_list(self) -> QuerySet[Any]:
        try:
            return selectors.lead_search(filters=self.filters).values(*LIST_VALUES)
        except UnknownModel as error:
            raise exceptions.ValidationError({"model": [str(error)]}) from None

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rows = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([lead_list_row(row) for row in rows or ()])

    @extend_schema(
        operation_id="leads_upsert",
        summary="Create or update a lead by identity (ingest key)",
        request=LeadIdentityDoc,
        responses={
            200: LeadDetailSerializer,
            201: LeadDetailSerializer,
            409: OpenApiResponse(description="Identity conflict"),
        },
    )
    def post(self, request: Request) -> Response:
        data, errors = validate_lead(read_json_body(request))
        if data is None:
            raise exceptions.ValidationError(errors)
        try:
            lead, created = services.lead_upsert(source=ingest_source(request), data=data)
        except services.IdentityConflict as conflict:
            return Response(conflict.errors, status=status.HTTP_409_CONFLICT)
        lead = _with_scores(selectors.lead_list(), None).get(pk=lead.pk)
        return Response(
            LeadDetailSerializer(lead).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class LeadDetailView(generics.RetrieveUpdateAPIView):
    permission_classes = [CanEditLeads]
    serializer_class = LeadDetailSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "lead_id"
    http_method_names = ["get", "patch", "head", "options"]
    parser_classes = [JsonBodyParser]

    def get_queryset(self) -> QuerySet[Lead]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no database
            return Lead.objects.none()
        return _with_scores(selectors.lead_list(), None)

    @extend_schema(request=LeadUpdateSerializer, responses=LeadDetailSerializer)
    def patch(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        lead = self.get_object()
        serializer = LeadUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            services.lead_update(lead=lead, changes=serializer.validated_data)
        except DjangoValidationError as error:
            raise exceptions.ValidationError(error.message_dict) from None
        return Response(LeadDetailSerializer(self.get_queryset().get(pk=lead.pk)).data)


# --- Merge two leads --------------------------------------------------------------------------------------------
class LeadMergeInputSerializer(serializers.Serializer):
    lead = serializers.UUIDField(help_text="The id of the other lead: it is merged into this one, then deleted.")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")


class LeadMergeSerializer(serializers.Serializer):
    survivor = serializers.UUIDField(help_text="This lead, which now holds both leads' records.")
    merged = serializers.UUIDField(help_text="The lead merged into it (deleted).")
    at = serializers.DateTimeField()
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Records moved, by kind.")


class LeadMergeView(APIView):
    """Merge another lead (the same person) into this one: marketing and scoring admins."""

    permission_classes = [CanEditLeads]

    @extend_schema(
        operation_id="lead_merge",
        summary="Merge another lead into this one",
        request=LeadMergeInputSerializer,
        responses={
            200: LeadMergeSerializer,
            400: OpenApiResponse(description="No such other lead, or the same lead"),
            403: OpenApiResponse(description="Not marketing or scoring admin"),
            404: OpenApiResponse(description="No such lead"),
        },
    )
    def post(self, request: Request, lead_id: Any) -> Response:
        survivor = generics.get_object_or_404(selectors.lead_list(), public_id=lead_id)
        given = LeadMergeInputSerializer(data=read_json_body(request))
        given.is_valid(raise_exception=True)
        merged = selectors.lead_list().filter(public_id=given.validated_data["lead"]).first()
        if merged is None:
            raise exceptions.ValidationError({"lead": ["No lead with this id: send the other lead's id."]})
        try:
            record = lead_merge(
                survivor=survivor, merged=merged, actor=request.user, reason=given.validated_data["reason"]
            )
        except MergeError as error:
            raise exceptions.ValidationError({"lead": [str(error)]}) from None
        return Response(
            LeadMergeSerializer(
                {
                    "survivor": survivor.public_id,
                    "merged": record.merged_public_id,
                    "at": record.at,
                    "counts": record.counts,
                }
            ).data
        )
