"""Ingest throughput: POST /api/v1/events through gunicorn against PostgreSQL,
compared with a naive per-event ORM loop, and Segment-compatible ingest
(POST /api/segment/v1/batch, 500 messages per batch: the SDKs' flush) in the same run.

    .venv/bin/python bench/ingest.py                       # defaults: 10k leads, 200k events
    .venv/bin/python bench/ingest.py --leads 1000 --events 20000 --naive-sample 1000   # smoke run

The Segment phase posts the same number of events (``--segment-events``), generated the
same way for a second population of leads of the same size (new leads, as in the native
phase), as ``page`` and ``track`` messages: the lead's userId (its external id) or an
anonymousId, and its e-mail in ``context.traits``.

The script drops and recreates the benchmark database (its name must contain
"bench"), migrates it, creates an ingest key, starts gunicorn on a free loopback
port, posts pre-serialised batches with concurrent keep-alive clients, checks
that every batch was accepted in full and that the database holds every event,
then times the naive loop in this process. Scoring tasks are only enqueued to
Redis (database 13, flushed before and after); no worker runs them.
Results and their interpretation: bench/RESULTS.md.
"""

import argparse
import base64
import dataclasses
import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `leadflow` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench.common import (  # noqa: E402
    DEFAULT_BROKER_URL,
    DEFAULT_DATABASE_URL,
    ROOT,
    BenchError,
    CpuMeter,
    CpuUsage,
    PgActivitySampler,
    Server,
    bench_env,
    child_pids,
    database_drop,
    database_reset,
    django_setup,
    gunicorn_start,
    machine_summary,
    manage,
    percentile,
    postgres_backend_pids,
    postgres_version,
    rate,
    redis_flush,
    redis_queue_length,
    report,
    speed_probe,
    stopwatch,
)

HTTP_TARGET_EVENTS_PER_SECOND = 10_000
SEGMENT_RATIO_TARGET = 0.8  # Segment-compatible ingest: at least 80 % of the native batch endpoint's events/s
NAIVE_RATIO_TARGET = 20.0
NOISY_NEIGHBOURS = 0.10  # share of the machine's CPU used by others that makes a run unreliable
SOURCE_NAME = "bench"
NAIVE_SOURCE_NAME = "bench-naive"
HISTORY = timedelta(days=60)

# (type, relative frequency): mostly passive behaviour, a few hand-raises.
EVENT_TYPES: list[tuple[str, int]] = [
    ("page_view", 50),
    ("email_open", 14),
    ("email_click", 8),
    ("content_download", 6),
    ("pricing_view", 5),
    ("webinar_registered", 3),
    ("webinar_attended", 2),
    ("form_submit", 4),
    ("trial_started", 1),
    ("demo_request", 1),
]
PAGES = ["/", "/product", "/product/scoring", "/product/handoff", "/customers", "/blog/mql-vs-sql", "/docs/api"]
ASSETS = ["lead-scoring-guide.pdf", "state-of-b2b-2026.pdf", "roi-calculator.xlsx", "handoff-playbook.pdf"]
TOPICS = ["scoring", "handoff", "attribution", "revops", "nurturing"]
CAMPAIGNS = ["q4-nurture", "webinar-invite", "product-update-11", "trial-onboarding", "winback"]
WEBINARS = ["scoring-101", "from-mql-to-revenue", "sla-that-works"]
FORMS = ["newsletter", "contact", "ebook-gate"]
HAND_RAISES = {"form_submit", "trial_started", "demo_request"}
FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Linus"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton"]
JOB_TITLES = ["Head of Marketing", "Marketing Ops Manager", "VP Sales", "CTO", "Growth Lead", "Analyst"]
INDUSTRIES = ["software", "fintech", "healthcare", "manufacturing", "retail", "education"]
COUNTRIES = ["FR", "DE", "GB", "US", "ES", "NL", "SE"]


@dataclass(frozen=True)
class LeadProfile:
    email: str
    external_id: str | None
    name: str
    company: str
    job_title: str
    industry: str
    country: str
    company_size: int
    weight: float  # how active the lead is


