"""API authentication: ``Authorization: Bearer <key>`` with an ingest key or a personal token."""

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from leadflow.leads.keys import INGEST_KIND, PERSONAL_KIND, key_matches, split_key
from leadflow.leads.models import ApiToken, IngestKey
from leadflow.leads.throttles import auth_failure_record, auth_failures_check

# Recording every use would turn each request into a write on the key row.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _touch(key: IngestKey | ApiToken) -> None:
    """Record the key's use at most once per ``LAST_USED_RESOLUTION``. The key row was
    just read, so a recent ``last_used_at`` is seen here and costs no statement (it was
    an UPDATE per request: bench/RESULTS.md, "Claims"); the UPDATE keeps its condition
    for two requests that both saw an old value."""
    now = timezone.now()
    if key.last_used_at is not None and key.last_used_at > now - LAST_USED_RESOLUTION:
        return
    type(key).objects.filter(pk=key.pk).exclude(last_used_at__gt=now - LAST_USED_RESOLUTION).update(last_used_at=now)


class BearerAuthentication(authentication.BaseAuthentication):
    """Ingest keys authenticate a source (``request.auth`` is the IngestKey, no user);
    personal tokens authenticate a person. An address that fails too often is refused
    for a while (``leadflow.leads.throttles``)."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        auth_failures_check(request)
        try:
            return self._authenticate_key(key.strip())
        except exceptions.AuthenticationFailed:
            auth_failure_record(request)
            raise

    def _authenticate_key(self, key: str) -> tuple[Any, Any]:
        parsed = split_key(key)
        if parsed is None:
            raise exceptions.AuthenticationFailed("Malformed key: expected 'Bearer lfi_…' or 'Bearer lfp_…'.")
        kind, prefix = parsed
        if kind == INGEST_KIND:
            ingest_key = IngestKey.objects.select_related("source").filter(prefix=prefix).first()
            if ingest_key is None or ingest_key.revoked_at or not key_matches(key, ingest_key.key_hash):
                raise exceptions.AuthenticationFailed("Invalid or revoked ingest key.")
            _touch(ingest_key)
            return AnonymousUser(), ingest_key
        if kind == PERSONAL_KIND:
            token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
            if (
                token is None
                or token.revoked_at
                or (token.expires_at and token.expires_at <= timezone.now())
                or not key_matches(key, token.key_hash)
                or not token.user.is_active
            ):
                raise exceptions.AuthenticationFailed("Invalid, expired or revoked API token.")
            _touch(token)
            return token.user, token
        raise exceptions.AuthenticationFailed("Unknown key type: expected 'lfi_…' or 'lfp_…'.")

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents ingest keys and personal tokens in the OpenAPI schema."""

    target_class = "leadflow.leads.auth.BearerAuthentication"
    name = "bearerKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An ingest key (lfi_…) for POST /events and /leads, or a personal token (lfp_…).",
        }
