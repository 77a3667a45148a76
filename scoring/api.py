"""Scoring API: scoring models, explain a score, change a stage by hand, rulesets and
their rules, preview (what-if), publish, rescore progress, and accounts with their
roll-up scores."""

import contextlib
from collections.abc import Mapping
from typing import Any

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, generics, serializers, status
from rest_framework.fields import SkipField, get_error_detail
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from leadflow import query
from leadflow.leads import selectors as lead_selectors
from leadflow.leads.lifecycle import StageChangeError, lead_stage_change
from leadflow.leads.models import Account, Lead, Stage, StageChange
from leadflow.leads.permissions import CanReadLeads
from leadflow.leads.scores import leads_annotate_scores
from leadflow.pagination import PageNumberPagination
from scoring import accounts, presenters, selectors, services
from scoring.models import (
    GRADES,
    RULE_FIELDS,
    RULESET_FIELDS,
    SCORING_MODEL_FIELDS,
    Operator,
    RescoreRun,
    Rule,
    RuleKind,
    RuleSet,
    RuleSetStatus,
    ScoringModel,
)
from scoring.permissions import CanChangeStage, CanEditRules

NOT_A_DRAFT = OpenApiResponse(description="Not a draft: only drafts change. Clone the ruleset into a new draft.")


def conflict(error: services.ScoringError | StageChangeError) -> Response:
    return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)


def lead_or_404(lead_id: Any) -> Lead:
    return get_object_or_404(lead_selectors.lead_list(), public_id=lead_id)


# --- Explain ----------------------------------------------------------------------------
class ExplainEventSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    type = serializers.CharField()
    occurred_at = serializers.DateTimeField()


class ExplainRuleSerializer(serializers.Serializer):
    rule_id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    points = serializers.DecimalField(max_digits=12, decimal_places=2)
    condition = serializers.CharField()
    matched = serializers.IntegerField(help_text="Fit: 1 or 0. Behaviour: events counted.")
    first_at = serializers.DateTimeField(allow_null=True)
    last_at = serializers.DateTimeField(allow_null=True)
    raw_total = serializers.DecimalField(max_digits=18, decimal_places=6)
    max_points = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    capped = serializers.BooleanField()
    decayed = serializers.BooleanField()
    decays = serializers.BooleanField(help_text="False: the rule opted out of decay.")
    window_days = serializers.IntegerField(allow_null=True)
    contribution = serializers.DecimalField(max_digits=12, decimal_places=2)
    events = ExplainEventSerializer(many=True, help_text="Up to 20 most recent events behind the rule.")


class SuppressedBySerializer(serializers.Serializer):
    rule_id = serializers.IntegerField()
    name = serializers.CharField()


class ExplainSerializer(serializers.Serializer):
    lead = serializers.UUIDField()
    model = serializers.CharField(allow_null=True, help_text="The scoring model's slug.")
    model_name = serializers.CharField(allow_null=True)
    ruleset_version = serializers.IntegerField(allow_null=True)
    as_of = serializers.DateTimeField(allow_null=True)
    score = serializers.DecimalField(max_digits=12, decimal_places=2)
    fit_score = serializers.DecimalField(max_digits=12, decimal_places=2)
    behaviour_score = serializers.DecimalField(max_digits=12, decimal_places=2)
    grade = serializers.CharField(help_text="Fit grade A–F; empty when the model never scored the lead.")
    last_intent_at = serializers.DateTimeField(allow_null=True, help_text="Latest hand-raise inside the intent window.")
    behaviour_since_recycled = serializers.DecimalField(
        max_digits=12, decimal_places=2, allow_null=True, help_text="For a recycled lead: behaviour since then."
    )
    suppressed_by = SuppressedBySerializer(allow_null=True, help_text="The suppression rule that matched, if any.")
    adds_up = serializers.BooleanField()
    needs_rescore = serializers.BooleanField()
    rules = ExplainRuleSerializer(many=True)


