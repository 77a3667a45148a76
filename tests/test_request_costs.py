"""The fixed cost of an authenticated API request: what every token request runs
before the view does its work (bench/claims.py measures it under load)."""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from leadflow.leads import services
from leadflow.leads.models import ApiToken
from tests.factories import HandoffFactory

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


def test_a_claim_over_http_is_four_statements_and_shows_the_qualifying_model(rep):
    # The token and its person, the person's roles, the handoff by its public id, the claim
    # itself (the claimed row comes back with its lead and model): nothing is fetched again.
    handoff = HandoffFactory.create()
    client = token_client(rep)
    client.get(UNREAD)  # the token's first use is recorded before the claim
    with CaptureQueriesContext(connection) as queries:
        response = client.post(f"/api/v1/handoffs/{handoff.public_id}/claim")
    assert response.status_code == 200
    assert response.json()["model"] == handoff.model.slug
    assert response.json()["lead"]["id"] == str(handoff.lead.public_id)
    assert len(queries) == 4, [query["sql"][:80] for query in queries]
