"""What sales confirmed (issue 17, item 11): accepting a handoff asks the rep which items of
a checklist admins configure they confirmed (default: budget, authority, need, timeline)
and an optional note; the answer is stored with the decision, shown to marketing on the
lead page and on the handoff page, in the handoff API, counted on the dashboard (the
items most often missing first), and available to the quality report."""

import importlib
import re
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from handoff import selectors, services
from handoff.models import ChecklistItem, Handoff, HandoffAction, HandoffEvent, HandoffStatus
from leadflow.leads.models import Stage
from leadflow.leads.privacy import ERASED, person_erase
from tests.factories import EventFactory, HandoffFactory, SqlLeadFactory, ruleset_through_services
from tests.helpers import behaviour, browser, client_for, count_queries, fit

CHECKLIST_API = "/api/v1/handoff-checklist"
CHECKLIST_PAGE = "/handoffs/checklist/"
BANT = ["budget", "authority", "need", "timeline"]


@pytest.fixture(autouse=True)
def _default_checklist(db):
    """The data migration's default items: a transactional test elsewhere flushes every
    table, migration data included, so each test here puts them back as the migration does."""
    from django.apps import apps

    importlib.import_module("handoff.migrations.0010_accept_checklist").add_default_items(apps, None)


def claimed(rep, **lead):
    handoff = HandoffFactory.create(lead=SqlLeadFactory.create(**lead)) if lead else HandoffFactory.create()
    return services.handoff_claim(handoff=handoff, user=rep)


def accept_api(rep, handoff, **body):
    return client_for(rep).post(f"/api/v1/handoffs/{handoff.public_id}/accept", body, format="json")


def handoff_page(handoff):
    return reverse("handoff-detail", args=[handoff.public_id])


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


# --- The checklist and who sets it ------------------------------------------------------------------
def test_the_default_checklist_is_budget_authority_need_timeline(rep):
    assert [(item.key, item.label, item.active) for item in selectors.checklist_items()] == [
        ("budget", "Budget", True),
        ("authority", "Authority", True),
        ("need", "Need", True),
        ("timeline", "Timeline", True),
    ]
    answer = client_for(rep).get(CHECKLIST_API)
    assert answer.status_code == 200
    assert [row["key"] for row in answer.json()] == BANT


def test_a_scoring_admin_adds_renames_reorders_and_deactivates_items_through_the_api(admin):
    client = client_for(admin)
    created = client.post(CHECKLIST_API, {"key": "champion", "label": "Champion"}, format="json")
    assert created.status_code == 201
    assert created.json() == {"key": "champion", "label": "Champion", "position": 50, "active": True}
    changed = client.patch(
        f"{CHECKLIST_API}/timeline", {"label": "Timeline (this quarter)", "position": 5}, format="json"
    )
    assert changed.status_code == 200
    assert changed.json() == {"key": "timeline", "label": "Timeline (this quarter)", "position": 5, "active": True}
    assert client.patch(f"{CHECKLIST_API}/need", {"active": False}, format="json").json()["active"] is False
    assert [row["key"] for row in client.get(CHECKLIST_API).json()] == [
        "timeline",
        "budget",
        "authority",
        "need",
        "champion",
    ]
    assert client.get(f"{CHECKLIST_API}/champion").json()["label"] == "Champion"
    assert client.get(f"{CHECKLIST_API}/nothing").status_code == 404


def test_staff_change_the_checklist_too(sales_manager):
    answer = client_for(sales_manager).patch(f"{CHECKLIST_API}/budget", {"label": "Budget approved"}, format="json")
    assert answer.status_code == 200
    assert ChecklistItem.objects.get(key="budget").label == "Budget approved"


