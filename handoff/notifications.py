"""Notifications of the sales handoff: in-app, email and an optional signed webhook.

Services describe what happened as :class:`NotificationEvent` values and call
:func:`notify` inside their transaction: the in-app notifications and webhook
deliveries commit with the change (and never without it), e-mail and the webhook
POST go out after the commit, and a failure to notify is logged, never raised
into the handoff.

Every event has a unique key (``handoff:<id>:breach``…). It makes each channel
idempotent: one in-app notification per person per key (a unique constraint),
email only to the people whose notification was just created, and one
:class:`WebhookDelivery` row per key that is never sent again once delivered. A
delivery is sent outside any transaction, by one sender at a time: claimed with a
conditional UPDATE, posted, then its result recorded (``webhook_deliver``).

An event's ``link`` is the page a person opens (``/queue/<id>/``): stored as is in
the in-app notification, and absolute (``NOTIFY_BASE_URL``) in the email and in the
webhook's ``link``. The webhook also carries the API URL of the same thing as
``api_link``.
"""

import hashlib
import hmac
import http.client
import json
import logging
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from handoff.models import Notification, WebhookDelivery
from leadflow.db import insert_ignore_conflicts_returning

logger = logging.getLogger(__name__)

# Inside ``emails_withheld()``: how many e-mails were not sent (``None`` outside).
_withheld_emails: ContextVar[list[int] | None] = ContextVar("withheld_emails", default=None)

SIGNATURE_HEADER = "X-LeadFlow-Signature"
DELIVERY_HEADER = "X-LeadFlow-Delivery"
EVENT_HEADER = "X-LeadFlow-Event"
# Errors worth another attempt: network trouble, timeouts, 5xx (HTTPError is a URLError).
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (urllib.error.URLError, http.client.HTTPException, OSError)
# A webhook neither delivered nor given up on after this long lost its task (broker
# outage, dead worker): the sweep enqueues it again. Longer than a full retry chain.
STALE_DELIVERY = timedelta(minutes=30)
# deliver_webhook's hard time limit: the worker kills an attempt that runs longer.
DELIVERY_TIME_LIMIT_SECONDS = 90
# How long an attempt's claim on a delivery lasts: as long as the attempt may run, so
# that no live attempt loses its claim and a dead one's claim expires by itself.
SENDING_LEASE = timedelta(seconds=DELIVERY_TIME_LIMIT_SECONDS)


@dataclass(frozen=True)
class NotificationEvent:
    kind: str
    key: str
    title: str
    body: str
    link: str = ""  # the page a person opens (relative; absolute in email and webhook)
    api_link: str = ""  # the same thing in the API, for webhook consumers
    recipient_ids: tuple[int, ...] = ()
    recipient_roles: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    # The channels it goes to: people (in-app, and e-mail to those newly notified) and the
    # webhook. A digest people read may stand for several events the webhook gets one by one.
    to_people: bool = True
    to_webhook: bool = True


def notify(events: Sequence[NotificationEvent]) -> None:
    """Record these notifications with the change that caused them.

    In-app notifications and webhook deliveries are rows written in the caller's
    transaction: they commit or roll back with the change, so a worker that dies
    right after a commit loses none and a resumed task adds none (their keys are
    unique). E-mail goes out after the commit, to the people whose in-app
    notification was new. Each channel's failure is logged and contained in a
    savepoint of its own: a failed statement cannot spoil the change."""
    for event in events:
        if event.to_people:
            try:
                with transaction.atomic():
                    created_for = _in_app(event)
            except Exception:
                logger.exception("In-app notification %s failed", event.key)
                continue
            withheld = _withheld_emails.get()
            if created_for and withheld is not None:
                withheld[0] += len(created_for)
            elif created_for:
                transaction.on_commit(partial(_email_contained, event, created_for))
        if event.to_webhook:
            try:
                with transaction.atomic():
                    _webhook(event)
            except Exception:
                logger.exception("Webhook notification %s failed", event.key)


@contextmanager
def emails_withheld() -> Iterator[list[int]]:
    """Notifications made inside are recorded in-app (and for the webhook) as ever, but
    nobody is e-mailed: for replayed history, such as the demo's, where the people
    notified are demo accounts and the news is weeks old. Yields a one-item list
    holding how many e-mails were withheld."""
    withheld = [0]
    token = _withheld_emails.set(withheld)
    try:
        yield withheld
    finally:
        _withheld_emails.reset(token)


def _email_contained(event: NotificationEvent, recipient_ids: Sequence[int]) -> None:
    try:
        _email(event, recipient_ids)
    except Exception:
        logger.exception("Email notification %s failed", event.key)


