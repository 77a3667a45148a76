import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from handoff import selectors, services
from handoff.models import Handoff, HandoffAction, HandoffEvent, HandoffStatus
from handoff.tasks import expire_claims
from leadflow.leads.models import Lead, Stage, StageChange
from leadflow.leads.roles import SALES
from scoring.services import leads_score
from tests.factories import EventFactory, HandoffFactory, LeadFactory, SourceFactory, SqlLeadFactory, UserFactory
from tests.helpers import behaviour, client_for, entered_sql, lead_score

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
RULES = [behaviour("page_view", 10, max_points=30), behaviour("demo_request", 50)]
QUEUE = "/api/v1/handoffs"


def url(handoff, action=""):
    return f"{QUEUE}/{handoff.public_id}" + (f"/{action}" if action else "")


@pytest.fixture
def post_events(ingest_client, django_capture_on_commit_callbacks):
    """Post events for one lead at the current (frozen) time; scoring runs after commit."""
    counter = iter(range(10_000))

    def post(*types, email="ada@example.com"):
        body = {
            "events": [
                {
                    "event_id": f"{email}-{next(counter)}",
                    "type": event_type,
                    "lead": {"email": email, "name": "Ada Lovelace", "company": "Analytical Engines"},
                }
                for event_type in types
            ]
        }
        with django_capture_on_commit_callbacks(execute=True):
            response = ingest_client.post("/api/v1/events", json.dumps(body), content_type="application/json")
        assert response.status_code == 202, response.content
        return Lead.objects.get(email=email)

    return post


@pytest.fixture
def act(django_capture_on_commit_callbacks):
    """POST an action as ``user``, running what happens after commit (notifications)."""

    def post(user, path, body=None):
        with django_capture_on_commit_callbacks(execute=True):
            return client_for(user).post(path, body or {}, format="json")

    return post


def trail(handoff):
    return list(HandoffEvent.objects.filter(handoff=handoff).order_by("at", "id").values_list("action", flat=True))


# --- The cycle ---------------------------------------------------------------------------------------
def test_an_sql_is_queued_claimed_and_accepted_by_a_rep(publish_ruleset, post_events, rep, act, settings):
    settings.HANDOFF_SLA_HOURS = 8
    publish_ruleset(RULES, mql=30, sql=60)
    with time_machine.travel(NOW, tick=False) as clock:
        lead = post_events("page_view", "page_view", "page_view")
        assert lead.stage == Stage.MQL and not Handoff.objects.exists()

        lead = post_events("demo_request")
        assert lead.stage == Stage.SQL
        handoff = Handoff.objects.get(lead=lead)
        assert (handoff.status, handoff.priority) == (HandoffStatus.QUEUED, Decimal(80))
        assert handoff.created_at == lead.sql_at == NOW
        assert handoff.due_at == NOW + timedelta(hours=8)

        clock.shift(timedelta(minutes=20))
        response = act(rep, url(handoff, "claim"))
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["status"], body["claimed_by"], body["lead"]["email"]) == ("claimed", "rep", "ada@example.com")
        assert body["claim_expires_at"] == (NOW + timedelta(minutes=20, hours=4)).isoformat().replace("+00:00", "Z")

        clock.shift(timedelta(minutes=10))
        response = act(rep, url(handoff, "accept"))
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "accepted"

    lead.refresh_from_db()
    assert (lead.stage, lead.owner) == (Stage.ACCEPTED, rep)
    change = StageChange.objects.filter(lead=lead).order_by("-at", "-id").first()
    assert (change.from_stage, change.to_stage, change.actor) == (Stage.SQL, Stage.ACCEPTED, rep)
    handoff.refresh_from_db()
    assert handoff.decided_at == NOW + timedelta(minutes=30)
    assert handoff.first_claimed_at == NOW + timedelta(minutes=20)
    assert trail(handoff) == ["opened", "claimed", "accepted"]