@pytest.mark.parametrize("who", ["rep", "marketer"])
def test_reps_and_marketers_read_the_checklist_but_cannot_change_it(request, who):
    client = client_for(request.getfixturevalue(who))
    assert client.get(CHECKLIST_API).status_code == 200
    assert client.post(CHECKLIST_API, {"key": "champion", "label": "Champion"}, format="json").status_code == 403
    assert client.patch(f"{CHECKLIST_API}/budget", {"label": "Money"}, format="json").status_code == 403
    assert browser(request.getfixturevalue(who)).get(CHECKLIST_PAGE).status_code == 403
    assert not ChecklistItem.objects.filter(key="champion").exists()
    assert ChecklistItem.objects.get(key="budget").label == "Budget"


def test_the_services_refuse_a_checklist_change_by_a_rep(rep):
    with pytest.raises(PermissionDenied):
        services.checklist_item_create(actor=rep, key="champion", label="Champion")


def test_checklist_errors_are_field_errors_all_in_one_answer(admin):
    client = client_for(admin)
    answer = client.post(CHECKLIST_API, {"key": "Budget Now!", "label": "  ", "position": -1}, format="json")
    assert answer.status_code == 400
    errors = answer.json()
    assert set(errors) >= {"key", "label", "position"}, errors
    duplicate = client.post(CHECKLIST_API, {"key": "budget", "label": "Budget again"}, format="json")
    assert duplicate.status_code == 400 and "exists already" in str(duplicate.json()["key"])
    renamed = client.patch(f"{CHECKLIST_API}/budget", {"key": "money"}, format="json")
    assert renamed.status_code == 400 and "cannot change" in str(renamed.json()["key"])
    blank = client.patch(f"{CHECKLIST_API}/budget", {"label": ""}, format="json")
    assert blank.status_code == 400 and "label" in blank.json()
    assert ChecklistItem.objects.get(key="budget").label == "Budget"
    assert ChecklistItem.objects.count() == 4


def test_the_checklist_page_lets_a_scoring_admin_add_and_edit_items(admin):
    client = browser(admin)
    page = client.get(CHECKLIST_PAGE)
    assert page.status_code == 200
    content = page.content.decode()
    assert all(f'id="item-{key}"' in content for key in BANT)
    added = client.post(CHECKLIST_PAGE, {"key": "champion", "label": "Champion", "active": "on"}, follow=True)
    assert messages_of(added) == ["Added “Champion” to the accept checklist."]
    assert ChecklistItem.objects.get(key="champion").active
    saved = client.post(
        reverse("handoff-checklist-item", args=["need"]), {"label": "Need (pain named)", "position": "15"}, follow=True
    )
    assert messages_of(saved) == ["Saved “Need (pain named)”: reps are no longer asked about it."]
    need = ChecklistItem.objects.get(key="need")
    assert (need.label, need.position, need.active) == ("Need (pain named)", 15, False)


def test_the_checklist_page_answers_400_with_the_errors_on_their_fields(admin):
    client = browser(admin)
    refused = client.post(CHECKLIST_PAGE, {"key": "budget", "label": ""})
    assert refused.status_code == 400
    form = refused.context["new_form"]
    assert "exists already" in form.errors["key"][0]
    assert form.errors["label"] == ["Give the item a label: reps read it when they accept a lead."]
    bad_edit = client.post(reverse("handoff-checklist-item", args=["budget"]), {"label": "Budget", "position": "-3"})
    assert bad_edit.status_code == 400
    assert "The position is 0 or more" in bad_edit.content.decode()
    assert ChecklistItem.objects.get(key="budget").position == 10


