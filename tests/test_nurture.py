"""Nurture that knows what converts (issue 14, item 5): content attribution, nurture
segments with their next content, the pages, the CSV export, the API and the push of a
segment through the signed webhook.

The fixed example (``story``), relative to now; every MQL entered MQL 20 days ago, the
SQLs entered SQL 5 days ago; assets and their topics: roi-guide (pricing), scoring-101
(lead scoring), pricing-sheet (pricing):

====  ===========  ============================================  ===========================
lead  stage        events (days ago)                             history
====  ===========  ============================================  ===========================
L1    accepted     roi-guide 10                                  MQL, SQL, accepted, won
L2    sql          roi-guide 10                                  MQL, SQL
L3    mql          roi-guide 10                                  MQL
L4    recycled     scoring-101 10                                MQL, SQL, recycled
L5    mql          scoring-101 10, pricing-sheet 10              MQL
L6    mql          scoring-101 10                                MQL
L7    mql          none                                          MQL
L8    sql          pricing page 15, roi-guide 2 (after its SQL)  MQL, SQL
L9    mql          roi-guide 60 (before the window)              MQL
L10   mql          pricing page 2                                MQL
====  ===========  ============================================  ===========================

10 MQLs, 4 of them became SQL (L1, L2, L4, L8). Engaged with roi-guide in the window
(30 days before MQL until SQL): L1, L2, L3 → 2 of 3 converted; the other 7: 2 (L4, L8).
scoring-101: L4, L5, L6 → 1 of 3; the others 3 of 7. pricing-sheet: L5 → 0 of 1; the
others 4 of 9.
"""

import csv
import io
import json
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import redis
import time_machine
from django.urls import reverse
from django.utils import timezone

from handoff import webhooks
from handoff.models import WebhookDelivery
from leadflow.leads import nurture, tasks
from leadflow.leads.lifecycle import lead_stage_change
from leadflow.leads.models import OutcomeKind, Stage, StageChange
from tests.factories import EventFactory, LeadFactory, OutcomeFactory
from tests.helpers import client_for, real_broker

SECRET = "whsec-nurture-0123456789abcdef"


def days_ago(days: float):
    return timezone.now() - timedelta(days=days)


def lead_with_history(name, stage, path, **fields):
    lead = LeadFactory.create(name=name, stage=stage, company=f"{name} Inc", **fields)
    moments = {
        Stage.MQL: days_ago(20),
        Stage.SQL: days_ago(5),
        Stage.ACCEPTED: days_ago(4),
        Stage.RECYCLED: days_ago(3),
    }
    # The lifecycle keeps when the lead first became MQL and last became SQL on the lead.
    lead.mql_at = moments[Stage.MQL] if Stage.MQL in path else None
    lead.sql_at = moments[Stage.SQL] if Stage.SQL in path else None
    lead.save(update_fields=["mql_at", "sql_at"])
    previous = Stage.NEW
    for stage_reached in path:
        StageChange.objects.create(lead=lead, from_stage=previous, to_stage=stage_reached, at=moments[stage_reached])
        previous = stage_reached
    return lead


def engaged(lead, days: float, *, asset: str = "", topic: str = "", type: str = "content_download"):
    properties = {key: value for key, value in (("asset", asset), ("topic", topic)) if value}
    return EventFactory.create(lead=lead, type=type, properties=properties, occurred_at=days_ago(days))


ROI, SCORING_101, SHEET = "roi-guide", "scoring-101", "pricing-sheet"
PRICING, LEAD_SCORING = "pricing", "lead scoring"