def test_rejected_lead_is_recycled_and_requalifies_only_on_new_activity_with_a_new_handoff(
    publish_ruleset, post_events, rep, marketer, act
):
    publish_ruleset(RULES, mql=30, sql=60)
    with time_machine.travel(NOW, tick=False) as clock:
        lead = post_events("page_view", "page_view", "demo_request")
        first = Handoff.objects.get(lead=lead)
        act(rep, url(first, "claim"))
        clock.shift(timedelta(hours=1))
        response = act(rep, url(first, "reject"), {"reason": "no_budget", "note": "Budget frozen until Q3."})
        assert response.status_code == 200, response.content
        assert (response.json()["reject_reason"], response.json()["note"]) == ("no_budget", "Budget frozen until Q3.")

        lead.refresh_from_db()
        assert (lead.stage, lead.recycled_at) == (Stage.RECYCLED, NOW + timedelta(hours=1))
        change = StageChange.objects.filter(lead=lead, to_stage=Stage.RECYCLED).get()
        assert change.actor == rep
        assert "No budget" in change.reason and "Budget frozen until Q3." in change.reason

        # Rescoring the old activity does not requalify the lead.
        leads_score(lead_ids=[lead.pk])
        lead.refresh_from_db()
        assert lead.stage == Stage.RECYCLED

        clock.shift(timedelta(days=3))
        lead = post_events("page_view")
        assert lead.stage == Stage.RECYCLED, "one page view (10 points) is below the requalification threshold (15)"
        lead = post_events("page_view")
        assert lead.stage == Stage.MQL, (
            "enough new engagement re-qualifies as MQL; the old demo request is not new intent"
        )
        assert Handoff.objects.filter(lead=lead).count() == 1

        lead = post_events("demo_request")
        assert lead.stage == Stage.SQL
    handoffs = list(Handoff.objects.filter(lead=lead).order_by("created_at"))
    assert [h.status for h in handoffs] == [HandoffStatus.REJECTED, HandoffStatus.QUEUED]
    assert handoffs[1].created_at == NOW + timedelta(days=3, hours=1)
    assert (handoffs[1].model.slug, handoffs[1].qualified_by) == ("default", ["default"])

    history = client_for(marketer).get(f"/api/v1/leads/{lead.public_id}/handoffs")
    assert history.status_code == 200
    assert [(h["status"], h["reject_reason"], h["note"]) for h in history.json()] == [
        ("queued", "", ""),
        ("rejected", "no_budget", "Budget frozen until Q3."),
    ]
    assert [e["action"] for e in history.json()[1]["events"]] == ["opened", "claimed", "rejected"]
    assert history.json()[1]["events"][2]["actor"] == "rep"


@pytest.mark.parametrize(
    ("reason", "stage"),
    [("not_a_fit", Stage.DISQUALIFIED), ("duplicate", Stage.DISQUALIFIED), ("bad_timing", Stage.RECYCLED)],
)
def test_reject_reason_decides_between_recycling_and_disqualifying(rep, act, reason, stage):
    handoff = HandoffFactory.create()
    act(rep, url(handoff, "claim"))
    assert act(rep, url(handoff, "reject"), {"reason": reason}).status_code == 200
    handoff.lead.refresh_from_db()
    assert handoff.lead.stage == stage


def test_reject_needs_a_known_reason_and_a_note_for_other(rep, act):
    handoff = HandoffFactory.create()
    act(rep, url(handoff, "claim"))
    assert act(rep, url(handoff, "reject"), {"reason": "too_expensive"}).json().keys() == {"reason"}
    response = act(rep, url(handoff, "reject"), {"reason": "other", "note": "  "})
    assert (response.status_code, list(response.json())) == (400, ["note"])
    assert Handoff.objects.get().status == HandoffStatus.CLAIMED


# --- Claims ------------------------------------------------------------------------------------------
def test_claim_next_takes_the_highest_priority_then_the_oldest(rep, act):
    with time_machine.travel(NOW, tick=False) as clock:
        low = HandoffFactory.create(lead=SqlLeadFactory.create(score=65))
        clock.shift(timedelta(minutes=1))
        old_high = HandoffFactory.create(lead=SqlLeadFactory.create(score=90))
        clock.shift(timedelta(minutes=1))
        HandoffFactory.create(lead=SqlLeadFactory.create(score=90))
        clock.shift(timedelta(minutes=1))
        claimed = [act(rep, f"{QUEUE}/claim-next").json()["id"] for _ in range(3)]
    assert claimed[0] == str(old_high.public_id)
    assert claimed[2] == str(low.public_id)
    assert act(rep, f"{QUEUE}/claim-next").status_code == 204


def test_claim_next_overdue_first_takes_the_longest_overdue_then_the_claim_order(rep):
    now = timezone.now()
    top = HandoffFactory.create(lead=SqlLeadFactory.create(score=90), due_at=now + timedelta(hours=5))
    late = HandoffFactory.create(lead=SqlLeadFactory.create(score=60), due_at=now - timedelta(hours=5))
    just_late = HandoffFactory.create(lead=SqlLeadFactory.create(score=80), due_at=now - timedelta(minutes=10))
    claimed = [services.handoff_claim_next(user=rep, overdue_first=True) for _ in range(3)]
    assert [h.pk for h in claimed if h] == [late.pk, just_late.pk, top.pk]  # as the queue page lists them


