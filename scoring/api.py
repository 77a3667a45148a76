"""Scoring API: explain a score, change a stage by hand, rulesets and their rules,
preview (what-if), publish, and rescore progress."""

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from leadflow.leads import selectors as lead_selectors
from leadflow.leads.lifecycle import StageChangeError, lead_stage_change
from leadflow.leads.models import Lead, Stage, StageChange
from leadflow.pagination import PageNumberPagination
from scoring import presenters, selectors, services
from scoring.models import RULE_FIELDS, RULESET_FIELDS, RescoreRun, Rule, RuleSet
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
        changes = lead_selectors.lead_stage_history(lead=lead, limit=None)
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


class RuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Rule
        fields = ["id", *RULE_FIELDS]
        read_only_fields = ["id"]
        extra_kwargs = {"position": {"required": False}, "value": {"required": False}}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        services.rule_validate(**{**current_values(self.instance or Rule(), RULE_FIELDS), **attrs})
        return attrs


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

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        services.ruleset_validate(**{**current_values(self.instance or RuleSet(), RULESET_FIELDS), **attrs})
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
            ruleset = services.ruleset_update(
                ruleset=ruleset, changes=services.RuleSetChanges(**serializer.validated_data)
            )
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
    queryset = RescoreRun.objects.select_related("ruleset")


class RescoreRunDetailView(generics.RetrieveAPIView):
    permission_classes = [CanEditRules]
    serializer_class = RescoreRunSerializer
    queryset = RescoreRun.objects.select_related("ruleset")
    lookup_url_kwarg = "run_id"
