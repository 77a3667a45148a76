from django.urls import path

from leadflow.leads import api

urlpatterns = [
    path("events", api.EventIngestView.as_view(), name="api-events"),
    path("leads", api.LeadCollectionView.as_view(), name="api-leads"),
    path("leads/<uuid:lead_id>", api.LeadDetailView.as_view(), name="api-lead-detail"),
]