@pytest.fixture
def story(db):
    mql, to_sql = [Stage.MQL], [Stage.MQL, Stage.SQL]
    leads = SimpleNamespace(
        l1=lead_with_history("L1", Stage.ACCEPTED, [*to_sql, Stage.ACCEPTED]),
        l2=lead_with_history("L2", Stage.SQL, to_sql),
        l3=lead_with_history("L3", Stage.MQL, mql),
        l4=lead_with_history("L4", Stage.RECYCLED, [*to_sql, Stage.RECYCLED]),
        l5=lead_with_history("L5", Stage.MQL, mql),
        l6=lead_with_history("L6", Stage.MQL, mql),
        l7=lead_with_history("L7", Stage.MQL, mql),
        l8=lead_with_history("L8", Stage.SQL, to_sql),
        l9=lead_with_history("L9", Stage.MQL, mql),
        l10=lead_with_history("L10", Stage.MQL, mql),
    )
    for lead in (leads.l1, leads.l2, leads.l3):
        engaged(lead, 10, asset=ROI, topic=PRICING)
    for lead in (leads.l4, leads.l5, leads.l6):
        engaged(lead, 10, asset=SCORING_101, topic=LEAD_SCORING)
    engaged(leads.l5, 10, asset=SHEET, topic=PRICING)
    engaged(leads.l8, 15, topic=PRICING, type="page_view")
    engaged(leads.l8, 2, asset=ROI, topic=PRICING)
    engaged(leads.l9, 60, asset=ROI, topic=PRICING)
    engaged(leads.l10, 2, topic=PRICING, type="page_view")
    OutcomeFactory.create(lead=leads.l1, kind=OutcomeKind.WON)
    OutcomeFactory.create(lead=leads.l2, kind=OutcomeKind.LOST)
    return leads


def by_asset(attribution):
    return {conversion.asset: conversion for conversion in attribution.conversions}


# --- Attribution ------------------------------------------------------------------------------
def test_attribution_counts_what_sqls_engaged_with_in_the_days_before_becoming_sql(story):
    attribution = nurture.content_attribution(days=30)

    assert (attribution.sql_leads, attribution.accepted_leads, attribution.won_leads) == (4, 1, 1)
    # L8's roi-guide came after its SQL: not counted; its pricing page (15 days before) is.
    assert [(c.value, c.sql, c.accepted, c.won) for c in attribution.assets] == [
        (ROI, 2, 1, 1),
        (SCORING_101, 1, 0, 0),
    ]
    assert [(c.value, c.sql, c.accepted, c.won) for c in attribution.topics] == [
        (PRICING, 3, 1, 1),
        (LEAD_SCORING, 1, 0, 0),
    ]


def test_a_shorter_window_leaves_out_engagement_earlier_before_sql(story):
    attribution = nurture.content_attribution(days=3)

    assert attribution.assets == []
    assert attribution.sql_leads == 4


def test_attribution_compares_the_mqls_that_engaged_with_an_asset_to_those_that_did_not(story):
    attribution = nurture.content_attribution(days=30, min_leads=1)
    conversions = by_asset(attribution)

    assert (attribution.mql_leads, attribution.converted_leads) == (10, 4)
    roi, basics, sheet = conversions[ROI], conversions[SCORING_101], conversions[SHEET]
    assert (roi.engaged.successes, roi.engaged.trials) == (2, 3)
    assert (roi.not_engaged.successes, roi.not_engaged.trials) == (2, 7)
    assert roi.engaged.value == pytest.approx(2 / 3)
    assert roi.not_engaged.value == pytest.approx(2 / 7)
    assert roi.lift == pytest.approx((2 / 3) / (2 / 7))
    assert (basics.engaged.successes, basics.engaged.trials) == (1, 3)
    assert (basics.not_engaged.successes, basics.not_engaged.trials) == (3, 7)
    assert (sheet.engaged.successes, sheet.engaged.trials) == (0, 1)
    assert (sheet.not_engaged.successes, sheet.not_engaged.trials) == (4, 9)
    # Wilson 95 %: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), by hand.
    assert roi.engaged.interval == pytest.approx((0.2077, 0.9385), abs=1e-4)
    assert roi.not_engaged.interval == pytest.approx((0.0822, 0.6411), abs=1e-4)
    assert sheet.engaged.interval == pytest.approx((0.0, 0.7935), abs=1e-4)
    assert sheet.not_engaged.interval == pytest.approx((0.1888, 0.7333), abs=1e-4)
    assert [roi.topic, basics.topic, sheet.topic] == [PRICING, LEAD_SCORING, PRICING]
    # Best converting first: by the lower bound of the engaged MQLs' rate.
    assert [c.asset for c in attribution.conversions] == [ROI, SCORING_101, SHEET]