def test_a_rep_cannot_hold_more_open_claims_than_the_limit(rep, act, settings):
    settings.HANDOFF_MAX_OPEN_CLAIMS = 2
    first, second, third = HandoffFactory.create_batch(3)
    assert act(rep, url(first, "claim")).status_code == 200
    assert act(rep, f"{QUEUE}/claim-next").status_code == 200
    response = act(rep, url(third, "claim"))
    assert response.status_code == 409
    assert response.json()["code"] == "claim_limit"
    assert "release one" in response.json()["detail"]
    assert act(rep, f"{QUEUE}/claim-next").status_code == 409

    assert act(rep, url(first, "release")).status_code == 200
    assert act(rep, url(third, "claim")).status_code == 200
    assert Handoff.objects.filter(claimed_by=rep, status="claimed").count() == 2


def test_a_released_handoff_goes_back_to_the_queue_for_anyone(rep, other_rep, act):
    handoff = HandoffFactory.create()
    act(rep, url(handoff, "claim"))
    response = act(rep, url(handoff, "release"))
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["claimed_by"], body["claim_expires_at"]) == ("queued", None, None)
    assert act(other_rep, url(handoff, "claim")).json()["claimed_by"] == "other_rep"
    assert trail(handoff) == ["claimed", "released", "claimed"]
    handoff.refresh_from_db()
    assert handoff.first_claimed_at < handoff.claimed_at, "time to claim counts from the first claim"


def test_an_expired_claim_returns_to_the_queue_and_the_rep_is_told(
    rep, act, mailoutbox, django_capture_on_commit_callbacks
):
    with time_machine.travel(NOW, tick=False) as clock:
        handoff = HandoffFactory.create()
        act(rep, url(handoff, "claim"))
        clock.shift(timedelta(hours=4) - timedelta(seconds=1))
        with django_capture_on_commit_callbacks(execute=True):
            assert expire_claims.delay().get() == 0
        clock.shift(timedelta(seconds=1))
        with django_capture_on_commit_callbacks(execute=True):
            assert expire_claims.delay().get() == 1
            assert expire_claims.delay().get() == 0
    handoff.refresh_from_db()
    assert (handoff.status, handoff.claimed_by, handoff.claim_expires_at) == ("queued", None, None)
    assert trail(handoff) == ["claimed", "expired"]
    notification = rep.notifications.get()
    assert notification.kind == "claim_expired"
    assert [m.to for m in mailoutbox] == [["rep@leadflow.test"]]
    assert "expired" in mailoutbox[0].subject


def test_wrong_state_transitions_answer_409_with_advice(rep, act):
    handoff = HandoffFactory.create()
    response = act(rep, url(handoff, "accept"))
    assert response.status_code == 409
    assert response.json() == {
        "detail": "Cannot accept this handoff: it is queued; claim it first.",
        "code": "wrong_state",
    }
    assert act(rep, url(handoff, "release")).status_code == 409
    act(rep, url(handoff, "claim"))
    assert "accept, reject or release" in act(rep, url(handoff, "claim")).json()["detail"]
    act(rep, url(handoff, "accept"))
    for action in ("claim", "accept", "release"):
        response = act(rep, url(handoff, action))
        assert response.status_code == 409, action
    assert "nothing more to do" in act(rep, url(handoff, "reject"), {"reason": "no_budget"}).json()["detail"]
    assert trail(handoff) == ["claimed", "accepted"]


def test_a_rep_who_loses_the_race_for_a_queued_handoff_gets_409_with_advice(rep, other_rep, act):
    handoff = HandoffFactory.create()
    assert client_for(rep).get(url(handoff)).status_code == 200
    assert client_for(other_rep).get(url(handoff)).status_code == 200, "both reps see it queued"
    assert act(rep, url(handoff, "claim")).status_code == 200
    response = act(other_rep, url(handoff, "claim"))
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "already_claimed"
    assert "claim another one" in response.json()["detail"] and "claim-next" in response.json()["detail"]
    handoff.refresh_from_db()
    assert (handoff.status, handoff.claimed_by) == (HandoffStatus.CLAIMED, rep)
    assert trail(handoff) == ["claimed"]
    # The same answer when the loser got past the lookup and lost inside the claim itself.
    with pytest.raises(services.ClaimTaken, match="claim-next"):
        services.handoff_claim(handoff=handoff, user=other_rep)


def test_one_rep_cannot_take_or_decide_another_reps_claim(rep, other_rep, act):
    handoff = HandoffFactory.create()
    act(rep, url(handoff, "claim"))
    assert act(other_rep, url(handoff, "claim")).status_code == 409
    for action in ("release", "accept", "reject"):
        assert act(other_rep, url(handoff, action), {"reason": "no_budget"}).status_code == 404, action
    assert client_for(other_rep).get(url(handoff)).status_code == 404
    assert client_for(other_rep).get(QUEUE).json()["count"] == 0
    # Inside the service (e.g. a race with the API's lookup) it is a conflict naming the holder.
    with pytest.raises(services.HandoffStateError, match="rep holds the claim"):
        services.handoff_accept(handoff=handoff, user=other_rep)


