"""Segment-compatible ingest, driven by the real Segment SDK (``analytics-python`` from
PyPI) posting to the live test server: visitors, identify, track, gzip, the write key
as Basic or Bearer, and the drop log."""

import base64
import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import analytics
import pytest
import requests
from django.contrib.admin.models import LogEntry
from prometheus_client import REGISTRY

from leadflow.leads import services
from leadflow.leads.models import AnonymousId, Event, Lead, LeadMerge, SegmentDrop, Stage
from leadflow.leads.segment import segment_ingest
from leadflow.leads.validation import segment_event_types_parse, snake_case
from tests.factories import SourceFactory
from tests.helpers import behaviour, browser, lead_score
from tests.test_rollups import everything_current, everything_recounted

pytestmark = pytest.mark.django_db(transaction=True)

DEMO_RULES = [behaviour("page_view", 10), behaviour("demo_request", 40)]


@pytest.fixture
def segment_source(db):
    return SourceFactory.create(
        name="Website (Segment)", slug="segment-web", segment_event_types={"Demo Requested": "demo_request"}
    )


@pytest.fixture
def write_key(segment_source):
    _key, secret = services.ingest_key_create(source=segment_source)
    return secret


def sdk(live_server, write_key, *, gzip_bodies=False, errors=None, upload_interval=0.05):
    """The Segment SDK as a team runs it: batching in its own thread, pointed at LeadFlow
    (a batch gathers the calls made within ``upload_interval`` of its first)."""
    return analytics.Client(
        write_key,
        host=f"{live_server.url}/api/segment",
        gzip=gzip_bodies,
        upload_size=500,
        upload_interval=upload_interval,
        max_retries=0,
        on_error=(lambda error, batch: errors.append(error)) if errors is not None else None,
    )


def test_visitor_page_views_then_identify_then_demo_request_make_an_sql_with_its_history_scored(
    live_server, write_key, publish_ruleset
):
    publish_ruleset(DEMO_RULES, mql=30, sql=60)
    errors: list = []
    client = sdk(live_server, write_key, errors=errors)
    start = datetime.now(UTC) - timedelta(minutes=30)
    for n, path in enumerate(["/", "/pricing", "/docs"]):
        client.page(
            anonymous_id="anon-ada",
            name=path,
            properties={"url": f"https://example.com{path}", "path": path, "title": f"Page {n}"},
            context={"campaign": {"source": "google", "medium": "cpc", "name": "spring"}},
            timestamp=start + timedelta(minutes=n),
        )
    client.flush()
    visitor = Lead.objects.get()
    assert visitor.visitor and visitor.email is None and visitor.stage == Stage.NEW
    assert visitor.events.count() == 3
    page = visitor.events.order_by("occurred_at").first()
    assert page.type == "page_view"
    assert page.properties["path"] == "/" and page.properties["utm_campaign"] == "spring"
    assert (visitor.utm_source, visitor.utm_medium, visitor.utm_campaign) == ("google", "cpc", "spring")

    client.identify(
        anonymous_id="anon-ada",
        traits={"email": "Ada@Example.com", "firstName": "Ada", "lastName": "Lovelace", "company": {"name": "AE"}},
        timestamp=start + timedelta(minutes=5),
    )
    client.flush()
    lead = Lead.objects.get()
    assert lead.pk == visitor.pk, "the visitor becomes the person"
    assert (lead.email, lead.name, lead.company, lead.visitor) == ("ada@example.com", "Ada Lovelace", "AE", False)

    demo_time = start + timedelta(minutes=6)
    client.track(anonymous_id="anon-ada", event="Demo Requested", timestamp=demo_time, message_id="demo-1")
    client.flush()
    assert errors == []
    lead.refresh_from_db()
    assert lead.stage == Stage.SQL
    assert lead_score(lead) == 70, "three anonymous page views (30) and the demo request (40)"
    assert Event.objects.filter(lead=lead, type="demo_request").count() == 1

    # A resend (an SDK retry: the same message) is a duplicate, stored once.
    client.track(anonymous_id="anon-ada", event="Demo Requested", timestamp=demo_time, message_id="demo-1")
    client.flush()
    assert Event.objects.filter(lead=lead).count() == 4
    assert not SegmentDrop.objects.exists()
    # The dashboard's rollups followed the visitor, its campaign and its identification.
    assert everything_current() == everything_recounted()


