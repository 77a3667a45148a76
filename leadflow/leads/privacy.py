"""Privacy operations on one person: export everything we hold about them, erase it,
and keep their e-mail address from coming back (the suppression list).

The data of a lead lives in every app: the core holds the lead, its events and its
stage history; scoring its scores; handoff its handoffs, their audit trail, and the
notifications and webhook deliveries that mention it. The core may not import the
apps above it, so each registers a ``PersonalData`` holder when its app is ready
(``scoring.apps``, ``handoff.apps``), the way scoring registers the scores provider
(``leadflow.leads.scores``). ``person_export`` gathers every holder's sections into
one document; ``person_erase`` asks each to erase or scrub its records, in one
transaction.

Erasure keeps the lead row as an anonymous **tombstone** (``Lead.erased_at``): no
identity, profile, traits, account or events; its stage, stage dates, source and UTM
fields stay, as do its stage changes and handoffs (reasons and notes scrubbed) and its
outcomes from the CRM (their outcome_id and properties scrubbed), so the dashboard's
funnel, sales outcomes, pipeline and won amounts count it as before. Lists, pages and the API no
longer show it (``selectors.lead_list``).

Who may: scoring admins and staff (``can_manage_privacy``).
"""

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import CharField, Model, Q, QuerySet, TextField, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from leadflow.db import SqlNames, insert_ignore_conflicts_returning
from leadflow.leads.accounts import accounts_left_after_commit
from leadflow.leads.models import (
    LEAD_PROFILE_FIELDS,
    LEAD_UTM_FIELDS,
    AnonymousId,
    Erasure,
    Event,
    ImportRejection,
    Lead,
    LeadMerge,
    Outcome,
    SegmentDrop,
    StageChange,
    SuppressedEmail,
)
from leadflow.leads.roles import SCORING_ADMIN, has_role
from leadflow.leads.validation import normalise_email

PRIVACY_ROLES = (SCORING_ADMIN,)
ERASED = "[erased]"
# Shorter terms would scrub innocent words ("Al" in "Alert"); a name that short is
# still removed from the lead itself, and from every record tied to it.
MIN_SCRUB_TERM = 3


def can_manage_privacy(user: Any) -> bool:
    """Export, erase and the suppression list: scoring admins (they run the data) and staff."""
    return has_role(user, *PRIVACY_ROLES)


# --- The suppression list ---------------------------------------------------------------------------
def email_hash(email: str) -> str:
    """The keyed hash (HMAC-SHA256) of a normalised address: what the suppression list and
    the erasure log keep instead of the address. Keyed with ``PRIVACY_HASH_KEY`` (the
    SECRET_KEY by default), so the list cannot be checked against guessed addresses
    without the key. Changing the key lifts every suppression: set a key of its own
    before rotating the SECRET_KEY."""
    key = (settings.PRIVACY_HASH_KEY or settings.SECRET_KEY).encode()
    return hmac.new(key, normalise_email(email).encode(), hashlib.sha256).hexdigest()


SUPPRESSED_MESSAGE = (
    "This e-mail address belongs to a person who was erased at their request: it is on the suppression "
    "list and cannot be stored again. Remove it from your list; an admin can lift the suppression if the "
    "person asks to be added again."
)


def emails_suppressed(emails: Iterable[str]) -> set[str]:
    """Those of these (normalised) addresses that are on the suppression list: one query."""
    by_hash = {email_hash(email): email for email in emails}
    if not by_hash:
        return set()
    if connection.vendor == "postgresql":
        # An array, as ingest's identity lookups: an IN list of a batch's addresses costs
        # more to build than to run, and ingest asks on every request.
        suppressed = SqlNames(SuppressedEmail)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {suppressed.email_hash} FROM {suppressed.table} WHERE {suppressed.email_hash} = ANY(%s)",  # noqa: S608 -- names from the model
                [list(by_hash)],
            )
            found = [digest for (digest,) in cursor.fetchall()]
    else:
        found = list(SuppressedEmail.objects.filter(email_hash__in=list(by_hash)).values_list("email_hash", flat=True))
    return {by_hash[digest] for digest in found}


