"""The web pages: who may open what, what they show, and that they stay safe (escaping,
CSRF, Content-Security-Policy) and fast (a constant number of queries)."""

import csv
import importlib
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from handoff.models import Handoff
from leadflow import selectors
from leadflow.db import median_in_python
from leadflow.leads import rollups
from leadflow.leads.models import Lead, Stage, StageChange
from leadflow.leads.rollups import rollups_rebuild
from scoring.models import RescoreRun, Rule, RuleSet, RuleSetStatus, Score
from tests.factories import EventFactory, LeadFactory, SourceFactory
from tests.helpers import (
    ESCAPED_SCRIPT,
    INLINE_HANDLER,
    INLINE_SCRIPT,
    INLINE_STYLE,
    SCRIPT,
    behaviour,
    browser,
    client_for,
    count_queries,
)


def published():
    """The published ruleset: the default one a new install gets (a transactional test
    elsewhere may have flushed the migration's copy)."""
    ruleset = RuleSet.objects.filter(status=RuleSetStatus.PUBLISHED).first()
    if ruleset is None:
        importlib.import_module("scoring.migrations.0002_default_ruleset").install(apps, None)
        ruleset = RuleSet.objects.get(status=RuleSetStatus.PUBLISHED)
    return ruleset


def draft_of(ruleset, **changes):
    """A draft copy of ``ruleset`` (what "Clone to draft" makes)."""
    from scoring import services

    clone = services.ruleset_clone(ruleset=ruleset, user=None)
    if changes:
        RuleSet.objects.filter(pk=clone.pk).update(**changes)
        clone.refresh_from_db()
    return clone


# --- Who may open what ---------------------------------------------------------------------
def read_pages(lead, ruleset):
    return [
        reverse("dashboard"),
        reverse("lead-list"),
        reverse("lead-export"),
        reverse("lead-detail", args=[lead.public_id]),
        reverse("ruleset-list"),
        reverse("ruleset-detail", args=[ruleset.version]),
    ]


def admin_pages(ruleset, rule):
    return [
        reverse("ruleset-edit", args=[ruleset.version]),
        reverse("rule-create", args=[ruleset.version]),
        reverse("rule-edit", args=[ruleset.version, rule.pk]),
        reverse("ruleset-preview", args=[ruleset.version]),
        reverse("ruleset-publish", args=[ruleset.version]),
    ]


def test_anonymous_visitors_are_sent_to_the_login_page(db):
    lead = LeadFactory.create()
    for url in read_pages(lead, published()):
        response = browser().get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_a_person_without_a_role_gets_403_on_every_page(outsider):
    lead = LeadFactory.create()
    draft = draft_of(published())
    rule = draft.rules.first()
    client = browser(outsider)
    for url in [*read_pages(lead, draft), *admin_pages(draft, rule)]:
        response = client.get(url)
        assert response.status_code == 403, url
    page = client.get(reverse("dashboard")).content.decode()
    assert "You don't have access to this page" in page
    assert client.post(reverse("ruleset-clone", args=[draft.version])).status_code == 403
    response = client.post(reverse("lead-stage-change", args=[lead.public_id]), {"stage": "mql", "reason": "x"})
    assert response.status_code == 403


@pytest.mark.parametrize("role", ["marketer", "rep", "admin"])
def test_every_role_reads_the_dashboard_leads_and_rules(db, role, request):
    user = request.getfixturevalue(role)
    lead = LeadFactory.create()
    client = browser(user)
    for url in read_pages(lead, published()):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("role", ["marketer", "rep"])
def test_only_scoring_admins_open_the_rule_editing_pages(db, role, request, admin):
    LeadFactory.create()
    draft = draft_of(published())
    rule = draft.rules.first()
    reader = browser(request.getfixturevalue(role))
    for url in admin_pages(draft, rule):
        assert reader.get(url).status_code == 403, url
    assert reader.post(reverse("ruleset-clone", args=[draft.version])).status_code == 403
    assert reader.post(reverse("rule-delete", args=[draft.version, rule.pk])).status_code == 403
    assert reader.post(reverse("ruleset-publish", args=[draft.version])).status_code == 403
    assert Rule.objects.filter(pk=rule.pk).exists()
    assert RuleSet.objects.get(pk=draft.pk).status == RuleSetStatus.DRAFT

    editor = browser(admin)
    for url in admin_pages(draft, rule):
        assert editor.get(url).status_code == 200, url


def test_readers_see_a_draft_without_edit_controls_and_admins_with_them(marketer, admin):
    draft = draft_of(published())
    url = reverse("ruleset-detail", args=[draft.version])
    as_marketer = browser(marketer).get(url).content.decode()
    assert "Edit settings" not in as_marketer and "Publish…" not in as_marketer
    assert "Clone to draft" not in as_marketer
    as_admin = browser(admin).get(url).content.decode()
    assert "Edit settings" in as_admin and "Publish…" in as_admin and "+ Add fit rule" in as_admin


def test_a_published_ruleset_is_read_only_even_for_admins(admin):
    ruleset = published()
    page = browser(admin).get(reverse("ruleset-detail", args=[ruleset.version])).content.decode()
    assert "Clone to draft" in page
    assert "Edit settings" not in page and "+ Add fit rule" not in page
    response = browser(admin).get(reverse("ruleset-edit", args=[ruleset.version]), follow=True)
    assert f"Ruleset v{ruleset.version} is published and cannot change: clone it to a new draft." in (
        response.content.decode()
    )


def test_only_marketing_and_admins_see_and_use_the_stage_form(rep, marketer):
    lead = LeadFactory.create()
    url = reverse("lead-detail", args=[lead.public_id])
    assert "Change stage" not in browser(rep).get(url).content.decode()
    assert "Change stage" in browser(marketer).get(url).content.decode()
    response = browser(rep).post(
        reverse("lead-stage-change", args=[lead.public_id]), {"stage": "mql", "reason": "Looks good"}
    )
    assert response.status_code == 403
    assert Lead.objects.get(pk=lead.pk).stage == Stage.NEW


