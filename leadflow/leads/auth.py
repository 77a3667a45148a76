"""API authentication: ``Authorization: Bearer <key>`` with an ingest key or a personal token.

Ingest keys verified lately are kept by each process (``VerifiedKeys``): verifying one
is a query and its ORM compilation, about a quarter of a small ingest request's time
(bench/RESULTS.md, "The ingest key, verified once"). An entry holds for
``VERIFIED_KEY_SECONDS`` at most, and only while the *generation of keys* it was
verified under is current: every change to an ingest key or a source (created, revoked,
deleted, its Segment mapping edited) sets a new generation in the cache once it commits
(``ingest_keys_changed``), and each request reads the generation in the round trip that
checks its address's failed authentications. So a revoked key is refused from the next
request on, in every process sharing the cache. When the cache is down, keys are
verified in the database, as before.
"""

import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from leadflow.leads.keys import INGEST_KIND, PERSONAL_KIND, hash_key, key_matches, split_key
from leadflow.leads.models import ApiToken, IngestKey
from leadflow.leads.throttles import auth_failure_record, auth_failures_check
from leadflow.throttling import UNAVAILABLE

logger = logging.getLogger(__name__)

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
    key.last_used_at = now  # a kept key (VerifiedKeys) is not written again for a minute


# The cache key of the generation of ingest keys (an integer; unset counts as 0).
KEYS_GENERATION = "ingest-keys:generation"
VERIFIED_KEY_SECONDS = 60.0
VERIFIED_KEYS_KEPT = 256  # per process: past it, the kept keys are dropped and verified again


@dataclass(frozen=True)
class _Verified:
    ingest_key: IngestKey
    generation: int
    until: float  # time.monotonic()


class VerifiedKeys:
    """This process's ingest keys verified lately, by the SHA-256 of the key (the module's
    docstring). Thread-safe: ``runserver`` serves requests on threads."""

    def __init__(self) -> None:
        self._entries: dict[str, _Verified] = {}
        self._lock = threading.Lock()

    def get(self, digest: str, generation: int) -> IngestKey | None:
        entry = self._entries.get(digest)
        if entry is None or entry.generation != generation or entry.until < time.monotonic():
            return None
        return entry.ingest_key

    def keep(self, digest: str, ingest_key: IngestKey, generation: int) -> None:
        with self._lock:
            if len(self._entries) >= VERIFIED_KEYS_KEPT:
                self._entries.clear()
            self._entries[digest] = _Verified(ingest_key, generation, time.monotonic() + VERIFIED_KEY_SECONDS)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


verified_keys = VerifiedKeys()


def ingest_keys_changed() -> None:
    """An ingest key or a source changed: once the transaction commits, this process
    forgets its verified keys and the cache gets a new generation, so that every other
    process does at its next request (connected to their saves and deletes in
    ``leadflow.leads.receivers``; called by writers that ``update()``)."""
    transaction.on_commit(_generation_next, robust=True)


def _generation_next() -> None:
    verified_keys.clear()
    try:
        cache.set(KEYS_GENERATION, secrets.randbits(62) + 1, timeout=None)
    except Exception:  # the cache is down: its processes verify in the database meanwhile
        logger.warning(
            "The ingest keys' generation was not renewed (the cache is unavailable): other processes may accept "
            "a changed key for up to %.0f s more",
            VERIFIED_KEY_SECONDS,
            exc_info=True,
        )


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
        generation = self.failures_check(request)
        try:
            return self._authenticate_key(key.strip(), generation)
        except exceptions.AuthenticationFailed:
            auth_failure_record(request)
            raise

    def failures_check(self, request: Request) -> int | None:
        """Refuse (429) an address that failed to authenticate too often; returns the
        generation of ingest keys, read in the same round trip (None: the cache is down)."""
        value = auth_failures_check(request, also=KEYS_GENERATION)
        return None if value is UNAVAILABLE else int(value or 0)

    def _authenticate_key(self, key: str, generation: int | None) -> tuple[Any, Any]:
        """``generation``: of the ingest keys, read with the failed-authentication check
        (None: the cache is down, verify in the database)."""
        parsed = split_key(key)
        if parsed is None:
            raise exceptions.AuthenticationFailed("Malformed key: expected 'Bearer lfi_…' or 'Bearer lfp_…'.")
        kind, prefix = parsed
        if kind == INGEST_KIND:
            return AnonymousUser(), _ingest_key_verified(key, prefix, generation)
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


def _ingest_key_verified(key: str, prefix: str, generation: int | None) -> IngestKey:
    digest = hash_key(key)
    if generation is not None and (kept := verified_keys.get(digest, generation)) is not None:
        _touch(kept)
        return kept
    ingest_key = IngestKey.objects.select_related("source").filter(prefix=prefix).first()
    if ingest_key is None or ingest_key.revoked_at or not hmac.compare_digest(digest, ingest_key.key_hash):
        raise exceptions.AuthenticationFailed("Invalid or revoked ingest key.")
    _touch(ingest_key)
    if generation is not None:
        verified_keys.keep(digest, ingest_key, generation)
    return ingest_key


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
