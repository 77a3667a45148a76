"""Rescore benchmark: the bulk rescore of every lead (publishing a ruleset, the nightly
decay refresh) on PostgreSQL, compared with the same scores computed by plain SQL
without writing (the floor), with a naive per-lead ORM loop, and the incremental
path's throughput on a backlog of flagged leads.

    .venv/bin/python bench/rescore.py                                     # 100k leads, 2M events
    .venv/bin/python bench/rescore.py --leads 1000000 --events 10000000   # the issue's target size
    .venv/bin/python bench/rescore.py --reuse                             # keep the data generated before
    .venv/bin/python bench/rescore.py --reuse --experiments               # + profiling experiments
    .venv/bin/python bench/rescore.py --reuse --variant improved          # alternatives patched in
    .venv/bin/python bench/rescore.py --reuse --only-experiments --experiments compute,write

The data is generated with COPY into the database ``leadflow_bench_rescore`` (dropped,
created and migrated first; its name must contain "bench"), then VACUUM ANALYZE.
Every lead starts unscored, most of them ``new``, as after an import. Then, in this
process (Django set up against that database):

1. the SQL floor: ``scoring.bulk.scores_sql`` wrapped in an aggregate (computes
   every score, writes nothing), and two simpler hand-written queries for scale;
2. the bulk rescore, ``rescore_run_execute`` on the published default ruleset, twice:
   first from the unscored state (many stage transitions, "publish after import"),
   then again (scores move only by decay, few transitions, "nightly refresh"); each
   split in phases by timing the statements it runs;
3. correctness: a random sample of leads rescored in Python with ``score_lead`` at
   the stored ``scored_at`` must equal the stored fit, behaviour and score; every
   lead's stored score must equal ``scores_sql`` at that instant;
4. a naive per-lead ORM loop on a sample, extrapolated to every lead;
5. the incremental path (``leads_score``) on a backlog of flagged leads;
6. with ``--experiments``: EXPLAIN ANALYZE of the bulk statements and measured
   alternatives (labelled EXPERIMENT: none of them is the product's code), each in a
   rolled-back transaction and compared with what the product computes or writes.
   ``--variant improved`` runs 1-5 with two of them patched in (see ``variant_patches``).

Exit status: 0 when every correctness check passes (throughput targets are only
reported), 1 when one fails, 2 on a usage error, 3 when the benchmark cannot run.
Results and their interpretation: bench/RESULTS.md, section "Rescore".
"""

import argparse
import contextlib
import io
import itertools
import json
import math
import queue
import random
import sys
import threading
import time
import traceback
import uuid
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

if __package__ in (None, ""):  # run as a script: make `bench` and `leadflow` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2  # noqa: E402
from psycopg2 import sql as pgsql  # noqa: E402

from bench.common import (  # noqa: E402
    OUT_DIR,
    ROOT,
    BenchError,
    bench_env,
    database_reset,
    django_setup,
    machine_summary,
    manage,
    postgres_version,
    rate,
    report,
    stopwatch,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadflow_bench_rescore"
BULK_TARGET_SECONDS = 60.0  # for 1M leads / 10M events on the 2-core machine
FLOOR_RATIO_TARGET = 2.0
NAIVE_RATIO_TARGET = 50.0
INCREMENTAL_TARGET_EVENTS_PER_SECOND = 17_000
META_TABLE = "bench_rescore_meta"
SOURCE_SLUG = "bench-rescore"
DAY_SECONDS = 86_400.0
BULK_WORK_MEM = "256MB"  # what bulk.scores_table sets for its session (SCORES_WORK_MEM); the floor gets the same

# --- Generated data ---------------------------------------------------------------------------
# (event type, relative frequency): passive behaviour dominates, hand-raises are rare.
EVENT_TYPES: list[tuple[str, int]] = [
    ("page_view", 450),
    ("email_open", 200),
    ("email_click", 70),
    ("content_download", 55),
    ("pricing_view", 45),
    ("webinar_registered", 35),
    ("webinar_attended", 18),
    ("form_submit", 25),
    ("unsubscribe", 6),
    ("demo_request", 7),
    ("contact_request", 5),
]
TOPICS = ["lead scoring", "sales handoff", "attribution", "revops", "nurturing", "intent data"]
PAGES = [
    "/",
    "/product",
    "/product/scoring",
    "/product/handoff",
    "/customers",
    "/integrations",
    "/blog/mql-vs-sql",
    "/blog/lead-decay",
    "/docs/api",
    "/about",
    "/careers",
    "/security",
]
REFERRERS = ["google", "linkedin", "direct", "newsletter", "g2"]
ASSETS = ["lead-scoring-guide.pdf", "state-of-b2b-2026.pdf", "roi-calculator.xlsx", "handoff-playbook.pdf"]
CAMPAIGNS = ["q4-nurture", "webinar-invite", "product-update-11", "trial-onboarding", "winback", "newsletter-42"]
WEBINARS = ["scoring-101", "from-mql-to-revenue", "sla-that-works", "decay-explained"]
FORMS = ["newsletter", "ebook-gate", "event-signup", "partner"]
PLANS = ["starter", "growth", "enterprise"]

# fmt: off
FIRST_NAMES = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Linus", "Sophie",
    "Lucas", "Emma", "Noah", "Mia", "Liam", "Olivia", "Hugo", "Chloe", "Arthur", "Léa", "Jonas", "Ines", "Mateo",
    "Aisha", "Kenji", "Priya", "Omar", "Sara", "Tom",
]
LAST_NAMES = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Torvalds",
    "Martin", "Bernard", "Dubois", "Müller", "Schmidt", "García", "Rossi", "Nakamura", "Patel", "Khan", "Silva",
    "Johansson", "Novak", "O'Brien", "Smith", "Nguyen", "Kowalski", "Laurent",
]
COMPANY_WORDS = [
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell", "Cyberdyne",
    "Soylent", "Wonka", "Aperture",
]
COMPANY_SUFFIXES = [
    "Labs", "Systems", "Group", "Analytics", "Cloud", "Partners", "Industries", "Software", "GmbH", "SAS",
]
# fmt: on
PERSONAL_DOMAINS = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "gmx.com", "proton.me"]
PERSONAL_EMAIL_SHARE = 0.22
# (job title, weight): the default ruleset rewards vp / chief / director / head of.
JOB_TITLES: list[tuple[str, int]] = [
    ("Marketing Manager", 14),
    ("Software Engineer", 10),
    ("Sales Representative", 8),
    ("Analyst", 8),
    ("Marketing Operations Specialist", 6),
    ("Product Manager", 6),
    ("Consultant", 5),
    ("Director of Marketing", 5),
    ("Senior Director, Demand Generation", 2),
    ("Head of Growth", 4),
    ("head of sales", 2),
    ("VP Marketing", 3),
    ("VP of Sales", 2),
    ("SVP Revenue", 1),
    ("Chief Marketing Officer", 2),
    ("Chief Revenue Officer", 1),
    ("CEO & Founder", 3),
    ("Founder", 2),
    ("Student", 3),
    ("", 8),
]
INDUSTRIES: list[tuple[str, int]] = [
    ("Software", 20),
    ("SaaS", 8),
    ("Technology", 8),
    ("Financial Services", 7),
    ("FinTech", 4),
    ("Healthcare", 8),
    ("Manufacturing", 8),
    ("Retail", 7),
    ("Education", 6),
    ("Government", 3),
    ("Media", 4),
    ("Consulting", 6),
    ("", 11),
]
# (low, high, weight) employee counts; None: unknown.
COMPANY_SIZES: list[tuple[int, int, int] | None] = [
    None,
    (1, 10, 15),
    (11, 50, 20),
    (51, 200, 20),
    (201, 500, 12),
    (501, 1000, 8),
    (1001, 5000, 8),
    (5001, 50000, 7),
]
COMPANY_SIZE_UNKNOWN_WEIGHT = 10
COUNTRIES = ["US", "US", "US", "GB", "DE", "FR", "NL", "ES", "SE", "CA", "AU", "IN", "BR", "JP"]
UTM_SOURCES = ["google", "linkedin", "newsletter", "partner", "g2", "", "", ""]
UTM_MEDIUMS = ["cpc", "social", "email", "referral", "", ""]
UTM_CAMPAIGNS = ["brand-2026", "scoring-launch", "webinar-q1", "retargeting", "", "", ""]
TRAITS = [
    "{}",
    "{}",
    '{"plan": "free", "newsletter": true}',
    '{"plan": "trial", "newsletter": false, "seats": 3}',
    '{"crm": {"owner": "emea"}, "newsletter": true}',
    '{"lifecycle": "customer", "plan": "growth"}',
]
DORMANT_SHARE = 0.15  # leads without any event (imported, never came back)
ACTIVITY_SEGMENTS = 12  # the window in slices; each lead's activity rises and falls over them

# fmt: off
LEAD_COLUMNS = [
    "id", "public_id", "email", "external_id", "name", "company", "job_title", "industry", "country",
    "company_size", "source_id", "utm_source", "utm_medium", "utm_campaign", "traits", "stage", "fit_score",
    "behaviour_score", "score", "scored_at", "ruleset_version", "mql_at", "sql_at", "recycled_at", "owner_id",
    "last_activity_at", "needs_rescore", "created_at", "updated_at",
]
EVENT_COLUMNS = [
    "id", "lead_id", "source_id", "event_id", "type", "properties", "occurred_at", "received_at", "fingerprint",
]
# fmt: on
NULL = "\\N"  # COPY text format
ScoresSql = Callable[[Any], tuple[str, dict[str, Any]]]  # bulk.scores_sql and its alternatives


def initial_stage(lead_id: int) -> tuple[str, int | None, int | None, int | None]:
    """(stage, mql_at, sql_at, recycled_at as days after created_at) of a lead before the
    benchmark: a CRM's mix, most leads new. Must match LEAD_STATE_RESET_SQL."""
    bucket = lead_id % 100
    if bucket < 2:
        return "accepted", 5, 12, None
    if bucket == 2:
        return "disqualified", None, None, None
    if bucket < 5:
        return "recycled", 5, None, 20
    if bucket < 8:
        return "mql", 5, None, None
    return "new", None, None, None


