"""Scoring API: explain a score, change a stage by hand, rulesets and their rules,
preview (what-if), publish, and rescore progress."""

from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from leadflow.leads import selectors as lead_selectors
from leadflow.leads.lifecycle import StageChangeError, lead_stage_change
from leadflow.leads.models import Lead, Stage, StageChange
from leadflow.leads.validation import EVENT_TYPE_RE
from leadflow.pagination import PageNumberPagination
from scoring import engine, presenters, selectors, services
from scoring.models import RULE_FIELDS, Operator, RescoreRun, Rule, RuleKind, RuleSet
from scoring.permissions import CanChangeStage, CanEditRules

SCALAR_TYPES = (str, int, float, bool)


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
    window_days = serializers.IntegerField(allow_null=True)
    contribution = serializers.DecimalField(max_digits=12, decimal_places=2)
    events = ExplainEventSerializer(many=True, help_text="Up to 20 most recent events behind the rule.")


class ExplainSerializer(serializers.Serializer):
    lead = serializers.UUIDField()
    ruleset_version = serializers.IntegerField(allow_null=True)
    as_of = serializers.DateTimeField(allow_null=True)
    score = serializers.DecimalField(max_digits=12, decimal_places=2)
    fit_score = serializers.DecimalField(max_digits=12, decimal_places=2)
    behaviour_score = serializers.DecimalField(max_digits=12, decimal_places=2)
    adds_up = serializers.BooleanField()
    needs_rescore = serializers.BooleanField()
    rules = ExplainRuleSerializer(many=True)


class LeadScoreView(APIView):
    permission_classes = [CanChangeStage]

    @extend_schema(responses=ExplainSerializer, summary="Explain the lead's score rule by rule")
    def get(self, request: Request, lead_id: Any) -> Response:
        explanation = selectors.lead_explain(lead=lead_or_404(lead_id))
        return Response(ExplainSerializer(presenters.explanation_data(explanation)).data)


# --- Stages -------------------------------------------------------------------------------
class StageChangeInputSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=Stage.choices)
    reason = serializers.CharField(max_length=2000, help_text="Why: shown in the lead's history.")


class StageChangeSerializer(serializers.ModelSerializer):
    actor: "serializers.SlugRelatedField[Any]" = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Null for an automatic change."
    )

    class Meta:
        model = StageChange
        fields = ["from_stage", "to_stage", "at", "actor", "reason", "ruleset_version", "score"]
        read_only_fields = fields


class LeadStageView(APIView):
    permission_classes = [CanChangeStage]

    @extend_schema(responses=StageChangeSerializer(many=True), summary="The lead's stage history, newest first")
    def get(self, request: Request, lead_id: Any) -> Response:
        lead = lead_or_404(lead_id)
        changes = StageChange.objects.filter(lead=lead).select_related("actor").order_by("-at", "-id")
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
class RuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Rule
        fields = ["id", *RULE_FIELDS]
        read_only_fields = ["id"]
        extra_kwargs = {"position": {"required": False}, "value": {"required": False}}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        data = {**self._current(), **attrs}
        errors: dict[str, list[str]] = {}
        kind, points = data.get("kind"), data.get("points")
        attribute, operator, value = data.get("attribute") or "", data.get("operator") or "", data.get("value")
        if points is not None and points == 0:
            errors["points"] = ["Points must not be zero: delete the rule instead."]
        if kind == RuleKind.FIT:
            if data.get("event_type"):
                errors["event_type"] = ["Fit rules test lead attributes; leave event_type empty."]
            for name in ("max_points", "window_days"):
                if data.get(name) is not None:
                    errors[name] = ["Only behaviour rules have caps and windows."]
            if not attribute:
                errors["attribute"] = ["Name the lead attribute to test (e.g. industry, company_size, traits.plan)."]
            elif attribute not in engine.LEAD_ATTRIBUTES and not self._valid_trait(attribute):
                allowed = ", ".join(sorted(engine.LEAD_ATTRIBUTES))
                errors["attribute"] = [f"Unknown lead attribute: use one of {allowed}, or traits.<key>."]
            if not operator:
                errors["operator"] = ["Choose an operator."]
        elif kind == RuleKind.BEHAVIOUR:
            event_type = data.get("event_type") or ""
            if not EVENT_TYPE_RE.match(event_type):
                errors["event_type"] = ["Give the event type this rule counts (a slug such as page_view)."]
            if attribute and not all(engine.PATH_SEGMENT_RE.match(s) for s in attribute.split(".")):
                errors["attribute"] = ["A property path is dot-separated keys of letters, digits, '_' or '-'."]
            if attribute and not operator:
                errors["operator"] = ["Choose an operator for the property condition."]
            if operator and not attribute:
                errors["attribute"] = ["Name the event property the condition tests (e.g. topic)."]
            cap = data.get("max_points")
            if cap is not None and points and (cap > 0) != (points > 0):
                errors["max_points"] = [
                    "The cap must have the same sign as the points (a negative rule has a negative floor)."
                ]
            window = data.get("window_days")
            if window is not None and window < 1:
                errors["window_days"] = ["At least 1 day, or empty for all time."]
        if operator and "value" not in errors:
            message = self._value_error(operator, value)
            if message:
                errors["value"] = [message]
        if errors:
            raise ValidationError(errors)
        return attrs

    def _current(self) -> dict[str, Any]:
        if self.instance is None:
            return {}
        return {name: getattr(self.instance, name) for name in RULE_FIELDS}

    @staticmethod
    def _valid_trait(attribute: str) -> bool:
        if not attribute.startswith(engine.TRAIT_PREFIX):
            return False
        path = attribute[len(engine.TRAIT_PREFIX) :]
        return bool(path) and all(engine.PATH_SEGMENT_RE.match(segment) for segment in path.split("."))

    @staticmethod
    def _value_error(operator: str, value: Any) -> str | None:
        is_number = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
        if operator == Operator.EXISTS:
            return None if value is None else "'exists' takes no value: leave it empty."
        if operator in (Operator.GTE, Operator.LTE):
            return None if is_number else "Comparisons need a number."
        if operator == Operator.IN:
            if not isinstance(value, list) or not value or not all(isinstance(v, SCALAR_TYPES) for v in value):
                return "'in' needs a non-empty list of texts or numbers."
            return None
        if operator in (Operator.EQ, Operator.NEQ, Operator.CONTAINS):
            if not isinstance(value, SCALAR_TYPES) or value == "":
                return "Give a text or number to compare with."
            return None
        return None


