"""URLs of the web pages (the API lives under /api/v1/)."""

from django.urls import path

from handoff import nurture_views, webhook_views
from handoff import views as handoff_views
from leadflow import views as project_views
from leadflow.leads import import_views
from leadflow.leads import views as lead_views
from scoring import views as scoring_views

urlpatterns = [
    path("", project_views.dashboard, name="dashboard"),
    path("leads/", lead_views.lead_list, name="lead-list"),
    path("leads/export.csv", lead_views.lead_export, name="lead-export"),
    path("leads/bulk", lead_views.lead_bulk, name="lead-bulk"),
    path("leads/views/new", lead_views.saved_view_create, name="saved-view-create"),
    path("leads/views/<int:view_id>/delete", lead_views.saved_view_delete, name="saved-view-delete"),
    path("leads/<uuid:lead_id>/", project_views.lead_detail, name="lead-detail"),
    path("leads/<uuid:lead_id>/stage", project_views.lead_stage_change, name="lead-stage-change"),
    path("leads/<uuid:lead_id>/export.json", lead_views.lead_privacy_export, name="lead-privacy-export"),
    path("leads/<uuid:lead_id>/erase", lead_views.lead_erase, name="lead-erase"),
    path("imports/", import_views.import_list, name="import-list"),
    path("imports/new", import_views.import_new, name="import-new"),
    path("imports/<uuid:job_id>/", import_views.import_detail, name="import-detail"),
    path("imports/<uuid:job_id>/map", import_views.import_map, name="import-map"),
    path("imports/<uuid:job_id>/progress.json", import_views.import_progress, name="import-progress"),
    path("imports/<uuid:job_id>/rejected.csv", import_views.import_rejected_csv, name="import-rejected-csv"),
    path("leads/<uuid:lead_id>/merge", lead_views.lead_merge, name="lead-merge"),
    path("segment/drops/", lead_views.segment_drops, name="segment-drops"),
    path("segment/sources/<slug:source_slug>/event-names", lead_views.segment_event_types, name="segment-event-types"),
    path("accounts/", project_views.account_list, name="account-list"),
    path("accounts/<int:account_id>/", project_views.account_detail, name="account-detail"),
    path("queue/", handoff_views.sales_queue, name="sales-queue"),
    path("queue/claim-next", handoff_views.handoff_claim_next, name="handoff-claim-next"),
    path("queue/<uuid:handoff_id>/", handoff_views.handoff_detail, name="handoff-detail"),
    path("queue/<uuid:handoff_id>/claim", handoff_views.handoff_claim, name="handoff-claim"),
    path("queue/<uuid:handoff_id>/release", handoff_views.handoff_release, name="handoff-release"),
    path("queue/<uuid:handoff_id>/accept", handoff_views.handoff_accept, name="handoff-accept"),
    path("queue/<uuid:handoff_id>/reject", handoff_views.handoff_reject, name="handoff-reject"),
    path("handoffs/", handoff_views.handoff_overview, name="handoff-overview"),
    path("handoffs/checklist/", handoff_views.checklist, name="handoff-checklist"),
    path("handoffs/checklist/<slug:key>", handoff_views.checklist_item, name="handoff-checklist-item"),
    path(
        "handoffs/<uuid:handoff_id>/reassign", handoff_views.handoff_overview_reassign, name="handoff-overview-reassign"
    ),
    path("handoffs/<uuid:handoff_id>/release", handoff_views.handoff_overview_release, name="handoff-overview-release"),
    path("notifications/", handoff_views.notification_list, name="notification-list"),
    path("notifications/read-all", handoff_views.notification_read_all, name="notification-read-all"),
    path("notifications/<uuid:notification_id>/read", handoff_views.notification_read, name="notification-read"),
    path("nurture/", nurture_views.nurture_overview, name="nurture"),
    path("nurture/<slug:segment>/", nurture_views.nurture_segment, name="nurture-segment"),
    path("nurture/<slug:segment>/export.csv", nurture_views.nurture_segment_export, name="nurture-segment-export"),
    path("nurture/<slug:segment>/push", nurture_views.nurture_segment_push_view, name="nurture-segment-push"),
    path("webhooks/", webhook_views.webhook_list, name="webhook-list"),
    path("webhooks/<uuid:subscription_id>/", webhook_views.webhook_detail, name="webhook-detail"),
    path("webhooks/<uuid:subscription_id>/disable", webhook_views.webhook_disable, name="webhook-disable"),
    path("webhooks/<uuid:subscription_id>/enable", webhook_views.webhook_enable, name="webhook-enable"),
    path("webhooks/<uuid:subscription_id>/secret", webhook_views.webhook_rotate_secret, name="webhook-rotate-secret"),
    path("webhooks/<uuid:subscription_id>/deliveries/", webhook_views.webhook_deliveries, name="webhook-deliveries"),
    path(
        "webhooks/<uuid:subscription_id>/deliveries/<int:delivery_id>/replay",
        webhook_views.webhook_delivery_replay,
        name="webhook-delivery-replay",
    ),
    path("rules/", scoring_views.ruleset_list, name="ruleset-list"),
    path("rules/runs/<int:run_id>/", scoring_views.rescore_run, name="rescore-run"),
    path("rules/models/new", scoring_views.scoring_model_create, name="scoring-model-create"),
    path("rules/models/<slug:slug>/new-draft", scoring_views.ruleset_create, name="ruleset-create"),
    path("rules/<int:version>/", scoring_views.ruleset_detail, name="ruleset-detail"),
    path("rules/<int:version>/edit", scoring_views.ruleset_edit, name="ruleset-edit"),
    path("rules/<int:version>/clone", scoring_views.ruleset_clone, name="ruleset-clone"),
    path("rules/<int:version>/delete", scoring_views.ruleset_delete, name="ruleset-delete"),
    path("rules/<int:version>/preview", scoring_views.ruleset_preview, name="ruleset-preview"),
    path("rules/<int:version>/suggest", handoff_views.ruleset_suggest, name="ruleset-suggest"),
    path("rules/<int:version>/publish", scoring_views.ruleset_publish, name="ruleset-publish"),
    path("rules/<int:version>/quality/", handoff_views.ruleset_quality, name="ruleset-quality"),
    path("rules/<int:version>/backtest", handoff_views.ruleset_backtest, name="ruleset-backtest"),
    path("rules/<int:version>/rules/new", scoring_views.rule_create, name="rule-create"),
    path("rules/<int:version>/rules/<int:rule_id>/edit", scoring_views.rule_edit, name="rule-edit"),
    path("rules/<int:version>/rules/<int:rule_id>/delete", scoring_views.rule_delete, name="rule-delete"),
]
