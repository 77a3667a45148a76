"""Segment-compatible ingest endpoints (``/api/segment/v1/…``): what a Segment or
RudderStack SDK posts, with the source's ingest key as its write key. The translation
is ``leadflow.leads.segment``; the answer is Segment's, ``{"success": true}``, also when
messages were dropped (SDKs ignore bodies: the drops page lists them).

Browser SDKs post from the website's origin: analytics.js (analytics-next) to the short
paths ``/t``, ``/p``, ``/i``, ``/g``, ``/a``, ``/s`` and ``/b`` (batch), as ``text/plain``
with the write key in the body as well as in ``Authorization``; RudderStack's JavaScript
SDK to the long ones. Cross-origin requests are allowed on ``/api/segment/`` only
(``SEGMENT_ALLOWED_ORIGINS``, django-cors-headers)."""

import base64
import time
import weakref
import zlib
from collections.abc import Sequence
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import authentication, exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from leadflow import metrics
from leadflow.leads.api import PayloadTooLarge, ingest_source, parse_json
from leadflow.leads.auth import BearerAuthentication
from leadflow.leads.keys import INGEST_KIND, split_key
from leadflow.leads.permissions import HasIngestKey
from leadflow.leads.segment import MESSAGE_TYPES, segment_ingest
from leadflow.leads.throttles import auth_failure_record

# The body, read once: by the authentication when the write key is in it, then by the view.
_bodies: "weakref.WeakKeyDictionary[HttpRequest, Any]" = weakref.WeakKeyDictionary()


def segment_body(request: Request) -> Any:
    """The JSON body, gunzipped when ``Content-Encoding: gzip``; 413 past
    ``INGEST_MAX_BODY_BYTES`` (compressed or not), 400 for a body that is not gzip or JSON.
    Whatever its ``Content-Type``: browsers send ``text/plain``."""
    if request._request not in _bodies:
        _bodies[request._request] = _body_read(request)
    return _bodies[request._request]


def _body_read(request: Request) -> Any:
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


class SegmentWriteKeyAuthentication(BearerAuthentication):
    """A Segment or RudderStack SDK's ``Authorization: Basic base64(<write key>:)``: the
    source's ingest key as the user name, the password empty. Bearer works as well
    (``BearerAuthentication``, which this extends), and so does the body's ``writeKey``
    when there is no ``Authorization`` header (analytics.js before analytics-next, and
    the SDKs that put the key only in the body)."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return self._authenticate_body_key(request)
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "basic":
            return super().authenticate(request)
        generation = self.failures_check(request)
        try:
            try:
                user, _, _password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise exceptions.AuthenticationFailed(
                    "Malformed Basic credentials: send the ingest key as the user name and an empty password."
                ) from None
            return self._authenticate_write_key(user.strip(), generation)
        except exceptions.AuthenticationFailed:
            auth_failure_record(request)
            raise

    def _authenticate_body_key(self, request: Request) -> tuple[Any, Any]:
        """The body's ``writeKey``. Without credentials the body is read only for an address
        that has not failed too often, and a body that yields no key counts as a failure:
        nobody can have bodies parsed without limit by not authenticating."""
        generation = self.failures_check(request)
        try:
            try:
                body = segment_body(request)
            except exceptions.APIException:  # not JSON, not gzip, too large: no key to read
                auth_failure_record(request)
                raise
            first = body[0] if isinstance(body, list) and body else body
            write_key = first.get("writeKey") if isinstance(first, dict) else None
            if write_key is None:
                raise exceptions.AuthenticationFailed(
                    "No write key: send the source's ingest key as the Basic user name (what the SDKs do) "
                    "or as writeKey in the body."
                )
            if not isinstance(write_key, str):
                raise exceptions.AuthenticationFailed("writeKey must be a string: the source's ingest key (lfi_…).")
            return self._authenticate_write_key(write_key.strip(), generation)
        except exceptions.AuthenticationFailed:
            auth_failure_record(request)
            raise

    def _authenticate_write_key(self, write_key: str, generation: int | None) -> tuple[Any, Any]:
        parsed = split_key(write_key)
        if parsed is None or parsed[0] != INGEST_KIND:
            raise exceptions.AuthenticationFailed(
                "The write key must be an ingest key (lfi_…): create one with manage.py create_ingest_key."
            )
        return self._authenticate_key(write_key, generation)

    def authenticate_header(self, request: Request) -> str:
        return 'Basic realm="segment"'


class SegmentWriteKeyScheme(OpenApiAuthenticationExtension):
    """Documents the Segment write key (Basic) in the OpenAPI schema."""

    target_class = "leadflow.leads.segment_api.SegmentWriteKeyAuthentication"
    name = "segmentWriteKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "basic",
            "description": "Segment write key: an ingest key (lfi_…) as the user name, empty password "
            "('Authorization: Bearer lfi_…' works as well, and so does the body's writeKey when no "
            "Authorization header is sent).",
        }


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
        if isinstance(body, list):  # analytics-next's first batching releases: the messages alone
            body = {"batch": body}
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
    # A browser SDK's messages carry the write key: it is not kept (nor listed with a drop).
    messages = [_without_write_key(m) if isinstance(m, dict) and "writeKey" in m else m for m in messages]
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


def _without_write_key(message: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in message.items() if key != "writeKey"}


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


@cache  # one class per path: the short paths subclass the very views of the long ones
def _view_classes() -> dict[str, type[APIView]]:
    return {"batch": SegmentBatchView, **{kind: _message_view(kind) for kind in MESSAGE_TYPES}}


def message_views() -> dict[str, Any]:
    """``/batch``, ``/track``, ``/identify``, ``/page``, ``/screen``, ``/group``, ``/alias``: their views."""
    return {kind: view.as_view() for kind, view in _view_classes().items()}


def short_views() -> dict[str, Any]:
    """analytics.js's paths: a message type's first letter (``t`` is ``track``) and ``b`` the
    batch, each the same view as the long path but left out of the schema (``schema = None``)."""
    classes = _view_classes()
    shorts = {kind[0]: view for kind, view in classes.items()}
    if len(shorts) != len(classes):
        raise ImproperlyConfigured("Two Segment paths share a first letter: analytics.js could not tell them apart.")
    return {short: _unlisted(view).as_view() for short, view in shorts.items()}


def _unlisted(view: type[APIView]) -> type[APIView]:
    """The view, left out of the OpenAPI schema (DRF's endpoint enumeration skips ``schema = None``)."""
    return type(f"Short{view.__name__}", (view,), {"schema": None})
