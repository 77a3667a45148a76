"""Writes of the lead core: identity resolution, lead upsert, event ingestion."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from leadflow.db import atomic_with_retry, insert_ignore_conflicts_returning, update_from_values
from leadflow.leads.keys import INGEST_KIND, PERSONAL_KIND, generate_key
from leadflow.leads.models import ApiToken, Event, IngestKey, Lead, Source
from leadflow.leads.validation import Errors, LeadInput, validate_event

logger = logging.getLogger(__name__)

_RESOLVE_ATTEMPTS = 3


class IdentityConflict(Exception):
    def __init__(self, errors: Errors):
        super().__init__(str(errors))
        self.errors = errors


@dataclass
class ResolvedLeads:
    leads: list[Lead | None]
    errors: dict[int, Errors] = field(default_factory=dict)
    created: set[int] = field(default_factory=set)  # pks of leads this call created


def _apply_input(lead: Lead, data: LeadInput, activity_at: datetime | None, changed: set[str]) -> None:
    """Upsert the input's identity, profile and traits onto ``lead`` (a locked or new row)."""

    def put(name: str, value: Any) -> None:
        if getattr(lead, name) != value:
            setattr(lead, name, value)
            changed.add(name)

    if data.email and lead.email != data.email:
        put("email", data.email)
    if data.external_id and not lead.external_id:
        put("external_id", data.external_id)
    for name, value in data.profile.items():
        put(name, value)
    if data.traits:
        merged = {**lead.traits, **data.traits}
        # A trait sent as null is removed.
        put("traits", {key: value for key, value in merged.items() if value is not None})
    if activity_at is not None and (lead.last_activity_at is None or activity_at > lead.last_activity_at):
        put("last_activity_at", activity_at)
    put("needs_rescore", True)


def _identity_conflict(lead: Lead, data: LeadInput, by_email: Lead | None, by_external: Lead | None) -> Errors | None:
    if by_email is not None and by_external is not None and by_email is not by_external:
        return {
            "external_id": [
                f"Belongs to another lead than the email {data.email}: send one of the two, or merge the leads first."
            ]
        }
    if data.external_id and lead.external_id and lead.external_id != data.external_id:
        return {
            "external_id": [
                f"The lead with email {lead.email} already has external_id {lead.external_id!r}; "
                "external ids do not change. Send the existing one or leave it out."
            ]
        }
    return None


@dataclass
class Identification:
    """Phase one of an upsert: which lead each input belongs to. New leads are
    already inserted (with everything the batch says about them); existing leads
    still have the inputs' changes to apply, under lock, in phase two."""

    inputs: Sequence[LeadInput]
    activity: Sequence[datetime | None] | None
    lead_ids: list[int | None]
    errors: dict[int, Errors] = field(default_factory=dict)
    created: set[int] = field(default_factory=set)


