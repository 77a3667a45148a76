"""Drill-downs of the leads list and the lead page (issue 17, item 9): campaign, owner and
creation filters (page and API), the dashboard's breakdown rows as links to the leads they
count, saved views, bulk actions on the selected rows, event types in words, the points
each event adds and the score's sparkline."""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from leadflow.leads.event_names import event_type_label
from leadflow.leads.importexport import EXPORT_COLUMNS
from leadflow.leads.models import Lead, SavedView, Stage, StageChange
from leadflow.leads.roles import SALES
from leadflow.leads.rollups import rollups_rebuild
from scoring import services as scoring_services
from scoring.models import Score
from tests.factories import EventFactory, LeadFactory, SourceFactory, UserFactory, default_model
from tests.helpers import behaviour, browser, client_for, count_queries
from tests.test_list_plans import full_sorts, plan_of, seeded_leads  # noqa: F401 - the plans' seeded table

pytestmark = pytest.mark.postgres

LIST = "/leads/"
API = "/api/v1/leads"


def page_emails(response):
    assert response.status_code == 200, response.content[:300]
    return {lead.email for lead in response.context["page"].object_list}


def api_emails(user, params):
    response = client_for(user).get(API, params)
    assert response.status_code == 200, response.content[:300]
    return {row["email"] for row in response.json()["results"]}


# --- Filters: campaign (UTM), owner, creation dates ----------------------------------------------
@pytest.fixture
def campaign_leads(db, rep):
    spring = LeadFactory.create(email="spring@x.test", utm_source="google", utm_medium="cpc", utm_campaign="spring")
    autumn = LeadFactory.create(email="autumn@x.test", utm_source="linkedin", utm_medium="social", utm_campaign="fall")
    owned = LeadFactory.create(email="owned@x.test", utm_source="google", utm_medium="email", owner=rep)
    return {"spring": spring, "autumn": autumn, "owned": owned}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"utm_source": "google"}, {"spring@x.test", "owned@x.test"}),
        ({"utm_medium": "social"}, {"autumn@x.test"}),
        ({"utm_campaign": "spring"}, {"spring@x.test"}),
        ({"utm_source": "google", "utm_medium": "email"}, {"owned@x.test"}),
        ({"owner": "rep"}, {"owned@x.test"}),
        ({"utm_campaign": "Spring"}, set()),  # exact values, as the dashboard groups them
    ],
)
def test_the_leads_page_and_the_api_filter_by_utm_fields_and_owner(marketer, campaign_leads, params, expected):
    assert page_emails(browser(marketer).get(LIST, params)) == expected
    assert api_emails(marketer, params) == expected


def test_the_leads_page_filters_by_creation_dates_and_the_api_by_created_after(marketer):
    now = timezone.now()
    LeadFactory.create(email="old@x.test", created_at=now - timedelta(days=40))
    LeadFactory.create(email="recent@x.test", created_at=now - timedelta(days=2))
    first = (timezone.localdate() - timedelta(days=5)).isoformat()
    last = timezone.localdate().isoformat()
    assert page_emails(browser(marketer).get(LIST, {"created_from": first, "created_to": last})) == {"recent@x.test"}
    old_only = {"created_to": (timezone.localdate() - timedelta(days=30)).isoformat()}
    assert page_emails(browser(marketer).get(LIST, old_only)) == {"old@x.test"}
    after = (now - timedelta(days=5)).isoformat()
    assert api_emails(marketer, {"created_after": after}) == {"recent@x.test"}


def test_reversed_creation_dates_and_an_unknown_owner_are_field_errors_on_the_page(marketer, campaign_leads):
    today = timezone.localdate()
    response = browser(marketer).get(
        LIST, {"created_from": today.isoformat(), "created_to": (today - timedelta(days=3)).isoformat(), "owner": "zed"}
    )
    form = response.context["form"]
    assert "swap them" in form.errors["created_to"][0]
    assert "choose an owner from the list" in form.errors["owner"][0]


def test_the_owner_filter_offers_the_sales_reps_by_name(marketer, rep, other_rep):
    rep.first_name, rep.last_name = "Ana", "Reyes"
    rep.save()
    page = browser(marketer).get(LIST).content.decode()
    assert '<option value="rep">Ana Reyes</option>' in page and '<option value="other_rep">other_rep</option>' in page


