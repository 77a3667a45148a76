"""Values PostgreSQL cannot hold, or Python cannot convert, in an otherwise good request.

Each one is refused where it stands, with a field-level message: in a batch of
events it is that item's error and the other items are stored; on POST and PATCH
of a lead it is a 400 and nothing is written. Bodies are sent as raw JSON text,
as a client would write them: NaN literals, numbers like 1e400 and escaped lone
surrogates go over the wire exactly as given.

These tests must run against PostgreSQL: SQLite stores NUL characters, lone
surrogates and NaN without complaint and would hide every failure they look for.
"""

import copy
import io
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from leadflow.leads import services
from leadflow.leads.models import Event, Lead
from leadflow.leads.validation import MAX_JSON_DEPTH, MAX_TRAITS_BYTES
from tests.factories import LeadFactory
from tests.helpers import client_for

EVENTS_URL = "/api/v1/events"
LEADS_URL = "/api/v1/leads"
INT_MAX = 2**31 - 1  # PostgreSQL integer, the column of company_size


# SQLite stores what PostgreSQL refuses: only PostgreSQL shows a value that slips through.
pytestmark = pytest.mark.postgres


def raw(text):
    """JSON text sent as is, for numbers json.dumps cannot write (1e400) or writes otherwise."""
    return f"<<raw:{text}>>"


def wire(body):
    """The body as a client sends it: ASCII JSON, where a lone surrogate stays an escape
    (\\ud800) and NaN a literal, with the ``raw`` pieces in place."""
    text = json.dumps(body, allow_nan=True)
    return re.sub(r'"<<raw:(.*?)>>"', lambda match: match.group(1), text)