# --- Accepting with what was confirmed ----------------------------------------------------------------
def test_accepting_through_the_api_stores_what_was_confirmed_with_the_labels_of_the_moment(rep, admin):
    handoff = claimed(rep)
    answer = accept_api(rep, handoff, confirmed=["need", "budget"], note="Budget signed off by the CFO.")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "accepted"
    assert body["confirmed"] == ["budget", "need"]
    assert body["checklist"] == [
        {"key": "budget", "label": "Budget", "confirmed": True},
        {"key": "authority", "label": "Authority", "confirmed": False},
        {"key": "need", "label": "Need", "confirmed": True},
        {"key": "timeline", "label": "Timeline", "confirmed": False},
    ]
    assert body["note"] == "Budget signed off by the CFO."
    handoff.refresh_from_db()
    assert handoff.unconfirmed == ["authority", "timeline"]
    event = HandoffEvent.objects.get(handoff=handoff, action=HandoffAction.ACCEPTED)
    assert event.details == {
        "confirmed": ["budget", "need"],
        "unconfirmed": ["authority", "timeline"],
        "note": "Budget signed off by the CFO.",
    }
    # A label changed afterwards leaves the decision as the rep saw it.
    services.checklist_item_update(actor=admin, item=ChecklistItem.objects.get(key="budget"), label="Money")
    detail = client_for(rep).get(f"/api/v1/handoffs/{handoff.public_id}").json()
    assert detail["checklist"][0] == {"key": "budget", "label": "Budget", "confirmed": True}


def test_an_unknown_checklist_key_is_a_400_field_error_and_the_handoff_stays_claimed(rep):
    handoff = claimed(rep)
    answer = accept_api(rep, handoff, confirmed=["budget", "bugdet"])
    assert answer.status_code == 400
    assert "bugdet" in answer.json()["confirmed"][0]
    assert "budget, authority, need, timeline" in answer.json()["confirmed"][0]
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.CLAIMED and handoff.checklist == []


def test_a_deactivated_item_is_neither_asked_nor_accepted(rep, admin):
    services.checklist_item_update(actor=admin, item=ChecklistItem.objects.get(key="authority"), active=False)
    handoff = claimed(rep)
    assert accept_api(rep, handoff, confirmed=["authority"]).status_code == 400
    answer = accept_api(rep, handoff, confirmed=["timeline"])
    assert [item["key"] for item in answer.json()["checklist"]] == ["budget", "need", "timeline"]


def test_accepting_without_a_body_confirms_nothing_and_says_so(rep):
    handoff = claimed(rep)
    answer = client_for(rep).post(f"/api/v1/handoffs/{handoff.public_id}/accept")
    assert answer.status_code == 200
    assert answer.json()["confirmed"] == []
    assert [item["confirmed"] for item in answer.json()["checklist"]] == [False] * 4


def test_the_handoff_page_asks_for_the_active_items_as_checkboxes_and_a_note(rep, admin):
    services.checklist_item_update(actor=admin, item=ChecklistItem.objects.get(key="need"), active=False)
    handoff = claimed(rep)
    content = browser(rep).get(handoff_page(handoff)).content.decode()
    assert "What you confirmed" in content
    for key in ("budget", "authority", "timeline"):
        assert f'<input type="checkbox" name="confirmed" value="{key}" id="confirm-{key}">' in content
    assert 'value="need"' not in content
    assert "You may accept with nothing ticked." in content
    assert 'name="note"' in content


def test_accepting_on_the_page_stores_the_ticked_items_and_the_note(rep):
    handoff = claimed(rep)
    response = browser(rep).post(
        handoff_page(handoff) + "accept",
        {"confirmed": ["budget", "timeline"], "note": "Buying in January."},
        follow=True,
    )
    assert messages_of(response) == [f"Accepted {handoff.lead.display_name}: the lead is yours now."]
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.ACCEPTED and handoff.lead.stage == Stage.ACCEPTED
    assert handoff.confirmed == ["budget", "timeline"] and handoff.note == "Buying in January."
    content = response.content.decode()  # back on the decided handoff's page
    assert "What sales confirmed" in content
    assert "✓</span> Budget" in content and "✗</span> Authority" in content


def test_the_queue_s_accept_opens_the_checklist_instead_of_accepting_with_nothing_confirmed(rep, admin):
    handoff = claimed(rep)
    accept_url = handoff_page(handoff) + "accept"
    content = browser(rep).get("/queue/").content.decode()
    assert f'href="{handoff_page(handoff)}#accept"' in content and ">Accept…</a>" in content
    assert f'action="{accept_url}"' not in content
    for item in ChecklistItem.objects.all():  # nothing left to confirm: one click accepts again
        services.checklist_item_update(actor=admin, item=item, active=False)
    content = browser(rep).get("/queue/").content.decode()
    assert f'action="{accept_url}"' in content and "#accept" not in content