def test_manual_stage_change_out_of_sql_closes_the_open_handoff(marketer, rep, act):
    handoff = HandoffFactory.create()
    act(rep, url(handoff, "claim"))
    response = client_for(marketer).post(
        f"/api/v1/leads/{handoff.lead.public_id}/stage", {"stage": "mql", "reason": "Sent too early"}, format="json"
    )
    assert response.status_code == 201, response.content
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.CLOSED
    assert "Sent too early" in handoff.note
    assert trail(handoff) == ["claimed", "closed"]
    assert act(rep, url(handoff, "accept")).status_code == 409
    # Moving it back to SQL by hand opens a new handoff.
    client_for(marketer).post(
        f"/api/v1/leads/{handoff.lead.public_id}/stage", {"stage": "sql", "reason": "Asked for a call"}, format="json"
    )
    assert Handoff.objects.filter(lead=handoff.lead, status=HandoffStatus.QUEUED).count() == 1


def test_moving_a_lead_out_of_sql_by_hand_closes_its_handoff_once_with_the_reason(marketer, rep, act):
    with time_machine.travel(NOW - timedelta(hours=1), tick=False) as clock:
        handoff = HandoffFactory.create()
        act(rep, url(handoff, "claim"))
        clock.move_to(NOW)
        response = client_for(marketer).post(
            f"/api/v1/leads/{handoff.lead.public_id}/stage", {"stage": "recycled", "reason": "Asked us to wait"}
        )
    assert response.status_code == 201, response.content
    handoff.refresh_from_db()
    closing = "Stage changed by hand to recycled: Asked us to wait"
    assert (handoff.status, handoff.note, handoff.decided_at) == (HandoffStatus.CLOSED, closing, NOW)
    assert trail(handoff) == ["claimed", "closed"]
    closed = HandoffEvent.objects.get(handoff=handoff, action=HandoffAction.CLOSED)
    assert (closed.actor, closed.at, closed.details) == (marketer, NOW, {"reason": closing})
    change = StageChange.objects.get(lead=handoff.lead)
    assert (change.from_stage, change.to_stage, change.actor, change.reason, change.at) == (
        Stage.SQL,
        Stage.RECYCLED,
        marketer,
        "Asked us to wait",
        NOW,
    )


@pytest.mark.parametrize(
    ("decision", "body", "status", "stage", "details"),
    [
        (
            "accept",
            {},
            HandoffStatus.ACCEPTED,
            Stage.ACCEPTED,
            {"confirmed": [], "unconfirmed": ["budget", "authority", "need", "timeline"], "note": ""},
        ),
        (
            "accept",
            {"confirmed": ["timeline"], "note": "Go-live in March."},
            HandoffStatus.ACCEPTED,
            Stage.ACCEPTED,
            {"confirmed": ["timeline"], "unconfirmed": ["budget", "authority", "need"], "note": "Go-live in March."},
        ),
        (
            "reject",
            {"reason": "no_budget", "note": "Frozen until Q3."},
            HandoffStatus.REJECTED,
            Stage.RECYCLED,
            {"reason": "no_budget", "note": "Frozen until Q3.", "lead_stage": "recycled"},
        ),
        (
            "reject",
            {"reason": "duplicate"},
            HandoffStatus.REJECTED,
            Stage.DISQUALIFIED,
            {"reason": "duplicate", "note": "", "lead_stage": "disqualified"},
        ),
    ],
)
def test_a_reps_decision_leaves_one_audit_event_and_one_stage_change(rep, act, decision, body, status, stage, details):
    with time_machine.travel(NOW - timedelta(hours=1), tick=False) as clock:
        handoff = HandoffFactory.create()
        act(rep, url(handoff, "claim"))
        clock.move_to(NOW)
        assert act(rep, url(handoff, decision), body).status_code == 200
    handoff.refresh_from_db()
    assert (handoff.status, handoff.decided_at) == (status, NOW)
    assert trail(handoff) == ["claimed", status], "deciding a handoff never also closes it"
    decided = HandoffEvent.objects.get(handoff=handoff, action=status)
    assert (decided.actor, decided.at, decided.details) == (rep, NOW, details)
    change = StageChange.objects.get(lead=handoff.lead)
    assert (change.from_stage, change.to_stage, change.actor, change.at) == (Stage.SQL, stage, rep, NOW)


def _lead_ready_for_sql(publish_ruleset):
    publish_ruleset(RULES, mql=30, sql=60)
    lead = LeadFactory.create()
    for event_type in ("page_view", "page_view", "demo_request"):
        EventFactory.create(lead=lead, type=event_type)
    return lead