def nested(depth, leaf=1):
    """A JSON value of ``depth`` containers: lists, with an object every other level."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def post(client, url, body):
    return client.post(url, data=wire(body), content_type="application/json")


def post_text(client, url, text):
    return client.generic("POST", url, text, content_type="application/json")


def good_event(n):
    return {
        "event_id": f"good-{n}",
        "type": "page_view",
        "occurred_at": "2026-11-20T10:00:00Z",
        "lead": {"email": f"good{n}@example.com"},
        "properties": {"url": f"/page/{n}"},
    }


def error_at(errors, path):
    """The messages at ``path`` (e.g. ("lead", "traits")) of a DRF-shaped error dict."""
    for name in path:
        assert isinstance(errors, dict) and name in errors, f"no error at {path}: {errors}"
        errors = errors[name]
    assert isinstance(errors, list) and errors and all(isinstance(message, str) for message in errors), errors
    return errors


def lead_fields(lead):
    return (lead.name, lead.company, lead.company_size, lead.traits, lead.updated_at)


# --- The bad values, and where they go ----------------------------------------------

BAD_TEXTS = {
    "nul": "a\x00b",
    "lone_high_surrogate": "a\ud800b",
    "lone_low_surrogate": "\udc00",
    "surrogate_pair_reversed": "\ude00\ud83d",
}
NON_FINITE = {
    "NaN": raw("NaN"),
    "Infinity": raw("Infinity"),
    "-Infinity": raw("-Infinity"),
    "1e400": raw("1e400"),
    "-1e400": raw("-1e400"),
}
# Under a key of properties or traits: one level past the limit, and far past it.
TOO_DEEP = {"too_deep": nested(MAX_JSON_DEPTH), "far_too_deep": nested(400)}
OUT_OF_RANGE_INTEGERS = {"2**31": 2**31, "2**63": 2**63, "-2**31-1": -(2**31) - 1, "10**30": 10**30}
EXTREME_DATES = [
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: Python cannot convert it
    "0001-01-01T00:00:00Z",  # Go's and .NET's zero date: no activity happened then
    "1969-12-31T23:59:59Z",
    "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
    "9999-12-31T23:59:59Z",
]


def _set(path, value):
    """A change of one field of an event, ``path`` naming where (e.g. ("lead", "traits", "plan"))."""

    def apply(event):
        target = event
        for name in path[:-1]:
            target = target.setdefault(name, {})
        target[path[-1]] = value
        return event

    return apply


def _key(path, key):
    """A change adding the object key ``key`` at ``path``."""

    def apply(event):
        target = event
        for name in path:
            target = target.setdefault(name, {})
        target[key] = "value"
        return event

    return apply


def _event_cases():
    for name, text in BAD_TEXTS.items():
        yield f"property_value_{name}", _set(("properties", "topic"), text), ("properties",)
        yield f"nested_property_value_{name}", _set(("properties", "tags"), [{"x": text}]), ("properties",)
        yield f"property_key_{name}", _key(("properties",), text), ("properties",)
        yield f"trait_value_{name}", _set(("lead", "traits", "plan"), text), ("lead", "traits")
        yield f"trait_key_{name}", _key(("lead", "traits"), text), ("lead", "traits")
        yield f"name_{name}", _set(("lead", "name"), text), ("lead", "name")
        yield f"company_{name}", _set(("lead", "company"), text), ("lead", "company")
        yield f"external_id_{name}", _set(("lead", "external_id"), f"crm-{text}"), ("lead", "external_id")
        yield f"email_{name}", _set(("lead", "email"), f"bad{text}@example.com"), ("lead", "email")
        yield f"event_id_{name}", _set(("event_id",), f"bad-{text}"), ("event_id",)
        yield f"type_{name}", _set(("type",), f"page_view{text}"), ("type",)
        yield f"occurred_at_{name}", _set(("occurred_at",), f"2026-11-20T10:00:00{text}Z"), ("occurred_at",)
    for name, number in NON_FINITE.items():
        yield f"property_value_{name}", _set(("properties", "amount"), number), ("properties",)
        yield f"nested_property_value_{name}", _set(("properties", "cart"), [{"price": number}]), ("properties",)
        yield f"trait_value_{name}", _set(("lead", "traits", "revenue"), number), ("lead", "traits")
        yield f"company_size_{name}", _set(("lead", "company_size"), number), ("lead", "company_size")
    for name, value in TOO_DEEP.items():
        yield f"properties_{name}", _set(("properties", "tree"), value), ("properties",)
        yield f"traits_{name}", _set(("lead", "traits", "tree"), value), ("lead", "traits")
    for name, number in OUT_OF_RANGE_INTEGERS.items():
        yield f"company_size_{name}", _set(("lead", "company_size"), number), ("lead", "company_size")
    for date in EXTREME_DATES:
        yield f"occurred_at_{date}", _set(("occurred_at",), date), ("occurred_at",)


EVENT_CASES = list(_event_cases())


@pytest.mark.parametrize(("change", "path"), [case[1:] for case in EVENT_CASES], ids=[c[0] for c in EVENT_CASES])
def test_a_bad_value_rejects_only_its_own_event_and_the_others_are_stored(ingest_client, change, path):
    bad = change({**good_event(2), "event_id": "bad-2", "lead": {"email": "bad@example.com"}})
    response = post(ingest_client, EVENTS_URL, {"events": [good_event(1), bad, good_event(3)]})

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    assert [item["index"] for item in body["rejected"]] == [1]
    error_at(body["rejected"][0]["errors"], path)
    assert sorted(Event.objects.values_list("event_id", flat=True)) == ["good-1", "good-3"]
    assert not Lead.objects.filter(events__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_bad_value_no_longer_leaves_new_leads_without_their_events(ingest_secret):
    # Committed for real: new leads are committed before the events' transaction, so a
    # value that failed the events' insert used to strand them (a 500 and leads without events).
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ingest_secret}")
    bad = {**good_event(2), "properties": {"topic": "a\x00b"}}

    response = post(client, EVENTS_URL, {"events": [good_event(1), bad, good_event(3)]})

    assert response.status_code == 202
    assert sorted(Lead.objects.values_list("email", flat=True), key=str) == ["good1@example.com", "good3@example.com"]
    assert not Lead.objects.filter(events__isnull=True).exists()


def test_an_unknown_field_named_with_a_lone_surrogate_is_rejected_and_named_readably(ingest_client):
    bad = {**good_event(2), "\ud800extra": 1, "lead": {"email": "bad@example.com", "\udc00x": 1}}
    response = post(ingest_client, EVENTS_URL, {"events": [good_event(1), bad, good_event(3)]})

    assert response.status_code == 202
    errors = response.json()["rejected"][0]["errors"]
    assert errors["\\ud800extra"] == ["Unknown field: put extra data in 'properties'."]
    assert errors["lead"]["\\udc00x"] == ["Unknown field: put custom attributes in 'traits'."]
    assert Event.objects.count() == 2


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ('"\\ud83d\\ude00 launch"', "\U0001f600 launch"),  # a surrogate pair is one character
        ('"\\\\ud800"', "\\ud800"),  # a backslash, then the letters u, d, 8, 0, 0
        ('"\\\\\\ud83d\\ude00"', "\\\U0001f600"),  # a backslash, then a pair
        ('"\\\\u0000"', "\\u0000"),
        ('"NaN"', "NaN"),
        ("-0.0", -0.0),
        (str(10**40), 10**40),
    ],
)
def test_values_that_only_look_bad_are_stored_as_sent(ingest_client, text, stored):
    name = f', "name": {text}' if isinstance(stored, str) else ""
    body = (
        '{"event_id": "e-1", "type": "page_view", "occurred_at": "2026-11-20T10:00:00Z",'
        f' "lead": {{"email": "a@example.com"{name}}}, "properties": {{"v": {text}}}}}'
    )
    response = post_text(ingest_client, EVENTS_URL, body)

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert Event.objects.get().properties == {"v": stored}
    if name:
        assert Lead.objects.get().name == stored


def test_limits_are_inclusive(ingest_client):
    # MAX_JSON_DEPTH levels counting the object itself; more brackets than levels, side by side.
    deepest = {"tree": nested(MAX_JSON_DEPTH - 1), "side": [[1], [2], {"k": [3]}]}
    event = {
        **good_event(1),
        "occurred_at": "1970-01-01T00:00:00Z",
        "properties": deepest,
        "lead": {"email": "a@example.com", "company_size": INT_MAX, "traits": deepest},
    }
    assert post(ingest_client, EVENTS_URL, event).json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    lead = Lead.objects.get()
    assert (lead.company_size, lead.traits) == (INT_MAX, deepest)
    assert Event.objects.get().properties == deepest


@pytest.mark.parametrize("url", [EVENTS_URL, LEADS_URL])
def test_a_body_nested_too_deep_to_parse_is_a_400_that_says_so(ingest_client, url):
    response = post_text(ingest_client, url, '{"events": ' + "[" * 5000 + "]" * 5000 + "}")

    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]
    assert not Lead.objects.exists()


@pytest.mark.parametrize("url", [EVENTS_URL, LEADS_URL])
def test_a_body_that_is_not_utf8_is_a_400_that_says_so(ingest_client, url):
    response = ingest_client.generic("POST", url, b'{"email": "a\xff@example.com"}', content_type="application/json")

    assert response.status_code == 400
    assert "UTF-8" in response.json()["detail"]
    assert not Lead.objects.exists()


# --- POST /api/v1/leads -------------------------------------------------------------


def _on_lead(change):
    """A change of an event's lead as a change of a lead object."""
    return lambda lead: change({"lead": lead})["lead"]