def test_accept_and_next_records_the_confirmations_too(rep):
    handoff = claimed(rep)
    HandoffFactory.create(lead=SqlLeadFactory.create(name="Next One"))
    response = browser(rep).post(handoff_page(handoff) + "accept", {"confirmed": ["need"], "then": "next"}, follow=True)
    assert "Next in the queue: Next One. Claim it to work on it." in messages_of(response)
    handoff.refresh_from_db()
    assert handoff.confirmed == ["need"]


def test_an_unknown_key_on_the_page_answers_400_with_the_error_on_the_field(rep):
    handoff = claimed(rep)
    response = browser(rep).post(handoff_page(handoff) + "accept", {"confirmed": ["budget", "bugdet"]})
    assert response.status_code == 400
    assert response.context["accept_form"].errors["confirmed"] == [
        "“bugdet” is not on the accept checklist any more: reload the page and tick among the items it shows."
    ]
    content = response.content.decode()
    assert '<input type="checkbox" name="confirmed" value="budget" id="confirm-budget" checked>' in content
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.CLAIMED


def test_accepting_a_handoff_not_claimed_is_still_refused_with_a_message(rep):
    handoff = HandoffFactory.create()
    response = browser(rep).post(handoff_page(handoff) + "accept", {"confirmed": ["budget"]}, follow=True)
    assert messages_of(response) == ["Cannot accept this handoff: it is queued; claim it first."]
    assert Handoff.objects.get(pk=handoff.pk).status == HandoffStatus.QUEUED


def test_accepting_with_nothing_confirmed_is_allowed_and_the_pages_show_it_plainly(rep, marketer):
    handoff = claimed(rep)
    browser(rep).post(handoff_page(handoff) + "accept")
    handoff.refresh_from_db()
    assert handoff.status == HandoffStatus.ACCEPTED and handoff.confirmed == []
    for page in (handoff_page(handoff), reverse("lead-detail", args=[handoff.lead.public_id])):
        content = browser(marketer).get(page).content.decode()
        assert "Accepted with nothing confirmed." in content
        assert content.count("not confirmed</span>") == 4


# --- What marketing sees ------------------------------------------------------------------------------
def test_marketing_sees_what_sales_confirmed_on_the_lead_page(rep, marketer):
    handoff = claimed(rep, name="Ada Lovelace")
    services.handoff_accept(handoff=handoff, user=rep, confirmed=["budget", "authority", "need"], note="Signed NDA.")
    content = browser(marketer).get(reverse("lead-detail", args=[handoff.lead.public_id])).content.decode()
    assert "What sales confirmed" in content
    for label in ("Budget", "Authority", "Need"):
        assert f'✓</span> {label} <span class="muted small">confirmed</span>' in content
    assert '✗</span> Timeline <span class="muted small">not confirmed</span>' in content
    assert "Signed NDA." in content
    assert "Accepted with nothing confirmed." not in content


def test_a_handoff_accepted_before_the_checklist_shows_nothing_recorded(rep, marketer):
    handoff = claimed(rep)
    services.handoff_accept(handoff=handoff, user=rep)
    Handoff.objects.filter(pk=handoff.pk).update(checklist=[])  # as the migration leaves old handoffs
    content = browser(marketer).get(reverse("lead-detail", args=[handoff.lead.public_id])).content.decode()
    assert "Not recorded: accepted before sales was asked what it confirmed." in content
    answer = client_for(marketer).get(f"/api/v1/handoffs/{handoff.public_id}").json()
    assert (answer["confirmed"], answer["checklist"]) == ([], [])


def test_the_lead_handoffs_api_shows_what_sales_confirmed(rep, marketer):
    handoff = claimed(rep)
    services.handoff_accept(handoff=handoff, user=rep, confirmed=["timeline"])
    rows = client_for(marketer).get(f"/api/v1/leads/{handoff.lead.public_id}/handoffs").json()
    assert rows[0]["confirmed"] == ["timeline"]
    assert [item["key"] for item in rows[0]["checklist"]] == BANT