class LeadScoreView(APIView):
    permission_classes = [CanChangeStage]

    @extend_schema(
        responses=ExplainSerializer,
        parameters=[
            OpenApiParameter("model", str, description="The scoring model (slug); the default model otherwise.")
        ],
        summary="Explain the lead's score under a model, rule by rule",
    )
    def get(self, request: Request, lead_id: Any) -> Response:
        lead = lead_or_404(lead_id)
        slug = request.query_params.get("model")
        model = None
        if slug:
            model = selectors.model_get(slug=slug)
            if model is None:
                raise exceptions.ValidationError({"model": [f"No scoring model {slug!r}."]})
        explanation = selectors.lead_explain(lead=lead, model=model)
        return Response(ExplainSerializer(presenters.explanation_data(explanation)).data)


# --- Stages -------------------------------------------------------------------------------
class StageChangeInputSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=Stage.choices)
    reason = serializers.CharField(max_length=2000, help_text="Why: shown in the lead's history.")


class StageChangeSerializer(serializers.ModelSerializer):
    actor: "serializers.SlugRelatedField[Any]" = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Null for an automatic change, or when withheld (actor_hidden).",
    )
    actor_hidden = serializers.SerializerMethodField(
        help_text="Another rep decided this handoff: who, and their reason, are not yours to see."
    )

    class Meta:
        model = StageChange
        fields = [
            "from_stage",
            "to_stage",
            "at",
            "actor",
            "actor_hidden",
            "reason",
            "qualified_by",
            "ruleset_version",
            "score",
        ]
        read_only_fields = fields

    def get_actor_hidden(self, change: StageChange) -> bool:
        return bool(getattr(change, "actor_hidden", False))


class LeadStageView(APIView):
    permission_classes = [CanChangeStage]

    @extend_schema(responses=StageChangeSerializer(many=True), summary="The lead's stage history, newest first")
    def get(self, request: Request, lead_id: Any) -> Response:
        lead = lead_or_404(lead_id)
        changes = lead_selectors.lead_stage_history(lead=lead, viewer=request.user, limit=None)
        return Response(StageChangeSerializer(changes, many=True).data)

    @extend_schema(
        request=StageChangeInputSerializer,
        responses={201: StageChangeSerializer, 409: OpenApiResponse(description="Already in that stage")},
        summary="Move the lead to a stage by hand, with a reason",
    )
    def post(self, request: Request, lead_id: Any) -> Response:
        lead = lead_or_404(lead_id)
        serializer = StageChangeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            change = lead_stage_change(
                lead=lead,
                to_stage=serializer.validated_data["stage"],
                actor=request.user,
                reason=serializer.validated_data["reason"],
            )
        except StageChangeError as error:
            return conflict(error)
        return Response(StageChangeSerializer(change).data, status=status.HTTP_201_CREATED)


# --- Rulesets and rules -------------------------------------------------------------------
def current_values(instance: RuleSet | Rule, names: tuple[str, ...]) -> dict[str, Any]:
    """What an edit starts from (a new ruleset or rule: the model's defaults): the services
    validate a ruleset or rule as it would be saved, the given fields over these."""
    return {name: getattr(instance, name) for name in names}


TOO_LONG = "At most {max_length} characters."


def number_messages(model: type[models.Model], name: str) -> dict[str, str]:
    """What a person reads when a number field refuses its text (DRF's own messages are
    about digits: "Ensure that there are no more than 8 digits in total."): the number it
    wants, said once for every way of missing it."""
    field = model._meta.get_field(name)
    if isinstance(field, models.DecimalField):
        below = 10 ** (field.max_digits - field.decimal_places)
        wanted = f"Give a number (e.g. 12.5) below {below:,}, with at most {field.decimal_places} decimals."
        codes = ("invalid", "max_digits", "max_decimal_places", "max_whole_digits", "max_string_length")
        return dict.fromkeys(codes, wanted)
    if isinstance(field, models.IntegerField):
        return {
            "invalid": "Give a whole number, e.g. 30.",
            "max_string_length": "Give a whole number, e.g. 30.",
            "min_value": "Give a whole number, {min_value} or more.",
            "max_value": "Give a whole number up to {max_value}.",
        }
    return {}