@dataclass
class HttpOutcome:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    failures: list[str] = field(default_factory=list)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the absent ones (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark POST /api/v1/events (gunicorn + PostgreSQL) against a naive per-event ORM loop.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--leads", type=int, default=10_000, help="distinct leads the events belong to")
    parser.add_argument("--events", type=int, default=200_000, help="events posted over HTTP")
    parser.add_argument("--batch", type=int, default=1000, help="events per request (the API allows up to 1000)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent HTTP clients (threads)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument(
        "--worker-class", default="sync", help="gunicorn worker class; 'gthread' keeps connections alive"
    )
    parser.add_argument("--app", default="leadflow.wsgi", help="WSGI module gunicorn serves, e.g. to measure a variant")
    parser.add_argument(
        "--gunicorn-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra gunicorn argument, repeatable, e.g. --gunicorn-arg=--pythonpath=/tmp/variant",
    )
    parser.add_argument("--naive-sample", type=int, default=5000, help="events for the naive per-event loop (0 skips)")
    parser.add_argument(
        "--segment-events",
        type=int,
        default=None,
        help="events posted to the Segment-compatible batch endpoint (default: as many as --events; 0 skips)",
    )
    parser.add_argument("--segment-batch", type=int, default=500, help="messages per Segment batch (SDK flush: 500)")
    parser.add_argument(
        "--baseline",
        type=int,
        default=0,
        metavar="N",
        help="first post N requests to an unknown path (a 404) with the same clients and server: "
        "the same-run floor of a request (default: with --batch 1, as many as the ingest requests, "
        "at most 5000; else none)",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="benchmark database; dropped and recreated unless --url is given (its name must contain 'bench')",
    )
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help="Redis database the scoring tasks go to")
    parser.add_argument(
        "--url",
        help="use this already-running server (e.g. http://127.0.0.1:8000) instead of starting gunicorn; "
        "the database is then not reset and must be the one --database-url names; default: start gunicorn",
    )
    parser.add_argument("--ingest-key", help="ingest key to post with; by default one is created in the database")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database and Redis queue afterwards")
    parser.add_argument("--seed", type=int, default=2026, help="random seed of the generated data")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be between 1 and 1000 (the API limit)")
    for name in ("leads", "events", "concurrency", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.naive_sample < 0 or args.baseline < 0:
        parser.error("--naive-sample and --baseline must be 0 or more")
    if args.segment_events is None:
        args.segment_events = args.events
    if args.segment_events < 0 or not 1 <= args.segment_batch <= 1000:
        parser.error("--segment-events must be 0 or more and --segment-batch between 1 and 1000")
    return args


# --- Data -----------------------------------------------------------------------------------
def make_leads(count: int, rng: random.Random) -> list[LeadProfile]:
    leads = []
    for number in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        company = f"{rng.choice(['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Vandelay'])} {number % 997}"
        domain = company.lower().replace(" ", "-") + ".example"
        leads.append(
            LeadProfile(
                email=f"{first}.{last}.{number}@{domain}".lower(),
                # A third of the leads are also known to the CRM and always sent with its id.
                external_id=f"crm-{number:07d}" if number % 3 == 0 else None,
                name=f"{first} {last}",
                company=company,
                job_title=rng.choice(JOB_TITLES),
                industry=rng.choice(INDUSTRIES),
                country=rng.choice(COUNTRIES),
                company_size=rng.choice([5, 20, 80, 250, 1200, 8000]),
                weight=rng.lognormvariate(0, 1),
            )
        )
    return leads


def _properties(event_type: str, rng: random.Random) -> dict[str, Any]:
    if event_type == "page_view":
        return {"url": rng.choice(PAGES), "referrer": rng.choice(["google", "linkedin", "direct", "newsletter"])}
    if event_type in ("email_open", "email_click"):
        properties: dict[str, Any] = {"campaign": rng.choice(CAMPAIGNS)}
        if event_type == "email_click":
            properties["url"] = rng.choice(PAGES)
        return properties
    if event_type == "content_download":
        return {"asset": rng.choice(ASSETS), "topic": rng.choice(TOPICS)}
    if event_type == "pricing_view":
        return {"url": "/pricing", "plan": rng.choice(["starter", "growth", "enterprise"])}
    if event_type.startswith("webinar_"):
        return {"webinar": rng.choice(WEBINARS), "topic": rng.choice(TOPICS)}
    return {"form": rng.choice(FORMS), "url": rng.choice(PAGES)}


def make_event(event_id: str, lead: LeadProfile, rng: random.Random, now: datetime) -> dict[str, Any]:
    event_type = rng.choices([name for name, _ in EVENT_TYPES], weights=[weight for _, weight in EVENT_TYPES])[0]
    occurred_at = now - HISTORY * rng.random()
    identity: dict[str, Any] = {"email": lead.email}
    if lead.external_id:
        identity["external_id"] = lead.external_id
    if event_type in HAND_RAISES:  # forms carry the profile: exercises the upsert of leads
        identity.update(
            name=lead.name,
            company=lead.company,
            job_title=lead.job_title,
            country=lead.country,
            company_size=lead.company_size,
            traits={"industry_hint": lead.industry, "newsletter": rng.random() < 0.5},
        )
    return {
        "event_id": event_id,
        "type": event_type,
        "occurred_at": occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "lead": identity,
        "properties": _properties(event_type, rng),
    }


def make_events(
    leads: Sequence[LeadProfile], count: int, rng: random.Random, prefix: str, now: datetime
) -> list[dict[str, Any]]:
    owners = rng.choices(leads, weights=[lead.weight for lead in leads], k=count)
    return [make_event(f"{prefix}-{number:08d}", lead, rng, now) for number, lead in enumerate(owners)]


def serialise_batches(events: Sequence[dict[str, Any]], size: int) -> list[tuple[int, bytes]]:
    """(event count, JSON body) of each request, ready to send."""
    return [
        (len(chunk), json.dumps({"events": chunk}, separators=(",", ":")).encode())
        for chunk in (events[start : start + size] for start in range(0, len(events), size))
    ]


def segment_message(event: dict[str, Any]) -> dict[str, Any]:
    """A native event payload as a Segment SDK sends it: ``page`` for a page view, else
    ``track`` with the event's name in words (whose snake_case is the type again)."""
    lead = event["lead"]
    message: dict[str, Any] = {
        "messageId": event["event_id"],
        "timestamp": event["occurred_at"],
        "context": {"traits": {"email": lead["email"]}, "library": {"name": "bench", "version": "1"}},
        "properties": event["properties"],
    }
    if lead.get("external_id"):
        message["userId"] = lead["external_id"]
    else:  # a browser's SDK: the cookie's id, with the address it learnt
        message["anonymousId"] = f"anon-{lead['email']}"
    if event["type"] == "page_view":
        message.update(type="page", name=event["properties"].get("url", ""))
    else:
        message.update(type="track", event=event["type"].replace("_", " ").title())
    return message


def segment_leads(leads: Sequence[LeadProfile]) -> list[LeadProfile]:
    """A second population like ``leads``: other addresses and CRM ids, the same mix."""
    return [
        dataclasses.replace(
            lead, email=f"seg.{lead.email}", external_id=f"seg-{lead.external_id}" if lead.external_id else None
        )
        for lead in leads
    ]


def serialise_segment_batches(events: Sequence[dict[str, Any]], size: int) -> list[tuple[int, bytes]]:
    sent_at = datetime.now(UTC).isoformat()
    return [
        (len(chunk), json.dumps({"batch": [segment_message(e) for e in chunk], "sentAt": sent_at}).encode())
        for chunk in (events[start : start + size] for start in range(0, len(events), size))
    ]


# --- HTTP -------------------------------------------------------------------------------------
def _drive(
    name: str, concurrency: int, jobs: Sequence[Any], send: Callable[[Any, Any], tuple[int, str | None]]
) -> HttpOutcome:
    """Run ``jobs`` through ``concurrency`` keep-alive clients that start together;
    ``send(session, job)`` makes one request and returns (what it accepted, the problem
    or None). Latencies, acceptances and failures are gathered into one outcome."""
    work: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for job in jobs:
        work.put(job)
    outcome = HttpOutcome()
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)

    def client() -> None:
        session = requests.Session()
        start.wait()
        while True:
            try:
                job = work.get_nowait()
            except queue.Empty:
                break
            began = time.perf_counter()
            try:
                accepted, problem = send(session, job)
            except (requests.RequestException, ValueError) as error:
                accepted, problem = 0, f"{type(error).__name__}: {error}"
            elapsed = time.perf_counter() - began
            with lock:
                outcome.latencies.append(elapsed)
                outcome.accepted += accepted
                if problem:
                    outcome.failures.append(problem)
        session.close()

    threads = [threading.Thread(target=client, name=f"{name}-{n}", daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    with stopwatch() as watch:
        start.wait()
        for thread in threads:
            thread.join()
    outcome.seconds = watch.seconds
    return outcome


def post_batches(url: str, ingest_key: str, batches: Sequence[tuple[int, bytes]], concurrency: int) -> HttpOutcome:
    """Post every batch with ``concurrency`` keep-alive clients; every answer must be
    202 with all events accepted."""
    endpoint = url.rstrip("/") + "/api/v1/events"
    headers = {"Authorization": f"Bearer {ingest_key}", "Content-Type": "application/json"}

    def send(session: Any, batch: tuple[int, bytes]) -> tuple[int, str | None]:
        count, body = batch
        response = session.post(endpoint, data=body, headers=headers, timeout=300)
        expected = {"accepted": count, "duplicates": 0, "rejected": []}
        answer = response.json() if response.status_code == 202 else None
        problem = None if answer == expected else f"HTTP {response.status_code}: {response.text[:300]}"
        return (int(answer["accepted"]) if answer else 0), problem

    return _drive("client", concurrency, batches, send)


def post_segment_batches(
    url: str, ingest_key: str, batches: Sequence[tuple[int, bytes]], concurrency: int
) -> HttpOutcome:
    """Post every Segment batch with the write key as Basic user name, as the SDKs do;
    every answer must be Segment's 200 ``{"success": true}`` (what was stored is
    counted in the database afterwards)."""
    endpoint = url.rstrip("/") + "/api/segment/v1/batch"
    basic = base64.b64encode(f"{ingest_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "Content-Type": "application/json"}

    def send(session: Any, batch: tuple[int, bytes]) -> tuple[int, str | None]:
        count, body = batch
        response = session.post(endpoint, data=body, headers=headers, timeout=300)
        ok = response.status_code == 200 and response.json() == {"success": True}
        return (count if ok else 0), (None if ok else f"HTTP {response.status_code}: {response.text[:300]}")

    return _drive("segment", concurrency, batches, send)


def count_segment_drops() -> int:
    from leadflow.leads.models import SegmentDrop

    return SegmentDrop.objects.count()


NOT_FOUND_PATH = "/api/v1/no-such-endpoint"


def post_not_found(url: str, ingest_key: str, body: bytes, count: int, concurrency: int) -> HttpOutcome:
    """``count`` POSTs of ``body`` to a path no view serves, with the ingest clients'
    headers: what any request costs this server and these clients (routing, middleware,
    the 404), the floor under the ingest's rate. Every answer must be a 404."""
    endpoint = url.rstrip("/") + NOT_FOUND_PATH
    headers = {"Authorization": f"Bearer {ingest_key}", "Content-Type": "application/json"}

    def send(session: Any, _job: int) -> tuple[int, str | None]:
        response = session.post(endpoint, data=body, headers=headers, timeout=300)
        return (1, None) if response.status_code == 404 else (0, f"HTTP {response.status_code}")

    return _drive("baseline", concurrency, range(count), send)


def per_request_cpu(usage: CpuUsage, requests_made: int) -> str:
    """Server CPU per request: gunicorn's and PostgreSQL's, in ms."""
    gunicorn = sum(seconds for name, seconds in usage.seconds.items() if name.startswith("gunicorn"))
    postgres = usage.seconds.get("postgresql backends", 0.0)
    return f"{gunicorn / requests_made * 1000:.2f} gunicorn + {postgres / requests_made * 1000:.2f} PostgreSQL ms"


# --- Django (in this process) -------------------------------------------------------------------
def ingest_key_for_bench(env: dict[str, str]) -> str:
    """A new ingest key for the benchmark source: the management command if the
    project has one, else the service directly."""
    from django.core.management import get_commands

    if "create_ingest_key" in get_commands():
        output = manage(["create_ingest_key", SOURCE_NAME], env)
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    from leadflow.leads.services import ingest_key_create

    _key, secret = ingest_key_create(source=bench_source(SOURCE_NAME), label="benchmark")
    return secret


def bench_source(name: str) -> Any:
    from django.utils.text import slugify

    from leadflow.leads.models import Source

    source, _created = Source.objects.get_or_create(slug=slugify(name), defaults={"name": name})
    return source


def source_id_of_key(ingest_key: str) -> int:
    from leadflow.leads.keys import split_key
    from leadflow.leads.models import IngestKey

    parsed = split_key(ingest_key)
    if parsed is None:
        raise BenchError("The ingest key is malformed: expected lfi_<prefix>_<secret>.")
    key = IngestKey.objects.filter(prefix=parsed[1]).first()
    if key is None:
        raise BenchError("The ingest key is not in the benchmark database: check --database-url.")
    return int(key.source_id)


def count_events(source_id: int) -> int:
    from leadflow.leads.models import Event

    return Event.objects.filter(source_id=source_id).count()


def count_leads() -> int:
    from leadflow.leads.models import Lead

    return Lead.objects.count()


def naive_ingest(payloads: Sequence[dict[str, Any]]) -> tuple[int, float]:
    """What a naive view would do: per event, its own transaction, get_or_create the
    lead, save() it, create the event. Same validation as the real endpoint, so
    only the write strategy differs. Returns (source id, seconds)."""
    from django.db import transaction
    from django.utils import timezone

    from leadflow.leads.models import Event, Lead
    from leadflow.leads.validation import validate_event

    source = bench_source(NAIVE_SOURCE_NAME)
    with stopwatch() as watch:
        for payload in payloads:
            event, errors = validate_event(payload, now=timezone.now())
            if event is None:
                raise BenchError(f"Generated an invalid event: {errors}")
            with transaction.atomic():
                lead, _created = Lead.objects.get_or_create(
                    email=event.lead.email, defaults={"source": source, "external_id": event.lead.external_id}
                )
                for name, value in event.lead.profile.items():
                    setattr(lead, name, value)
                if event.lead.traits:
                    lead.traits = {**lead.traits, **event.lead.traits}
                if lead.last_activity_at is None or event.occurred_at > lead.last_activity_at:
                    lead.last_activity_at = event.occurred_at
                lead.needs_rescore = True
                lead.save()
                Event.objects.create(
                    lead=lead,
                    source=source,
                    event_id=event.event_id,
                    type=event.type,
                    properties=event.properties,
                    occurred_at=event.occurred_at,
                    fingerprint=event.fingerprint,
                )
    return source.pk, watch.seconds


def close_django_connections() -> None:
    from django.apps import apps

    if apps.ready:
        from django.db import connections

        connections.close_all()


def command_line() -> str:
    python = Path(sys.executable)
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    return " ".join([str(shown), *sys.argv])


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


# --- Main -----------------------------------------------------------------------------------------
def code_version() -> str:
    """The commit measured, and whether the ingest path had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "leadflow", "scoring", "handoff"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit} + uncommitted changes in the app" if dirty else commit


CLIENT_LABEL = "http clients (this process)"


def cpu_rows(usage: CpuUsage, events: int, wall: float) -> list[tuple[str, object]]:
    """CPU milliseconds per 1000 events by group, what the neighbours used, and the
    throughput the server side's CPU cost allows on this machine's cores."""
    cores = os.cpu_count() or 1
    rows: list[tuple[str, object]] = [
        (f"cpu: {name}", f"{seconds / events * 1e6:.0f} ms per 1000 events ({seconds / wall * 100:.0f}% of one core)")
        for name, seconds in usage.seconds.items()
    ]
    if usage.machine_total:
        share = usage.others / usage.machine_total * 100
        rows.append(("cpu: other processes", f"{share:.0f}% of the machine's {cores} cores (neighbours, OS)"))
    server = sum(seconds for name, seconds in usage.seconds.items() if name != CLIENT_LABEL)
    if server:
        rows.append(
            (
                "capacity estimate",
                f"{cores * events / server:,.0f} events/s if the server side had all {cores} cores "
                "to itself (CPU only; ignores lock waits)",
            )
        )
    return rows


def log_errors(server: Server) -> list[str]:
    lines = server.log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if " ERROR " in line or line.startswith(("psycopg2.errors", "django.db.utils"))]


def short(text: str, limit: int = 160) -> str:
    return " ".join(text.split())[:limit]


def _p50_p95(latencies: Sequence[float]) -> str:
    return f"{percentile(latencies, 0.5) * 1000:.0f} / {percentile(latencies, 0.95) * 1000:.0f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Persistent connections for the whole run: per-backend CPU accounting needs them alive.
    env = bench_env(args.database_url, args.broker_url, DB_CONN_MAX_AGE="3600")
    rng = random.Random(args.seed)
    run_tag = f"{int(time.time()):x}"
    checks: list[tuple[str, bool, str]] = []  # (what, ok, detail)
    server: Server | None = None
    setup_rows: list[tuple[str, object]] = [*machine_summary()]
    setup_rows.append(("postgresql", postgres_version(args.database_url)))
    setup_rows.append(("code", code_version()))
    setup_rows.append(("command", command_line()))

    redis_flush(args.broker_url)
    try:
        if not args.url:
            with stopwatch() as watch:
                database_reset(args.database_url)
                manage(["migrate", "--noinput", "-v", "0"], env)
            setup_rows.append(("database", f"{args.database_url} (recreated and migrated in {watch.seconds:.1f}s)"))
        else:
            setup_rows.append(("database", f"{args.database_url} (not reset: --url)"))
        django_setup(env)
        ingest_key = args.ingest_key or ingest_key_for_bench(env)
        source_id = source_id_of_key(ingest_key)

        with stopwatch() as watch:
            now = datetime.now(UTC)
            leads = make_leads(args.leads, rng)
            http_events = make_events(leads, args.events, rng, f"bench-{run_tag}", now)
            batches = serialise_batches(http_events, args.batch)
            naive_events = make_events(leads, args.naive_sample, rng, f"naive-{run_tag}", now)
            del http_events
            segment_batches = serialise_segment_batches(
                make_events(segment_leads(leads), args.segment_events, rng, f"seg-{run_tag}", now), args.segment_batch
            )
        body_bytes = sum(len(body) for _, body in batches)
        setup_rows.append(
            (
                "data",
                f"{args.events} events for {args.leads} leads in {len(batches)} batches of <= {args.batch} "
                f"({body_bytes / len(batches) / 1024:.0f} KiB per body), generated in {watch.seconds:.1f}s",
            )
        )

        groups: dict[str, Callable[[], list[int]]] = {
            "postgresql backends": lambda: postgres_backend_pids(args.database_url)
        }
        if args.url:
            url = args.url
            setup_rows.append(("server", f"{url} (already running)"))
        else:
            server = gunicorn_start(
                env, workers=args.workers, worker_class=args.worker_class, wsgi=args.app, extra_args=args.gunicorn_arg
            )
            url = server.url
            master = server.process.pid
            groups["gunicorn (master + workers)"] = lambda: [master, *child_pids(master)]
            variant = " ".join([args.app, *args.gunicorn_arg])
            setup_rows.append(("server", f"gunicorn {variant} -w {args.workers} -k {args.worker_class} on {url}"))
        keep_alive = "kept alive" if args.worker_class != "sync" else "closed by sync workers after each response"
        setup_rows.append(("clients", f"{args.concurrency} threads, requests.Session (connections {keep_alive})"))
        report("Ingest benchmark: setup", setup_rows)

        baseline: HttpOutcome | None = None
        baseline_count = args.baseline or (min(len(batches), 5000) if args.batch == 1 else 0)
        if baseline_count:
            print(f"\nBaseline: {baseline_count} requests to {NOT_FOUND_PATH} (404)…", flush=True)
            meter = CpuMeter(groups, this_process=CLIENT_LABEL)
            meter.start()
            baseline = post_not_found(url, ingest_key, batches[0][1], baseline_count, args.concurrency)
            baseline_cpu = meter.stop()
            checks.append(
                ("every baseline request answered 404", not baseline.failures, f"{len(baseline.failures)} failed")
            )
            report(
                f"Same-run baseline: POST {NOT_FOUND_PATH} (404), same clients and server",
                [
                    ("requests", baseline_count),
                    ("throughput", f"{rate(baseline_count, baseline.seconds):,.0f} requests/s"),
                    ("latency p50 / p95", _p50_p95(baseline.latencies)),
                    ("server cpu per request", per_request_cpu(baseline_cpu, baseline_count)),
                    ("load average (1 min)", f"{os.getloadavg()[0]:.1f}"),
                ],
            )

        events_before = count_events(source_id)
        speed_before = speed_probe()
        print(f"\nPosting {args.events} events in {len(batches)} requests…", flush=True)
        meter = CpuMeter(groups, this_process=CLIENT_LABEL)
        sampler = PgActivitySampler(args.database_url)
        meter.start()
        sampler.start()
        http = post_batches(url, ingest_key, batches, args.concurrency)
        activity = sampler.stop()
        http_cpu = meter.stop()
        speed = f"{speed_before:.0f} ms before, {speed_probe():.0f} ms after (lower is faster)"
        stored = count_events(source_id) - events_before
        enqueued = redis_queue_length(args.broker_url, "scoring")  # SCORING_QUEUE

        segment: HttpOutcome | None = None
        segment_stored = segment_rate = 0.0
        if args.segment_events:
            print(
                f"\nPosting {args.segment_events} events as Segment messages in {len(segment_batches)} batches…",
                flush=True,
            )
            segment_before, drops_before = count_events(source_id), count_segment_drops()
            meter = CpuMeter(groups, this_process=CLIENT_LABEL)
            meter.start()
            segment = post_segment_batches(url, ingest_key, segment_batches, args.concurrency)
            segment_cpu = meter.stop()
            segment_stored = count_events(source_id) - segment_before
            segment_rate = rate(int(segment_stored), segment.seconds)
            dropped = count_segment_drops() - drops_before
            checks.append(
                ("every Segment batch answered 200 success", not segment.failures, f"{len(segment.failures)} failed")
            )
            checks.append(
                (
                    "Segment events stored == messages posted, none dropped",
                    segment_stored == args.segment_events and dropped == 0,
                    f"{segment_stored:.0f} / {args.segment_events}, {dropped} dropped",
                )
            )
            report(
                "Segment-compatible ingest (POST /api/segment/v1/batch)",
                [
                    ("events stored", f"{segment_stored:.0f} of {args.segment_events} posted"),
                    ("batches", f"{len(segment_batches)} of <= {args.segment_batch} messages"),
                    ("wall clock", f"{segment.seconds:.2f} s"),
                    ("throughput", f"{segment_rate:,.0f} events/s"),
                    ("batch latency p50 / p95", _p50_p95(segment.latencies)),
                    ("load average (1 min)", f"{os.getloadavg()[0]:.1f}"),
                    *cpu_rows(segment_cpu, max(int(segment_stored), 1), segment.seconds),
                ],
            )
            for failure in segment.failures[:5]:
                print(f"  failed Segment batch: {short(failure)}")

        server_errors: list[str] = []
        if server is not None:
            server.stop()
            server_errors = log_errors(server)
            server = None
        http_rate = rate(http.accepted, http.seconds)
        checks.append(
            ("every batch answered 202 with all events accepted", not http.failures, f"{len(http.failures)} failed")
        )
        checks.append(
            ("events stored == events accepted (nothing lost)", stored == http.accepted, f"{stored} / {http.accepted}")
        )
        request_rate = rate(len(http.latencies), http.seconds)
        report(
            "HTTP ingest (POST /api/v1/events)",
            [
                ("events accepted", f"{http.accepted} of {args.events} posted"),
                ("wall clock", f"{http.seconds:.2f} s"),
                ("throughput", f"{http_rate:,.0f} events/s, {request_rate:,.0f} requests/s"),
                ("server cpu per request", per_request_cpu(http_cpu, max(len(http.latencies), 1))),
                ("load average (1 min)", f"{os.getloadavg()[0]:.1f}"),
                ("batch latency p50", f"{percentile(http.latencies, 0.50) * 1000:.0f} ms"),
                ("batch latency p95", f"{percentile(http.latencies, 0.95) * 1000:.0f} ms"),
                ("batch latency max", f"{max(http.latencies) * 1000:.0f} ms"),
                ("events in database", f"{stored}"),
                ("leads in database", count_leads()),
                ("scoring tasks enqueued", f"{enqueued} in Redis (not run)"),
                *cpu_rows(http_cpu, max(http.accepted, 1), http.seconds),
                *[(f"db connections: {label}", f"{share * 100:.0f}% of samples") for label, share in activity[:6]],
                ("machine speed probe", speed),
            ],
        )
        for failure in http.failures[:5]:
            print(f"  failed batch: {short(failure)}")
        if server_errors:
            print(f"  server log: {len(server_errors)} error lines, e.g.:")
            for line in dict.fromkeys(short(line) for line in server_errors[-40:]):
                print(f"    {line}")

        naive_rate = 0.0
        if args.naive_sample:
            print(f"\nNaive per-event ORM loop on {args.naive_sample} events…", flush=True)
            meter = CpuMeter(
                {"postgresql backends": lambda: postgres_backend_pids(args.database_url)},
                this_process="django (this process)",
            )
            meter.start()
            naive_source_id, naive_seconds = naive_ingest(naive_events)
            naive_cpu = meter.stop()
            naive_rate = rate(args.naive_sample, naive_seconds)
            naive_stored = count_events(naive_source_id)
            checks.append(
                (
                    "events stored == events written (naive)",
                    naive_stored == args.naive_sample,
                    f"{naive_stored} / {args.naive_sample}",
                )
            )
            report(
                "Naive per-event ORM loop (one transaction per event, 1 process)",
                [
                    ("events", args.naive_sample),
                    ("wall clock", f"{naive_seconds:.2f} s"),
                    ("throughput", f"{naive_rate:,.0f} events/s"),
                    *cpu_rows(naive_cpu, args.naive_sample, naive_seconds),
                ],
            )

        ratio = http_rate / naive_rate if naive_rate else float("nan")
        met_rate = http_rate >= HTTP_TARGET_EVENTS_PER_SECOND
        met_ratio = bool(naive_rate) and ratio >= NAIVE_RATIO_TARGET
        p50, p95 = percentile(http.latencies, 0.5) * 1000, percentile(http.latencies, 0.95) * 1000
        summary: list[tuple[str, object]] = [
            (
                "HTTP ingest",
                f"{http_rate:,.0f} events/s (target >= {HTTP_TARGET_EVENTS_PER_SECOND:,}): {verdict(met_rate)}",
            ),
            ("batch latency p50/p95", f"{p50:.0f} / {p95:.0f} ms"),
            ("machine speed probe", speed),
        ]
        if baseline is not None:
            floor = rate(len(baseline.latencies), baseline.seconds)
            summary.append(
                (
                    "requests/s: ingest / 404 baseline",
                    f"{request_rate:,.0f} / {floor:,.0f} = {request_rate / floor:.2f} "
                    f"(p95 {p95:.0f} ms / {percentile(baseline.latencies, 0.95) * 1000:.0f} ms)",
                )
            )
        if segment is not None:
            share = segment_rate / http_rate if http_rate else float("nan")
            summary.append(
                (
                    "Segment / native batch",
                    f"{segment_rate:,.0f} / {http_rate:,.0f} events/s = {share:.0%} "
                    f"(target >= {SEGMENT_RATIO_TARGET:.0%}): {verdict(share >= SEGMENT_RATIO_TARGET)}",
                )
            )
        if naive_rate:
            summary.append(("naive loop", f"{naive_rate:,.0f} events/s"))
            summary.append(
                ("HTTP / naive", f"{ratio:.1f}x (target >= {NAIVE_RATIO_TARGET:.0f}x): {verdict(met_ratio)}")
            )
        summary += [(what, ("ok" if ok else "FAILED") + f" ({detail})") for what, ok, detail in checks]
        if http_cpu.machine_total and http_cpu.others / http_cpu.machine_total > NOISY_NEIGHBOURS:
            summary.append(
                (
                    "warning",
                    f"other processes used {http_cpu.others / http_cpu.machine_total:.0%} of the CPUs during the "
                    "HTTP phase, so the rates understate this machine: rerun when it is quiet",
                )
            )
        report("Summary", summary)
        return 0 if all(ok for _, ok, _ in checks) else 1
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            redis_flush(args.broker_url)
            if not args.url:
                close_django_connections()
                database_drop(args.database_url)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
