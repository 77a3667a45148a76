"""Segment-compatible ingest: the messages of a Segment (or RudderStack) SDK translated
into the native ingest's calls — ``events_ingest`` for ``track``, ``page`` and
``screen``, ``leads_resolve`` for ``identify`` and ``group``, ``lead_merge`` for an
``alias`` of two known people. There is no second ingest: validation, idempotency,
identity resolution (anonymous visitors included) and scoring are the native ones.

Mapping (README, "Segment-compatible ingest"):

- ``messageId`` → ``event_id`` (a resend is a duplicate);
- ``timestamp`` → ``occurred_at``; without it, ``originalTimestamp`` corrected by the
  sender's clock skew (``receivedAt − sentAt``, the message's or the batch's);
- ``userId`` → ``external_id``; ``anonymousId`` → an anonymous visitor identity;
  ``traits.email`` (or ``context.traits.email``) → ``email``;
- ``track`` → an event whose type is the source's mapping of the name
  (``Source.segment_event_types``, edited on the source's Segment event names page),
  else the snake_case of the name;
- ``page`` → ``page_view`` (``screen`` → ``screen_view``) with ``url``, ``path``,
  ``title``, ``referrer``, ``name``; the campaign (``context.campaign``) → the event's
  ``utm_*`` properties and the lead's ``utm_source``, ``utm_medium``, ``utm_campaign``;
- ``identify`` → lead upsert from ``traits`` (``email``, ``name`` or
  ``firstName``/``lastName``, ``company`` or ``company.name``, ``title``,
  ``industry``, ``country`` or ``address.country``, ``employees``; the rest into the
  lead's traits);
- ``group`` → the lead's ``account`` trait (the group's ``name`` trait, else ``groupId``);
- ``alias`` → ``previousId`` (an anonymous id or an earlier userId) joins ``userId``:
  a visitor becomes (or merges into) the lead of ``userId``, a lead of an earlier userId
  merges into the lead of ``userId`` or, when no lead has it yet, takes it as its
  external_id (``_store_alias``).

The answer's counts (``SegmentResult``, the batch's metrics and log line) are of
messages: events stored, lead upserts and aliases applied are accepted; dropped ones
are rejected.

SDKs ignore the answer's body, so a message that cannot be stored is dropped and
logged (``SegmentDrop``, the last ``SEGMENT_DROPS_KEPT`` per source) with why, for the
drops page; the answer is Segment's ``{"success": true}``.
"""

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from leadflow.db import SqlNames, atomic_with_retry
from leadflow.leads.merge import MergeError, leads_merge_rows
from leadflow.leads.models import LEAD_UTM_FIELDS, Lead, SegmentDrop, Source
from leadflow.leads.services import IngestResult, events_ingest, leads_resolve, request_scoring_after_commit
from leadflow.leads.validation import (
    MAX_JSON_DEPTH,
    Errors,
    LeadInput,
    parse_timestamp,
    snake_case,
    validate_lead,
)

MESSAGE_TYPES = ("track", "identify", "page", "screen", "group", "alias")
EVENT_MESSAGES = ("track", "page", "screen")
_CAMPAIGN_FIELDS = {"source": "utm_source", "medium": "utm_medium", "name": "utm_campaign"}
_CAMPAIGN_EXTRA = {"term": "utm_term", "content": "utm_content"}
_PAGE_FIELDS = ("url", "path", "title", "referrer", "search")
# identify traits that are the lead's fields; every other trait goes to the lead's traits.
_TRAIT_FIELDS = {"title": "job_title", "industry": "industry", "country": "country"}
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_CONSUMED_TRAITS = {"email", "name", "firstName", "lastName", "first_name", "last_name", "company", "employees"}


@dataclass
class SegmentResult:
    """What a Segment request stored, by kind of message: events stored (``track``,
    ``page``, ``screen``), lead upserts applied (``identify``, ``group``), aliases applied;
    the duplicates (events already stored), and the messages dropped."""

    events: int = 0
    leads: int = 0
    aliases: int = 0
    duplicates: int = 0
    dropped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Every message stored or applied: a batch of ``identify`` calls is accepted like
        one of events (its dropped messages count as rejected either way)."""
        return self.events + self.leads + self.aliases

    @property
    def accepted_by_kind(self) -> dict[str, int]:
        return {"events": self.events, "leads": self.leads, "aliases": self.aliases}


@dataclass
class _Translated:
    index: int
    kind: str  # "event", "lead" or "alias"
    payload: Any = None


def _text(value: Any) -> str | None:
    """A Segment id (a string, or a number some SDKs send) as text; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _occurred_at(message: dict[str, Any], batch_sent_at: Any, now: datetime, errors: Errors) -> str | None:
    """The event's time as ISO text: ``timestamp``, else ``originalTimestamp`` moved by
    the sender's clock skew (``now − sentAt``); None (now) when neither is given."""
    if message.get("timestamp"):
        return message["timestamp"] if isinstance(message["timestamp"], str) else str(message["timestamp"])
    original = message.get("originalTimestamp")
    if not original:
        return None
    parsed = parse_timestamp(original, "originalTimestamp", errors)
    if parsed is None:
        return None
    sent_raw = message.get("sentAt") or batch_sent_at
    if sent_raw:
        sent = parse_timestamp(sent_raw, "sentAt", errors)
        if sent is None:
            return None
        parsed += now - sent
    return parsed.isoformat()