def test_identify_of_a_known_person_merges_the_visitor_and_its_page_views(live_server, write_key, segment_source):
    person, _ = services.lead_upsert(source=segment_source, data=services.LeadInput("grace@example.com", None))
    client = sdk(live_server, write_key)
    for n in range(2):
        client.page(anonymous_id="anon-grace", name="Home", properties={"path": f"/{n}"})
    client.flush()
    visitor = Lead.objects.get(visitor=True)

    client.identify(anonymous_id="anon-grace", user_id="u-42", traits={"email": "grace@example.com"})
    client.flush()
    assert list(Lead.objects.values_list("pk", flat=True)) == [person.pk]
    person.refresh_from_db()
    assert person.external_id == "u-42"
    assert person.events.filter(type="page_view").count() == 2
    assert AnonymousId.objects.get(anonymous_id="anon-grace").lead_id == person.pk
    merge = LeadMerge.objects.get()
    assert (merge.survivor_id, merge.merged_public_id, merge.actor) == (person.pk, visitor.public_id, None)
    assert merge.counts["events"] == 2

    # Later page views from that device go to the person.
    client.page(anonymous_id="anon-grace", name="Pricing")
    client.flush()
    assert person.events.count() == 3 and not Lead.objects.filter(visitor=True).exists()


def ingest_sample(name, **labels):
    """A value of the ingest's series in this process (the live server's thread counts here too)."""
    return REGISTRY.get_sample_value(name, {"source": "segment-web", **labels}) or 0.0


def test_a_gzip_batch_of_every_message_type_is_stored(live_server, write_key, segment_source):
    errors: list = []
    batches = ingest_sample("leadflow_ingest_batch_seconds_count")
    accepted = ingest_sample("leadflow_ingest_events_total", outcome="accepted")
    # Every call within the SDK's upload interval goes in one batch, gzipped.
    client = sdk(live_server, write_key, gzip_bodies=True, errors=errors, upload_interval=2)
    client.identify(user_id="u-1", traits={"email": "lin@example.com", "title": "CTO", "employees": 250, "plan": "pro"})
    client.track(user_id="u-1", event="Whitepaper Downloaded", properties={"asset": "guide.pdf"})
    client.screen(user_id="u-1", name="Settings")
    client.group(user_id="u-1", group_id="g-1", traits={"name": "Lin Industries"})
    client.page(anonymous_id="anon-lin", name="Pricing", properties={"path": "/pricing"})
    client.alias(previous_id="anon-lin", user_id="u-1")
    client.flush()
    assert errors == [] and not SegmentDrop.objects.exists()
    assert ingest_sample("leadflow_ingest_batch_seconds_count") - batches == 1, "one batch"
    assert ingest_sample("leadflow_ingest_events_total", outcome="accepted") - accepted == 6
    # identify
    lead = Lead.objects.get()
    assert (lead.external_id, lead.email, lead.job_title, lead.company_size) == ("u-1", "lin@example.com", "CTO", 250)
    # group
    assert lead.traits == {"plan": "pro", "account": "Lin Industries"}
    assert lead.account is not None and lead.account.name == "Lin Industries"
    # track
    download = lead.events.get(type="whitepaper_downloaded")
    assert download.properties["asset"] == "guide.pdf"
    # screen
    assert lead.events.get(type="screen_view").properties["name"] == "Settings"
    # page, by a visitor the alias then merged into the person
    assert lead.events.get(type="page_view").properties["path"] == "/pricing"
    assert AnonymousId.objects.get(anonymous_id="anon-lin").lead_id == lead.pk
    assert LeadMerge.objects.get().survivor_id == lead.pk


