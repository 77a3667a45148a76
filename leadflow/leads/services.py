"""Writes of the lead core: identity resolution, lead upsert, event ingestion."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from leadflow.db import SqlNames, atomic_with_retry, insert_ignore_conflicts_returning, pg_array, update_from_values
from leadflow.leads import rollups
from leadflow.leads.accounts import ACCOUNT_TRAIT, account_ids, accounts_left_after_commit
from leadflow.leads.auth import ingest_keys_changed
from leadflow.leads.keys import INGEST_KIND, PERSONAL_KIND, generate_key
from leadflow.leads.merge import MergeError, leads_merge_rows
from leadflow.leads.models import AnonymousId, ApiToken, Event, IngestKey, Lead, Outcome, Source, Stage
from leadflow.leads.privacy import SUPPRESSED_MESSAGE, emails_suppressed
from leadflow.leads.scores import intent_event_types
from leadflow.leads.scoring_requests import request_scoring
from leadflow.leads.validation import (
    UNKNOWN_LEAD_MESSAGE,
    Errors,
    LeadInput,
    OutcomeInput,
    lead_traits_error,
    segment_event_types_error,
    traits_merge,
    validate_event,
    validate_outcome,
)

logger = logging.getLogger(__name__)

_RESOLVE_ATTEMPTS = 3


class IdentityConflict(Exception):
    def __init__(self, errors: Errors):
        super().__init__(str(errors))
        self.errors = errors


class _Known:
    """An existing lead as identity resolution sees it: no model instance needed."""

    __slots__ = ("email", "external_id", "pk", "visitor")

    def __init__(self, pk: int, email: str | None, external_id: str | None, visitor: bool = False):
        self.pk = pk
        self.email = email
        self.external_id = external_id
        self.visitor = visitor


class _New:
    """A lead this batch creates, gathering what the inputs say before its insert."""

    __slots__ = ("anonymous_ids", "email", "external_id", "pk", "values")

    def __init__(self, email: str | None, external_id: str | None):
        self.pk: int | None = None
        self.email = email
        self.external_id = external_id
        self.values: dict[str, Any] = {}
        self.anonymous_ids: list[str] = []

    @property
    def visitor(self) -> bool:
        return not self.email and not self.external_id

    def apply(self, data: LeadInput, activity_at: datetime | None) -> None:
        values = self.values
        if data.email:
            self.email = data.email
        if data.external_id and not self.external_id:
            self.external_id = data.external_id
        if data.anonymous_id and data.anonymous_id not in self.anonymous_ids:
            self.anonymous_ids.append(data.anonymous_id)
        values["visitor"] = self.visitor
        values.update(data.profile)
        if data.traits:
            values["traits"] = traits_merge(values.get("traits", {}), data.traits)
        last = values.get("last_activity_at")
        if activity_at is not None and (last is None or activity_at > last):
            values["last_activity_at"] = activity_at
        values["needs_rescore"] = True


def _identity_conflict(
    lead: _New | _Known, data: LeadInput, by_email: _New | _Known | None, by_external: _New | _Known | None
) -> Errors | None:
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
    # Anonymous ids to link to existing leads, and visitors to merge into the person an
    # input names (phase two: ``leads_apply``): {anonymous_id: lead}, {visitor: person}.
    links: dict[str, int] = field(default_factory=dict)
    merges: dict[int, int] = field(default_factory=dict)


def leads_identify(
    *, source: Source, inputs: Sequence[LeadInput], activity: Sequence[datetime | None] | None = None
) -> Identification:
    """Match each input to a lead by email or external_id, without locking anyone:
    identities are checked here, new leads are inserted (sorted, ON CONFLICT DO
    NOTHING) and an identity a concurrent request created first is matched again.
    An address on the suppression list (an erased person's) is refused on its field.

    An ``anonymous_id`` alone names a visitor (created, ``visitor``, if new). With an
    e-mail or external_id it links: an unknown anonymous id becomes the person's; a
    visitor becomes the person (it gains the identity, when no lead has it yet) or is
    merged into the person (``merges``, applied by ``leads_apply``; a visitor new in
    this batch is simply the person's from the start); an anonymous id of another
    known person stays theirs (a shared device) and the input goes to the person it names.

    Outside a transaction, the reads run on their own (autocommit: no transaction to
    open and commit when every lead exists) and new leads are inserted and committed in
    a short transaction of their own (``_create_new_leads``); inside one, all of it is
    the caller's."""
    found = Identification(inputs=inputs, activity=activity, lead_ids=[None] * len(inputs))
    pending = list(range(len(inputs)))
    # An erased person's address is refused before anything is written for it.
    suppressed = emails_suppressed({email for data in inputs if (email := data.email)})
    if suppressed:
        for index in pending:
            if inputs[index].email in suppressed:
                found.errors[index] = {"email": [SUPPRESSED_MESSAGE]}
        pending = [index for index in pending if index not in found.errors]
    for _attempt in range(_RESOLVE_ATTEMPTS):
        if not pending:
            break
        emails = {email for i in pending if (email := inputs[i].email)}
        externals = {external for i in pending if (external := inputs[i].external_id)}
        anonymous = {anonymous_id for i in pending if (anonymous_id := inputs[i].anonymous_id)}
        existing = [_Known(*row) for row in _leads_by_identity(sorted(emails), sorted(externals))]
        by_email: dict[str, _New | _Known] = {lead.email: lead for lead in existing if lead.email}
        by_external: dict[str, _New | _Known] = {lead.external_id: lead for lead in existing if lead.external_id}
        by_anonymous: dict[str, _New | _Known] = {}
        if anonymous:
            known = {lead.pk: lead for lead in existing}
            for anonymous_id, pk, email, external_id, visitor in _leads_by_anonymous_id(sorted(anonymous)):
                by_anonymous[anonymous_id] = known.setdefault(pk, _Known(pk, email, external_id, visitor))
        assigned: dict[int, _New | _Known] = {}
        absorbed: dict[int, _New | _Known] = {}  # id() of a visitor new in this batch: the person it is
        for index in pending:
            data = inputs[index]
            found_email = by_email.get(data.email) if data.email else None
            found_external = by_external.get(data.external_id) if data.external_id else None
            found_anonymous = by_anonymous.get(data.anonymous_id) if data.anonymous_id else None
            lead = found_email or found_external
            if lead is None:
                if found_anonymous is not None and (found_anonymous.visitor or not (data.email or data.external_id)):
                    lead = found_anonymous  # the visitor becomes the person, or its device sent it
                else:
                    lead = _New(data.email, data.external_id)
            conflict = _identity_conflict(lead, data, found_email, found_external)
            if conflict:
                found.errors[index] = conflict
                continue
            if data.anonymous_id and found_anonymous is not lead:
                if found_anonymous is None:
                    by_anonymous[data.anonymous_id] = lead
                    if isinstance(lead, _Known):
                        found.links.setdefault(data.anonymous_id, lead.pk)
                elif found_anonymous.visitor:
                    by_anonymous[data.anonymous_id] = lead
                    if isinstance(found_anonymous, _Known):
                        if isinstance(lead, _Known):
                            found.merges[found_anonymous.pk] = lead.pk
                        else:  # a known visitor and a new person: the visitor becomes the person
                            absorbed[id(lead)] = found_anonymous
                            lead = found_anonymous
                    else:
                        absorbed[id(found_anonymous)] = lead
            if isinstance(lead, _New):  # a new lead gathers everything the batch says about it
                lead.apply(data, activity[index] if activity else None)
            elif data.email and lead.email != data.email:
                by_email.pop(lead.email or "", None)
                lead.email = data.email
            if data.external_id and not lead.external_id:
                lead.external_id = data.external_id
            if isinstance(lead, _Known) and (lead.email or lead.external_id):
                lead.visitor = False
            if lead.email:
                by_email[lead.email] = lead
            if lead.external_id:
                by_external[lead.external_id] = lead
            assigned[index] = lead
        for index, lead in list(assigned.items()):
            # The inputs of a visitor new in this batch that turned out to be a person go to that person.
            person = lead
            while id(person) in absorbed:
                person = absorbed[id(person)]
            if person is not lead:
                assigned[index] = person
                if isinstance(person, _New):
                    person.apply(inputs[index], activity[index] if activity else None)
                elif inputs[index].anonymous_id:
                    found.links.setdefault(inputs[index].anonymous_id or "", person.pk)
        new_leads = sorted(
            {id(lead): lead for lead in assigned.values() if isinstance(lead, _New)}.values(),
            key=lambda lead: (lead.email or "", lead.external_id or ""),
        )
        if new_leads:
            found.created.update(atomic_with_retry(partial(_create_new_leads, source, new_leads)))
        pending = [index for index, lead in assigned.items() if lead.pk is None]
        for index, lead in assigned.items():
            if lead.pk is not None:
                found.lead_ids[index] = lead.pk
    for index in pending:
        found.errors[index] = {"non_field_errors": ["Could not resolve this lead under concurrent updates; retry."]}
    return found


# What ingest writes to nearly every lead it touches; anything else is a profile upsert.
_ACTIVITY_FIELDS = ("last_activity_at", "needs_rescore")


def leads_apply(*, identification: Identification) -> None:
    """Phase two: lock the existing leads (in id order), apply the inputs' identity,
    profile, traits and activity, flag them for rescoring, and write the changes:
    one statement for the leads that only gained activity, one for the rest. Then
    link anonymous ids and merge visitors into the people they turned out to be.

    Only the columns a change depends on are read: building a model instance per
    lead costs more than the write itself at 1000 events per batch."""
    _leads_apply_changes(identification)
    if identification.links or identification.merges:
        _anonymous_apply(identification)


def _leads_apply_changes(identification: Identification) -> None:
    existing_ids = sorted({pk for pk in identification.lead_ids if pk is not None and pk not in identification.created})
    if not existing_ids:
        return
    current: dict[int, dict[str, Any]] = {
        pk: {"email": email, "external_id": external_id, "last_activity_at": last_activity_at}
        for pk, email, external_id, last_activity_at in _leads_lock(existing_ids)
    }
    # Traits are read for a merge, and for a new e-mail: the account trait outranks the domain.
    with_traits = {
        pk
        for index, pk in enumerate(identification.lead_ids)
        if pk in current
        and (
            identification.inputs[index].traits
            or (identification.inputs[index].email and identification.inputs[index].email != current[pk]["email"])
        )
    }
    traits: dict[int, Any] = {}
    previous_account: dict[int, int | None] = {}
    if with_traits:
        for lead_id, lead_traits, previous in Lead.objects.filter(id__in=sorted(with_traits)).values_list(
            "id", "traits", "account_id"
        ):
            traits[lead_id], previous_account[lead_id] = lead_traits, previous

    changes: dict[int, dict[str, Any]] = {}
    renamed: set[int] = set()  # leads whose e-mail or account trait changes: their account is derived again
    for index, pk in enumerate(identification.lead_ids):
        row = current.get(pk) if pk is not None else None
        if row is None or pk is None:
            continue
        data = identification.inputs[index]
        known = _Known(pk, row["email"], row["external_id"])
        if _identity_conflict(known, data, None, None):
            # Changed by a concurrent request since phase one: keep the event, skip the upsert.
            logger.warning("Lead %s changed identity concurrently; input %d not applied", pk, index)
            continue
        change = changes.setdefault(pk, {"needs_rescore": True})
        if data.email and row["email"] != data.email:
            row["email"] = change["email"] = data.email
            change["visitor"] = False
            renamed.add(pk)
        if data.external_id and not row["external_id"]:
            row["external_id"] = change["external_id"] = data.external_id
            change["visitor"] = False
        change.update(data.profile)
        if data.traits:
            traits[pk] = change["traits"] = traits_merge(traits[pk], data.traits)
            if ACCOUNT_TRAIT in data.traits:
                renamed.add(pk)
        activity_at = identification.activity[index] if identification.activity else None
        if activity_at is not None and (row["last_activity_at"] is None or activity_at > row["last_activity_at"]):
            row["last_activity_at"] = change["last_activity_at"] = activity_at
    if not changes:
        return
    if renamed:
        ordered = sorted(renamed)
        for pk, account_id in zip(
            ordered, account_ids([(current[pk]["email"], traits[pk]) for pk in ordered]), strict=True
        ):
            changes[pk]["account"] = account_id
        accounts_left_after_commit(
            previous_account[pk] for pk in ordered if previous_account[pk] != changes[pk]["account"]
        )

    identified = [pk for pk, change in changes.items() if change.get("visitor") is False]
    if identified:  # visitors among them (most are not) now count as leads created
        rollups.leads_identified_record(identified)
    now = timezone.now()  # the sweeper reads updated_at
    activity_only = sorted(pk for pk, change in changes.items() if change.keys() <= set(_ACTIVITY_FIELDS))
    if activity_only:
        update_from_values(
            Lead,
            [*_ACTIVITY_FIELDS, "updated_at"],
            [[pk, current[pk]["last_activity_at"], True, now] for pk in activity_only],
        )
    profiled = sorted(changes.keys() - set(activity_only))
    recampaigned = [pk for pk in profiled if "utm_campaign" in changes[pk]]
    if recampaigned:
        facts = rollups.leads_facts(recampaigned)
        rollups.leads_campaign_changed_record({pk: (facts[pk], changes[pk]["utm_campaign"]) for pk in recampaigned})
    if profiled:
        fields = sorted(set().union(*(changes[pk] for pk in profiled)) | set(_ACTIVITY_FIELDS))
        missing = [name for name in fields if any(name not in changes[pk] for pk in profiled)]
        if missing:  # a field another lead of the group changes keeps its value here
            values = {row["id"]: row for row in Lead.objects.filter(id__in=profiled).values("id", *missing)}
            for pk in profiled:
                changes[pk] = {**values[pk], **changes[pk]}
        update_from_values(
            Lead, [*fields, "updated_at"], [[pk, *(changes[pk][f] for f in fields), now] for pk in profiled]
        )


def leads_resolve(
    *, source: Source, inputs: Sequence[LeadInput], activity: Sequence[datetime | None] | None = None
) -> Identification:
    """Find or create the lead of each input, upserting profile and traits, and flag
    every touched lead for rescoring. Must run inside a transaction. The result's
    ``lead_ids`` give each input's lead (None where ``errors`` says why); ``created``
    the leads this call inserted."""
    identification = leads_identify(source=source, inputs=inputs, activity=activity)
    leads_apply(identification=identification)
    return identification


_LEAD_INSERT_FIELDS = [f for f in Lead._meta.concrete_fields if not f.primary_key]
_LEAD_INSERT_NAMES = [f.name for f in _LEAD_INSERT_FIELDS]
_PUBLIC_ID_POSITION = [f.attname for f in _LEAD_INSERT_FIELDS].index("public_id")


def _create_new_leads(source: Source, leads: list[_New]) -> list[int]:
    """Derive the accounts of the batch's new leads (set-based), then insert the leads;
    returns the pks inserted. Run again from the start when retried: both steps only
    fill in ``account_id`` and ``pk``."""
    named = account_ids([(lead.email, lead.values.get("traits")) for lead in leads])
    for lead, account_id in zip(leads, named, strict=True):
        lead.values["account_id"] = account_id
    anonymous = sorted({anonymous_id for lead in leads for anonymous_id in lead.anonymous_ids})
    if anonymous:
        # Two requests creating the visitor of one anonymous id: the second waits here,
        # then finds it taken and resolves its inputs to that visitor on its next round.
        _anonymous_ids_lock(anonymous)
        taken = set(AnonymousId.objects.filter(anonymous_id__in=anonymous).values_list("anonymous_id", flat=True))
        if taken:
            leads = [lead for lead in leads if not (lead.visitor and taken.intersection(lead.anonymous_ids))]
            for lead in leads:
                lead.anonymous_ids = [anonymous_id for anonymous_id in lead.anonymous_ids if anonymous_id not in taken]
    inserted = _insert_new_leads(source, leads)
    now = timezone.now()
    links = [[anonymous_id, lead.pk, now] for lead in leads if lead.pk for anonymous_id in lead.anonymous_ids]
    if links:
        insert_ignore_conflicts_returning(AnonymousId, ["anonymous_id", "lead", "created_at"], links, ["id"])
    return inserted


def _anonymous_ids_lock(anonymous_ids: list[str]) -> None:
    """Transaction-scoped advisory locks on these anonymous ids (sorted: one order everywhere)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(a, 0)) FROM unnest(%s::text[]) AS a ORDER BY a",
            [anonymous_ids],
        )


def _anonymous_apply(identification: Identification) -> None:
    """Phase two for anonymous ids: link the unknown ones to their person's lead, and
    merge each visitor an input named together with a person into that person."""
    now = timezone.now()
    links = [[anonymous_id, pk, now] for anonymous_id, pk in sorted(identification.links.items())]
    if links:
        insert_ignore_conflicts_returning(AnonymousId, ["anonymous_id", "lead", "created_at"], links, ["id"])
    if not identification.merges:
        return
    for visitor_id, person_id in sorted(identification.merges.items()):
        try:
            leads_merge_rows(
                survivor_id=person_id,
                merged_id=visitor_id,
                actor=None,
                reason="Ingest linked the visitor's anonymous id to this person.",
            )
        except MergeError as error:  # merged or erased meanwhile: the events are stored all the same
            logger.warning("Visitor %s not merged into lead %s: %s", visitor_id, person_id, error)
    identification.lead_ids = [
        identification.merges.get(pk, pk) if pk is not None else None for pk in identification.lead_ids
    ]


def _insert_new_leads(source: Source, leads: list[_New]) -> list[int]:
    """Insert new leads, skipping identities a concurrent request created first;
    sets ``pk`` on the inserted ones and returns their pks. Rows are built from the
    fields' defaults: a model instance per lead would cost more than its insert."""
    now = timezone.now()
    rows = []
    public_ids = []
    for lead in leads:
        values = {
            **lead.values,
            "email": lead.email,
            "external_id": lead.external_id,
            "source_id": source.pk,
            "created_at": now,
            "updated_at": now,
        }
        row = [values[f.attname] if f.attname in values else f.get_default() for f in _LEAD_INSERT_FIELDS]
        rows.append(row)
        public_ids.append(row[_PUBLIC_ID_POSITION])
    returned = insert_ignore_conflicts_returning(Lead, _LEAD_INSERT_NAMES, rows, ["id", "public_id"])
    inserted = {public_id: pk for pk, public_id in returned}
    rollups.leads_created_record(
        rollups.LeadFacts(now, source.pk, lead.values.get("utm_campaign", ""), Stage.NEW, None, None, lead.visitor)
        for lead, public_id in zip(leads, public_ids, strict=True)
        if public_id in inserted
    )
    for lead, public_id in zip(leads, public_ids, strict=True):
        lead.pk = inserted.get(public_id)
    return list(inserted.values())


def _leads_by_identity(emails: list[str], externals: list[str]) -> list[tuple[int, str | None, str | None]]:
    """(id, email, external_id) of the leads with one of these identities."""
    if connection.vendor != "postgresql":
        return list(
            Lead.objects.filter(Q(email__in=emails) | Q(external_id__in=externals)).values_list(
                "id", "email", "external_id"
            )
        )
    # Arrays rather than IN lists: ORM filters on a thousand values cost more to build than to run.
    lead = SqlNames(Lead)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {lead.id}, {lead.email}, {lead.external_id} FROM {lead.table}"  # noqa: S608 -- names from the model
            f" WHERE {lead.email} = ANY(%s) OR {lead.external_id} = ANY(%s)",
            [emails, externals],
        )
        return cursor.fetchall()


def _leads_by_anonymous_id(anonymous_ids: list[str]) -> list[tuple[str, int, str | None, str | None, bool]]:
    """(anonymous_id, lead id, email, external_id, visitor) of the leads with one of these anonymous ids."""
    if connection.vendor != "postgresql":
        return list(
            AnonymousId.objects.filter(anonymous_id__in=anonymous_ids).values_list(
                "anonymous_id", "lead_id", "lead__email", "lead__external_id", "lead__visitor"
            )
        )
    # An array, as in ``_leads_by_identity``: a batch names hundreds of anonymous ids.
    anonymous, lead = SqlNames(AnonymousId), SqlNames(Lead)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT a.{anonymous.anonymous_id}, l.{lead.id}, l.{lead.email}, l.{lead.external_id}, l.{lead.visitor}"  # noqa: S608 -- names from the model
            f" FROM {anonymous.table} a JOIN {lead.table} l ON l.{lead.id} = a.{anonymous.lead}"
            f" WHERE a.{anonymous.anonymous_id} = ANY(%s)",
            [anonymous_ids],
        )
        return cursor.fetchall()


