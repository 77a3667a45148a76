"""Webhook subscriptions: endpoints that receive signed POSTs of the events they chose.

**Events** (``WEBHOOK_EVENTS``): the lifecycle's (``lead.mql``… from the lifecycle's
``stages_changed``, ``lead.score_changed`` from scoring's ``scores_changed`` with a
minimum change per subscription), the handoff's (claimed, accepted, rejected, SLA
breached, from its services and sweep), ``account.mqa`` (scoring's
``accounts_qualified``), ``model.rescored`` (scoring's ``rescore_finished``), plus
``notifications`` — every notification as people get it, what the former global
webhook sent — and ``nurture.segment`` (pushes from the nurture page). Whoever causes an
event calls ``webhook_events_emit`` inside its transaction.

**The outbox.** ``webhook_events_emit`` writes one :class:`WebhookDelivery` per
(subscription, event) in the caller's transaction (set-based, idempotent on the event's
key), and after the commit enqueues ``deliver_webhook`` for each. ``webhook_deliver``
claims the delivery with a conditional UPDATE (a lease in ``sending_until``), POSTs
outside any transaction, and records the result in a second short UPDATE conditional on
still holding the claim. A failure is retried with exponential backoff
(``backoff``: 30 s, 1, 2, 4… minutes, at most an hour apart) for
``WEBHOOK_RETRY_HOURS``; a 4xx other than 408/429 is not retried. The beat task
``sweep_webhooks`` (every minute) enqueues due retries and anything whose task was lost
(broker outage, dead worker): nothing recorded is ever left unsent.

**Endpoints failing for a day.** A subscription remembers its first failure since its
last success (``failing_since``); a failure more than ``WEBHOOK_DISABLE_AFTER_HOURS``
after it disables the subscription and tells its owner (in-app and e-mail).

**Signature.** ``LeadFlow-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret,
"<t>.<raw body>")>`` — see the README for the receiver's check. Signing needs the secret
(a hash can only verify): it is stored encrypted under ``SECRET_KEY``
(``leadflow.encryption``) and shown once, at creation.

**SSRF.** A subscription's URL must resolve to public addresses unless
``WEBHOOK_ALLOW_PRIVATE_URLS``; checked when saved and again before each POST (the name
may resolve elsewhere by then). The settings-managed subscription, configured by the
operator, is trusted.
"""

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from handoff.models import NotificationKind, WebhookDelivery, WebhookSubscription
from handoff.roles import can_manage_webhooks
from leadflow.db import insert_ignore_conflicts_returning
from leadflow.encryption import SecretUnreadable, secret_readable

logger = logging.getLogger(__name__)

# name → what it means (the subscription form's labels and the README's table).
WEBHOOK_EVENTS: dict[str, str] = {
    "lead.mql": "A lead became marketing-qualified (MQL)",
    "lead.sql": "A lead became sales-qualified (SQL) and entered the sales queue",
    "lead.recycled": "Sales rejected a lead back to nurturing",
    "lead.disqualified": "A lead was disqualified",
    "lead.score_changed": "A lead's score changed by at least the subscription's minimum",
    "handoff.claimed": "A rep claimed a handoff",
    "handoff.accepted": "A rep accepted a handoff",
    "handoff.rejected": "A rep rejected a handoff",
    "handoff.sla_breached": "A handoff passed its SLA while still open",
    "account.mqa": "An account became marketing-qualified (MQA)",
    "model.rescored": "A full rescore of a scoring model finished (a ruleset published, the nightly decay refresh)",
    "notifications": "Every notification people get (new SQLs, SLA breaches…), as the former global webhook sent them",
    "nurture.segment": "A nurture segment pushed from the nurture page",
}
NOTIFICATIONS = "notifications"
SCORE_CHANGED = "lead.score_changed"
# What the settings-managed subscription (the former global webhook) receives.
LEGACY_EVENTS = [NOTIFICATIONS, "nurture.segment"]
SETTINGS_SUBSCRIPTION_NAME = "Global webhook (NOTIFY_WEBHOOK_URL)"