def suppression_get(*, email: str) -> SuppressedEmail | None:
    return SuppressedEmail.objects.filter(email_hash=email_hash(email)).first()


def suppression_lift(*, email: str) -> bool:
    """Take the address off the suppression list (the person asked to be added again);
    False when it was not on it."""
    deleted, _ = SuppressedEmail.objects.filter(email_hash=email_hash(email)).delete()
    return bool(deleted)


def suppressions_lift_hashes(*, hashes: Iterable[str]) -> int:
    """Lift the suppressions of these hashes (the admin, which shows hashes, not addresses)."""
    deleted, _ = SuppressedEmail.objects.filter(email_hash__in=list(hashes)).delete()
    return deleted


def _suppress(digest: str) -> None:
    insert_ignore_conflicts_returning(SuppressedEmail, ["email_hash", "created_at"], [(digest, timezone.now())], ["id"])


# --- Holders of personal data -------------------------------------------------------------------------
@dataclass
class Scrubber:
    """Removes the erased person's identifying text (e-mail, name, external id, and what
    the apps add: the notes of their handoffs) from text and JSON written about them."""

    terms: list[str] = field(default_factory=list)

    def add(self, *terms: str | None) -> None:
        for term in terms:
            term = (term or "").strip()
            if len(term) >= MIN_SCRUB_TERM and term.lower() not in (t.lower() for t in self.terms):
                self.terms.append(term)

    @property
    def _pattern(self) -> re.Pattern[str] | None:
        if not self.terms:
            return None
        # Longest first: a name inside a note must not leave the rest of the note.
        alternatives = sorted(self.terms, key=len, reverse=True)
        return re.compile("|".join(re.escape(term) for term in alternatives), re.IGNORECASE)

    def text(self, value: str) -> str:
        pattern = self._pattern
        return value if pattern is None or not value else pattern.sub(ERASED, value)

    def json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(item) for item in value]
        if isinstance(value, dict):
            return {key: self.json(item) for key, item in value.items()}
        return value


class PersonalData(Protocol):
    """What an app holds about a lead.

    ``holds``: the models whose rows it exports and erases: every model that refers to
    a lead, directly or through another, must be some holder's (a test walks the foreign
    keys to Lead and checks it)."""

    holds: tuple[type[Model], ...]

    def export(self, *, lead: Lead) -> dict[str, Any]:
        """Sections of the export document (JSON-serialisable with DjangoJSONEncoder)."""
        ...

    def erase(self, *, lead: Lead, scrubber: Scrubber) -> dict[str, int]:
        """Delete or scrub the lead's records, in the caller's transaction, before the
        core blanks the lead; returns how many of each kind. ``scrubber`` already knows
        the person's identities; a holder may add terms (notes) for the holders after it."""
        ...


_holders: list[PersonalData] = []


def holder_register(holder: PersonalData) -> None:
    """Called by each app's ``ready``; registering the same kind of holder twice replaces it."""
    _holders[:] = [existing for existing in _holders if type(existing) is not type(holder)]
    _holders.append(holder)


def holders() -> list[PersonalData]:
    return [CoreData(), *_holders]


def _username(user: Any) -> str | None:
    return None if user is None else str(user.get_username())