def test_an_asset_below_the_minimum_count_is_marked_not_enough_data(story):
    conversions = by_asset(nurture.content_attribution(days=30, min_leads=3))

    assert conversions[ROI].enough_data and conversions[SCORING_101].enough_data
    assert not conversions[SHEET].enough_data  # one MQL engaged with it


def test_wilson_interval_of_no_trials_is_undefined():
    assert nurture.wilson_interval(0, 0) is None
    assert nurture.Rate(0, 0).value is None


def test_attribution_is_empty_without_mqls(db):
    attribution = nurture.content_attribution()

    assert attribution.is_empty
    assert attribution.conversions == attribution.assets == attribution.topics == []


def test_attribution_takes_a_bounded_number_of_queries(story, django_assert_max_num_queries):
    for n in range(5):
        lead = lead_with_history(f"Extra {n}", Stage.MQL, [Stage.MQL])
        engaged(lead, 1, asset=f"asset-{n}", topic=f"topic-{n}")
    with django_assert_max_num_queries(6):
        nurture.content_attribution()


# --- Segments ---------------------------------------------------------------------------------
def segments_by_key(segments):
    return {segment.key: segment for segment in segments.segments}


def test_segments_group_leads_in_nurture_by_top_topic_and_recency(story):
    segments = segments_by_key(nurture.nurture_segments(min_leads=1))

    assert {key: segment.leads for key, segment in segments.items()} == {
        "lead-scoring--this-month": 3,  # L4 (recycled), L5 (a tie with pricing: alphabetical), L6
        "pricing--this-month": 1,  # L3
        "pricing--this-week": 1,  # L10
        "pricing--older": 1,  # L9: its topic is within 90 days, its last event older than 30
        "no-topic--older": 1,  # L7: no event at all
    }


def test_a_segments_next_content_is_its_topics_best_converting_asset_not_every_lead_saw(story):
    segments = segments_by_key(nurture.nurture_segments(min_leads=1))

    def next_of(key):
        segment = segments[key]
        return (segment.next_content.asset if segment.next_content else None, segment.not_seen_by)

    assert next_of("pricing--this-week") == (ROI, 1)  # the best pricing asset, unseen by L10
    assert next_of("pricing--this-month") == (SHEET, 1)  # L3 saw roi-guide: the next best
    assert next_of("pricing--older") == (SHEET, 1)  # L9 saw roi-guide 60 days ago
    assert next_of("lead-scoring--this-month") == (None, 0)  # they all saw scoring-101
    assert next_of("no-topic--older") == (ROI, 1)  # no topic: the best asset of all


def test_each_lead_gets_its_best_unseen_asset(story):
    segments = nurture.nurture_segments(min_leads=1)
    leads = list(nurture.nurture_leads().order_by("name"))
    suggestions = nurture.leads_next_content(leads, ranking=segments.ranking)

    assert {lead.name: (s.asset if (s := suggestions[lead.pk]) else None) for lead in leads} == {
        "L3": SHEET,
        "L4": None,
        "L5": None,
        "L6": None,
        "L7": ROI,
        "L9": SHEET,
        "L10": ROI,
    }


def test_segments_take_a_bounded_number_of_queries(story, django_assert_max_num_queries):
    for n in range(10):
        lead = lead_with_history(f"Extra {n}", Stage.MQL, [Stage.MQL])
        engaged(lead, n + 1, asset=f"asset-{n % 3}", topic=f"topic-{n % 4}")
    with django_assert_max_num_queries(8):
        nurture.nurture_segments()


def test_segment_keys_are_readable_and_never_collide_with_no_topic():
    assert nurture.segment_key("Lead Scoring", "this-week") == "lead-scoring--this-week"
    assert nurture.segment_key("", "older") == "no-topic--older"
    assert nurture.segment_key("No topic", "older").startswith("topic-")
    assert nurture.segment_key("営業", "older").startswith("topic-")
    assert nurture.parse_segment_key("pricing--soon") is None