SIGNATURE_HEADER = "LeadFlow-Signature"
LEGACY_SIGNATURE_HEADER = "X-LeadFlow-Signature"  # sha256=<hmac of the body>: the settings subscription only
DELIVERY_HEADER = "X-LeadFlow-Delivery"
EVENT_HEADER = "X-LeadFlow-Event"
# Errors worth another attempt: network trouble, timeouts, 5xx (HTTPError is a URLError).
# SecretUnreadable: retried, so that the day of retries is the operator's time to put the
# former SECRET_KEY back among the fallbacks (the endpoint's owner is told when it is disabled).
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    urllib.error.URLError,
    http.client.HTTPException,
    OSError,
    SecretUnreadable,
)
# deliver_webhook's hard time limit: the worker kills an attempt that runs longer.
DELIVERY_TIME_LIMIT_SECONDS = 90
# How long an attempt's claim on a delivery lasts: as long as the attempt may run, so
# that no live attempt loses its claim and a dead one's claim expires by itself.
SENDING_LEASE = timedelta(seconds=DELIVERY_TIME_LIMIT_SECONDS)
# A first attempt not made this long after the commit lost its task: the sweep sends it.
FIRST_ATTEMPT_GRACE = timedelta(minutes=2)
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
# Deliveries enqueued right after one commit; more (a full rescore's stage changes) are
# left to the sweep, which sends SWEEP_LIMIT a minute.
ENQUEUE_MAX = 1000
SWEEP_LIMIT = 1000
SECRET_PREFIX = "whsec_"  # noqa: S105 -- a prefix, not a secret


class WebhookError(Exception):
    """A request about subscriptions the rules refuse; the message says what to do."""


class WebhookRefused(Exception):
    """The receiver answered 4xx (or the URL is refused): the same body again will not help."""


# --- Events ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WebhookEvent:
    """One thing that happened, for the subscriptions that want ``name``. ``key`` is
    unique per event (the receiver's idempotency key); ``score_change`` is the absolute
    change of a ``lead.score_changed``, compared with each subscription's minimum."""

    name: str
    key: str
    data: dict[str, Any] = field(default_factory=dict)
    score_change: Decimal | None = None
    # The whole payload, when given (the notifications keep their own shape).
    payload: dict[str, Any] | None = None


def wants(subscription: WebhookSubscription, event: WebhookEvent) -> bool:
    """Whether the subscription receives this event: one it chose, and for a score change
    one at least its minimum (a change of zero is no change)."""
    if event.name not in subscription.events:
        return False
    if event.name == SCORE_CHANGED:
        change = event.score_change or Decimal("0")
        return change > 0 and change >= subscription.min_score_change
    return True


def _payload(event: WebhookEvent, at: datetime) -> dict[str, Any]:
    payload = event.payload or {"id": event.key, "event": event.name, "created_at": at, "data": event.data}
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder))


def webhook_events_emit(events: Sequence[WebhookEvent]) -> int:
    """Record a delivery of each event to every active subscription that wants it, in the
    caller's transaction (they commit or roll back with the change; an event already
    recorded for a subscription is not recorded twice), and enqueue them after the
    commit. Returns how many were recorded. As for every notification, a failure to
    record is logged and contained, never raised into the change that caused it."""
    if not events:
        return 0
    subscriptions = active_subscriptions()
    if not subscriptions:
        return 0
    now = timezone.now()
    rows = []
    for event in events:
        targets = [subscription for subscription in subscriptions if wants(subscription, event)]
        if targets:
            payload = _payload(event, now)
            label = str(payload.get("event", event.name))[:40]
            rows += [(s.pk, event.key[:200], label, payload, now, now, 0, "") for s in targets]
    if not rows:
        return 0
    try:
        # A savepoint of its own: a failure to record (logged) never spoils the change.
        with transaction.atomic():
            inserted = insert_ignore_conflicts_returning(
                WebhookDelivery,
                ["subscription", "key", "event", "payload", "created_at", "next_attempt_at", "attempts", "last_error"],
                rows,
                ["id"],
            )
    except Exception:
        logger.exception("Webhook events %s were not recorded", ", ".join(sorted({e.name for e in events})))
        return 0
    ids = [delivery_id for (delivery_id,) in inserted]
    if ids:
        transaction.on_commit(partial(_enqueue_deliveries, ids[:ENQUEUE_MAX]))
    return len(ids)