def _leads_lock(ids: list[int]) -> list[tuple[int, str | None, str | None, datetime | None]]:
    """Lock these leads in id order; (id, email, external_id, last_activity_at) of each."""
    if connection.vendor != "postgresql":
        return list(
            Lead.objects.select_for_update(no_key=True)
            .filter(id__in=ids)
            .order_by("id")
            .values_list("id", "email", "external_id", "last_activity_at")
        )
    lead = SqlNames(Lead)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {lead.id}, {lead.email}, {lead.external_id}, {lead.last_activity_at} FROM {lead.table}"  # noqa: S608 -- names from the model
            f" WHERE {lead.id} = ANY(%s::bigint[]) ORDER BY {lead.id} FOR NO KEY UPDATE",
            [pg_array(ids)],
        )
        return cursor.fetchall()


def _created_leads_flag(ids: list[int]) -> None:
    """Flag again the leads this batch created whose flag a scoring cleared since.

    They were inserted, flagged, and committed before the events' transaction (see
    ``events_ingest``), so a scoring pass may take them in between and find no events;
    ``leads_apply`` flags only the leads that existed before. Nearly always nothing
    matches, and nothing is written."""
    if connection.vendor != "postgresql":
        Lead.objects.filter(id__in=ids, needs_rescore=False, erased_at__isnull=True).update(needs_rescore=True)
        return
    lead = SqlNames(Lead)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {lead.table} SET {lead.needs_rescore} = true"  # noqa: S608 -- names from the model
            f" WHERE {lead.id} = ANY(%s::bigint[]) AND NOT {lead.needs_rescore} AND {lead.erased_at} IS NULL",
            [pg_array(ids)],
        )


