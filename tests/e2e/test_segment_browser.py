"""Segment's browser SDK, unmodified, on a website of another origin: analytics.js
(analytics-next, the npm package's bundle; ``make e2e-deps`` fetches it) posts to
``/api/segment/v1/…`` across origins, with a CORS preflight for its Authorization header."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page

from leadflow.leads import services
from leadflow.leads.models import Event, Lead, Stage
from tests.factories import SourceFactory
from tests.helpers import behaviour, lead_score

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / ".cache" / "analytics-next-1.84.3" / "dist" / "umd"

# The website's page: the bundle, loaded with its settings given (the SDK would otherwise
# fetch them from Segment's CDN) and the Segment.io destination pointed at LeadFlow.
PAGE = """<!doctype html><html><head><title>Pricing</title>
<script src="/index.js"></script>
<script>
  window.analytics = AnalyticsNext.AnalyticsBrowser.load({
    writeKey: %(key)s,
    cdnSettings: {integrations: {"Segment.io": %(destination)s}, metrics: {sampleRate: 0}},
  });
</script></head><body><h1>Pricing</h1></body></html>"""


@pytest.fixture
def website(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A website of its own origin (another port: browsers treat it as another site, and
    both stay on this machine, as Chromium's local network access wants): the bundle and a
    page written by the test, served from a folder."""
    assert (BUNDLE / "index.js").exists(), "No analytics-next bundle: run `make e2e-deps`."
    for name in BUNDLE.glob("*.js"):
        (tmp_path / name.name).symlink_to(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _open(page: Page, website: tuple[str, Path], live_server, write_key: str, delivery: dict) -> None:
    """Write the website's page, pointed at LeadFlow, and open it."""
    origin, folder = website
    destination = {
        "apiKey": write_key,
        "apiHost": live_server.url.removeprefix("http://") + "/api/segment/v1",
        "protocol": "http",
        "deliveryStrategy": delivery,
    }
    (folder / "pricing.html").write_text(PAGE % {"key": json.dumps(write_key), "destination": json.dumps(destination)})
    page.goto(f"{origin}/pricing.html")
    page.wait_for_function("window.analytics && window.analytics.instance")


def _eventually(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "LeadFlow did not receive what the SDK sent"
        time.sleep(0.1)


@pytest.fixture
def write_key(db):
    source = SourceFactory.create(slug="website", segment_event_types={"Demo Requested": "demo_request"})
    _key, secret = services.ingest_key_create(source=source)
    return secret


@pytest.mark.parametrize(
    "delivery",
    [
        pytest.param({"strategy": "standard"}, id="one-request-per-call"),
        pytest.param({"strategy": "batching", "config": {"size": 2, "timeout": 200}}, id="batching"),
    ],
)
def test_a_websites_analytics_js_turns_a_visitor_into_an_sql_across_origins(
    page, website, live_server, write_key, publish_ruleset, delivery
):
    publish_ruleset([behaviour("page_view", 10), behaviour("demo_request", 40)], mql=30, sql=60)
    sent: list = []
    page.on("request", lambda request: sent.append(request) if "/api/segment/" in request.url else None)
    _open(page, website, live_server, write_key, delivery)

    page.evaluate("async () => { await analytics.page(); await analytics.page('Docs', {path: '/docs'}); }")
    _eventually(lambda: Event.objects.filter(type="page_view").count() == 2)
    visitor = Lead.objects.get()
    assert visitor.visitor and visitor.email is None

    page.evaluate(
        "async () => { await analytics.identify({email: 'ada@example.com', name: 'Ada Lovelace'});"
        " await analytics.track('Demo Requested', {plan: 'pro'}); }"
    )
    _eventually(lambda: Event.objects.filter(type="demo_request").exists())
    lead = Lead.objects.get()
    assert lead.pk == visitor.pk and (lead.email, lead.name, lead.visitor) == ("ada@example.com", "Ada Lovelace", False)
    assert lead.stage == Stage.SQL and lead_score(lead) == 60, "the visitor's two page views (20) and the demo (40)"
    page_view = lead.events.filter(type="page_view").order_by("occurred_at").first()
    assert page_view.properties["path"] == "/pricing.html" and page_view.properties["title"] == "Pricing"

    # Cross-origin for real: the posts carry the write key in an Authorization header, which
    # the browser sends only after a preflight that allowed it; and to analytics.js's paths.
    assert sent and all(r.method == "POST" and r.headers["authorization"].startswith("Basic ") for r in sent)
    paths = {r.url.removeprefix(live_server.url + "/api/segment/v1/") for r in sent}
    assert paths == ({"b"} if delivery["strategy"] == "batching" else {"p", "i", "t"}), paths
    assert not [e for e in page.console_errors if "CORS" in e or "/api/segment/" in e], page.console_errors