def _visitor_and_a_known_person(source):
    segment_ingest(source=source, messages=[{"type": "page", "anonymousId": "anon-1", "messageId": "p-0"}])
    services.lead_upsert(source=source, data=services.LeadInput("ada@example.com", "u-1"))


def _tracked():
    assert Event.objects.get(lead__external_id="u-1").type == "demo_request"


def _identified():
    lead = Lead.objects.get(external_id="u-1")
    assert (lead.email, lead.job_title, lead.traits) == ("ada@example.com", "CTO", {"plan": "pro"})


def _page_viewed():
    assert Event.objects.get(type="page_view", lead__visitor=True).properties["path"] == "/pricing"


def _screen_viewed():
    assert Event.objects.get(type="screen_view", lead__external_id="u-1").properties["name"] == "Settings"


def _grouped():
    lead = Lead.objects.get(external_id="u-1")
    assert lead.traits == {"account": "Analytical Engines"} and lead.account.name == "Analytical Engines"


def _merged():
    lead = Lead.objects.get()
    assert lead.external_id == "u-1" and lead.events.get().type == "page_view"
    assert LeadMerge.objects.get().survivor_id == lead.pk


# Each single-message endpoint: (the message, what to set up first, its stored effect).
SINGLE_MESSAGES: dict[str, tuple[dict[str, Any], Callable[[Any], None] | None, Callable[[], None]]] = {
    "track": ({"userId": "u-1", "event": "Demo Requested"}, None, _tracked),
    "identify": (
        {"userId": "u-1", "traits": {"email": "ada@example.com", "title": "CTO", "plan": "pro"}},
        None,
        _identified,
    ),
    "page": ({"anonymousId": "anon-1", "name": "Pricing", "properties": {"path": "/pricing"}}, None, _page_viewed),
    "screen": ({"userId": "u-1", "name": "Settings"}, None, _screen_viewed),
    "group": ({"userId": "u-1", "groupId": "g-1", "traits": {"name": "Analytical Engines"}}, None, _grouped),
    "alias": ({"previousId": "anon-1", "userId": "u-1"}, _visitor_and_a_known_person, _merged),
}


@pytest.mark.parametrize("kind", list(SINGLE_MESSAGES))
def test_each_single_message_endpoint_stores_its_message_with_the_write_key_as_basic_user_name(
    live_server, write_key, segment_source, kind
):
    message, prepare, stored = SINGLE_MESSAGES[kind]
    if prepare:
        prepare(segment_source)
    response = requests.post(
        f"{live_server.url}/api/segment/v1/{kind}",
        json={**message, "messageId": f"{kind}-1"},
        auth=(write_key, ""),
        timeout=10,
    )
    assert response.status_code == 200 and response.json() == {"success": True}
    assert not SegmentDrop.objects.exists()
    stored()


@pytest.mark.parametrize("kind", list(SINGLE_MESSAGES))
def test_analytics_js_short_paths_take_text_plain_with_the_write_key_in_the_body(
    client, write_key, segment_source, kind
):
    """analytics.js posts a message to ``/v1/<first letter>`` as text/plain; a request the
    browser sends without the Authorization header is authenticated by the body's writeKey."""
    message, prepare, stored = SINGLE_MESSAGES[kind]
    if prepare:
        prepare(segment_source)
    body = {**message, "type": kind, "messageId": f"{kind}-1", "writeKey": write_key}
    response = client.post(f"/api/segment/v1/{kind[0]}", json.dumps(body), content_type="text/plain")
    assert response.status_code == 200 and response.json() == {"success": True}
    assert not SegmentDrop.objects.exists()
    stored()