def test_entering_sql_by_a_rescore_opens_exactly_one_handoff_in_the_same_transaction(publish_ruleset):
    lead = _lead_ready_for_sql(publish_ruleset)
    with pytest.raises(RuntimeError), transaction.atomic():
        leads_score(lead_ids=[lead.pk])
        assert Lead.objects.get(pk=lead.pk).stage == Stage.SQL
        assert Handoff.objects.filter(lead=lead).count() == 1
        raise RuntimeError("roll the promotion back")
    assert Lead.objects.get(pk=lead.pk).stage == Stage.NEW
    assert not Handoff.objects.exists() and not HandoffEvent.objects.exists() and not StageChange.objects.exists()

    leads_score(lead_ids=[lead.pk])
    leads_score(lead_ids=[lead.pk])  # scoring again moves nothing and opens nothing
    handoff = Handoff.objects.get(lead=lead)
    assert (handoff.status, trail(handoff)) == (HandoffStatus.QUEUED, ["opened"])
    assert list(StageChange.objects.filter(lead=lead).order_by("id").values_list("from_stage", "to_stage")) == [
        (Stage.NEW, Stage.MQL),
        (Stage.MQL, Stage.SQL),
    ]


def test_a_promotion_whose_handoff_cannot_open_does_not_happen(publish_ruleset, monkeypatch):
    lead = _lead_ready_for_sql(publish_ruleset)

    def refuse(**kwargs):
        raise IntegrityError("no handoff today")

    monkeypatch.setattr(services, "handoffs_open_for_changes", refuse)
    with pytest.raises(IntegrityError, match="no handoff today"):
        leads_score(lead_ids=[lead.pk])
    lead.refresh_from_db()
    assert (lead.stage, lead_score(lead), lead.sql_at) == (Stage.NEW, 0, None)
    assert not StageChange.objects.exists()


def test_a_sales_manager_reassigns_a_handoff_and_the_new_rep_is_told(sales_manager, rep, other_rep, admin, act):
    handoff = HandoffFactory.create()
    act(rep, url(handoff, "claim"))
    assert act(rep, url(handoff, "reassign"), {"username": "other_rep"}).status_code == 403
    response = act(sales_manager, url(handoff, "reassign"), {"username": "other_rep"})
    assert response.status_code == 200, response.content
    assert response.json()["claimed_by"] == "other_rep"
    assert other_rep.notifications.get().kind == "handoff_assigned"
    assert act(admin, url(handoff, "reassign"), {"username": "rep"}).json()["claimed_by"] == "rep"
    response = act(admin, url(handoff, "reassign"), {"username": "marketer_nobody"})
    assert (response.status_code, list(response.json())) == (400, ["username"])
    event = HandoffEvent.objects.filter(handoff=handoff, action=HandoffAction.REASSIGNED).first()
    assert (event.actor, event.details) == (sales_manager, {"claimed_by": "rep", "to": "other_rep"})


# --- Visibility and permissions ----------------------------------------------------------------------
@pytest.fixture
def queue(rep, other_rep):
    """One queued handoff, one claimed by rep, one by other_rep, one rejected by rep."""
    queued = HandoffFactory.create(lead=SqlLeadFactory.create(email="queued@x.io"))
    mine = HandoffFactory.create(lead=SqlLeadFactory.create(email="mine@x.io"))
    theirs = HandoffFactory.create(lead=SqlLeadFactory.create(email="theirs@x.io"))
    rejected = HandoffFactory.create(lead=SqlLeadFactory.create(email="rejected@x.io"))
    services.handoff_claim(handoff=mine, user=rep)
    services.handoff_claim(handoff=theirs, user=other_rep)
    services.handoff_claim(handoff=rejected, user=rep)
    services.handoff_reject(handoff=rejected, user=rep, reason="bad_timing", note="Call again in spring.")
    return {"queued": queued, "mine": mine, "theirs": theirs, "rejected": rejected}


def listed(user, query=""):
    response = client_for(user).get(QUEUE + query)
    assert response.status_code == 200, response.content
    return sorted(item["lead"]["email"].split("@")[0] for item in response.json()["results"])


def test_a_rep_sees_queued_handoffs_and_their_own_claims_only(queue, rep, other_rep):
    assert listed(rep) == ["mine", "queued", "rejected"]
    assert listed(other_rep) == ["queued", "theirs"]
    assert listed(rep, "?mine=true") == ["mine", "rejected"]
    assert listed(rep, "?status=claimed") == ["mine"]
    assert client_for(rep).get(url(queue["theirs"])).status_code == 404
    assert client_for(rep).get(url(queue["mine"])).json()["events"][0]["action"] == "claimed"