def _enqueue_deliveries(delivery_ids: Sequence[int]) -> None:
    # Lazily: handoff.tasks imports this module.
    from handoff.tasks import deliver_webhook

    for delivery_id in delivery_ids:
        try:
            deliver_webhook.delay(delivery_id)
        except Exception:
            # A broker outage loses the message; the row stays due and the sweep sends it.
            logger.exception("Webhook delivery %s was not enqueued", delivery_id)


# --- Subscriptions -----------------------------------------------------------------------------------
def active_subscriptions() -> list[WebhookSubscription]:
    """The active subscriptions, the settings-managed one following the settings first
    (``settings_subscription_sync``: one query, and a write only when they changed)."""

    def listed() -> list[WebhookSubscription]:
        return list(WebhookSubscription.objects.filter(Q(active=True) | Q(managed_by_settings=True)))

    subscriptions = listed()
    managed = next((s for s in subscriptions if s.managed_by_settings), None)
    url, secret = settings.NOTIFY_WEBHOOK_URL, settings.NOTIFY_WEBHOOK_SECRET
    changed = managed is None or (managed.url, managed.secret) != (url, secret)
    if (url and changed) or (managed is not None and managed.active and not url):
        settings_subscription_sync()
        subscriptions = listed()
    return [subscription for subscription in subscriptions if subscription.active]


def settings_subscription_sync() -> WebhookSubscription | None:
    """The former global webhook as a subscription that follows ``NOTIFY_WEBHOOK_URL`` and
    ``NOTIFY_WEBHOOK_SECRET``: created when they are set, its URL and secret updated (and
    re-enabled: new settings are the operator's new decision) when they change, disabled
    when they are unset. Its events may be changed on the subscriptions page."""
    url, secret = settings.NOTIFY_WEBHOOK_URL, settings.NOTIFY_WEBHOOK_SECRET
    managed = WebhookSubscription.objects.filter(managed_by_settings=True).first()
    now = timezone.now()
    if managed is None:
        if not url:
            return None
        try:
            with transaction.atomic():
                return WebhookSubscription.objects.create(
                    name=SETTINGS_SUBSCRIPTION_NAME,
                    url=url,
                    secret=secret,
                    events=LEGACY_EVENTS,
                    managed_by_settings=True,
                )
        except IntegrityError:  # created concurrently
            return WebhookSubscription.objects.filter(managed_by_settings=True).first()
    if not url:
        if managed.active:
            WebhookSubscription.objects.filter(pk=managed.pk).update(
                active=False, disabled_at=now, disabled_reason="NOTIFY_WEBHOOK_URL is not set.", updated_at=now
            )
        return managed
    if (managed.url, managed.secret) != (url, secret):
        WebhookSubscription.objects.filter(pk=managed.pk).update(
            url=url,
            secret=secret,
            active=True,
            disabled_at=None,
            disabled_reason="",
            failing_since=None,
            updated_at=now,
        )
    return managed


def subscribed(*event_names: str) -> bool:
    """Whether some active subscription receives one of ``event_names``."""
    return any(name in subscription.events for subscription in active_subscriptions() for name in event_names)


def secret_generate() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


def webhook_url_refusal(url: str) -> str | None:
    """Why this URL may not receive webhooks (None: it may): not http(s), or a host that
    does not resolve or resolves to a private, loopback, link-local or reserved address
    (unless ``WEBHOOK_ALLOW_PRIVATE_URLS``), so that an admin cannot make LeadFlow POST
    into the network it runs in."""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        return "Enter an http:// or https:// URL, such as https://crm.example.com/hooks/leadflow."
    parts = urlsplit(url)
    if parts.username or parts.password:
        return "Leave credentials out of the URL: receivers check the signature instead."
    if settings.WEBHOOK_ALLOW_PRIVATE_URLS:
        return None
    host = parts.hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return f"The host {host!r} does not resolve: check the URL's spelling."
    if not addresses or any(_private(str(address)) for address in addresses):
        return (
            f"The host {host!r} is a private, loopback or link-local address: webhooks go to public endpoints "
            "only (an operator may allow private ones with WEBHOOK_ALLOW_PRIVATE_URLS)."
        )
    return None


