"""``/api/segment/``: the host a Segment or RudderStack SDK is pointed at."""

from django.urls import path

from leadflow.leads import segment_api

urlpatterns = [
    path("v1/batch", segment_api.SegmentBatchView.as_view(), name="api-segment-batch"),
    *(path(f"v1/{kind}", view, name=f"api-segment-{kind}") for kind, view in segment_api.message_views().items()),
]