def test_the_lead_page_runs_as_many_queries_with_confirmations_as_without(rep, marketer, django_assert_max_num_queries):
    handoff = claimed(rep)
    url = reverse("lead-detail", args=[handoff.lead.public_id])
    client = browser(marketer)
    few = count_queries(client, url)
    services.handoff_accept(handoff=handoff, user=rep, confirmed=BANT, note="All four.")
    with django_assert_max_num_queries(few):
        assert "All four." in client.get(url).content.decode()


# --- The dashboard and the quality report ---------------------------------------------------------------
@pytest.fixture
def accepted_example(rep):
    """Four handoffs accepted today with a known checklist, one accepted before the checklist
    existed, one accepted long ago, one rejected."""
    answers = [BANT, ["budget", "need"], ["budget", "need", "authority"], []]
    accepted = []
    for confirmed in answers:
        accepted.append(services.handoff_accept(handoff=claimed(rep), user=rep, confirmed=confirmed))
    old_style = services.handoff_accept(handoff=claimed(rep), user=rep, confirmed=["budget"])
    Handoff.objects.filter(pk=old_style.pk).update(checklist=[])
    long_ago = services.handoff_accept(handoff=claimed(rep), user=rep)
    Handoff.objects.filter(pk=long_ago.pk).update(decided_at=timezone.now() - timedelta(days=200))
    services.handoff_reject(handoff=claimed(rep), user=rep, reason="no_budget")
    return accepted, old_style


def test_the_dashboard_counts_each_item_most_often_missing_first(marketer, accepted_example):
    response = browser(marketer).get(reverse("dashboard"))
    counted = response.context["confirmations"]
    assert (counted.accepted, counted.answered, counted.nothing_confirmed, counted.unrecorded) == (5, 4, 1, 1)
    assert [(rate.key, rate.missing, rate.asked, rate.missing_rate) for rate in counted.items] == [
        ("timeline", 3, 4, 75.0),
        ("authority", 2, 4, 50.0),
        ("budget", 1, 4, 25.0),
        ("need", 1, 4, 25.0),
    ]
    content = response.content.decode()
    assert "Timeline unconfirmed in <strong>75%</strong> of accepted SQLs" in content
    assert "Authority unconfirmed in <strong>50%</strong> of accepted SQLs" in content
    assert "1 of 4 accepted with nothing confirmed; 1 more accepted before sales was asked." in content


def test_the_dashboard_names_items_as_the_checklist_does_today(marketer, admin, accepted_example):
    services.checklist_item_update(actor=admin, item=ChecklistItem.objects.get(key="timeline"), label="Go-live date")
    content = browser(marketer).get(reverse("dashboard")).content.decode()
    assert "Go-live date unconfirmed in <strong>75%</strong> of accepted SQLs" in content


def test_the_dashboard_runs_as_many_queries_for_many_accepted_handoffs_as_for_one(
    rep, marketer, django_assert_max_num_queries
):
    services.handoff_accept(handoff=claimed(rep), user=rep, confirmed=["budget"])
    client = browser(marketer)
    few = count_queries(client, reverse("dashboard"))
    for _ in range(8):
        services.handoff_accept(handoff=claimed(rep), user=rep, confirmed=["need"])
    with django_assert_max_num_queries(few):
        client.get(reverse("dashboard"))


def test_the_dashboard_says_when_no_handoff_was_accepted_in_the_period(marketer):
    HandoffFactory.create()
    content = browser(marketer).get(reverse("dashboard")).content.decode()
    assert "No handoff accepted in the period." in content


