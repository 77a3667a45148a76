"""Project-wide middleware: the Content-Security-Policy of every response, and the
JSON answer to an API request whose body is too large, the request id."""

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "style-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """A Content-Security-Policy on every response.

    The pages are built to need nothing inline: styles come from ``static/css``,
    scripts from ``static/js`` and charts are SVG styled by class names, so the
    policy can forbid inline script and style outright. A view that needs another
    policy sets its own header; this middleware leaves it alone."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response


API_PREFIX = "/api/"


class ApiBodyLimitMiddleware:
    """A JSON 413 for an API request whose body is larger than
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``, before anything reads it.

    Left to Django, such a body fails only when a parser reads it, as a
    SuspiciousOperation: an HTML 400 page that tells an API client neither what
    went wrong nor what to do. Django reads a request body only up to its
    Content-Length (none: no body), so the declared length is the whole story.
    Pages keep Django's behaviour."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and request.path_info.startswith(API_PREFIX):
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0  # as Django reads it: no body
            if declared > limit:
                detail = (
                    f"The request body is {declared} bytes; the API takes at most {limit} bytes. "
                    "Send a smaller body: split a batch of events into several requests."
                )
                return JsonResponse({"detail": detail}, status=413)
        return self.get_response(request)


REQUEST_ID_HEADER = "X-Request-ID"
# What an upstream proxy or client may send as a request id: short, no spaces, no quotes,
# nothing a log line or a header could be broken with.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class RequestIdMiddleware:
    """Every request has an id: the ``X-Request-ID`` it came with (from a proxy or a
    client, when it looks like one), else a new UUID. It is echoed in the response's
    ``X-Request-ID``; django-structlog's middleware, next, binds it to the request's log
    lines and to the tasks it enqueues (``leadflow.logconfig``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = given if VALID_REQUEST_ID.fullmatch(given) else str(uuid.uuid4())
        request.META["HTTP_X_REQUEST_ID"] = request_id
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response