# --- Pages ------------------------------------------------------------------------------------
def test_the_nurture_page_shows_the_segments_with_their_next_content_and_the_attribution(client, marketer, story):
    client.force_login(marketer)
    response = client.get(reverse("nurture"))

    assert response.status_code == 200
    page = response.content.decode()
    assert reverse("nurture-segment", args=["pricing--this-week"]) in page
    assert "What converts" in page and ROI in page and SHEET in page
    assert "67%" in page  # roi-guide: 2 of 3 engaged MQLs became SQL
    assert "not enough data" in page  # every asset has fewer than 10 MQLs on one side
    assert "Nothing new: they saw every asset of this topic" in page  # lead scoring, this month


def test_the_nurture_page_says_what_to_do_when_there_is_no_lead_in_nurture(client, marketer):
    client.force_login(marketer)
    page = client.get(reverse("nurture")).content.decode()

    assert "No lead in nurture" in page
    assert "No MQL has engaged with an asset yet" in page
    assert "NOTIFY_WEBHOOK_URL" in page


def test_the_nurture_page_takes_a_bounded_number_of_queries(client, marketer, story, django_assert_max_num_queries):
    client.force_login(marketer)
    for n in range(10):
        lead = lead_with_history(f"Extra {n}", Stage.MQL, [Stage.MQL])
        engaged(lead, n + 1, asset=f"asset-{n % 3}", topic=f"topic-{n % 4}")
    with django_assert_max_num_queries(14):
        assert client.get(reverse("nurture")).status_code == 200


def test_a_segment_page_lists_its_leads_with_each_ones_next_content(client, marketer, story):
    client.force_login(marketer)
    response = client.get(reverse("nurture-segment", args=["pricing--this-month"]))

    page = response.content.decode()
    assert response.status_code == 200
    assert reverse("lead-detail", args=[story.l3.public_id]) in page
    assert reverse("lead-detail", args=[story.l10.public_id]) not in page  # this week's
    assert SHEET in page


def test_a_segment_page_is_paginated_with_a_bounded_number_of_queries(
    client, marketer, db, django_assert_max_num_queries
):
    client.force_login(marketer)
    for n in range(60):
        lead = lead_with_history(f"P{n}", Stage.MQL, [Stage.MQL])
        engaged(lead, 1, topic=PRICING, type="page_view")
    with django_assert_max_num_queries(16):
        response = client.get(reverse("nurture-segment", args=["pricing--this-week"]))
    assert response.status_code == 200
    assert response.content.decode().count('class="lead-name"') == 50
    second = client.get(reverse("nurture-segment", args=["pricing--this-week"]), {"page": 2})
    assert second.content.decode().count('class="lead-name"') == 10


def test_a_segment_lists_its_leads_most_recently_engaged_first(client, marketer, story):
    earlier = lead_with_history("Earlier", Stage.MQL, [Stage.MQL])
    engaged(earlier, 20, asset=ROI, topic=PRICING)
    segments = nurture.nurture_segments()
    segment = nurture.segment_find(segments, "pricing--this-month")
    assert segment is not None
    leads = nurture.segment_leads(nurture.segment_member_ids(segments, segment))
    assert [lead.name for lead in leads] == ["L3", "Earlier"], "L3: 10 days ago; Earlier: 20"


def test_the_segments_are_a_snapshot_every_page_reads_until_it_expires(
    client, marketer, story, settings, django_assert_max_num_queries
):
    settings.NURTURE_CACHE_SECONDS = 300
    client.force_login(marketer)
    first = client.get(reverse("nurture")).content.decode()
    assert "Segments computed" in first and "refreshed in the background once older than 5 minutes" in first
    # The session, the user, their roles, the webhook check, the unread notifications: no segment query.
    with django_assert_max_num_queries(5):
        assert client.get(reverse("nurture")).status_code == 200

    # L3 becomes an SQL: its segment keeps its count until the snapshot expires, but its
    # page no longer lists it; the segments computed again no longer count it.
    lead_stage_change(lead=story.l3, to_stage=Stage.SQL, actor=marketer, reason="Asked for a demo")
    page = client.get(reverse("nurture-segment", args=["pricing--this-month"])).content.decode()
    assert "1 lead in nurture" in page and "a lead that has left nurture since is not listed" in page
    assert reverse("lead-detail", args=[story.l3.public_id]) not in page
    answer = client_for(marketer).get(reverse("api-nurture-segments")).json()
    assert datetime.fromisoformat(answer["computed_at"]) < timezone.now()
    assert {s["key"]: s["leads"] for s in answer["segments"]}["pricing--this-month"] == 1, "the same snapshot"

    settings.NURTURE_CACHE_SECONDS = 0
    keys = {segment.key for segment in nurture.nurture_segments().segments}
    assert "pricing--this-month" not in keys, "computed again: L3 is out of nurture"


