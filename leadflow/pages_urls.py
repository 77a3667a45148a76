"""URLs of the web pages (the API lives under /api/v1/)."""

from django.urls import path

from leadflow.leads import views as lead_views
from scoring import views as scoring_views

urlpatterns = [
    path("", lead_views.dashboard, name="dashboard"),
    path("leads/", lead_views.lead_list, name="lead-list"),
    path("leads/export.csv", lead_views.lead_export, name="lead-export"),
    path("leads/<uuid:lead_id>/", lead_views.lead_detail, name="lead-detail"),
    path("leads/<uuid:lead_id>/stage", lead_views.lead_stage_change, name="lead-stage-change"),
    path("rules/", scoring_views.ruleset_list, name="ruleset-list"),
    path("rules/runs/<int:run_id>/", scoring_views.rescore_run, name="rescore-run"),
    path("rules/<int:version>/", scoring_views.ruleset_detail, name="ruleset-detail"),
    path("rules/<int:version>/edit", scoring_views.ruleset_edit, name="ruleset-edit"),
    path("rules/<int:version>/clone", scoring_views.ruleset_clone, name="ruleset-clone"),
    path("rules/<int:version>/delete", scoring_views.ruleset_delete, name="ruleset-delete"),
    path("rules/<int:version>/preview", scoring_views.ruleset_preview, name="ruleset-preview"),
    path("rules/<int:version>/publish", scoring_views.ruleset_publish, name="ruleset-publish"),
    path("rules/<int:version>/rules/new", scoring_views.rule_create, name="rule-create"),
    path("rules/<int:version>/rules/<int:rule_id>/edit", scoring_views.rule_edit, name="rule-edit"),
    path("rules/<int:version>/rules/<int:rule_id>/delete", scoring_views.rule_delete, name="rule-delete"),
]