class CoreData:
    """The core's records: the lead (identities, anonymous ids, profile, traits), its
    events, its stage history, its outcomes from the CRM, the merges into it, the
    Segment messages dropped that name it, and the admin's log of edits to it."""

    holds: tuple[type[Model], ...] = (Lead, Event, StageChange, Outcome, AnonymousId, LeadMerge)

    def export(self, *, lead: Lead) -> dict[str, Any]:
        lead = Lead.objects.select_related("source", "owner", "account").get(pk=lead.pk)
        profile = {name: getattr(lead, name) for name in (*LEAD_PROFILE_FIELDS, *LEAD_UTM_FIELDS)}
        events = lead.events.select_related("source").order_by("occurred_at", "id")
        changes = StageChange.objects.filter(lead=lead).select_related("actor").order_by("at", "id")
        outcomes = lead.outcomes.select_related("source").order_by("occurred_at", "id")
        return {
            "lead": {
                "id": lead.public_id,
                "identities": {
                    "email": lead.email,
                    "external_id": lead.external_id,
                    "anonymous_ids": sorted(lead.anonymous_ids.values_list("anonymous_id", flat=True)),
                },
                **profile,
                "traits": lead.traits,
                "source": lead.source.slug if lead.source else None,
                "account": lead.account.name if lead.account else None,
                "stage": lead.stage,
                "mql_at": lead.mql_at,
                "sql_at": lead.sql_at,
                "recycled_at": lead.recycled_at,
                "owner": _username(lead.owner),
                "last_activity_at": lead.last_activity_at,
                "created_at": lead.created_at,
                "updated_at": lead.updated_at,
            },
            "events": [
                {
                    "event_id": event.event_id,
                    "type": event.type,
                    "properties": event.properties,
                    "occurred_at": event.occurred_at,
                    "received_at": event.received_at,
                    "source": event.source.slug,
                }
                for event in events
            ],
            "stage_history": [
                {
                    "from_stage": change.from_stage,
                    "to_stage": change.to_stage,
                    "at": change.at,
                    "actor": _username(change.actor),
                    "reason": change.reason,
                    "qualified_by": change.qualified_by,
                    "ruleset_version": change.ruleset_version,
                    "score": change.score,
                }
                for change in changes
            ],
            "outcomes": [
                {
                    "outcome_id": outcome.outcome_id,
                    "kind": outcome.kind,
                    "amount": outcome.amount,
                    "currency": outcome.currency,
                    "occurred_at": outcome.occurred_at,
                    "received_at": outcome.received_at,
                    "properties": outcome.properties,
                    "source": outcome.source.slug,
                }
                for outcome in outcomes
            ],
            # Rows of imports that were not imported, with this person's e-mail.
            "import_rejections": [
                {"file": row.job.filename, "line": row.line, "cells": row.cells, "errors": row.errors}
                for row in _import_rejections(lead).select_related("job").order_by("id")
            ],
            "merges": [
                {
                    "at": merge.at,
                    "merged_lead": merge.merged_public_id,
                    "merged_identities": merge.merged_identities,
                    "actor": _username(merge.actor),
                    "reason": merge.reason,
                }
                for merge in lead.merges.select_related("actor").order_by("at", "id")
            ],
            "segment_drops": [
                {"at": drop.at, "source": drop.source.slug, "errors": drop.errors, "message": drop.message}
                for drop in _segment_drops(lead).select_related("source").order_by("at", "id")
            ],
            "admin_log": [
                {
                    "action_time": entry.action_time,
                    "action": entry.get_action_flag_display(),
                    "change": entry.change_message,
                }
                for entry in _admin_log(lead).order_by("action_time", "id")
            ],
        }

    def erase(self, *, lead: Lead, scrubber: Scrubber) -> dict[str, int]:
        # Before the anonymous ids go: the dropped messages that name the person by them too.
        segment_drops, _ = _segment_drops(lead).delete()
        anonymous_ids, _ = AnonymousId.objects.filter(lead=lead).delete()
        # A merge's record keeps when, who and the counts; whom it merged (identities, a name in the reason) goes.
        merges = LeadMerge.objects.filter(survivor=lead).update(merged_identities={}, reason=ERASED)
        events, _ = Event.objects.filter(lead=lead).delete()
        # A reason a person wrote may name the person; the scoring system's are generated.
        reasons = StageChange.objects.filter(lead=lead, actor__isnull=False).exclude(reason="").update(reason=ERASED)
        admin_log = _admin_log(lead).update(object_repr=ERASED, change_message="")
        # An outcome keeps what the dashboard and score quality count (kind, amount, currency,
        # date), like the tombstone's stage and its handoffs; the CRM's id for it and what
        # else the CRM sent (free text, names) go. The id stays unique per source.
        outcomes = Outcome.objects.filter(lead=lead).update(
            outcome_id=Concat(Value(f"{ERASED} "), Cast("id", CharField())), properties={}
        )
        import_rejections, _ = _import_rejections(lead).delete()
        return {
            "anonymous_ids": anonymous_ids,
            "merges_scrubbed": merges,
            "segment_drops": segment_drops,
            "events": events,
            "import_rejections": import_rejections,
            "stage_reasons_scrubbed": reasons,
            "outcomes_scrubbed": outcomes,
            "admin_log_scrubbed": admin_log,
        }


