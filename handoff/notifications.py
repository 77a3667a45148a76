"""Notifications of the sales handoff: in-app, email and an optional signed webhook.

Services describe what happened as :class:`NotificationEvent` values and call
:func:`notify` inside their transaction: the in-app notifications and webhook
deliveries commit with the change (and never without it), e-mail and the webhook
POST go out after the commit, and a failure to notify is logged, never raised
into the handoff.

Every event has a unique key (``handoff:<id>:breach``…). It makes each channel
idempotent: one in-app notification per person per key (a unique constraint),
email only to the people whose notification was just created, and one
:class:`WebhookDelivery` row per key and webhook subscription that wants
``notifications`` (``handoff.webhooks``, which sends, signs and retries them).

An event's ``link`` is the page a person opens (``/queue/<id>/``): stored as is in
the in-app notification, and absolute (``NOTIFY_BASE_URL``) in the email and in the
webhook's ``link``. The webhook also carries the API URL of the same thing as
``api_link``.
"""

import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from handoff.models import Notification
from handoff.webhooks import NOTIFICATIONS, WEBHOOK_EVENTS, WebhookEvent, webhook_events_emit
from leadflow.db import insert_ignore_conflicts_returning

logger = logging.getLogger(__name__)

# Inside ``emails_withheld()``: how many e-mails were not sent (``None`` outside).
_withheld_emails: ContextVar[list[int] | None] = ContextVar("withheld_emails", default=None)


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
    """The event for the webhook subscriptions that receive notifications (or, for a
    nurture push, ``nurture.segment``), in the payload the global webhook always sent."""
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
    name = event.kind if event.kind in WEBHOOK_EVENTS else NOTIFICATIONS
    webhook_events_emit([WebhookEvent(name=name, key=event.key, payload=payload)])


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