def webhook_subscription_validate(
    *, name: str, url: str, events: Sequence[str], min_score_change: Decimal | None, operator_url: bool = False
) -> dict[str, Any]:
    """The rules of a subscription, defined once for the page and the API: a name, an
    allowed URL, at least one known event, a minimum change not below zero. Returns the
    cleaned values; raises a ValidationError keyed by field. ``operator_url``: the URL is
    the operator's (``NOTIFY_WEBHOOK_URL``), trusted as the settings check it."""
    errors: dict[str, str] = {}
    name = (name or "").strip()
    url = (url or "").strip()
    if not name:
        errors["name"] = "Name the endpoint (e.g. “CRM” or “Slack #sales”)."
    elif len(name) > 100:
        errors["name"] = "Keep the name within 100 characters."
    if len(url) > 500:
        errors["url"] = "Keep the URL within 500 characters."
    elif not operator_url and (refusal := webhook_url_refusal(url)):
        errors["url"] = refusal
    chosen = list(dict.fromkeys(events))
    unknown = [event for event in chosen if event not in WEBHOOK_EVENTS]
    if unknown:
        errors["events"] = f"Unknown events {', '.join(unknown)}: choose among {', '.join(WEBHOOK_EVENTS)}."
    elif not chosen:
        errors["events"] = "Choose at least one event to receive."
    change = min_score_change if min_score_change is not None else Decimal("0")
    if change < 0:
        errors["min_score_change"] = "The minimum change is a size, 0 or more (it counts rises and falls)."
    if errors:
        raise ValidationError(errors)
    return {"name": name, "url": url, "events": chosen, "min_score_change": change}


def _manager(actor: Any) -> None:
    if not can_manage_webhooks(actor):
        raise PermissionDenied("Only scoring admins and staff manage webhook subscriptions.")


def webhook_subscription_create(
    *, actor: Any, name: str, url: str, events: Sequence[str], min_score_change: Decimal | None = None
) -> WebhookSubscription:
    """Register an endpoint, owned by ``actor``, with a new secret (shown to them once)."""
    _manager(actor)
    values = webhook_subscription_validate(name=name, url=url, events=events, min_score_change=min_score_change)
    return WebhookSubscription.objects.create(owner=actor, secret=secret_generate(), **values)


def webhook_subscription_update(
    *,
    actor: Any,
    subscription: WebhookSubscription,
    name: str,
    url: str,
    events: Sequence[str],
    min_score_change: Decimal | None = None,
) -> WebhookSubscription:
    """Change an endpoint's name, URL and events (the settings-managed one: not its URL,
    which follows ``NOTIFY_WEBHOOK_URL``)."""
    _manager(actor)
    if subscription.managed_by_settings and url.strip() != subscription.url:
        raise ValidationError({"url": "This endpoint follows NOTIFY_WEBHOOK_URL: change the setting instead."})
    values = webhook_subscription_validate(
        name=name,
        url=url,
        events=events,
        min_score_change=min_score_change,
        operator_url=subscription.managed_by_settings,
    )
    for attribute, value in values.items():
        setattr(subscription, attribute, value)
    subscription.save(update_fields=[*values, "updated_at"])
    return subscription


def webhook_subscription_disable(*, actor: Any, subscription: WebhookSubscription, reason: str = "") -> None:
    """Stop sending to the endpoint; its pending deliveries wait until it is enabled."""
    _manager(actor)
    now = timezone.now()
    reason = reason or f"Disabled by {actor.get_username()}."
    WebhookSubscription.objects.filter(pk=subscription.pk, active=True).update(
        active=False, disabled_at=now, disabled_reason=reason[:300], updated_at=now
    )
    subscription.refresh_from_db()


