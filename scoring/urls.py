from django.urls import path

from scoring import api

urlpatterns = [
    path("leads/<uuid:lead_id>/score", api.LeadScoreView.as_view(), name="api-lead-score"),
    path("leads/<uuid:lead_id>/stage", api.LeadStageView.as_view(), name="api-lead-stage"),
    path("models", api.ScoringModelListView.as_view(), name="api-scoring-models"),
    path("models/<slug:slug>", api.ScoringModelDetailView.as_view(), name="api-scoring-model"),
    path("rulesets", api.RuleSetListView.as_view(), name="api-rulesets"),
    path("rulesets/<int:version>", api.RuleSetDetailView.as_view(), name="api-ruleset"),
    path("rulesets/<int:version>/clone", api.RuleSetCloneView.as_view(), name="api-ruleset-clone"),
    path("rulesets/<int:version>/preview", api.RuleSetPreviewView.as_view(), name="api-ruleset-preview"),
    path("rulesets/<int:version>/publish", api.RuleSetPublishView.as_view(), name="api-ruleset-publish"),
    path("rulesets/<int:version>/rules", api.RuleListView.as_view(), name="api-rules"),
    path("rulesets/<int:version>/rules/<int:rule_id>", api.RuleDetailView.as_view(), name="api-rule"),
    path("accounts", api.AccountListView.as_view(), name="api-accounts"),
    path("accounts/<int:account_id>", api.AccountDetailView.as_view(), name="api-account"),
    path("rescore-runs", api.RescoreRunListView.as_view(), name="api-rescore-runs"),
    path("rescore-runs/<int:run_id>", api.RescoreRunDetailView.as_view(), name="api-rescore-run"),
]