def _lead_cases():
    """The cases of ``EVENT_CASES`` that concern the lead."""
    for case_id, change, path in EVENT_CASES:
        if path[0] == "lead":
            yield case_id, _on_lead(change), path[1:]


LEAD_CASES = list(_lead_cases())


@pytest.mark.parametrize(("change", "path"), [case[1:] for case in LEAD_CASES], ids=[c[0] for c in LEAD_CASES])
def test_lead_upsert_with_a_bad_value_is_a_field_level_400_and_writes_nothing(ingest_client, change, path):
    response = post(ingest_client, LEADS_URL, change({"email": "bad@example.com", "name": "Ada"}))

    assert response.status_code == 400, response.content
    error_at(response.json(), path)
    assert not Lead.objects.exists()


# --- PATCH /api/v1/leads/{id} -------------------------------------------------------

PATCH_CASES = [
    (case_id, change, path)
    for case_id, change, path in LEAD_CASES
    if path[0] not in ("email", "external_id")  # identity is not editable
]


@pytest.mark.parametrize(("change", "path"), [case[1:] for case in PATCH_CASES], ids=[c[0] for c in PATCH_CASES])
def test_lead_edit_with_a_bad_value_is_a_field_level_400_and_changes_nothing(marketer, change, path):
    lead = LeadFactory.create(name="Ada", company_size=10, traits={"plan": "free"})
    before = lead_fields(lead)

    response = client_for(marketer).patch(
        f"{LEADS_URL}/{lead.public_id}", data=wire(change({"job_title": "CTO"})), content_type="application/json"
    )

    assert response.status_code == 400, response.content
    error_at(response.json(), path)
    lead.refresh_from_db()
    assert lead_fields(lead) == before
    assert lead.job_title != "CTO"