LEAD_STATE_RESET_SQL = """
    UPDATE leads_lead l SET
        stage = CASE WHEN l.id % 100 < 2 THEN 'accepted' WHEN l.id % 100 = 2 THEN 'disqualified'
                     WHEN l.id % 100 < 5 THEN 'recycled' WHEN l.id % 100 < 8 THEN 'mql' ELSE 'new' END,
        mql_at = CASE WHEN l.id % 100 < 2 OR l.id % 100 BETWEEN 3 AND 7 THEN l.created_at + interval '5 days' END,
        sql_at = CASE WHEN l.id % 100 < 2 THEN l.created_at + interval '12 days' END,
        recycled_at = CASE WHEN l.id % 100 IN (3, 4) THEN l.created_at + interval '20 days' END,
        fit_score = 0, behaviour_score = 0, score = 0, scored_at = NULL, ruleset_version = NULL,
        needs_rescore = false, updated_at = l.created_at
"""


@dataclass(frozen=True)
class DataSpec:
    leads: int
    events: int
    days: int
    seed: int


def _weighted(pairs: Sequence[tuple[str, int]]) -> tuple[list[str], list[int]]:
    values = [value for value, _ in pairs]
    return values, list(itertools.accumulate(weight for _, weight in pairs))


def property_variants() -> dict[str, list[str]]:
    """Every event type's possible ``properties``, serialised once (COPY-safe JSON)."""
    product = itertools.product
    variants: dict[str, list[dict[str, Any]]] = {
        "page_view": [{"url": u, "topic": t, "referrer": r} for u, t, r in product(PAGES, TOPICS, REFERRERS)],
        "email_open": [{"campaign": c, "topic": t} for c, t in product(CAMPAIGNS, TOPICS)],
        "email_click": [{"campaign": c, "url": u, "topic": t} for c, u, t in product(CAMPAIGNS, PAGES, TOPICS)],
        "content_download": [{"asset": a, "topic": t, "url": f"/resources/{a}"} for a, t in product(ASSETS, TOPICS)],
        "pricing_view": [{"url": "/pricing", "plan": p, "topic": "pricing"} for p in PLANS],
        "webinar_registered": [
            {"webinar": w, "topic": t, "url": f"/webinars/{w}"} for w, t in product(WEBINARS, TOPICS)
        ],
        "webinar_attended": [
            {"webinar": w, "topic": t, "minutes": m} for w, t, m in product(WEBINARS, TOPICS, [12, 35, 58])
        ],
        "form_submit": [{"form": f, "url": u, "topic": t} for f, u, t in product(FORMS, PAGES, TOPICS)],
        "unsubscribe": [{"campaign": c, "reason": r} for c, r in product(CAMPAIGNS, ["too many", "not relevant"])],
        "demo_request": [{"form": "demo", "url": "/demo", "plan": p, "topic": t} for p, t in product(PLANS, TOPICS)],
        "contact_request": [{"form": "contact", "url": "/contact", "topic": t} for t in TOPICS],
    }
    serialised = {name: [json.dumps(item, separators=(",", ":")) for item in items] for name, items in variants.items()}
    for items in serialised.values():
        for text in items:
            if "\\" in text or "\t" in text or "\n" in text:
                raise BenchError(f"Property JSON {text!r} needs COPY escaping")
    return serialised


def lead_activity(spec: DataSpec, rng: random.Random) -> tuple[array, array, array]:
    """Per lead (index 0 is lead 1): base activity (lognormal; 0 for dormant leads),
    the moment (fraction of the window) its interest peaks, and how long it lasts."""
    base = array(
        "d", (0.0 if rng.random() < DORMANT_SHARE else rng.lognormvariate(0.0, 1.1) for _ in range(spec.leads))
    )
    peak = array("d", (rng.uniform(-0.3, 1.2) for _ in range(spec.leads)))
    spread = array("d", (rng.uniform(0.08, 0.8) for _ in range(spec.leads)))
    return base, peak, spread


def event_chunks(
    spec: DataSpec, *, source_id: int, start_ts: float, chunk_rows: int, last_activity: array
) -> Iterator[tuple[int, str]]:
    """(rows, COPY text) chunks of events in time order over the window; each event's
    lead is drawn by that lead's activity at that moment. Fills ``last_activity``."""
    rng = random.Random(spec.seed)
    base, peak, spread = lead_activity(spec, rng)
    type_names, type_cum = _weighted(EVENT_TYPES)
    type_indexes = range(len(type_names))
    variants = property_variants()
    type_variants = [variants[name] for name in type_names]
    population = range(1, spec.leads + 1)
    window = spec.days * DAY_SECONDS
    from_ts = datetime.fromtimestamp
    number = 0
    for segment in range(ACTIVITY_SEGMENTS):
        middle = (segment + 0.5) / ACTIVITY_SEGMENTS
        cumulative = array(
            "d",
            itertools.accumulate(
                b * math.exp(-(((middle - p) / s) ** 2)) if b else 0.0
                for b, p, s in zip(base, peak, spread, strict=True)
            ),
        )
        if cumulative[-1] <= 0:
            raise BenchError("No lead is active: use more leads.")
        count = spec.events * (segment + 1) // ACTIVITY_SEGMENTS - spec.events * segment // ACTIVITY_SEGMENTS
        segment_start = start_ts + window * segment / ACTIVITY_SEGMENTS
        step = window / ACTIVITY_SEGMENTS / max(count, 1)
        for offset in range(0, count, chunk_rows):
            size = min(chunk_rows, count - offset)
            owners = rng.choices(population, cum_weights=cumulative, k=size)
            kinds = rng.choices(type_indexes, cum_weights=type_cum, k=size)
            random_ = rng.random
            lines = []
            for index in range(size):
                ts = segment_start + (offset + index + random_()) * step
                lead_id = owners[index]
                kind = kinds[index]
                options = type_variants[kind]
                properties = options[int(random_() * len(options))]
                stamp = from_ts(ts, UTC).isoformat()
                last_activity[lead_id - 1] = ts
                number += 1
                lines.append(
                    f"{number}\t{lead_id}\t{source_id}\tev-{number:010d}\t{type_names[kind]}\t{properties}\t"
                    f"{stamp}\t{stamp}\t{number:064x}\n"
                )
            yield size, "".join(lines)


def lead_chunks(
    spec: DataSpec, *, source_id: int, start_ts: float, chunk_rows: int, last_activity: array
) -> Iterator[tuple[int, str]]:
    """(rows, COPY text) chunks of leads with varied profiles, ids 1..N."""
    rng = random.Random(spec.seed + 1)
    titles, title_cum = _weighted(JOB_TITLES)
    industries, industry_cum = _weighted(INDUSTRIES)
    size_weights = list(
        itertools.accumulate(COMPANY_SIZE_UNKNOWN_WEIGHT if band is None else band[2] for band in COMPANY_SIZES)
    )
    from_ts = datetime.fromtimestamp
    for first_id in range(1, spec.leads + 1, chunk_rows):
        last_id = min(first_id + chunk_rows, spec.leads + 1)
        size = last_id - first_id
        title_picks = rng.choices(titles, cum_weights=title_cum, k=size)
        industry_picks = rng.choices(industries, cum_weights=industry_cum, k=size)
        size_picks = rng.choices(COMPANY_SIZES, cum_weights=size_weights, k=size)
        lines = []
        for index, lead_id in enumerate(range(first_id, last_id)):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            word, suffix = rng.choice(COMPANY_WORDS), rng.choice(COMPANY_SUFFIXES)
            company = f"{word} {suffix}"
            personal = rng.random() < PERSONAL_EMAIL_SHARE
            domain = rng.choice(PERSONAL_DOMAINS) if personal else f"{word}-{suffix}.example"
            local = f"{first}.{last}".replace("'", "")
            email = f"{local}.{lead_id}@{domain}".lower()
            band = size_picks[index]
            company_size = str(rng.randint(band[0], band[1])) if band else NULL
            created_ts = start_ts - rng.uniform(0, 60) * DAY_SECONDS
            created = from_ts(created_ts, UTC)
            stage, mql_days, sql_days, recycled_days = initial_stage(lead_id)
            activity = last_activity[lead_id - 1]

            row = [
                str(lead_id),
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                email,
                f"crm-{lead_id:08d}" if lead_id % 3 == 0 else NULL,
                f"{first} {last}",
                company,
                title_picks[index],
                industry_picks[index],
                rng.choice(COUNTRIES),
                company_size,
                str(source_id),
                rng.choice(UTM_SOURCES),
                rng.choice(UTM_MEDIUMS),
                rng.choice(UTM_CAMPAIGNS),
                rng.choice(TRAITS),
                stage,
                "0",
                "0",
                "0",
                NULL,
                NULL,
                _days_after(created, mql_days),
                _days_after(created, sql_days),
                _days_after(created, recycled_days),
                NULL,
                from_ts(activity, UTC).isoformat() if activity else NULL,
                "f",
                created.isoformat(),
                created.isoformat(),
            ]
            lines.append("\t".join(row) + "\n")
        yield size, "".join(lines)


def _days_after(moment: datetime, days: int | None) -> str:
    return NULL if days is None else (moment + timedelta(days=days)).isoformat()


def copy_chunks(
    connection: Any, table: str, columns: Sequence[str], chunks: Iterator[tuple[int, str]], total: int
) -> float:
    """COPY the chunks into ``table``, generating the next chunk in a thread while the
    server ingests the current one (psycopg2 releases the GIL while it waits). Prints
    progress; returns the seconds taken."""
    pending: queue.Queue[tuple[int, str] | BaseException | None] = queue.Queue(maxsize=2)

    def produce() -> None:
        try:
            for chunk in chunks:
                pending.put(chunk)
            pending.put(None)
        except BaseException as error:  # handed to the main thread, which reports it
            pending.put(error)

    statement = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
        pgsql.Identifier(table), pgsql.SQL(", ").join(pgsql.Identifier(column) for column in columns)
    )
    thread = threading.Thread(target=produce, name=f"generate-{table}", daemon=True)
    done = 0
    last_print = 0.0
    began = time.perf_counter()
    thread.start()
    with connection.cursor() as cursor:
        copy_sql = statement.as_string(cursor)
        while True:
            item = pending.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise BenchError(f"Generating {table} failed: {item!r}") from item
            rows, text = item
            cursor.copy_expert(copy_sql, io.StringIO(text), size=1 << 20)
            done += rows
            now = time.perf_counter()
            if now - last_print >= 5 or done == total:
                last_print = now
                elapsed = now - began
                speed = rate(done, elapsed)
                eta = (total - done) / speed if speed else 0
                print(
                    f"  {table}: {done:,}/{total:,} ({100 * done / max(total, 1):.0f}%) "
                    f"{speed:,.0f} rows/s, {elapsed:.0f}s elapsed, ~{eta:.0f}s left",
                    flush=True,
                )
    connection.commit()
    thread.join()
    return time.perf_counter() - began