def test_marketing_reads_every_handoff_with_reasons_but_cannot_act(queue, marketer, act):
    assert listed(marketer) == ["mine", "queued", "rejected", "theirs"]
    detail = client_for(marketer).get(url(queue["rejected"])).json()
    assert (detail["reject_reason"], detail["note"]) == ("bad_timing", "Call again in spring.")
    for action in ("claim", "release", "accept", "reject", "reassign"):
        assert act(marketer, url(queue["queued"], action)).status_code == 403, action
    assert act(marketer, f"{QUEUE}/claim-next").status_code == 403


@pytest.mark.parametrize("path", ["", "/{id}", "/{id}/claim", "/claim-next", "/{id}/reassign"])
def test_outsiders_and_anonymous_users_get_nothing(queue, outsider, api_client, path):
    target = QUEUE + path.format(id=queue["queued"].public_id)
    method = "get" if path in ("", "/{id}") else "post"
    assert getattr(client_for(outsider), method)(target).status_code == 403
    assert getattr(api_client, method)(target).status_code == 401
    assert Handoff.objects.get(pk=queue["queued"].pk).status == "queued"


def test_scoring_admins_read_the_queue_but_only_sales_claims(queue, admin, act):
    assert len(listed(admin)) == 4
    assert act(admin, url(queue["queued"], "claim")).status_code == 403


def test_queue_filters_and_ordering(rep):
    with time_machine.travel(NOW, tick=False) as clock:
        HandoffFactory.create(lead=SqlLeadFactory.create(score=61, email="a@x.io"))
        clock.shift(timedelta(hours=1))
        HandoffFactory.create(lead=SqlLeadFactory.create(score=95, email="b@x.io"))
        clock.shift(timedelta(hours=1))
        HandoffFactory.create(lead=SqlLeadFactory.create(score=80, email="c@x.io"))
        clock.shift(timedelta(hours=23, minutes=30))
        client = client_for(rep)
        emails = lambda q: [r["lead"]["email"][0] for r in client.get(QUEUE + q).json()["results"]]  # noqa: E731
        assert emails("") == ["b", "c", "a"]
        assert emails("?ordering=created_at") == ["a", "b", "c"]
        assert emails("?ordering=-created_at") == ["c", "b", "a"]
        assert emails("?ordering=priority") == ["a", "c", "b"]
        assert emails("?overdue=true") == ["b", "a"]
        assert emails("?overdue=false") == ["c"]
        assert client.get(QUEUE + "?overdue=true").json()["results"][0]["overdue"] is True
        assert emails("?page_size=2&page=2") == ["a"]
    assert client.get(QUEUE + "?status=nonsense").status_code == 400


def test_the_queue_answers_in_a_constant_number_of_queries(rep, marketer, django_assert_max_num_queries):
    HandoffFactory.create_batch(3)
    for handoff in HandoffFactory.create_batch(2):
        services.handoff_claim(handoff=handoff, user=rep)
    for user in (rep, marketer):
        client = client_for(user)
        with django_assert_max_num_queries(4):
            assert client.get(QUEUE).json()["count"] == 5
    HandoffFactory.create_batch(20)
    with django_assert_max_num_queries(4):
        assert client_for(rep).get(QUEUE).json()["count"] == 25


# --- Invariants ---------------------------------------------------------------------------------------
def test_the_database_refuses_a_second_open_handoff_for_a_lead(db):
    handoff = HandoffFactory.create()
    with pytest.raises(IntegrityError), transaction.atomic():
        Handoff.objects.create(lead=handoff.lead, due_at=handoff.due_at)
    Handoff.objects.filter(pk=handoff.pk).update(status=HandoffStatus.CLOSED, decided_at=NOW)
    assert Handoff.objects.create(lead=handoff.lead, due_at=handoff.due_at).status == HandoffStatus.QUEUED


def test_the_database_refuses_a_claim_without_a_claimer_or_a_rejection_without_a_reason(db):
    handoff = HandoffFactory.create()
    with pytest.raises(IntegrityError), transaction.atomic():
        Handoff.objects.filter(pk=handoff.pk).update(status=HandoffStatus.CLAIMED)
    with pytest.raises(IntegrityError), transaction.atomic():
        Handoff.objects.filter(pk=handoff.pk).update(status=HandoffStatus.REJECTED, decided_at=NOW)


def test_entering_sql_twice_in_one_batch_keeps_one_open_handoff(db):
    lead = SqlLeadFactory.create()
    opened = services.handoffs_open_for_changes(changes=entered_sql([lead]), at=NOW)
    assert services.handoffs_open_for_changes(changes=entered_sql([lead]), at=NOW) == []
    assert Handoff.objects.filter(lead=lead).count() == len(opened) == 1