def test_analytics_js_batch_is_stored_and_its_write_key_is_kept_nowhere(client, write_key, segment_source):
    basic = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    messages: list[dict[str, Any]] = [
        {"type": "page", "anonymousId": "anon-b", "messageId": "b-1", "properties": {"path": "/"}},
        {"type": "track", "anonymousId": "anon-b", "messageId": "b-2", "event": "!!!"},  # dropped
    ]
    body = {"writeKey": write_key, "batch": [{**m, "writeKey": write_key} for m in messages], "sentAt": None}
    response = client.post("/api/segment/v1/b", json.dumps(body), content_type="text/plain", HTTP_AUTHORIZATION=basic)
    assert response.status_code == 200
    assert Event.objects.get().type == "page_view"
    drop = SegmentDrop.objects.get()
    assert write_key not in json.dumps(drop.message) and write_key not in json.dumps(
        list(Event.objects.values()), default=str
    )
    # analytics-next's first batching releases posted the messages alone, without the object.
    bare = [{**messages[0], "messageId": "b-3", "writeKey": write_key}]
    assert client.post("/api/segment/v1/b", json.dumps(bare), content_type="text/plain").status_code == 200
    assert Event.objects.count() == 2


def test_a_wrong_write_key_in_the_body_is_refused_and_stores_nothing(client, write_key, marketer):
    url = "/api/segment/v1/t"
    message = {"type": "track", "event": "Signed Up", "userId": "u-7", "messageId": "m-1"}
    wrong = client.post(url, json.dumps({**message, "writeKey": "lfi_wrong_key"}), content_type="text/plain")
    assert wrong.status_code == 401 and "Invalid or revoked ingest key" in wrong.json()["detail"]
    not_text = client.post(url, json.dumps({**message, "writeKey": 42}), content_type="text/plain")
    assert not_text.status_code == 401 and "writeKey must be a string" in not_text.json()["detail"]
    _token, personal = services.api_token_create(user=marketer)
    as_person = client.post(url, json.dumps({**message, "writeKey": personal}), content_type="text/plain")
    assert as_person.status_code == 401 and "ingest key" in as_person.json()["detail"]
    anonymous = client.post(url, json.dumps(message), content_type="text/plain")
    assert anonymous.status_code == 401
    not_json = client.post(url, b"{nope", content_type="text/plain")
    assert not_json.status_code == 400
    assert not Event.objects.exists() and not Lead.objects.exists()


def _preflight(client, path, origin="https://www.example.com"):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type,x-retry-count,anonymousid",
    )


def test_a_websites_sdk_may_post_cross_origin_to_segment_ingest_and_nowhere_else(client, write_key):
    preflight = _preflight(client, "/api/segment/v1/batch")
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    allowed = preflight.headers["Access-Control-Allow-Headers"].split(", ")
    assert {"authorization", "content-type", "x-retry-count", "anonymousid"} <= set(allowed)
    assert "Access-Control-Allow-Credentials" not in preflight.headers, "never with the visitor's cookies"
    post = client.post(
        "/api/segment/v1/p",
        json.dumps({"type": "page", "anonymousId": "a-1", "messageId": "p-1", "writeKey": write_key}),
        content_type="text/plain",
        HTTP_ORIGIN="https://www.example.com",
    )
    assert post.status_code == 200 and post.headers["Access-Control-Allow-Origin"] == "*"
    # The native API, the pages and the admin stay same-origin.
    for path in ("/api/v1/events", "/api/v1/leads", "/login/"):
        assert "Access-Control-Allow-Origin" not in _preflight(client, path).headers, path


def test_segment_allowed_origins_limits_which_websites_may_post(settings, client):
    settings.CORS_ALLOW_ALL_ORIGINS = False
    settings.CORS_ALLOWED_ORIGINS = ["https://www.example.com"]
    assert _preflight(client, "/api/segment/v1/b").headers["Access-Control-Allow-Origin"] == "https://www.example.com"
    assert "Access-Control-Allow-Origin" not in _preflight(client, "/api/segment/v1/b", "https://evil.example").headers


