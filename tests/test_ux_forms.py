"""Issue 17, item 5: the scoring forms answer once. Every error comes in one submit, the
checks that compare fields included (the page and the API alike, the API's JSON keeping
its shape); the framework's messages are rewritten in the form's words; a draft warns,
without blocking, of an event type no event has ever had and of an empty intent list;
and the ruleset pages say rule conditions as the rule form does ("Company size ≥ 50")."""

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils.html import escape

from scoring import services
from scoring.models import Rule, RuleSet
from scoring.presenters import NO_INTENT_EVENTS
from tests.factories import EventFactory, LeadFactory, ruleset_through_services
from tests.helpers import behaviour, browser, client_for, fit

SQL_BELOW_MQL = "The SQL threshold cannot be below the MQL threshold."
HALF_LIFE_NOT_POSITIVE = "A half-life is a positive number of days; leave empty for no decay."
TWO_DECIMALS_BELOW_1M = "Give a number (e.g. 12.5) below 1,000,000, with at most 2 decimals."
TWO_DECIMALS_BELOW_100M = "Give a number (e.g. 12.5) below 100,000,000, with at most 2 decimals."
SETTINGS = {"name": "Spring", "mql_threshold": "40", "sql_threshold": "60", "intent_event_types": "demo_request"}


def draft(rules=(), **fields):
    return ruleset_through_services(list(rules), publish=False, **fields)


def page_errors(response):
    return {name: list(errors) for name, errors in response.context["form"].errors.items()}


def api_errors(response):
    assert response.status_code == 400, response.content
    return response.json()


def shows(response, *texts):
    page = response.content.decode()
    return all(escape(text) in page for text in texts)


# --- Every error in one submit -------------------------------------------------------------------
def test_one_submit_of_the_settings_shows_an_empty_name_a_negative_half_life_and_sql_below_mql(admin):
    ruleset = draft()
    posted = {**SETTINGS, "name": "", "mql_threshold": "50", "sql_threshold": "40", "decay_half_life_days": "-1"}

    response = browser(admin).post(reverse("ruleset-edit", args=[ruleset.version]), posted)

    assert response.status_code == 400
    expected = {
        "name": [services.RULESET_NAME_MISSING],
        "sql_threshold": [SQL_BELOW_MQL],
        "decay_half_life_days": [HALF_LIFE_NOT_POSITIVE],
    }
    assert page_errors(response) == expected
    assert shows(response, *[message for messages in expected.values() for message in messages])
    ruleset.refresh_from_db()
    assert (ruleset.name, ruleset.sql_threshold) == ("Test rules", Decimal(60))


def test_a_new_draft_answers_every_error_at_once_too(admin):
    model = draft().model
    rulesets = RuleSet.objects.filter(model=model).count()
    posted = {**SETTINGS, "name": " ", "mql_threshold": "ten", "sql_threshold": "5", "decay_half_life_days": "0"}

    response = browser(admin).post(reverse("ruleset-create", args=[model.slug]), posted)

    # The MQL threshold is not a number: its message says so, and SQL is compared with it next time.
    assert page_errors(response) == {
        "name": [services.RULESET_NAME_MISSING],
        "mql_threshold": [TWO_DECIMALS_BELOW_100M],
        "decay_half_life_days": [HALF_LIFE_NOT_POSITIVE],
    }
    assert RuleSet.objects.filter(model=model).count() == rulesets


def test_the_api_answers_every_error_at_once_in_the_same_json_shape(admin):
    ruleset = draft()
    client = client_for(admin)
    url = f"/api/v1/rulesets/{ruleset.version}"

    response = client.patch(
        url, {"name": "", "mql_threshold": "50", "sql_threshold": "40", "decay_half_life_days": "-1"}, format="json"
    )
    assert api_errors(response) == {
        "name": [services.RULESET_NAME_MISSING],
        "sql_threshold": [SQL_BELOW_MQL],
        "decay_half_life_days": [HALF_LIFE_NOT_POSITIVE],
    }

    # A field the framework refuses and a rule of the services, together.
    response = client.patch(url, {"sql_threshold": "20", "decay_half_life_days": "123456789"}, format="json")
    assert api_errors(response) == {"sql_threshold": [SQL_BELOW_MQL], "decay_half_life_days": [TWO_DECIMALS_BELOW_1M]}

    response = client.post("/api/v1/rulesets", {"name": "", "sql_threshold": "40", "grade_a_min": "1"}, format="json")
    assert api_errors(response) == {
        "name": [services.RULESET_NAME_MISSING],
        "mql_threshold": ["This field is required."],
        "grade_a_min": ["Grade A needs at least the fit of grade B (20)."],
    }
    ruleset.refresh_from_db()
    assert (ruleset.name, ruleset.mql_threshold, ruleset.decay_half_life_days) == ("Test rules", Decimal(30), None)