def secondary_schema(cursor: Any, table: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(constraints, indexes) of ``table`` other than its primary key: (name, definition)."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype <> 'p' ORDER BY conname",
        [table],
    )
    constraints = list(cursor.fetchall())
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) ORDER BY i.relname",
        [table],
    )
    return constraints, list(cursor.fetchall())


def load_data(database_url: str, spec: DataSpec, *, chunk_rows: int) -> dict[str, float]:
    """Generate and COPY the leads and events of a freshly migrated database. Secondary
    indexes and constraints are dropped for the load and rebuilt after it."""
    timings: dict[str, float] = {}
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '1GB'")
            cursor.execute(
                "INSERT INTO leads_source (name, slug, created_at) VALUES (%s, %s, now()) RETURNING id",
                ["Benchmark rescore", SOURCE_SLUG],
            )
            (source_id,) = cursor.fetchone()
            saved = {table: secondary_schema(cursor, table) for table in ("leads_event", "leads_lead")}
            for table, (constraints, indexes) in saved.items():
                for name, _definition in constraints:
                    cursor.execute(
                        pgsql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                            pgsql.Identifier(table), pgsql.Identifier(name)
                        )
                    )
                for name, _definition in indexes:
                    cursor.execute(pgsql.SQL("DROP INDEX {}").format(pgsql.Identifier(name)))
        connection.commit()

        now_ts = time.time()
        start_ts = now_ts - spec.days * DAY_SECONDS
        last_activity = array("d", bytes(8 * spec.leads))
        print(f"Generating {spec.events:,} events over {spec.days} days (COPY in chunks of {chunk_rows:,})…")
        timings["copy events"] = copy_chunks(
            connection,
            "leads_event",
            EVENT_COLUMNS,
            event_chunks(
                spec, source_id=source_id, start_ts=start_ts, chunk_rows=chunk_rows, last_activity=last_activity
            ),
            spec.events,
        )
        print(f"Generating {spec.leads:,} leads…")
        timings["copy leads"] = copy_chunks(
            connection,
            "leads_lead",
            LEAD_COLUMNS,
            lead_chunks(
                spec, source_id=source_id, start_ts=start_ts, chunk_rows=chunk_rows, last_activity=last_activity
            ),
            spec.leads,
        )
        print("Rebuilding indexes and constraints…", flush=True)
        with stopwatch() as watch, connection.cursor() as cursor:
            for table in ("leads_lead", "leads_event"):
                constraints, indexes = saved[table]
                for _name, definition in indexes:
                    cursor.execute(definition)
                for name, definition in sorted(constraints, key=lambda item: "FOREIGN KEY" in item[1]):
                    cursor.execute(
                        pgsql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                            pgsql.Identifier(table), pgsql.Identifier(name)
                        )
                        + pgsql.SQL(definition)
                    )
                connection.commit()
                print(f"  {table}: {len(indexes)} indexes, {len(constraints)} constraints", flush=True)
            for table in ("leads_lead", "leads_event"):
                cursor.execute(
                    pgsql.SQL("SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT max(id) FROM {}))").format(
                        pgsql.Identifier(table)
                    ),
                    [table],
                )
            cursor.execute(
                pgsql.SQL(
                    "CREATE TABLE {} (leads bigint, events bigint, days int, seed int, generated_at timestamptz, "
                    "clean boolean)"
                ).format(pgsql.Identifier(META_TABLE))
            )
            cursor.execute(
                pgsql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, to_timestamp(%s), true)").format(
                    pgsql.Identifier(META_TABLE)
                ),
                [spec.leads, spec.events, spec.days, spec.seed, now_ts],
            )
        connection.commit()
        timings["indexes and constraints"] = watch.seconds
        connection.autocommit = True
        with stopwatch() as watch, connection.cursor() as cursor:
            print("VACUUM ANALYZE…", flush=True)
            cursor.execute("VACUUM ANALYZE")
        timings["vacuum analyze"] = watch.seconds
    finally:
        connection.close()
    return timings


def stored_data(database_url: str) -> tuple[DataSpec | None, datetime | None, bool]:
    """The data spec, generation time and cleanliness recorded in the database, if any."""
    try:
        connection = psycopg2.connect(database_url)
    except psycopg2.OperationalError:
        return None, None, False
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s)", [META_TABLE])
            if (cursor.fetchone() or [None])[0] is None:
                return None, None, False
            cursor.execute(
                pgsql.SQL("SELECT leads, events, days, seed, generated_at, clean FROM {}").format(
                    pgsql.Identifier(META_TABLE)
                )
            )
            row = cursor.fetchone()
            if row is None:
                return None, None, False
            cursor.execute("SELECT (SELECT count(*) FROM leads_lead), (SELECT count(*) FROM leads_event)")
            counts = cursor.fetchone()
    finally:
        connection.close()
    leads, events, days, seed, generated_at, clean = row
    if counts != (leads, events):
        return None, None, False
    return DataSpec(leads=leads, events=events, days=days, seed=seed), generated_at, bool(clean)


def prepare_state(database_url: str, clean: bool) -> float:
    """Put every lead back in its generated state (unscored, the CRM's stage mix) if an
    earlier run changed it, compacted as after the load; mark the data used."""
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    try:
        with stopwatch() as watch, connection.cursor() as cursor:
            if not clean:
                print("Resetting the leads to their generated state (VACUUM FULL)…", flush=True)
                # What scoring wrote: the tables referring to leads (stage changes, handoffs and
                # theirs, by CASCADE), never the events; and the runs.
                cursor.execute(
                    "SELECT DISTINCT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' "
                    "AND confrelid = 'leads_lead'::regclass AND conrelid <> 'leads_event'::regclass"
                )
                dependents = [name for (name,) in cursor.fetchall()]
                cursor.execute("BEGIN")
                cursor.execute(
                    pgsql.SQL("TRUNCATE {} CASCADE").format(
                        pgsql.SQL(", ").join(pgsql.Identifier(name) for name in [*dependents, "scoring_rescorerun"])
                    )
                )
                cursor.execute(LEAD_STATE_RESET_SQL)
                cursor.execute("COMMIT")
                cursor.execute("VACUUM FULL leads_lead")
                cursor.execute("VACUUM ANALYZE leads_lead")
            cursor.execute(pgsql.SQL("UPDATE {} SET clean = false").format(pgsql.Identifier(META_TABLE)))
            cursor.execute("CHECKPOINT")  # start every run with the WAL of the load behind it
    finally:
        connection.close()
    return watch.seconds


# --- Measurements (Django set up) ---------------------------------------------------------------
@dataclass
class Statement:
    started: float
    finished: float
    sql: str


@dataclass
class StatementLog:
    """A Django execute wrapper recording every statement's wall time."""

    statements: list[Statement] = field(default_factory=list)

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.statements.append(Statement(started, time.perf_counter(), sql))

    def first(self, needle: str) -> Statement | None:
        return next((s for s in self.statements if needle in s.sql), None)

    def last(self, needle: str) -> Statement | None:
        return next((s for s in reversed(self.statements) if needle in s.sql), None)

    def total(self, needle: str) -> tuple[int, float]:
        matching = [s.finished - s.started for s in self.statements if needle in s.sql]
        return len(matching), sum(matching)


@dataclass
class BulkResult:
    label: str
    seconds: float
    transitions: int
    phases: list[tuple[str, str]]
    wal_bytes: int
    updated_rows: int
    hot_rows: int
    stages: dict[str, int]


