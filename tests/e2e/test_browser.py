"""End to end, in a real browser: what marketers and scoring admins do in the pages.
Each page visited is saved as <name>.png (1280 pixels wide): in docs/screenshots with
E2E_SCREENSHOTS=1 (`make screenshots`), else in a scratch folder."""

import re
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from playwright.sync_api import Page, expect

from leadflow.leads.models import Lead, Stage
from leadflow.leads.services import ingest_key_create, source_get_or_create
from scoring.models import RescoreRun, RescoreState, RuleSet, RuleSetStatus
from tests.e2e.conftest import assert_no_console_errors, log_in, shoot
from tests.helpers import behaviour, fit

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_marketer_logs_in_and_sees_the_funnel(screen: Page, marketer, outsider, demo_data):
    log_in(screen, "marketer", screenshot="login")
    expect(screen.get_by_role("heading", name="Dashboard")).to_be_visible()
    funnel = screen.locator("section", has=screen.get_by_role("heading", name="Funnel"))
    expect(funnel.locator("svg.chart, svg.chart-phone").locator("visible=true").first).to_be_visible()
    created = Lead.objects.count()
    expect(
        screen.locator(".kpi", has=screen.get_by_text("Leads created in the period", exact=True)).locator(".value")
    ).to_have_text(re.compile(r"\d+"))
    became_sql = screen.locator(".kpi", has=screen.locator(".label", has_text=re.compile(r"^Became SQL")))
    expect(became_sql).to_contain_text("of leads created in the period")
    expect(screen.get_by_role("heading", name="MQLs and SQLs per day")).to_be_visible()
    expect(screen.get_by_role("heading", name="Score distribution")).to_be_visible()
    shoot(screen, "dashboard")

    screen.get_by_role("link", name="90 days").click()
    expect(
        screen.locator(".kpi", has=screen.get_by_text("Leads created in the period", exact=True)).locator(".value")
    ).to_have_text(str(created))

    screen.get_by_role("link", name="Leads", exact=True).click()
    expect(screen.get_by_role("heading", name="Leads", exact=True)).to_be_visible()
    expect(screen.locator("tbody tr")).to_have_count(50)
    shoot(screen, "leads")
    screen.get_by_label("SQL", exact=True).check()
    screen.get_by_role("button", name="Apply filters").click()
    sqls = Lead.objects.filter(stage=Stage.SQL).count()
    expect(screen.locator(".subtitle")).to_contain_text(f"{sqls} lead")
    assert_no_console_errors(screen)

    screen.goto("/api/docs/")  # Swagger UI runs under the same Content-Security-Policy
    expect(screen.get_by_role("heading", name=re.compile("LeadFlow API"))).to_be_visible()
    expect(screen.get_by_text("/api/v1/events", exact=True)).to_be_visible()
    shoot(screen, "api-docs")
    assert_no_console_errors(screen)

    screen.goto("/")
    screen.get_by_role("button", name="Log out").click()
    log_in(screen, "outsider")
    expect(screen.get_by_role("heading", name="You don't have access to this page")).to_be_visible()
    shoot(screen, "forbidden")


def test_a_new_install_explains_how_to_send_the_first_event(page: Page, marketer):
    log_in(page, "marketer")
    expect(page.get_by_role("heading", name=re.compile("No leads yet"))).to_be_visible()
    expect(page.locator("pre").nth(1)).to_contain_text("curl -X POST")
    shoot(page, "dashboard-empty")
    assert_no_console_errors(page)


def test_an_admin_edits_a_draft_rule_previews_and_publishes_it(screen: Page, admin, demo_data):
    screen.on("dialog", lambda dialog: dialog.accept())
    log_in(screen, "scoring_admin")
    screen.get_by_role("link", name="Scoring rules").click()
    default = screen.get_by_role("region", name="Published ruleset of Default")
    expect(default.get_by_text("Published · scores every lead")).to_be_visible()
    shoot(screen, "rules")

    default.get_by_role("button", name="Clone to draft").click()
    draft = RuleSet.objects.get(status=RuleSetStatus.DRAFT)  # versions are numbered across models
    v = f"v{draft.version}"
    expect(screen.get_by_text(f"Draft {v} created from v1")).to_be_visible()
    shoot(screen, "ruleset-draft")

    screen.get_by_role("link", name="Edit Pricing page views").click()
    expect(screen.get_by_label("Event type")).to_have_value("pricing_view")
    screen.get_by_label("Points", exact=True).fill("0")
    screen.get_by_label("Cap").fill("-30")
    screen.get_by_role("button", name="Save rule").click()
    expect(screen.get_by_text("Points must not be zero: delete the rule instead.")).to_be_visible()
    shoot(screen, "rule-form-errors")
    screen.get_by_label("Points", exact=True).fill("20")
    screen.get_by_label("Cap").fill("40")
    screen.get_by_role("button", name="Save rule").click()
    expect(screen.get_by_text("Saved the rule “Pricing page views”.")).to_be_visible()

    screen.get_by_role("link", name="+ Add fit rule").click()
    expect(screen.get_by_label("Event type")).to_be_hidden()  # only behaviour rules count events
    screen.get_by_label("Name").fill("Software companies")
    screen.get_by_label("Points", exact=True).fill("10")
    screen.get_by_label("Attribute").fill("industry")
    screen.get_by_label("Operator").select_option("eq")
    screen.get_by_label("Value").fill("Software")
    shoot(screen, "rule-form")
    screen.get_by_role("button", name="Add rule").click()
    expect(screen.get_by_text(f"Added the rule “Software companies” to draft {v}.")).to_be_visible()

    screen.get_by_role("link", name="Preview").click()
    expect(screen.get_by_role("heading", name=f"What if {v} were published?")).to_be_visible()
    expect(screen.locator("svg.chart, svg.chart-phone").locator("visible=true").first).to_be_visible()
    would_be_sql = int(
        screen.locator(".kpi", has=screen.get_by_text("Would newly become SQL", exact=True))
        .locator(".value")
        .inner_text()
    )
    shoot(screen, "preview")

    screen.get_by_role("link", name="Publish…").click()
    expect(screen.get_by_role("heading", name=re.compile(f"Publish {v}"))).to_be_visible()
    shoot(screen, "publish-confirm")
    sqls_before = Lead.objects.filter(stage=Stage.SQL).count()
    screen.get_by_role("button", name="Publish and rescore").click()
    expect(screen.get_by_role("heading", name=re.compile("Rescore finished"))).to_be_visible()
    expect(screen.locator("[data-field=percent]")).to_have_text("100%")
    shoot(screen, "rescore")
    assert_no_console_errors(screen)

    assert RuleSet.objects.get(version=draft.version).status == RuleSetStatus.PUBLISHED
    assert RuleSet.objects.get(version=1).status == RuleSetStatus.ARCHIVED
    assert Lead.objects.filter(stage=Stage.SQL).count() == sqls_before + would_be_sql