def test_a_body_that_is_not_an_object_is_still_a_400(admin):
    ruleset = draft()
    client = client_for(admin)
    assert client.post("/api/v1/rulesets", [None, None], format="json").status_code == 400
    assert client.post(f"/api/v1/rulesets/{ruleset.version}/rules", [1], format="json").status_code == 400


def test_one_submit_of_a_rule_shows_its_field_errors_and_its_shape_errors_together(admin):
    ruleset = draft()
    posted = {
        "kind": "behaviour",
        "name": "",
        "points": "5",
        "event_type": "page_view",
        "max_points": "-5",
        "window_days": "0",
        "attribute": "topic",
    }

    response = browser(admin).post(reverse("rule-create", args=[ruleset.version]), posted)

    expected = {
        "name": [services.RULE_NAME_MISSING],
        "max_points": ["The cap must have the same sign as the points (a negative rule has a negative floor)."],
        "window_days": [services.WINDOW_TOO_SHORT],
        "operator": ["Choose an operator for the property condition."],
    }
    assert page_errors(response) == expected
    assert shows(response, *[message for messages in expected.values() for message in messages])
    api = client_for(admin).post(
        f"/api/v1/rulesets/{ruleset.version}/rules", {**posted, "window_days": 0, "max_points": "-5"}, format="json"
    )
    assert api_errors(api) == expected
    assert not Rule.objects.filter(ruleset=ruleset).exists()


# --- The framework's messages, in the form's words -------------------------------------------------
@pytest.mark.parametrize(
    ("field", "typed", "message"),
    [
        ("decay_half_life_days", "123456789", TWO_DECIMALS_BELOW_1M),
        ("decay_half_life_days", "7.125", TWO_DECIMALS_BELOW_1M),
        ("mql_threshold", "forty", TWO_DECIMALS_BELOW_100M),
        ("mql_threshold", "", TWO_DECIMALS_BELOW_100M),
        ("intent_window_days", "-3", services.INTENT_WINDOW_TOO_SHORT),
        ("intent_window_days", "ninety", "Give a whole number, e.g. 30."),
        ("name", "x" * 121, "At most 120 characters."),
    ],
)
def test_a_settings_field_the_framework_refuses_says_what_to_type(admin, field, typed, message):
    ruleset = draft()
    response = browser(admin).post(reverse("ruleset-edit", args=[ruleset.version]), {**SETTINGS, field: typed})
    assert page_errors(response) == {field: [message]}
    page = response.content.decode()
    assert escape(message) in page
    assert "Ensure" not in page and "A valid number is required" not in page and "valid integer" not in page


RULE = {"kind": "fit", "name": "Rule", "points": "10", "attribute": "industry", "operator": "eq", "value": "x"}


@pytest.mark.parametrize(
    ("typed", "sent", "field", "form_words", "api_words"),
    [
        (
            {"attribute": "job_title", "operator": "exists", "value": "yes"},
            {"attribute": "job_title", "operator": "exists", "value": "yes"},
            "value",
            "“is present” takes no value: leave Value empty.",
            "'exists' takes no value: leave it empty.",
        ),
        (
            {"operator": "in", "value": " , "},
            {"operator": "in", "value": []},
            "value",
            "“is one of” needs at least one value: separate values with commas.",
            "'in' needs a non-empty list of texts or numbers.",
        ),
        (
            {"attribute": "company_size", "operator": "gte", "value": "fifty"},
            {"attribute": "company_size", "operator": "gte", "value": "fifty"},
            "value",
            "“≥” compares numbers: give a number, e.g. 50.",
            "Comparisons need a number.",
        ),
        (
            {"value": ""},
            {"value": None},
            "value",
            "“equals” needs a value to compare with: a text or a number.",
            "Give a text or number to compare with.",
        ),
        ({"points": "1e3x"}, {"points": "1e3x"}, "points", TWO_DECIMALS_BELOW_100M, TWO_DECIMALS_BELOW_100M),
        ({"points": "12.345"}, {"points": "12.345"}, "points", TWO_DECIMALS_BELOW_100M, TWO_DECIMALS_BELOW_100M),
        (
            {"kind": ""},
            {"kind": "rule"},
            "kind",
            "Choose the kind of rule: fit or behaviour or suppress.",
            "Choose the kind of rule: fit or behaviour or suppress.",
        ),
    ],
)
def test_a_rule_message_says_the_operator_as_the_form_does_and_the_api_as_the_api_does(
    admin, typed, sent, field, form_words, api_words
):
    ruleset = draft()

    response = browser(admin).post(reverse("rule-create", args=[ruleset.version]), {**RULE, **typed})

    assert page_errors(response) == {field: [form_words]}
    assert shows(response, form_words)
    api = client_for(admin).post(f"/api/v1/rulesets/{ruleset.version}/rules", {**RULE, **sent}, format="json")
    assert api_errors(api) == {field: [api_words]}  # the API's words for an operator are its codes