def recipients_of(*, ids: Sequence[int] = (), roles: Sequence[str] = ()) -> list[int]:
    """Whom a notification to these people and roles reaches: the active ones, by id."""
    condition = Q(pk__in=ids)
    if roles:
        condition |= Q(groups__name__in=roles)
    users = get_user_model().objects.filter(condition, is_active=True).distinct()
    return sorted(users.values_list("pk", flat=True))


def _recipients(event: NotificationEvent) -> list[int]:
    return recipients_of(ids=event.recipient_ids, roles=event.recipient_roles)


def _in_app(event: NotificationEvent) -> list[int]:
    """Create the in-app notifications; returns who got one now (not already notified)."""
    recipients = _recipients(event)
    if not recipients:
        return []
    now = timezone.now()
    rows = [
        (uuid.uuid4(), recipient, event.kind, event.key, event.title[:200], event.body, event.link, now)
        for recipient in recipients
    ]
    inserted = insert_ignore_conflicts_returning(
        Notification,
        ["public_id", "recipient", "kind", "event_key", "title", "body", "link", "created_at"],
        rows,
        returning=["recipient"],
    )
    return [row[0] for row in inserted]


def absolute_link(link: str) -> str:
    base = settings.NOTIFY_BASE_URL.rstrip("/")
    return f"{base}{link}" if base and link.startswith("/") else link


def _email(event: NotificationEvent, recipient_ids: Sequence[int]) -> None:
    if not recipient_ids:
        return
    addresses = get_user_model().objects.filter(pk__in=recipient_ids).exclude(email="").values_list("email", flat=True)
    link = absolute_link(event.link)
    body = f"{event.body}\n\n{link}\n" if link else f"{event.body}\n"
    # One message per person: recipients never see each other's addresses.
    messages = [EmailMessage(subject=f"[LeadFlow] {event.title}", body=body, to=[address]) for address in addresses]
    if messages:
        get_connection().send_messages(messages)


def _webhook(event: NotificationEvent) -> None:
    if not settings.NOTIFY_WEBHOOK_URL:
        return
    payload = {
        "id": event.key,
        "event": event.kind,
        "title": event.title,
        "body": event.body,
        "link": absolute_link(event.link),
        "api_link": absolute_link(event.api_link),
        "created_at": timezone.now().isoformat(),
        "data": event.data,
    }
    payload = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    inserted = insert_ignore_conflicts_returning(
        WebhookDelivery,
        ["key", "payload", "created_at", "attempts", "last_error"],
        [(event.key, payload, timezone.now(), 0, "")],
        ["id"],
    )
    for (delivery_id,) in inserted:
        transaction.on_commit(partial(_enqueue_delivery, delivery_id))


def _enqueue_delivery(delivery_id: int) -> None:
    # Within handoff, lazily: handoff.tasks imports this module (its tasks wrap these
    # functions), so importing it at the top would be a cycle.
    from handoff.tasks import deliver_webhook

    try:
        deliver_webhook.delay(delivery_id)
    except Exception:
        # Eager mode propagates a failed last attempt; a broker outage loses the
        # message. Either way the row says what happened and the sweep retries.
        logger.exception("Webhook delivery %s was not sent", delivery_id)


def webhook_signature(body: bytes, secret: str) -> str:
    """The ``X-LeadFlow-Signature`` value: ``sha256=`` and the hex HMAC of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(delivery: WebhookDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


class WebhookRefused(Exception):
    """The receiver answered 4xx: sending the same body again will not help."""


def _post(delivery: WebhookDelivery) -> int:
    url = settings.NOTIFY_WEBHOOK_URL
    if not url.startswith(("http://", "https://")):
        raise WebhookRefused(f"NOTIFY_WEBHOOK_URL must be an http(s) URL, not {url!r}.")
    body = webhook_body(delivery)
    request = urllib.request.Request(  # noqa: S310 -- scheme checked above
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "LeadFlow-Webhook/1",
            SIGNATURE_HEADER: webhook_signature(body, settings.NOTIFY_WEBHOOK_SECRET),
            DELIVERY_HEADER: delivery.key,
            EVENT_HEADER: str(delivery.payload.get("event", "")),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.NOTIFY_WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        if 400 <= error.code < 500 and error.code not in (408, 429):
            raise WebhookRefused(f"HTTP {error.code} {error.reason}") from error
        raise


def _sendable() -> Q:
    """Pending (neither delivered nor given up on) and held by no sender: never claimed,
    or the claim ran out (its sender died or was killed)."""
    unclaimed = Q(sending_until__isnull=True) | Q(sending_until__lt=Now())
    return Q(delivered_at__isnull=True, failed_at__isnull=True) & unclaimed


def _delivery_claim(delivery_id: int) -> WebhookDelivery | None:
    """Claim the delivery for one attempt, or None when it is not sendable. One
    conditional UPDATE, its own transaction: of two senders, one wins. The lease is on
    the database's clock, the one clock every worker shares."""
    claimed = WebhookDelivery.objects.filter(_sendable(), pk=delivery_id).update(
        sending_until=Now() + SENDING_LEASE, attempts=F("attempts") + 1, last_attempt_at=timezone.now()
    )
    return WebhookDelivery.objects.get(pk=delivery_id) if claimed else None


