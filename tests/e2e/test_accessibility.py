"""Accessibility, end to end: axe-core (the engine bundled, pinned, by axe-playwright-python:
no network at test time) runs in Chromium on every page each role uses, on a desktop
(1366 × 900) and on a phone (390 × 844). No serious or critical violation is allowed.

axe's script is evaluated through the DevTools protocol, which the page's
Content-Security-Policy does not govern: the pages keep their strict policy."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from handoff.models import Handoff, HandoffStatus, Notification, NotificationKind
from leadflow.leads import nurture
from leadflow.leads.models import Account, Lead, SegmentDrop, Stage
from leadflow.leads.segment import segment_ingest
from scoring.models import RescoreRun, RuleSet, RuleSetStatus
from tests.e2e.conftest import VIEWPORTS, browser_tab, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DEMO_PASSWORDS = {"marketer": "leadflow-marketer", "rep": "leadflow-rep", "admin": "leadflow-admin"}
BLOCKING = ("serious", "critical")
AXE = Axe()
# Pages audited only once they show what they are audited for: loaded in the background, or
# a state the demo's data must have (a selector each; the page fails the test without it).
READY = {
    "preview": "[data-backtest-body] table.backtest",  # the backtest, loaded by app.js
    "quality": "table.confirmed-by-band",  # with data: every section of the report, sales' confirmations too
    "handoffs-manager": "table.overview form[action$='/release'] button",  # a sales manager's forms
    "nurture-segment": "table",
}
# Pages that answer something other than 200 on purpose.
STATUS = {"not-found": 404}
# Anyone's pages, before logging in.
ANONYMOUS_PAGES = {"login": "/login/", "password-reset": "/password/reset/", "not-found": "/no-such-page/"}


def pages_of(role: str) -> dict[str, str]:
    """The pages the role works with, on the demo's data (each answers 200 to that role)."""
    lead = Lead.objects.filter(stage=Stage.SQL).order_by("created_at").first()
    queued = Handoff.objects.filter(status=HandoffStatus.QUEUED).order_by("-priority").first()
    ruleset = RuleSet.objects.get(status=RuleSetStatus.PUBLISHED, model__slug="default")
    account = Account.objects.order_by("pk").first()
    assert lead and queued and account, "the demo has SQLs, queued handoffs and accounts"
    pages = {
        "dashboard": "/",
        "leads": "/leads/",
        "leads-filtered": "/leads/?stage=sql&sort=-score",
        "lead": f"/leads/{lead.public_id}/",
        "accounts": "/accounts/",
        "account": f"/accounts/{account.pk}/",
        "rules": "/rules/",
        "ruleset": f"/rules/{ruleset.version}/",
        "notifications": "/notifications/",
        "handoff": f"/queue/{queued.public_id}/",
        "password-change": "/password/change/",
        "not-found": "/no-such-page/",  # with the navigation of a person logged in
    }
    if role in ("marketer", "admin"):
        pages |= {"handoffs": "/handoffs/", "quality": f"/rules/{ruleset.version}/quality/"} | import_pages()
        # Issue 15: the Segment drop log, the merge's confirmation naming both leads, visitors listed.
        duplicate = Lead.objects.filter(email__isnull=False).exclude(pk=lead.pk).order_by("pk").first()
        assert duplicate and duplicate.source
        if not SegmentDrop.objects.exists():  # the drop log audited with a row, not its empty state
            segment_ingest(source=duplicate.source, messages=[{"type": "track", "userId": "u-1", "messageId": "a11y"}])
        pages |= {
            "segment-drops": "/segment/drops/",
            "lead-merge": f"/leads/{lead.public_id}/merge?other={duplicate.email}",
            "leads-visitors": "/leads/?visitors=include",
        }
    if role == "marketer":
        pages |= nurture_pages()
    if role == "rep":
        pages |= {"queue": "/queue/"}
        pages.pop("rules"), pages.pop("ruleset")  # reps do not read the scoring rules
    if role == "admin":
        pages |= {
            "new-model": "/rules/models/new",
            "checklist": "/handoffs/checklist/",
            "lead-erase": f"/leads/{lead.public_id}/erase",
        }
        pages |= {"handoffs-manager": pages.pop("handoffs")}  # the demo's admin is staff: a sales manager
        run = RescoreRun.objects.order_by("-pk").first()
        if run is not None:  # publishing the demo's rulesets started rescore runs
            pages |= {"rescore-run": f"/rules/runs/{run.pk}/"}
    return pages


def nurture_pages() -> dict[str, str]:
    """The nurture segments and the biggest one's leads."""
    segments = nurture.nurture_segments().segments
    assert segments, "the demo has nurture segments"
    biggest = max(segments, key=lambda segment: segment.leads)
    return {"nurture": "/nurture/", "nurture-segment": f"/nurture/{biggest.key}/"}


def unread_notification_for(username: str) -> None:
    """An unread notification, so that the navigation shows its count badge: whether the
    demo left one for the role depends on the time the demo's handoffs were made."""
    from django.contrib.auth import get_user_model

    Notification.objects.get_or_create(
        recipient=get_user_model()._default_manager.get(username=username),
        event_key="accessibility-audit",
        defaults={"kind": NotificationKind.SLA_BREACH, "title": "A handoff is overdue", "link": "/queue/"},
    )


def claimed_handoff_of(username: str) -> Handoff:
    """A handoff the rep holds: its page shows the accept and reject forms."""
    from django.contrib.auth import get_user_model

    rep = get_user_model()._default_manager.get(username=username)
    handoff = Handoff.objects.filter(status=HandoffStatus.QUEUED).order_by("priority").first()
    assert handoff
    now = timezone.now()
    Handoff.objects.filter(pk=handoff.pk).update(
        status=HandoffStatus.CLAIMED, claimed_by=rep, claimed_at=now, claim_expires_at=now + timedelta(hours=4)
    )
    return handoff