# --- Warnings: saved, but probably not what was meant ---------------------------------------------
def test_a_rule_on_an_event_type_no_event_ever_had_saves_and_warns(admin):
    EventFactory.create(lead=LeadFactory.create(), type="page_view")
    ruleset = draft()
    client = browser(admin)

    response = client.post(
        reverse("rule-create", args=[ruleset.version]),
        {"kind": "behaviour", "name": "Visits", "points": "2", "event_type": "pageview"},
    )

    assert response.status_code == 302  # a warning never blocks
    rule = Rule.objects.get(ruleset=ruleset, name="Visits")
    warning = "Rule “Visits”: No event has ever had the type “pageview”. Did you mean “page_view”?"
    detail = client.get(response["Location"])
    assert shows(detail, warning)
    assert shows(client.get(reverse("rule-edit", args=[ruleset.version, rule.pk])), warning)
    assert shows(client.get(reverse("ruleset-preview", args=[ruleset.version])), warning)


def test_an_event_type_some_event_had_does_not_warn(admin):
    EventFactory.create(lead=LeadFactory.create(), type="page_view")
    ruleset = draft([behaviour("page_view", 2)])
    page = browser(admin).get(reverse("ruleset-detail", args=[ruleset.version])).content.decode()
    assert "Rule “page_view rule”" not in page and "the type “page_view”" not in page


def test_an_intent_type_no_event_ever_had_warns_on_the_settings(admin):
    EventFactory.create(lead=LeadFactory.create(), type="demo_request")
    ruleset = draft(intent=("demo_request", "demo_requets"))
    client = browser(admin)
    warning = "Intent events: No event has ever had the type “demo_requets”. Did you mean “demo_request”?"
    assert shows(client.get(reverse("ruleset-edit", args=[ruleset.version])), warning)
    assert shows(client.get(reverse("ruleset-detail", args=[ruleset.version])), warning)


def test_an_empty_intent_list_saves_and_warns_that_no_lead_can_become_an_sql(admin):
    ruleset = draft([behaviour("page_view", 2)])
    client = browser(admin)

    response = client.post(reverse("ruleset-edit", args=[ruleset.version]), {**SETTINGS, "intent_event_types": ""})

    assert response.status_code == 302
    ruleset.refresh_from_db()
    assert ruleset.intent_event_types == []
    assert shows(client.get(response["Location"]), NO_INTENT_EVENTS)
    assert shows(client.get(reverse("ruleset-edit", args=[ruleset.version])), NO_INTENT_EVENTS)
    assert shows(client.get(reverse("ruleset-preview", args=[ruleset.version])), NO_INTENT_EVENTS)


def test_a_published_ruleset_shows_no_warnings(admin):
    ruleset = ruleset_through_services([behaviour("pageview", 2)], intent=())
    page = browser(admin).get(reverse("ruleset-detail", args=[ruleset.version])).content.decode()
    assert "Worth a look" not in page


# --- Conditions in words --------------------------------------------------------------------------
WORDED_RULES = [
    {**fit("company_size", "gte", 50, 10), "name": "Big company"},
    {**fit("industry", "in", ["software", "fintech"], 5), "name": "Target industry"},
    {**fit("job_title", "exists", None, 3), "name": "Has a title"},
    {**fit("traits.plan", "eq", "enterprise", 4), "name": "Enterprise plan"},
    behaviour("page_view", 2, attribute="topic", operator="eq", value="pricing", window_days=30),
    {"kind": "suppress", "name": "Unsubscribed", "event_type": "unsubscribe"},
    {"kind": "suppress", "name": "Rival", "attribute": "email_domain", "operator": "eq", "value": "rival.test"},
]
IN_WORDS = [
    "Company size ≥ 50",
    "Industry is one of software, fintech",
    "Job title is present",
    "Plan (trait) equals enterprise",
    "each page_view event where topic equals pricing, in the last 30 days",
    "any unsubscribe event",
    "E-mail domain equals rival.test",
]


def test_the_ruleset_pages_say_conditions_in_the_words_of_the_rule_form(admin):
    ruleset = draft(WORDED_RULES)
    client = browser(admin)
    detail = client.get(reverse("ruleset-detail", args=[ruleset.version]))
    preview = client.get(reverse("ruleset-preview", args=[ruleset.version]))
    for page in (detail, preview):
        assert shows(page, *IN_WORDS)
        text = page.content.decode()
        assert "company_size gte" not in text and "industry in" not in text and "job_title exists" not in text

    rule = ruleset.rules.get(attribute="company_size")
    edit = client.get(reverse("rule-edit", args=[ruleset.version, rule.pk]))
    assert shows(edit, "tests: ", "Company size ≥ 50")