def _server_counters() -> tuple[int, int, int]:
    """(WAL position, rows updated, HOT updates) of leads_lead, as the server counts them."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint, n_tup_upd, n_tup_hot_upd "
            "FROM pg_stat_user_tables WHERE relname = 'leads_lead'"
        )
        row = cursor.fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def _wait_for_stats(before: tuple[int, int, int], expected_rows: int) -> tuple[int, int, int]:
    """Table statistics reach the cumulative view shortly after the transactions end."""
    after = _server_counters()
    deadline = time.monotonic() + 3
    while after[1] - before[1] < expected_rows and time.monotonic() < deadline:
        time.sleep(0.2)
        after = _server_counters()
    return after


def stage_counts() -> dict[str, int]:
    from django.db.models import Count

    from leadflow.leads.models import Lead

    return {row["stage"]: row["n"] for row in Lead.objects.values("stage").annotate(n=Count("id")).order_by("stage")}


def time_bulk(ruleset: Any, label: str, total_leads: int) -> BulkResult:
    """``rescore_run_execute`` as the Celery task runs it, with its statements timed."""
    from django.db import connection

    from scoring.models import RescoreRun, RescoreState
    from scoring.services import rescore_run_execute

    run = RescoreRun.objects.create(ruleset=ruleset, reason="bench", state=RescoreState.QUEUED, total=total_leads)
    log = StatementLog()
    last_print = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last_print[0] >= 5 or done == total:
            last_print[0] = now
            print(f"  {label}: {done:,}/{total:,} leads written", flush=True)

    before = _server_counters()
    with connection.execute_wrapper(log), stopwatch() as watch:
        run = rescore_run_execute(run=run, progress=progress)
    after = _wait_for_stats(before, total_leads)
    if run.state != RescoreState.DONE:
        raise BenchError(f"The rescore run ended {run.state}: {run.error}")
    return BulkResult(
        label=label,
        seconds=watch.seconds,
        transitions=run.changed_stages,
        phases=bulk_phases(log, watch.started, watch.started + watch.seconds),
        wal_bytes=after[0] - before[0],
        updated_rows=after[1] - before[1],
        hot_rows=after[2] - before[2],
        stages=stage_counts(),
    )


def bulk_phases(log: StatementLog, started: float, finished: float) -> list[tuple[str, str]]:
    """The run's wall time split at the statements that open each phase of
    ``_rescore_all_sql`` (every phase includes its Python work and commits). Since
    runs became resumable, each chunk writes its scores, applies its transitions
    and records its progress in one transaction, so writes and transitions interleave."""
    from leadflow.db import SqlNames
    from leadflow.leads.models import Lead
    from scoring.bulk import SCORES_TABLE

    write = f"UPDATE {SqlNames(Lead).table} l"  # ScoresTable.write
    compute = log.first(f"CREATE TEMP TABLE {SCORES_TABLE}")
    primary_key = log.first("ADD PRIMARY KEY")
    first_update = log.first(write)
    cleanup = log.last(f"DROP TABLE IF EXISTS {SCORES_TABLE}")
    if not (compute and primary_key and first_update and cleanup):
        return [("phases", "not recognised: scoring.bulk changed? (total only)")]
    updates, update_seconds = log.total(write)
    candidates, candidate_seconds = log.total("SELECT s.id, s.last_intent_at")
    chunk_queries = [s for s in log.statements if first_update.started <= s.started < cleanup.started]
    rows = [
        ("claim, ruleset, count", compute.started - started),
        ("compute: CREATE TEMP TABLE AS scores_sql", compute.finished - compute.started),
        ("temp table primary key", primary_key.finished - primary_key.started),
        ("chunks (write + transitions + progress), wall", cleanup.started - first_update.started),
        (f"  of which {updates} score UPDATE statements", update_seconds),
        (f"  of which {candidates} candidate SELECTs", candidate_seconds),
        (f"  of which {len(chunk_queries)} statements in all", sum(s.finished - s.started for s in chunk_queries)),
        ("drop temp table, finish run", finished - cleanup.started),
    ]
    return [(name, f"{seconds:8.2f} s") for name, seconds in rows]


def time_floor(spec: Any, as_of: datetime, product_scores_sql: ScoresSql) -> list[tuple[str, float, str]]:
    """The same computation without writing, and simpler queries for scale: (name, seconds, result)."""
    from django.db import connection

    from scoring import bulk

    scores, params = bulk.scores_sql(spec)
    params["as_of"] = as_of
    simple, simple_params = behaviour_float_sql(spec)
    simple_params["as_of"] = as_of
    product, product_params = product_scores_sql(spec)
    product_params["as_of"] = as_of
    queries = [
        ("scan: count(*) of events", "SELECT count(*) FROM leads_event", {}),
        (
            "group: count(*) per lead of events",
            "SELECT count(*), sum(n) FROM (SELECT lead_id, count(*) AS n FROM leads_event GROUP BY lead_id) s",
            {},
        ),
        (
            "hand-written: behaviour per (lead, type), float",
            f"SELECT count(*), round(sum(behaviour)::numeric, 2) FROM ({simple}) s",
            simple_params,
        ),
    ]
    if product != scores:
        queries.append(
            (
                "the product's scores_sql, aggregated",
                f"SELECT count(*), sum(fit), sum(behaviour) FROM ({product}) s",
                product_params,
            )
        )
    queries.append(
        (
            "FLOOR: scores_sql, aggregated" + (" (EXPERIMENT variant)" if product != scores else ""),
            f"SELECT count(*), sum(fit), sum(behaviour) FROM ({scores}) s",
            params,
        )
    )
    results = []
    with connection.cursor() as cursor:
        cursor.execute(f"SET work_mem = '{BULK_WORK_MEM}'")
        for name, query, query_params in queries:
            with stopwatch() as watch:
                cursor.execute(query, query_params)
                row = cursor.fetchone()
            results.append((name, watch.seconds, ", ".join(str(value) for value in row or ())))
        cursor.execute("RESET work_mem")
    return results


def behaviour_float_sql(spec: Any) -> tuple[str, dict[str, Any]]:
    """A simpler behaviour query for scale: one GROUP BY (lead, type) over the events
    joined to the rules, float decay, no per-event rounding, then caps per lead.
    Not exact (no numeric rounding, no property conditions): never used for scores."""
    values, params = [], {}
    for index, rule in enumerate(spec.behaviour_rules):
        params.update({f"t{index}": rule.event_type, f"p{index}": float(rule.points), f"w{index}": rule.window_days})
        params[f"c{index}"] = float(rule.max_points) if rule.max_points is not None else None
        values.append(f"(%(t{index})s, %(p{index})s::float8, %(w{index})s::int, %(c{index})s::float8)")
    half_life = float(spec.decay_half_life_days) if spec.decay_half_life_days else None
    decay = (
        f"power(0.5, GREATEST(EXTRACT(EPOCH FROM (%(as_of)s - e.occurred_at)), 0)::float8 / 86400 / {half_life!r})"
        if half_life
        else "1"
    )
    sql = f"""
        WITH r(type, points, window_days, cap) AS (VALUES {", ".join(values)}),
        per AS (
            SELECT e.lead_id, e.type, SUM(r.points * {decay}) AS total
            FROM leads_event e JOIN r ON r.type = e.type
            WHERE r.window_days IS NULL OR e.occurred_at >= %(as_of)s - make_interval(days => r.window_days)
            GROUP BY e.lead_id, e.type
        )
        SELECT per.lead_id, SUM(CASE WHEN r.cap IS NULL THEN per.total WHEN r.cap > 0 THEN LEAST(per.total, r.cap)
                                     ELSE GREATEST(per.total, r.cap) END) AS behaviour
        FROM per JOIN r ON r.type = per.type
        GROUP BY per.lead_id
    """
    return sql, params


@dataclass
class CheckResult:
    name: str
    checked: int
    mismatches: list[str]


def check_against_engine(spec: Any, lead_ids: Sequence[int], name: str) -> CheckResult:
    """Rescore ``lead_ids`` with the single-lead Python engine at their stored
    ``scored_at``: fit, behaviour and score must equal what the bulk engine stored."""
    from leadflow.leads.models import Event, Lead
    from scoring.engine import EventRow, score_lead
    from scoring.selectors import lead_attributes

    events: dict[int, list[EventRow]] = defaultdict(list)
    rows = Event.objects.filter(lead_id__in=lead_ids, type__in=spec.event_types).values_list(
        "lead_id", "id", "type", "properties", "occurred_at"
    )
    for lead_id, event_id, event_type, properties, occurred_at in rows.iterator(chunk_size=5000):
        events[lead_id].append(EventRow(type=event_type, properties=properties, occurred_at=occurred_at, id=event_id))
    mismatches = []
    leads = list(Lead.objects.filter(id__in=lead_ids).order_by("id"))
    for lead in leads:
        if lead.scored_at is None or lead.ruleset_version != spec.version:
            mismatches.append(f"lead {lead.pk}: scored_at={lead.scored_at} ruleset_version={lead.ruleset_version}")
            continue
        result = score_lead(lead_attributes(lead), events[lead.pk], spec, lead.scored_at)
        expected = (result.fit, result.behaviour, result.total)
        stored = (lead.fit_score, lead.behaviour_score, lead.score)
        if expected != stored:
            mismatches.append(f"lead {lead.pk}: stored (fit, behaviour, score) {stored}, Python engine {expected}")
    if len(leads) != len(set(lead_ids)):
        mismatches.append(f"{len(set(lead_ids)) - len(leads)} sampled leads are missing")
    return CheckResult(name=name, checked=len(leads), mismatches=mismatches)


def check_all_against_sql(spec: Any, reference: ScoresSql) -> CheckResult:
    """Every lead's stored scores against ``reference`` (the product's ``scores_sql``) at the run's instant (the
    write path lost or mixed up nothing); and no ``new`` lead is left above the MQL
    threshold (the transitions were applied)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT scored_at), min(scored_at), count(*) FROM leads_lead")
        instants, as_of, total = cursor.fetchone()
        if instants != 1 or as_of is None:
            return CheckResult("every lead vs scores_sql", 0, [f"{instants} distinct scored_at values"])
        scores, params = reference(spec)
        params["as_of"] = as_of
        cursor.execute(f"SET work_mem = '{BULK_WORK_MEM}'")
        cursor.execute(
            f"""SELECT count(*) FROM leads_lead l LEFT JOIN ({scores}) s ON s.id = l.id
                WHERE s.id IS NULL OR l.fit_score <> s.fit OR l.behaviour_score <> s.behaviour
                   OR l.score <> s.fit + s.behaviour OR l.ruleset_version <> %(version)s""",
            {**params, "version": spec.version},
        )
        (wrong,) = cursor.fetchone()
        cursor.execute("RESET work_mem")
        cursor.execute("SELECT count(*) FROM leads_lead WHERE stage = 'new' AND score >= %s", [spec.mql_threshold])
        (unpromoted,) = cursor.fetchone()
    mismatches = []
    if wrong:
        mismatches.append(f"{wrong} leads' stored scores differ from scores_sql")
    if unpromoted:
        mismatches.append(f"{unpromoted} new leads at or above the MQL threshold were not promoted")
    return CheckResult("every lead vs scores_sql, promotions", total, mismatches)


@dataclass
class NaiveResult:
    leads: int
    events: int
    seconds: float
    extrapolated: float


def time_naive(spec: Any, lead_ids: Sequence[int], total_leads: int) -> NaiveResult:
    """What a naive rescore does: per lead, load it, load its events, score in Python,
    save() (autocommit). Timed on a sample, extrapolated linearly to every lead."""
    from django.utils import timezone

    from leadflow.leads.models import Lead
    from scoring.engine import EventRow, score_lead
    from scoring.selectors import lead_attributes

    events_seen = 0
    with stopwatch() as watch:
        for lead_id in lead_ids:
            lead = Lead.objects.get(pk=lead_id)
            rows = [
                EventRow(type=e.type, properties=e.properties, occurred_at=e.occurred_at, id=e.pk)
                for e in lead.events.all()
            ]
            events_seen += len(rows)
            now = timezone.now()
            result = score_lead(lead_attributes(lead), rows, spec, now)
            lead.fit_score, lead.behaviour_score, lead.score = result.fit, result.behaviour, result.total
            lead.scored_at, lead.ruleset_version = now, spec.version
            lead.save()
    return NaiveResult(
        leads=len(lead_ids),
        events=events_seen,
        seconds=watch.seconds,
        extrapolated=watch.seconds / max(len(lead_ids), 1) * total_leads,
    )


@dataclass
class IncrementalResult:
    leads: int
    events: int
    seconds: float
    transitions: int
    left_flagged: int