def test_an_expired_snapshot_is_shown_while_one_refresh_is_queued_then_replaced(marketer, story, settings):
    settings.NURTURE_CACHE_SECONDS = 300
    first = nurture.nurture_segments()  # none yet: computed by the call
    lead_stage_change(lead=story.l3, to_stage=Stage.SQL, actor=marketer, reason="Asked for a demo")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(settings.RESCORE_QUEUE)
    try:
        with time_machine.travel(timezone.now() + timedelta(minutes=6)), real_broker():
            stale, again = nurture.nurture_segments(), nurture.nurture_segments()
            assert stale.computed_at == again.computed_at == first.computed_at, "shown while it is refreshed"
            assert "pricing--this-month" in segments_by_key(stale)
            assert broker.llen(settings.RESCORE_QUEUE) == 1, "one refresh queued, whoever asks"

            tasks.refresh_nurture_segments(nurture.DEFAULT_DAYS, nurture.DEFAULT_TOPIC_DAYS, nurture.DEFAULT_MIN_LEADS)
            fresh = nurture.nurture_segments()
            assert fresh.computed_at is not None and first.computed_at is not None
            assert fresh.computed_at > first.computed_at
            assert "pricing--this-month" not in segments_by_key(fresh), "L3 is an SQL now"
    finally:
        broker.delete(settings.RESCORE_QUEUE)
        broker.close()


def test_a_refresh_the_broker_refused_is_queued_by_the_next_request(marketer, story, settings):
    settings.NURTURE_CACHE_SECONDS = 300
    first = nurture.nurture_segments()
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(settings.RESCORE_QUEUE)
    try:
        with time_machine.travel(timezone.now() + timedelta(minutes=6)):
            with real_broker("redis://127.0.0.1:1/0"):  # nothing listens there
                assert nurture.nurture_segments().computed_at == first.computed_at, "the snapshot, still"
            with real_broker():
                nurture.nurture_segments()
                assert broker.llen(settings.RESCORE_QUEUE) == 1, "the refused refresh did not hold the lock"
    finally:
        broker.delete(settings.RESCORE_QUEUE)
        broker.close()


def test_a_segment_with_no_lead_now_shows_an_empty_state_and_a_malformed_key_is_404(client, marketer, db):
    client.force_login(marketer)

    empty = client.get(reverse("nurture-segment", args=["pricing--this-week"]))
    assert empty.status_code == 200
    assert "No lead in this segment now" in empty.content.decode()
    assert client.get(reverse("nurture-segment", args=["pricing--next-year"])).status_code == 404


def test_sales_may_not_see_nurture_and_scoring_admins_may(client, rep, admin, story):
    client.force_login(rep)
    assert client.get(reverse("nurture")).status_code == 403
    assert client.get(reverse("nurture-segment-export", args=["pricing--this-month"])).status_code == 403
    assert client.post(reverse("nurture-segment-push", args=["pricing--this-month"])).status_code == 403
    client.force_login(admin)
    assert client.get(reverse("nurture")).status_code == 200


def test_the_nav_links_nurture_for_marketing_only(client, marketer, rep):
    client.force_login(marketer)
    assert 'href="/nurture/"' in client.get(reverse("lead-list")).content.decode()
    client.force_login(rep)
    assert 'href="/nurture/"' not in client.get(reverse("lead-list")).content.decode()


def test_the_lead_page_suggests_the_next_content_of_a_lead_in_nurture(client, marketer, story):
    client.force_login(marketer)
    page = client.get(reverse("lead-detail", args=[story.l10.public_id])).content.decode()

    assert "Next content" in page
    assert f"<strong>{ROI}</strong>" in page
    assert reverse("nurture-segment", args=["pricing--this-week"]) in page
    sql_page = client.get(reverse("lead-detail", args=[story.l2.public_id])).content.decode()
    assert "next-content-title" not in sql_page  # an SQL is sales' now