def test_the_navigation_shows_the_pages_of_the_role(marketer, outsider):
    page = browser(marketer).get(reverse("lead-list")).content.decode()
    assert 'href="/leads/" aria-current="page"' in page
    assert ">Scoring rules<" in page and ">Admin<" not in page
    forbidden = browser(outsider).get(reverse("lead-list")).content.decode()
    assert ">Leads<" not in forbidden and "Log out" in forbidden


def test_an_unknown_lead_is_a_404_page(marketer):
    response = browser(marketer).get("/leads/00000000-0000-0000-0000-000000000000/")
    assert response.status_code == 404
    assert "This page does not exist" in response.content.decode()


def test_forms_refuse_a_post_without_the_csrf_token(marketer, admin):
    lead = LeadFactory.create()
    client = browser(marketer, enforce_csrf_checks=True)
    response = client.post(reverse("lead-stage-change", args=[lead.public_id]), {"stage": "mql", "reason": "Why"})
    assert response.status_code == 403
    assert Lead.objects.get(pk=lead.pk).stage == Stage.NEW
    draft = draft_of(published())
    response = browser(admin, enforce_csrf_checks=True).post(reverse("ruleset-publish", args=[draft.version]))
    assert response.status_code == 403
    assert RuleSet.objects.get(pk=draft.pk).status == RuleSetStatus.DRAFT


def test_every_form_of_the_pages_carries_a_csrf_token(admin):
    lead = LeadFactory.create()
    draft = draft_of(published())
    client = browser(admin)
    for url in [
        reverse("lead-detail", args=[lead.public_id]),
        reverse("ruleset-list"),
        reverse("ruleset-detail", args=[draft.version]),
        *admin_pages(draft, draft.rules.first()),
    ]:
        page = client.get(url).content.decode()
        post_forms = re.findall(r'<form[^>]*method="post"[^>]*>(.*?)</form>', page, flags=re.S)
        assert post_forms, url
        for form in post_forms:
            assert 'name="csrfmiddlewaretoken"' in form, url


# --- Safe output ---------------------------------------------------------------------------
def test_a_lead_named_like_a_script_renders_as_text_on_the_list_the_lead_page_and_the_dashboard(marketer):
    source = SourceFactory.create(name=f"Partner {SCRIPT}", slug="partner")
    lead = LeadFactory.create(
        name=SCRIPT,
        company=SCRIPT,
        job_title=SCRIPT,
        source=source,
        utm_campaign=SCRIPT,
        traits={"plan": SCRIPT},
        stage=Stage.SQL,
        mql_at=timezone.now(),
        sql_at=timezone.now(),
    )
    EventFactory.create(lead=lead, type="page_view", properties={"topic": SCRIPT, "url": SCRIPT})
    StageChange.objects.create(lead=lead, from_stage=Stage.MQL, to_stage=Stage.SQL, reason=SCRIPT)
    client = browser(marketer)
    for url in [reverse("lead-list"), reverse("lead-detail", args=[lead.public_id]), reverse("dashboard")]:
        page = client.get(url).content.decode()
        assert SCRIPT not in page, url
        assert ESCAPED_SCRIPT in page, url
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert f"Partner {ESCAPED_SCRIPT}" in dashboard  # the source in the breakdown and its filter