def import_pages() -> dict[str, str]:
    """The import pages: the list, the upload, a draft's mapping and preview, a finished
    import with a rejected row."""
    from leadflow.leads import imports

    export = (
        b"Email,First Name,Last Name,Company Name,Job Title,Number of Employees,Country/Region,Lifecycle Stage\n"
        b"a11y-import@example.com,Ada,Lovelace,Analytical Engines,CTO,51-200,United Kingdom,Lead\n"
        b"not-an-email,Alan,Turing,Bletchley,Researcher,lots,United Kingdom,Subscriber\n"
    )
    draft = imports.import_job_create(user=None, filename="hubspot.csv", data=export, source_name="HubSpot")
    done = imports.import_job_create(user=None, filename="done.csv", data=export, source_name="HubSpot")
    imports.import_job_start(job=done)
    imports.import_job_execute(job_id=done.pk)
    return {
        "imports": "/imports/",
        "import-new": "/imports/new",
        "import-map": f"/imports/{draft.public_id}/map",
        "import-done": f"/imports/{done.public_id}/",
    }


def draft_pages() -> dict[str, str]:
    """A draft ruleset's pages: its rules can be edited, previewed, and a rule added."""
    from scoring.services import ruleset_clone

    published = RuleSet.objects.get(status=RuleSetStatus.PUBLISHED, model__slug="default")
    draft = ruleset_clone(ruleset=published, user=None)
    rule = draft.rules.order_by("pk").first()
    assert rule
    return {
        "draft": f"/rules/{draft.version}/",
        "draft-edit": f"/rules/{draft.version}/edit",
        "preview": f"/rules/{draft.version}/preview",
        "publish": f"/rules/{draft.version}/publish",
        "rule-new": f"/rules/{draft.version}/rules/new",
        "rule-edit": f"/rules/{draft.version}/rules/{rule.pk}/edit",
    }


def webhook_pages() -> dict[str, str]:
    """An endpoint with a delivery being retried: the webhooks page, the endpoint's page and
    its delivery log."""
    from handoff.models import WebhookDelivery, WebhookSubscription

    subscription = WebhookSubscription.objects.create(
        name="CRM", url="https://93.184.216.34/hooks/crm", secret="whsec_e2e", events=["lead.sql", "lead.mql"]
    )
    WebhookDelivery.objects.create(
        subscription=subscription,
        key="lead.sql:e2e",
        event="lead.sql",
        payload={},
        attempts=2,
        last_status=503,
        last_error="HTTP 503 Service Unavailable",
        next_attempt_at=timezone.now() + timedelta(minutes=1),
    )
    return {
        "webhooks": "/webhooks/",
        "webhook": f"/webhooks/{subscription.public_id}/",
        "webhook-deliveries": f"/webhooks/{subscription.public_id}/deliveries/",
    }


def violations(tab: Page) -> list[str]:
    results = AXE.run(tab)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(
            f"{' '.join(map(str, node['target']))}: {node.get('failureSummary', '')}" for node in v["nodes"][:5]
        )
        for v in results.response["violations"]
        if v["impact"] in BLOCKING
    ]


def audit(tab: Page, pages: dict[str, str], viewport: str) -> Iterator[str]:
    for name, url in pages.items():
        response = tab.goto(url)
        status = STATUS.get(name, 200)
        assert response and response.status == status, f"{name} ({url}) answered {response and response.status}"
        if name in READY:
            expect(tab.locator(READY[name]).first, f"{name} ({url}) shows {READY[name]}").to_be_attached()
        yield from audit_here(tab, name, viewport)


def audit_here(tab: Page, name: str, viewport: str) -> Iterator[str]:
    for problem in violations(tab):
        yield f"[{viewport}] {name} {tab.url}: {problem}"


def audit_form_errors(tab: Page, url: str, viewport: str) -> Iterator[str]:
    """A form sent back with its errors: the draft's new rule, submitted empty."""
    tab.goto(url)
    tab.get_by_role("button", name="Add rule").click()
    expect(tab.locator(".field-error").first).to_be_visible()
    yield from audit_here(tab, "rule-form-errors", viewport)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("role", ["marketer", "rep", "admin"])
def test_every_page_of_each_role_has_no_serious_accessibility_violation(
    chromium: Browser, live_server, demo_data, role, viewport
):
    width, height = VIEWPORTS[viewport]
    phone = viewport == "phone"
    pages = pages_of(role)
    unread_notification_for(role)  # the navigation's unread count is on every page audited
    if role == "rep":
        pages |= {"handoff-claimed": f"/queue/{claimed_handoff_of('rep').public_id}/"}
    if role == "admin":
        claimed_handoff_of("rep")  # the manager's page offers to release it
        pages |= draft_pages() | webhook_pages()
    with browser_tab(chromium, live_server, width=width, height=height, is_mobile=phone, has_touch=phone) as tab:
        problems = list(audit(tab, ANONYMOUS_PAGES, viewport))
        log_in(tab, role, DEMO_PASSWORDS[role])
        problems += audit(tab, pages, viewport)
        if role == "admin":
            problems += audit_form_errors(tab, pages["rule-new"], viewport)
    assert not problems, "\n".join(problems)


def test_axe_finds_a_serious_violation_when_there_is_one(chromium: Browser, live_server, demo_data):
    """The audit can fail: an image button without a name is a critical violation."""
    with browser_tab(chromium, live_server, width=1366, height=900) as tab:
        tab.goto("/login/")
        tab.evaluate("document.querySelector('main').append(document.createElement('button'))")
        assert any(problem.startswith("button-name (critical)") for problem in violations(tab))