# --- CSV export ---------------------------------------------------------------------------------
def test_a_segment_exports_its_leads_as_csv(client, marketer, story):
    story.l9.email = "=cmd@evil.test"
    story.l9.save(update_fields=["email"])
    lead_with_history("L11", Stage.MQL, [Stage.MQL], email="l11@acme.test")
    engaged(story.l3, 40, asset=ROI, topic=PRICING)  # an older view: its last activity stays 10 days ago
    client.force_login(marketer)
    response = client.get(reverse("nurture-segment-export", args=["pricing--older"]))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["email", "name", "company", "topic", "last_engagement", "next_content"]
    assert len(rows) == 2
    email, name, company, topic, last, next_content = rows[1]
    assert (email, name, company, topic, next_content) == ("'=cmd@evil.test", "L9", "L9 Inc", PRICING, SHEET)
    assert last.startswith(days_ago(60).date().isoformat()) and last.endswith("Z")


def test_the_export_of_a_segment_with_no_lead_is_its_header(client, marketer, db):
    client.force_login(marketer)
    response = client.get(reverse("nurture-segment-export", args=["no-topic--older"]))

    assert b"".join(response.streaming_content).decode().strip() == (
        "email,name,company,topic,last_engagement,next_content"
    )


# --- API --------------------------------------------------------------------------------------
def test_the_segments_api_lists_segments_with_their_next_content(marketer, story):
    response = client_for(marketer).get(reverse("api-nurture-segments"), {"min_leads": 1})

    assert response.status_code == 200
    body = response.json()
    assert (body["days"], body["topic_days"], body["leads"]) == (30, 90, 7)
    segments = {s["key"]: s for s in body["segments"]}
    assert segments["pricing--this-month"]["topic"] == PRICING
    assert segments["pricing--this-month"]["next_content"]["asset"] == SHEET
    assert segments["pricing--this-month"]["next_content"]["enough_data"] is True
    assert segments["no-topic--older"]["topic"] is None
    assert segments["lead-scoring--this-month"]["next_content"] is None


def test_the_attribution_api_gives_rates_with_intervals(admin, story):
    body = client_for(admin).get(reverse("api-nurture-attribution"), {"days": 30}).json()

    roi = body["conversions"][0]
    assert roi["asset"] == ROI
    assert roi["engaged"]["converted"] == 2 and roi["engaged"]["leads"] == 3
    assert roi["engaged"]["rate"] == pytest.approx(2 / 3)
    assert roi["engaged"]["low"] == pytest.approx(0.2077, abs=1e-4)
    assert roi["enough_data"] is False  # default minimum: 10
    assert body["overall"]["converted"] == 4 and body["overall"]["leads"] == 10
    assert body["assets"][0] == {"value": ROI, "sql": 2, "accepted": 1, "won": 1}


def test_the_api_refuses_a_bad_window_with_a_field_message(marketer, db):
    response = client_for(marketer).get(reverse("api-nurture-segments"), {"days": "0", "topic_days": "x"})

    assert response.status_code == 400
    assert set(response.json()) == {"days", "topic_days"}


def test_the_nurture_api_is_for_marketing_and_scoring_admins(rep, outsider, db):
    assert client_for(rep).get(reverse("api-nurture-segments")).status_code == 403
    assert client_for(outsider).get(reverse("api-nurture-attribution")).status_code == 403
    assert client_for(rep).post(reverse("api-nurture-segment-push", args=["pricing--older"])).status_code == 403


def test_the_segments_api_takes_a_bounded_number_of_queries(marketer, story, django_assert_max_num_queries):
    client = client_for(marketer)
    with django_assert_max_num_queries(10):
        assert client.get(reverse("api-nurture-segments")).status_code == 200


