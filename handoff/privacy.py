"""The handoff's part of a person's export and erasure (``leadflow.leads.privacy``):
the lead's handoffs with their notes and audit trail, and the notifications and
webhook deliveries that mention the person. Registered by ``HandoffConfig.ready``.

Erasure keeps the handoffs (their status, reason code, times and reps: the dashboard's
sales outcomes count them) and scrubs what a person wrote or what names the erased
person: notes, the free text of the audit trail, notification titles and bodies,
webhook payloads. A handoff still open is closed: nobody should work an erased lead."""

from typing import Any

from django.db.models import Model, Q, QuerySet, TextField
from django.db.models.functions import Cast

from handoff.models import (
    OPEN_STATUSES,
    CachedEvaluation,
    Handoff,
    HandoffAction,
    HandoffEvent,
    Notification,
    WebhookDelivery,
)
from handoff.services import handoff_close_for_lead, handoff_link
from leadflow.leads.models import Lead
from leadflow.leads.privacy import ERASED, Scrubber

CLOSED_BY_ERASURE = "The person was erased."
# Free text in an audit event's details, written by a person: scrubbed whole.
_FREE_TEXT_DETAILS = {
    HandoffAction.ACCEPTED: ("note",),
    HandoffAction.REJECTED: ("note",),
    HandoffAction.CLOSED: ("reason",),
}


def _username(user: Any) -> str | None:
    return None if user is None else str(user.get_username())


def _mentions(lead: Lead, handoff_ids: list[Any], scrubber: Scrubber | None) -> tuple[Q, Q]:
    """Notifications and webhook deliveries about the lead: keyed by one of its handoffs,
    carrying its id, or naming the person (``scrubber``'s terms)."""
    notifications = Q(pk__in=[])
    deliveries = Q(payload__data__lead=str(lead.public_id))
    for public_id in handoff_ids:
        notifications |= Q(link=handoff_link(public_id))
        deliveries |= Q(key__startswith=f"handoff:{public_id}:")
    for term in scrubber.terms if scrubber else ():
        notifications |= Q(title__icontains=term) | Q(body__icontains=term)
        deliveries |= Q(payload_text__icontains=term)
    return notifications, deliveries


def _deliveries(condition: Q) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.annotate(payload_text=Cast("payload", TextField())).filter(condition)


class HandoffData:
    holds: tuple[type[Model], ...] = (Handoff, HandoffEvent, Notification, WebhookDelivery, CachedEvaluation)

    def export(self, *, lead: Lead) -> dict[str, Any]:
        handoffs = list(
            Handoff.objects.filter(lead=lead)
            .select_related("claimed_by", "model")
            .prefetch_related("events__actor")
            .order_by("created_at", "id")
        )
        terms = Scrubber()  # the person's identities, as erasure finds them
        terms.add(lead.email, lead.name, lead.external_id)
        notifications, deliveries = _mentions(lead, [h.public_id for h in handoffs], terms)
        return {
            "handoffs": [
                {
                    "id": handoff.public_id,
                    "status": handoff.status,
                    "model": handoff.model.slug if handoff.model else None,
                    "priority": handoff.priority,
                    "created_at": handoff.created_at,
                    "due_at": handoff.due_at,
                    "claimed_by": _username(handoff.claimed_by),
                    "claimed_at": handoff.claimed_at,
                    "decided_at": handoff.decided_at,
                    "reject_reason": handoff.reject_reason,
                    "note": handoff.note,
                    "checklist": handoff.checklist,
                    "lead_attributes": handoff.lead_attributes,
                    "audit": [
                        {
                            "action": event.action,
                            "actor": _username(event.actor),
                            "at": event.at,
                            "details": event.details,
                        }
                        for event in sorted(handoff.events.all(), key=lambda e: (e.at, e.pk))
                    ],
                }
                for handoff in handoffs
            ],
            # Score quality's evaluations of the handoffs (``handoff.quality``): derived scores.
            "handoff_evaluations": [
                {
                    "handoff": handoff_id,
                    "ruleset_version": version,
                    "score": score,
                    "fit": fit,
                    "behaviour": behaviour,
                    "grade": grade,
                }
                for handoff_id, version, score, fit, behaviour, grade in CachedEvaluation.objects.filter(
                    handoff__lead=lead
                )
                .order_by("handoff__created_at", "ruleset__version")
                .values_list("handoff__public_id", "ruleset__version", "score", "fit", "behaviour", "grade")
            ],
            "notifications": [
                {
                    "recipient": _username(n.recipient),
                    "kind": n.kind,
                    "title": n.title,
                    "body": n.body,
                    "created_at": n.created_at,
                    "read_at": n.read_at,
                }
                for n in Notification.objects.filter(notifications)
                .select_related("recipient")
                .order_by("created_at", "id")
            ],
            "webhook_deliveries": [
                {
                    "key": d.key,
                    "payload": d.payload,
                    "created_at": d.created_at,
                    "attempts": d.attempts,
                    "delivered_at": d.delivered_at,
                    "failed_at": d.failed_at,
                }
                for d in _deliveries(deliveries).order_by("created_at", "id")
            ],
        }

    def erase(self, *, lead: Lead, scrubber: Scrubber) -> dict[str, int]:
        open_before = Handoff.objects.filter(lead=lead, status__in=OPEN_STATUSES).count()
        handoff_close_for_lead(lead=lead, reason=CLOSED_BY_ERASURE, actor=None)
        handoffs = list(Handoff.objects.select_for_update().filter(lead=lead).order_by("id"))
        # Scores derived from the person's attributes and events; score quality leaves out
        # the handoffs of erased leads anyway.
        evaluations, _by_model = CachedEvaluation.objects.filter(handoff__lead=lead).delete()
        for handoff in handoffs:
            if handoff.note and handoff.note != CLOSED_BY_ERASURE:
                scrubber.add(handoff.note)
        noted = Handoff.objects.filter(lead=lead).exclude(note="").exclude(note=CLOSED_BY_ERASURE).update(note=ERASED)
        # The attributes kept for score quality: the person's profile as it was.
        Handoff.objects.filter(lead=lead, lead_attributes__isnull=False).update(lead_attributes=None)
        audit = 0
        for event in HandoffEvent.objects.filter(handoff__lead=lead).order_by("id"):
            details = dict(event.details)
            for key in _FREE_TEXT_DETAILS.get(HandoffAction(event.action), ()):
                if details.get(key) and details[key] != CLOSED_BY_ERASURE:
                    details[key] = ERASED
            details = scrubber.json(details)
            if details != event.details:
                HandoffEvent.objects.filter(pk=event.pk).update(details=details)
                audit += 1
        notifications_about, deliveries_about = _mentions(lead, [h.public_id for h in handoffs], scrubber)
        notified = 0
        for notification in Notification.objects.filter(notifications_about).order_by("id"):
            notified += Notification.objects.filter(pk=notification.pk).update(
                title=scrubber.text(notification.title)[:200], body=scrubber.text(notification.body)
            )
        delivered = 0
        for delivery in _deliveries(deliveries_about).order_by("id"):
            payload = scrubber.json(delivery.payload)
            data = payload.get("data") if isinstance(payload, dict) else None
            if isinstance(data, dict) and data.get("note"):
                data["note"] = ERASED
            delivered += WebhookDelivery.objects.filter(pk=delivery.pk).update(payload=payload)
        return {
            "handoffs_closed": open_before,
            "handoff_evaluations_deleted": evaluations,
            "handoff_notes_scrubbed": noted,
            "handoff_audit_scrubbed": audit,
            "notifications_scrubbed": notified,
            "webhook_deliveries_scrubbed": delivered,
        }