def test_handoffs_checklists_gives_the_quality_report_each_accepted_handoffs_answers(rep, accepted_example):
    accepted, old_style = accepted_example
    queued = HandoffFactory.create()
    ids = [handoff.pk for handoff in accepted] + [old_style.pk, queued.pk]
    answered = selectors.handoffs_checklists(handoffs=Handoff.objects.filter(pk__in=ids))
    confirmed = {pk: {key for key, yes in answers.items() if yes} for pk, answers in answered.items()}
    assert confirmed == {
        accepted[0].pk: set(BANT),
        accepted[1].pk: {"budget", "need"},
        accepted[2].pk: {"budget", "need", "authority"},
        accepted[3].pk: set(),
    }, "old-style and queued handoffs are absent"
    assert list(answered[accepted[1].pk]) == BANT, "the items in the order asked"


# --- The quality report: what sales confirmed, by score band ---------------------------------------
def _accepted_at_score(rep, *, software: bool, confirmed=(), recorded=True):
    """A handoff accepted with ``confirmed``, whose lead scores 30 (a demo request) or 50 (and a
    software company) as of the handoff under ``quality_rules``."""
    lead = SqlLeadFactory.create(industry="Software" if software else "Retail")
    EventFactory.create(lead=lead, type="demo_request", occurred_at=timezone.now() - timedelta(days=2))
    handoff = services.handoff_accept(
        handoff=services.handoff_claim(handoff=HandoffFactory.create(lead=lead), user=rep),
        user=rep,
        confirmed=list(confirmed),
    )
    if not recorded:  # accepted before the checklist existed
        Handoff.objects.filter(pk=handoff.pk).update(checklist=[])
    return handoff


@pytest.fixture
def quality_rules(db):
    return ruleset_through_services(
        [behaviour("demo_request", 30), fit("industry", "eq", "Software", 20)], mql=20, sql=40
    )


@pytest.fixture
def confirmed_example(rep, admin, quality_rules):
    """Below 40: two accepted (budget and need; nothing), one rejected. From 40: one accepted
    with everything, one before the checklist existed, and one asked a new item, champion,
    added to the checklist in between, with budget and champion confirmed."""
    _accepted_at_score(rep, software=False, confirmed=["budget", "need"])
    _accepted_at_score(rep, software=False, confirmed=[])
    lead = SqlLeadFactory.create(industry="Retail")
    EventFactory.create(lead=lead, type="demo_request", occurred_at=timezone.now() - timedelta(days=2))
    services.handoff_reject(
        handoff=services.handoff_claim(handoff=HandoffFactory.create(lead=lead), user=rep), user=rep, reason="no_budget"
    )
    _accepted_at_score(rep, software=True, confirmed=BANT)
    _accepted_at_score(rep, software=True, confirmed=["budget"], recorded=False)
    services.checklist_item_create(actor=admin, key="champion", label="Champion")
    _accepted_at_score(rep, software=True, confirmed=["budget", "champion"])
    return quality_rules


def _confirmed_rows(part):
    return (
        part["name"],
        part["accepted"],
        part["answered"],
        [(item["key"], item["confirmed"], item["asked"], item["rate"]) for item in part["items"]],
    )


def test_the_quality_api_counts_what_sales_confirmed_by_score_band(marketer, confirmed_example):
    answer = client_for(marketer).get(f"/api/v1/rulesets/{confirmed_example.version}/quality?bands=0,40")

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert [_confirmed_rows(band) for band in body["confirmed_by_band"]] == [
        (
            "0.00–40.00",
            2,
            2,
            [
                ("budget", 1, 2, 0.5),
                ("authority", 0, 2, 0.0),
                ("need", 1, 2, 0.5),
                ("timeline", 0, 2, 0.0),
                ("champion", 0, 0, None),
            ],
        ),
        (
            "≥ 40.00",
            3,
            2,
            [
                ("budget", 2, 2, 1.0),
                ("authority", 1, 2, 0.5),
                ("need", 1, 2, 0.5),
                ("timeline", 1, 2, 0.5),
                ("champion", 1, 1, 1.0),
            ],
        ),
    ]
    assert _confirmed_rows(body["confirmed"]) == (
        "All",
        5,
        4,
        [
            ("budget", 3, 4, 0.75),
            ("authority", 1, 4, 0.25),
            ("need", 2, 4, 0.5),
            ("timeline", 1, 4, 0.25),
            ("champion", 1, 1, 1.0),
        ],
    )
    assert [band["name"] for band in body["bands"]] == [band["name"] for band in body["confirmed_by_band"]]
    assert body["confirmed"]["items"][0]["label"] == "Budget"