@pytest.fixture
def webhook(settings):
    """A real HTTP receiver on the loopback interface that answers 200 to every POST."""
    received: list[SimpleNamespace] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(SimpleNamespace(headers=self.headers, body=body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.NOTIFY_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hooks/e-mail-tool"
    settings.NOTIFY_WEBHOOK_SECRET = SECRET
    try:
        yield SimpleNamespace(received=received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- Push ---------------------------------------------------------------------------------------
def test_a_push_creates_exactly_one_signed_delivery_with_the_documented_payload(
    marketer, story, webhook, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(marketer).post(reverse("api-nurture-segment-push", args=["pricing--this-month"]))

    assert response.status_code == 202
    assert WebhookDelivery.objects.count() == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.key == response.json()["delivery"]
    assert delivery.delivered_at is not None
    (request,) = webhook.received
    assert request.headers["X-LeadFlow-Event"] == "nurture.segment"
    assert request.headers["X-LeadFlow-Delivery"] == delivery.key
    assert request.headers["X-LeadFlow-Signature"] == webhooks.legacy_signature(request.body, SECRET)
    payload = json.loads(request.body)
    assert payload["event"] == "nurture.segment"
    assert payload["link"].endswith("/nurture/pricing--this-month/")
    data = payload["data"]
    assert data["segment"] == {
        "key": "pricing--this-month",
        "topic": PRICING,
        "recency": "this-month",
        "leads": 1,
        "next_content": {"asset": SHEET, "topic": PRICING, "conversion_rate": 0.0, "enough_data": False},
        "computed_at": data["segment"]["computed_at"],
    }
    assert datetime.fromisoformat(data["segment"]["computed_at"]) <= timezone.now(), "the segments' snapshot"
    assert data["truncated"] is False
    assert data["leads"] == [
        {
            "id": str(story.l3.public_id),
            "email": story.l3.email,
            "name": "L3",
            "company": "L3 Inc",
            "topic": PRICING,
            "last_engaged_at": data["leads"][0]["last_engaged_at"],
            "next_content": SHEET,
        }
    ]
    assert data["leads"][0]["last_engaged_at"].startswith(days_ago(10).date().isoformat())


def test_each_push_is_one_more_refresh(marketer, story, webhook, django_capture_on_commit_callbacks):
    client = client_for(marketer)
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(reverse("api-nurture-segment-push", args=["pricing--older"])).status_code == 202

    assert WebhookDelivery.objects.count() == 2
    assert len({r.headers["X-LeadFlow-Delivery"] for r in webhook.received}) == 2


def test_a_push_without_a_webhook_says_how_to_configure_one(marketer, story, settings):
    settings.NOTIFY_WEBHOOK_URL = ""
    response = client_for(marketer).post(reverse("api-nurture-segment-push", args=["pricing--older"]))

    assert response.status_code == 409
    assert response.json()["code"] == "no_webhook"
    assert "NOTIFY_WEBHOOK_URL" in response.json()["detail"]
    assert not WebhookDelivery.objects.exists()


def test_a_push_of_an_empty_segment_or_a_malformed_key_is_refused(marketer, db, webhook):
    client = client_for(marketer)

    empty = client.post(reverse("api-nurture-segment-push", args=["pricing--older"]))
    assert (empty.status_code, empty.json()["code"]) == (409, "empty_segment")
    assert client.post(reverse("api-nurture-segment-push", args=["pricing--later"])).status_code == 404
    assert not WebhookDelivery.objects.exists()


def test_the_segment_page_button_pushes_and_says_so(client, marketer, story, webhook):
    client.force_login(marketer)
    page = client.get(reverse("nurture-segment", args=["pricing--older"])).content.decode()
    assert reverse("nurture-segment-push", args=["pricing--older"]) in page

    response = client.post(reverse("nurture-segment-push", args=["pricing--older"]), follow=True)

    assert "Pushed 1 lead to the webhook" in response.content.decode()
    assert WebhookDelivery.objects.count() == 1


def test_the_segment_page_tells_when_no_webhook_is_configured(client, marketer, story, settings):
    settings.NOTIFY_WEBHOOK_URL = ""
    client.force_login(marketer)

    page = client.get(reverse("nurture-segment", args=["pricing--older"])).content.decode()
    assert "No webhook receives nurture segments" in page
    response = client.post(reverse("nurture-segment-push", args=["pricing--older"]), follow=True)
    assert "No webhook receives nurture segments" in response.content.decode()
    assert not WebhookDelivery.objects.exists()