def test_write_key_works_as_basic_user_name_and_as_bearer_and_a_wrong_one_is_refused(live_server, write_key):
    message = {"type": "track", "event": "Signed Up", "userId": "u-7", "messageId": "m-1"}
    url = f"{live_server.url}/api/segment/v1/track"
    basic = requests.post(url, json=message, auth=(write_key, ""), timeout=10)
    assert basic.status_code == 200 and basic.json() == {"success": True}
    bearer = requests.post(
        f"{live_server.url}/api/segment/v1/batch",
        json={"batch": [{**message, "messageId": "m-2"}], "sentAt": datetime.now(UTC).isoformat()},
        headers={"Authorization": f"Bearer {write_key}"},
        timeout=10,
    )
    assert bearer.status_code == 200
    assert Event.objects.filter(type="signed_up").count() == 2

    wrong = requests.post(url, json=message, auth=("lfi_wrong_key", ""), timeout=10)
    assert wrong.status_code == 401
    none = requests.post(url, json=message, timeout=10)
    assert none.status_code in (401, 403)


def test_a_bad_message_is_dropped_logged_and_listed_while_the_good_ones_are_stored(
    live_server, write_key, segment_source, marketer, rep
):
    errors: list = []
    client = sdk(live_server, write_key, errors=errors)
    client.track(user_id="u-9", event="Trial Started")
    client.track(user_id="u-9", event="!!!")  # nothing to make an event type of
    client.flush()
    assert errors == [], "the SDK is answered 200 either way"
    assert Event.objects.filter(type="trial_started").count() == 1
    drop = SegmentDrop.objects.get()
    assert drop.source == segment_source and drop.message_type == "track"
    assert "event" in drop.errors

    page = browser(marketer).get("/segment/drops/")
    assert page.status_code == 200
    assert "!!!" in page.content.decode() and "map it on the source" in page.content.decode()
    assert browser(rep).get("/segment/drops/").status_code == 403


def test_original_timestamp_is_corrected_by_the_senders_clock_skew(segment_source):
    now = datetime.now(UTC)
    skewed_sent = now + timedelta(hours=2)  # the device's clock runs two hours ahead
    segment_ingest(
        source=segment_source,
        messages=[
            {
                "type": "track",
                "event": "Pricing Viewed",
                "userId": "u-3",
                "messageId": "skew-1",
                "originalTimestamp": (skewed_sent - timedelta(minutes=10)).isoformat(),
            }
        ],
        sent_at=skewed_sent.isoformat(),
    )
    event = Event.objects.get()
    assert abs(event.occurred_at - (now - timedelta(minutes=10))) < timedelta(seconds=5)


def test_alias_joins_an_anonymous_id_to_the_user_id(segment_source):
    segment_ingest(source=segment_source, messages=[{"type": "page", "anonymousId": "a-1", "messageId": "p-1"}])
    segment_ingest(source=segment_source, messages=[{"type": "alias", "previousId": "a-1", "userId": "u-5"}])
    lead = Lead.objects.get()
    assert (lead.external_id, lead.visitor, lead.events.count()) == ("u-5", False, 1)


def test_alias_of_one_known_users_id_to_another_merges_the_first_lead_into_the_second(
    live_server, write_key, segment_source
):
    errors: list = []
    client = sdk(live_server, write_key, errors=errors)
    client.identify(user_id="u-old", traits={"email": "old@example.com"})
    client.track(user_id="u-old", event="Trial Started", message_id="t-1")
    client.identify(user_id="u-new", traits={"email": "new@example.com"})
    client.flush()
    earlier, kept = Lead.objects.get(external_id="u-old"), Lead.objects.get(external_id="u-new")

    client.alias(previous_id="u-old", user_id="u-new")
    client.flush()
    assert errors == [] and not SegmentDrop.objects.exists()
    assert list(Lead.objects.values_list("pk", flat=True)) == [kept.pk], "one person: the lead of userId survives"
    kept.refresh_from_db()
    assert (kept.external_id, kept.email) == ("u-new", "new@example.com")
    assert kept.events.get().type == "trial_started"
    merge = LeadMerge.objects.get()
    assert (merge.survivor_id, merge.merged_public_id, merge.actor) == (kept.pk, earlier.public_id, None)
    assert merge.merged_identities["external_id"] == "u-old" and merge.reason == "Segment alias of u-old."


