"""Accounts: leads grouped by their account trait or company e-mail domain, the roll-up
score of each account per scoring model, its explanation, marketing-qualified accounts,
and the pages and API that show them."""

import itertools
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from handoff.models import Notification, NotificationKind
from leadflow.leads import accounts as lead_accounts
from leadflow.leads import services as lead_services
from leadflow.leads.models import Account, FreeMailDomain, Lead
from leadflow.leads.validation import LeadInput
from scoring import accounts
from scoring import services as scoring_services
from scoring.models import AccountScore
from tests.factories import EventFactory, LeadFactory, default_model, score_of
from tests.helpers import behaviour, client_for, fit

NOW = timezone.now()
EVENT_IDS = itertools.count()


def ingest(client, *leads):
    """Post one page view per lead ({email, traits…}) through the events API."""
    body = {"events": [{"event_id": f"evt-{next(EVENT_IDS)}", "type": "page_view", "lead": lead} for lead in leads]}
    response = client.post("/api/v1/events", json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    assert not response.json()["rejected"]


def account_of(email: str) -> Account | None:
    return Lead.objects.select_related("account").get(email=email).account


def lead_in(account: Account, **kwargs) -> Lead:
    return LeadFactory.create(account=account, **kwargs)


def an_account(name: str = "Acme") -> Account:
    return Account.objects.create(key=name.lower(), name=name, domain=f"{name.lower()}.test")


# --- Which account a lead belongs to ------------------------------------------------------------
def test_leads_at_one_company_domain_share_an_account(ingest_client):
    ingest(ingest_client, {"email": "ada@acme.io"}, {"email": "grace@acme.io"}, {"email": "alan@globex.io"})

    acme = account_of("ada@acme.io")
    assert acme is not None and acme == account_of("grace@acme.io")
    assert (acme.key, acme.name, acme.domain) == ("acme.io", "acme.io", "acme.io")
    assert account_of("alan@globex.io").key == "globex.io"


def test_the_account_trait_outranks_the_domain_whatever_its_case_and_blanks(ingest_client):
    ingest(
        ingest_client,
        {"email": "ada@gmail.com", "traits": {"account": "  Acme   Corp "}},
        {"email": "grace@acme-mail.io", "traits": {"account": "ACME CORP"}},
    )

    acme = account_of("ada@gmail.com")
    assert acme is not None and acme == account_of("grace@acme-mail.io")
    assert (acme.key, acme.name) == ("acme corp", "Acme Corp")
    assert acme.domain == ""  # the first contact's domain is free-mail: it names no company


def test_free_mail_leads_form_no_account(ingest_client):
    ingest(ingest_client, {"email": "ada@gmail.com"}, {"email": "grace@outlook.com"}, {"external_id": "crm-1"})

    assert account_of("ada@gmail.com") is None
    assert account_of("grace@outlook.com") is None
    assert Lead.objects.get(external_id="crm-1").account is None
    assert not Account.objects.exists()


def test_an_edited_free_mail_list_is_honoured_by_ingest_and_by_rederiving(ingest_client):
    ingest(ingest_client, {"email": "ada@freebox.example"})
    assert account_of("ada@freebox.example") is not None

    FreeMailDomain.objects.create(domain="freebox.example")
    ingest(ingest_client, {"email": "grace@freebox.example"})
    assert account_of("grace@freebox.example") is None

    result = lead_accounts.accounts_rederive()

    assert account_of("ada@freebox.example") is None
    assert (result.leads_changed, result.accounts_removed) == (1, 1)
    assert not Account.objects.exists()


def test_changing_the_account_trait_or_gaining_an_email_moves_the_lead(ingest_client, source):
    ingest(ingest_client, {"external_id": "crm-7"})
    lead = Lead.objects.get(external_id="crm-7")
    assert lead.account is None

    ingest(ingest_client, {"external_id": "crm-7", "email": "ada@initech.io"})
    lead.refresh_from_db()
    assert lead.account and lead.account.key == "initech.io"

    lead_services.lead_upsert(
        source=source, data=LeadInput(email="ada@initech.io", external_id=None, traits={"account": "Initrode"})
    )
    lead.refresh_from_db()
    assert lead.account and lead.account.key == "initrode"

    lead_services.lead_update(lead=lead, changes={"traits": {"account": None}})
    lead.refresh_from_db()
    assert lead.account and lead.account.key == "initech.io"


@pytest.mark.postgres
def test_deriving_accounts_in_sql_agrees_with_the_python_definition(db):
    FreeMailDomain.objects.get_or_create(domain="gmail.com")
    cases = [
        ("a@acme.io", {}),
        ("b@gmail.com", {}),
        ("c@gmail.com", {"account": "Ümlaut  GmbH"}),
        ("d@x.io", {"account": "  "}),
        ("e@y.io", {"account": 42}),
        ("f@z.io", {"account": "Tab\tand\nnewline"}),
        ("g@w.io", {"account": "x" * 199 + " tail"}),
        (None, {"account": "No Email Inc"}),
        (None, {}),
        ("h@sub.Domain.io".lower(), {"account": None}),
    ]
    leads = [
        LeadFactory.create(email=email, external_id=None if email else f"ext-{n}", traits=traits)
        for n, (email, traits) in enumerate(cases)
    ]
    expected = {}
    for lead in leads:
        key = lead_accounts.account_key(email=lead.email, traits=lead.traits)
        free = key is not None and key.by_domain and key.domain == "gmail.com"
        expected[lead.pk] = None if key is None or free else key.key

    lead_accounts.accounts_rederive()

    derived = {pk: key for pk, key in Lead.objects.values_list("id", "account__key")}
    assert derived == expected
    assert Account.objects.get(key="Ümlaut gmbh").name == "Ümlaut GmbH"  # ASCII letters fold, as rules compare


def test_ingest_resolves_a_batchs_accounts_in_a_constant_number_of_queries(
    ingest_client, django_assert_max_num_queries
):
    ingest(ingest_client, {"email": "first@co0.io"})  # both batches below meet a known account and new ones
    few = [{"email": f"p{n}@co{n % 3}.io"} for n in range(3)]
    many = [{"email": f"q{n}@co{n % 50}.io"} for n in range(300)]
    with django_assert_max_num_queries(40) as few_queries:
        ingest(ingest_client, *few)
    with django_assert_max_num_queries(len(few_queries.captured_queries)):
        ingest(ingest_client, *many)
    assert Account.objects.count() == 50


# --- The roll-up ----------------------------------------------------------------------------------------
def contacts_with_scores(account: Account, rows: list[tuple[str, str]]) -> list[Lead]:
    """A contact of ``account`` per (behaviour, fit), scored under the default model."""
    leads = []
    for behaviour_points, fit_points in rows:
        lead = lead_in(account)
        score_of(lead, score=str(Decimal(behaviour_points) + Decimal(fit_points)), fit=fit_points)
        leads.append(lead)
    return leads


def test_the_rollup_is_the_top_contacts_behaviour_plus_the_best_fit(db, settings):
    settings.ACCOUNT_TOP_CONTACTS = 3
    acme = an_account()
    contacts_with_scores(acme, [("10.50", "5"), ("30", "25"), ("20", "0"), ("50", "10"), ("-5", "40")])

    accounts.accounts_rollup(model_ids=[default_model().pk], lead_ids=None, at=NOW)

    rollup = AccountScore.objects.get(account=acme, model=default_model())
    assert (rollup.behaviour, rollup.fit, rollup.score, rollup.contacts) == (
        Decimal("100.00"),
        Decimal("40.00"),
        Decimal("140.00"),
        5,
    )


def test_the_rollup_explanation_names_the_contributing_contacts_and_adds_up(db, settings):
    settings.ACCOUNT_TOP_CONTACTS = 2
    acme = an_account()
    low, top, second, best_fit = contacts_with_scores(acme, [("1", "1"), ("9", "2"), ("5", "3"), ("0", "30")])
    accounts.accounts_rollup(model_ids=[default_model().pk], lead_ids=None, at=NOW)

    explanation = accounts.account_explain(account=acme, model=default_model())

    by_lead = {item.lead.pk: item for item in explanation.contributions}
    assert set(by_lead) == {top.pk, second.pk, best_fit.pk}  # ``low`` contributes nothing
    assert by_lead[top.pk].behaviour_counted and by_lead[second.pk].behaviour_counted
    assert by_lead[best_fit.pk].fit_counted and not by_lead[best_fit.pk].behaviour_counted
    assert explanation.contacts == 4
    assert explanation.score == Decimal("44") == AccountScore.objects.get(account=acme).score


@pytest.mark.postgres
def test_the_sql_and_python_rollups_agree(db, settings):
    settings.ACCOUNT_TOP_CONTACTS = 2
    model = default_model()
    rows = {
        "tied": [("5", "1"), ("5", "2"), ("5", "3")],
        "negative": [("-3", "-1"), ("-7", "4")],
        "single": [("12.34", "0.01")],
        "many": [(str(n % 7), str(n % 4)) for n in range(12)],
    }
    created = {name: an_account(name) for name in rows}
    for name, scores in rows.items():
        contacts_with_scores(created[name], scores)
    lead_in(an_account("unscored"))

    accounts._rollup_sql(model.pk, None, NOW)
    in_sql = {row.account_id: (row.score, row.fit, row.behaviour, row.contacts) for row in AccountScore.objects.all()}

    assert in_sql == accounts.rollups_in_python(model.pk, None)
    assert len(in_sql) == 4


def test_scoring_a_lead_rolls_up_its_account_and_a_full_rescore_every_account(
    db, publish_ruleset, django_capture_on_commit_callbacks
):
    publish_ruleset([behaviour("page_view", 10), fit("job_title", "contains", "director", 5)], mql=100, sql=200)
    acme, globex = an_account("Acme"), an_account("Globex")
    ada = lead_in(acme, job_title="Director")
    grace = lead_in(acme, job_title="Engineer")
    alan = lead_in(globex, job_title="Engineer")
    for lead in (ada, grace, grace, alan):
        EventFactory.create(lead=lead, source=lead.source)

    scoring_services.leads_score(lead_ids=[ada.pk, grace.pk])

    assert AccountScore.objects.get(account=acme).score == Decimal("35.00")  # 10 + 20 behaviour, fit 5
    assert not AccountScore.objects.filter(account=globex).exists()  # not touched yet

    with django_capture_on_commit_callbacks(execute=True):
        publish_ruleset([behaviour("page_view", 1)], mql=100, sql=200)
    assert AccountScore.objects.get(account=globex).score == Decimal("1.00")
    assert AccountScore.objects.get(account=acme).score == Decimal("3.00")


def test_an_account_a_contact_leaves_is_rolled_up_again(
    ingest_client, publish_ruleset, django_capture_on_commit_callbacks
):
    publish_ruleset([behaviour("page_view", 10)], mql=100, sql=200)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(
            ingest_client,
            {"email": "ada@a.io", "traits": {"account": "Acme"}},
            {"email": "grace@g.io", "traits": {"account": "Acme"}},
        )
    acme = Account.objects.get(key="acme")
    assert AccountScore.objects.get(account=acme).score == Decimal("20.00")

    grace = Lead.objects.get(email="grace@g.io")
    with django_capture_on_commit_callbacks(execute=True):
        lead_services.lead_update(lead=grace, changes={"traits": {"account": "Globex"}})
    assert AccountScore.objects.get(account=acme).score == Decimal("10.00")
    assert AccountScore.objects.get(account__key="globex").score == Decimal("10.00")

    with django_capture_on_commit_callbacks(execute=True):
        ingest(ingest_client, {"email": "ada@a.io", "traits": {"account": None}})
    assert not AccountScore.objects.filter(account=acme).exists()
    assert AccountScore.objects.get(account__key="a.io").contacts == 1


# --- MQA ----------------------------------------------------------------------------------------------
def test_an_account_reaching_the_mqa_threshold_notifies_marketing_once(db, publish_ruleset, marketer, rep):
    publish_ruleset([behaviour("page_view", 30)], mql=100, sql=200, mqa_threshold=Decimal("50"))
    acme = an_account()
    ada, grace = lead_in(acme), lead_in(acme)
    EventFactory.create(lead=ada, source=ada.source)

    scoring_services.leads_score(lead_ids=[ada.pk])
    assert AccountScore.objects.get(account=acme).mqa_at is None

    EventFactory.create(lead=grace, source=grace.source)
    scoring_services.leads_score(lead_ids=[grace.pk])
    scoring_services.leads_score(lead_ids=[ada.pk, grace.pk])

    rollup = AccountScore.objects.get(account=acme)
    assert rollup.score == Decimal("60.00") and rollup.mqa_at is not None
    notices = Notification.objects.filter(kind=NotificationKind.ACCOUNT_QUALIFIED)
    assert [(n.recipient, n.link) for n in notices] == [(marketer, f"/accounts/{acme.pk}/")]
    assert "Acme" in notices[0].title


def test_many_accounts_qualifying_at_once_make_one_digest(db, publish_ruleset, marketer):
    publish_ruleset([behaviour("page_view", 30)], mql=100, sql=200, mqa_threshold=Decimal("10"))
    leads = [lead_in(an_account(f"Co{n}")) for n in range(12)]
    for lead in leads:
        EventFactory.create(lead=lead, source=lead.source)

    scoring_services.leads_score(lead_ids=[lead.pk for lead in leads])

    assert AccountScore.objects.filter(mqa_at__isnull=False).count() == 12
    (digest,) = Notification.objects.filter(kind=NotificationKind.ACCOUNT_QUALIFIED)
    assert digest.title == "12 accounts became marketing-qualified"


def test_no_mqa_without_a_threshold(db, publish_ruleset, marketer):
    publish_ruleset([behaviour("page_view", 30)], mql=100, sql=200)
    lead = lead_in(an_account())
    EventFactory.create(lead=lead, source=lead.source)

    scoring_services.leads_score(lead_ids=[lead.pk])

    assert AccountScore.objects.get().mqa_at is None
    assert not Notification.objects.exists()


# --- Pages and API --------------------------------------------------------------------------------------
@pytest.fixture
def acme_with_contacts(db):
    acme = an_account()
    ada, grace = contacts_with_scores(acme, [("40", "10"), ("20", "30")])
    ada.name, grace.name = "Ada Lovelace", "Grace Hopper"
    Lead.objects.bulk_update([ada, grace], ["name"])
    EventFactory.create(lead=ada, source=ada.source, type="pricing_view", occurred_at=NOW - timedelta(hours=2))
    accounts.accounts_rollup(model_ids=[default_model().pk], lead_ids=None, at=NOW)
    LeadFactory.create(name="Someone Else")
    return acme


def test_the_account_page_shows_rollup_contributors_contacts_and_activity(client, marketer, acme_with_contacts):
    client.force_login(marketer)
    response = client.get(f"/accounts/{acme_with_contacts.pk}/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "Ada Lovelace" in page and "Grace Hopper" in page and "Someone Else" not in page
    assert "<strong>90.00</strong>" in page  # 40 + 20 behaviour + 30 best fit
    assert "pricing_view" in page


def test_the_accounts_list_sorts_by_rollup_in_constant_queries(client, rep, django_assert_max_num_queries):
    for n in range(3):
        contacts_with_scores(an_account(f"Co{n}"), [(str(10 * n), "0")])
    accounts.accounts_rollup(model_ids=[default_model().pk], lead_ids=None, at=NOW)
    client.force_login(rep)

    with django_assert_max_num_queries(12):
        page = client.get("/accounts/").content.decode()
    assert page.index("Co2") < page.index("Co1") < page.index("Co0")
    assert client.get("/accounts/?q=nothing-like-it").content.decode().count("No account matches") == 1


def test_the_accounts_list_has_an_empty_state(client, marketer):
    client.force_login(marketer)
    assert "No accounts yet" in client.get("/accounts/").content.decode()


def test_the_lead_page_links_its_account(client, marketer, acme_with_contacts):
    lead = acme_with_contacts.contacts.first()
    client.force_login(marketer)
    assert f'href="/accounts/{acme_with_contacts.pk}/"' in client.get(f"/leads/{lead.public_id}/").content.decode()


def test_the_leads_list_and_api_filter_by_account(client, marketer, acme_with_contacts):
    client.force_login(marketer)
    page = client.get(f"/leads/?account={acme_with_contacts.pk}").content.decode()
    assert "Ada Lovelace" in page and "Someone Else" not in page

    api = client_for(marketer)
    listed = api.get(f"/api/v1/leads?account={acme_with_contacts.pk}").json()["results"]
    assert sorted(lead["name"] for lead in listed) == ["Ada Lovelace", "Grace Hopper"]


def test_the_accounts_api_lists_and_details_rollups_and_contacts_for_any_role(rep, acme_with_contacts):
    api = client_for(rep)
    listed = api.get("/api/v1/accounts").json()["results"]
    assert [(row["name"], row["score"], row["contacts"]) for row in listed] == [("Acme", "90.00", 2)]
    assert api.get("/api/v1/accounts?q=globex").json()["results"] == []

    detail = api.get(f"/api/v1/accounts/{acme_with_contacts.pk}").json()
    (rollup,) = detail["rollups"]
    assert rollup["score"] == "90.00" and rollup["model"] == default_model().slug
    assert sum(Decimal(c["behaviour"]) for c in rollup["contributions"] if c["behaviour_counted"]) + sum(
        Decimal(c["fit"]) for c in rollup["contributions"] if c["fit_counted"]
    ) == Decimal("90.00")
    assert sorted(contact["name"] for contact in detail["contacts"]) == ["Ada Lovelace", "Grace Hopper"]


def test_accounts_are_for_people_with_a_role_and_unknown_ones_are_404(client, outsider, marketer, db):
    acme = an_account()
    assert client.get("/accounts/").status_code == 302  # to the login page
    client.force_login(outsider)
    assert client.get(f"/accounts/{acme.pk}/").status_code == 403
    assert client_for(outsider).get("/api/v1/accounts").status_code == 403
    assert client_for(outsider).get(f"/api/v1/accounts/{acme.pk}").status_code == 403

    client.force_login(marketer)
    assert client.get("/accounts/999999/").status_code == 404
    assert client_for(marketer).get("/api/v1/accounts/999999").status_code == 404