def lead_upsert(*, source: Source, data: LeadInput) -> tuple[Lead, bool]:
    """Create or update one lead by identity; returns (lead, created)."""

    def upsert() -> tuple[Lead, bool]:
        resolved = leads_resolve(source=source, inputs=[data])
        pk = resolved.lead_ids[0]
        if pk is None:
            raise IdentityConflict(resolved.errors.get(0, {"non_field_errors": ["Could not resolve the lead."]}))
        request_scoring_after_commit([pk])
        return Lead.objects.get(pk=pk), pk in resolved.created

    return atomic_with_retry(upsert)


def lead_update(*, lead: Lead, changes: dict[str, Any]) -> Lead:
    """Edit profile fields by hand (``changes`` as ``validate_lead_changes`` returns them);
    traits are merged (null removes one). Fit may change: rescore.

    Raises a ValidationError on ``traits`` when the merge would leave the lead's traits
    over the cap (``lead_traits_error``): only here, under the lead's lock, is the result known."""
    with transaction.atomic():
        lead = Lead.objects.select_for_update().get(pk=lead.pk)
        if "utm_campaign" in changes:
            rollups.leads_campaign_changed_record({lead.pk: (rollups.LeadFacts.of(lead), changes["utm_campaign"])})
        fields = {"needs_rescore", "updated_at"}
        for name, value in changes.items():
            if name == "traits":
                value = traits_merge(lead.traits, value)
                if problem := lead_traits_error(current=lead.traits, new=value):
                    raise ValidationError({"traits": [problem]})
                previous, lead.account_id = lead.account_id, account_ids([(lead.email, value)])[0]
                if previous != lead.account_id:
                    accounts_left_after_commit([previous])
                fields.add("account")
            setattr(lead, name, value)
            fields.add(name)
        lead.needs_rescore = True
        lead.save(update_fields=sorted(fields))
        request_scoring_after_commit([lead.pk])
    return lead