def leads_identify(
    *, source: Source, inputs: Sequence[LeadInput], activity: Sequence[datetime | None] | None = None
) -> Identification:
    """Match each input to a lead by email or external_id, without locking anyone:
    identities are checked here, new leads are inserted (sorted, ON CONFLICT DO
    NOTHING) and an identity a concurrent request created first is matched again."""
    found = Identification(inputs=inputs, activity=activity, lead_ids=[None] * len(inputs))
    pending = list(range(len(inputs)))
    for _attempt in range(_RESOLVE_ATTEMPTS):
        if not pending:
            break
        emails = {inputs[i].email for i in pending if inputs[i].email}
        externals = {inputs[i].external_id for i in pending if inputs[i].external_id}
        existing = list(
            Lead.objects.filter(Q(email__in=emails) | Q(external_id__in=externals)).only("id", "email", "external_id")
        )
        by_email: dict[str, Lead] = {lead.email: lead for lead in existing if lead.email}
        by_external: dict[str, Lead] = {lead.external_id: lead for lead in existing if lead.external_id}
        assigned: dict[int, Lead] = {}
        for index in pending:
            data = inputs[index]
            found_email = by_email.get(data.email) if data.email else None
            found_external = by_external.get(data.external_id) if data.external_id else None
            lead = found_email or found_external
            if lead is None:
                lead = Lead(source=source, email=data.email, external_id=data.external_id)
            conflict = _identity_conflict(lead, data, found_email, found_external)
            if conflict:
                found.errors[index] = conflict
                continue
            if lead.pk is None:  # a new lead gathers everything the batch says about it
                _apply_input(lead, data, activity[index] if activity else None, set())
            elif data.email and lead.email != data.email:
                by_email.pop(lead.email or "", None)
                lead.email = data.email
            if data.external_id and not lead.external_id:
                lead.external_id = data.external_id
            if lead.email:
                by_email[lead.email] = lead
            if lead.external_id:
                by_external[lead.external_id] = lead
            assigned[index] = lead
        new_leads = sorted(
            {id(lead): lead for lead in assigned.values() if lead.pk is None}.values(),
            key=lambda lead: (lead.email or "", lead.external_id or ""),
        )
        found.created.update(pk for pk, _public_id in _insert_new_leads(new_leads))
        pending = [index for index, lead in assigned.items() if lead.pk is None]
        for index, lead in assigned.items():
            if lead.pk is not None:
                found.lead_ids[index] = lead.pk
    for index in pending:
        found.errors[index] = {"non_field_errors": ["Could not resolve this lead under concurrent updates; retry."]}
    return found


def leads_apply(*, identification: Identification) -> dict[int, Lead]:
    """Phase two: lock the existing leads (in id order), apply the inputs' identity,
    profile, traits and activity to the fresh rows, flag them for rescoring, and
    write every change in one statement. Returns the touched leads by id."""
    existing_ids = sorted({pk for pk in identification.lead_ids if pk is not None and pk not in identification.created})
    leads = {
        lead.pk: lead for lead in Lead.objects.select_for_update(no_key=True).filter(id__in=existing_ids).order_by("id")
    }
    changed: set[str] = set()
    touched: set[int] = set()
    for index, pk in enumerate(identification.lead_ids):
        lead = leads.get(pk) if pk is not None else None
        if lead is None:
            continue
        data = identification.inputs[index]
        if _identity_conflict(lead, data, None, None):
            # Changed by a concurrent request since phase one: keep the event, skip the upsert.
            logger.warning("Lead %s changed identity concurrently; input %d not applied", pk, index)
            continue
        activity = identification.activity[index] if identification.activity else None
        _apply_input(lead, data, activity, changed)
        touched.add(lead.pk)
    if changed and touched:
        now = timezone.now()  # the sweeper reads updated_at
        fields = [*sorted(changed), "updated_at"]
        update_from_values(
            Lead,
            fields,
            [[pk, *(getattr(leads[pk], name) for name in fields[:-1]), now] for pk in sorted(touched)],
        )
    created = Lead.objects.in_bulk(sorted(identification.created)) if identification.created else {}
    return {**leads, **created}


def leads_resolve(
    *, source: Source, inputs: Sequence[LeadInput], activity: Sequence[datetime | None] | None = None
) -> ResolvedLeads:
    """Find or create the lead of each input, upserting profile and traits, and flag
    every touched lead for rescoring. Must run inside a transaction."""
    identification = leads_identify(source=source, inputs=inputs, activity=activity)
    leads = leads_apply(identification=identification)
    return ResolvedLeads(
        leads=[leads.get(pk) if pk is not None else None for pk in identification.lead_ids],
        errors=identification.errors,
        created=identification.created,
    )


_LEAD_INSERT_FIELDS = [f for f in Lead._meta.concrete_fields if not f.primary_key]