@pytest.mark.parametrize(
    ("filters", "sort", "index"),
    [
        ("utm_campaign=spring", "-created", "lead_created"),
        ("utm_source=google&utm_medium=cpc", "-activity", "lead_activity"),
        ("owner=rep", "-created", "lead_created"),
        ("utm_campaign=spring&created_from=2026-01-01&created_to=2026-12-31", "created", "lead_created"),
    ],
)
def test_the_first_page_of_a_filtered_list_is_still_read_from_its_orders_index(
    request, marketer, rep, client, filters, sort, index
):
    seeded = request.getfixturevalue("seeded_leads")
    tagged = [lead.pk for lead in seeded[::3]]
    Lead.objects.filter(pk__in=tagged).update(utm_source="google", utm_medium="cpc", utm_campaign="spring", owner=rep)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE leads_lead")
    client.force_login(marketer)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"{LIST}?{filters}&sort={sort}")
    assert response.context["page"].object_list
    pages = [q["sql"] for q in queries if q["sql"].startswith('SELECT "leads_lead"')]
    plan = plan_of(pages[0])
    assert f" using {index} " in plan, plan
    assert not full_sorts(plan), plan


# --- The dashboard's breakdowns lead to the leads they count -----------------------------------------
def test_a_breakdown_row_links_to_the_leads_list_of_the_same_cohort(marketer):
    web = SourceFactory.create(name="Web", slug="web")
    now = timezone.now()
    inside = [
        LeadFactory.create(email=f"in{n}@x.test", source=web, utm_campaign="spring", created_at=now - timedelta(days=n))
        for n in (1, 3)
    ]
    LeadFactory.create(email="other@x.test", source=web, utm_campaign="fall", created_at=now - timedelta(days=2))
    LeadFactory.create(email="before@x.test", source=web, utm_campaign="spring", created_at=now - timedelta(days=20))
    rollups_rebuild()  # the leads above were written behind the services' back
    client = browser(marketer)
    response = client.get(reverse("dashboard"), {"period": 7})
    campaign_link = response.context["campaign_links"]["spring"]
    source_link = response.context["source_links"]["Web"]
    body = response.content.decode()
    assert f'href="{campaign_link.replace("&", "&amp;")}"' in body
    first, last = (timezone.localdate() - timedelta(days=6)).isoformat(), timezone.localdate().isoformat()
    assert parse_qs(urlsplit(campaign_link).query) == {
        "created_from": [first],
        "created_to": [last],
        "utm_campaign": ["spring"],
    }
    # The linked list holds exactly the row's leads: the count the row shows.
    row = next(row for row in response.context["by_campaign"] if row.key == "spring")
    assert page_emails(client.get(campaign_link)) == {lead.email for lead in inside}
    assert row.leads == len(inside)
    assert page_emails(client.get(source_link)) == {"in1@x.test", "in3@x.test", "other@x.test"}


def test_with_a_source_chosen_a_campaign_row_keeps_the_source_and_a_row_without_a_key_has_no_link(marketer):
    web, ads = SourceFactory.create(name="Web", slug="web"), SourceFactory.create(name="Ads", slug="ads")
    LeadFactory.create(email="web@x.test", source=web, utm_campaign="spring")
    LeadFactory.create(email="ads@x.test", source=ads, utm_campaign="spring")
    LeadFactory.create(email="none@x.test", source=web, utm_campaign="")
    rollups_rebuild()
    client = browser(marketer)
    context = client.get(reverse("dashboard"), {"source": "web"}).context
    assert set(context["campaign_links"]) == {"spring"}  # the "(none)" row is not a link
    assert page_emails(client.get(context["campaign_links"]["spring"])) == {"web@x.test"}


# --- Saved views ---------------------------------------------------------------------------------------
def test_a_saved_view_keeps_only_the_lists_filters_and_is_listed_as_a_link(marketer, campaign_leads):
    client = browser(marketer)
    query = "utm_campaign=spring&stage=new&stage=mql&page=3&evil=1&q=&sort=-created"
    response = client.post(reverse("saved-view-create"), {"name": "  Spring   leads ", "query": query})
    view = SavedView.objects.get(user=marketer)
    assert (view.name, view.query) == ("Spring leads", "stage=new&stage=mql&utm_campaign=spring&sort=-created")
    assert response.status_code == 302 and response["Location"] == f"{LIST}?{view.query}"
    page = client.get(LIST).content.decode()
    assert f'href="{LIST}?{view.query.replace("&", "&amp;")}"' in page and "Spring leads" in page
    assert page_emails(client.get(response["Location"])) == {"spring@x.test"}