def test_lead_edit_refuses_traits_over_the_ingest_cap(marketer):
    lead = LeadFactory.create(traits={})

    big = {"notes": "x" * MAX_TRAITS_BYTES}
    response = client_for(marketer).patch(f"{LEADS_URL}/{lead.public_id}", {"traits": big}, format="json")

    assert response.status_code == 400
    assert f"{MAX_TRAITS_BYTES} bytes" in error_at(response.json(), ("traits",))[0]
    lead.refresh_from_db()
    assert lead.traits == {}


def test_lead_edit_refuses_traits_that_would_grow_the_lead_past_the_cap_but_allows_shrinking(marketer):
    half = "x" * (MAX_TRAITS_BYTES // 2)
    lead = LeadFactory.create(traits={"a": half})
    client = client_for(marketer)

    response = client.patch(f"{LEADS_URL}/{lead.public_id}", {"traits": {"b": half}}, format="json")
    assert response.status_code == 400
    assert "null" in error_at(response.json(), ("traits",))[0]
    lead.refresh_from_db()
    assert lead.traits == {"a": half}

    # A lead over the cap (from before the cap) can still be trimmed, a trait at a time.
    Lead.objects.filter(pk=lead.pk).update(traits={"a": half, "b": half, "c": half})
    response = client.patch(f"{LEADS_URL}/{lead.public_id}", {"traits": {"c": None, "d": 1}}, format="json")
    assert response.status_code == 200
    lead.refresh_from_db()
    assert lead.traits == {"a": half, "b": half, "d": 1}


def test_lead_edit_of_a_body_nested_too_deep_to_parse_is_a_400(marketer):
    lead = LeadFactory.create()
    response = client_for(marketer).generic(
        "PATCH", f"{LEADS_URL}/{lead.public_id}", '{"traits": ' + "[" * 5000 + "]" * 5000 + "}", "application/json"
    )
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


def test_admin_refuses_traits_the_api_refuses(django_user_model, client):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw-not-used-1"))
    lead = LeadFactory.create(traits={"plan": "free"})
    form = {
        "email": lead.email,
        "name": lead.name,
        "company": lead.company,
        "job_title": lead.job_title,
        "source": lead.source_id,
        "traits": '{"plan": "pro", "revenue": NaN}',
    }

    response = client.post(f"/admin/leads/lead/{lead.pk}/change/", form)

    assert response.status_code == 200  # the form again, with its error
    assert "NaN" in response.context["adminform"].form.errors["traits"][0]
    lead.refresh_from_db()
    assert lead.traits == {"plan": "free"}
    form["traits"] = '{"plan": "pro"}'
    assert client.post(f"/admin/leads/lead/{lead.pk}/change/", form).status_code == 302
    lead.refresh_from_db()
    assert lead.traits == {"plan": "pro"}


# --- CSV import ---------------------------------------------------------------------


def test_csv_import_reports_bad_values_on_their_line_and_imports_the_rest(db, tmp_path):
    from django.core.management import call_command

    path = tmp_path / "leads.csv"
    path.write_text(
        "email,name,company_size\n"
        "ada@example.com,Ada,10\n"
        "nul@example.com,A\x00B,10\n"
        "big@example.com,Big,2147483648\n"
        "bob@example.com,Bob,2147483647\n",
        encoding="utf-8",
    )
    stdout = io.StringIO()
    call_command("import_leads", str(path), stdout=stdout, stderr=io.StringIO())

    assert "Line 3: " in stdout.getvalue()
    assert "Line 4: " in stdout.getvalue()
    assert sorted(Lead.objects.values_list("email", "company_size")) == [
        ("ada@example.com", 10),
        ("bob@example.com", INT_MAX),
    ]


# --- Properties: any JSON, anywhere ---------------------------------------------------

SPECIAL_CHARACTERS = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\ude00", "\U0001f600", "\\", '"', "é"]
texts = st.text(st.characters() | st.sampled_from(SPECIAL_CHARACTERS), max_size=8)
clean_texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
numbers = (
    st.integers()
    | st.integers(min_value=2**31 - 2, max_value=2**64)
    | st.integers(min_value=-(2**64), max_value=-(2**31) + 2)
    | st.floats()  # NaN and infinities included
    | st.sampled_from([raw("1e400"), raw("-1e400"), raw("NaN")])
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
) | st.integers(min_value=MAX_JSON_DEPTH - 2, max_value=MAX_JSON_DEPTH + 2).map(nested)
# Anything at all, and often a value that once broke ingest; never a name the valid items use.
wild_values = st.one_of(
    json_values,
    st.sampled_from([*BAD_TEXTS.values(), *NON_FINITE.values(), *OUT_OF_RANGE_INTEGERS.values(), *EXTREME_DATES]),
).filter(lambda value: not (isinstance(value, str) and value.strip().lower().startswith("ok")))

KEY = object()  # in a path: a key drawn from ``texts``
LEAD_PATHS = [
    ("email",),
    ("external_id",),
    ("name",),
    ("company",),
    ("company_size",),
    ("traits",),
    ("traits", "plan"),
    ("traits", KEY),
    (KEY,),
]
EVENT_PATHS = [
    ("event_id",),
    ("type",),
    ("occurred_at",),
    ("properties",),
    ("properties", "url"),
    ("properties", KEY),
    ("lead",),
    (KEY,),
    *(("lead", *path) for path in LEAD_PATHS),
]


def wild_lead(n):
    return {"email": f"w{n}@wild.example", "name": "Wild", "company_size": 5, "traits": {"plan": "pro"}}


def wild_event(n):
    return {**good_event(n), "event_id": f"w-{n}", "lead": wild_lead(n)}


@st.composite
def corrupted(draw, value, paths):
    """A copy of ``value`` with one or two of ``paths`` set to wild values (or, now and then, wholly wild)."""
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(wild_values)
    value = copy.deepcopy(value)
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=2)):
        target = value
        for name in path[:-1]:
            target = target.get(name) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[draw(texts) if path[-1] is KEY else path[-1]] = draw(wild_values)
    return value


