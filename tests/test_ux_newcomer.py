"""Issue 17, item 10: a newcomer's first minutes (``make help``, ``make run``'s demo, the
logs) and the contrast of the focus ring and the footer."""

import io
import logging
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from handoff.models import Handoff, HandoffAction, HandoffEvent, Notification
from handoff.services import handoffs_flag_overdue
from leadflow.logfilters import RefusalWithoutTraceback
from leadflow.management.commands.seed_demo import DEMO_USERS

ROOT = Path(__file__).resolve().parent.parent


def seed(*args):
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("seed_demo", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue()


# --- seed_demo ---------------------------------------------------------------------


@pytest.mark.django_db
def test_seed_demo_ends_with_a_short_summary_and_sends_no_email(django_capture_on_commit_callbacks):
    started = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):  # e-mails go out on commit, as outside a test
        stdout = seed("--history", "0", "--leads", "120", "--seed", "5")

    assert mail.outbox == []
    assert "Subject:" not in stdout
    assert len(stdout.splitlines()) < 25
    handoffs = Handoff.objects.count()
    assert handoffs > 0
    assert re.search(r"^Leads by stage: \d+ New, \d+ MQL, \d+ SQL, \d+ Accepted", stdout, re.M)
    assert f"Handoffs: {handoffs} (" in stdout
    notifications = Notification.objects.count()
    assert notifications > 0, "the demo users' inboxes are part of the demo"
    assert f"Notifications: {notifications} in the demo users' inboxes; {notifications} e-mails not sent" in stdout
    for spec in DEMO_USERS:
        assert re.search(rf"^  {spec.username} +{spec.password} ", stdout, re.M)
    # Made now, so dated now: no inbox holds news dated before the seed ran, or read before it came.
    assert not Notification.objects.filter(created_at__lt=started).exists()
    read = Notification.objects.exclude(read_at=None)
    assert read.exists() and all(n.read_at is not None and n.read_at >= n.created_at for n in read)


@pytest.mark.django_db
def test_seed_demo_leaves_no_past_sla_breach_for_the_first_sweep_to_tell(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        stdout = seed("--history", "0", "--leads", "120", "--seed", "5")
    notifications = Notification.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        flagged = handoffs_flag_overdue()

    assert flagged == 0
    assert Notification.objects.count() == notifications
    assert mail.outbox == []
    # The replayed past's breaches are flagged at their due time, with the handoff's trail.
    breached = list(Handoff.objects.exclude(overdue_at=None))
    assert breached
    assert all(h.overdue_at == h.due_at for h in breached)
    trail = HandoffEvent.objects.filter(action=HandoffAction.OVERDUE)
    assert sorted(trail.values_list("handoff_id", "at")) == sorted((h.pk, h.due_at) for h in breached)
    assert f"SLA: {len(breached)} breaches of the replayed past flagged as already told" in stdout


@pytest.mark.django_db
def test_a_demo_handoff_that_breaks_its_sla_after_the_seed_is_still_told(django_capture_on_commit_callbacks):
    seed("--history", "0", "--leads", "120", "--seed", "5")
    still_in_sla = Handoff.objects.filter(overdue_at=None, due_at__gt=timezone.now(), status="queued").count()
    assert still_in_sla

    with time_machine.travel(timezone.now() + timedelta(days=30)), django_capture_on_commit_callbacks(execute=True):
        flagged = handoffs_flag_overdue()

    assert flagged >= still_in_sla
    assert mail.outbox, "the sweep's e-mails still go out once the seed is over"


@pytest.mark.django_db
def test_seeding_again_flags_no_breach_twice():
    seed("--history", "0", "--leads", "60", "--seed", "5")
    trail = HandoffEvent.objects.filter(action=HandoffAction.OVERDUE).count()

    with time_machine.travel(timezone.now() + timedelta(days=1)):
        stdout = seed("--history", "0", "--leads", "60", "--seed", "5")

    assert HandoffEvent.objects.filter(action=HandoffAction.OVERDUE).count() == trail
    assert "SLA: 0 breaches of the replayed past" in stdout


# --- logs --------------------------------------------------------------------------


@pytest.fixture
def console_log():
    """What the console handlers a ``django.request`` line reaches write (the settings'
    LOGGING as configured at start-up), in one buffer."""
    buffer = io.StringIO()
    handlers: list[logging.StreamHandler] = []
    logger: logging.Logger | None = logging.getLogger("django.request")
    while logger is not None:
        # pytest's capture handlers are StreamHandler subclasses: only the configured ones.
        handlers += [h for h in logger.handlers if type(h) is logging.StreamHandler]
        logger = logger.parent if logger.propagate else None
    previous = [h.setStream(buffer) for h in handlers]
    yield buffer
    for handler, stream in zip(handlers, previous, strict=True):
        handler.setStream(stream)


@pytest.mark.django_db
def test_a_refused_page_is_logged_once_without_a_traceback(client, outsider, settings, console_log):
    settings.DEBUG = True  # Django's own console handler printed only when DEBUG
    client.force_login(outsider)

    response = client.get("/rules/")

    assert response.status_code == 403
    logged = console_log.getvalue()
    assert logged.count("Forbidden (Permission denied): /rules/") == 1
    assert "Traceback" not in logged


@pytest.mark.django_db
def test_a_refused_api_call_is_logged_once(client, outsider, settings, console_log):
    settings.DEBUG = True
    client.force_login(outsider)

    response = client.get("/api/v1/rulesets")

    assert response.status_code == 403
    logged = console_log.getvalue()
    assert logged.count("Forbidden: /api/v1/rulesets") == 1
    assert "Traceback" not in logged


def test_an_error_keeps_its_traceback_in_the_log():
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.getLogger("django.request").makeRecord(
            "django.request", logging.ERROR, __file__, 1, "Internal Server Error: /", (), sys.exc_info()
        )

    assert RefusalWithoutTraceback().filter(record)
    assert record.exc_info is not None


# --- contrast (WCAG 2.2) -------------------------------------------------------------


def _stylesheet() -> str:
    return (ROOT / "static" / "css" / "app.css").read_text()


def _custom_properties(css: str) -> dict[str, str]:
    root = re.search(r":root\s*\{(.*?)\}", css, re.S)
    assert root
    return dict(re.findall(r"(--[\w-]+)\s*:\s*([^;]+);", root.group(1)))


def _declaration(css: str, selector: str, prop: str) -> str:
    """The value of ``prop`` in the top-level rule whose selector list is exactly ``selector``."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    # A rule nested in @media keeps "@media … {" in front of its selectors: never equal.
    rules = [chunk.rsplit("{", 1) for chunk in css.split("}") if "{" in chunk]
    values = [
        match.group(1).strip()
        for selectors, body in rules
        if selectors.strip() == selector
        for match in [re.search(rf"(?:^|;)\s*{re.escape(prop)}\s*:\s*([^;]+)", body)]
        if match
    ]
    assert values, f"{selector} {{ {prop}: … }} not found"
    return values[-1]


def _colour(value: str, variables: dict[str, str]) -> tuple[float, float, float, float]:
    """An sRGB colour (0–255) with alpha, from #rrggbb, #rgb, rgb()/rgba() or var(--x)."""
    value = value.strip()
    var = re.fullmatch(r"var\((--[\w-]+)\)", value)
    if var:
        return _colour(variables[var.group(1)], variables)
    if value.startswith("#"):
        digits = value[1:]
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16), 1.0)
    rgb = re.fullmatch(r"rgba?\(([^)]*)\)", value)
    assert rgb, f"not a colour: {value}"
    parts = [float(p) for p in re.split(r"[\s,/]+", rgb.group(1).strip()) if p]
    return (parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else 1.0)