def _insert_new_leads(leads: list[Lead]) -> list[tuple[int, str]]:
    """Insert new leads, skipping identities a concurrent request created first;
    sets ``pk`` on the inserted ones and returns their (pk, public_id)."""
    now = timezone.now()
    for lead in leads:
        lead.updated_at = now
    inserted = insert_ignore_conflicts_returning(
        Lead,
        [f.name for f in _LEAD_INSERT_FIELDS],
        [[getattr(lead, f.attname) for f in _LEAD_INSERT_FIELDS] for lead in leads],
        ["id", "public_id"],
    )
    pk_by_public_id = {public_id: pk for pk, public_id in inserted}
    for lead in leads:
        lead.pk = pk_by_public_id.get(lead.public_id)
    return inserted


def lead_upsert(*, source: Source, data: LeadInput) -> tuple[Lead, bool]:
    """Create or update one lead by identity; returns (lead, created)."""

    def upsert() -> tuple[Lead, bool]:
        resolved = leads_resolve(source=source, inputs=[data])
        lead = resolved.leads[0]
        if lead is None:
            raise IdentityConflict(resolved.errors.get(0, {"non_field_errors": ["Could not resolve the lead."]}))
        lead_ids = [lead.pk]
        transaction.on_commit(lambda: request_scoring(lead_ids), robust=True)
        return lead, lead.pk in resolved.created

    return atomic_with_retry(upsert)


def lead_update(*, lead: Lead, changes: dict[str, Any]) -> Lead:
    """Edit profile fields by hand; traits are merged (null removes one). Fit may change: rescore."""
    with transaction.atomic():
        lead = Lead.objects.select_for_update().get(pk=lead.pk)
        fields = {"needs_rescore", "updated_at"}
        for name, value in changes.items():
            if name == "traits":
                merged = {**lead.traits, **value}
                value = {key: item for key, item in merged.items() if item is not None}
            setattr(lead, name, value)
            fields.add(name)
        lead.needs_rescore = True
        lead.save(update_fields=sorted(fields))
        lead_ids = [lead.pk]
        transaction.on_commit(lambda: request_scoring(lead_ids), robust=True)
    return lead


def request_scoring(lead_ids: list[int]) -> None:
    """Enqueue scoring for flagged leads. Called after commit; if the broker is
    down the leads stay flagged and the sweeper scores them later."""
    from scoring.tasks import score_leads

    try:
        score_leads.delay(lead_ids)
    except Exception:  # the sweeper is the safety net for any broker failure
        logger.warning(
            "Could not enqueue scoring for %d leads; the sweeper will pick them up.", len(lead_ids), exc_info=True
        )


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    lead_ids: list[int] = field(default_factory=list)


_DIFFERENT_PAYLOAD = (
    "An event with this event_id was already received with a different payload. Use a new event_id for a new event."
)