def test_alias_of_a_visitors_anonymous_id_to_a_known_users_id_merges_the_visitor_and_its_page_views(
    live_server, write_key, segment_source
):
    person, _ = services.lead_upsert(source=segment_source, data=services.LeadInput("amy@example.com", "u-amy"))
    client = sdk(live_server, write_key)
    client.page(anonymous_id="anon-amy", name="Pricing")
    client.flush()
    visitor = Lead.objects.get(visitor=True)

    client.alias(previous_id="anon-amy", user_id="u-amy")
    client.flush()
    assert list(Lead.objects.values_list("pk", flat=True)) == [person.pk]
    assert person.events.get().type == "page_view"
    assert AnonymousId.objects.get(anonymous_id="anon-amy").lead_id == person.pk
    assert LeadMerge.objects.get().merged_public_id == visitor.public_id


def test_alias_of_a_users_id_to_a_new_one_gives_the_lead_the_new_user_id(live_server, write_key, segment_source):
    errors: list = []
    client = sdk(live_server, write_key, errors=errors)
    client.identify(user_id="u-42", traits={"email": "joan@example.com", "name": "Joan Clarke"})
    client.track(user_id="u-42", event="Trial Started", message_id="t-1")
    client.flush()
    lead = Lead.objects.get()

    client.alias(previous_id="u-42", user_id="joan-7f3a")
    client.track(user_id="joan-7f3a", event="Demo Requested", message_id="t-2")
    client.flush()
    assert errors == [] and not SegmentDrop.objects.exists()
    assert list(Lead.objects.values_list("pk", flat=True)) == [lead.pk], "the person changed ids: the same lead"
    lead.refresh_from_db()
    assert (lead.external_id, lead.email, lead.name) == ("joan-7f3a", "joan@example.com", "Joan Clarke")
    assert sorted(lead.events.values_list("type", flat=True)) == ["demo_request", "trial_started"]
    assert not LeadMerge.objects.exists()

    # A lead has one external_id: the previous userId no longer names it (README).
    client.track(user_id="u-42", event="Pricing Viewed", message_id="t-3")
    client.flush()
    assert Lead.objects.get(external_id="u-42").pk != lead.pk


def test_drop_log_keeps_the_last_messages_of_each_source(segment_source, settings):
    settings.SEGMENT_DROPS_KEPT = 3
    for n in range(5):
        segment_ingest(source=segment_source, messages=[{"type": "track", "messageId": f"bad-{n}"}])
    kept = list(SegmentDrop.objects.order_by("id").values_list("message_id", flat=True))
    assert kept == ["bad-2", "bad-3", "bad-4"]


def test_a_gzip_body_that_is_not_gzip_answers_400(live_server, write_key):
    response = requests.post(
        f"{live_server.url}/api/segment/v1/batch",
        data=b"not gzip",
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        auth=(write_key, ""),
        timeout=10,
    )
    assert response.status_code == 400
    body = gzip.compress(json.dumps({"batch": [{"type": "page", "anonymousId": "z", "messageId": "g1"}]}).encode())
    ok = requests.post(
        f"{live_server.url}/api/segment/v1/batch",
        data=body,
        headers={
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode(),
        },
        timeout=10,
    )
    assert ok.status_code == 200 and Event.objects.count() == 1


def test_track_event_names_become_snake_case_event_types():
    assert snake_case("Demo Requested") == "demo_requested"
    assert snake_case("Signed Up (Trial)") == "signed_up_trial"
    assert snake_case("orderCompleted") == "order_completed"
    assert snake_case("!!!") == ""


