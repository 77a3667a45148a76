"""The API against its own OpenAPI schema: schemathesis generates requests for every
operation from /api/schema/ and checks each answer (status documented, body as the
schema says, invalid input refused, valid input accepted, no 5xx, credentials
required, slow answers...).

It runs in process through Django's WSGI application, inside the test's database
transaction, as a staff scoring admin with a personal token (an ingest key for the
two ingest operations). Bounded for a 2-core machine: `max_examples` generated
cases per operation (plus schemathesis's coverage cases), derandomized, so every
run sends the same requests. Marked `schemathesis`: `make schemathesis` runs it,
`make pytest` the rest.
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from handoff.models import HandoffAction, HandoffEvent
from leadflow.leads import services
from leadflow.leads.models import Stage, StageChange
from leadflow.leads.roles import SCORING_ADMIN
from tests.factories import HandoffFactory, LeadFactory, SourceFactory, UserFactory

# Every check, as `--checks all` (with the CLI's 10 s response time limit), except what is
# switched off or widened per operation below, each with the reason.
CONFIG = schemathesis.Config.from_str(
    """
# The test sends the credentials; generated ones would be replaced by them.
[generation]
with-security-parameters = false

[checks]
max_response_time = 10.0

# Items are validated one by one and a bad one is reported in the 202's `rejected`
# (DESIGN: a bad item never sinks the good ones), so an invalid event is accepted
# by design; the schema documents the shape of a good one.
[[operations]]
include-name = ["POST /api/v1/events", "POST /api/v1/outcomes"]
checks.negative_data_rejection.enabled = false

# A lead needs an e-mail or an external id that is not blank once trimmed, and
# Django's e-mail validator is stricter than JSON Schema's `format: email`: rules the
# schema cannot state, so a schema-valid body may get 400.
[[operations]]
include-name = "POST /api/v1/leads"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

# `until` must come after `since`, and `source` must name an existing source: rules
# across parameters, or against the data, that the schema cannot state.
[[operations]]
include-name = "GET /api/v1/stats/handoffs"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]

# What a valid rule or ruleset is depends on its kind, operator and thresholds together
# (scoring.services.rule_validate, ruleset_validate), and a decimal may
# have no more digits than its column: rules the schema cannot state.
[[operations]]
include-name = [
    "POST /api/v1/rulesets",
    "PATCH /api/v1/rulesets/{version}",
    "POST /api/v1/rulesets/{version}/rules",
    "PATCH /api/v1/rulesets/{version}/rules/{rule_id}",
]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

# A person's e-mail must pass Django's e-mail validator and name an existing person (or
# suppressed address): rules the schema cannot state.
[[operations]]
include-name = [
    "GET /api/v1/privacy/export",
    "POST /api/v1/privacy/erase",
    "GET /api/v1/privacy/suppressions",
    "DELETE /api/v1/privacy/suppressions",
]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]

# `model` must name an existing scoring model: a rule against the data.
[[operations]]
include-name = ["GET /api/v1/leads", "GET /api/v1/accounts", "GET /api/v1/rulesets"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]

