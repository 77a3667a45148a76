"""The admin writes through the services like every other surface: what the services
refuse, the admin's change forms refuse on the field, and what they save, the services
save (a lead edited by hand is flagged for rescoring). Driven through the admin's own
pages with Django's test client, as a superuser."""

from decimal import Decimal

import pytest
from django.db.models import Max
from django.test import Client

from leadflow.leads.models import Lead
from scoring.models import Rule, RuleSet, RuleSetStatus
from tests.factories import EventFactory, HandoffFactory, LeadFactory, OutcomeFactory, default_model
from tests.helpers import behaviour, fit


@pytest.fixture
def superuser(django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-not-used-1")
    client = Client()
    client.force_login(user)
    return client


def make_ruleset(*rules, **fields):
    ruleset = RuleSet.objects.create(
        model=default_model(),
        version=(RuleSet.objects.aggregate(v=Max("version"))["v"] or 0) + 1,
        name="Spring",
        status=RuleSetStatus.DRAFT,
        mql_threshold=Decimal(30),
        sql_threshold=Decimal(60),
        intent_event_types=["demo_request"],
        **fields,
    )
    for position, rule in enumerate(rules, start=1):
        Rule.objects.create(ruleset=ruleset, position=position, **rule)
    return ruleset


def change_url(obj):
    return f"/admin/{obj._meta.app_label}/{obj._meta.model_name}/{obj.pk}/change/"


def form_data(response):
    """What the browser would post back from a change page: the form and its inlines as shown."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data = {}
    for form in forms:
        for bound in form:
            value = bound.value()
            if value is None or value is False:
                continue
            data[bound.html_name] = "on" if value is True else str(value)
    return data


def field_errors(response):
    errors = dict(response.context["adminform"].form.errors)
    for inline in response.context["inline_admin_formsets"]:
        for index, form_errors in enumerate(inline.formset.errors):
            prefix = f"{inline.formset.prefix}-{index}-"
            errors.update({prefix + name: messages for name, messages in form_errors.items()})
    return {name: list(messages) for name, messages in errors.items()}


# --- Rulesets and their rules -------------------------------------------------------------------
def test_an_invalid_rule_is_refused_on_its_field_and_nothing_is_saved(superuser):
    draft = make_ruleset(behaviour("page_view", 2, max_points=10), fit("industry", "eq", "software", 5))
    page = superuser.get(change_url(draft))
    data = form_data(page)
    data["rules-0-max_points"] = "-4"  # a cap must have the sign of the points
    data["rules-1-attribute"] = "salary"  # not a lead attribute

    response = superuser.post(change_url(draft), data)

    assert response.status_code == 200  # the form again, with its errors
    assert field_errors(response) == {
        "rules-0-max_points": ["The cap must have the same sign as the points (a negative rule has a negative floor)."],
        "rules-1-attribute": [
            "Unknown lead attribute: use one of company, company_size, country, email_domain, industry, "
            "job_title, name, utm_campaign, utm_medium, utm_source, or traits.<key>."
        ],
    }
    assert "The cap must have the same sign as the points" in response.content.decode()
    assert [(rule.max_points, rule.attribute) for rule in draft.rules.all()] == [
        (Decimal(10), ""),
        (None, "industry"),
    ]


def test_a_new_rule_from_the_admin_is_checked_and_created_by_the_services(superuser):
    draft = make_ruleset(behaviour("page_view", 2))
    data = form_data(superuser.get(change_url(draft)))
    data["rules-TOTAL_FORMS"] = "2"
    new = {"position": "2", "kind": "fit", "name": "Big", "points": "10", "attribute": "company_size"}
    data.update({f"rules-1-{name}": value for name, value in {**new, "operator": "gte", "value": '"lots"'}.items()})

    response = superuser.post(change_url(draft), data)

    assert response.status_code == 200
    assert field_errors(response) == {"rules-1-value": ["Comparisons need a number."]}
    assert draft.rules.count() == 1

    data.update({"rules-1-value": "500"})
    assert superuser.post(change_url(draft), data).status_code == 302
    rule = draft.rules.get(name="Big")
    assert (rule.attribute, rule.operator, rule.value, rule.position) == ("company_size", "gte", 500, 2)


def test_the_thresholds_are_checked_by_the_services_and_saved_by_them(superuser):
    draft = make_ruleset(behaviour("page_view", 2))
    data = form_data(superuser.get(change_url(draft)))
    data.update({"mql_threshold": "50", "sql_threshold": "40"})

    response = superuser.post(change_url(draft), data)

    assert response.status_code == 200
    assert field_errors(response) == {"sql_threshold": ["The SQL threshold cannot be below the MQL threshold."]}
    draft.refresh_from_db()
    assert (draft.mql_threshold, draft.sql_threshold) == (Decimal(30), Decimal(60))

    data.update({"sql_threshold": "70", "intent_event_types": '["trial_start", "demo_request", "trial_start"]'})
    assert superuser.post(change_url(draft), data).status_code == 302
    draft.refresh_from_db()
    assert (draft.mql_threshold, draft.sql_threshold) == (Decimal(50), Decimal(70))
    assert draft.intent_event_types == ["demo_request", "trial_start"]  # as ruleset_update stores them


def test_a_published_ruleset_is_read_only_in_the_admin(superuser, publish_ruleset):
    published = publish_ruleset([behaviour("page_view", 2)], mql=30)
    page = superuser.get(change_url(published))
    assert page.status_code == 200
    assert not page.context["has_change_permission"] and not page.context["has_delete_permission"]
    data = form_data(page)

    assert superuser.post(change_url(published), {**data, "mql_threshold": "1"}).status_code == 403
    assert superuser.post(f"/admin/scoring/ruleset/{published.pk}/delete/", {"post": "yes"}).status_code == 403
    published.refresh_from_db()
    assert published.mql_threshold == Decimal(30)


def test_a_draft_is_deleted_through_the_services_and_not_in_bulk(superuser):
    draft = make_ruleset(behaviour("page_view", 2))
    changelist = superuser.get("/admin/scoring/ruleset/")
    actions = changelist.context["action_form"]
    assert actions is None or "delete_selected" not in dict(actions.fields["action"].choices)
    response = superuser.post(f"/admin/scoring/ruleset/{draft.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not RuleSet.objects.filter(pk=draft.pk).exists()


# --- Leads ---------------------------------------------------------------------------------------
def test_a_lead_edited_in_the_admin_is_saved_by_lead_update_and_flagged_for_rescoring(superuser):
    lead = LeadFactory.create(email="ada@example.com", traits={"plan": "free", "seats": 3}, needs_rescore=False)
    data = form_data(superuser.get(change_url(lead)))
    data.update({"job_title": "CTO", "traits": '{"plan": "pro"}', "email": "eve@example.com", "stage": "sql"})

    assert superuser.post(change_url(lead), data).status_code == 302

    lead.refresh_from_db()
    assert (lead.job_title, lead.traits, lead.needs_rescore) == ("CTO", {"plan": "pro"}, True)
    assert (lead.email, lead.stage) == ("ada@example.com", "new")  # identity and stage are read-only here


def test_a_lead_edit_the_api_would_refuse_is_refused_on_its_field(superuser):
    half = "x" * 9000
    lead = LeadFactory.create(traits={"a": half}, needs_rescore=False)
    job_title = lead.job_title
    data = form_data(superuser.get(change_url(lead)))
    data.update({"job_title": "CTO", "traits": f'{{"a": "{half}", "b": "{half}"}}'})

    response = superuser.post(change_url(lead), data)

    assert response.status_code == 200
    assert list(field_errors(response)) == ["traits"]
    assert "over the limit" in field_errors(response)["traits"][0]
    lead.refresh_from_db()
    assert (lead.job_title, lead.traits, lead.needs_rescore) == (job_title, {"a": half}, False)


def test_the_admin_adds_no_lead_and_changes_no_handoff_or_event(superuser):
    assert superuser.get("/admin/leads/lead/add/").status_code == 403
    assert Lead.objects.count() == 0
    for model in ("leads/event", "leads/outcome", "leads/stagechange", "handoff/handoff", "scoring/rescorerun"):
        assert superuser.get(f"/admin/{model}/add/").status_code == 403


def test_every_admin_page_opens(superuser, publish_ruleset):
    from django.contrib import admin

    handoff = HandoffFactory.create()
    EventFactory.create(lead=handoff.lead)
    OutcomeFactory.create(lead=handoff.lead)
    make_ruleset(behaviour("page_view", 2))
    publish_ruleset([behaviour("page_view", 2)])
    for model in admin.site._registry:
        listing = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert superuser.get(listing).status_code == 200, listing
        for obj in model._default_manager.all()[:3]:
            assert superuser.get(change_url(obj)).status_code == 200, change_url(obj)