def webhook_subscription_enable(*, actor: Any, subscription: WebhookSubscription) -> None:
    """Send to the endpoint again: its failures are forgotten, and what waited (not given
    up on) is sent by the next sweep, now."""
    _manager(actor)
    if subscription.managed_by_settings and not settings.NOTIFY_WEBHOOK_URL:
        raise WebhookError("This endpoint follows NOTIFY_WEBHOOK_URL, which is not set: set it to enable it.")
    now = timezone.now()
    with transaction.atomic():
        WebhookSubscription.objects.filter(pk=subscription.pk).update(
            active=True, disabled_at=None, disabled_reason="", failing_since=None, updated_at=now
        )
        WebhookDelivery.objects.filter(_pending(), subscription=subscription).update(next_attempt_at=now)
    subscription.refresh_from_db()


def webhook_subscription_rotate_secret(*, actor: Any, subscription: WebhookSubscription) -> str:
    """A new secret for the endpoint (shown once); later attempts are signed with it."""
    _manager(actor)
    if subscription.managed_by_settings:
        raise WebhookError("This endpoint follows NOTIFY_WEBHOOK_SECRET: change the setting instead.")
    subscription.secret = secret_generate()
    subscription.save(update_fields=["secret", "updated_at"])
    return subscription.secret


def webhook_delivery_replay(*, actor: Any, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again, as it was (same id and payload, signed anew), whatever became
    of it: delivered, given up on, or waiting for a retry. Its day of retries starts again."""
    _manager(actor)
    if not WebhookSubscription.objects.filter(pk=delivery.subscription_id, active=True).exists():
        raise WebhookError("This endpoint is disabled: enable it first, then replay.")
    now = timezone.now()
    unclaimed = Q(sending_until__isnull=True) | Q(sending_until__lt=Now())
    with transaction.atomic():
        replayed = WebhookDelivery.objects.filter(unclaimed, pk=delivery.pk).update(
            delivered_at=None, failed_at=None, next_attempt_at=now, replayed_at=now, sending_until=None
        )
        if not replayed:
            raise WebhookError("This delivery is being sent right now: wait for the attempt to finish.")
        transaction.on_commit(partial(_enqueue_deliveries, [delivery.pk]))
    delivery.refresh_from_db()
    return delivery


# --- Sending -----------------------------------------------------------------------------------------
def webhook_signature(body: bytes, secret: str, timestamp: int) -> str:
    """The ``LeadFlow-Signature`` value: ``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    signed = f"{timestamp}.".encode() + body
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def legacy_signature(body: bytes, secret: str) -> str:
    """The former global webhook's ``X-LeadFlow-Signature``: ``sha256=`` and the HMAC of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(delivery: WebhookDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 30 s, then doubling, at most an hour."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the error it is for a webhook: following it would POST
    where nobody checked (a public URL redirecting into the network LeadFlow runs in)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(delivery: WebhookDelivery, subscription: WebhookSubscription) -> int:
    url = subscription.url
    if not subscription.managed_by_settings and (refusal := webhook_url_refusal(url)):
        raise WebhookRefused(refusal)
    if not url.startswith(("http://", "https://")):
        raise WebhookRefused(f"The URL must be an http(s) URL, not {url!r}.")
    if not secret_readable(subscription.secret):
        raise SecretUnreadable
    body = webhook_body(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "LeadFlow-Webhook/2",
        SIGNATURE_HEADER: webhook_signature(body, subscription.secret, int(time.time())),
        DELIVERY_HEADER: delivery.key,
        EVENT_HEADER: str(delivery.payload.get("event", delivery.event)),
    }
    if subscription.managed_by_settings:
        headers[LEGACY_SIGNATURE_HEADER] = legacy_signature(body, subscription.secret)
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 -- scheme checked
    try:
        with _OPENER.open(request, timeout=settings.NOTIFY_WEBHOOK_TIMEOUT_SECONDS) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        if 300 <= error.code < 400:
            raise WebhookRefused(
                f"HTTP {error.code} {error.reason}: webhooks do not follow redirects, register the final URL."
            ) from error
        if 400 <= error.code < 500 and error.code not in (408, 429):
            raise WebhookRefused(f"HTTP {error.code} {error.reason}") from error
        raise


def _pending() -> Q:
    return Q(delivered_at__isnull=True, failed_at__isnull=True)


def _sendable() -> Q:
    """Pending, of an active subscription, and held by no sender: never claimed, or the
    claim ran out (its sender died or was killed)."""
    unclaimed = Q(sending_until__isnull=True) | Q(sending_until__lt=Now())
    return _pending() & unclaimed & Q(subscription__active=True)


def _delivery_claim(delivery_id: int) -> WebhookDelivery | None:
    """Claim the delivery for one attempt, or None when it is not sendable or not due. One
    conditional UPDATE, its own transaction: of two senders, one wins. The lease is on
    the database's clock, the one clock every worker shares."""
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())
    claimed = WebhookDelivery.objects.filter(_sendable(), due, pk=delivery_id).update(
        sending_until=Now() + SENDING_LEASE, attempts=F("attempts") + 1, last_attempt_at=timezone.now()
    )
    return WebhookDelivery.objects.select_related("subscription").get(pk=delivery_id) if claimed else None


