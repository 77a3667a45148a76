from django.urls import path

from leadflow.leads import api, privacy_api

urlpatterns = [
    path("events", api.EventIngestView.as_view(), name="api-events"),
    path("outcomes", api.OutcomeIngestView.as_view(), name="api-outcomes"),
    path("leads", api.LeadCollectionView.as_view(), name="api-leads"),
    path("leads/<uuid:lead_id>", api.LeadDetailView.as_view(), name="api-lead-detail"),
    path("leads/<uuid:lead_id>/merge", api.LeadMergeView.as_view(), name="api-lead-merge"),
    path("leads/<uuid:lead_id>/outcomes", api.LeadOutcomesView.as_view(), name="api-lead-outcomes"),
    path("leads/<uuid:lead_id>/export", privacy_api.LeadExportView.as_view(), name="api-lead-export"),
    path("leads/<uuid:lead_id>/erase", privacy_api.LeadEraseView.as_view(), name="api-lead-erase"),
    path("privacy/export", privacy_api.PersonExportView.as_view(), name="api-privacy-export"),
    path("privacy/erase", privacy_api.PersonEraseView.as_view(), name="api-privacy-erase"),
    path("privacy/suppressions", privacy_api.SuppressionView.as_view(), name="api-privacy-suppression"),
]