def test_the_quality_page_shows_what_sales_confirmed_by_score_band(marketer, admin, confirmed_example):
    services.checklist_item_update(actor=admin, item=ChecklistItem.objects.get(key="timeline"), label="Go-live date")

    response = browser(marketer).get(f"/rules/{confirmed_example.version}/quality/?bands=0,40")

    content = response.content.decode()
    assert "What sales confirmed" in content
    table = content[content.index('class="compact confirmed-by-band"') :]
    table = table[: table.index("</table>")]
    assert re.findall(r'<th scope="col"[^>]*>([^<]+)</th>', table) == [
        "Score",
        "Accepted",
        "With checklist",
        "Budget",
        "Authority",
        "Need",
        "Go-live date",  # named as the checklist names it today
        "Champion",
    ]
    rows = {
        row[0]: row[1:]
        for row in (
            [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", body)]
            for body in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]
        )
    }
    assert rows == {
        "0.00–40.00": ["2", "2", "50% 1 of 2", "0% 0 of 2", "50% 1 of 2", "0% 0 of 2", "— 0 of 0"],
        "≥ 40.00": ["3", "2", "100% 2 of 2", "50% 1 of 2", "50% 1 of 2", "50% 1 of 2", "100% 1 of 1"],
        "All": ["5", "4", "75% 3 of 4", "25% 1 of 4", "50% 2 of 4", "25% 1 of 4", "100% 1 of 1"],
    }
    assert "the other 1 were accepted before it existed" in content


def test_the_quality_page_says_when_no_accepted_handoff_has_a_checklist(rep, marketer, quality_rules):
    _accepted_at_score(rep, software=True, confirmed=["budget"], recorded=False)

    content = browser(marketer).get(f"/rules/{quality_rules.version}/quality/").content.decode()
    body = client_for(marketer).get(f"/api/v1/rulesets/{quality_rules.version}/quality").json()

    assert "The 1 accepted handoff of these predates the accept checklist: nothing recorded yet." in content
    assert 'class="compact confirmed-by-band"' not in content
    assert body["confirmed"] == {"name": "All", "accepted": 1, "answered": 0, "items": []}


def test_the_quality_report_reads_every_accepted_handoffs_checklist_in_one_query(rep, marketer, quality_rules):
    _accepted_at_score(rep, software=True, confirmed=["budget"])
    url = f"/api/v1/rulesets/{quality_rules.version}/quality"
    client = client_for(marketer)
    client.get(url)  # fills the cache of evaluations
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for index in range(6):
        _accepted_at_score(rep, software=bool(index % 2), confirmed=BANT[:index])
    client.get(url)
    with CaptureQueriesContext(connection) as many:
        answer = client.get(url)

    assert answer.json()["confirmed"]["answered"] == 7
    assert len(many) == len(few)
    assert len([query for query in many if '"checklist"' in query["sql"]]) == 1


def test_erasing_the_person_scrubs_the_accept_note_and_keeps_what_was_confirmed(rep, admin):
    handoff = claimed(rep, name="Ada Lovelace", email="ada@example.com")
    services.handoff_accept(handoff=handoff, user=rep, confirmed=["budget"], note="Ada's budget is 50k.")
    person_erase(lead=handoff.lead, actor=admin)
    handoff.refresh_from_db()
    assert handoff.note == ERASED and handoff.confirmed == ["budget"]
    event = HandoffEvent.objects.get(handoff=handoff, action=HandoffAction.ACCEPTED)
    assert event.details["note"] == ERASED and event.details["confirmed"] == ["budget"]