def _delivery_record(delivery: WebhookDelivery, **result: Any) -> bool:
    """Record the result of the attempt that claimed ``delivery`` and free the claim: one
    UPDATE, conditional on the attempt still holding the claim. False when it no longer did."""
    recorded = WebhookDelivery.objects.filter(_pending(), pk=delivery.pk, attempts=delivery.attempts).update(
        sending_until=None, **result
    )
    return recorded == 1


def webhook_deliver(*, delivery_id: int) -> str:
    """Send one delivery unless it was delivered, given up on, is not due, or is being sent
    right now. Call it outside any transaction: none is held while the receiver answers.

    Returns what happened: ``delivered``; ``retry`` (a failure, next attempt at
    ``next_attempt_at``, by the sweep); ``failed`` (failing for ``WEBHOOK_RETRY_HOURS``
    since it was recorded or replayed) or ``refused`` (4xx, a refused URL): given up on;
    ``skipped``; ``superseded`` (the attempt outlived its claim: the one that took it
    over decides)."""
    delivery = _delivery_claim(delivery_id)
    if delivery is None:
        return "skipped"
    subscription = delivery.subscription
    started_at = timezone.now()
    try:
        result: dict[str, Any] = {
            "last_status": _post(delivery, subscription),
            "last_error": "",
            "delivered_at": timezone.now(),
            "next_attempt_at": None,
        }
        outcome = "delivered"
    except WebhookRefused as refused:
        status = getattr(refused.__cause__, "code", None)
        result = {
            "last_status": status,
            "last_error": str(refused)[:2000],
            "failed_at": started_at,
            "next_attempt_at": None,
        }
        outcome = "refused"
    except RETRYABLE_ERRORS as retryable:
        result = {
            "last_status": getattr(retryable, "code", None),
            "last_error": f"{type(retryable).__name__}: {retryable}"[:2000],
        }
        window_start = delivery.replayed_at or delivery.created_at
        next_attempt = started_at + backoff(delivery.attempts)
        if next_attempt > window_start + timedelta(hours=settings.WEBHOOK_RETRY_HOURS):
            result["failed_at"], result["next_attempt_at"], outcome = started_at, None, "failed"
        else:
            result["next_attempt_at"], outcome = next_attempt, "retry"
    if not _delivery_record(delivery, **result):
        logger.warning("Webhook %s: attempt %s outlived its claim", delivery.key, delivery.attempts)
        return "superseded"
    if outcome == "delivered":
        WebhookSubscription.objects.filter(pk=subscription.pk, failing_since__isnull=False).update(failing_since=None)
    else:
        # Its first attempt came within minutes of its start (the sweep sends a lost one).
        started = delivery.replayed_at or delivery.created_at
        gave_up_since = started + 2 * FIRST_ATTEMPT_GRACE if outcome == "failed" else None
        _subscription_failed(subscription, started_at, str(result["last_error"]), gave_up_since=gave_up_since)
        if outcome in ("refused", "failed"):
            logger.warning(
                "Webhook %s gave up after %s attempts: %s", delivery.key, delivery.attempts, result["last_error"]
            )
    return outcome