def leads_delete(*, lead_ids: Sequence[int]) -> int:
    """Delete leads with what refers to them (events, stage log, handoffs: CASCADE), and
    take them out of the dashboard's rollups in the same transaction. Returns how many."""
    with transaction.atomic():
        ids = list(Lead.objects.select_for_update().filter(id__in=lead_ids).values_list("id", flat=True))
        rollups.leads_deleted_record(ids)
        Lead.objects.filter(id__in=ids).delete()
    return len(ids)


def request_scoring_after_commit(lead_ids: Sequence[int], *, intent_ids: Sequence[int] = ()) -> None:
    """Score these flagged leads once the current transaction commits (nothing if it
    rolls back): every write that flags leads for rescoring calls this; ``intent_ids``,
    the leads among them that just raised a hand, take the fast lane
    (``leadflow.leads.scoring_requests``). ``robust``: the request that flagged them never
    fails because scoring could not be enqueued."""
    if not lead_ids:
        return
    ids, intent = list(lead_ids), list(intent_ids)
    transaction.on_commit(lambda: request_scoring(ids, intent), robust=True)


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    lead_ids: list[int] = field(default_factory=list)


_FOREIGN_KEY_VIOLATION = "23503"
_DIFFERENT_PAYLOAD = (
    "An event with this event_id was already received with a different payload. Use a new event_id for a new event."
)


