"""Error answers every API route shares: a JSON 413 above the body size limit."""

import json

import pytest

from tests.factories import HandoffFactory, LeadFactory
from tests.helpers import client_for

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
        return client_for(admin), "patch", f"/api/v1/leads/{LeadFactory.create().public_id}"
    if name == "ruleset create":
        return client_for(admin), "post", "/api/v1/rulesets"
    if name == "rule create":
        response = client_for(admin).post("/api/v1/rulesets/1/clone")
        return client_for(admin), "post", f"/api/v1/rulesets/{response.json()['version']}/rules"
    assert name == "handoff reject"
    return client_for(rep), "post", f"/api/v1/handoffs/{HandoffFactory.create().public_id}/reject"


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


# --- Content types, addresses and query parameters ------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/leads"])
@pytest.mark.parametrize("format_", ["multipart", "form"])
def test_ingest_refuses_a_form_body_with_415(ingest_client, path, format_):
    body = {"event_id": "e1", "type": "page_view", "email": "ada@example.com"}
    if format_ == "form":
        response = ingest_client.post(path, "email=ada%40example.com", content_type="application/x-www-form-urlencoded")
    else:
        response = ingest_client.post(path, body, format="multipart")
    assert response.status_code == 415, response.content
    assert "application/json" in response.json()["detail"]


def test_ingest_still_reads_a_json_body_sent_without_a_content_type(ingest_client):
    body = json.dumps({"email": "ada@example.com"})
    response = ingest_client.generic("POST", "/api/v1/leads", body, content_type="")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v1/leads/not-a-uuid", "/api/v1/rulesets/one"])
def test_an_unknown_api_address_answers_a_json_404(marketer, path):
    response = client_for(marketer).post(path, {}, format="json")
    assert (response.status_code, response["Content-Type"]) == (404, "application/json")
    assert "/api/docs/" in response.json()["detail"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("page=1&page=2", "page"),
        ("page=0", "page"),
        ("page=abc", "page"),
        ("page=", "page"),
        ("page_size=0", "page_size"),
        ("page_size=201", "page_size"),
        ("page_size=10&page_size=20", "page_size"),
        ("unread=banana", "unread"),
        ("unread=true&unread=false", "unread"),
    ],
)
def test_a_malformed_or_repeated_query_parameter_answers_400_naming_it(rep, query, parameter):
    response = client_for(rep).get(f"/api/v1/notifications?{query}")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [parameter]


def test_a_page_past_the_last_answers_404(rep):
    response = client_for(rep).get("/api/v1/handoffs?page=2")
    assert response.status_code == 404
    assert "page 2" in response.json()["detail"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("ordering=email", "ordering"),
        ("ordering=score&ordering=-score", "ordering"),
        ("q=", "q"),
        ("source=web&source=app", "source"),
        ("source=not%20a%20slug", "source"),
        ("page_size=500", "page_size"),
    ],
)
def test_lead_list_refuses_what_it_would_have_ignored(marketer, query, parameter):
    response = client_for(marketer).get(f"/api/v1/leads?{query}")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [parameter]


def test_a_date_time_with_any_utc_offset_filters_in_utc(marketer):
    """ISO 8601 allows offsets up to ±23:59; PostgreSQL refused those beyond ±15:59 (a 500)."""
    LeadFactory.create()
    client = client_for(marketer)
    assert len(client.get("/api/v1/leads?created_after=2000-01-01T00:00:00%2B18:57").json()["results"]) == 1
    assert client.get("/api/v1/leads?created_before=9999-12-31T23:59:59-05:00").status_code == 400
    assert client.get("/api/v1/stats/handoffs?since=2000-01-01T00:00:00-20:00").status_code == 200
    assert client.get("/api/v1/stats/handoffs?until=9999-12-31").status_code == 200