def time_incremental(lead_ids: Sequence[int], chunk: int) -> IncrementalResult:
    """A backlog of flagged leads scored by ``leads_score`` in chunks, as the worker does."""
    from leadflow.leads.models import Event, Lead
    from scoring.services import leads_score

    ids = sorted(lead_ids)
    for start in range(0, len(ids), 5000):
        Lead.objects.filter(id__in=ids[start : start + 5000]).update(needs_rescore=True)
    events = sum(
        Event.objects.filter(lead_id__in=ids[start : start + 5000]).count() for start in range(0, len(ids), 5000)
    )
    transitions = 0
    last_print = time.perf_counter()
    with stopwatch() as watch:
        for start in range(0, len(ids), chunk):
            transitions += leads_score(lead_ids=ids[start : start + chunk]).transitions
            if time.perf_counter() - last_print >= 5:
                last_print = time.perf_counter()
                print(f"  incremental: {min(start + chunk, len(ids)):,}/{len(ids):,} leads", flush=True)
    left = sum(
        Lead.objects.filter(id__in=ids[start : start + 5000], needs_rescore=True).count()
        for start in range(0, len(ids), 5000)
    )
    return IncrementalResult(len(ids), events, watch.seconds, transitions, left)


# --- EXPERIMENTS: alternatives measured here, not the product's code ----------------------------
# Each runs in a transaction that is rolled back: the benchmark data stays as it was.
# Whatever an alternative computes is compared with what the product computes.
Row = tuple[str, str]
EXPERIMENT_GROUPS = ("compute", "write", "transitions", "incremental")
SCORE_INDEXES = ("lead_score", "lead_stage_score")  # the indexes a score change must update
# The stage columns of LEAD_STATE_RESET_SQL, escaped for a statement with parameters.
STAGE_RESET_ASSIGNMENTS = (
    LEAD_STATE_RESET_SQL.split("SET", 1)[1].split("fit_score = 0", 1)[0].strip().rstrip(",").replace("%", "%%")
)


def fold_ascii_c(expression: str) -> str:
    """EXPERIMENT: ASCII-only case folding with the C collation's lower(), which folds
    exactly A-Z (byte-wise), like ``engine.fold``; translate() costs ~1-3 µs a call."""
    return f'lower(({expression}) COLLATE "C")'


def scores_sql_fold_c(spec: Any, base: ScoresSql | None = None) -> tuple[str, dict[str, Any]]:
    """EXPERIMENT: ``scores_sql`` (or ``base``) generated with ``fold_ascii_c`` instead of translate()."""
    from scoring import bulk, engine

    with mock.patch.object(engine, "_fold_sql", fold_ascii_c):
        return (base or bulk.scores_sql)(spec)


def exact_pivot_sql(spec: Any, *, fold_c: bool, base: ScoresSql | None = None) -> tuple[str, dict[str, Any]]:
    """EXPERIMENT: the scores of ``scores_sql`` computed differently. Each event is joined
    to the rules of its type (one decayed term per event instead of one CASE per rule
    per event), summed per (lead, rule); the per-rule totals are then capped, rounded
    and added per lead. Same arithmetic (``engine.decayed_term_sql``), so the results
    must be identical (checked). The rules are inlined VALUES, not a CTE, so the event
    aggregation can run in parallel workers. Property conditions are not supported
    (the default ruleset has none)."""
    from scoring import bulk, engine

    if any(rule.has_condition for rule in spec.behaviour_rules):
        raise BenchError("exact_pivot_sql supports behaviour rules without property conditions only")
    base = base or bulk.scores_sql  # the product's query, for its fit expression
    full, params = scores_sql_fold_c(spec, base) if fold_c else base(spec)
    fit_expression = full.split(" AS id,", 1)[1].split("AS fit,", 1)[0]
    values = []
    for index, rule in enumerate(spec.behaviour_rules):
        params.update({f"xt{index}": rule.event_type, f"xp{index}": rule.points, f"xc{index}": rule.max_points})
        params[f"xw{index}"] = timedelta(days=rule.window_days) if rule.window_days is not None else None
        values.append(
            f"({index}, %(xt{index})s::text, %(xp{index})s::numeric, %(xw{index})s::interval, %(xc{index})s::numeric)"
        )
    rules = f"(VALUES {', '.join(values)}) AS r(idx, type, points, window_length, cap)"
    params["xintent"] = list(spec.intent_event_types)
    term = engine.decayed_term_sql("r.points", "e.occurred_at", spec.decay_half_life_days)
    sql = f"""
        WITH per_rule AS (
            SELECT e.lead_id, r.idx, SUM({term}) AS total
            FROM leads_event e JOIN {rules} ON r.type = e.type
            WHERE r.window_length IS NULL OR e.occurred_at >= %(as_of)s - r.window_length
            GROUP BY e.lead_id, r.idx
        ),
        b AS (
            SELECT p.lead_id,
                   SUM(ROUND(CASE WHEN r.cap IS NULL THEN p.total WHEN r.cap > 0 THEN LEAST(p.total, r.cap)
                                  ELSE GREATEST(p.total, r.cap) END, 2)) AS behaviour
            FROM per_rule p JOIN {rules} ON r.idx = p.idx
            GROUP BY p.lead_id
        ),
        i AS (
            SELECT lead_id, MAX(occurred_at) AS last_intent_at FROM leads_event
            WHERE type = ANY(%(xintent)s) GROUP BY lead_id
        )
        SELECT l.id, ({fit_expression})::numeric AS fit, COALESCE(b.behaviour, 0)::numeric AS behaviour,
               i.last_intent_at
        FROM leads_lead l LEFT JOIN b ON b.lead_id = l.id LEFT JOIN i ON i.lead_id = l.id
    """
    return sql, params


def values_bulk_update(model: Any) -> Callable[..., int]:
    """EXPERIMENT: ``QuerySet.bulk_update`` as one ``UPDATE … FROM (VALUES …)`` per
    batch (psycopg2 ``execute_values``) instead of Django's CASE WHEN per row and field."""
    from django.db import connection
    from psycopg2.extras import execute_values

    meta = model._meta
    pk = meta.pk

    def bulk_update(objs: Sequence[Any], fields: Sequence[str], batch_size: int | None = None) -> int:
        objs = list(objs)
        if not objs:
            return 0
        columns = [meta.get_field(name) for name in fields]
        names = ", ".join(column.column for column in columns)
        assignments = ", ".join(f"{column.column} = v.{column.column}" for column in columns)
        casts = [pk.db_type(connection)] + [column.db_type(connection) for column in columns]
        template = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
        rows = [
            (obj.pk, *(column.get_db_prep_save(getattr(obj, column.attname), connection) for column in columns))
            for obj in objs
        ]
        statement = (
            f"UPDATE {meta.db_table} AS t SET {assignments} FROM (VALUES %s) AS v({pk.column}, {names}) "
            f"WHERE t.{pk.column} = v.{pk.column}"
        )
        with connection.cursor() as cursor:
            execute_values(cursor.cursor, statement, rows, template=template, page_size=batch_size or 1000)
        return len(objs)

    return bulk_update


@contextlib.contextmanager
def variant_patches(variant: str) -> Iterator[None]:
    """``--variant improved`` (EXPERIMENT): the product's code with two alternatives
    patched in, to measure them end to end — ``bulk.scores_sql`` replaced by
    ``exact_pivot_sql`` with ``fold_ascii_c`` (or only the fold when a rule has a property
    condition), and ``Lead.objects.bulk_update`` by ``values_bulk_update``."""
    if variant == "product":
        yield
        return
    from leadflow.leads.models import Lead
    from scoring import bulk

    product = bulk.scores_sql

    def improved(spec: Any) -> tuple[str, dict[str, Any]]:
        if any(rule.has_condition for rule in spec.behaviour_rules):
            return scores_sql_fold_c(spec, product)
        return exact_pivot_sql(spec, fold_c=True, base=product)

    with (
        mock.patch.object(bulk, "scores_sql", improved),
        mock.patch.object(Lead.objects, "bulk_update", values_bulk_update(Lead)),
    ):
        yield


def _timed(cursor: Any, statement: str, params: Any = None) -> float:
    with stopwatch() as watch:
        cursor.execute(statement, params)
    return watch.seconds


def _settings(cursor: Any, **settings: str) -> None:
    cursor.execute("RESET ALL")
    for name, value in settings.items():
        cursor.execute(f"SET LOCAL {name} = '{value}'")


def _wal(cursor: Any) -> int:
    cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint")
    return int(cursor.fetchone()[0])


def _hot_updates(cursor: Any, table: str) -> int:
    """HOT updates of ``table`` counted by this backend and not yet reported (the
    difference of two readings in one transaction is that transaction's)."""
    cursor.execute("SELECT pg_stat_get_xact_tuples_hot_updated(%s::regclass)", [table])
    return int(cursor.fetchone()[0])


def _plan(cursor: Any, explain: list[str], title: str, statement: str, params: Any = None) -> None:
    cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, SETTINGS) {statement}", params)
    explain.append(f"--- {title}\n" + "\n".join(line for (line,) in cursor.fetchall()) + "\n")


def _vacuum(table: str = "leads_lead") -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM {table}")


def _differences(cursor: Any, table: str, reference: str = "x_scores") -> int:
    cursor.execute(
        f"""SELECT count(*) FROM {reference} a FULL JOIN {table} b ON a.id = b.id
            WHERE a.id IS NULL OR b.id IS NULL OR a.fit <> b.fit OR a.behaviour <> b.behaviour
               OR a.last_intent_at IS DISTINCT FROM b.last_intent_at"""
    )
    return int(cursor.fetchone()[0])