def test_bad_bodies_answer_clear_4xx_and_store_nothing(live_server, write_key, marketer, settings):
    url = f"{live_server.url}/api/segment/v1/batch"
    not_json = requests.post(url, data=b"{nope", auth=(write_key, ""), timeout=10)
    assert not_json.status_code == 400 and "Malformed JSON" in not_json.json()["detail"]
    no_batch = requests.post(url, json={"messages": []}, auth=(write_key, ""), timeout=10)
    assert no_batch.status_code == 400 and "batch" in no_batch.json()
    not_object = requests.post(f"{live_server.url}/api/segment/v1/track", json=[1], auth=(write_key, ""), timeout=10)
    assert not_object.status_code == 400
    too_many = {"batch": [{"type": "page", "anonymousId": "a", "messageId": f"m{n}"} for n in range(1001)]}
    assert requests.post(url, json=too_many, auth=(write_key, ""), timeout=10).status_code == 413
    _token, personal = services.api_token_create(user=marketer)
    as_person = requests.post(url, json={"batch": []}, auth=(personal, ""), timeout=10)
    assert as_person.status_code == 401 and "ingest key" in as_person.json()["detail"]
    assert not Event.objects.exists() and not Lead.objects.exists()


def test_conflicting_identities_in_an_identify_are_dropped_with_the_reason(segment_source):
    services.lead_upsert(source=segment_source, data=services.LeadInput("kim@example.com", None))
    services.lead_upsert(source=segment_source, data=services.LeadInput(None, "u-kim"))
    segment_ingest(
        source=segment_source,
        messages=[{"type": "identify", "userId": "u-kim", "traits": {"email": "kim@example.com"}, "messageId": "i"}],
    )
    drop = SegmentDrop.objects.get()
    assert any("merge the leads first" in problem for problem in drop.problems)
    assert Lead.objects.count() == 2


# --- A source's Segment event names, edited on a page -------------------------------------------------
def event_names_page(source):
    return f"/segment/sources/{source.slug}/event-names"


def test_marketing_and_scoring_admins_edit_a_sources_event_names_and_sales_get_403(
    segment_source, marketer, admin, rep, outsider
):
    page = browser(marketer).get(event_names_page(segment_source))
    assert page.status_code == 200
    assert "Demo Requested → demo_request" in page.content.decode()

    text = "Demo Requested → demo_request\nTrial Started -> trial_start\n"
    for person in (rep, outsider):
        assert browser(person).get(event_names_page(segment_source)).status_code == 403
        assert browser(person).post(event_names_page(segment_source), {"event_types": text}).status_code == 403
    assert browser().get(event_names_page(segment_source)).status_code == 302  # to the login page
    segment_source.refresh_from_db()
    assert segment_source.segment_event_types == {"Demo Requested": "demo_request"}

    saved = browser(admin).post(event_names_page(segment_source), {"event_types": text}, follow=True)
    assert saved.status_code == 200 and "Saved 2 Segment event names" in saved.content.decode()
    segment_source.refresh_from_db()
    assert segment_source.segment_event_types == {"Demo Requested": "demo_request", "Trial Started": "trial_start"}
    # The change is in the source's history, the admin's, with its other edits.
    entry = LogEntry.objects.get(object_id=str(segment_source.pk))
    assert entry.user == admin and "added “Trial Started” → trial_start" in entry.change_message
    assert browser(marketer).get(f"/segment/sources/{segment_source.slug}-nope/event-names").status_code == 404


def test_a_post_without_the_csrf_token_is_refused(segment_source, marketer):
    guarded = browser(marketer, enforce_csrf_checks=True)
    response = guarded.post(event_names_page(segment_source), {"event_types": "Signed Up → signup"})
    assert response.status_code == 403
    segment_source.refresh_from_db()
    assert segment_source.segment_event_types == {"Demo Requested": "demo_request"}