def test_a_saved_views_name_is_required_and_unique_per_person_with_field_errors(marketer, admin):
    SavedView.objects.create(user=marketer, name="Hot", query="stage=sql")
    SavedView.objects.create(user=admin, name="Mine", query="stage=mql")
    client = browser(marketer)
    taken = client.post(reverse("saved-view-create"), {"name": "Hot", "query": "stage=mql"})
    assert taken.status_code == 400
    assert "already have a view called “Hot”" in taken.context["save_form"].errors["name"][0]
    blank = client.post(reverse("saved-view-create"), {"name": " ", "query": "page=2"})
    assert blank.status_code == 400
    assert set(blank.context["save_form"].errors) == {"name"}
    unfiltered = client.post(reverse("saved-view-create"), {"name": "All", "query": "page=2&foo=1"})
    assert "Filter the list first" in unfiltered.context["save_form"].errors["query"][0]
    # Another person may use the same name.
    assert browser(admin).post(reverse("saved-view-create"), {"name": "Hot", "query": "stage=sql"}).status_code == 302
    assert SavedView.objects.filter(name="Hot").count() == 2


def test_saved_views_are_each_persons_own_and_anothers_cannot_be_deleted(marketer, admin):
    mine = SavedView.objects.create(user=marketer, name="Mine", query="stage=mql")
    theirs = SavedView.objects.create(user=admin, name="Theirs", query="stage=sql")
    client = browser(marketer)
    page = client.get(LIST).content.decode()
    assert "Mine" in page and "Theirs" not in page
    assert client.post(reverse("saved-view-delete", args=[theirs.pk])).status_code == 404
    assert SavedView.objects.filter(pk=theirs.pk).exists()
    response = client.post(reverse("saved-view-delete", args=[mine.pk]), {"query": "stage=new"})
    assert response.status_code == 302 and response["Location"] == f"{LIST}?stage=new"
    assert not SavedView.objects.filter(pk=mine.pk).exists()


# --- Bulk actions --------------------------------------------------------------------------------------
def bulk(client, leads, **fields):
    return client.post(reverse("lead-bulk"), {"leads": [str(lead.public_id) for lead in leads], **fields})


def test_a_bulk_stage_change_writes_a_stage_change_per_lead_with_the_reason(marketer):
    leads = LeadFactory.create_batch(3, stage=Stage.NEW)
    client = browser(marketer)
    response = bulk(client, leads[:2], action="stage", stage=Stage.MQL, reason="Met at the fair", query="stage=new")
    assert response.status_code == 302 and response["Location"] == f"{LIST}?stage=new"
    changes = StageChange.objects.filter(lead__in=leads).order_by("lead_id")
    assert [(c.lead_id, c.from_stage, c.to_stage, c.reason, c.actor) for c in changes] == [
        (lead.pk, Stage.NEW, Stage.MQL, "Met at the fair", marketer) for lead in leads[:2]
    ]
    for lead in leads:
        lead.refresh_from_db()
    assert [lead.stage for lead in leads] == [Stage.MQL, Stage.MQL, Stage.NEW]
    assert leads[0].mql_at is not None
    assert "Moved 2 leads to MQL" in client.get(LIST).content.decode()


def test_a_bulk_stage_change_without_a_reason_or_a_stage_says_so_by_field_and_writes_nothing(marketer):
    leads = LeadFactory.create_batch(2)
    response = bulk(browser(marketer), leads, action="stage", stage="", reason=" ")
    assert response.status_code == 400
    errors = response.context["bulk_form"].errors
    assert "Choose the stage" in errors["stage"][0] and "Give a reason" in errors["reason"][0]
    nothing = bulk(browser(marketer), [], action="stage", stage=Stage.MQL, reason="x")
    assert "Select at least one lead" in nothing.context["bulk_form"].errors["leads"][0]
    assert not StageChange.objects.exists()


def test_a_bulk_stage_change_with_an_invalid_lead_reports_it_and_moves_none(marketer):
    fresh = LeadFactory.create(stage=Stage.NEW, name="Fresh Lead")
    already = LeadFactory.create(stage=Stage.MQL, name="Already Mql")
    response = bulk(browser(marketer), [fresh, already], action="stage", stage=Stage.MQL, reason="Campaign")
    assert response.status_code == 400
    assert response.context["refused"] == [(already, "Already MQL: leave it out of the selection.")]
    body = response.content.decode()
    assert "Already Mql</a>: Already MQL" in body and "nothing was changed" in body
    # The selection is kept, ticked, for the next try.
    assert re.search(rf'value="{fresh.public_id}" form="bulk-form" aria-label="[^"]*" checked', body)
    fresh.refresh_from_db()
    assert fresh.stage == Stage.NEW and not StageChange.objects.exists()