# A model's name and slug must be unique: a rule against the data.
[[operations]]
include-name = ["POST /api/v1/models", "PATCH /api/v1/models/{slug}"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

# A note is required with the reason `other`, and a handoff goes only to an existing rep.
[[operations]]
include-name = ["POST /api/v1/handoffs/{handoff_id}/reject", "POST /api/v1/handoffs/{handoff_id}/reassign"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

# An accept checklist item's key must be new (and never changes), its label not blank once
# trimmed; an acceptance confirms only active items of the checklist: rules against the data.
[[operations]]
include-name = [
    "POST /api/v1/handoff-checklist",
    "PATCH /api/v1/handoff-checklist/{key}",
    "POST /api/v1/handoffs/{handoff_id}/accept",
]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

# A webhook's URL must be an http(s) URL whose host resolves to public addresses, and its
# name not blank once trimmed (handoff.webhooks.webhook_subscription_validate): rules the
# schema cannot state.
[[operations]]
include-name = ["POST /api/v1/webhooks", "PUT /api/v1/webhooks/{subscription_id}"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]
"""
)
MAX_EXAMPLES = 25
INGEST_OPERATIONS = {("POST", "/api/v1/events"), ("POST", "/api/v1/outcomes"), ("POST", "/api/v1/leads")}

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application(), config=CONFIG)


@pytest.fixture
def wsgi_requests_share_the_test_transaction(db):
    """Django's test client keeps the connection open across requests; so must the WSGI application."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def credentials(wsgi_requests_share_the_test_transaction, settings):
    """Authorization headers, and data with the empty relations answers must show as null."""
    # Schemathesis sends missing and wrong keys on purpose (its authentication checks), many
    # per operation: the limit on failed authentications from one address would answer the
    # rest 429. That limit has its own tests (tests/test_rate_limits.py).
    settings.API_AUTH_FAILURE_LIMIT = 0
    admin = UserFactory.create(username="schema_admin", roles=[SCORING_ADMIN], is_staff=True)
    _token, person = services.api_token_create(user=admin)
    _key, ingest = services.ingest_key_create(source=SourceFactory.create(slug="schema", name="Schema"))
    lead = LeadFactory.create(email="orphan@example.com", name="Orphan", company="", source=None, owner=None)
    StageChange.objects.create(lead=lead, from_stage=Stage.NEW, to_stage=Stage.MQL, actor=None, reason="Scored.")
    handoff = HandoffFactory.create(lead__email="queued@example.com", lead__name="Queued", lead__company="Acme")
    HandoffEvent.objects.create(handoff=handoff, action=HandoffAction.OPENED, actor=None, at=handoff.created_at)
    return {
        "person": {"Authorization": f"Bearer {person}"},
        "ingest": {"Authorization": f"Bearer {ingest}"},
        "lead": lead,
        "handoff": handoff,
    }


def headers_for(case, credentials):
    kind = "ingest" if (case.method.upper(), case.path) in INGEST_OPERATIONS else "person"
    return credentials[kind]


@pytest.mark.schemathesis
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # One database transaction (the fixture's) serves all of an operation's cases.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_the_schema_says(case, credentials):
    case.call_and_validate(headers=headers_for(case, credentials))


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/leads", None),
        ("/api/v1/leads/{lead_id}", "lead"),
        ("/api/v1/leads/{lead_id}/stage", "lead"),
        ("/api/v1/handoffs/{handoff_id}", "handoff"),
        ("/api/v1/leads/{lead_id}/handoffs", "handoff"),
        ("/api/v1/rulesets", None),
    ],
)
def test_answers_with_empty_relations_match_the_schema(credentials, path, parameter):
    """Generated ids rarely name a row: these read rows whose owner, source, actor or author is empty."""
    path_parameters = {}
    if parameter == "lead":
        path_parameters["lead_id"] = str(credentials["lead"].public_id)
    elif parameter == "handoff":
        handoff = credentials["handoff"]
        key = "handoff_id" if "{handoff_id}" in path else "lead_id"
        path_parameters[key] = str(handoff.public_id if key == "handoff_id" else handoff.lead.public_id)
    case = schema[path]["GET"].Case(path_parameters=path_parameters)
    response = case.call_and_validate(headers=credentials["person"])
    assert response.status_code == 200
    assert "null" in response.text


# --- The schema itself ------------------------------------------------------------------------------
@pytest.fixture
def openapi(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def operations(openapi):
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "patch", "put", "delete"):
                yield method.upper(), path, operation


@pytest.mark.parametrize(
    ("component", "field"),
    [
        ("LeadList", "owner"),
        ("LeadList", "source"),
        ("LeadDetail", "owner"),
        ("StageChange", "actor"),
        ("HandoffEvent", "actor"),
        ("RuleSet", "created_by"),
        ("RuleSet", "published_by"),
    ],
)
def test_relations_that_may_be_empty_are_nullable(openapi, component, field):
    assert openapi["components"]["schemas"][component]["properties"][field].get("nullable") is True


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/outcomes", "/api/v1/leads"])
def test_ingest_operations_take_only_json(openapi, path):
    assert list(openapi["paths"][path]["post"]["requestBody"]["content"]) == ["application/json"]


def test_every_operation_documents_the_errors_it_can_answer(openapi):
    missing = []
    for method, path, operation in operations(openapi):
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        expected = {"401", "403", "413"}
        if "requestBody" in operation:
            expected |= {"400", "415"}
        if query:
            expected.add("400")
        if "{" in path or query & {"page", "cursor"}:
            expected.add("404")
        missing += [f"{method} {path}: {code}" for code in sorted(expected - set(operation["responses"]))]
    assert missing == []


def test_page_parameters_are_single_bounded_integers(openapi):
    parameters = {p["name"]: p for p in openapi["paths"]["/api/v1/handoffs"]["get"]["parameters"]}
    assert parameters["page"]["schema"] == {"type": "integer", "minimum": 1}
    assert parameters["page_size"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 200}
