"""The fixed cost of an authenticated API request: what every token request runs
before the view does its work (bench/claims.py measures it under load)."""

import json

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from leadflow.leads import scoring_requests, services
from leadflow.leads.models import ApiToken, Event, Lead
from leadflow.leads.scores import intent_event_types
from tests.factories import HandoffFactory
from tests.helpers import real_broker, redis_commands

UNREAD = "/api/v1/notifications/unread-count"


def token_client(user):
    _token, secret = services.api_token_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def statements(client, method, url):
    with CaptureQueriesContext(connection) as queries:
        response = getattr(client, method)(url)
    assert response.status_code < 400, response.content[:300]
    return [query["sql"] for query in queries]


def test_a_token_records_its_first_use_and_then_no_write_within_the_minute(rep):
    client = token_client(rep)
    first = statements(client, "get", UNREAD)
    assert any(sql.startswith('UPDATE "leads_apitoken"') for sql in first)
    assert ApiToken.objects.get(user=rep).last_used_at is not None
    again = statements(client, "get", UNREAD)
    assert not any(sql.startswith("UPDATE") for sql in again)
    assert len(again) == len(first) - 1


def test_a_tokens_roles_decide_what_its_person_may_do(rep, marketer, outsider):
    # A marketer may read the queue but not claim; an outsider neither.
    handoff = HandoffFactory.create()
    assert token_client(marketer).post(f"/api/v1/handoffs/{handoff.public_id}/claim").status_code == 403
    assert token_client(marketer).get("/api/v1/handoffs").status_code == 200
    assert token_client(outsider).get("/api/v1/handoffs").status_code == 403
    assert token_client(rep).post(f"/api/v1/handoffs/{handoff.public_id}/claim").status_code == 200


def test_a_claim_over_http_is_five_statements_and_shows_the_qualifying_model(rep):
    # The token and its person, the person's roles, the handoff by its public id, the claim
    # itself (the claimed row comes back with its lead and model), and the webhook
    # subscriptions that may want ``handoff.claimed`` (in the claim's transaction: the
    # savepoint's two statements, the test's transaction standing for the request's, are
    # not round trips of their own in production): nothing is fetched again.
    handoff = HandoffFactory.create()
    client = token_client(rep)
    client.get(UNREAD)  # the token's first use is recorded before the claim
    with CaptureQueriesContext(connection) as queries:
        response = client.post(f"/api/v1/handoffs/{handoff.public_id}/claim")
    assert response.status_code == 200
    assert response.json()["model"] == handoff.model.slug
    assert response.json()["lead"]["id"] == str(handoff.lead.public_id)
    statements = [query["sql"][:60] for query in queries if not query["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) == 5, statements


def page_view(n: int) -> str:
    return json.dumps(
        {
            "event_id": f"cost-{n}",
            "type": "page_view",
            "occurred_at": f"2026-11-20T10:00:0{n}Z",
            "lead": {"email": "ada@example.com"},
        }
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_single_event_for_a_flagged_lead_is_three_reads_one_transaction_and_three_redis_round_trips(
    ingest_client,
):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(settings.SCORING_QUEUE, scoring_requests.PENDING_KEY)
    try:
        with real_broker():
            first = ingest_client.post("/api/v1/events", data=page_view(1), content_type="application/json")
            assert first.json()["accepted"] == 1  # creates the lead, flags it, asks for a pass
            assert broker.get(scoring_requests.PENDING_KEY), "a pass is pending: no worker took it"
            intent_event_types()  # read at most every few seconds per process, not per request
            with CaptureQueriesContext(connection) as queries, redis_commands() as commands:
                response = ingest_client.post("/api/v1/events", data=page_view(2), content_type="application/json")
        assert response.status_code == 202
        assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
        # The key was verified by the first request and is kept: no query for it. The
        # event_id probe; the suppression list and the lead by identity (reads, no
        # transaction of their own: the lead exists); then one transaction: the event, the
        # lead locked, its activity written.
        # (Without the hand-raise types, should their few seconds run out on a slow machine.)
        statements = [query["sql"].split()[0] for query in queries if "scoring_ruleset" not in query["sql"]]
        assert statements == ["SELECT"] * 3 + ["BEGIN", "INSERT", "SELECT", "UPDATE", "COMMIT"], [
            query["sql"][:60] for query in queries
        ]
        # The failed-authentication counter and the keys' generation read together, the
        # key's quota counted (one MULTI), and the pending pass checked (SET NX fails: no
        # task published).
        assert [trip for trip, _name in commands] == [1, 2, 2, 2, 2, 3]
        assert [name for _trip, name in commands] == ["MGET", "MULTI", "SET", "INCRBY", "EXEC", "SET"]
        assert broker.llen(settings.SCORING_QUEUE) == 1, "the pending pass only"
        assert Event.objects.count() == 2
        assert Lead.objects.get().needs_rescore
    finally:
        broker.delete(settings.SCORING_QUEUE, scoring_requests.PENDING_KEY)
        broker.close()