def test_a_bulk_move_into_sql_opens_a_handoff_per_lead(marketer):
    from handoff.models import Handoff

    leads = LeadFactory.create_batch(2, stage=Stage.MQL)
    bulk(browser(marketer), leads, action="stage", stage=Stage.SQL, reason="Called us")
    assert Handoff.objects.filter(lead__in=leads).count() == 2


def test_sales_may_not_use_bulk_actions_nor_sees_them(rep, marketer):
    lead = LeadFactory.create(stage=Stage.NEW)
    client = browser(rep)
    assert bulk(client, [lead], action="stage", stage=Stage.MQL, reason="x").status_code == 403
    assert bulk(client, [lead], action="export").status_code == 403
    assert 'id="bulk-form"' not in client.get(LIST).content.decode()
    assert 'id="bulk-form"' in browser(marketer).get(LIST).content.decode()
    assert not StageChange.objects.exists()


def test_export_selected_is_the_exports_csv_of_exactly_the_selected_leads(admin):
    chosen = [LeadFactory.create(email="a@x.test", score=50), LeadFactory.create(email="=b@x.test")]
    LeadFactory.create(email="c@x.test")
    response = bulk(browser(admin), chosen, action="export")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="leads-selected-' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == list(EXPORT_COLUMNS)
    by_email = {row[EXPORT_COLUMNS.index("email")]: row for row in rows[1:]}
    assert set(by_email) == {"a@x.test", "'=b@x.test"}  # neutralised as the list's export does
    assert by_email["a@x.test"][EXPORT_COLUMNS.index("score")] == "50.00"


# --- The lead page: event names, points per event, score over time -----------------------------------
def test_event_types_read_in_words_and_unknown_ones_humanised():
    assert event_type_label("demo_request") == "Requested a demo"
    assert event_type_label("page_view") == "Viewed a page"
    assert event_type_label("trial_extended") == "Trial extended"
    assert event_type_label("partner-referral") == "Partner referral"
    assert event_type_label("") == "Event"


def test_the_lead_page_names_events_in_words(marketer):
    lead = LeadFactory.create()
    EventFactory.create(lead=lead, type="demo_request")
    EventFactory.create(lead=lead, type="webinar_watched_replay")
    page = browser(marketer).get(reverse("lead-detail", args=[lead.public_id])).content.decode()
    assert '<span class="event-type" title="demo_request">Requested a demo</span>' in page
    assert ">Webinar watched replay</span>" in page


def test_the_points_of_the_events_sum_to_the_behaviour_score_with_decay_and_caps(marketer, publish_ruleset):
    publish_ruleset(
        [
            behaviour("page_view", 10, max_points=12),  # four views: the cap cuts the last ones
            behaviour("demo_request", 30, decays=False),
            behaviour("email_open", 4),
        ],
        half_life=7,
    )
    lead = LeadFactory.create()
    now = timezone.now()
    for days in (20, 9, 3, 1):
        EventFactory.create(lead=lead, type="page_view", occurred_at=now - timedelta(days=days))
    EventFactory.create(lead=lead, type="demo_request", occurred_at=now - timedelta(days=30))
    EventFactory.create(lead=lead, type="email_open", occurred_at=now - timedelta(days=14))
    EventFactory.create(lead=lead, type="unrelated", occurred_at=now - timedelta(days=2))
    scoring_services.leads_score(lead_ids=[lead.pk])
    stored = Score.objects.get(lead=lead, model=default_model())
    response = browser(marketer).get(reverse("lead-detail", args=[lead.public_id]))
    events = {event.type + str(event.occurred_at.day): event for event in response.context["events"].object_list}
    points = [event.points for event in events.values() if event.points is not None]
    assert sum(points) == stored.behaviour and stored.behaviour > 0
    by_type = {event.type: event.points for event in events.values()}
    assert by_type["demo_request"] == Decimal(30)  # no decay on this rule
    assert by_type["unrelated"] is None  # behind no rule: no points shown
    views = sorted((e for e in events.values() if e.type == "page_view"), key=lambda e: e.occurred_at)
    # Oldest first: 10 points halved by age, until the cap of 25 leaves nothing for the newest.
    assert views[0].points < Decimal(10) and views[-1].points == Decimal(0)
    assert sum(e.points for e in views) == Decimal(12)
    assert by_type["email_open"] == pytest.approx(Decimal(1), abs=Decimal("0.01"))  # 4 points, two half-lives old
    assert f"+{by_type['demo_request']:.2f}</span>" in response.content.decode()