def _claim_story(claim, rep, other_rep, tag):
    """The same claims, through one claim path: next, next, next (at the limit of 2),
    a given handoff, the same again (taken), next for the other rep."""
    with time_machine.travel(NOW, tick=False):
        handoffs = [
            HandoffFactory.create(
                lead=SqlLeadFactory.create(score=score, email=f"{tag}{score}@x.io", traits={"plan": "pro"})
            )
            for score in (70, 90, 80)
        ]
        steps = [(rep, None), (rep, None), (rep, None), (other_rep, handoffs[0]), (other_rep, handoffs[0])]
        steps.append((other_rep, None))
        outcomes: list[tuple[Any, ...]] = []
        for user, target in steps:
            with transaction.atomic():
                open_claims, handoff = claim(user=user, handoff_id=target and target.pk, now=NOW)
            if handoff is None:
                outcomes.append((open_claims, None))
                continue
            fresh = Handoff.objects.select_related("lead").get(pk=handoff.pk)
            assert [getattr(handoff, f.attname) for f in Handoff._meta.concrete_fields] == [
                getattr(fresh, f.attname) for f in Handoff._meta.concrete_fields
            ]
            assert [getattr(handoff.lead, f.attname) for f in Lead._meta.concrete_fields] == [
                getattr(fresh.lead, f.attname) for f in Lead._meta.concrete_fields
            ]
            assert handoff.claimed_by == user
            outcomes.append(
                (open_claims, lead_score(handoff.lead), handoff.status, handoff.claim_expires_at, user.username)
            )
        events = list(
            HandoffEvent.objects.filter(handoff__in=handoffs)
            .order_by("id")
            .values_list("handoff__priority", "action", "actor__username", "at", "details")
        )
        Handoff.objects.filter(pk__in=[h.pk for h in handoffs]).update(status=HandoffStatus.CLOSED, decided_at=NOW)
    return outcomes, events