def _delivery_record(delivery: WebhookDelivery, **result: Any) -> bool:
    """Record the result of the attempt that claimed ``delivery`` and free the claim: one
    UPDATE, conditional on the attempt still holding the claim (no later attempt took it
    over after the lease ran out). False when it no longer did."""
    recorded = WebhookDelivery.objects.filter(
        pk=delivery.pk, attempts=delivery.attempts, delivered_at__isnull=True, failed_at__isnull=True
    ).update(sending_until=None, **result)
    return recorded == 1


def webhook_deliver(*, delivery_id: int, final_attempt: bool) -> str:
    """Send one delivery unless it was delivered, given up on, or is being sent right now.

    Call it outside any transaction: no transaction and no row lock is held while the
    receiver answers. The attempt claims the delivery (``_delivery_claim``: a lease in
    ``sending_until``, counted in ``attempts``), POSTs, and records the result in a
    second short UPDATE conditional on still holding the claim. A concurrent attempt
    finds the claim held and skips; an attempt that dies mid-POST leaves a claim that
    expires after ``SENDING_LEASE``, and ``webhooks_resend_stale`` sends it again.
    A retryable failure is raised for the task to retry, except on the final attempt,
    which records that we gave up."""
    delivery = _delivery_claim(delivery_id)
    if delivery is None:
        return "skipped"
    started_at = timezone.now()
    error: Exception | None = None
    try:
        result = {"last_status": _post(delivery), "last_error": "", "delivered_at": timezone.now()}
        outcome = "delivered"
    except WebhookRefused as refused:
        status = getattr(refused.__cause__, "code", None)
        result = {"last_status": status, "last_error": str(refused)[:2000], "failed_at": started_at}
        outcome = "refused"
    except RETRYABLE_ERRORS as retryable:
        result = {
            "last_status": getattr(retryable, "code", None),
            "last_error": f"{type(retryable).__name__}: {retryable}"[:2000],
        }
        if final_attempt:
            result["failed_at"], outcome = started_at, "failed"
        else:
            error, outcome = retryable, "retry"
    if not _delivery_record(delivery, **result):
        logger.warning(
            "Webhook %s: attempt %s outlived its claim; the attempt that took it over decides",
            delivery.key,
            delivery.attempts,
        )
        return "superseded"
    if outcome in ("refused", "failed"):
        logger.warning(
            "Webhook %s gave up after %s attempts: %s", delivery.key, delivery.attempts, result["last_error"]
        )
    if error is not None:
        raise error
    return outcome


def webhooks_resend_stale(*, limit: int = 500) -> int:
    """Enqueue deliveries whose task was lost (neither delivered nor given up on, and
    no live sender holds them)."""
    cutoff = timezone.now() - STALE_DELIVERY
    ids = list(
        WebhookDelivery.objects.filter(_sendable())
        .filter(Q(last_attempt_at__isnull=True, created_at__lt=cutoff) | Q(last_attempt_at__lt=cutoff))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    for delivery_id in ids:
        transaction.on_commit(partial(_enqueue_delivery, delivery_id))
    return len(ids)


# --- In-app notifications, for their owner -----------------------------------------------------
def notification_mark_read(*, notification: Notification) -> Notification:
    if notification.read_at is None:
        notification.read_at = timezone.now()
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=notification.read_at)
    return notification


def notification_mark_read_by_key(*, user: Any, event_key: str, at: datetime | None = None) -> int:
    """Mark read ``user``'s notification of one event, if they have an unread one."""
    unread = Notification.objects.filter(recipient=user, event_key=event_key, read_at__isnull=True)
    return unread.update(read_at=at or timezone.now())


def notifications_mark_all_read(*, user: Any) -> int:
    return Notification.objects.filter(recipient=user, read_at__isnull=True).update(read_at=timezone.now())