def test_each_wrong_line_is_named_in_the_fields_errors_and_nothing_is_saved(segment_source, marketer):
    text = "\n".join(
        [
            "Demo Requested → demo_request",  # 1: fine
            "Trial Started → Trial Start",  # 2: not a slug
            "Signed Up",  # 3: no arrow
            "→ orphan",  # 4: no name
            f"Long One → {'a' * 65}",  # 5: over 64 characters
            "Number → 1st_touch",  # 6: does not start with a letter
            "Demo Requested → demo",  # 7: the same name twice
            "",
            "Webinar Joined → webinar_attended",  # 9: fine
        ]
    )
    response = browser(marketer).post(event_names_page(segment_source), {"event_types": text})
    assert response.status_code == 400
    errors = response.context["form"].errors["event_types"]
    assert [error.split(" ", 2)[1] for error in errors] == ["2", "3", "4", "5", "6", "7"]
    assert "Line 2 (“Trial Started → Trial Start”)" in errors[0] and "e.g. trial_start" in errors[0]
    assert "an arrow" in errors[1] and "event name is missing" in errors[2]
    assert "at most 64" in errors[3] and "starting with a letter" in errors[4]
    assert "already mapped on line 1" in errors[5]
    page = response.content.decode()
    assert "Line 2 (“Trial Started → Trial Start”)" in page and "Webinar Joined → webinar_attended" in page
    segment_source.refresh_from_db()
    assert segment_source.segment_event_types == {"Demo Requested": "demo_request"}
    assert not LogEntry.objects.exists()


def test_the_next_track_message_uses_the_names_saved_on_the_page(live_server, write_key, segment_source, marketer):
    errors: list = []
    client = sdk(live_server, write_key, errors=errors)
    client.track(user_id="u-9", event="???")  # nothing to make an event type of: dropped
    client.flush()
    drop = SegmentDrop.objects.get()
    assert any(event_names_page(segment_source) in problem for problem in drop.problems), "points at the page"
    drops_page = browser(marketer).get("/segment/drops/").content.decode()
    assert f'href="{event_names_page(segment_source)}"' in drops_page

    saved = browser(marketer).post(
        event_names_page(segment_source),
        {"event_types": "Demo Requested → demo_request\n??? → mystery\nTrial Started → trial_start"},
    )
    assert saved.status_code == 302
    client.track(user_id="u-9", event="???", message_id="m-1")
    client.track(user_id="u-9", event="Trial Started", message_id="m-2")
    client.flush()
    assert errors == [] and SegmentDrop.objects.count() == 1
    lead = Lead.objects.get(external_id="u-9")
    assert sorted(lead.events.values_list("type", flat=True)) == ["mystery", "trial_start"]


def test_a_camel_case_event_type_is_refused_with_its_snake_case_as_the_hint():
    mapping, problems = segment_event_types_parse("Order Completed → orderCompleted")
    assert mapping == {} and len(problems) == 1
    assert "e.g. order_completed" in problems[0], problems


def test_without_credentials_a_body_without_a_key_is_a_failed_authentication_and_failures_stop_the_parsing(
    client, write_key, settings
):
    settings.API_AUTH_FAILURE_LIMIT = 3
    message = {"type": "track", "event": "Signed Up", "userId": "u-8", "messageId": "m-1"}
    no_key = client.post("/api/segment/v1/t", json.dumps(message), content_type="text/plain")
    assert no_key.status_code == 401 and "No write key" in no_key.json()["detail"]
    not_json = client.post("/api/segment/v1/t", b"{nope", content_type="text/plain")
    assert not_json.status_code == 400
    wrong = client.post("/api/segment/v1/t", json.dumps({**message, "writeKey": "lfi_x_y"}), content_type="text/plain")
    assert wrong.status_code == 401
    # Three failures from this address: even the right key is refused for the window.
    right = client.post("/api/segment/v1/t", json.dumps({**message, "writeKey": write_key}), content_type="text/plain")
    assert right.status_code == 429 and "Retry-After" in right.headers
    assert not Event.objects.exists()