def _import_rejections(lead: Lead) -> QuerySet[ImportRejection]:
    """Rejected import rows with the lead's e-mail (none for a lead without one)."""
    return ImportRejection.objects.filter(email=lead.email) if lead.email else ImportRejection.objects.none()


def _segment_drops(lead: Lead) -> QuerySet[SegmentDrop]:
    """The dropped Segment messages that name the person: by e-mail, external id (userId)
    or one of their anonymous ids, anywhere in the message as sent."""
    terms = [term for term in (lead.email, lead.external_id) if term]
    terms += list(AnonymousId.objects.filter(lead=lead).values_list("anonymous_id", flat=True))
    if not terms:
        return SegmentDrop.objects.none()
    condition = Q()
    for term in terms:
        condition |= Q(message_text__icontains=json.dumps(term)[1:-1])
    return SegmentDrop.objects.annotate(message_text=Cast("message", TextField())).filter(condition)


def _admin_log(lead: Lead) -> QuerySet[LogEntry]:
    return LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Lead), object_id=str(lead.pk))


# --- Export -------------------------------------------------------------------------------------------------
def person_export(*, lead: Lead) -> dict[str, Any]:
    """Everything we hold about the person of ``lead``, as one JSON document: the lead
    (identities, profile, traits), events, stage history, scores and their explanations,
    handoffs with their notes and audit trail, and the notifications and webhook
    deliveries that mention them."""
    document: dict[str, Any] = {"exported_at": timezone.now(), "format": "leadflow-person-export/1"}
    for holder in holders():
        document.update(holder.export(lead=lead))
    # Plain JSON values (decimals and times as strings), whatever renders it.
    return dict(json.loads(json.dumps(document, cls=DjangoJSONEncoder)))


# --- Erase --------------------------------------------------------------------------------------------------
class AlreadyErased(Exception):
    pass


def person_erase(*, lead: Lead, actor: Any) -> Erasure:
    """Erase the person of ``lead``, in one transaction: every holder deletes or scrubs
    its records (events and scores deleted; names, addresses and notes scrubbed from
    handoffs, their audit trail, notifications and webhook deliveries), the lead becomes
    an anonymous tombstone, the address goes on the suppression list, and an Erasure
    records who, when, the address's hash and the counts (no personal data)."""
    with transaction.atomic():
        locked = Lead.objects.select_for_update().filter(pk=lead.pk).first()
        if locked is None or locked.erased_at is not None:
            raise AlreadyErased("This person was already erased.")
        scrubber = Scrubber()
        scrubber.add(locked.email, locked.name, locked.external_id)
        counts: dict[str, int] = {}
        for holder in holders():
            counts.update(holder.erase(lead=locked, scrubber=scrubber))
        previous_account = locked.account_id
        now = timezone.now()
        digest = email_hash(locked.email) if locked.email else ""
        blank = {name: "" for name in (*LEAD_PROFILE_FIELDS, *LEAD_UTM_FIELDS) if name != "company_size"}
        # UTM fields are campaigns, not the person: the dashboard's breakdown by campaign keeps them.
        for name in LEAD_UTM_FIELDS:
            blank.pop(name)
        Lead.objects.filter(pk=locked.pk).update(
            email=None,
            external_id=None,
            company_size=None,
            traits={},
            account=None,
            last_activity_at=None,
            needs_rescore=False,
            erased_at=now,
            updated_at=now,
            **blank,
        )
        accounts_left_after_commit([previous_account])
        if digest:
            _suppress(digest)
        return Erasure.objects.create(
            at=now, actor=actor, actor_username=_username(actor) or "", email_hash=digest, counts=counts
        )