def _event_fingerprints(source: Source, event_ids: list[str]) -> dict[str, str]:
    """The fingerprint of each of ``source``'s events with one of these event_ids."""
    if not event_ids:
        return {}
    if connection.vendor != "postgresql":
        return dict(Event.objects.filter(source=source, event_id__in=event_ids).values_list("event_id", "fingerprint"))
    sql, params = event_fingerprints_sql(source, event_ids)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return dict(cursor.fetchall())


def event_fingerprints_sql(source: Source, event_ids: list[str]) -> tuple[str, list[Any]]:
    """PostgreSQL: one probe of the (source, event_id) index per id. Written as
    ``event_id IN (…)``, the planner, misled by statistics that lag behind a growing
    table, read every event of the source and filtered them (40 ms at 100k events)."""
    event = SqlNames(Event)
    # Names come from model metadata; the values are bound parameters.
    probe = (
        f"SELECT {event.fingerprint} AS fingerprint FROM {event.table}"  # noqa: S608
        f" WHERE {event.source} = %s AND {event.event_id} = k.event_id LIMIT 1"
    )
    sql = f"SELECT k.event_id, e.fingerprint FROM unnest(%s::text[]) AS k(event_id), LATERAL ({probe}) AS e"  # noqa: S608
    return sql, [event_ids, source.pk]


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

    known = _event_fingerprints(source, list(seen))
    fresh = []
    for index, event in valid:
        fingerprint = known.get(event.event_id)
        if fingerprint is None:
            fresh.append((index, event))
        elif fingerprint == event.fingerprint:
            result.duplicates += 1
        else:
            result.rejected.append({"index": index, "errors": {"event_id": [_DIFFERENT_PAYLOAD]}})

    # Identification runs before the events' transaction: its reads on their own, and
    # new leads inserted and committed in a short transaction of their own. Inside the
    # events' transaction, a concurrent batch that sends the same new lead (the first
    # batches of an import or a campaign) would wait on its unique key until this whole
    # transaction ended. A lead is therefore stored even if its events then fail to be
    # (a database outage): resending the batch attaches them. A batch whose leads all
    # exist (most single events) writes in one transaction: the one below.
    def identify() -> Identification:
        return leads_identify(
            source=source,
            inputs=[event.lead for _, event in fresh],
            activity=[event.occurred_at for _, event in fresh],
        )

    identification = identify()

    def store() -> IngestResult:
        # Lock order, the same in every batch: events (sorted by event_id), then existing leads (by id).
        stored = IngestResult(duplicates=result.duplicates, rejected=list(result.rejected))
        to_insert = {}
        lead_of: dict[str, int] = {}
        rows = []
        for position, (index, event) in sorted(enumerate(fresh), key=lambda item: item[1][1].event_id):
            lead_id = identification.lead_ids[position]
            if lead_id is None:
                stored.rejected.append({"index": index, "errors": {"lead": identification.errors[position]}})
                continue
            to_insert[event.event_id] = (index, event)
            lead_of[event.event_id] = lead_id
            rows.append(
                [
                    lead_id,
                    source.pk,
                    event.event_id,
                    event.type,
                    event.properties_json,
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
            winners = _event_fingerprints(source, lost_races)
            for event_id in lost_races:
                index, event = to_insert[event_id]
                if winners.get(event_id) == event.fingerprint:
                    stored.duplicates += 1
                else:
                    stored.rejected.append({"index": index, "errors": {"event_id": [_DIFFERENT_PAYLOAD]}})

        leads_apply(identification=identification)
        if identification.created:
            _created_leads_flag(sorted(identification.created))
        stored.lead_ids = sorted({pk for pk in identification.lead_ids if pk is not None})
        if schedule_scoring:
            intent = intent_event_types()
            raised = {lead_of[event_id] for event_id in inserted if to_insert[event_id][1].type in intent}
            request_scoring_after_commit(stored.lead_ids, intent_ids=sorted(raised))
        return stored

    try:
        stored = atomic_with_retry(store)
    except IntegrityError as error:
        # A lead identified above was merged into another (a visitor linked to its person by
        # a concurrent batch) or deleted before this transaction: identify again, once.
        if connection.in_atomic_block or getattr(error.__cause__, "pgcode", None) != _FOREIGN_KEY_VIOLATION:
            raise
        identification = identify()
        stored = atomic_with_retry(store)
    stored.rejected.sort(key=lambda item: item["index"])
    return stored


# --- Outcomes: what the CRM learns after the handoff -----------------------------------------------------
_DIFFERENT_OUTCOME = (
    "An outcome with this outcome_id was already received with a different payload. "
    "Use a new outcome_id for a new outcome (a deal won after its opportunity is a second outcome)."
)
# In the order of ``outcomes_record``'s rows.
_OUTCOME_COLUMNS = [
    "lead",
    "source",
    "outcome_id",
    "kind",
    "amount",
    "currency",
    "occurred_at",
    "received_at",
    "properties",
]


def _outcome_same(stored: dict[str, Any], lead_id: int, outcome: OutcomeInput) -> bool:
    """Whether a stored outcome is this one resent: the same lead, kind, amount, currency,
    time and properties (``received_at`` is ours, not the sender's)."""
    return (
        stored["lead_id"] == lead_id
        and stored["kind"] == outcome.kind
        and stored["amount"] == outcome.amount
        and stored["currency"] == outcome.currency
        and stored["occurred_at"] == outcome.occurred_at
        and stored["properties"] == outcome.properties
    )


def _outcomes_stored(source: Source, outcome_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``source``'s outcomes with these outcome_ids (the unique index serves it), by outcome_id."""
    if not outcome_ids:
        return {}
    rows = Outcome.objects.filter(source=source, outcome_id__in=list(outcome_ids)).values(
        "outcome_id", "lead_id", "kind", "amount", "currency", "occurred_at", "properties"
    )
    return {row["outcome_id"]: dict(row) for row in rows}


def _outcome_leads(outcomes: Sequence[OutcomeInput]) -> tuple[list[int | None], dict[int, Errors]]:
    """Each outcome's lead by e-mail or external_id (one query), or its error: no such lead,
    or the two identities name two leads, or another external_id than the lead's."""
    emails = sorted({email for outcome in outcomes if (email := outcome.email)})
    externals = sorted({external for outcome in outcomes if (external := outcome.external_id)})
    known = [_Known(*row) for row in _leads_by_identity(emails, externals)] if emails or externals else []
    by_email = {lead.email: lead for lead in known if lead.email}
    by_external = {lead.external_id: lead for lead in known if lead.external_id}
    lead_ids: list[int | None] = []
    errors: dict[int, Errors] = {}
    for position, outcome in enumerate(outcomes):
        found_email = by_email.get(outcome.email) if outcome.email else None
        found_external = by_external.get(outcome.external_id) if outcome.external_id else None
        lead = found_email or found_external
        if lead is None:
            errors[position] = {"lead": [UNKNOWN_LEAD_MESSAGE]}
            lead_ids.append(None)
            continue
        data = LeadInput(email=outcome.email, external_id=outcome.external_id)
        if conflict := _identity_conflict(lead, data, found_email, found_external):
            errors[position] = {"lead": conflict}
            lead_ids.append(None)
            continue
        lead_ids.append(lead.pk)
    return lead_ids, errors


def outcomes_record(*, source: Source, payloads: Sequence[Any]) -> IngestResult:
    """Validate and store a batch of outcomes sent by ``source`` (a CRM); a bad item never
    sinks the good ones.

    Each outcome names a lead LeadFlow knows, by e-mail or external_id; an unknown lead is
    refused on ``lead`` (an outcome without its lead would count for nobody). Idempotent by
    (source, outcome_id): inserted set-based with ON CONFLICT DO NOTHING, a resent outcome
    counts as a duplicate, and one resent with another payload is refused on
    ``outcome_id``. Outcomes change no score: nothing is flagged for rescoring."""
    now = timezone.now()
    result = IngestResult()
    seen: dict[str, OutcomeInput] = {}
    valid: list[tuple[int, OutcomeInput]] = []
    for index, payload in enumerate(payloads):
        outcome, errors = validate_outcome(payload, now=now)
        if outcome is None:
            result.rejected.append({"index": index, "errors": errors})
            continue
        earlier = seen.get(outcome.outcome_id)
        if earlier is None:
            seen[outcome.outcome_id] = outcome
            valid.append((index, outcome))
        elif earlier == outcome:
            result.duplicates += 1
        else:
            result.rejected.append(
                {
                    "index": index,
                    "errors": {"outcome_id": ["Repeats an outcome_id of this batch with a different payload."]},
                }
            )

    def store() -> IngestResult:
        stored = IngestResult(duplicates=result.duplicates, rejected=list(result.rejected))
        lead_ids, lead_errors = _outcome_leads([outcome for _, outcome in valid])
        known = _outcomes_stored(source, [outcome.outcome_id for _, outcome in valid])
        to_insert: dict[str, tuple[int, int, OutcomeInput]] = {}
        for position, (index, outcome) in enumerate(valid):
            lead_id = lead_ids[position]
            if lead_id is None:
                stored.rejected.append({"index": index, "errors": lead_errors[position]})
                continue
            existing = known.get(outcome.outcome_id)
            if existing is None:
                to_insert[outcome.outcome_id] = (index, lead_id, outcome)
            elif _outcome_same(existing, lead_id, outcome):
                stored.duplicates += 1
            else:
                stored.rejected.append({"index": index, "errors": {"outcome_id": [_DIFFERENT_OUTCOME]}})
        # Sorted by outcome_id: concurrent batches take the unique index's locks in one order.
        rows = [
            [lead_id, source.pk, outcome_id, outcome.kind, outcome.amount, outcome.currency, outcome.occurred_at]
            + [now, outcome.properties_json]
            for outcome_id, (_index, lead_id, outcome) in sorted(to_insert.items())
        ]
        inserted = {
            row[0] for row in insert_ignore_conflicts_returning(Outcome, _OUTCOME_COLUMNS, rows, ["outcome_id"])
        }
        stored.accepted = len(inserted)
        lost_races = [outcome_id for outcome_id in sorted(to_insert) if outcome_id not in inserted]
        if lost_races:  # another request stored these outcome_ids between our read and our insert
            winners = _outcomes_stored(source, lost_races)
            for outcome_id in lost_races:
                index, lead_id, outcome = to_insert[outcome_id]
                if outcome_id in winners and _outcome_same(winners[outcome_id], lead_id, outcome):
                    stored.duplicates += 1
                else:
                    stored.rejected.append({"index": index, "errors": {"outcome_id": [_DIFFERENT_OUTCOME]}})
        return stored

    result = atomic_with_retry(store)
    result.rejected.sort(key=lambda item: item["index"])
    return result


def ingest_key_create(*, source: Source, label: str = "") -> tuple[IngestKey, str]:
    """Create an ingest key; returns it and the secret, which is never shown again."""
    new = generate_key(INGEST_KIND)
    key = IngestKey.objects.create(source=source, label=label, prefix=new.prefix, key_hash=new.key_hash)
    return key, new.key


def source_segment_event_types_update(*, source: Source, event_types: dict[str, str], actor: Any) -> Source:
    """Replace the source's Segment mapping (track event name → event type): the next
    ``track`` message uses it. Raises a ValidationError on ``segment_event_types`` for a
    mapping that cannot be stored. The change is audited in the source's history (the
    admin's, where its other edits are): who, when, which names were added, changed or
    removed."""
    if problem := segment_event_types_error(event_types):
        raise ValidationError({"segment_event_types": [problem]})
    with transaction.atomic():
        locked = Source.objects.select_for_update().get(pk=source.pk)
        before = locked.segment_event_types if isinstance(locked.segment_event_types, dict) else {}
        changes = _mapping_changes(before, event_types)
        if changes:
            locked.segment_event_types = event_types
            locked.save(update_fields=["segment_event_types"])
            LogEntry.objects.log_actions(
                user_id=actor.pk,
                queryset=[locked],
                action_flag=CHANGE,
                change_message=f"Segment event names: {changes}.",
                single_object=True,
            )
    source.segment_event_types = event_types
    return source


def _mapping_changes(before: dict[str, Any], after: dict[str, str]) -> str:
    """The difference of two Segment mappings in words, for the audit ("" when none)."""
    added = [f"“{name}” → {after[name]}" for name in after if name not in before]
    changed = [
        f"“{name}” {before[name]} → {after[name]}" for name in after if name in before and before[name] != after[name]
    ]
    removed = [f"“{name}”" for name in before if name not in after]
    parts = [
        f"{label} {', '.join(names)}"
        for label, names in (("added", added), ("changed", changed), ("removed", removed))
        if names
    ]
    return "; ".join(parts)


def ingest_key_revoke(*, key: IngestKey) -> None:
    IngestKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    ingest_keys_changed()  # an update() sends no post_save: no process accepts the key after the commit


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
