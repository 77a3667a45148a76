"""``/api/segment/``: the host a Segment or RudderStack SDK is pointed at
(``https://<leadflow>/api/segment``; analytics.js's ``apiHost`` is ``<leadflow>/api/segment/v1``)."""

from django.urls import path

from leadflow.leads import segment_api

urlpatterns = [
    *(path(f"v1/{kind}", view, name=f"api-segment-{kind}") for kind, view in segment_api.message_views().items()),
    # analytics.js (analytics-next): /v1/t is /v1/track, /v1/b is /v1/batch.
    *(path(f"v1/{short}", view, name=f"api-segment-{short}") for short, view in segment_api.short_views().items()),
]