def experiment_compute(spec: Any, as_of: datetime, explain: list[str]) -> list[Row]:
    """The temp-table query under other settings, and alternative queries giving the
    same scores (each compared with the product's, lead by lead)."""
    from django.db import connection, transaction

    from scoring import bulk

    scores, params = bulk.scores_sql(spec)
    variants: list[tuple[str, tuple[str, dict[str, Any]], dict[str, str]]] = [
        ("scores_sql as the product runs it (work_mem 256MB, jit on)", (scores, params), {}),
        ("scores_sql, jit off", (scores, params), {"jit": "off"}),
        ("scores_sql, no parallel workers", (scores, params), {"max_parallel_workers_per_gather": "0"}),
        ('EXPERIMENT scores_sql, fold by lower(x COLLATE "C")', scores_sql_fold_c(spec), {}),
        ("EXPERIMENT pivot per (lead, rule), translate()", exact_pivot_sql(spec, fold_c=False), {}),
        ("EXPERIMENT pivot per (lead, rule), lower(C)", exact_pivot_sql(spec, fold_c=True), {}),
        ("EXPERIMENT pivot, lower(C), jit off", exact_pivot_sql(spec, fold_c=True), {"jit": "off"}),
        ("scores_sql as the product runs it, again (noise)", (scores, params), {}),
    ]
    rows: list[Row] = []
    with transaction.atomic(), connection.cursor() as cursor:
        for number, (name, (query, query_params), settings) in enumerate(variants):
            print(f"  compute: {name}", flush=True)
            _settings(cursor, work_mem=BULK_WORK_MEM, **settings)
            table = "x_scores" if number == 0 else f"x_variant_{number}"
            seconds = _timed(cursor, f"CREATE TEMP TABLE {table} AS {query}", {**query_params, "as_of": as_of})
            differ = "" if number == 0 else f", {_differences(cursor, table)} leads differ from scores_sql"
            rows.append((f"compute: {name}", f"{seconds:8.2f} s{differ}"))
        _settings(cursor, work_mem=BULK_WORK_MEM)
        _plan(
            cursor,
            explain,
            "compute: scores_sql (as the product)",
            f"CREATE TEMP TABLE p1 AS {scores}",
            {**params, "as_of": as_of},
        )
        query, query_params = scores_sql_fold_c(spec)
        _plan(
            cursor,
            explain,
            "compute: EXPERIMENT scores_sql with lower(C)",
            f"CREATE TEMP TABLE p2 AS {query}",
            {**query_params, "as_of": as_of},
        )
        query, query_params = exact_pivot_sql(spec, fold_c=True)
        _plan(
            cursor,
            explain,
            "compute: EXPERIMENT pivot, lower(C)",
            f"CREATE TEMP TABLE p3 AS {query}",
            {**query_params, "as_of": as_of},
        )
        transaction.set_rollback(True)
    return rows


UPDATE_FROM_SCORES = """
    UPDATE {table} l
    SET fit_score = s.fit, behaviour_score = s.behaviour, score = s.fit + s.behaviour,
        scored_at = %(as_of)s, ruleset_version = %(version)s,
        needs_rescore = (l.needs_rescore AND l.updated_at > %(snapshot)s)
    FROM x_scores s
    WHERE l.id = s.id AND s.id >= %(start)s AND s.id < %(stop)s {extra}
"""


def _copy_leads(cursor: Any, table: str, *, fillfactor: int, without: Sequence[str]) -> None:
    """A copy of leads_lead with the same indexes (minus ``without``), at ``fillfactor``."""
    cursor.execute(f"CREATE TABLE {table} WITH (fillfactor = {fillfactor}) AS SELECT * FROM leads_lead ORDER BY id")
    cursor.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = 'leads_lead'::regclass AND NOT x.indisprimary"
    )
    for name, definition in cursor.fetchall():
        if name not in without:
            cursor.execute(
                definition.replace(f"INDEX {name} ON public.leads_lead ", f"INDEX {table}_{name} ON {table} ")
            )
    cursor.execute(f"ANALYZE {table}")


@contextlib.contextmanager
def scores_snapshot(spec: Any, as_of: datetime) -> Iterator[None]:
    """``scores_sql`` at ``as_of`` computed once into an unlogged table, so that every
    variant below starts from the same scores without paying for the computation."""
    from django.db import connection

    from scoring import bulk

    scores, params = bulk.scores_sql(spec)
    with connection.cursor() as cursor:
        cursor.execute(f"SET work_mem = '{BULK_WORK_MEM}'")
        cursor.execute("DROP TABLE IF EXISTS bench_x_scores")
        cursor.execute(f"CREATE UNLOGGED TABLE bench_x_scores AS {scores}", {**params, "as_of": as_of})
        cursor.execute("RESET work_mem")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_x_scores")


def experiment_write(spec: Any, as_of: datetime, explain: list[str]) -> list[Row]:
    """The UPDATE of every lead from the scores, and what its cost is made of: the
    same statement on copies of leads_lead without the score indexes and/or with room
    for HOT updates, and on a narrow table holding only the scores."""
    from django.db import connection, transaction

    write_params = {"as_of": as_of, "version": spec.version, "snapshot": as_of}
    rows: list[Row] = []

    def prepare(cursor: Any, *, analyze: bool = False) -> tuple[int, int]:
        _settings(cursor, work_mem=BULK_WORK_MEM)
        cursor.execute("CREATE TEMP TABLE x_scores AS SELECT * FROM bench_x_scores")
        cursor.execute("ALTER TABLE x_scores ADD PRIMARY KEY (id)")
        if analyze:
            cursor.execute("ANALYZE x_scores")
        cursor.execute("SELECT min(id), max(id) FROM x_scores")
        low, high = cursor.fetchone()
        return int(low), int(high)

    def update(cursor: Any, label: str, table: str, low: int, high: int, chunk: int = 50_000, extra: str = "") -> None:
        statement = UPDATE_FROM_SCORES.format(table=table, extra=extra)
        cursor.execute("CHECKPOINT")  # every variant starts with the same full-page-write state
        hot_before = _hot_updates(cursor, table)
        wal_before = _wal(cursor)
        updated = 0
        with stopwatch() as watch:
            for start in range(low, high + 1, chunk):
                cursor.execute(statement, {**write_params, "start": start, "stop": start + chunk})
                updated += cursor.rowcount
        wal = _wal(cursor) - wal_before
        hot = _hot_updates(cursor, table) - hot_before
        rows.append(
            (
                f"write: {label}",
                f"{watch.seconds:8.2f} s, {updated:,} rows ({hot:,} HOT), WAL {wal / 2**20:,.0f} MiB",
            )
        )
        print(f"  write: {label}: {watch.seconds:.2f} s", flush=True)

    print("  write: UPDATE leads_lead as the product does…", flush=True)
    _vacuum()
    with transaction.atomic(), connection.cursor() as cursor:
        low, high = prepare(cursor)
        chunk_params = {**write_params, "start": low, "stop": low + 50_000}
        _plan(
            cursor,
            explain,
            "write: first 50k UPDATE chunk, temp table not analyzed (as the product)",
            UPDATE_FROM_SCORES.format(table="leads_lead", extra=""),
            chunk_params,
        )
        cursor.execute("ANALYZE x_scores")
        chunk_params = {**write_params, "start": low + 50_000, "stop": low + 100_000}
        _plan(
            cursor,
            explain,
            "write: second 50k UPDATE chunk, temp table ANALYZEd",
            UPDATE_FROM_SCORES.format(table="leads_lead", extra=""),
            chunk_params,
        )
        transaction.set_rollback(True)
    _vacuum()
    with transaction.atomic(), connection.cursor() as cursor:
        low, high = prepare(cursor)
        update(cursor, "leads_lead in 50k chunks, as the product (one transaction here)", "leads_lead", low, high)
        transaction.set_rollback(True)
    _vacuum()
    with transaction.atomic(), connection.cursor() as cursor:
        low, high = prepare(cursor, analyze=True)
        update(cursor, "leads_lead, temp table ANALYZEd (hash join)", "leads_lead", low, high)
        transaction.set_rollback(True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT enumvals FROM pg_settings WHERE name = 'wal_compression'")
        options = cursor.fetchone()[0] or []
    compression = "lz4" if "lz4" in options else "pglz"
    _vacuum()
    with transaction.atomic(), connection.cursor() as cursor:
        low, high = prepare(cursor)
        cursor.execute(f"SET LOCAL wal_compression = '{compression}'")  # superuser: this session only
        update(
            cursor, f"EXPERIMENT leads_lead, wal_compression = {compression} (server setting)", "leads_lead", low, high
        )
        transaction.set_rollback(True)
    _vacuum()
    with transaction.atomic(), connection.cursor() as cursor:
        low, high = prepare(cursor)
        cursor.execute(
            "SELECT count(*) FROM leads_lead l JOIN x_scores s ON s.id = l.id WHERE l.fit_score = s.fit "
            "AND l.behaviour_score = s.behaviour AND l.ruleset_version = %s AND NOT l.needs_rescore",
            [spec.version],
        )
        (unchanged,) = cursor.fetchone()
        rows.append(("write: leads whose score and version would not change", f"{unchanged:,}"))
        update(
            cursor,
            "EXPERIMENT leads_lead, unchanged rows skipped",
            "leads_lead",
            low,
            high,
            extra="AND (l.fit_score, l.behaviour_score, l.ruleset_version, l.needs_rescore) "
            "IS DISTINCT FROM (s.fit, s.behaviour, %(version)s, false)",
        )
        transaction.set_rollback(True)
    copies = [
        ("copy of leads_lead, same indexes, fillfactor 100", 100, ()),
        ("copy without the 2 score indexes, fillfactor 100", 100, SCORE_INDEXES),
        ("copy, same indexes, fillfactor 70", 70, ()),
        ("copy without the 2 score indexes, fillfactor 70 (HOT)", 70, SCORE_INDEXES),
        ("copy without the 2 score indexes, fillfactor 50 (HOT)", 50, SCORE_INDEXES),
    ]
    for label, fillfactor, without in copies:
        with transaction.atomic(), connection.cursor() as cursor:
            low, high = prepare(cursor)
            _copy_leads(cursor, "x_leads", fillfactor=fillfactor, without=without)
            update(cursor, f"EXPERIMENT {label}", "x_leads", low, high)
            transaction.set_rollback(True)
    with transaction.atomic(), connection.cursor() as cursor:
        low, high = prepare(cursor)
        cursor.execute(
            "CREATE TABLE x_lead_scores AS SELECT id, fit_score, behaviour_score, score, scored_at, ruleset_version, "
            "needs_rescore, updated_at FROM leads_lead ORDER BY id"
        )
        cursor.execute("ALTER TABLE x_lead_scores ADD PRIMARY KEY (id)")
        cursor.execute("CREATE INDEX x_lead_scores_score ON x_lead_scores (score DESC)")
        cursor.execute("ANALYZE x_lead_scores")
        update(cursor, "EXPERIMENT narrow scores table (id, scores; PK + score index)", "x_lead_scores", low, high)
        transaction.set_rollback(True)
    with transaction.atomic(), connection.cursor() as cursor:
        low, high = prepare(cursor)
        cursor.execute("CHECKPOINT")
        with stopwatch() as watch:
            cursor.execute(
                "CREATE TABLE x_lead_scores AS SELECT id, fit AS fit_score, behaviour AS behaviour_score, "
                "fit + behaviour AS score, %(as_of)s::timestamptz AS scored_at, %(version)s AS ruleset_version "
                "FROM x_scores ORDER BY id",
                write_params,
            )
            cursor.execute("ALTER TABLE x_lead_scores ADD PRIMARY KEY (id)")
            cursor.execute("CREATE INDEX x_lead_scores_score ON x_lead_scores (score DESC)")
        rows.append(("write: EXPERIMENT narrow scores table rebuilt (CTAS + 2 indexes)", f"{watch.seconds:8.2f} s"))
        transaction.set_rollback(True)
    return rows


def _state_digest(cursor: Any) -> str:
    """md5 of everything a rescore writes: leads' scores and stages, stage changes,
    handoffs (if the app has them)."""
    parts = [
        "SELECT md5(string_agg(concat_ws('|', id, stage, mql_at, sql_at, recycled_at, fit_score, behaviour_score, "
        "score, scored_at, ruleset_version, needs_rescore), ',' ORDER BY id)) FROM leads_lead",
        "SELECT md5(string_agg(concat_ws('|', lead_id, from_stage, to_stage, at, reason, ruleset_version, score), "
        "',' ORDER BY lead_id, id)) FROM scoring_stagechange",
    ]
    cursor.execute("SELECT to_regclass('handoff_handoff')")
    if cursor.fetchone()[0] is not None:
        parts.append(
            "SELECT md5(string_agg(concat_ws('|', lead_id, status, priority, created_at, due_at), ',' "
            "ORDER BY lead_id, id)) FROM handoff_handoff"
        )
    digests = []
    for statement in parts:
        cursor.execute(statement)
        digests.append(str(cursor.fetchone()[0]))
    return ":".join(digest[:8] for digest in digests)


def _dependents(cursor: Any) -> list[str]:
    cursor.execute(
        "SELECT DISTINCT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' "
        "AND confrelid = 'leads_lead'::regclass AND conrelid <> 'leads_event'::regclass"
    )
    return [name for (name,) in cursor.fetchall()]


def experiment_transitions(spec: Any, as_of: datetime) -> list[Row]:
    """The transitions phase of a first rescore (every lead back at its generated stage,
    scores computed), with the product's code, then with ``Lead.objects.bulk_update``
    replaced by ``values_bulk_update``: same decisions, the state written must be identical."""
    from django.db import connection, transaction

    from leadflow.leads.models import Lead
    from scoring import bulk, services

    rows: list[Row] = []
    digests = []
    for label, patched in [("product (Django bulk_update)", False), ("EXPERIMENT UPDATE … FROM (VALUES …)", True)]:
        print(f"  transitions: {label}", flush=True)
        _vacuum()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(_dependents(cursor))} CASCADE")
            _settings(cursor, work_mem=BULK_WORK_MEM)
            cursor.execute(f"CREATE TEMP TABLE {bulk.SCORES_TABLE} AS SELECT * FROM bench_x_scores")
            cursor.execute(f"ALTER TABLE {bulk.SCORES_TABLE} ADD PRIMARY KEY (id)")
            cursor.execute(
                f"""UPDATE leads_lead l SET {STAGE_RESET_ASSIGNMENTS}, fit_score = s.fit,
                    behaviour_score = s.behaviour, score = s.fit + s.behaviour, scored_at = %(as_of)s,
                    ruleset_version = %(version)s, needs_rescore = false
                    FROM {bulk.SCORES_TABLE} s WHERE l.id = s.id""",
                {"as_of": as_of, "version": spec.version},
            )
            patch = (
                mock.patch.object(Lead.objects, "bulk_update", values_bulk_update(Lead))
                if patched
                else contextlib.nullcontext()
            )
            with patch, stopwatch() as watch:
                candidates = bulk.ScoresTable(cursor, spec, as_of).transition_candidates(after=0, upto=2**62)
                changed = services._apply_bulk_transitions(candidates, spec, as_of)
            digests.append(_state_digest(cursor))
            cursor.execute(f"DROP TABLE {bulk.SCORES_TABLE}")
            transaction.set_rollback(True)
        rows.append((f"transitions: {label}", f"{watch.seconds:8.2f} s, {changed:,} transitions"))
    rows.append(("transitions: same state written", "yes" if digests[0] == digests[1] else f"NO {digests}"))
    return rows


