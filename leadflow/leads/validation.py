"""Validation of ingest payloads (events and lead upserts) and of a person's lead edits.

Hand-written rather than DRF serializers because the ingest endpoint validates
up to 1000 items per request at 10k+ events/s; the messages are the same
field-level shape DRF produces (``{"field": ["message"]}``). The OpenAPI
documentation of the same shapes lives in ``leadflow.leads.api``.

Every value that passes can be stored: no NUL character or lone surrogate in text
or JSON, no NaN or infinity in JSON, no JSON nested deeper than ``MAX_JSON_DEPTH``,
no integer outside its column, no date-time Python cannot convert to UTC. A value
that breaks one of these is that field's error, never a failed batch.
"""

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import MAXYEAR, UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import CharField, DecimalField
from django.utils import timezone

from leadflow.db import RawJson
from leadflow.leads.models import LEAD_IDENTITY_FIELDS, LEAD_PROFILE_FIELDS, LEAD_UTM_FIELDS, Lead, Outcome, OutcomeKind

# \Z, not $: "$" also matches before a trailing newline ("page_view\n").
EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")
MAX_PROPERTIES_BYTES = 16 * 1024
MAX_TRAITS_BYTES = 16 * 1024
# Properties and traits are flat records in practice (scoring reads paths a few levels
# deep); the limit keeps every reader of the JSON, recursive or not, far from its stack's end.
MAX_JSON_DEPTH = 32
FUTURE_TOLERANCE = timedelta(hours=1)
# No lead activity predates the Unix epoch, and a zero date (0001-01-01, Go's and .NET's
# "unset") would score as an ancient event; above it every time zone conversion stays
# within Python's years 1 to 9999.
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
# A day short of Python's last: shown in any time zone, it is still a datetime.
LATEST_TIMESTAMP = datetime(MAXYEAR, 12, 31, tzinfo=UTC) - timedelta(days=1)
# What the company_size column holds on every database Django supports (PostgreSQL integer).
COMPANY_SIZE_MIN, COMPANY_SIZE_MAX = BaseDatabaseOperations.integer_field_ranges[
    Lead._meta.get_field("company_size").get_internal_type()
]

# Profile fields a sender may set and people may edit (with traits), and the text ones
# with their column's length.
EDITABLE_LEAD_FIELDS = {*LEAD_PROFILE_FIELDS, *LEAD_UTM_FIELDS, "traits"}
PROFILE_TEXT_FIELDS: dict[str, int] = {
    field.name: field.max_length
    for field in (Lead._meta.get_field(name) for name in (*LEAD_PROFILE_FIELDS, *LEAD_UTM_FIELDS))
    if isinstance(field, CharField) and field.max_length is not None
}
LEAD_FIELDS = {*LEAD_IDENTITY_FIELDS, "anonymous_id", *EDITABLE_LEAD_FIELDS}
IDENTITY_KEYS = {"email", "external_id", "anonymous_id"}
EVENT_FIELDS = {"event_id", "type", "occurred_at", "lead", "properties"}

Errors = dict[str, Any]


@dataclass
class LeadInput:
    email: str | None
    external_id: str | None
    profile: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    # A visitor identity (Segment's anonymousId): alone, it names a visitor; with an e-mail
    # or external_id, it links the visitor's history to the person (``leads_identify``).
    anonymous_id: str | None = None


@dataclass
class EventInput:
    event_id: str
    type: str
    occurred_at: datetime
    occurred_at_given: bool
    lead: LeadInput
    properties: dict[str, Any]
    fingerprint: str
    properties_json: RawJson  # canonical JSON text of ``properties``, written as is


def _json_size(value: Any) -> int:
    # surrogatepass: measuring must not fail on text that another check refuses.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode("utf-8", "surrogatepass"))


def _canonical_encoder(*, allow_nan: bool) -> Callable[[Any], str]:
    """Sorted, compact, ASCII JSON: the form fingerprints hash.

    Built once: json.dumps with options builds a JSONEncoder on every call, and
    JSONEncoder.encode builds its C encoder on every call, which costs as much as
    encoding a small object. Without markers the C encoder skips the check for
    circular references, which JSON read from a request cannot have (and would end
    in a RecursionError). The text is the same as JSONEncoder's, byte for byte."""
    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str, allow_nan=allow_nan)
    make_c_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_c_encoder is None:  # a Python without the _json accelerator
        return encoder.encode
    c_encoder = make_c_encoder(
        None, encoder.default, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, allow_nan
    )
    return lambda value: "".join(c_encoder(value, 0))