def events_ingest(*, source: Source, payloads: Sequence[Any], schedule_scoring: bool = True) -> IngestResult:
    """Validate and store a batch of events; a bad item never sinks the good ones.

    ``schedule_scoring=False`` leaves the touched leads flagged without enqueuing
    scoring, for callers that score them themselves (the demo replays history).

    Events are inserted set-based with ON CONFLICT DO NOTHING on (source, event_id),
    so a resent event is stored once however many requests race. Every lead
    touched is flagged ``needs_rescore`` in the same transaction, and scoring is
    enqueued after commit.
    """
    now = timezone.now()
    result = IngestResult()
    seen: dict[str, str] = {}
    valid = []
    for index, payload in enumerate(payloads):
        event, errors = validate_event(payload, now=now)
        if event is None:
            result.rejected.append({"index": index, "errors": errors})
            continue
        earlier = seen.get(event.event_id)
        if earlier is None:
            seen[event.event_id] = event.fingerprint
            valid.append((index, event))
        elif earlier == event.fingerprint:
            result.duplicates += 1
        else:
            result.rejected.append(
                {
                    "index": index,
                    "errors": {"event_id": ["Repeats an event_id of this batch with a different payload."]},
                }
            )

    def store() -> IngestResult:
        stored = IngestResult(duplicates=result.duplicates, rejected=list(result.rejected))
        known = dict(
            Event.objects.filter(source=source, event_id__in=list(seen)).values_list("event_id", "fingerprint")
        )
        fresh = []
        for index, event in valid:
            fingerprint = known.get(event.event_id)
            if fingerprint is None:
                fresh.append((index, event))
            elif fingerprint == event.fingerprint:
                stored.duplicates += 1
            else:
                stored.rejected.append({"index": index, "errors": {"event_id": [_DIFFERENT_PAYLOAD]}})

        # Lock order, the same in every batch: new leads (sorted), events (sorted), existing leads (by id).
        identification = leads_identify(
            source=source, inputs=[event.lead for _, event in fresh], activity=[event.occurred_at for _, event in fresh]
        )
        to_insert = {}
        rows = []
        for position, (index, event) in sorted(enumerate(fresh), key=lambda item: item[1][1].event_id):
            lead_id = identification.lead_ids[position]
            if lead_id is None:
                stored.rejected.append({"index": index, "errors": {"lead": identification.errors[position]}})
                continue
            to_insert[event.event_id] = (index, event)
            rows.append(
                [
                    lead_id,
                    source.pk,
                    event.event_id,
                    event.type,
                    event.properties,
                    event.occurred_at,
                    now,
                    event.fingerprint,
                ]
            )
        inserted = {
            row[0]
            for row in insert_ignore_conflicts_returning(
                Event,
                ["lead", "source", "event_id", "type", "properties", "occurred_at", "received_at", "fingerprint"],
                rows,
                ["event_id"],
            )
        }
        stored.accepted = len(inserted)
        lost_races = [event_id for event_id in to_insert if event_id not in inserted]
        if lost_races:
            # Another request stored these event_ids between our check and insert.
            winners = dict(
                Event.objects.filter(source=source, event_id__in=lost_races).values_list("event_id", "fingerprint")
            )
            for event_id in lost_races:
                index, event = to_insert[event_id]
                if winners.get(event_id) == event.fingerprint:
                    stored.duplicates += 1
                else:
                    stored.rejected.append({"index": index, "errors": {"event_id": [_DIFFERENT_PAYLOAD]}})

        leads_apply(identification=identification)
        stored.lead_ids = sorted({pk for pk in identification.lead_ids if pk is not None})
        if stored.lead_ids and schedule_scoring:
            lead_ids = stored.lead_ids
            transaction.on_commit(lambda: request_scoring(lead_ids), robust=True)
        return stored

    result = atomic_with_retry(store)
    result.rejected.sort(key=lambda item: item["index"])
    return result


def ingest_key_create(*, source: Source, label: str = "") -> tuple[IngestKey, str]:
    """Create an ingest key; returns it and the secret, which is never shown again."""
    new = generate_key(INGEST_KIND)
    key = IngestKey.objects.create(source=source, label=label, prefix=new.prefix, key_hash=new.key_hash)
    return key, new.key


def ingest_key_revoke(*, key: IngestKey) -> None:
    IngestKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_token_create(*, user: Any, name: str = "", expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    new = generate_key(PERSONAL_KIND)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=new.prefix, key_hash=new.key_hash, expires_at=expires_at
    )
    return token, new.key


def source_get_or_create(*, name: str) -> tuple[Source, bool]:
    """The source called ``name`` (any case) or with that slug, created if missing; (source, created)."""
    from django.utils.text import slugify

    name = name.strip()[:100]
    existing = Source.objects.filter(name__iexact=name).first() or Source.objects.filter(slug=name).first()
    if existing:
        return existing, False
    base = slugify(name)[:90] or "source"
    slug, n = base, 1
    while Source.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return Source.objects.create(name=name, slug=slug), True