def experiment_incremental(spec: Any, as_of: datetime, lead_ids: Sequence[int], chunk: int) -> list[Row]:
    """``leads_score`` on a flagged backlog, with the product's code, then with
    ``Lead.objects.bulk_update`` replaced by ``values_bulk_update`` (same state)."""
    from django.db import connection, transaction

    from leadflow.leads.models import Lead
    from scoring.services import leads_score

    ids = sorted(lead_ids)
    rows: list[Row] = []
    digests = []
    for label, patched in [("product (Django bulk_update)", False), ("EXPERIMENT UPDATE … FROM (VALUES …)", True)]:
        print(f"  incremental: {label}", flush=True)
        _vacuum()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE leads_lead SET needs_rescore = true WHERE id = ANY(%s)", [ids])
            patch = (
                mock.patch.object(Lead.objects, "bulk_update", values_bulk_update(Lead))
                if patched
                else contextlib.nullcontext()
            )
            with patch, stopwatch() as watch:
                for start in range(0, len(ids), chunk):
                    leads_score(lead_ids=ids[start : start + chunk], as_of=as_of)
            digests.append(_state_digest(cursor))
            cursor.execute("SELECT count(*) FROM leads_event WHERE lead_id = ANY(%s)", [ids])
            (events,) = cursor.fetchone()
            transaction.set_rollback(True)
        rows.append(
            (
                f"incremental: {label}",
                f"{watch.seconds:8.2f} s for {len(ids):,} leads, {rate(events, watch.seconds):,.0f} events/s",
            )
        )
    rows.append(("incremental: same state written", "yes" if digests[0] == digests[1] else f"NO {digests}"))
    return rows


def run_experiments(
    spec: Any, out_path: Path, backlog: Sequence[int], chunk: int, groups: Sequence[str] = EXPERIMENT_GROUPS
) -> list[Row]:
    """EXPERIMENTS: EXPLAIN ANALYZE of the bulk statements and alternatives timed side by side."""
    from django.utils import timezone

    explain: list[str] = []
    rows: list[Row] = []
    try:
        if "compute" in groups:
            print("EXPERIMENT compute…", flush=True)
            rows += experiment_compute(spec, timezone.now(), explain)
        as_of = timezone.now() + timedelta(days=1)  # tomorrow's refresh: scores move by a day of decay
        if "write" in groups or "transitions" in groups:
            with scores_snapshot(spec, as_of):
                if "write" in groups:
                    print("EXPERIMENT write…", flush=True)
                    rows += experiment_write(spec, as_of, explain)
                if "transitions" in groups:
                    print("EXPERIMENT transitions…", flush=True)
                    rows += experiment_transitions(spec, as_of)
        if backlog and "incremental" in groups:
            print("EXPERIMENT incremental…", flush=True)
            rows += experiment_incremental(spec, timezone.now(), backlog, chunk)
    finally:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text("\n".join(explain))
    rows.append(("EXPLAIN ANALYZE plans", str(out_path.relative_to(ROOT))))
    return rows