class RuleSetSerializer(serializers.ModelSerializer):
    rules = RuleSerializer(many=True, read_only=True)
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
            "name",
            "description",
            "status",
            "mql_threshold",
            "sql_threshold",
            "intent_event_types",
            "sql_min_fit",
            "decay_half_life_days",
            "created_by",
            "created_at",
            "published_by",
            "published_at",
            "archived_at",
            "rules",
        ]
        read_only_fields = ["version", "status", "created_at", "published_at", "archived_at"]

    def validate_mql_threshold(self, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValidationError("The MQL threshold must be above zero.")
        return value

    def validate_decay_half_life_days(self, value: Decimal | None) -> Decimal | None:
        if value is not None and value <= 0:
            raise ValidationError("A half-life is a positive number of days; leave empty for no decay.")
        return value

    def validate_intent_event_types(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and EVENT_TYPE_RE.match(v) for v in value):
            raise ValidationError('A list of event type slugs, e.g. ["demo_request", "contact_request"].')
        return sorted(set(value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        mql = attrs.get("mql_threshold", getattr(self.instance, "mql_threshold", None))
        sql = attrs.get("sql_threshold", getattr(self.instance, "sql_threshold", None))
        if mql is not None and sql is not None and sql < mql:
            raise ValidationError({"sql_threshold": ["The SQL threshold cannot be below the MQL threshold."]})
        return attrs


class RuleSetListView(generics.ListCreateAPIView):
    permission_classes = [CanEditRules]
    serializer_class = RuleSetSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[RuleSet]:
        return selectors.ruleset_list()

    def perform_create(self, serializer: Any) -> None:
        serializer.instance = services.ruleset_create(user=self.request.user, **serializer.validated_data)


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
        try:
            ruleset = services.ruleset_update(ruleset=ruleset, **serializer.validated_data)
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
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = RescoreRun
        fields = [
            "id",
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


class PreviewSerializer(serializers.Serializer):
    ruleset_version = serializers.IntegerField()
    leads = serializers.IntegerField()
    stages_before = serializers.DictField(child=serializers.IntegerField())
    stages_after = serializers.DictField(child=serializers.IntegerField())
    counts = serializers.DictField(child=serializers.IntegerField())
    enter_mql = PreviewLeadSerializer(many=True)
    enter_sql = PreviewLeadSerializer(many=True)
    leave_mql = PreviewLeadSerializer(many=True)
    leave_sql = PreviewLeadSerializer(many=True)
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
            rule = services.rule_update(rule=rule, **serializer.validated_data)
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
    queryset = RescoreRun.objects.select_related("ruleset")


class RescoreRunDetailView(generics.RetrieveAPIView):
    permission_classes = [CanEditRules]
    serializer_class = RescoreRunSerializer
    queryset = RescoreRun.objects.select_related("ruleset")
    lookup_url_kwarg = "run_id"