def readable_messages(
    model: type[models.Model], names: tuple[str, ...], *, below_minimum: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """``extra_kwargs`` giving the model's number and text fields messages in words.
    ``below_minimum``: the services' message for a number under its column's minimum (a
    window of -3 days reads as a window of 0 does)."""
    kwargs: dict[str, dict[str, Any]] = {}
    for name in names:
        field = model._meta.get_field(name)
        messages = number_messages(model, name)
        if below_minimum and name in below_minimum:
            messages["min_value"] = below_minimum[name]
        if isinstance(field, models.CharField) and not field.choices:
            messages["max_length"] = TOO_LONG
        if messages:
            kwargs[name] = {"error_messages": messages}
    return kwargs


class ServiceCheckedSerializer(serializers.ModelSerializer):
    """A model serializer that answers once: its fields' own messages (a number that is
    not one) together with the services' rules over every field that could be read, the
    rules that compare fields included. (DRF alone calls ``validate`` only once every field
    parses: a person would fix the field errors first and meet the others next.) The
    JSON of a 400 keeps its shape: field → messages."""

    checked_fields: tuple[str, ...] = ()

    def service_errors(self, values: dict[str, Any]) -> services.Errors:
        raise NotImplementedError

    def current(self) -> dict[str, Any]:
        model: type[RuleSet | Rule] = self.Meta.model
        return current_values(self.instance or model(), self.checked_fields)

    def to_internal_value(self, data: Any) -> Any:
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as refused:
            if not isinstance(data, Mapping) or not isinstance(refused.detail, dict):
                raise  # not an object: no field to read
            errors = dict(refused.detail)
            service_errors = DjangoValidationError(self.service_errors(self._readable(data, set(errors))))
            more: dict[str, Any] = get_error_detail(service_errors)  # type: ignore[assignment]  # keyed by field
            for name, messages in more.items():
                errors.setdefault(name, messages)
            raise serializers.ValidationError(errors) from refused

    def _readable(self, data: Any, failed: set[str]) -> dict[str, Any]:
        """The values as they would be saved, of the fields that parse (the others left out)."""
        values = {name: value for name, value in self.current().items() if name not in failed}
        for field in self._writable_fields:
            if field.field_name in failed or field.field_name not in self.checked_fields:
                continue
            # SkipField: not given (a partial update), the current value stands.
            with contextlib.suppress(serializers.ValidationError, DjangoValidationError, SkipField):
                values[field.field_name] = field.run_validation(field.get_value(data))
        return values

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = {name: value for name, value in attrs.items() if name in self.checked_fields}
        errors = self.service_errors({**self.current(), **given})
        if errors:
            raise DjangoValidationError(errors)
        return attrs


class RuleSerializer(ServiceCheckedSerializer):
    checked_fields = RULE_FIELDS

    class Meta:
        model = Rule
        fields = ["id", *RULE_FIELDS]
        read_only_fields = ["id"]
        extra_kwargs = {
            **readable_messages(
                Rule,
                ("points", "event_type", "attribute", "max_points", "window_days", "position"),
                below_minimum={"window_days": services.WINDOW_TOO_SHORT, "position": services.POSITION_NEGATIVE},
            ),
            "value": {"required": False},
            "name": {"error_messages": {"blank": services.RULE_NAME_MISSING, "max_length": TOO_LONG}},
            "kind": {"error_messages": {"invalid_choice": f"Choose the kind of rule: {' or '.join(RuleKind.values)}."}},
            "operator": {
                "error_messages": {"invalid_choice": f"Choose an operator: {', '.join(Operator.values)}, or none."}
            },
        }
        extra_kwargs["position"]["required"] = False

    def service_errors(self, values: dict[str, Any]) -> services.Errors:
        return services.rule_errors(values)


class ScoringModelSerializer(serializers.ModelSerializer):
    published_version = serializers.SerializerMethodField()

    class Meta:
        model = ScoringModel
        fields = ["id", *SCORING_MODEL_FIELDS, "published_version", "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {
            "position": {"required": False, "max_value": services.MODEL_POSITION_MAX},
            "slug": {"validators": []},
            "name": {"validators": []},
        }

    def get_published_version(self, model: ScoringModel) -> int | None:
        published = [r.version for r in model.rulesets.all() if r.status == RuleSetStatus.PUBLISHED]
        return published[0] if published else None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = self.instance or ScoringModel()
        candidate = ScoringModel(
            pk=instance.pk, **{**{name: getattr(instance, name) for name in SCORING_MODEL_FIELDS}, **attrs}
        )
        if candidate.position is None:
            candidate.position = 0
        services.scoring_model_validate(model=candidate)
        return attrs


def scoring_models() -> QuerySet[ScoringModel]:
    return selectors.model_list().prefetch_related("rulesets")


class ScoringModelListView(generics.ListCreateAPIView):
    """Scoring models (e.g. one per product line); scoring admins create them."""

    permission_classes = [CanEditRules]
    serializer_class = ScoringModelSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[ScoringModel]:
        return scoring_models()

    def perform_create(self, serializer: Any) -> None:
        serializer.instance = services.scoring_model_create(**serializer.validated_data)


class ScoringModelDetailView(APIView):
    permission_classes = [CanEditRules]

    def _model(self, slug: str) -> ScoringModel:
        return get_object_or_404(scoring_models(), slug=slug)

    @extend_schema(responses=ScoringModelSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return Response(ScoringModelSerializer(self._model(slug)).data)

    @extend_schema(request=ScoringModelSerializer, responses=ScoringModelSerializer)
    def patch(self, request: Request, slug: str) -> Response:
        model = self._model(slug)
        serializer = ScoringModelSerializer(model, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        model = services.scoring_model_update(
            model=model, changes=services.ScoringModelChanges(**serializer.validated_data)
        )
        return Response(ScoringModelSerializer(self._model(model.slug)).data)

    @extend_schema(
        responses={204: None, 409: OpenApiResponse(description="The model has published rulesets: it is history.")}
    )
    def delete(self, request: Request, slug: str) -> Response:
        try:
            services.scoring_model_delete(model=self._model(slug))
        except services.ScoringError as error:
            return conflict(error)
        return Response(status=status.HTTP_204_NO_CONTENT)


RULESET_NUMBER_FIELDS = (
    "mql_threshold",
    "sql_threshold",
    "sql_min_fit",
    "decay_half_life_days",
    "grade_a_min",
    "grade_b_min",
    "grade_c_min",
    "grade_d_min",
    "intent_window_days",
    "requalify_threshold",
    "mqa_threshold",
)
GRADE_CHOICE_MESSAGE = f"A grade is one of {', '.join(GRADES)}, or empty for any grade."


class RuleSetSerializer(ServiceCheckedSerializer):
    checked_fields = RULESET_FIELDS
    rules = RuleSerializer(many=True, read_only=True)
    model: "serializers.SlugRelatedField[Any]" = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=ScoringModel.objects.all(),
        required=False,
        help_text="The scoring model (slug) of the ruleset; the default model when left out. Fixed once created.",
    )
    created_by: "serializers.SlugRelatedField[Any]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    published_by: "serializers.SlugRelatedField[Any]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = RuleSet
        fields = [
            "version",
            "model",
            "status",
            *RULESET_FIELDS,
            "created_by",
            "created_at",
            "published_by",
            "published_at",
            "archived_at",
            "rules",
        ]
        read_only_fields = ["version", "status", "created_at", "published_at", "archived_at"]
        # One published ruleset per model is the services' rule (publish archives the previous one).
        validators: list[Any] = []
        extra_kwargs = {
            **readable_messages(
                RuleSet, RULESET_NUMBER_FIELDS, below_minimum={"intent_window_days": services.INTENT_WINDOW_TOO_SHORT}
            ),
            "name": {"error_messages": {"blank": services.RULESET_NAME_MISSING, "max_length": TOO_LONG}},
            "mql_min_grade": {"error_messages": {"invalid_choice": GRADE_CHOICE_MESSAGE}},
            "sql_min_grade": {"error_messages": {"invalid_choice": GRADE_CHOICE_MESSAGE}},
        }

    def service_errors(self, values: dict[str, Any]) -> services.Errors:
        return services.ruleset_errors(values)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is not None and "model" in attrs and attrs["model"] != self.instance.model:
            raise serializers.ValidationError({"model": ["A ruleset stays with its model: clone it into the other."]})
        return super().validate(attrs)


class RuleSetListView(generics.ListCreateAPIView):
    """Rulesets of every model (``?model=<slug>`` for one model's), newest first."""

    permission_classes = [CanEditRules]
    serializer_class = RuleSetSerializer
    pagination_class = None

    @extend_schema(parameters=[OpenApiParameter("model", str, description="Only this scoring model's rulesets.")])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[RuleSet]:
        rulesets = selectors.ruleset_list()
        slug = self.request.query_params.get("model")
        if self.request.method == "GET" and slug:
            if selectors.model_get(slug=slug) is None:
                raise exceptions.ValidationError({"model": [f"No scoring model {slug!r}."]})
            rulesets = rulesets.filter(model__slug=slug)
        return rulesets

    def perform_create(self, serializer: Any) -> None:
        data = dict(serializer.validated_data)
        model = data.pop("model", None) or selectors.model_default()
        if model is None:
            raise exceptions.ValidationError({"model": ["Create a scoring model first."]})
        serializer.instance = services.ruleset_create(user=self.request.user, model=model, **data)


def ruleset_or_404(version: int) -> RuleSet:
    return get_object_or_404(selectors.ruleset_list(), version=version)


class RuleSetDetailView(APIView):
    permission_classes = [CanEditRules]

    @extend_schema(responses=RuleSetSerializer)
    def get(self, request: Request, version: int) -> Response:
        return Response(RuleSetSerializer(ruleset_or_404(version)).data)

    @extend_schema(request=RuleSetSerializer, responses={200: RuleSetSerializer, 409: NOT_A_DRAFT})
    def patch(self, request: Request, version: int) -> Response:
        ruleset = ruleset_or_404(version)
        serializer = RuleSetSerializer(ruleset, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = {name: value for name, value in serializer.validated_data.items() if name in RULESET_FIELDS}
        try:
            ruleset = services.ruleset_update(ruleset=ruleset, changes=services.RuleSetChanges(**changes))
        except services.ScoringError as error:
            return conflict(error)
        return Response(RuleSetSerializer(ruleset_or_404(ruleset.version)).data)

    @extend_schema(responses={204: None, 409: NOT_A_DRAFT})
    def delete(self, request: Request, version: int) -> Response:
        try:
            services.ruleset_delete(ruleset=ruleset_or_404(version))
        except services.ScoringError as error:
            return conflict(error)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RuleSetCloneView(APIView):
    permission_classes = [CanEditRules]

    @extend_schema(request=None, responses={201: RuleSetSerializer}, summary="Copy a ruleset into a new draft")
    def post(self, request: Request, version: int) -> Response:
        clone = services.ruleset_clone(ruleset=ruleset_or_404(version), user=request.user)
        return Response(RuleSetSerializer(ruleset_or_404(clone.version)).data, status=status.HTTP_201_CREATED)


class RescoreRunSerializer(serializers.ModelSerializer):
    ruleset_version = serializers.IntegerField(source="ruleset.version", read_only=True)
    model = serializers.CharField(source="ruleset.model.slug", read_only=True)
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = RescoreRun
        fields = [
            "id",
            "model",
            "ruleset_version",
            "reason",
            "state",
            "total",
            "done",
            "percent",
            "changed_stages",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields


class RuleSetPublishView(APIView):
    permission_classes = [CanEditRules]

    @extend_schema(
        request=None,
        responses={
            202: RescoreRunSerializer,
            409: OpenApiResponse(description="Not a draft, or a draft without rules: see `detail`."),
        },
        summary="Publish a draft; rescore every lead",
    )
    def post(self, request: Request, version: int) -> Response:
        try:
            run = services.ruleset_publish(ruleset=ruleset_or_404(version), user=request.user)
        except services.ScoringError as error:
            return conflict(error)
        run.refresh_from_db()
        return Response(RescoreRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class PreviewLeadSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    stage = serializers.CharField()
    score_before = serializers.DecimalField(max_digits=12, decimal_places=2)
    score_after = serializers.DecimalField(max_digits=12, decimal_places=2)
    change = serializers.DecimalField(max_digits=12, decimal_places=2)


class PreviewCategorySerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label
    description = serializers.CharField()
    count = serializers.IntegerField()


class PreviewMoversSerializer(serializers.Serializer):
    up = PreviewLeadSerializer(many=True, help_text="The leads whose score the draft raises most, most first.")
    down = PreviewLeadSerializer(many=True, help_text="The leads whose score the draft lowers most, most first.")


class PreviewChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label
    before = serializers.CharField()
    after = serializers.CharField()


class PreviewRuleSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=presenters.RULE_STATUSES)
    rule_id = serializers.IntegerField(allow_null=True, help_text="The draft's rule (null: removed).")
    published_rule_id = serializers.IntegerField(allow_null=True, help_text="The published rule (null: added).")
    name = serializers.CharField()
    kind = serializers.CharField()
    kind_label = serializers.CharField()
    condition = serializers.CharField()
    points = serializers.DecimalField(max_digits=10, decimal_places=2, allow_null=True)
    leads = serializers.IntegerField(allow_null=True, help_text="Leads the draft's rule matches.")
    leads_published = serializers.IntegerField(
        allow_null=True, help_text="Leads the published rule matches (a rule removed or changed)."
    )
    changes = PreviewChangeSerializer(many=True)


class PreviewDiffSerializer(serializers.Serializer):
    published_version = serializers.IntegerField(allow_null=True)
    no_changes = serializers.BooleanField()
    settings = PreviewChangeSerializer(many=True)
    added = PreviewRuleSerializer(many=True)
    removed = PreviewRuleSerializer(many=True)
    changed = PreviewRuleSerializer(many=True)
    unchanged = PreviewRuleSerializer(many=True)


class PreviewSerializer(serializers.Serializer):
    ruleset_version = serializers.IntegerField()
    published_version = serializers.IntegerField(allow_null=True)
    leads = serializers.IntegerField()
    stages_before = serializers.DictField(child=serializers.IntegerField())
    stages_after = serializers.DictField(child=serializers.IntegerField())
    counts = serializers.DictField(child=serializers.IntegerField())
    categories = PreviewCategorySerializer(many=True)
    enter_mql = PreviewLeadSerializer(many=True)
    enter_sql = PreviewLeadSerializer(many=True)
    no_longer_mql = PreviewLeadSerializer(many=True)
    no_longer_sql = PreviewLeadSerializer(many=True)
    already_below_mql = PreviewLeadSerializer(many=True)
    already_below_sql = PreviewLeadSerializer(many=True)
    leave_mql = PreviewLeadSerializer(many=True)
    leave_sql = PreviewLeadSerializer(many=True)
    movers = PreviewMoversSerializer()
    diff = PreviewDiffSerializer()
    histogram_before = serializers.DictField(child=serializers.IntegerField())
    histogram_after = serializers.DictField(child=serializers.IntegerField())


class RuleSetPreviewView(APIView):
    permission_classes = [CanEditRules]

    @extend_schema(request=None, responses=PreviewSerializer, summary="What-if over all current leads; writes nothing")
    def post(self, request: Request, version: int) -> Response:
        preview = selectors.ruleset_preview(ruleset=ruleset_or_404(version))
        return Response(PreviewSerializer(presenters.preview_data(preview)).data)


class RuleListView(APIView):
    permission_classes = [CanEditRules]

    @extend_schema(responses=RuleSerializer(many=True))
    def get(self, request: Request, version: int) -> Response:
        return Response(RuleSerializer(ruleset_or_404(version).rules.all(), many=True).data)

    @extend_schema(request=RuleSerializer, responses={201: RuleSerializer, 409: NOT_A_DRAFT})
    def post(self, request: Request, version: int) -> Response:
        ruleset = ruleset_or_404(version)
        serializer = RuleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            rule = services.rule_create(ruleset=ruleset, **serializer.validated_data)
        except services.ScoringError as error:
            return conflict(error)
        return Response(RuleSerializer(rule).data, status=status.HTTP_201_CREATED)


class RuleDetailView(APIView):
    permission_classes = [CanEditRules]

    def _rule(self, version: int, rule_id: int) -> Rule:
        return get_object_or_404(Rule, pk=rule_id, ruleset__version=version)

    @extend_schema(responses=RuleSerializer)
    def get(self, request: Request, version: int, rule_id: int) -> Response:
        return Response(RuleSerializer(self._rule(version, rule_id)).data)

    @extend_schema(request=RuleSerializer, responses={200: RuleSerializer, 409: NOT_A_DRAFT})
    def patch(self, request: Request, version: int, rule_id: int) -> Response:
        rule = self._rule(version, rule_id)
        serializer = RuleSerializer(rule, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            rule = services.rule_update(rule=rule, changes=services.RuleChanges(**serializer.validated_data))
        except services.ScoringError as error:
            return conflict(error)
        return Response(RuleSerializer(rule).data)

    @extend_schema(responses={204: None, 409: NOT_A_DRAFT})
    def delete(self, request: Request, version: int, rule_id: int) -> Response:
        try:
            services.rule_delete(rule=self._rule(version, rule_id))
        except services.ScoringError as error:
            return conflict(error)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RescoreRunListView(generics.ListAPIView):
    permission_classes = [CanEditRules]
    serializer_class = RescoreRunSerializer
    pagination_class = PageNumberPagination
    queryset = RescoreRun.objects.select_related("ruleset__model")


class RescoreRunDetailView(generics.RetrieveAPIView):
    permission_classes = [CanEditRules]
    serializer_class = RescoreRunSerializer
    queryset = RescoreRun.objects.select_related("ruleset__model")
    lookup_url_kwarg = "run_id"


# --- Accounts ------------------------------------------------------------------------------------
ACCOUNT_CONTACTS_SHOWN = 100


class AccountFilter(query.FilterSet):
    q = query.TextFilter(method="search", help_text="Search the account's name, key and domain.")
    model = query.SlugFilter(
        method="rolled_up_by",
        help_text="The scoring model (slug) whose roll-up the list shows, filters and sorts by; the default otherwise.",
    )
    score_min = query.NumberFilter(field_name="score", lookup_expr="gte", help_text="Roll-up score at least this.")
    mqa = query.BooleanFilter(
        method="qualified", help_text="true: marketing-qualified accounts only; false: the others."
    )

    class Meta:
        model = Account
        fields: list[str] = []

    def search(self, queryset: QuerySet[Account], name: str, value: str) -> QuerySet[Account]:
        return lead_selectors.account_search(queryset, text=value)

    def rolled_up_by(self, queryset: QuerySet[Account], name: str, value: str) -> QuerySet[Account]:
        return queryset  # the view annotates the model's roll-up (filters must see it first)

    def qualified(self, queryset: QuerySet[Account], name: str, value: bool) -> QuerySet[Account]:
        return queryset.filter(mqa_at__isnull=not value)  # type: ignore[misc]


class AccountListSerializer(serializers.ModelSerializer):
    score = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True, help_text="Roll-up score.")
    fit = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True, help_text="Best fit of a contact.")
    behaviour = serializers.DecimalField(
        max_digits=12, decimal_places=2, read_only=True, help_text="Behaviour of the top contacts, summed."
    )
    contacts = serializers.IntegerField(source="scored_contacts", read_only=True, help_text="Contacts scored.")
    mqa_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="When it became an MQA.")

    class Meta:
        model = Account
        fields = ["id", "key", "name", "domain", "created_at", "score", "fit", "behaviour", "contacts", "mqa_at"]
        read_only_fields = fields


class AccountContributionSerializer(serializers.Serializer):
    lead = serializers.UUIDField(source="lead.public_id")
    name = serializers.CharField(source="lead.display_name")
    behaviour = serializers.DecimalField(max_digits=12, decimal_places=2)
    fit = serializers.DecimalField(max_digits=12, decimal_places=2)
    behaviour_counted = serializers.BooleanField(help_text="One of the top contacts by behaviour.")
    fit_counted = serializers.BooleanField(help_text="The best fit of the account.")


class AccountRollupSerializer(serializers.Serializer):
    model = serializers.CharField(source="rollup.model.slug")
    model_name = serializers.CharField(source="rollup.model.name")
    score = serializers.DecimalField(source="rollup.score", max_digits=12, decimal_places=2)
    fit = serializers.DecimalField(source="rollup.fit", max_digits=12, decimal_places=2)
    behaviour = serializers.DecimalField(source="rollup.behaviour", max_digits=12, decimal_places=2)
    contacts = serializers.IntegerField(source="rollup.contacts")
    computed_at = serializers.DateTimeField(source="rollup.computed_at")
    mqa_at = serializers.DateTimeField(source="rollup.mqa_at", allow_null=True)
    top = serializers.IntegerField(source="explanation.top", help_text="How many top contacts' behaviour counts.")
    contributions = AccountContributionSerializer(source="explanation.contributions", many=True)


class AccountContactSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    score = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True, help_text="Default model.")

    class Meta:
        model = Lead
        fields = ["id", "email", "name", "job_title", "stage", "score", "last_activity_at"]
        read_only_fields = fields


class AccountDetailSerializer(serializers.ModelSerializer):
    rollups = serializers.SerializerMethodField(help_text="The roll-up under every model, with its contributors.")
    contacts = serializers.SerializerMethodField(
        help_text=f"The {ACCOUNT_CONTACTS_SHOWN} most recently active contacts; "
        "all of them: /api/v1/leads?account=<id>."
    )
    contacts_count = serializers.SerializerMethodField()

    class Meta:
        model = Account
        fields = ["id", "key", "name", "domain", "created_at", "contacts_count", "rollups", "contacts"]
        read_only_fields = fields

    @extend_schema_field(AccountRollupSerializer(many=True))
    def get_rollups(self, account: Account) -> list[dict[str, Any]]:
        rows = [
            {"rollup": rollup, "explanation": accounts.account_explain(account=account, model=rollup.model)}
            for rollup in accounts.account_rollups(account=account)
        ]
        return AccountRollupSerializer(rows, many=True).data  # type: ignore[return-value]

    @extend_schema_field(AccountContactSerializer(many=True))
    def get_contacts(self, account: Account) -> list[dict[str, Any]]:
        contacts = leads_annotate_scores(lead_selectors.account_contacts(account=account))[:ACCOUNT_CONTACTS_SHOWN]
        return AccountContactSerializer(contacts, many=True).data  # type: ignore[return-value]

    def get_contacts_count(self, account: Account) -> int:
        return account.contacts.count()


class AccountListView(generics.ListAPIView):
    """Accounts with a model's roll-up (any role with lead access), highest first."""

    permission_classes = [CanReadLeads]
    serializer_class = AccountListSerializer
    pagination_class = PageNumberPagination
    filterset_class = AccountFilter
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend, query.OrderingFilter]
    ordering_fields = ["score", "name", "created_at"]
    ordering = ["-score", "-id"]

    def get_queryset(self) -> QuerySet[Account]:
        if getattr(self, "swagger_fake_view", False):  # the schema: no model to look up
            return Account.objects.none()
        slug = self.request.query_params.get("model") or None
        model = selectors.model_get(slug=slug) if slug else selectors.model_default()
        if slug and model is None:
            known = ", ".join(selectors.model_list().values_list("slug", flat=True)) or "none yet"
            raise exceptions.ValidationError({"model": [f"No scoring model {slug!r}: choose one of {known}."]})
        return accounts.accounts_annotate_rollup(lead_selectors.account_list(), model=model).order_by("-score", "-id")  # type: ignore[misc]


class AccountDetailView(generics.RetrieveAPIView):
    """An account with its roll-ups (and the contacts behind them) and its contacts."""

    permission_classes = [CanReadLeads]
    serializer_class = AccountDetailSerializer
    lookup_url_kwarg = "account_id"

    def get_queryset(self) -> QuerySet[Account]:
        return lead_selectors.account_list()