def _over(colour, background):
    """``colour`` painted over an opaque ``background``."""
    alpha = colour[3]
    return tuple(alpha * c + (1 - alpha) * b for c, b in zip(colour[:3], background[:3], strict=True))


def _luminance(rgb) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(foreground: str, background: str, variables: dict[str, str]) -> float:
    back = _colour(background, variables)
    front = _over(_colour(foreground, variables), back)
    light, dark = sorted((_luminance(front), _luminance(back[:3])), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_contrast_ratio_follows_wcag():
    assert contrast("#000", "#fff", {}) == pytest.approx(21)
    assert contrast("#777777", "#ffffff", {}) == pytest.approx(4.48, abs=0.01)
    assert contrast("rgba(0, 0, 0, 0)", "#ffffff", {}) == pytest.approx(1)


def _outline_colour(value: str) -> str:
    colour = re.search(r"(#[0-9a-fA-F]{3,6}|rgba?\([^)]*\)|var\(--[\w-]+\))", value)
    assert colour, value
    return colour.group(1)


@pytest.mark.parametrize("background", ["--bg", "--card", "--nav"])
def test_the_focus_ring_stands_out_three_to_one_on_every_background(background):
    css = _stylesheet()
    variables = _custom_properties(css)
    ring = _outline_colour(_declaration(css, ":focus-visible", "outline"))

    assert contrast(ring, f"var({background})", variables) >= 3


def test_a_focused_field_changes_its_border_three_to_one_against_the_card():
    css = _stylesheet()
    variables = _custom_properties(css)
    border = _declaration(css, "input:focus, select:focus, textarea:focus", "border-color")

    assert contrast(border, "var(--card)", variables) >= 3


def test_the_footer_text_reads_against_the_page():
    css = _stylesheet()
    variables = _custom_properties(css)
    text = _declaration(css, ".footer", "color")

    # Small text (0.8rem): the 4.5:1 of body text, above the 3:1 floor.
    assert contrast(text, "var(--bg)", variables) >= 4.5
    assert contrast("var(--accent)", "var(--bg)", variables) >= 4.5, "the footer's link"


# --- make help ---------------------------------------------------------------------


def make_help(*args, **env):
    environ = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "SQLITE_PATH"}}
    result = subprocess.run(  # noqa: S603
        ["make", "-s", "--no-print-directory", "help", *args],  # noqa: S607
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_make_help_prints_the_values_in_force_not_variable_names():
    text = make_help()

    assert "$(" not in text
    assert "http://127.0.0.1:8000" in text
    assert "database: SQLite" in text
    assert "broker:   none, tasks run in-process" in text
    assert "redis://127.0.0.1:6379/15" in text  # make test's broker


def test_make_help_follows_the_command_line_and_the_environment():
    text = make_help(
        "PORT=9123",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/demo",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/3",
    )

    assert "make run           Migrate, load the demo and serve on http://127.0.0.1:9123" in text
    assert "database: postgres://postgres@127.0.0.1:5432/demo" in text
    assert "broker:   redis://127.0.0.1:6379/3" in text
