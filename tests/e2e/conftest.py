"""Browser tests: headless Chromium (Debian's, /usr/bin/chromium) driven by Playwright
against pytest-django's live server.

Playwright's sync API runs an event loop in this thread, so Django would refuse the
test's own database calls as "async unsafe": they are safe here (one thread talks
to the database at a time), hence DJANGO_ALLOW_ASYNC_UNSAFE — set only while these
tests run, so that it never leaks into the rest of the suite (``check --deploy``
refuses it).
"""

import importlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The README's pictures are refreshed on purpose (`make screenshots`), not by every
# test run; otherwise each page is still rendered to an image, in a scratch folder.
SCRATCH = Path(tempfile.gettempdir()) / "leadflow-e2e-screenshots"
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("E2E_SCREENSHOTS") == "1"
    else SCRATCH
)
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's


@pytest.fixture(scope="module", autouse=True)
def allow_database_calls_beside_playwrights_loop() -> Iterator[None]:
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def chromium(allow_database_calls_beside_playwrights_loop: None) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"No Chromium at {CHROMIUM}: run `make e2e-deps` (or set E2E_CHROMIUM).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def browser_tab(chromium: Browser, live_server, *, width: int, height: int, **options: Any) -> Iterator[Page]:
    """A fresh browser tab of the given viewport that records console errors (CSP violations)."""
    context = chromium.new_context(viewport={"width": width, "height": height}, base_url=live_server.url, **options)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.console_errors = errors  # type: ignore[attr-defined]
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def page(chromium: Browser, live_server) -> Iterator[Page]:
    """A fresh browser tab, 1280 pixels wide, that records console errors (CSP violations)."""
    with browser_tab(chromium, live_server, width=1280, height=800) as tab:
        yield tab


# The screens a role's journey is walked on (issue 17): the desktop and a phone held upright.
VIEWPORTS = {"desktop": (1366, 900), "phone": (390, 844)}


@pytest.fixture(params=list(VIEWPORTS))
def screen(request: pytest.FixtureRequest, chromium: Browser, live_server) -> Iterator[Page]:
    """A fresh tab on each of VIEWPORTS in turn: a role's whole journey must work on a phone too.
    A phone's pictures go to the scratch folder (the README shows the desktop's)."""
    width, height = VIEWPORTS[request.param]
    phone = request.param == "phone"
    with browser_tab(chromium, live_server, width=width, height=height, is_mobile=phone, has_touch=phone) as tab:
        tab.is_phone = phone  # type: ignore[attr-defined]
        yield tab


@pytest.fixture
def phone(chromium: Browser, live_server) -> Iterator[Page]:
    """A fresh tab the size of a phone held upright (390 × 844 CSS pixels, touch), recording console errors."""
    with browser_tab(chromium, live_server, width=390, height=844, is_mobile=True, has_touch=True) as tab:
        yield tab


def log_in(page: Page, username: str, password: str = PASSWORD, *, screenshot: str = "") -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    if screenshot:
        shoot(page, screenshot)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url)


def shoot(page: Page, name: str) -> None:
    """A full-page screenshot <name>.png (in docs/screenshots with E2E_SCREENSHOTS=1; a phone's
    screen — the ``screen`` fixture's — always in the scratch folder, as phone-journey-<name>.png)."""
    phone = getattr(page, "is_phone", False)
    folder = SCRATCH if phone else SCREENSHOTS
    name = f"phone-journey-{name}" if phone else name
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


# A form sent back with its errors answers 400, which Chromium logs as an error.
EXPECTED_ERRORS = ("the server responded with a status of 400",)


def assert_no_console_errors(page: Page) -> None:
    """Nothing blocked by the Content-Security-Policy, no script error, no missing file."""
    errors = [e for e in page.console_errors if not any(x in e for x in EXPECTED_ERRORS)]  # type: ignore[attr-defined]
    assert not errors, errors


def install_default_ruleset() -> None:
    """The ruleset a new install gets (a transactional test flushed the migration's copy)."""
    migration = importlib.import_module("scoring.migrations.0002_default_ruleset")
    migration.install(apps, None)


def install_default_checklist() -> None:
    """The accept checklist a new install gets (budget, authority, need, timeline), which a
    transactional test flushed too: the demo's reps answer it on accepting."""
    importlib.import_module("handoff.migrations.0010_accept_checklist").add_default_items(apps, None)


@pytest.fixture
def demo_data(transactional_db) -> None:
    """The demo (seed_demo: 160 leads through the real ingest path and scoring), spread
    over its 60 days as if it had been ingested live, so the charts have a history."""
    from handoff.models import Handoff
    from leadflow.leads.models import Event, Lead, StageChange

    install_default_ruleset()
    install_default_checklist()
    call_command("seed_demo", leads=160, history=0, stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))  # noqa: SIM115
    lead, event, change, handoff = (m._meta.db_table for m in (Lead, Event, StageChange, Handoff))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {lead} l SET created_at = e.first,
                mql_at = CASE WHEN l.mql_at IS NULL THEN NULL ELSE e.first + (e.last - e.first) * 0.6 END,
                sql_at = CASE WHEN l.sql_at IS NULL THEN NULL ELSE e.last + interval '5 minutes' END
            FROM (SELECT lead_id, MIN(occurred_at) AS first, MAX(occurred_at) AS last FROM {event} GROUP BY lead_id) e
            WHERE e.lead_id = l.id
            """  # noqa: S608 -- table names from the models
        )
        cursor.execute(
            f"""
            UPDATE {change} s SET at = CASE s.to_stage WHEN 'mql' THEN l.mql_at WHEN 'sql' THEN l.sql_at ELSE s.at END
            FROM {lead} l WHERE l.id = s.lead_id
            """  # noqa: S608
        )
        cursor.execute(
            f"""
            UPDATE {handoff} h SET created_at = l.sql_at, due_at = l.sql_at + interval '24 hours'
            FROM {lead} l WHERE l.id = h.lead_id
            """  # noqa: S608
        )