def test_the_sparkline_draws_every_recorded_score_then_the_current_one(marketer):
    lead = LeadFactory.create(score=72)
    model = default_model()
    now = timezone.now()
    for days, score, to_stage in ((10, "35.50", Stage.MQL), (4, "61.25", Stage.SQL)):
        StageChange.objects.create(
            lead=lead,
            from_stage=Stage.NEW,
            to_stage=to_stage,
            at=now - timedelta(days=days),
            score=Decimal(score),
            qualified_by=[model.slug],
        )
    StageChange.objects.create(lead=lead, from_stage=Stage.SQL, to_stage=Stage.MQL, reason="by hand")  # no score
    StageChange.objects.create(
        lead=lead, from_stage=Stage.NEW, to_stage=Stage.MQL, score=Decimal(99), qualified_by=["another-model"]
    )
    response = browser(marketer).get(reverse("lead-detail", args=[lead.public_id]))
    trend = response.context["score_trend"]
    assert [value for _, value in trend["points"]] == [Decimal("35.50"), Decimal("61.25"), Decimal("72.00")]
    body = response.content.decode()
    svg = re.search(r'<svg class="chart sparkline".*?</svg>', body, re.S).group(0)
    assert svg.count("<circle") == 3 and "<polyline" in svg
    assert "35.50; " in svg and ": 72.00 (now)" not in svg and "(now): 72.00" in svg  # the text alternative
    assert "3 scores, from 35.50 to 72.00" in body


def test_a_lead_never_scored_has_no_sparkline(marketer):
    lead = LeadFactory.create()
    response = browser(marketer).get(reverse("lead-detail", args=[lead.public_id]))
    assert response.context["score_trend"] is None
    assert "sparkline" not in response.content.decode()


# --- Query bounds --------------------------------------------------------------------------------------
def test_the_leads_list_with_bulk_actions_and_saved_views_runs_as_many_queries_for_55_leads_as_for_5(
    marketer, rep, django_assert_max_num_queries
):
    UserFactory.create(username="rep3", roles=[SALES])
    SavedView.objects.create(user=marketer, name="One", query="stage=new")
    LeadFactory.create_batch(5, utm_campaign="spring", owner=rep)
    client = browser(marketer)
    url = f"{LIST}?utm_campaign=spring&owner=rep&sort=-created"
    few = count_queries(client, url)
    LeadFactory.create_batch(50, utm_campaign="spring", owner=rep)
    SavedView.objects.create(user=marketer, name="Two", query="stage=mql")
    with django_assert_max_num_queries(few):
        response = client.get(url)
    assert len(response.context["page"].object_list) == 50


def test_the_lead_page_with_points_and_sparkline_runs_as_many_queries_for_many_events_and_changes(
    marketer, publish_ruleset, django_assert_max_num_queries
):
    publish_ruleset([behaviour("page_view", 5), behaviour("email_open", 2)])
    # Already an MQL: the page's nurture suggestion (for MQLs) is there in both requests.
    lead = LeadFactory.create(stage=Stage.MQL)
    EventFactory.create_batch(2, lead=lead)
    scoring_services.leads_score(lead_ids=[lead.pk])
    client = browser(marketer)
    url = reverse("lead-detail", args=[lead.public_id])
    few = count_queries(client, url)
    EventFactory.create_batch(30, lead=lead, type="email_open")
    for n in range(5):
        StageChange.objects.create(lead=lead, from_stage=Stage.NEW, to_stage=Stage.MQL, score=Decimal(n))
    scoring_services.leads_score(lead_ids=[lead.pk])
    with django_assert_max_num_queries(few):
        client.get(url)


def test_a_rep_is_offered_only_themselves_as_owner_and_learns_no_other_reps_name(rep, other_rep, campaign_leads):
    other_rep.first_name = "Bruno"
    other_rep.save()
    client = browser(rep)
    page = client.get(LIST).content.decode()
    assert '<option value="rep">Me</option>' in page and "Bruno" not in page
    assert page_emails(client.get(LIST, {"owner": "rep"})) == {"owned@x.test"}