@st.composite
def batches(draw):
    """A batch of valid events (ids "ok-N", leads "okN@valid.example") mixed with corrupted ones."""
    items, valid = [], {}
    for n in range(draw(st.integers(min_value=1, max_value=6))):
        if draw(st.booleans()):
            event = {
                "event_id": f"ok-{n}",
                "type": "page_view",
                "occurred_at": "2026-11-20T10:00:00Z",
                "lead": {
                    "email": f"ok{n}@valid.example",
                    "name": draw(clean_texts),
                    "traits": draw(st.dictionaries(clean_texts, clean_texts | st.integers(), max_size=3)),
                },
                "properties": draw(st.dictionaries(clean_texts, clean_texts | st.integers(), max_size=3)),
            }
            valid[event["event_id"]] = event["lead"]["email"]
            items.append(event)
        else:
            items.append(draw(corrupted(wild_event(n), EVENT_PATHS)))
    return items, valid


def _clean_slate():
    Event.objects.all().delete()
    Lead.objects.all().delete()


PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.mark.django_db(transaction=True)
@PROPERTY_SETTINGS
@given(batch=batches())
def test_any_batch_stores_every_valid_event_once_and_never_fails(ingest_client, batch):
    # Committed for real, as in production, where new leads are committed before their events.
    _clean_slate()
    items, valid = batch

    response = post(ingest_client, EVENTS_URL, {"events": items})

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] + body["duplicates"] + len(body["rejected"]) == len(items)
    for event_id, email in valid.items():
        assert list(Event.objects.filter(event_id=event_id).values_list("lead__email", flat=True)) == [email]
    assert not Lead.objects.filter(events__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
@PROPERTY_SETTINGS
@given(lead=corrupted(wild_lead(1), LEAD_PATHS))
def test_any_lead_upsert_answers_201_or_a_400_and_writes_only_what_it_accepts(ingest_client, lead):
    _clean_slate()

    response = post(ingest_client, LEADS_URL, lead)

    assert response.status_code in (201, 400), response.content
    assert Lead.objects.count() == (1 if response.status_code == 201 else 0)


@pytest.mark.django_db(transaction=True)
@PROPERTY_SETTINGS
@given(changes=corrupted({"name": "Bob", "traits": {"plan": "pro"}}, LEAD_PATHS[2:]))
def test_any_lead_edit_answers_200_or_a_400_and_changes_nothing_on_a_400(marketer, changes):
    _clean_slate()
    lead = LeadFactory.create(name="Ada", company_size=10, traits={"plan": "free"})
    before = lead_fields(lead)

    response = client_for(marketer).patch(
        f"{LEADS_URL}/{lead.public_id}", data=wire(changes), content_type="application/json"
    )

    assert response.status_code in (200, 400), response.content
    lead.refresh_from_db()
    if response.status_code == 400:
        assert lead_fields(lead) == before
    else:
        assert lead.updated_at > before[-1]


def test_the_bad_value_tests_send_what_they_mean():
    assert wire({"v": "\ud800", "n": float("nan"), "x": raw("1e400")}) == '{"v": "\\ud800", "n": NaN, "x": 1e400}'
    assert json.loads(wire(nested(3))) == [{"k": [1]}]


def test_ingest_keeps_working_after_a_bad_batch(ingest_client):
    # A bad value must not leave the connection in a failed transaction for the next request.
    post(ingest_client, EVENTS_URL, {"events": [_set(("properties", "v"), "\x00")(good_event(1))]})
    assert post(ingest_client, EVENTS_URL, good_event(2)).json()["accepted"] == 1


def test_services_refuse_bad_values_too(source):
    # The API is one caller; the service validates whatever it is given.
    result = services.events_ingest(source=source, payloads=[{**good_event(1), "properties": {"v": float("nan")}}])
    assert result.accepted == 0
    assert "properties" in result.rejected[0]["errors"]


def test_an_event_type_with_a_trailing_newline_is_refused(ingest_client):
    events = [
        {"event_id": "nl-1", "type": "page_view\n", "lead": {"email": "a@example.com"}},
        {"event_id": "nl-2", "type": "page_view", "lead": {"email": "a@example.com"}},
    ]
    response = ingest_client.post("/api/v1/events", {"events": events}, format="json")
    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert [item["index"] for item in response.json()["rejected"]] == [0]
    assert list(response.json()["rejected"][0]["errors"]) == ["type"]