def _subscription_failed(
    subscription: WebhookSubscription, at: datetime, error: str, *, gave_up_since: datetime | None
) -> None:
    """An attempt to the endpoint failed: remember since when it fails. Failing for
    ``WEBHOOK_DISABLE_AFTER_HOURS``, or since the first attempts of a delivery whose day of
    retries just ran out (``gave_up_since``: nothing got through meanwhile), it is
    disabled, once, and its owner told."""
    WebhookSubscription.objects.filter(pk=subscription.pk, failing_since__isnull=True).update(failing_since=at)
    failing_long = Q(failing_since__lte=at - timedelta(hours=settings.WEBHOOK_DISABLE_AFTER_HOURS))
    if gave_up_since is not None:
        failing_long |= Q(failing_since__lte=gave_up_since)
    hours = settings.WEBHOOK_DISABLE_AFTER_HOURS
    with transaction.atomic():
        disabled = WebhookSubscription.objects.filter(failing_long, pk=subscription.pk, active=True).update(
            active=False,
            disabled_at=at,
            disabled_reason=f"Failing for {hours} hours; last error: {error}"[:300],
            updated_at=at,
        )
        if disabled:
            _owner_notify(subscription, at, error)


def _owner_notify(subscription: WebhookSubscription, at: datetime, error: str) -> None:
    from django.urls import reverse

    from handoff.notifications import NotificationEvent, notify
    from leadflow.leads.roles import SCORING_ADMIN

    notify(
        [
            NotificationEvent(
                kind=NotificationKind.WEBHOOK_DISABLED,
                key=f"webhook:{subscription.public_id}:disabled:{at.isoformat()}",
                title=f"Webhook “{subscription.name}” was disabled",
                body=(
                    f"{subscription.url} failed every delivery for {settings.WEBHOOK_DISABLE_AFTER_HOURS} hours "
                    f"(last error: {error}). Fix the endpoint, enable the subscription again and replay "
                    "what it missed from its delivery log."
                ),
                link=reverse("webhook-detail", args=[subscription.public_id]),
                recipient_ids=(subscription.owner_id,) if subscription.owner_id else (),
                recipient_roles=() if subscription.owner_id else (SCORING_ADMIN,),
                to_webhook=False,
            )
        ]
    )


