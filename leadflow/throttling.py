"""Rate limits kept in the cache, in fixed windows, and the client's address they key on.

DRF's own ``SimpleRateThrottle`` stores the time of every request of the window in one
cache value and rewrites it on each request: at an ingest quota of thousands of requests
a minute that is a list of thousands of floats pickled to Redis and back per request. A
fixed window is one atomic ``INCR`` on a key named after the window; its price is that a
client may send up to twice the limit across a window's boundary, which a quota meant
to stop runaway clients can afford.

The counters live in Django's ``default`` cache, so every web process must share it:
Redis in production (``CACHE_URL``, or the broker's Redis; see settings). A per-process
cache (locmem) multiplies each limit by the number of processes.

If the cache is down the limits fail open (with a warning in the log): a Redis outage
must not stop ingestion, as a broker outage does not (README, "When things fail").
Login lockout does not depend on the cache (django-axes keeps its records in the
database).
"""

import logging
import math
import time
from functools import cache as memoize
from typing import Any, cast

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)


def client_address(request: HttpRequest) -> str:
    """The client's IP address: ``REMOTE_ADDR``, or with ``TRUSTED_PROXY_COUNT`` proxies in
    front of the app, the address the outermost trusted proxy saw (that many entries from
    the right of ``X-Forwarded-For``). Entries further left are written by the client and
    prove nothing: trusting them would let a client pick a fresh address per request."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    proxies = settings.TRUSTED_PROXY_COUNT
    if not proxies:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) >= proxies:
        return forwarded[-proxies]
    return forwarded[0] if forwarded else remote


@memoize
def _client_over(pool: Any) -> Any:
    import redis

    return redis.Redis(connection_pool=pool)


def _redis() -> Any | None:
    """The cache's Redis, as one client per process over the cache's own connection pool,
    when the cache is Redis. Django's backend builds a new client (with its table of
    response callbacks) for every call: that cost more than the command's round trip."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    return _client_over(cast(Any, backend._cache)._get_connection_pool(True))


def _redis_window_count(client: Any, cache_key: str, seconds: int, *, add: bool) -> int:
    """``window_count`` on Redis in one round trip: the counter is created with its
    expiry and incremented in one MULTI, so it never outlives its window. Values as
    Django's cache stores integers (plain numbers), so ``cache.get`` reads them too."""
    key = cache.make_and_validate_key(cache_key)
    if not add:
        return int(client.get(key) or 0)
    pipe = client.pipeline(transaction=True)
    pipe.set(key, 0, nx=True, ex=seconds + 1)
    pipe.incr(key)
    return int(pipe.execute()[1])


def window_count(key: str, seconds: int, *, add: bool) -> tuple[int, float]:
    """The number of hits on ``key`` in the current window of ``seconds`` (after counting
    this one if ``add``), and the seconds until the window ends. 0 if the cache is down."""
    now = time.time()
    start = int(now // seconds) * seconds
    wait = start + seconds - now
    cache_key = f"rate:{key}:{start}"
    try:
        if (client := _redis()) is not None:
            return _redis_window_count(client, cache_key, seconds, add=add), wait
        if not add:
            return int(cache.get(cache_key, 0)), wait
        if cache.add(cache_key, 1, timeout=seconds + 1):
            return 1, wait
        try:
            return int(cache.incr(cache_key)), wait
        except ValueError:  # expired between add() and incr()
            cache.set(cache_key, 1, timeout=seconds + 1)
            return 1, wait
    except Exception:  # any cache backend's connection error: fail open, see the module's docstring
        logger.warning("Rate limit %s not checked: the cache is unavailable", key.split(":")[0], exc_info=True)
        return 0, wait


# The value ``window_count_and_value`` and ``cache_int`` give when the cache could not be read.
UNAVAILABLE: Any = object()


def window_count_and_value(key: str, seconds: int, other: str) -> tuple[int, float, Any]:
    """``window_count(key, seconds, add=False)`` and ``cache_int(other)``, in one round
    trip on Redis. On a cache failure the count is 0 (fail open, as ``window_count``) and
    the value ``UNAVAILABLE``."""
    now = time.time()
    start = int(now // seconds) * seconds
    wait = start + seconds - now
    count_key = f"rate:{key}:{start}"
    try:
        if (client := _redis()) is None:
            values = cache.get_many([count_key, other])
            return int(values.get(count_key, 0)), wait, values.get(other)
        count, value = client.mget([cache.make_and_validate_key(count_key), cache.make_and_validate_key(other)])
        return int(count or 0), wait, None if value is None else int(value)
    except Exception:  # any cache backend's connection error: fail open, see the module's docstring
        logger.warning("Rate limit %s not checked: the cache is unavailable", key.split(":")[0], exc_info=True)
        return 0, wait, UNAVAILABLE


def cache_int(key: str) -> Any:
    """The integer the cache holds under ``key`` (Django's Redis cache stores integers as
    plain numbers, read here without a client of Django's per call), None when unset,
    ``UNAVAILABLE`` when the cache is down."""
    try:
        if (client := _redis()) is None:
            return cache.get(key)
        value = client.get(cache.make_and_validate_key(key))
        return None if value is None else int(value)
    except Exception:  # any cache backend's connection error
        logger.warning("Cache value %s not read: the cache is unavailable", key, exc_info=True)
        return UNAVAILABLE


def retry_after(wait: float) -> int:
    """Whole seconds for a Retry-After header: never 0, which would invite an immediate retry."""
    return max(1, math.ceil(wait))


class FixedWindowThrottle(BaseThrottle):
    """A DRF throttle: at most ``rate()[0]`` requests per ``rate()[1]`` seconds for each
    ``key()``; a request without a key, or a limit of 0, is not counted. DRF answers the
    refused request with 429 and ``Retry-After`` (the seconds until the window ends)."""

    _wait: float | None = None

    def rate(self) -> tuple[int, int]:
        raise NotImplementedError

    def key(self, request: Any, view: Any) -> str | None:
        raise NotImplementedError

    def allow_request(self, request: Any, view: Any) -> bool:
        limit, seconds = self.rate()
        key = self.key(request, view)
        if not limit or key is None:
            return True
        count, wait = window_count(key, seconds, add=True)
        if count <= limit:
            return True
        self._wait = wait
        return False

    def wait(self) -> float | None:
        return None if self._wait is None else retry_after(self._wait)