def _identity(message: dict[str, Any], errors: Errors) -> dict[str, Any]:
    """The native lead identity of a message: email, external_id, anonymous_id."""
    lead: dict[str, Any] = {}
    user_id, anonymous_id = _text(message.get("userId")), _text(message.get("anonymousId"))
    if message.get("userId") not in (None, "") and user_id is None:
        errors["userId"] = ["Must be a string."]
    if message.get("anonymousId") not in (None, "") and anonymous_id is None:
        errors["anonymousId"] = ["Must be a string."]
    if user_id:
        lead["external_id"] = user_id
    if anonymous_id:
        lead["anonymous_id"] = anonymous_id
    traits = message.get("traits") if message.get("type") == "identify" else None
    context = _object(message.get("context"))
    for source in (traits, context.get("traits")):
        if isinstance(source, dict) and isinstance(source.get("email"), str) and source["email"]:
            lead["email"] = source["email"]
            break
    if not user_id and not anonymous_id and "userId" not in errors and "anonymousId" not in errors:
        errors["non_field_errors"] = ["Needs a userId or an anonymousId: the SDK sets one on every call."]
    return lead


def _campaign(context: dict[str, Any]) -> dict[str, Any]:
    campaign = context.get("campaign")
    if not isinstance(campaign, dict):
        return {}
    out = {}
    for key, name in {**_CAMPAIGN_FIELDS, **_CAMPAIGN_EXTRA}.items():
        if isinstance(campaign.get(key), str) and campaign[key]:
            out[name] = campaign[key]
    return out


def _event(message: dict[str, Any], source: Source, batch_sent_at: Any, now: datetime, errors: Errors) -> Any:
    kind = message["type"]
    properties = message.get("properties") or {}
    if not isinstance(properties, dict):
        errors["properties"] = ["Must be an object."]
        properties = {}
    properties = dict(properties)
    context = _object(message.get("context"))
    if kind == "track":
        name = message.get("event")
        if not isinstance(name, str) or not name.strip():
            errors["event"] = ["A track call needs the event's name."]
            event_type = ""
        else:
            mapping = source.segment_event_types if isinstance(source.segment_event_types, dict) else {}
            event_type = mapping.get(name) or snake_case(name)
            if not event_type:
                errors["event"] = [
                    f"{name!r} has no letters to make an event type of: map it on the source's Segment event "
                    f"names page, {reverse('segment-event-types', args=[source.slug])}."
                ]
            properties.setdefault("event", name)
    else:
        event_type = "page_view" if kind == "page" else "screen_view"
        page = _object(context.get("page"))
        for name in _PAGE_FIELDS:
            if name not in properties and page.get(name):
                properties[name] = page[name]
        if isinstance(message.get("name"), str) and message["name"]:
            properties.setdefault("name", message["name"])
        if isinstance(message.get("category"), str) and message["category"]:
            properties.setdefault("category", message["category"])
    campaign = _campaign(context)
    properties.update({key: value for key, value in campaign.items() if key not in properties})
    lead = _identity(message, errors)
    # The lead's own UTM fields too, as a native event's lead would carry them (the latest
    # campaign wins): the dashboard's breakdown by campaign reads them.
    lead.update({name: value for name, value in campaign.items() if name in LEAD_UTM_FIELDS})
    payload: dict[str, Any] = {
        "event_id": _text(message.get("messageId")),
        "type": event_type,
        "lead": lead,
        "properties": properties,
    }
    occurred_at = _occurred_at(message, batch_sent_at, now, errors)
    if occurred_at:
        payload["occurred_at"] = occurred_at
    if not payload["event_id"]:
        errors["messageId"] = ["Required: the message's unique id (the SDK sets it)."]
    return payload


