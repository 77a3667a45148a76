"""The API's rate limits on keys: a quota per ingest key, and a limit on failed
authentications per client address (a script guessing keys or tokens). Counted in the
cache, in fixed windows (``leadflow.throttling``); both answer 429 with Retry-After."""

from typing import Any

from django.conf import settings
from rest_framework import exceptions

from leadflow.leads.models import IngestKey
from leadflow.throttling import (
    FixedWindowThrottle,
    cache_int,
    client_address,
    retry_after,
    window_count,
    window_count_and_value,
)


class IngestKeyThrottle(FixedWindowThrottle):
    """At most ``INGEST_RATE_LIMIT`` requests per ``INGEST_RATE_WINDOW_SECONDS`` for each
    ingest key, whatever the endpoint; requests of people (sessions, personal tokens) are
    not counted. A default DRF throttle, so every view applies it."""

    def rate(self) -> tuple[int, int]:
        return settings.INGEST_RATE_LIMIT, settings.INGEST_RATE_WINDOW_SECONDS

    def key(self, request: Any, view: Any) -> str | None:
        auth = getattr(request, "auth", None)
        return f"ingest-key:{auth.pk}" if isinstance(auth, IngestKey) else None


def _failures_key(request: Any) -> str:
    return f"api-auth-failures:{client_address(request)}"


def auth_failures_check(request: Any, *, also: str) -> Any:
    """Refuse (429) any key or token from an address that failed to authenticate
    ``API_AUTH_FAILURE_LIMIT`` times in the current window: even a right one, or the
    limit would tell a guesser when they hit. Returns the cache's integer under ``also``,
    read in the same round trip (``leadflow.throttling.cache_int``)."""
    limit = settings.API_AUTH_FAILURE_LIMIT
    if not limit:
        return cache_int(also)
    failures, wait, value = window_count_and_value(
        _failures_key(request), settings.API_AUTH_FAILURE_WINDOW_SECONDS, also
    )
    if failures >= limit:
        # DRF adds "Expected available in N seconds." to the detail, and sets Retry-After.
        raise exceptions.Throttled(
            wait=retry_after(wait),
            detail=(
                "Too many failed authentications from your address: wait, then retry with a valid key or token "
                "(check it is not revoked or expired)."
            ),
        )
    return value


def auth_failure_record(request: Any) -> None:
    if settings.API_AUTH_FAILURE_LIMIT:
        window_count(_failures_key(request), settings.API_AUTH_FAILURE_WINDOW_SECONDS, add=True)
