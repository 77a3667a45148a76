"""Segment-compatible ingest endpoints (``/api/segment/v1/…``): what a Segment or
RudderStack SDK posts, with the source's ingest key as its write key. The translation
is ``leadflow.leads.segment``; the answer is Segment's, ``{"success": true}``, also when
messages were dropped (SDKs ignore bodies: the drops page lists them)."""

import time
import zlib
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from leadflow import metrics
from leadflow.leads.api import PayloadTooLarge, ingest_source, parse_json
from leadflow.leads.auth import SegmentWriteKeyAuthentication
from leadflow.leads.permissions import HasIngestKey
from leadflow.leads.segment import MESSAGE_TYPES, segment_ingest


def segment_body(request: Request) -> Any:
    """The JSON body, gunzipped when ``Content-Encoding: gzip``; 413 past
    ``INGEST_MAX_BODY_BYTES`` (compressed or not), 400 for a body that is not gzip or JSON."""
    limit = settings.INGEST_MAX_BODY_BYTES
    raw = request._request.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"Body exceeds the limit of {limit} bytes: flush smaller batches.")
    if request.headers.get("Content-Encoding", "").strip().lower() == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error:
            raise exceptions.ParseError("Content-Encoding is gzip but the body is not gzip data.") from None
        if len(raw) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"Body exceeds the limit of {limit} bytes once unzipped: flush smaller batches.")
    if not raw.strip():
        raise exceptions.ParseError("Empty body: send a JSON object.")
    return parse_json(raw)


SUCCESS = inline_serializer("SegmentSuccess", {"success": serializers.BooleanField()})
_ERRORS = {
    400: OpenApiResponse(description="Malformed JSON or gzip, or no batch"),
    401: OpenApiResponse(description="Missing or invalid write key"),
    413: OpenApiResponse(description="Body or batch too large"),
}


class _SegmentView(APIView):
    authentication_classes = [SegmentWriteKeyAuthentication]
    permission_classes = [HasIngestKey]
    parser_classes: list[Any] = []


class SegmentBatchView(_SegmentView):
    @extend_schema(
        operation_id="segment_batch",
        summary="Segment-compatible batch: {batch: [...], sentAt}",
        request=inline_serializer(
            "SegmentBatch",
            {
                "batch": serializers.ListField(child=serializers.DictField(), max_length=settings.INGEST_MAX_BATCH),
                "sentAt": serializers.DateTimeField(required=False),
            },
        ),
        responses={200: SUCCESS, **_ERRORS},
        tags=["segment"],
    )
    def post(self, request: Request) -> Response:
        body = segment_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            raise exceptions.ValidationError({"batch": ['Send {"batch": [messages…]}.']})
        batch = body["batch"]
        if len(batch) > settings.INGEST_MAX_BATCH:
            raise PayloadTooLarge(f"{len(batch)} messages in one batch; the limit is {settings.INGEST_MAX_BATCH}.")
        return _ingested(request, batch, body.get("sentAt"))


def _ingested(request: Request, messages: Sequence[Any], sent_at: Any) -> Response:
    """Store the messages, count and log the batch as every ingest endpoint does (its
    accepted messages are the events stored, lead upserts and aliases applied; the
    dropped ones are its rejected), and answer as Segment does."""
    source = ingest_source(request)
    started = time.monotonic()
    result = segment_ingest(source=source, messages=messages, sent_at=sent_at)
    metrics.ingest_batch_done(
        source=source.slug,
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=len(result.dropped),
        seconds=time.monotonic() - started,
        accepted_by_kind=result.accepted_by_kind,
    )
    return Response({"success": True})


def _message_view(kind: str) -> type[APIView]:
    """The view of ``/api/segment/v1/<kind>``: one message of that type (each its own
    operation in the schema)."""

    class SegmentMessageView(_SegmentView):
        @extend_schema(
            operation_id=f"segment_{kind}",
            summary=f"Segment-compatible {kind} (one message)",
            request=inline_serializer(f"Segment{kind.title()}Message", {"messageId": serializers.CharField()}),
            responses={200: SUCCESS, **_ERRORS},
            tags=["segment"],
        )
        def post(self, request: Request) -> Response:
            body = segment_body(request)
            if not isinstance(body, dict):
                raise exceptions.ValidationError({"non_field_errors": ["Send one message as a JSON object."]})
            return _ingested(request, [{**body, "type": kind}], body.get("sentAt"))

    SegmentMessageView.__name__ = SegmentMessageView.__qualname__ = f"Segment{kind.title()}View"
    return SegmentMessageView


def message_views() -> dict[str, Any]:
    """``/track``, ``/identify``, ``/page``, ``/screen``, ``/group``, ``/alias``: their views by type."""
    return {kind: _message_view(kind).as_view() for kind in MESSAGE_TYPES}