_canonical_json = _canonical_encoder(allow_nan=True)
# The same text, or a ValueError for NaN and infinities (json.loads reads 1e400 as
# infinity), which jsonb cannot hold: what properties and traits are stored as.
_storable_json = _canonical_encoder(allow_nan=False)

NUL_MESSAGE = "Contains a NUL character (\\u0000), which cannot be stored: remove it."
SURROGATE_MESSAGE = (
    "Contains a lone UTF-16 surrogate (\\ud800 to \\udfff), which is not a character: send valid UTF-8 text, "
    "and escape a character beyond U+FFFF as a pair (e.g. \\ud83d\\ude00)."
)
NON_FINITE_MESSAGE = (
    "Contains NaN, Infinity or a number too large for JSON (e.g. 1e400): send a finite number, or send it as a string."
)
DEPTH_MESSAGE = f"Nested more than {MAX_JSON_DEPTH} levels deep: flatten the structure."

_SURROGATE = re.compile(r"[\ud800-\udfff]")
# An escape in the canonical (ASCII) JSON text. There every backslash starts an escape
# (a backslash in a string is written as two), so an escape's backslash is the last of
# an odd run of them: (?<!\\)(?:\\\\)* steps over the escaped backslashes before it, and
# the text "\\ud800" (a backslash, then "ud800") is not taken for a surrogate. Groups:
# NUL; a high surrogate and the low one that completes its pair, if any; a lone low one.
_UNSTORABLE_ESCAPE = re.compile(
    r"(?<!\\)(?:\\\\)*\\u(?:(0000)|(d[89ab][0-9a-f]{2})(\\ud[c-f][0-9a-f]{2})?|(d[c-f][0-9a-f]{2}))"
)


def text_error(value: str) -> str | None:
    """Why PostgreSQL cannot store this text, or None: it refuses NUL in text and in
    jsonb, and text with a lone surrogate cannot even be encoded to UTF-8."""
    if "\x00" in value:
        return NUL_MESSAGE
    if not value.isascii() and _SURROGATE.search(value):
        return SURROGATE_MESSAGE
    return None