def webhooks_sweep(*, limit: int = SWEEP_LIMIT) -> int:
    """Enqueue the deliveries that are due and that no sender holds: retries whose time has
    come, first attempts whose task was lost (older than ``FIRST_ATTEMPT_GRACE``) and
    attempts whose sender died (its claim expired). Returns how many."""
    now = timezone.now()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    retried_or_lost = Q(attempts__gt=0) | Q(replayed_at__isnull=False) | Q(created_at__lt=now - FIRST_ATTEMPT_GRACE)
    ids = list(
        WebhookDelivery.objects.filter(_sendable(), due, retried_or_lost)
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    if ids:
        transaction.on_commit(partial(_enqueue_deliveries, ids))
    return len(ids)


# --- The domain's events, as webhooks ------------------------------------------------------------
# The stages whose entry is an event (``lead.<stage>``); accepting is ``handoff.accepted``.
STAGE_EVENTS = ("mql", "sql", "recycled", "disqualified")


def _link(name: str, *args: Any, query: dict[str, str] | None = None) -> str:
    from django.urls import reverse

    from handoff.notifications import absolute_link

    path = reverse(name, args=args)
    return absolute_link(f"{path}?{urlencode(query)}" if query else path)


def lead_data(lead: Any) -> dict[str, Any]:
    """What a webhook says of a lead: its public id, identity, stage and page."""
    return {
        "id": str(lead.public_id),
        "email": lead.email,
        "external_id": lead.external_id,
        "name": lead.name,
        "company": lead.company,
        "stage": lead.stage,
        "link": _link("lead-detail", lead.public_id),
    }


def _username(user: Any) -> str | None:
    return str(user.get_username()) if user is not None else None


def stage_events(changes: Sequence[Any], leads: dict[int, Any]) -> list[WebhookEvent]:
    """``lead.mql``, ``lead.sql``, ``lead.recycled``, ``lead.disqualified`` of these
    StageChanges (``leads``: their leads by id)."""
    events = []
    for change in changes:
        if change.to_stage not in STAGE_EVENTS or change.lead_id not in leads:
            continue
        lead = leads[change.lead_id]
        events.append(
            WebhookEvent(
                name=f"lead.{change.to_stage}",
                key=f"lead.{change.to_stage}:{lead.public_id}:{change.at.isoformat()}",
                data={
                    "lead": lead_data(lead),
                    "from_stage": change.from_stage,
                    "to_stage": change.to_stage,
                    "reason": change.reason,
                    "at": change.at,
                    "actor": _username(change.actor) if change.actor_id else None,
                    "qualified_by": change.qualified_by,
                    "score": change.score,
                },
            )
        )
    return events


def score_events(
    changes: Sequence[Any], leads: dict[int, Any], models: dict[int, Any], at: datetime
) -> list[WebhookEvent]:
    """``lead.score_changed`` of these ``scoring.services.ScoreChange``s."""
    events = []
    for change in changes:
        lead, model = leads.get(change.lead_id), models.get(change.model_id)
        if lead is None or model is None:
            continue
        before = change.before if change.before is not None else Decimal("0")
        events.append(
            WebhookEvent(
                name=SCORE_CHANGED,
                key=f"{SCORE_CHANGED}:{lead.public_id}:{model.slug}:{at.isoformat()}",
                data={
                    "lead": lead_data(lead),
                    "model": model.slug,
                    "before": change.before,
                    "after": change.after,
                    "change": change.after - before,
                    "at": at,
                },
                score_change=abs(change.after - before),
            )
        )
    return events


def handoff_event(name: str, *, handoff: Any, lead: Any, actor: Any, at: datetime, **data: Any) -> WebhookEvent:
    """A ``handoff.*`` event about one handoff and its lead."""
    return WebhookEvent(
        name=name,
        key=f"{name}:{handoff.public_id}:{at.isoformat()}",
        data={
            "handoff": {
                "id": str(handoff.public_id),
                "status": handoff.status,
                "due_at": handoff.due_at,
                "link": _link("handoff-detail", handoff.public_id),
            },
            "lead": lead_data(lead),
            "rep": _username(actor),
            "at": at,
            **data,
        },
    )


def account_events(qualified: Sequence[Any], accounts: dict[int, Any], models: dict[int, Any]) -> list[WebhookEvent]:
    """``account.mqa`` of these ``scoring.accounts.QualifiedAccount``s, one per account and model."""
    events = []
    for item in qualified:
        account, model = accounts.get(item.account_id), models.get(item.model_id)
        if account is None or model is None:
            continue
        events.append(
            WebhookEvent(
                name="account.mqa",
                key=f"account.mqa:{item.account_id}:{model.slug}",
                data={
                    "account": {
                        "id": account.pk,
                        "name": account.name,
                        "domain": account.domain,
                        "link": _link("account-detail", account.pk),
                    },
                    "model": model.slug,
                    "score": item.score,
                    "threshold": item.threshold,
                },
            )
        )
    return events


def rescore_event(run: Any) -> WebhookEvent:
    """``model.rescored`` of a finished ``scoring.models.RescoreRun``: every lead's score under
    the model may have changed (no ``lead.score_changed`` is sent per lead), so a receiver
    that keeps scores re-reads them from ``leads`` (the lead list API, cursor-paginated)."""
    model = run.ruleset.model
    return WebhookEvent(
        name="model.rescored",
        key=f"model.rescored:{run.pk}",
        data={
            "model": model.slug,
            "ruleset": run.ruleset.version,
            "run": {
                "id": run.pk,
                "reason": run.reason,
                "leads": run.total,
                "stage_changes": run.changed_stages,
                "as_of": run.as_of,
                "finished_at": run.finished_at,
                "link": _link("rescore-run", run.pk),
            },
            "leads": _link("api-leads", query={"model": model.slug}),
        },
    )
