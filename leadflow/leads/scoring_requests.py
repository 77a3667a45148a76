"""How writes that flag leads ask for their scoring: a fast lane for hand-raises, one
coalesced pass for everything else.

Every write that may change a score flags the lead (``needs_rescore``) in its own
transaction; the flag is the truth, and the sweep scores any lead left flagged. After
the commit, this module tells the workers, through the broker's Redis:

- **Hand-raises** (an event whose type is an intent type of a published model): their
  leads' ids go into a Redis set (``INTENT_KEY``) and a ``score_intent`` task goes to
  ``SCORING_INTENT_QUEUE`` at once. A worker dedicated to that queue scores them within
  milliseconds; a pass that is running (below) also takes them between two chunks, so
  even one worker on one queue scores a hand-raise ahead of any backlog.
- **Everything else** is coalesced: ``score_flagged`` (one pass over every flagged lead,
  in chunks of id order) is enqueued only when no pass is pending (``PENDING_KEY``,
  set with NX; the pass deletes it when it starts, so a lead flagged after that start
  enqueues the next pass). Many ingest batches, one scoring pass.

When tasks run in-process (the embedded default, eager mode) or the broker is not Redis,
each write scores its leads itself (``score_leads``), as before.
"""

import logging
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from celery import current_app
from django.conf import settings

logger = logging.getLogger(__name__)

SCORE_LEADS_TASK = "scoring.tasks.score_leads"
SCORE_INTENT_TASK = "scoring.tasks.score_intent"
SCORE_FLAGGED_TASK = "scoring.tasks.score_flagged"
INTENT_KEY = "leadflow:scoring:intent"
PENDING_KEY = "leadflow:scoring:pass-pending"


@cache
def _redis(url: str) -> Any:
    import redis

    # One client (and its connection pool) per process, reused by every request.
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def hints() -> Any | None:
    """The broker's Redis when requests are coalesced (a Redis broker, tasks not in-process)."""
    url = current_app.conf.broker_url or ""
    if current_app.conf.task_always_eager or not url.startswith(("redis://", "rediss://")):
        return None
    return _redis(url)


def _send(task: str, args: tuple[Any, ...] = (), argsrepr: str | None = None) -> None:
    # A signature, not ``send_task``: it calls the registered task's ``apply_async``, which
    # honours eager mode (``send_task`` ignores it). scoring's AppConfig registers the
    # tasks in every process. Celery reuses its producer pool (one broker connection).
    current_app.signature(task, args=args).apply_async(argsrepr=argsrepr)


def request_scoring(lead_ids: Sequence[int], intent_ids: Sequence[int] = ()) -> None:
    """Ask for the scoring of these flagged leads (called after their commit). If the
    broker is down the leads stay flagged and the sweep scores them later."""
    try:
        redis = hints()
        if redis is None:
            # A short argsrepr: Celery would otherwise build the repr of every id for its logs.
            _send(SCORE_LEADS_TASK, (list(lead_ids),), argsrepr=f"({len(lead_ids)} lead ids)")
            return
        if intent_ids:
            redis.sadd(INTENT_KEY, *intent_ids)
            _send(SCORE_INTENT_TASK, (list(intent_ids),), argsrepr=f"({len(intent_ids)} lead ids)")
        pass_request(redis)
    except Exception:  # the sweep is the safety net for any broker failure
        logger.warning(
            "Could not enqueue scoring for %d leads; the sweep will pick them up.", len(lead_ids), exc_info=True
        )


def pass_request(redis: Any) -> bool:
    """Enqueue a scoring pass unless one is pending; True if this call enqueued it. The key
    expires (``SCORING_PASS_PENDING_SECONDS``) so that a pass lost with its message does not
    block the next one forever."""
    if not redis.set(PENDING_KEY, "1", nx=True, ex=settings.SCORING_PASS_PENDING_SECONDS):
        return False
    _send(SCORE_FLAGGED_TASK)
    return True


def pass_started(redis: Any) -> None:
    """A pass starts: a lead flagged from now on needs the next pass."""
    redis.delete(PENDING_KEY)


def intent_take(redis: Any, count: int) -> list[int]:
    """Up to ``count`` lead ids of hand-raises waiting to be scored (removed from the set)."""
    return sorted(int(value) for value in (redis.spop(INTENT_KEY, count) or []))


def intent_done(redis: Any, lead_ids: Iterable[int]) -> None:
    ids = list(lead_ids)
    if ids:
        redis.srem(INTENT_KEY, *ids)
