"""Error answers every API route shares: a JSON 413 above the body size limit."""

import json

import pytest

from tests.conftest import client_for
from tests.factories import HandoffFactory, LeadFactory

LIMIT = 4096


@pytest.fixture
def small_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = settings.INGEST_MAX_BODY_BYTES = LIMIT


@pytest.fixture
def route(request, ingest_client, admin, rep):
    """(client, method, path) of one API route that takes a body."""
    name = request.param
    if name == "events":
        return ingest_client, "post", "/api/v1/events"
    if name == "lead upsert":
        return ingest_client, "post", "/api/v1/leads"
    if name == "lead edit":
        return client_for(admin), "patch", f"/api/v1/leads/{LeadFactory().public_id}"
    if name == "ruleset create":
        return client_for(admin), "post", "/api/v1/rulesets"
    if name == "rule create":
        response = client_for(admin).post("/api/v1/rulesets/1/clone")
        return client_for(admin), "post", f"/api/v1/rulesets/{response.json()['version']}/rules"
    assert name == "handoff reject"
    return client_for(rep), "post", f"/api/v1/handoffs/{HandoffFactory().public_id}/reject"


ROUTES = ["events", "lead upsert", "lead edit", "ruleset create", "rule create", "handoff reject"]


def oversized_body():
    return json.dumps({"name": "x" * LIMIT})


def assert_413_says_the_limit(response):
    assert response.status_code == 413, response.content
    assert response["Content-Type"] == "application/json"
    detail = response.json()["detail"]
    assert f"at most {LIMIT} bytes" in detail
    assert "smaller body" in detail


@pytest.mark.parametrize("route", ROUTES, indirect=True)
def test_a_body_over_the_limit_answers_a_json_413_on_every_api_route(small_limit, route):
    client, method, path = route
    response = getattr(client, method)(path, oversized_body(), content_type="application/json")
    assert_413_says_the_limit(response)


@pytest.mark.parametrize("route", ROUTES, indirect=True)
def test_a_declared_length_over_the_limit_is_refused_without_reading_the_body(small_limit, route):
    client, method, path = route
    response = getattr(client, method)(path, "{}", content_type="application/json", CONTENT_LENGTH=str(LIMIT + 1))
    assert_413_says_the_limit(response)


@pytest.mark.parametrize(("route", "status"), [("events", 400), ("lead edit", 200)], indirect=["route"])
def test_a_body_without_a_content_length_is_not_read(small_limit, route, status):
    """Django reads no body without a Content-Length: leaving the header out gets nothing past the limit."""
    client, method, path = route
    response = getattr(client, method)(path, oversized_body(), content_type="application/json", CONTENT_LENGTH="")
    assert (response.status_code, response["Content-Type"]) == (status, "application/json"), response.content
    assert "x" * 100 not in response.content.decode()


def test_an_unauthenticated_body_over_the_limit_is_refused_before_authentication(small_limit, api_client):
    response = api_client.post("/api/v1/rulesets", oversized_body(), content_type="application/json")
    assert_413_says_the_limit(response)


def test_a_page_keeps_djangos_answer_to_a_body_over_the_limit(small_limit, client):
    response = client.post("/login/", {"username": "x" * LIMIT, "password": "x"})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