def _identify_lead(message: dict[str, Any], errors: Errors) -> dict[str, Any]:
    """The native lead payload of an ``identify``: identity, profile from the traits, the rest as traits."""
    lead = _identity(message, errors)
    traits = message.get("traits") or {}
    if not isinstance(traits, dict):
        errors["traits"] = ["Must be an object."]
        return lead
    name = traits.get("name")
    if not isinstance(name, str) or not name.strip():
        first = traits.get("firstName") or traits.get("first_name") or ""
        last = traits.get("lastName") or traits.get("last_name") or ""
        name = " ".join(part for part in (first, last) if isinstance(part, str) and part).strip()
    if name:
        lead["name"] = name
    company = traits.get("company")
    if isinstance(company, dict):
        company = company.get("name")
    if isinstance(company, str) and company:
        lead["company"] = company
    for trait, field_name in _TRAIT_FIELDS.items():
        if isinstance(traits.get(trait), str) and traits[trait]:
            lead[field_name] = traits[trait]
    address = traits.get("address")
    if "country" not in lead and isinstance(address, dict) and isinstance(address.get("country"), str):
        lead["country"] = address["country"]
    employees = traits.get("employees")
    rest = {key: value for key, value in traits.items() if key not in _CONSUMED_TRAITS and key not in _TRAIT_FIELDS}
    if isinstance(employees, int) and not isinstance(employees, bool):
        lead["company_size"] = employees
    elif isinstance(employees, str) and employees.isdigit():
        lead["company_size"] = int(employees)
    elif employees is not None:
        rest["employees"] = employees
    if rest:
        lead["traits"] = rest
    return lead


def _group_lead(message: dict[str, Any], errors: Errors) -> dict[str, Any]:
    lead = _identity(message, errors)
    traits = _object(message.get("traits"))
    account = traits.get("name") if isinstance(traits.get("name"), str) and traits.get("name") else None
    account = account or _text(message.get("groupId"))
    if not account:
        errors["groupId"] = ["A group call needs a groupId (or a name trait)."]
    else:
        lead["traits"] = {"account": account}
    return lead


def _translate(
    message: Any, index: int, source: Source, batch_sent_at: Any, now: datetime
) -> tuple[_Translated | None, Errors]:
    if not isinstance(message, dict):
        return None, {"non_field_errors": ["Each message must be a JSON object."]}
    kind = message.get("type")
    if kind not in MESSAGE_TYPES:
        return None, {"type": [f"Unknown message type {kind!r}: one of {', '.join(MESSAGE_TYPES)}."]}
    errors: Errors = {}
    if kind in EVENT_MESSAGES:
        payload = _event(message, source, batch_sent_at, now, errors)
        return (None if errors else _Translated(index, "event", payload)), errors
    if kind == "alias":
        previous, user_id = _text(message.get("previousId")), _text(message.get("userId"))
        if not previous:
            errors["previousId"] = ["Required: the anonymous id or earlier userId to join to userId."]
        if not user_id:
            errors["userId"] = ["Required: the id the person is known by from now on."]
        return (None if errors else _Translated(index, "alias", (previous, user_id))), errors
    data = _identify_lead(message, errors) if kind == "identify" else _group_lead(message, errors)
    if errors:
        return None, errors
    lead, lead_errors = validate_lead(data)
    if lead is None:
        return None, lead_errors
    return _Translated(index, "lead", lead), {}


def segment_ingest(*, source: Source, messages: Sequence[Any], sent_at: Any = None) -> SegmentResult:
    """Store a Segment batch (or one message), in order: consecutive messages of one
    kind (events, lead upserts) go to the native ingest together, so a batch of page
    views, then an ``identify``, then a ``track`` ends with the visitor's history joined
    to the person before the track is scored. Dropped messages are logged for the source."""
    now = timezone.now()
    result = SegmentResult()
    runs: list[list[_Translated]] = []
    for index, message in enumerate(messages):
        translated, errors = _translate(message, index, source, sent_at, now)
        if translated is None:
            result.dropped.append({"index": index, "errors": errors})
            continue
        if runs and runs[-1][0].kind == translated.kind and translated.kind != "alias":
            runs[-1].append(translated)
        else:
            runs.append([translated])
    for run in runs:
        kind = run[0].kind
        if kind == "event":
            _store_events(source, run, result)
        elif kind == "lead":
            result.leads += _store_leads(source, run, result)
        else:
            result.aliases += _store_alias(source, run[0], result)
    result.dropped.sort(key=lambda item: item["index"])
    if result.dropped:
        segment_drops_record(source=source, messages=messages, dropped=result.dropped)
    return result


def _store_events(source: Source, run: list[_Translated], result: SegmentResult) -> None:
    stored: IngestResult = events_ingest(source=source, payloads=[item.payload for item in run])
    result.events += stored.accepted
    result.duplicates += stored.duplicates
    for rejected in stored.rejected:
        result.dropped.append({"index": run[rejected["index"]].index, "errors": rejected["errors"]})