# --- Main ---------------------------------------------------------------------------------------------
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the absent ones (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the bulk rescore of every lead (PostgreSQL) against the SQL floor, "
        "a naive per-lead ORM loop and the incremental path.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--leads", type=int, default=100_000, help="leads to generate")
    parser.add_argument("--events", type=int, default=2_000_000, help="events to generate")
    parser.add_argument("--days", type=int, default=90, help="the events' occurred_at spread over this many days")
    parser.add_argument("--seed", type=int, default=2026, help="random seed of the generated data and samples")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="skip generation when the database already holds the requested data (leads, events, days, seed)",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="benchmark database, dropped and recreated (its name must contain 'bench')",
    )
    parser.add_argument("--copy-chunk", type=int, default=200_000, help="rows per COPY chunk")
    parser.add_argument("--check-sample", type=int, default=200, help="leads checked against the Python engine")
    parser.add_argument("--naive-sample", type=int, default=2000, help="leads in the naive ORM loop (0 skips)")
    parser.add_argument("--backlog", type=int, default=20_000, help="flagged leads for the incremental path (0 skips)")
    parser.add_argument("--incremental-chunk", type=int, default=1000, help="leads per leads_score call")
    parser.add_argument("--no-full-check", action="store_true", help="skip the every-lead check against scores_sql")
    parser.add_argument(
        "--experiments",
        nargs="?",
        const=",".join(EXPERIMENT_GROUPS),
        metavar="GROUPS",
        help="also run EXPLAIN ANALYZE and the alternatives (EXPERIMENTS); optionally only some of "
        f"{','.join(EXPERIMENT_GROUPS)} (comma-separated)",
    )
    parser.add_argument(
        "--variant",
        choices=["product", "improved"],
        default="product",
        help="'improved' (EXPERIMENT): measure the floor, the bulk runs and the incremental path with the "
        "alternatives patched in (pivot + lower(C) scores query, UPDATE … FROM (VALUES …) instead of "
        "bulk_update); the checks still compare with the product's scores_sql and score_lead",
    )
    parser.add_argument(
        "--only-experiments",
        action="store_true",
        help="with --reuse: run only the EXPERIMENTS, on the data as the last run left it (scored)",
    )
    args = parser.parse_args(argv)
    if args.only_experiments:
        if not args.reuse:
            parser.error("--only-experiments needs --reuse (the data of an earlier run)")
        args.experiments = args.experiments or ",".join(EXPERIMENT_GROUPS)
    groups = [group.strip() for group in (args.experiments or "").split(",") if group.strip()]
    unknown = sorted(set(groups) - set(EXPERIMENT_GROUPS))
    if unknown:
        parser.error(f"unknown experiment group(s) {', '.join(unknown)}: choose among {', '.join(EXPERIMENT_GROUPS)}")
    args.experiments = groups
    for name in ("leads", "events", "days", "copy_chunk", "incremental_chunk"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("check_sample", "naive_sample", "backlog"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more")
    for name in ("check_sample", "naive_sample", "backlog"):
        setattr(args, name, min(getattr(args, name), args.leads))
    return args


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def command_line() -> str:
    python = Path(sys.executable)
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    return " ".join([str(shown), *sys.argv])


def run(args: argparse.Namespace) -> int:
    env = bench_env(
        args.database_url,
        "memory://",
        SECRET_KEY="bench",  # noqa: S106 -- a throw-away benchmark database
        CELERY_TASK_ALWAYS_EAGER="1",
        DB_CONN_MAX_AGE="0",
    )
    wanted = DataSpec(leads=args.leads, events=args.events, days=args.days, seed=args.seed)
    load_rows: list[tuple[str, object]] = []
    stored, generated_at, clean = stored_data(args.database_url) if args.reuse else (None, None, False)
    if stored == wanted:
        print(f"Reusing the data generated at {generated_at:%Y-%m-%d %H:%M} UTC in {args.database_url}.")
        load_rows.append(("data", f"reused (generated {generated_at:%Y-%m-%d %H:%M} UTC)"))
    else:
        if args.reuse:
            print("No reusable data (absent or other sizes/seed): generating.")
        with stopwatch() as watch:
            database_reset(args.database_url)
            manage(["migrate", "--noinput"], env)
        load_rows.append(("create + migrate", f"{watch.seconds:.1f} s"))
        timings = load_data(args.database_url, wanted, chunk_rows=args.copy_chunk)
        load_rows += [(name, f"{seconds:.1f} s") for name, seconds in timings.items()]
        load_rows.append(
            ("events COPY rate", f"{rate(wanted.events, timings['copy events']):,.0f} rows/s (generation overlapped)")
        )
        clean = True
    if args.only_experiments:
        load_rows.append(("lead state", "as the last run left it (--only-experiments)"))
    else:
        reset_seconds = prepare_state(args.database_url, clean)
        if not clean:
            load_rows.append(("reset leads to generated state", f"{reset_seconds:.1f} s"))

    django_setup(env)
    from django.db import connection

    from scoring import selectors

    ruleset = selectors.published_ruleset()
    if ruleset is None:
        raise BenchError("No published ruleset: the default ruleset migration did not run?")
    spec = selectors.ruleset_spec(ruleset)
    rng = random.Random(args.seed + 2)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('leads_event')), "
            "pg_size_pretty(pg_total_relation_size('leads_lead')), "
            "(SELECT count(*) FROM leads_lead l WHERE NOT EXISTS "
            "(SELECT 1 FROM leads_event e WHERE e.lead_id = l.id))"
        )
        event_size, lead_size, without_events = cursor.fetchone()
        cursor.execute("SELECT type, count(*) FROM leads_event GROUP BY type ORDER BY 2 DESC")
        type_counts = cursor.fetchall()

    report(
        f"Rescore benchmark: {args.leads:,} leads, {args.events:,} events over {args.days} days",
        [
            ("command", command_line()),
            ("postgresql", postgres_version(args.database_url)),
            *machine_summary(),
            (
                "ruleset",
                f"v{spec.version} {ruleset.name}: "
                f"{len(spec.fit_rules)} fit, {len(spec.behaviour_rules)} behaviour rules",
            ),
            ("variant", args.variant if args.variant == "product" else f"{args.variant} (EXPERIMENT, patched in)"),
            ("table sizes", f"leads_event {event_size}, leads_lead {lead_size}"),
            ("leads without events", f"{without_events:,}"),
            ("events by type", ", ".join(f"{name} {count:,}" for name, count in type_counts)),
            *load_rows,
        ],
    )

    from scoring import bulk

    product_scores_sql = bulk.scores_sql
    with variant_patches(args.variant):
        failures = [] if args.only_experiments else measure(args, ruleset, spec, rng, product_scores_sql)

    if args.experiments:
        print("\nEXPERIMENTS (alternatives measured in rolled-back transactions; not the product's code)", flush=True)
        out = OUT_DIR / f"rescore-explain-{args.leads}-{args.events}.txt"
        backlog = rng.sample(range(1, args.leads + 1), min(args.backlog, 5000))
        report("EXPERIMENTS", run_experiments(spec, out, backlog, args.incremental_chunk, args.experiments))

    for check in failures:
        print(f"\nFAILED {check.name}:", file=sys.stderr)
        for line in check.mismatches[:20]:
            print(f"  {line}", file=sys.stderr)
    return 1 if failures else 0


def measure(
    args: argparse.Namespace, ruleset: Any, spec: Any, rng: random.Random, product_scores_sql: ScoresSql
) -> list[CheckResult]:
    """The floor, the two bulk runs with their checks, the naive loop and the incremental
    path; prints them and a summary; returns the failed checks. The checks compare with
    the product's ``scores_sql`` and ``score_lead`` whatever ``--variant`` runs."""
    from django.db import connection
    from django.utils import timezone

    print("\nWarming the cache, then the SQL floor…", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM leads_event WHERE properties IS NOT NULL")
        cursor.execute("SELECT count(*) FROM leads_lead WHERE traits IS NOT NULL")
    floor_as_of = timezone.now()
    floors = time_floor(spec, floor_as_of, product_scores_sql)
    floor_seconds = floors[-1][1]
    report(
        "SQL (computes, writes nothing)", [(name, f"{seconds:8.2f} s   [{result}]") for name, seconds, result in floors]
    )

    failures: list[CheckResult] = []
    bulks = []
    checks: list[CheckResult] = []
    for label in ("bulk run 1 (from unscored: publish after import)", "bulk run 2 (rescored again: nightly refresh)"):
        print(f"\n{label}…", flush=True)
        bulk = time_bulk(ruleset, label.split(" (")[0], args.leads)
        bulks.append(bulk)
        sample = rng.sample(range(1, args.leads + 1), args.check_sample)
        checks.append(check_against_engine(spec, sample, f"{bulk.label}: {len(sample)} random leads vs score_lead"))
        if not args.no_full_check and bulk is bulks[0]:
            print("  checking every lead against scores_sql…", flush=True)
            checks.append(check_all_against_sql(spec, product_scores_sql))
        report(
            f"{label}: {bulk.seconds:.2f} s",
            [
                *bulk.phases,
                (
                    "total",
                    f"{bulk.seconds:8.2f} s  ({rate(args.leads, bulk.seconds):,.0f} leads/s, "
                    f"{rate(args.events, bulk.seconds):,.0f} events/s)",
                ),
                ("stage transitions", f"{bulk.transitions:,}"),
                ("stages after", ", ".join(f"{stage} {count:,}" for stage, count in bulk.stages.items())),
                ("leads_lead rows updated (HOT)", f"{bulk.updated_rows:,} ({bulk.hot_rows:,})"),
                ("WAL written", f"{bulk.wal_bytes / 2**20:,.0f} MiB"),
            ],
        )
    failures += [check for check in checks if check.mismatches]

    naive = None
    if args.naive_sample:
        print(f"\nNaive per-lead ORM loop on {args.naive_sample:,} leads…", flush=True)
        naive = time_naive(spec, rng.sample(range(1, args.leads + 1), args.naive_sample), args.leads)
    incremental = None
    if args.backlog:
        print(f"\nIncremental: a backlog of {args.backlog:,} flagged leads…", flush=True)
        incremental = time_incremental(rng.sample(range(1, args.leads + 1), args.backlog), args.incremental_chunk)
        if incremental.left_flagged:
            failures.append(
                CheckResult("incremental", incremental.leads, [f"{incremental.left_flagged} leads still flagged"])
            )

    bulk = bulks[0]
    rows: list[tuple[str, object]] = [
        ("bulk run 1 / run 2", f"{bulks[0].seconds:.2f} s / {bulks[1].seconds:.2f} s"),
        ("SQL floor (scores_sql aggregated)", f"{floor_seconds:.2f} s"),
        (
            "bulk / floor",
            f"{bulks[0].seconds / floor_seconds:.2f}x / {bulks[1].seconds / floor_seconds:.2f}x "
            f"(target ≤ {FLOOR_RATIO_TARGET:.0f}x: {verdict(bulks[1].seconds <= FLOOR_RATIO_TARGET * floor_seconds)} "
            f"for run 2, {verdict(bulks[0].seconds <= FLOOR_RATIO_TARGET * floor_seconds)} for run 1)",
        ),
    ]
    if args.leads >= 1_000_000:
        rows.append(
            (
                "bulk at this size",
                f"target < {BULK_TARGET_SECONDS:.0f} s: run 1 {verdict(bulks[0].seconds < BULK_TARGET_SECONDS)}, "
                f"run 2 {verdict(bulks[1].seconds < BULK_TARGET_SECONDS)}",
            )
        )
    if naive:
        ratio = naive.extrapolated / bulk.seconds
        rows += [
            (
                "naive ORM loop",
                f"{naive.seconds:.2f} s for {naive.leads:,} leads ({naive.events:,} events): "
                f"{1000 * naive.seconds / max(naive.leads, 1):.2f} ms/lead",
            ),
            ("naive, extrapolated to every lead", f"{naive.extrapolated:,.0f} s ({naive.extrapolated / 3600:.2f} h)"),
            (
                "naive extrapolated / bulk run 1",
                f"{ratio:,.0f}x (target ≥ {NAIVE_RATIO_TARGET:.0f}x: {verdict(ratio >= NAIVE_RATIO_TARGET)}); "
                f"/ run 2: {naive.extrapolated / bulks[1].seconds:,.0f}x",
            ),
        ]
    if incremental:
        speed = rate(incremental.events, incremental.seconds)
        rows += [
            (
                "incremental backlog",
                f"{incremental.leads:,} leads, {incremental.events:,} events in {incremental.seconds:.2f} s "
                f"(chunks of {args.incremental_chunk}), {incremental.transitions:,} transitions",
            ),
            (
                "incremental throughput",
                f"{speed:,.0f} events/s, {rate(incremental.leads, incremental.seconds):,.0f} leads/s "
                f"(target ≥ {INCREMENTAL_TARGET_EVENTS_PER_SECOND:,} events/s: "
                f"{verdict(speed >= INCREMENTAL_TARGET_EVENTS_PER_SECOND)})",
            ),
        ]
    for check in checks:
        rows.append((check.name, f"{check.checked:,} checked, {len(check.mismatches)} mismatches"))
    report("Summary", rows)
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from django.db import DatabaseError

    try:
        return run(args)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except (psycopg2.Error, DatabaseError) as error:
        print(f"error: PostgreSQL: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # the code under test crashed: the benchmark cannot run
        traceback.print_exc()
        print("error: the benchmark could not run (traceback above)", file=sys.stderr)
        return 3
    finally:
        from django.apps import apps

        if apps.ready:
            from django.db import connections

            connections.close_all()


if __name__ == "__main__":
    sys.exit(main())