def _escapes_error(text: str) -> str | None:
    for match in _UNSTORABLE_ESCAPE.finditer(text):
        if match.group(1):
            return NUL_MESSAGE
        if match.group(4) or not match.group(3):
            return SURROGATE_MESSAGE
    return None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` deep (the value itself is level 1).
    A loop, not recursion: it stops at the limit however deep the value goes."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_object_checked(value: dict[str, Any], *, max_bytes: int | None) -> tuple[str, str | None]:
    """The canonical JSON text of ``value`` and None, or ("", why it cannot be stored):
    NaN or infinity, NUL or a lone surrogate in a key or a string, more than
    ``MAX_JSON_DEPTH`` levels, more than ``max_bytes`` bytes of UTF-8 (if given).

    The text is built anyway (events store and hash it): the checks read it rather
    than walk the value, and walk it only for depth, and only when the text has
    enough brackets to be that deep."""
    try:
        text = _storable_json(value)
    except ValueError:
        return "", NON_FINITE_MESSAGE
    except RecursionError:  # nested deeper than the encoder's stack allows
        return "", DEPTH_MESSAGE
    if ("\\u0000" in text or "\\ud" in text) and (problem := _escapes_error(text)):
        return "", problem
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        return "", DEPTH_MESSAGE
    # Escaped ASCII is never shorter than UTF-8: measure exactly only near the limit.
    if max_bytes is not None and len(text) > max_bytes and _json_size(value) > max_bytes:
        return "", f"At most {max_bytes} bytes of JSON: send less."
    return text, None


def _field_name(key: str) -> str:
    """A key the sender used, fit to echo in a JSON answer: lone surrogates as escapes."""
    return key if key.isascii() else key.encode("utf-8", "backslashreplace").decode()


@lru_cache(maxsize=50_000)
def _email_valid(email: str) -> bool:
    """Django's e-mail check, remembered: active leads send many events."""
    try:
        validate_email(email)
    except DjangoValidationError:
        return False
    return True


def _text(value: Any, name: str, max_length: int, errors: Errors, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            errors[name] = ["This field is required."]
        return None
    if not isinstance(value, str):
        errors[name] = ["Must be a string."]
        return None
    value = value.strip()
    # Most text is short ASCII without NUL: these two tests spare the call.
    if ("\x00" in value or not value.isascii()) and (problem := text_error(value)):
        errors[name] = [problem]
        return None
    if len(value) > max_length:
        errors[name] = [f"At most {max_length} characters (got {len(value)})."]
        return None
    if required and not value:
        errors[name] = ["This field may not be blank."]
        return None
    return value


# Characters that print as nothing (or as a blank) but make a different address:
# control (Cc), format (Cf: zero-width space and joiners, bidi marks, the BOM),
# surrogates, private-use and unassigned code points, and every separator but the
# ASCII space (which the e-mail check refuses anyway). "user@exa\u200bmple.com"
# looks like "user@example.com" and must not become a second lead.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


def email_invisible_error(value: str) -> str | None:
    """Why ``value`` cannot be an e-mail address we store, or None: it holds an
    invisible or control character, named with its position so the sender can find it."""
    for position, char in enumerate(value, start=1):
        if unicodedata.category(char) in INVISIBLE_CATEGORIES and char != " ":
            name = unicodedata.name(char, "unnamed character")
            return (
                f"Contains an invisible or control character (U+{ord(char):04X} {name}, character {position}): "
                "remove it and send the address again."
            )
    return None


def normalise_email(value: str) -> str:
    """The one form of an address we store and look up: NFC, lower-cased, and the
    domain in its ASCII (IDNA) form, so "Zoë@Bücher.de" and "zoë@xn--bcher-kva.de"
    are one lead. A domain IDNA cannot encode is left as it is, for the e-mail check
    to refuse. Check ``email_invisible_error`` first: IDNA maps some invisible
    characters (U+200B) to nothing, which would merge a spoofed address silently."""
    email = value.strip().lower()
    if email.isascii():
        return email
    email = unicodedata.normalize("NFC", email)
    local, at, domain = email.rpartition("@")
    if at and domain and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return email
        email = f"{local}@{domain}"
    return email


def _lead_profile(data: dict[str, Any], errors: Errors) -> tuple[dict[str, Any], dict[str, Any]]:
    """The profile fields and traits of ``data`` that are given and valid; the others'
    errors go to ``errors``. One set of rules for ingest, POST /leads and PATCH."""
    profile: dict[str, Any] = {}
    for name in PROFILE_TEXT_FIELDS.keys() & data.keys():
        value = _text(data[name], name, PROFILE_TEXT_FIELDS[name], errors)
        if name not in errors:
            profile[name] = value or ""
    if "company_size" in data:
        size = data["company_size"]
        if size is None:
            profile["company_size"] = None
        elif isinstance(size, bool) or not isinstance(size, int) or not COMPANY_SIZE_MIN <= size <= COMPANY_SIZE_MAX:
            errors["company_size"] = [
                f"Must be a whole number of employees from {COMPANY_SIZE_MIN} to {COMPANY_SIZE_MAX}, or null."
            ]
        else:
            profile["company_size"] = size

    traits = data.get("traits", {})
    if traits is None:
        traits = {}
    if not isinstance(traits, dict):
        errors["traits"] = ["Must be an object of custom attributes."]
        traits = {}
    elif traits:
        _, problem = json_object_checked(traits, max_bytes=MAX_TRAITS_BYTES)
        if problem:
            errors["traits"] = [problem]
    return profile, traits


def _email(value: Any, errors: Errors) -> str | None:
    """An identifying e-mail address, normalised; its problem goes to ``errors["email"]``."""
    email = _text(value, "email", 254, errors)
    # isprintable() is False exactly for the INVISIBLE_CATEGORIES (but the ASCII space): one C call.
    if email and not email.isprintable() and (problem := email_invisible_error(email)):
        errors["email"] = [problem]
        return None
    if email:
        email = normalise_email(email)
        if not _email_valid(email):
            errors["email"] = ["Enter a valid email address."]
    return email


def validate_lead(data: Any) -> tuple[LeadInput | None, Errors]:
    if not isinstance(data, dict):
        return None, {"non_field_errors": ["Must be an object with 'email' and/or 'external_id'."]}
    errors: Errors = {}
    if not LEAD_FIELDS.issuperset(data):
        for key in sorted(set(data) - LEAD_FIELDS):
            errors[_field_name(key)] = ["Unknown field: put custom attributes in 'traits'."]

    email = _email(data.get("email"), errors)
    external_id = _text(data.get("external_id"), "external_id", 128, errors)
    anonymous_id = _text(data.get("anonymous_id"), "anonymous_id", 128, errors)
    if not email and not external_id and not anonymous_id and not errors.keys() & IDENTITY_KEYS:
        errors["non_field_errors"] = [
            "A lead needs an 'email' or an 'external_id' to be identified (or, for a visitor, an 'anonymous_id')."
        ]

    profile, traits = _lead_profile(data, errors)
    if errors:
        return None, errors
    return (
        LeadInput(
            email=email, external_id=external_id, profile=profile, traits=traits, anonymous_id=anonymous_id or None
        ),
        {},
    )


def validate_lead_changes(data: Any) -> tuple[dict[str, Any] | None, Errors]:
    """A person's edit of a lead's profile (PATCH): the fields to change, by the rules
    of ingest. Identity, stage and scores are not editable this way."""
    if not isinstance(data, dict):
        return None, {"non_field_errors": ["Send an object of the fields to change."]}
    errors: Errors = {}
    for key in sorted(set(data) - EDITABLE_LEAD_FIELDS):
        errors[_field_name(key)] = ["This field cannot be edited here."]
    profile, traits = _lead_profile(data, errors)
    if errors:
        return None, errors
    return {**profile, **({"traits": traits} if "traits" in data else {})}, {}


def traits_merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A lead's traits after an upsert or edit: the changes win, a trait sent as null is removed."""
    merged = {**current, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def lead_traits_error(*, current: dict[str, Any], new: Any) -> str | None:
    """Why a person may not leave a lead with the traits ``new`` in place of ``current``
    (an edit merged into them, or the whole value typed in the admin), or None.

    The rules of every request's traits, and the cap on the result: each request's
    traits are capped, but merging adds up, so a person's edit must leave the lead
    within the cap too. Unless it shrinks traits already over it (from before the cap,
    or merged by ingest, which caps each item but not the lead's total: judging the
    total there would drop an event for its lead's history), so that those can be
    trimmed a trait at a time."""
    if not isinstance(new, dict):
        return "Must be an object of custom attributes."
    _, problem = json_object_checked(new, max_bytes=None)
    if problem:
        return problem
    size = _json_size(new)
    if size > MAX_TRAITS_BYTES and size > _json_size(current):
        return (
            f"The lead's traits would be {size} bytes of JSON, over the limit of {MAX_TRAITS_BYTES}: "
            "remove some (through the API, send them as null) or shorten their values."
        )
    return None


def parse_timestamp(value: Any, name: str, errors: Errors) -> datetime | None:
    if not isinstance(value, str):
        errors[name] = ["Must be an ISO 8601 date-time string with a time zone, e.g. 2026-11-25T10:30:00Z."]
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        errors[name] = ["Not a valid ISO 8601 date-time: use e.g. 2026-11-25T10:30:00Z."]
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        errors[name] = ["Include a time zone offset (e.g. 'Z' or '+01:00'): naive times are ambiguous."]
        return None
    # Compared, not converted: converting one of these to UTC is what overflows.
    if parsed > LATEST_TIMESTAMP:
        errors[name] = ["Lies in the future: check the sender's clock."]
        return None
    if parsed < EARLIEST_TIMESTAMP:
        errors[name] = [
            f"Lies before {EARLIEST_TIMESTAMP:%Y-%m-%dT%H:%M:%SZ}: send when it happened "
            "(a date such as 0001-01-01 usually means the sender's value is unset)."
        ]
        return None
    return parsed


def validate_event(data: Any, *, now: datetime | None = None) -> tuple[EventInput | None, Errors]:
    if not isinstance(data, dict):
        return None, {"non_field_errors": ["Each event must be a JSON object."]}
    now = now or timezone.now()
    errors: Errors = {}
    if not EVENT_FIELDS.issuperset(data):
        for key in sorted(set(data) - EVENT_FIELDS):
            errors[_field_name(key)] = ["Unknown field: put extra data in 'properties'."]

    event_id = _text(data.get("event_id"), "event_id", 128, errors, required=True)

    event_type = data.get("type")
    if event_type is None or event_type == "":
        errors["type"] = ["This field is required."]
    elif not isinstance(event_type, str) or not EVENT_TYPE_RE.match(event_type):
        errors["type"] = ["Must be a lower-case slug of letters, digits and '_' starting with a letter (max 64)."]

    occurred_at_given = data.get("occurred_at") is not None
    occurred_at: datetime | None = now
    if occurred_at_given:
        occurred_at = parse_timestamp(data["occurred_at"], "occurred_at", errors)
        if occurred_at is not None and occurred_at > now + FUTURE_TOLERANCE:
            errors["occurred_at"] = ["Lies in the future: check the sender's clock."]

    lead: LeadInput | None = None
    if "lead" not in data:
        errors["lead"] = ["This field is required: an object with 'email' and/or 'external_id'."]
    else:
        lead, lead_errors = validate_lead(data["lead"])
        if lead_errors:
            errors["lead"] = lead_errors

    properties = data.get("properties", {})
    if properties is None:
        properties = {}
    properties_json = ""
    if not isinstance(properties, dict):
        errors["properties"] = ["Must be an object."]
    else:
        properties_json, problem = json_object_checked(properties, max_bytes=MAX_PROPERTIES_BYTES)
        if problem:
            errors["properties"] = [problem]

    if errors or event_id is None or lead is None or occurred_at is None or not isinstance(event_type, str):
        return None, errors
    return (
        EventInput(
            event_id=event_id,
            type=event_type,
            occurred_at=occurred_at,
            occurred_at_given=occurred_at_given,
            lead=lead,
            properties=properties,
            fingerprint=_fingerprint(event_type, occurred_at if occurred_at_given else None, lead, properties_json),
            properties_json=RawJson(properties_json),
        ),
        {},
    )


def event_fingerprint(event_type: str, occurred_at: datetime | None, lead: LeadInput, properties: dict) -> str:
    """What makes a resent event "the same": type, client time (when given), identity, properties.
    Profile fields are an upsert, not part of the event's identity."""
    return _fingerprint(event_type, occurred_at, lead, _canonical_json(properties))


def _fingerprint(event_type: str, occurred_at: datetime | None, lead: LeadInput, properties_json: str) -> str:
    # Byte for byte the canonical JSON of [type, time, email, external_id, properties],
    # built from the properties' text the caller already has.
    head = _canonical_json(
        [event_type, occurred_at.astimezone(UTC).isoformat() if occurred_at else None, lead.email, lead.external_id]
    )
    canonical = f"{head[:-1]},{properties_json}]"
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- Outcomes (POST /api/v1/outcomes) --------------------------------------------------------------
OUTCOME_FIELDS = {"outcome_id", "kind", "amount", "currency", "occurred_at", "lead", "properties"}
CURRENCY_RE = re.compile(r"^[A-Z]{3}\Z")
_AMOUNT_FIELD = cast(DecimalField, Outcome._meta.get_field("amount"))
CENT = Decimal(1).scaleb(-_AMOUNT_FIELD.decimal_places)  # 0.01: what the column keeps
AMOUNT_MAX = Decimal(10) ** (_AMOUNT_FIELD.max_digits - _AMOUNT_FIELD.decimal_places) - CENT
UNKNOWN_LEAD_MESSAGE = (
    "No lead with this email or external_id: an outcome belongs to a lead LeadFlow already knows. "
    "Send the lead first (its events, or POST /api/v1/leads), then its outcomes."
)


@dataclass
class OutcomeInput:
    outcome_id: str
    kind: str
    amount: Decimal | None
    currency: str
    occurred_at: datetime
    email: str | None
    external_id: str | None
    properties: dict[str, Any]
    properties_json: RawJson  # canonical JSON text of ``properties``, written and compared as is


def _amount(value: Any, errors: Errors) -> Decimal | None:
    """A JSON number or a numeric string, at least 0, with at most the column's places and digits."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        errors["amount"] = ['Must be a number (e.g. 12000 or "12000.50"), or null when there is none.']
        return None
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        errors["amount"] = ['Must be a number (e.g. 12000 or "12000.50"), or null when there is none.']
        return None
    if not amount.is_finite():
        errors["amount"] = [NON_FINITE_MESSAGE]
    elif amount < 0:
        errors["amount"] = ["Must be 0 or more: send the deal's value, not a change of it."]
    elif amount > AMOUNT_MAX:
        errors["amount"] = [f"At most {AMOUNT_MAX} (got {amount}): check the amount and its unit."]
    elif amount != amount.quantize(CENT):
        errors["amount"] = [f"At most {_AMOUNT_FIELD.decimal_places} decimal places (cents): round the amount."]
    else:
        return amount.quantize(CENT)
    return None


def _outcome_lead(value: Any, errors: Errors) -> tuple[str | None, str | None]:
    """The lead's identity (email, external_id) an outcome names; no profile: the CRM's
    outcome says what happened to a lead, it does not create or edit one."""
    if not isinstance(value, dict):
        errors["lead"] = ["Must be an object with 'email' and/or 'external_id' of a known lead."]
        return None, None
    lead_errors: Errors = {}
    for key in sorted(set(value) - set(LEAD_IDENTITY_FIELDS)):
        lead_errors[_field_name(key)] = ["Unknown field: an outcome names its lead by 'email' and/or 'external_id'."]
    email = _email(value.get("email"), lead_errors)
    external_id = _text(value.get("external_id"), "external_id", 128, lead_errors)
    if not email and not external_id and not lead_errors:
        lead_errors["non_field_errors"] = ["Name the lead by its 'email' or its 'external_id'."]
    if lead_errors:
        errors["lead"] = lead_errors
        return None, None
    return email, external_id


def validate_outcome(data: Any, *, now: datetime | None = None) -> tuple[OutcomeInput | None, Errors]:
    """One outcome of a CRM: ``outcome_id``, ``kind``, ``occurred_at`` (required: the
    dashboard counts an outcome on its date), an optional ``amount`` (0 or more) with its
    ``currency`` (ISO 4217, required with an amount), the ``lead`` by identity, and
    optional ``properties``."""
    if not isinstance(data, dict):
        return None, {"non_field_errors": ["Each outcome must be a JSON object."]}
    now = now or timezone.now()
    errors: Errors = {}
    for key in sorted(set(data) - OUTCOME_FIELDS):
        errors[_field_name(key)] = ["Unknown field: put extra data in 'properties'."]

    outcome_id = _text(data.get("outcome_id"), "outcome_id", 128, errors, required=True)

    kind = data.get("kind")
    if kind is None or kind == "":
        errors["kind"] = ["This field is required."]
    elif kind not in OutcomeKind.values:
        errors["kind"] = [f"Must be one of: {', '.join(OutcomeKind.values)}."]

    amount = _amount(data.get("amount"), errors)

    currency = data.get("currency")
    if currency is None or currency == "":
        currency = ""
        if amount is not None:
            errors["currency"] = ["Required with an amount: its ISO 4217 code in upper case, e.g. EUR or USD."]
    elif not isinstance(currency, str) or not CURRENCY_RE.match(currency):
        errors["currency"] = ["Must be an ISO 4217 code of 3 upper-case letters, e.g. EUR or USD."]

    occurred_at: datetime | None = None
    if data.get("occurred_at") is None:
        errors["occurred_at"] = ["This field is required: when the CRM recorded it, e.g. 2026-11-25T10:30:00Z."]
    else:
        occurred_at = parse_timestamp(data["occurred_at"], "occurred_at", errors)
        if occurred_at is not None and occurred_at > now + FUTURE_TOLERANCE:
            errors["occurred_at"] = ["Lies in the future: check the sender's clock."]
            occurred_at = None

    email = external_id = None
    if "lead" not in data:
        errors["lead"] = ["This field is required: an object with 'email' and/or 'external_id' of a known lead."]
    else:
        email, external_id = _outcome_lead(data["lead"], errors)

    properties = data.get("properties", {})
    if properties is None:
        properties = {}
    properties_json = ""
    if not isinstance(properties, dict):
        errors["properties"] = ["Must be an object."]
    else:
        properties_json, problem = json_object_checked(properties, max_bytes=MAX_PROPERTIES_BYTES)
        if problem:
            errors["properties"] = [problem]

    if errors or outcome_id is None or occurred_at is None or not isinstance(kind, str):
        return None, errors
    return (
        OutcomeInput(
            outcome_id=outcome_id,
            kind=kind,
            amount=amount,
            currency=currency,
            occurred_at=occurred_at,
            email=email,
            external_id=external_id,
            properties=properties,
            properties_json=RawJson(properties_json),
        ),
        {},
    )


EVENT_TYPE_RULE = "a lower-case slug of letters, digits and '_' starting with a letter (at most 64)"
# The page's notation of a source's Segment mapping: one "name → event type" a line.
SEGMENT_MAPPING_ARROWS = ("→", "->")


def segment_event_types_error(value: Any) -> str | None:
    """Why a source's Segment mapping (track event name → event type) cannot be stored, or None."""
    if not isinstance(value, dict):
        return 'Must be an object of event names to event types, e.g. {"Demo Requested": "demo_request"}.'
    for name, event_type in value.items():
        if not isinstance(name, str) or not name.strip():
            return "An event name is empty: write the name the track call sends."
        if not isinstance(event_type, str) or not EVENT_TYPE_RE.match(event_type):
            return f"{name!r} maps to {event_type!r}: an event type is {EVENT_TYPE_RULE}, e.g. demo_request."
    return None


def segment_event_types_text(mapping: dict[str, str]) -> str:
    """A source's Segment mapping in the page's notation, one pair a line."""
    return "".join(f"{name} → {event_type}\n" for name, event_type in mapping.items())


@lru_cache(maxsize=4096)  # a site sends a few dozen event names, over and over
def snake_case(name: str) -> str:
    """A track event's name as an event type: "Demo Requested" → "demo_requested",
    "Signed Up (Trial)" → "signed_up_trial", "orderCompleted" → "order_completed".
    Empty when no letter is left."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    text = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    text = re.sub(r"^[0-9_]+", "", text)
    return text[:64]


def segment_event_types_parse(text: str) -> tuple[dict[str, str], list[str]]:
    """The mapping written one pair a line, ``Demo Requested → demo_request`` (``->`` too;
    the last arrow separates, since an event type holds none), blank lines skipped; and
    the problems, each naming its line. Every problem is reported, not just the first."""
    mapping: dict[str, str] = {}
    first_line: dict[str, int] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"Line {number} (“{line if len(line) <= 80 else line[:79] + '…'}”)"
        cut = max(line.rfind(arrow) for arrow in SEGMENT_MAPPING_ARROWS)
        if cut < 0:
            problems.append(
                f"{where}: write the Segment event name, an arrow (→ or ->) and the event type, "
                "e.g. Demo Requested → demo_request."
            )
            continue
        arrow = "→" if line[cut] == "→" else "->"
        name, event_type = line[:cut].strip(), line[cut + len(arrow) :].strip()
        if not name:
            problems.append(
                f"{where}: the event name is missing before the arrow: write the name the track call sends."
            )
            continue
        if problem := text_error(name):
            problems.append(f"{where}: {problem}")
            continue
        if not EVENT_TYPE_RE.match(event_type):
            suggestion = snake_case(event_type)
            hint = f", e.g. {suggestion}" if EVENT_TYPE_RE.match(suggestion) else ", e.g. demo_request"
            shown = f"“{event_type}”" if event_type else "nothing"
            problems.append(f"{where}: the event type is {shown}; an event type is {EVENT_TYPE_RULE}{hint}.")
            continue
        if name in first_line:
            problems.append(f"{where}: “{name}” is already mapped on line {first_line[name]}: keep one of the two.")
            continue
        first_line[name] = number
        mapping[name] = event_type
    return mapping, problems
