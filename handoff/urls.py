from django.urls import path

from handoff import api, nurture_api, quality_api, webhook_api

urlpatterns = [
    path("handoffs", api.HandoffListView.as_view(), name="api-handoffs"),
    path("handoffs/claim-next", api.HandoffClaimNextView.as_view(), name="api-handoff-claim-next"),
    path("handoffs/<uuid:handoff_id>", api.HandoffDetailView.as_view(), name="api-handoff-detail"),
    path("handoffs/<uuid:handoff_id>/claim", api.HandoffClaimView.as_view(), name="api-handoff-claim"),
    path("handoffs/<uuid:handoff_id>/release", api.HandoffReleaseView.as_view(), name="api-handoff-release"),
    path("handoffs/<uuid:handoff_id>/accept", api.HandoffAcceptView.as_view(), name="api-handoff-accept"),
    path("handoffs/<uuid:handoff_id>/reject", api.HandoffRejectView.as_view(), name="api-handoff-reject"),
    path("handoffs/<uuid:handoff_id>/reassign", api.HandoffReassignView.as_view(), name="api-handoff-reassign"),
    path("handoff-checklist", api.ChecklistListView.as_view(), name="api-handoff-checklist"),
    path("handoff-checklist/<slug:key>", api.ChecklistItemView.as_view(), name="api-handoff-checklist-item"),
    path("leads/<uuid:lead_id>/handoffs", api.LeadHandoffsView.as_view(), name="api-lead-handoffs"),
    path("stats/handoffs", api.HandoffStatsView.as_view(), name="api-handoff-stats"),
    path("rulesets/<int:version>/quality", quality_api.RuleSetQualityView.as_view(), name="api-ruleset-quality"),
    path("rulesets/<int:version>/backtest", quality_api.RuleSetBacktestView.as_view(), name="api-ruleset-backtest"),
    path("notifications", api.NotificationListView.as_view(), name="api-notifications"),
    path("notifications/unread-count", api.NotificationUnreadCountView.as_view(), name="api-notifications-unread"),
    path("notifications/read-all", api.NotificationReadAllView.as_view(), name="api-notifications-read-all"),
    path("rulesets/<int:version>/suggest", api.RuleSetSuggestView.as_view(), name="api-ruleset-suggest"),
    path("rulesets/<int:version>/suggestion", api.RuleSetSuggestionView.as_view(), name="api-ruleset-suggestion"),
    path("notifications/<uuid:notification_id>/read", api.NotificationReadView.as_view(), name="api-notification-read"),
    path("nurture/segments", nurture_api.NurtureSegmentsView.as_view(), name="api-nurture-segments"),
    path("nurture/attribution", nurture_api.NurtureAttributionView.as_view(), name="api-nurture-attribution"),
    path(
        "nurture/segments/<slug:segment>/push",
        nurture_api.NurtureSegmentPushView.as_view(),
        name="api-nurture-segment-push",
    ),
    path("webhooks", webhook_api.WebhookListView.as_view(), name="api-webhooks"),
    path("webhooks/<uuid:subscription_id>", webhook_api.WebhookDetailView.as_view(), name="api-webhook"),
    path(
        "webhooks/<uuid:subscription_id>/disable", webhook_api.WebhookDisableView.as_view(), name="api-webhook-disable"
    ),
    path("webhooks/<uuid:subscription_id>/enable", webhook_api.WebhookEnableView.as_view(), name="api-webhook-enable"),
    path(
        "webhooks/<uuid:subscription_id>/deliveries",
        webhook_api.WebhookDeliveryListView.as_view(),
        name="api-webhook-deliveries",
    ),
    path(
        "webhooks/<uuid:subscription_id>/deliveries/<int:delivery_id>/replay",
        webhook_api.WebhookDeliveryReplayView.as_view(),
        name="api-webhook-delivery-replay",
    ),
]