def _store_leads(source: Source, run: list[_Translated], result: SegmentResult) -> int:
    """Upsert the leads of the run; returns how many inputs were applied (the others are dropped)."""

    def store() -> Any:
        resolved = leads_resolve(source=source, inputs=[item.payload for item in run])
        request_scoring_after_commit(sorted({pk for pk in resolved.lead_ids if pk is not None}))
        return resolved

    resolved = atomic_with_retry(store)
    for position, errors in resolved.errors.items():
        result.dropped.append({"index": run[position].index, "errors": {"lead": errors}})
    return sum(1 for pk in resolved.lead_ids if pk is not None)


def _store_alias(source: Source, item: _Translated, result: SegmentResult) -> int:
    """``previousId`` joins ``userId``: from now on the person is known by ``userId``
    (Segment's alias). Returns 1 when applied, 0 when dropped.

    - ``previousId`` is an anonymous id (a visitor's, or not seen yet), or already the
      userId's lead's: an ``identify`` naming both — the visitor becomes the lead of
      ``userId`` or is merged into it (an anonymous id of another known person stays
      theirs, as for an ``identify``).
    - ``previousId`` is the userId (external_id) of a lead, and another lead has
      ``userId``: two known leads are one person — the lead of ``previousId`` is merged
      into the lead of ``userId``, which keeps its external_id (the merge record keeps
      the previous one).
    - ``previousId`` is the userId of a lead and no lead has ``userId``: the person
      changed ids — the lead's external_id becomes ``userId``. A lead has one
      external_id, so the previous userId stops naming it: a later message sent with
      it makes a new lead (an alias again merges the two)."""
    previous, user_id = item.payload
    previous_lead = Lead.objects.filter(external_id=previous).only("pk").first()
    if previous_lead is None or previous == user_id:
        return _store_leads(
            source, [_Translated(item.index, "lead", LeadInput(None, user_id, anonymous_id=previous))], result
        )

    def join() -> None:
        survivor_id = Lead.objects.filter(external_id=user_id).values_list("pk", flat=True).first()
        if survivor_id is not None:
            leads_merge_rows(
                survivor_id=survivor_id, merged_id=previous_lead.pk, actor=None, reason=f"Segment alias of {previous}."
            )
            return
        # Conditional, so a concurrent change of the lead is not overwritten; a lead that
        # took userId meanwhile violates its unique constraint, and the retry merges.
        renamed = Lead.objects.filter(pk=previous_lead.pk, external_id=previous).update(
            external_id=user_id, updated_at=timezone.now()
        )
        if not renamed:
            raise MergeError("The lead of previousId changed (or was merged) meanwhile: send the alias again.")

    try:
        atomic_with_retry(join)
    except MergeError as error:
        result.dropped.append({"index": item.index, "errors": {"previousId": [str(error)]}})
        return 0
    return 1


def segment_drops_record(*, source: Source, messages: Sequence[Any], dropped: list[dict[str, Any]]) -> None:
    """Log the dropped messages for the source, keeping its last ``SEGMENT_DROPS_KEPT``."""
    now = timezone.now()
    rows = []
    for drop in dropped:
        message = messages[drop["index"]]
        is_object = isinstance(message, dict)
        rows.append(
            SegmentDrop(
                source=source,
                at=now,
                message_type=str(message.get("type") or "")[:32] if is_object else "",
                message_id=str(message.get("messageId") or "")[:200] if is_object else "",
                errors=drop["errors"],
                message=_storable(message if is_object else {"message": message}),
            )
        )
    SegmentDrop.objects.bulk_create(rows)
    segment_drops_trim(source=source)


def _storable(value: Any, depth: int = 0) -> Any:
    """The message as jsonb can hold it: NUL characters and lone surrogates (themselves
    reasons to drop) replaced, NaN and infinities as text, nesting cut at ``MAX_JSON_DEPTH``."""
    if depth > MAX_JSON_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {_storable(str(key), depth + 1): _storable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item, depth + 1) for item in value]
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def segment_drops_trim(*, source: Source) -> int:
    """Keep the source's newest ``SEGMENT_DROPS_KEPT`` drops; one DELETE."""
    keep = settings.SEGMENT_DROPS_KEPT
    drop = SqlNames(SegmentDrop)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {drop.table} WHERE {drop.source} = %s AND {drop.id} < ("  # noqa: S608 -- names from the model
            f" SELECT {drop.id} FROM {drop.table} WHERE {drop.source} = %s"
            f" ORDER BY {drop.id} DESC OFFSET %s LIMIT 1) ",
            [source.pk, source.pk, keep - 1],
        )
        return cursor.rowcount
