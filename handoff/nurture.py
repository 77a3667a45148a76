"""Pushing a nurture segment to an e-mail tool through the outbound webhook.

The segments themselves are the core's (``leadflow.leads.nurture``); the webhook is the
handoff's notifications (``handoff.notifications``): a push is a ``nurture.segment``
notification event for the webhook only, so it is recorded as one
:class:`~handoff.models.WebhookDelivery` with the change's transaction, signed and
retried like every other, and sent after the commit. Each push is one refresh of the
segment, with a key of its own (``nurture:<segment>:<moment>``): pushing again sends the
segment as it is then, once more.
"""

from dataclasses import asdict, dataclass
from typing import Any

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from handoff import webhooks
from handoff.models import WebhookDelivery
from handoff.notifications import NotificationEvent, notify
from leadflow.leads import nurture

NURTURE_SEGMENT = "nurture.segment"  # the webhook's ``event`` (and X-LeadFlow-Event)
PUSH_MAX_LEADS = 10_000  # one POST carries at most so many leads (``truncated`` says so)


class NurturePushError(Exception):
    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


NO_WEBHOOK = (
    "No webhook receives nurture segments: subscribe the e-mail tool's endpoint to nurture.segment "
    "on the webhooks page, or set NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET, then push again."
)


def webhook_configured() -> bool:
    """Some active webhook subscription receives nurture pushes."""
    return webhooks.subscribed(NURTURE_SEGMENT)


@dataclass(frozen=True)
class SegmentPush:
    delivery: WebhookDelivery
    leads: int
    truncated: bool


def _content(conversion: nurture.AssetConversion | None) -> dict[str, Any] | None:
    if conversion is None:
        return None
    return {
        "asset": conversion.asset,
        "topic": conversion.topic or None,
        "conversion_rate": conversion.engaged.value,
        "enough_data": conversion.enough_data,
    }


def nurture_segment_push(
    *,
    key: str,
    days: int = nurture.DEFAULT_DAYS,
    topic_days: int = nurture.DEFAULT_TOPIC_DAYS,
    max_leads: int = PUSH_MAX_LEADS,
) -> SegmentPush:
    """Record one signed webhook POST of the segment ``key`` as it is now: its leads,
    each with its next content. Refused (``NurturePushError``) without a webhook, for a
    malformed key (``unknown_segment``) and for a segment with no lead now."""
    if not webhook_configured():
        raise NurturePushError(NO_WEBHOOK, code="no_webhook")
    segments = nurture.nurture_segments(days=days, topic_days=topic_days)
    segment = nurture.segment_find(segments, key)
    if segment is None:
        raise NurturePushError(f"No segment {key!r}: pick one from the nurture segments.", code="unknown_segment")
    if not segment.leads:
        raise NurturePushError(
            "This segment has no lead now: nothing to push. Pick a segment with leads.", code="empty_segment"
        )
    leads = list(nurture.segment_lead_rows(segments, segment, topic_days=topic_days, limit=max_leads))
    refreshed_at = timezone.now()
    data = {
        "segment": {
            "key": segment.key,
            "topic": segment.topic or None,
            "recency": segment.recency,
            "leads": segment.leads,
            "next_content": _content(segment.next_content),
            "computed_at": segments.computed_at,
        },
        "refreshed_at": refreshed_at,
        "truncated": len(leads) < segment.leads,
        "leads": [asdict(lead) for lead in leads],
    }
    event = NotificationEvent(
        kind=NURTURE_SEGMENT,
        key=f"nurture:{segment.key}:{refreshed_at.isoformat()}",
        title=f"Nurture segment {segment.label}: {segment.leads} leads",
        body=f"{len(leads)} leads of the segment {segment.label}, each with its next content.",
        link=reverse("nurture-segment", args=[segment.key]),
        api_link=reverse("api-nurture-segments"),
        data=data,
        to_people=False,
    )
    with transaction.atomic():
        notify([event])
        delivery = WebhookDelivery.objects.filter(key=event.key).first()
    if delivery is None:  # notify logged why
        raise NurturePushError("The push could not be recorded: see the server log, then try again.", code="failed")
    return SegmentPush(delivery=delivery, leads=len(leads), truncated=bool(data["truncated"]))