def test_a_running_rescore_updates_the_page_by_itself(page: Page, marketer, publish_ruleset):
    ruleset = publish_ruleset([behaviour("page_view", 1)])
    run = RescoreRun.objects.create(ruleset=ruleset, total=200, done=50, state=RescoreState.RUNNING)
    log_in(page, "marketer")
    page.goto(f"/rules/runs/{run.pk}/")
    expect(page.get_by_role("heading", name=re.compile("Rescoring every lead"))).to_be_visible()
    expect(page.locator("[data-field=percent]")).to_have_text("25%")
    shoot(page, "rescore-running")
    RescoreRun.objects.filter(pk=run.pk).update(done=150)
    expect(page.locator("[data-field=percent]")).to_have_text("75%")  # polled, no reload
    RescoreRun.objects.filter(pk=run.pk).update(done=200, state=RescoreState.DONE, finished_at=timezone.now())
    expect(page.get_by_role("heading", name=re.compile("Rescore finished"))).to_be_visible()
    assert_no_console_errors(page)


def test_events_posted_to_the_api_make_a_lead_an_sql_in_the_list_and_its_page(
    page: Page, live_server, marketer, publish_ruleset
):
    publish_ruleset(
        [
            fit("job_title", "contains", "director", 10),
            behaviour("page_view", 2, max_points=10),
            behaviour("pricing_view", 10),
            behaviour("demo_request", 30),
        ],
        mql=20,
        sql=50,
    )
    source, _ = source_get_or_create(name="Website")
    _key, secret = ingest_key_create(source=source)
    now = timezone.now()
    lead = {
        "email": "ada@analytical.example",
        "name": "Ada Lovelace",
        "company": "Analytical Engines",
        "job_title": "Director of Engineering",
        "utm_campaign": "spring-launch",
    }
    events = [
        {
            "event_id": f"ada-{n}",
            "type": kind,
            "occurred_at": (now - timedelta(hours=10 - n)).isoformat(),
            "lead": lead,
            "properties": properties,
        }
        for n, (kind, properties) in enumerate(
            [
                ("page_view", {"url": "/blog/scoring", "topic": "lead scoring"}),
                ("page_view", {"url": "/product", "topic": "lead scoring"}),
                ("pricing_view", {"url": "/pricing"}),
                ("page_view", {"url": "/customers", "topic": "sales handoff"}),
                ("demo_request", {"form": "demo"}),
            ]
        )
    ]
    response = requests.post(
        f"{live_server.url}/api/v1/events",
        json={"events": events},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 5
    ada = Lead.objects.get(email="ada@analytical.example")
    assert ada.stage == Stage.SQL  # scored after commit (tasks run in-process in tests)

    log_in(page, "marketer")
    page.goto("/leads/?stage=sql")
    row = page.locator("tbody tr", has_text="Ada Lovelace")
    expect(row).to_contain_text("SQL")
    expect(row).to_contain_text("56")
    shoot(page, "leads-sql")

    row.get_by_role("link", name="Ada Lovelace").click()
    expect(page.get_by_role("heading", name="Ada Lovelace")).to_be_visible()
    explanation = page.locator("section", has=page.get_by_role("heading", name="Why this score"))
    expect(explanation.locator("tbody tr")).to_have_count(4)
    expect(explanation.locator("tbody tr", has_text="demo_request rule")).to_contain_text("+30.00")
    expect(explanation.locator("tbody tr", has_text="page_view rule")).to_contain_text("3×")
    expect(explanation.locator("tfoot")).to_contain_text("56")
    expect(page.get_by_text("Intent shown and score 56.00 reached the SQL threshold")).to_be_visible()
    expect(page.locator("section", has_text="Interests")).to_contain_text("lead scoring")
    shoot(page, "lead-detail")

    page.get_by_label("Move to stage").select_option("mql")
    page.get_by_label("Reason").fill("Sales asked to wait for the budget cycle")
    page.get_by_role("button", name="Move lead").click()
    expect(page.get_by_text("Moved to MQL.")).to_be_visible()
    expect(page.locator("section", has_text="Stage history")).to_contain_text("Sales asked to wait")
    assert_no_console_errors(page)