def test_a_lead_export_neutralises_cells_a_spreadsheet_would_run(marketer):
    LeadFactory.create(name='=HYPERLINK("http://evil.test","click")', email="formula@acme.test", score=Decimal("-5"))
    response = browser(marketer).get(reverse("lead-export"), {"q": "formula@"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1
    assert rows[0]["name"] == '\'=HYPERLINK("http://evil.test","click")'
    assert rows[0]["score"] == "-5.00"  # a number stays a number


def test_pages_send_a_strict_content_security_policy(marketer):
    response = browser(marketer).get(reverse("dashboard"))
    policy = response["Content-Security-Policy"]
    for directive in (
        "default-src 'self'",
        "img-src 'self' data:",
        "style-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ):
        assert directive in policy
    assert "unsafe-inline" not in policy
    assert browser().get(reverse("login"))["Content-Security-Policy"] == policy


def test_pages_need_no_inline_script_style_or_event_handler(admin):
    lead = LeadFactory.create(stage=Stage.SQL, sql_at=timezone.now(), mql_at=timezone.now())
    EventFactory.create(lead=lead, properties={"topic": "pricing"})
    draft = draft_of(published())
    run = RescoreRun.objects.create(ruleset=published(), total=1)
    client = browser(admin)
    urls = [
        *read_pages(lead, draft),
        *admin_pages(draft, draft.rules.first()),
        reverse("rescore-run", args=[run.pk]),
    ]
    for url in [u for u in urls if not u.endswith(".csv")]:
        page = client.get(url).content.decode()
        assert not INLINE_SCRIPT.search(page), url
        assert not INLINE_STYLE.search(page), url
        assert not INLINE_HANDLER.search(page), url
    login = browser().get(reverse("login")).content.decode()
    assert not INLINE_SCRIPT.search(login) and not INLINE_STYLE.search(login)


def test_the_api_docs_render_under_the_same_policy(marketer):
    response = browser(marketer).get(reverse("api-docs"))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="swagger-ui"' in page
    assert not INLINE_SCRIPT.search(page) and not INLINE_STYLE.search(page)
    assert "script-src 'self'" in response["Content-Security-Policy"]
    script = re.search(r'<script src="([^"]*script=[^"]*)"', page)
    assert script, page
    init = browser(marketer).get(script.group(1).replace("&amp;", "&"))
    assert init.status_code == 200
    assert init["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in init.content.decode()


# DRF's CSRF token travels in a JSON data block: a browser neither runs it nor checks it against the policy.
EXECUTABLE_INLINE_SCRIPT = re.compile(r'<script(?![^>]*\b(?:src=|type="application/json"))[^>]*>', re.I)


def test_the_browsable_api_needs_no_inline_script_or_style_and_keeps_the_strict_policy(admin):
    lead = LeadFactory.create()
    draft = draft_of(published())
    strict = browser(admin).get(reverse("dashboard"))["Content-Security-Policy"]
    client = browser(admin)
    urls = [
        reverse("api-leads") + "?ordering=-score",  # the filters dialog, with the current ordering ticked
        reverse("api-lead-detail", args=[lead.public_id]),
        reverse("api-rulesets"),
        reverse("api-ruleset", args=[draft.version]),
        reverse("api-rules", args=[draft.version]),  # the POST form of a rule
        reverse("api-rule", args=[draft.version, draft.rules.first().pk]),
        reverse("api-notifications"),
    ]
    for url in urls:
        response = client.get(url, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, url
        assert response["Content-Type"].startswith("text/html"), url
        assert response["Content-Security-Policy"] == strict, url
        page = response.content.decode()
        assert 'id="drf_csrf"' in page, url  # DRF's browsable page, not another one
        assert not EXECUTABLE_INLINE_SCRIPT.search(page), url
        assert not INLINE_STYLE.search(page), (url, INLINE_STYLE.search(page))
        assert not INLINE_HANDLER.search(page), url


# --- Constant query counts -----------------------------------------------------------------
def test_the_leads_list_runs_as_many_queries_for_60_leads_as_for_5(marketer, django_assert_max_num_queries):
    source = SourceFactory.create()
    LeadFactory.create_batch(5, source=source)
    client = browser(marketer)
    url = reverse("lead-list") + f"?source={source.slug}&stage=new&score_min=0&sort=-activity"
    few = count_queries(client, url)
    LeadFactory.create_batch(55, source=source)
    with django_assert_max_num_queries(few):
        response = client.get(url)
    assert len(response.context["page"].object_list) == 50
    assert count_queries(client, url + "&page=2") == few


def test_the_lead_page_runs_as_many_queries_for_40_events_as_for_2(marketer, django_assert_max_num_queries):
    lead = LeadFactory.create()
    EventFactory.create_batch(2, lead=lead, properties={"topic": "scoring"})
    client = browser(marketer)
    url = reverse("lead-detail", args=[lead.public_id])
    few = count_queries(client, url)
    EventFactory.create_batch(38, lead=lead, properties={"topic": "abm", "asset": "guide.pdf"})
    StageChange.objects.create(lead=lead, from_stage=Stage.NEW, to_stage=Stage.MQL, reason="test")
    with django_assert_max_num_queries(few):
        client.get(url)


def test_the_dashboard_runs_as_many_queries_for_many_leads_as_for_few(marketer, django_assert_max_num_queries):
    source = SourceFactory.create()
    LeadFactory.create_batch(3, source=source, mql_at=timezone.now())
    client = browser(marketer)
    few = count_queries(client, reverse("dashboard"))
    other = SourceFactory.create()
    LeadFactory.create_batch(40, source=other, mql_at=timezone.now(), sql_at=timezone.now(), utm_campaign="q4")
    with django_assert_max_num_queries(few):
        client.get(reverse("dashboard"))


def test_the_ruleset_pages_run_a_constant_number_of_queries(marketer, django_assert_max_num_queries):
    client = browser(marketer)
    few = count_queries(client, reverse("ruleset-list"))
    for _ in range(4):
        draft_of(published())
    with django_assert_max_num_queries(few):
        client.get(reverse("ruleset-list"))


# --- The dashboard ---------------------------------------------------------------------------
@pytest.fixture
def funnel_data(db):
    """Leads created over the last days with known stage dates, and one old lead."""
    now = timezone.now().replace(microsecond=0)
    web, ads = SourceFactory.create(name="Web", slug="web"), SourceFactory.create(name="Ads", slug="ads")

    def lead(source, created_days_ago, *, to_mql=None, to_sql=None, stage=Stage.NEW, campaign="", score=0):
        created = now - timedelta(days=created_days_ago)
        mql_at = created + to_mql if to_mql is not None else None
        sql_at = mql_at + to_sql if to_sql is not None and mql_at else None
        made = LeadFactory.create(
            source=source,
            created_at=created,
            mql_at=mql_at,
            sql_at=sql_at,
            stage=stage,
            utm_campaign=campaign,
            score=Decimal(score),
        )
        if mql_at:
            StageChange.objects.create(lead=made, from_stage=Stage.NEW, to_stage=Stage.MQL, at=mql_at)
        if sql_at:
            StageChange.objects.create(lead=made, from_stage=Stage.MQL, to_stage=Stage.SQL, at=sql_at)
        return made

    leads = {
        "new1": lead(web, 10, campaign="spring", score=5),
        "new2": lead(web, 9, score=12),
        "new3": lead(ads, 8, campaign="spring", score=15),
        "mql": lead(web, 7, to_mql=timedelta(days=1), stage=Stage.MQL, campaign="spring", score=45),
        "sql": lead(web, 6, to_mql=timedelta(days=3), to_sql=timedelta(hours=2), stage=Stage.SQL, score=65),
        "accepted": lead(ads, 6, to_mql=timedelta(days=5), to_sql=timedelta(hours=4), stage=Stage.ACCEPTED, score=80),
        "recycled": lead(web, 5, stage=Stage.RECYCLED, score=25),
        "old": lead(web, 120, to_mql=timedelta(days=1), stage=Stage.MQL, score=41),
    }
    accepted = leads["accepted"]
    StageChange.objects.create(lead=accepted, from_stage=Stage.SQL, to_stage=Stage.ACCEPTED, at=accepted.sql_at)
    rollups_rebuild()  # the rows above were written behind the services' back
    return leads


def test_the_dashboard_counts_the_funnel_of_leads_created_in_the_period(marketer, funnel_data):
    response = browser(marketer).get(reverse("dashboard"))
    funnel = response.context["funnel"]
    assert (funnel.created, funnel.mql, funnel.sql, funnel.accepted) == (7, 3, 2, 1)
    assert (funnel.recycled, funnel.disqualified) == (0 + 1, 0)
    assert funnel.mql_rate == pytest.approx(100 * 3 / 7)
    assert funnel.sql_rate == pytest.approx(100 * 2 / 3)
    assert funnel.accepted_rate == pytest.approx(50)
    page = response.content.decode()
    assert "43%" in page and "67%" in page and "50%" in page


def test_the_dashboard_medians_come_from_percentile_cont(funnel_data):
    medians = selectors.dashboard_median_times_recount(period=selectors.Period.last_days(30))
    assert medians.to_mql == timedelta(days=3)  # 1, 3 and 5 days
    assert medians.mql_to_sql == timedelta(hours=3)  # between 2 h and 4 h, interpolated


def test_the_dashboard_medians_from_the_rollups_are_within_their_documented_precision(marketer, funnel_data):
    medians = browser(marketer).get(reverse("dashboard")).context["medians"]
    assert abs(medians.to_mql / timedelta(days=3) - 1) <= rollups.DURATION_PRECISION
    assert abs(medians.mql_to_sql / timedelta(hours=3) - 1) <= rollups.DURATION_PRECISION


def test_the_python_median_of_sqlite_agrees_with_percentile_cont():
    assert median_in_python([timedelta(days=5), timedelta(days=1), timedelta(days=3)]) == timedelta(days=3)
    assert median_in_python([timedelta(hours=2), timedelta(hours=4)]) == timedelta(hours=3)
    assert median_in_python([]) is None


def test_the_dashboard_filters_by_source_and_custom_dates(marketer, funnel_data):
    client = browser(marketer)
    by_source = client.get(reverse("dashboard"), {"source": "ads"}).context["funnel"]
    assert (by_source.created, by_source.mql, by_source.sql, by_source.accepted) == (2, 1, 1, 1)
    today = timezone.localdate()
    custom = client.get(
        reverse("dashboard"),
        {"from": (today - timedelta(days=8)).isoformat(), "to": (today - timedelta(days=7)).isoformat()},
    )
    assert custom.context["preset"] is None
    assert custom.context["funnel"].created == 2  # created 8 and 7 days ago
    week = client.get(reverse("dashboard"), {"period": "7"}).context["funnel"]
    assert week.created == 3  # created 6, 6 and 5 days ago


def test_a_reversed_custom_period_is_explained_and_the_default_shown(marketer, funnel_data):
    today = timezone.localdate()
    response = browser(marketer).get(
        reverse("dashboard"), {"from": today.isoformat(), "to": (today - timedelta(days=3)).isoformat()}
    )
    page = response.content.decode()
    assert "The end date is before the start date: swap them." in page
    assert response.context["preset"] == 30


def test_the_dashboard_counts_mqls_and_sqls_per_day_from_the_stage_log(marketer, funnel_data):
    period = selectors.Period.last_days(30)
    per_day = selectors.dashboard_stage_entries_per_day(period=period)
    assert sum(per_day[Stage.MQL]) == 3 and sum(per_day[Stage.SQL]) == 2
    sql_day = funnel_data["sql"].sql_at.date()
    assert per_day[Stage.SQL][period.days.index(sql_day)] >= 1
    assert len(per_day[Stage.MQL]) == 30


def test_the_dashboard_breaks_leads_down_by_source_and_campaign(marketer, funnel_data):
    context = browser(marketer).get(reverse("dashboard")).context
    by_source = {row.key: (row.leads, row.mql, row.sql) for row in context["by_source"]}
    assert by_source == {"Web": (5, 2, 1), "Ads": (2, 1, 1)}
    by_campaign = {row.key: (row.leads, row.mql) for row in context["by_campaign"]}
    assert by_campaign == {"spring": (3, 1), "": (4, 2)}


def test_the_score_histogram_buckets_every_current_lead(funnel_data):
    histogram = selectors.dashboard_score_histogram()
    counts = dict(zip(histogram.lows, histogram.counts, strict=True))
    assert counts == {0: 1, 10: 2, 20: 1, 30: 0, 40: 2, 50: 0, 60: 1, 70: 0, 80: 1}


def test_the_dashboard_reports_sales_decisions_by_reject_reason(marketer, funnel_data):
    now = timezone.now()
    for lead, status, reason in [
        (funnel_data["accepted"], "accepted", ""),
        (funnel_data["recycled"], "rejected", "bad_timing"),
        (funnel_data["new1"], "rejected", "bad_timing"),
        (funnel_data["new2"], "rejected", "no_budget"),
    ]:
        Handoff.objects.create(lead=lead, status=status, reject_reason=reason, due_at=now, decided_at=now)
    Handoff.objects.create(lead=funnel_data["sql"], due_at=now - timedelta(hours=1))  # queued, overdue
    rollups_rebuild()  # the handoffs above were written behind the services' back
    response = browser(marketer).get(reverse("dashboard"))
    outcomes = response.context["outcomes"]
    assert (outcomes.stats.accepted, outcomes.stats.rejected) == (1, 3)
    assert [(reason, n) for reason, _label, n in outcomes.rejected_by_reason] == [("bad_timing", 2), ("no_budget", 1)]
    assert response.context["overdue"].count == 1
    assert "Bad timing" in response.content.decode()


def test_the_dashboards_source_filter_applies_to_the_sales_outcomes(marketer, funnel_data):
    now = timezone.now()
    for lead, status, reason in [
        (funnel_data["accepted"], "accepted", ""),  # Ads
        (funnel_data["new3"], "rejected", "no_budget"),  # Ads
        (funnel_data["recycled"], "rejected", "bad_timing"),  # Web
        (funnel_data["new1"], "rejected", "bad_timing"),  # Web
    ]:
        Handoff.objects.create(lead=lead, status=status, reject_reason=reason, due_at=now, decided_at=now)
    rollups_rebuild()  # the handoffs above were written behind the services' back
    response = browser(marketer).get(reverse("dashboard"), {"source": "ads"})
    outcomes = response.context["outcomes"]
    assert (outcomes.stats.total, outcomes.stats.accepted, outcomes.stats.rejected) == (2, 1, 1)
    assert [(reason, n) for reason, _label, n in outcomes.rejected_by_reason] == [("no_budget", 1)]
    assert "Handoffs created in the period of Ads leads" in response.content.decode()
    everyone = browser(marketer).get(reverse("dashboard")).context["outcomes"]
    assert (everyone.stats.total, everyone.stats.accepted, everyone.stats.rejected) == (4, 1, 3)


def test_a_new_install_shows_how_to_send_the_first_event(marketer):
    page = browser(marketer).get(reverse("dashboard")).content.decode()
    assert "No leads yet: create an ingest key and post your first event" in page
    assert "create_ingest_key" in page and "curl -X POST http://testserver/api/v1/events" in page


# --- The leads list ---------------------------------------------------------------------------
def test_the_leads_list_filters_searches_and_sorts(marketer):
    web = SourceFactory.create(name="Web", slug="web")
    now = timezone.now()
    ada = LeadFactory.create(
        name="Ada Lovelace",
        company="Analytical",
        stage=Stage.SQL,
        score=70,
        source=web,
        last_activity_at=now - timedelta(days=1),
    )
    grace = LeadFactory.create(
        name="Grace Hopper",
        company="Navy",
        stage=Stage.MQL,
        score=45,
        source=web,
        last_activity_at=now - timedelta(days=20),
    )
    LeadFactory.create(name="Linus", stage=Stage.NEW, score=5, source=web, last_activity_at=now)
    LeadFactory.create(name="Other source", stage=Stage.SQL, score=90)
    client = browser(marketer)

    def names(**params):
        response = client.get(reverse("lead-list"), params)
        return [lead.name for lead in response.context["page"].object_list]

    assert names(stage=["sql", "mql"], source="web") == ["Ada Lovelace", "Grace Hopper"]
    assert names(score_min="40", score_max="60") == ["Grace Hopper"]
    assert names(q="analytical") == ["Ada Lovelace"]
    assert names(q="HOPPER") == ["Grace Hopper"]
    since = (now - timedelta(days=5)).date().isoformat()
    assert set(names(active_from=since, source="web")) == {"Ada Lovelace", "Linus"}
    assert names(sort="score", source="web") == ["Linus", "Grace Hopper", "Ada Lovelace"]
    assert names(sort="-activity", source="web") == ["Linus", "Ada Lovelace", "Grace Hopper"]
    page = client.get(reverse("lead-list"), {"stage": "sql", "source": "web"}).content.decode()
    assert reverse("lead-detail", args=[ada.public_id]) in page
    assert reverse("lead-detail", args=[grace.public_id]) not in page
    assert "/leads/export.csv?stage=sql&amp;source=web" in page


def test_an_invalid_filter_is_explained_and_ignored(marketer):
    LeadFactory.create(score=10)
    response = browser(marketer).get(reverse("lead-list"), {"score_min": "50", "score_max": "20"})
    assert "The upper score must not be below the lower one: swap them." in response.content.decode()
    assert response.context["page"].paginator.count == 0  # score ≥ 50 still applies


def test_the_export_follows_the_current_filter(marketer):
    LeadFactory.create(email="keep@acme.test", stage=Stage.SQL, score=70)
    LeadFactory.create(email="drop@acme.test", stage=Stage.NEW, score=1)
    response = browser(marketer).get(reverse("lead-export"), {"stage": "sql"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["public_id", "email", "external_id"]
    assert [row[1] for row in rows[1:]] == ["keep@acme.test"]


# --- The lead page ----------------------------------------------------------------------------
def test_the_lead_page_explains_the_score_rule_by_rule(marketer, publish_ruleset, django_capture_on_commit_callbacks):
    from scoring import services

    publish_ruleset([behaviour("page_view", 2, max_points=3), behaviour("demo_request", 30)], mql=3, sql=30)
    lead = LeadFactory.create(name="Ada", job_title="CTO")
    for n in range(3):
        EventFactory.create(lead=lead, type="page_view", properties={"topic": "pricing" if n else "abm"})
    EventFactory.create(lead=lead, type="demo_request", properties={"asset": "demo-form"})
    with django_capture_on_commit_callbacks(execute=True):
        services.leads_score(lead_ids=[lead.pk])
    lead.refresh_from_db()
    stored = Score.objects.get(lead=lead)
    assert stored.score == Decimal("33") and lead.stage == Stage.SQL

    response = browser(marketer).get(reverse("lead-detail", args=[lead.public_id]))
    page = response.content.decode()
    matched = response.context["matched_rules"]
    assert [(rule["name"], rule["matched"], rule["capped"], rule["contribution"]) for rule in matched] == [
        ("page_view rule", 3, True, Decimal("3.00")),
        ("demo_request rule", 1, False, Decimal("30.00")),
    ]
    assert sum(rule["contribution"] for rule in matched) == stored.score
    assert "capped at 3.00" in page and "each page_view" in page and "+30.00" in page
    assert response.context["topics"] == [("pricing", 2), ("abm", 1)]
    assert response.context["assets"] == [("demo-form", 1)]
    assert "Intent shown and score 33.00 reached the SQL threshold" in page  # the stage history


def test_the_lead_page_paginates_its_event_timeline(marketer):
    lead = LeadFactory.create()
    EventFactory.create_batch(30, lead=lead)
    client = browser(marketer)
    first = client.get(reverse("lead-detail", args=[lead.public_id]))
    assert len(first.context["events"].object_list) == 25
    second = client.get(reverse("lead-detail", args=[lead.public_id]), {"events": 2})
    assert len(second.context["events"].object_list) == 5


def test_the_lead_page_shows_the_handoff_to_sales(marketer):
    lead = LeadFactory.create(stage=Stage.SQL, sql_at=timezone.now(), mql_at=timezone.now())
    Handoff.objects.create(lead=lead, due_at=timezone.now() + timedelta(hours=24))
    page = browser(marketer).get(reverse("lead-detail", args=[lead.public_id])).content.decode()
    assert "Sales handoff" in page and "Queued" in page


def test_a_marketer_moves_a_lead_by_hand_with_a_reason(marketer):
    lead = LeadFactory.create()
    client = browser(marketer)
    response = client.post(
        reverse("lead-stage-change", args=[lead.public_id]), {"stage": "mql", "reason": "Met at the fair"}
    )
    assert response.status_code == 302
    assert Lead.objects.get(pk=lead.pk).stage == Stage.MQL
    change = StageChange.objects.get(lead=lead)
    assert (change.from_stage, change.to_stage, change.actor, change.reason) == (
        "new",
        "mql",
        marketer,
        "Met at the fair",
    )
    page = client.get(response["Location"]).content.decode()
    assert "Moved to MQL." in page and "Met at the fair" in page and "marketer" in page


def test_a_stage_change_without_a_reason_is_refused_inline(marketer):
    lead = LeadFactory.create()
    response = browser(marketer).post(reverse("lead-stage-change", args=[lead.public_id]), {"stage": "mql"})
    assert response.status_code == 400
    assert escape("Give a reason for the stage change: it is shown in the lead's history.") in response.content.decode()
    assert not StageChange.objects.filter(lead=lead).exists()


def test_moving_a_lead_to_its_own_stage_is_refused_inline(marketer):
    lead = LeadFactory.create(stage=Stage.MQL)
    response = browser(marketer).post(
        reverse("lead-stage-change", args=[lead.public_id]), {"stage": "mql", "reason": "again"}
    )
    assert response.status_code == 400
    assert "Select a valid choice." in response.content.decode()


# --- Rule forms: the API's validation, the API's messages ------------------------------------------
def api_errors(user, version, payload, *, rule_id=None):
    url = f"/api/v1/rulesets/{version}/rules" + (f"/{rule_id}" if rule_id else "")
    client = client_for(user)
    response = client.patch(url, payload, format="json") if rule_id else client.post(url, payload, format="json")
    assert response.status_code == 400, response.content
    return {name: [str(m) for m in messages] for name, messages in response.json().items()}


def page_errors(response):
    return {name: list(errors) for name, errors in response.context["form"].errors.items()}


@pytest.mark.parametrize(
    ("form", "payload"),
    [
        (
            {"kind": "behaviour", "name": "Pricing", "points": "0", "event_type": "Pricing View", "max_points": "-5"},
            {"kind": "behaviour", "name": "Pricing", "points": "0", "event_type": "Pricing View", "max_points": "-5"},
        ),
        (
            {"kind": "behaviour", "name": "Cap", "points": "5", "event_type": "pricing_view", "max_points": "-5"},
            {"kind": "behaviour", "name": "Cap", "points": "5", "event_type": "pricing_view", "max_points": "-5"},
        ),
        (
            {"kind": "fit", "name": "Big", "points": "10", "attribute": "headcount", "operator": "gte", "value": "x"},
            {"kind": "fit", "name": "Big", "points": "10", "attribute": "headcount", "operator": "gte", "value": "x"},
        ),
        (
            {"kind": "fit", "name": "Tier", "points": "10", "attribute": "industry", "operator": "in", "value": ""},
            {"kind": "fit", "name": "Tier", "points": "10", "attribute": "industry", "operator": "in", "value": None},
        ),
        (
            {"kind": "fit", "name": "", "points": "ten", "attribute": "", "operator": "", "window_days": "7"},
            {"kind": "fit", "name": "", "points": "ten", "attribute": "", "operator": "", "window_days": 7},
        ),
        (
            {"kind": "behaviour", "name": "X", "points": "1", "event_type": "page_view", "attribute": "topic"},
            {"kind": "behaviour", "name": "X", "points": "1", "event_type": "page_view", "attribute": "topic"},
        ),
    ],
)
def test_the_rule_form_shows_the_apis_validation_messages(admin, form, payload):
    draft = draft_of(published())
    response = browser(admin).post(reverse("rule-create", args=[draft.version]), form)
    assert response.status_code == 400
    # The API names operators by their codes; the form by the labels of its menu (issue 17, item 5).
    form_words = {
        "Comparisons need a number.": "“≥” compares numbers: give a number, e.g. 50.",
        "'in' needs a non-empty list of texts or numbers.": (
            "“is one of” needs at least one value: separate values with commas."
        ),
    }
    api = api_errors(admin, draft.version, payload)
    expected = {name: [form_words.get(message, message) for message in messages] for name, messages in api.items()}
    assert page_errors(response) == expected
    for messages in expected.values():
        for message in messages:
            assert escape(message) in response.content.decode()
    assert draft.rules.count() == published().rules.count()


def test_an_admin_adds_edits_and_removes_a_rule_of_a_draft(admin):
    draft = draft_of(published())
    client = browser(admin)
    response = client.post(
        reverse("rule-create", args=[draft.version]),
        {
            "kind": "fit",
            "name": "Tier 1",
            "points": "12.5",
            "attribute": "industry",
            "operator": "in",
            "value": "software, fintech, 42",
        },
    )
    assert response.status_code == 302
    rule = draft.rules.get(name="Tier 1")
    assert (rule.points, rule.value, rule.max_points) == (Decimal("12.5"), ["software", "fintech", 42], None)

    form = client.get(reverse("rule-edit", args=[draft.version, rule.pk])).context["form"]
    assert form.initial["value"] == "software, fintech, 42" and form.initial["points"] == "12.5"
    response = client.post(
        reverse("rule-edit", args=[draft.version, rule.pk]),
        {
            "kind": "fit",
            "name": "Big company",
            "points": "8",
            "attribute": "company_size",
            "operator": "gte",
            "value": "500",
        },
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.name, rule.attribute, rule.operator, rule.value) == ("Big company", "company_size", "gte", 500)
    assert "Saved the rule “Big company”." in client.get(response["Location"]).content.decode()

    assert client.post(reverse("rule-delete", args=[draft.version, rule.pk])).status_code == 302
    assert not Rule.objects.filter(pk=rule.pk).exists()


def test_the_settings_form_shows_the_apis_messages_and_saves(admin):
    draft = draft_of(published())
    client = browser(admin)
    url = reverse("ruleset-edit", args=[draft.version])
    base = {"name": "Spring", "mql_threshold": "40", "sql_threshold": "30", "intent_event_types": "demo_request"}
    response = client.post(url, base)
    assert response.status_code == 400
    assert page_errors(response) == {"sql_threshold": ["The SQL threshold cannot be below the MQL threshold."]}
    response = client.post(url, {**base, "sql_threshold": "70", "intent_event_types": "Demo Request"})
    assert page_errors(response) == {
        "intent_event_types": ['A list of event type slugs, e.g. ["demo_request", "contact_request"].']
    }
    response = client.post(url, {**base, "mql_threshold": "0", "sql_threshold": "70", "decay_half_life_days": "-1"})
    assert page_errors(response) == {
        "mql_threshold": ["The MQL threshold must be above zero."],
        "decay_half_life_days": ["A half-life is a positive number of days; leave empty for no decay."],
    }
    response = client.post(
        url, {**base, "sql_threshold": "70", "intent_event_types": "demo_request, contact_request, trial_start"}
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert (draft.name, draft.sql_threshold, draft.decay_half_life_days) == ("Spring", Decimal("70"), None)
    assert draft.intent_event_types == ["contact_request", "demo_request", "trial_start"]


# --- Clone, preview, publish through the pages --------------------------------------------------
def test_an_admin_clones_previews_and_publishes_a_draft(admin, django_capture_on_commit_callbacks):
    close = LeadFactory.create(name="Almost MQL", job_title="Engineer", score=Decimal("35"))
    EventFactory.create(lead=close, type="demo_request", occurred_at=timezone.now() - timedelta(days=1))
    current = published()
    client = browser(admin)

    response = client.post(reverse("ruleset-clone", args=[current.version]))
    draft = RuleSet.objects.get(status=RuleSetStatus.DRAFT)
    assert response["Location"] == reverse("ruleset-detail", args=[draft.version])
    assert draft.rules.count() == current.rules.count()
    client.post(
        reverse("ruleset-edit", args=[draft.version]),
        {
            "name": "Lower bar",
            "mql_threshold": "20",
            "sql_threshold": "25",
            "intent_event_types": "demo_request, contact_request",
            "decay_half_life_days": "30",
        },
    )

    preview = client.get(reverse("ruleset-preview", args=[draft.version]))
    assert preview.status_code == 200
    data = preview.context["preview"]
    assert data["counts"]["enter_mql"] == 1 and data["counts"]["enter_sql"] == 1
    assert [row["name"] for row in data["enter_sql"]] == ["Almost MQL"]
    page = preview.content.decode()
    assert "Would newly become SQL" in page and "Almost MQL" in page and '<svg class="chart"' in page
    assert Lead.objects.get(pk=close.pk).stage == Stage.NEW  # a preview writes nothing

    confirm = client.get(reverse("ruleset-publish", args=[draft.version])).content.decode()
    assert f"Publish v{draft.version}" in confirm and f"v{current.version}" in confirm
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("ruleset-publish", args=[draft.version]))
    run = RescoreRun.objects.get(ruleset=draft)
    assert response["Location"] == reverse("rescore-run", args=[run.pk])
    assert RuleSet.objects.get(pk=draft.pk).status == RuleSetStatus.PUBLISHED
    assert RuleSet.objects.get(pk=current.pk).status == RuleSetStatus.ARCHIVED
    assert Lead.objects.get(pk=close.pk).stage == Stage.SQL

    progress = client.get(response["Location"]).content.decode()
    assert "Rescore finished" in progress and 'http-equiv="refresh"' not in progress


def test_a_running_rescore_page_refreshes_without_javascript_and_polls_with_it(marketer):
    run = RescoreRun.objects.create(ruleset=published(), total=10, done=4, state="running")
    page = browser(marketer).get(reverse("rescore-run", args=[run.pk])).content.decode()
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in page
    assert f'data-poll-url="/api/v1/rescore-runs/{run.pk}"' in page
    assert 'value="40"' in page  # the progress bar
    api = browser(marketer).get(f"/api/v1/rescore-runs/{run.pk}")  # what the script polls, with the session
    assert api.status_code == 200 and api.json()["percent"] == 40


def test_publishing_a_draft_without_rules_explains_what_to_do(admin):
    draft = draft_of(published())
    draft.rules.all().delete()
    response = browser(admin).post(reverse("ruleset-publish", args=[draft.version]), follow=True)
    assert "Add at least one rule before publishing." in response.content.decode()
    assert RuleSet.objects.get(pk=draft.pk).status == RuleSetStatus.DRAFT


def test_an_admin_deletes_a_draft_but_not_a_published_ruleset(admin):
    draft = draft_of(published())
    client = browser(admin)
    assert client.post(reverse("ruleset-delete", args=[draft.version])).status_code == 302
    assert not RuleSet.objects.filter(pk=draft.pk).exists()
    current = published()
    response = client.post(reverse("ruleset-delete", args=[current.version]), follow=True)
    assert "cannot change: clone it to a new draft" in response.content.decode()
    assert RuleSet.objects.filter(pk=current.pk).exists()


def test_the_rulesets_page_highlights_the_published_one(marketer):
    draft_of(published(), name="Experiment")
    page = browser(marketer).get(reverse("ruleset-list")).content.decode()
    assert "Published · scores every lead" in page
    assert "Experiment" in page and "Drafts" in page


# --- Charts -------------------------------------------------------------------------------------
def test_charts_escape_their_labels_and_need_no_style_attribute():
    from datetime import date

    from leadflow import charts

    svgs = [
        charts.bar_chart(chart_id="bars", title=SCRIPT, labels=[SCRIPT, "b"], series=[charts.Series(SCRIPT, [1, 2])]),
        charts.histogram(
            chart_id="hist",
            title="t",
            lows=[0, 10],
            width=10,
            series=[charts.Series(SCRIPT, [3, 0])],
            markers=[(10, SCRIPT)],
        ),
        charts.line_chart(
            chart_id="line",
            title="t",
            days=[date(2026, 1, 1), date(2026, 1, 2)],
            series=[charts.Series(SCRIPT, [0, 4]), charts.Series("SQL", [1, 1], "series-2")],
        ),
        charts.funnel_chart(chart_id="funnel", title="t", steps=[(SCRIPT, 10), ("MQL", 0)], notes=["", SCRIPT]),
    ]
    for svg in svgs:
        assert svg.startswith('<svg class="chart"') and svg.endswith("</svg>")
        assert SCRIPT not in svg and ESCAPED_SCRIPT in svg
        assert "style=" not in svg
        assert 'role="img"' in svg


def test_each_chart_has_a_phone_drawing_whose_text_is_not_shrunk_and_whose_ids_are_its_own():
    """A 640-unit drawing squeezed onto a phone's 290 px card draws 11-unit text at 5 px: each
    chart also has a 280-unit drawing (shown by the CSS on phones) with its own ids."""
    import re

    from leadflow import charts

    svg = charts.bar_chart(
        chart_id="bars", title="t", labels=[f"d{i}" for i in range(30)], series=[charts.Series("a", [1] * 30)]
    )
    wide, phone = svg.split("</svg>")[:2]
    assert 'class="chart" viewBox="0 0 640 ' in wide and 'class="chart-phone" viewBox="0 0 280 ' in phone
    assert (
        'id="bars-t"' in wide
        and 'id="bars-phone-t"' in phone
        and 'aria-labelledby="bars-phone-t bars-phone-d"' in phone
    )
    assert len(re.findall(r'class="tick"[^>]*text-anchor="middle"', phone)) < len(
        re.findall(r'class="tick"[^>]*text-anchor="middle"', wide)
    )
    funnel = charts.funnel_chart(chart_id="f", title="t", steps=[("New leads", 10), ("MQL", 5)], notes=["", "· 50 %"])
    assert funnel.count("<svg") == 2 and 'id="f-phone-t"' in funnel


def test_chart_axes_use_round_ticks():
    from leadflow.charts import nice_ticks

    assert nice_ticks(0) == [0, 1]
    assert nice_ticks(7) == [0, 2, 4, 6, 8]
    assert nice_ticks(180) == [0, 50, 100, 150, 200]


@pytest.mark.postgres
def test_the_dashboards_live_parts_read_their_first_rows_from_indexes(marketer):
    """The overdue handoffs (how many, the oldest), the outcomes' breaches not yet flagged and
    the latest SQLs are counted live: each query is served by an index, with sequential scans
    and sorts priced out (a plan that still scans or sorts has no index to serve it)."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from handoff import rollups as handoff_rollups
    from tests.factories import HandoffFactory

    now = timezone.now()
    source = SourceFactory.create()
    for hours in (-30, -3, 2, 20):
        HandoffFactory.create(
            lead__source=source, created_at=now - timedelta(hours=40), due_at=now + timedelta(hours=hours)
        )
    period = selectors.Period.last_days(30)
    with CaptureQueriesContext(connection) as captured:
        selectors.dashboard_overdue_handoffs(user=marketer)
        selectors.dashboard_overdue_handoffs(user=marketer, source=source)
        selectors.dashboard_recent_sqls(source=None)
        handoff_rollups.handoff_outcomes(first=period.first, last=period.last, source_id=source.pk)
    reads = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].startswith("SELECT") and "handoff" in q["sql"] or "sql_at" in q["sql"]
    ]
    assert len(reads) >= 5
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        for sql in reads:
            if '"handoff_handoffrollup"' in sql or '"handoff_handoffdurationrollup"' in sql:
                continue  # the rollups: a few rows per day, read by their (day, source) index
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(line for (line,) in cursor.fetchall())
            # The big tables; the default scoring model's lookup (alias U0) reads a few rows.
            big = re.search(r"Seq Scan on (handoff_handoff|leads_lead|scoring_score)\b", plan)
            sorts = [key for key in re.findall(r"Sort Key: (.*)", plan) if not key.startswith("u0.")]
            assert not big and not sorts, f"{sql}\n{plan}"
