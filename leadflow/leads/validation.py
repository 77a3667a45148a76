"""Validation of ingest payloads (events and lead upserts).

Hand-written rather than DRF serializers because the ingest endpoint validates
up to 1000 items per request at 10k+ events/s; the messages are the same
field-level shape DRF produces (``{"field": ["message"]}``). The OpenAPI
documentation of the same shapes lives in ``leadflow.leads.api``.
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.utils import timezone

from leadflow.db import RawJson

EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_PROPERTIES_BYTES = 16 * 1024
MAX_TRAITS_BYTES = 16 * 1024
FUTURE_TOLERANCE = timedelta(hours=1)

# Profile fields a sender may set, with their maximum length.
PROFILE_TEXT_FIELDS: dict[str, int] = {
    "name": 200,
    "company": 200,
    "job_title": 200,
    "industry": 100,
    "country": 64,
    "utm_source": 200,
    "utm_medium": 200,
    "utm_campaign": 200,
}
LEAD_FIELDS = {"email", "external_id", "company_size", "traits", *PROFILE_TEXT_FIELDS}
EVENT_FIELDS = {"event_id", "type", "occurred_at", "lead", "properties"}

Errors = dict[str, Any]


@dataclass
class LeadInput:
    email: str | None
    external_id: str | None
    profile: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)


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
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


# Sorted, compact, ASCII JSON: the form fingerprints hash. One encoder for every
# call: json.dumps with options builds a new one each time.
_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


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
    if len(value) > max_length:
        errors[name] = [f"At most {max_length} characters (got {len(value)})."]
        return None
    if required and not value:
        errors[name] = ["This field may not be blank."]
        return None
    return value


def normalise_email(value: str) -> str:
    return value.strip().lower()


def validate_lead(data: Any) -> tuple[LeadInput | None, Errors]:
    if not isinstance(data, dict):
        return None, {"non_field_errors": ["Must be an object with 'email' and/or 'external_id'."]}
    errors: Errors = {}
    if not LEAD_FIELDS.issuperset(data):
        for key in sorted(set(data) - LEAD_FIELDS):
            errors[key] = ["Unknown field: put custom attributes in 'traits'."]

    email = _text(data.get("email"), "email", 254, errors)
    if email:
        email = normalise_email(email)
        if not _email_valid(email):
            errors["email"] = ["Enter a valid email address."]
    external_id = _text(data.get("external_id"), "external_id", 128, errors)
    if not email and not external_id and "email" not in errors and "external_id" not in errors:
        errors["non_field_errors"] = ["A lead needs an 'email' or an 'external_id' to be identified."]

    profile: dict[str, Any] = {}
    for name in PROFILE_TEXT_FIELDS.keys() & data.keys():
        value = _text(data[name], name, PROFILE_TEXT_FIELDS[name], errors)
        if name not in errors:
            profile[name] = value or ""
    if "company_size" in data:
        size = data["company_size"]
        if size is None:
            profile["company_size"] = None
        elif isinstance(size, bool) or not isinstance(size, int) or size < 0:
            errors["company_size"] = ["Must be a whole number of employees (0 or more), or null."]
        else:
            profile["company_size"] = size

    traits = data.get("traits", {})
    if traits is None:
        traits = {}
    if not isinstance(traits, dict):
        errors["traits"] = ["Must be an object of custom attributes."]
        traits = {}
    elif traits and _json_size(traits) > MAX_TRAITS_BYTES:
        errors["traits"] = [f"At most {MAX_TRAITS_BYTES} bytes of JSON."]

    if errors:
        return None, errors
    return LeadInput(email=email, external_id=external_id, profile=profile, traits=traits), {}


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
    return parsed


def validate_event(data: Any, *, now: datetime | None = None) -> tuple[EventInput | None, Errors]:
    if not isinstance(data, dict):
        return None, {"non_field_errors": ["Each event must be a JSON object."]}
    now = now or timezone.now()
    errors: Errors = {}
    if not EVENT_FIELDS.issuperset(data):
        for key in sorted(set(data) - EVENT_FIELDS):
            errors[key] = ["Unknown field: put extra data in 'properties'."]

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
        properties_json = _canonical_json(properties)
        # Escaped ASCII is never shorter than UTF-8: measure exactly only near the limit.
        if len(properties_json) > MAX_PROPERTIES_BYTES and _json_size(properties) > MAX_PROPERTIES_BYTES:
            errors["properties"] = [f"At most {MAX_PROPERTIES_BYTES} bytes of JSON."]

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