@pytest.mark.postgres
def test_the_postgresql_claim_statement_and_the_portable_orm_path_agree(rep, other_rep, settings):
    settings.HANDOFF_MAX_OPEN_CLAIMS = 2
    sql = _claim_story(services._claim_sql, rep, other_rep, "sql")
    orm = _claim_story(services._claim_orm, rep, other_rep, "orm")
    assert sql == orm
    outcomes, events = sql
    assert [outcome[:2] for outcome in outcomes] == [(0, 90), (1, 80), (2, None), (0, 70), (1, None), (1, None)]
    assert [event[:3] for event in events] == [
        (90, "claimed", "rep"),
        (80, "claimed", "rep"),
        (70, "claimed", "other_rep"),
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_reps_racing_for_the_queue_never_hold_one_handoff_twice(settings):
    settings.HANDOFF_MAX_OPEN_CLAIMS = 3
    reps = [UserFactory.create(username=f"racer{n}", roles=[SALES]) for n in range(25)]
    handoffs = HandoffFactory.create_batch(60)
    hot = handoffs[:5]
    start = threading.Barrier(50)
    wins: list[tuple[int, int]] = []  # (rep id, handoff id)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def race(rep, offset):
        try:
            start.wait()
            for attempt in range(6):
                try:
                    if attempt % 2:
                        handoff = services.handoff_claim_next(user=rep)
                    else:
                        handoff = services.handoff_claim(handoff=hot[(offset + attempt) % len(hot)], user=rep)
                except services.HandoffError:
                    continue
                if handoff is not None:
                    with lock:
                        wins.append((rep.pk, handoff.pk))
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(reps[n // 2], n)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert wins, "somebody claimed something"
    claimed_twice = [pk for pk, n in Counter(handoff_id for _rep, handoff_id in wins).items() if n > 1]
    assert claimed_twice == [], "no handoff was won twice"
    holders = dict(Handoff.objects.filter(status="claimed").values_list("pk", "claimed_by"))
    assert holders == {handoff_id: rep_id for rep_id, handoff_id in wins}, "every win is accounted for"
    per_rep = Counter(rep_id for rep_id, _handoff in wins)
    assert max(per_rep.values()) <= 3, "the claim limit holds under concurrency"
    events = HandoffEvent.objects.filter(action="claimed").values("handoff").annotate(n=Count("id"))
    assert {row["n"] for row in events} == {1}
    assert len(events) == len(wins)
    assert {h.pk for h in hot} <= set(holders), "the contended handoffs were all claimed, once"


# --- Statistics ---------------------------------------------------------------------------------------
def _decided(reason=None, *, claimed_after, decided_after, created=NOW, rep):
    with time_machine.travel(created, tick=False) as clock:
        handoff = HandoffFactory.create()
        clock.shift(claimed_after)
        services.handoff_claim(handoff=handoff, user=rep)
        clock.shift(decided_after - claimed_after)
        if reason:
            services.handoff_reject(handoff=handoff, user=rep, reason=reason)
        else:
            services.handoff_accept(handoff=handoff, user=rep)
    return handoff


def test_handoff_stats_count_outcomes_reasons_medians_and_breaches(rep, marketer, settings):
    settings.HANDOFF_MAX_OPEN_CLAIMS = 100
    _decided(claimed_after=timedelta(minutes=10), decided_after=timedelta(hours=1), rep=rep)
    _decided("no_budget", claimed_after=timedelta(minutes=20), decided_after=timedelta(hours=2), rep=rep)
    _decided("no_budget", claimed_after=timedelta(minutes=30), decided_after=timedelta(hours=30), rep=rep)
    _decided("not_a_fit", claimed_after=timedelta(minutes=40), decided_after=timedelta(hours=4), rep=rep)
    _decided(
        claimed_after=timedelta(hours=1), decided_after=timedelta(hours=2), rep=rep, created=NOW - timedelta(days=9)
    )
    with time_machine.travel(NOW, tick=False):
        HandoffFactory.create()
        HandoffFactory.create(due_at=NOW - timedelta(hours=1))
    with time_machine.travel(NOW + timedelta(hours=2), tick=False):
        response = client_for(marketer).get("/api/v1/stats/handoffs?since=2026-11-20&until=2026-11-20")
        body = response.json()
    assert response.status_code == 200, body
    assert (body["since"], body["until"]) == ("2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z")
    assert (body["total"], body["queued"], body["claimed"], body["accepted"], body["rejected"]) == (6, 2, 0, 1, 3)
    assert body["rejected_by_reason"] == {
        "not_a_fit": 1,
        "no_budget": 2,
        "bad_timing": 0,
        "no_response": 0,
        "duplicate": 0,
        "other": 0,
    }
    assert body["median_seconds_to_claim"] == 25 * 60.0  # 10, 20, 30, 40 minutes
    assert body["median_seconds_to_decision"] == 3 * 3600.0  # 1, 2, 4, 30 hours
    assert body["sla_breaches"] == 2, "one decided after its due time, one open past it"
    assert body["overdue_now"] == 1
    everything = client_for(marketer).get("/api/v1/stats/handoffs").json()
    assert everything["total"] == 7 and everything["since"] is None
    assert client_for(marketer).get("/api/v1/stats/handoffs?since=yesterday").status_code == 400


def test_handoff_stats_filter_by_the_source_of_the_leads(rep, marketer):
    web, ads = SourceFactory.create(name="Web", slug="web"), SourceFactory.create(name="Ads", slug="ads")
    for source, reason in [(web, None), (web, "no_budget"), (ads, "bad_timing")]:
        handoff = HandoffFactory.create(lead=SqlLeadFactory.create(source=source))
        services.handoff_claim(handoff=handoff, user=rep)
        if reason:
            services.handoff_reject(handoff=handoff, user=rep, reason=reason)
        else:
            services.handoff_accept(handoff=handoff, user=rep)
    HandoffFactory.create(lead=SqlLeadFactory.create(source=ads))
    client = client_for(marketer)
    web_stats = client.get("/api/v1/stats/handoffs", {"source": "web"}).json()
    assert (web_stats["total"], web_stats["accepted"], web_stats["rejected"], web_stats["queued"]) == (2, 1, 1, 0)
    assert web_stats["rejected_by_reason"]["no_budget"] == 1 and web_stats["rejected_by_reason"]["bad_timing"] == 0
    ads_stats = client.get("/api/v1/stats/handoffs", {"source": "ads", "since": "2000-01-01"}).json()
    assert (ads_stats["total"], ads_stats["accepted"], ads_stats["rejected"], ads_stats["queued"]) == (2, 0, 1, 1)
    assert client.get("/api/v1/stats/handoffs").json()["total"] == 4
    unknown = client.get("/api/v1/stats/handoffs", {"source": "nowhere"})
    assert (unknown.status_code, list(unknown.json())) == (400, ["source"])


def test_the_handoff_stats_source_filter_is_in_the_openapi_schema(marketer):
    schema = client_for(marketer).get("/api/schema/", {"format": "json"}).json()
    parameters = schema["paths"]["/api/v1/stats/handoffs"]["get"]["parameters"]
    assert {"since", "until", "source"} <= {parameter["name"] for parameter in parameters}


def test_the_python_median_agrees_with_postgresql(rep, settings):
    settings.HANDOFF_MAX_OPEN_CLAIMS = 100
    for minutes in (3, 7, 8, 60, 61, 200):
        _decided(claimed_after=timedelta(minutes=minutes), decided_after=timedelta(minutes=minutes * 2), rep=rep)
    stats = selectors.handoff_stats()
    handoffs = Handoff.objects.all()
    assert stats.median_seconds_to_claim == selectors.median_seconds_in_python(handoffs, "first_claimed_at") == 2040.0
    assert stats.median_seconds_to_decision == selectors.median_seconds_in_python(handoffs, "decided_at") == 4080.0
