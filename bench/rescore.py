"""Rescore benchmark: the full rescore of a scoring model (publishing a ruleset, the
nightly decay refresh) on PostgreSQL, compared with the same scores computed by plain
SQL without writing (the floor), with a naive per-lead ORM loop; three models; and the
incremental path's throughput on a backlog of flagged leads, under every model.

    .venv/bin/python bench/rescore.py                                     # 100k leads, 2M events
    .venv/bin/python bench/rescore.py --leads 1000000 --events 10000000   # the issue's target size
    .venv/bin/python bench/rescore.py --reuse                             # keep the data generated before
    .venv/bin/python bench/rescore.py --reuse --experiments               # + EXPLAIN and write designs
    .venv/bin/python bench/rescore.py --reuse --only-experiments --experiments write

The data is generated with COPY into the database ``leadflow_bench_rescore`` (dropped,
created and migrated first; its name must contain "bench"), then VACUUM ANALYZE (the
server runs without autovacuum). Every lead starts without a score, most of them
``new``, as after an import. Then, in this process (Django set up against that database):

1. the SQL floor: ``scoring.bulk.scores_sql`` of the default model wrapped in an
   aggregate (computes every score, writes nothing), and simpler queries for scale;
2. the bulk rescore of the default model, ``rescore_run_execute``, twice: first with
   no Score rows (many stage transitions: "first publish"), then again (every row
   exists, scores move only by decay: "refresh"); each split in phases by timing the
   statements it runs (compute, the per-chunk upsert into ``scoring_score``, the
   per-chunk transitions statement, the rest), with the table's inserted, updated and
   HOT-updated rows (``pg_stat_user_tables``) and the WAL written;
3. correctness: a random sample of leads rescored in Python with ``score_lead`` at the
   stored ``computed_at`` and with the lead's ``recycled_at`` must equal every stored
   field of the lead's Score; every lead's stored Score must equal ``scores_sql`` at
   that instant, and no ``new`` lead may be left meeting the MQL criteria;
4. a naive per-lead ORM loop on a sample, extrapolated to every lead;
5. two more models, made through the services (``scoring_model_create``,
   ``ruleset_create``, ``rule_create``, ``ruleset_publish``) from the default ruleset
   with other thresholds and rules (a property condition, suppression, a grade-gated
   SQL, a rule without decay): each first publish timed, then ``decay_refresh`` of all
   three models timed (target: less than 3x one model), checked like 3.;
6. the incremental path (``leads_score``, every published model) on a backlog of
   flagged leads;
7. with ``--experiments``: EXPLAIN ANALYZE of the bulk statements and measured
   alternatives (labelled EXPERIMENT: none of them is the product's code) in
   rolled-back transactions: the compute under other settings and one rewrite, the
   write design (the product's HOT upsert, the same on copies at fillfactor 50 and 100,
   build and swap, a first publish with and without foreign keys), the transitions
   statement with the chunk's range on the scores' side, the bulk engine per chunk of
   the incremental backlog; and ``fixes``, two real refreshes of the default model,
   as the product and with two proposed changes patched in (``proposed_fixes``).

The speed probe (a fixed pure-Python loop) and the load average are printed at the
start and the end: the machine is shared, so a wall time needs them beside it.

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
import os
import queue
import random
import re
import sys
import threading
import time
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
    bench_main,
    database_reset,
    django_setup,
    in_process_env,
    machine_cpu_seconds,
    machine_summary,
    manage,
    postgres_version,
    rate,
    report,
    speed_probe,
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
    "company_size", "source_id", "utm_source", "utm_medium", "utm_campaign", "traits", "stage", "mql_at", "sql_at",
    "recycled_at", "owner_id",
    "last_activity_at", "needs_rescore", "created_at", "updated_at", "visitor",
]
EVENT_COLUMNS = [
    "id", "lead_id", "source_id", "event_id", "type", "properties", "occurred_at", "received_at", "fingerprint",
]
# fmt: on
NULL = "\\N"  # COPY text format


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
                _days_after(created, mql_days),
                _days_after(created, sql_days),
                _days_after(created, recycled_days),
                NULL,
                from_ts(activity, UTC).isoformat() if activity else NULL,
                "f",
                created.isoformat(),
                created.isoformat(),
                "f",  # not a visitor: every generated lead has an e-mail
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
                "INSERT INTO leads_source (name, slug, created_at, segment_event_types) "
                "VALUES (%s, %s, now(), '{}') RETURNING id",
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


def data_arguments(parser: Any, *, leads: int, events: int, database_url: str) -> None:
    """The options of the generated data (``DataSpec``, ``data_ready``), the same in every
    benchmark built on this generator."""
    parser.add_argument("--leads", type=int, default=leads, help="leads to generate")
    parser.add_argument("--events", type=int, default=events, help="events to generate")
    parser.add_argument("--days", type=int, default=90, help="the events spread over this many days")
    parser.add_argument("--seed", type=int, default=2026, help="random seed of the generated data")
    parser.add_argument("--copy-chunk", type=int, default=200_000, help="rows per COPY chunk")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the leads and events when the database holds the same sizes/seed"
    )
    parser.add_argument(
        "--database-url", default=database_url, help="benchmark database (its name must contain 'bench')"
    )


def data_ready(
    database_url: str, wanted: DataSpec, env: dict[str, str], *, reuse: bool, chunk_rows: int
) -> list[tuple[str, object]]:
    """The generated leads and events in ``database_url`` (another benchmark's, built with
    this generator): reused, migrated, when ``reuse`` finds the same sizes and seed; else the
    database is created, migrated and loaded. Returns the report's rows of what it did."""
    stored, generated_at, _clean = stored_data(database_url) if reuse else (None, None, False)
    if stored == wanted and generated_at is not None:
        with stopwatch() as watch:
            manage(["migrate", "--noinput"], env)
        return [("data", f"reused (generated {generated_at:%Y-%m-%d %H:%M} UTC); migrate {watch.seconds:.1f} s")]
    with stopwatch() as watch:
        database_reset(database_url)
        manage(["migrate", "--noinput"], env)
    timings = load_data(database_url, wanted, chunk_rows=chunk_rows)
    return [("create + migrate", f"{watch.seconds:.1f} s"), *((name, f"{s:.1f} s") for name, s in timings.items())]


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
                # The scores tables refer to leads without a constraint (scoring.models.Score).
                dependents += [name for name in ("scoring_score", "scoring_accountscore") if name not in dependents]
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

    def total(self, needle: str, *, since: float = 0.0, until: float = float("inf")) -> tuple[int, float]:
        matching = [s.finished - s.started for s in self.statements if needle in s.sql and since <= s.started < until]
        return len(matching), sum(matching)


@dataclass
class TableCounters:
    """What the server counted for one table (pg_stat_user_tables) and the WAL position."""

    wal: int
    inserted: int
    updated: int
    hot: int

    def __sub__(self, other: "TableCounters") -> "TableCounters":
        return TableCounters(
            self.wal - other.wal, self.inserted - other.inserted, self.updated - other.updated, self.hot - other.hot
        )


@dataclass
class BulkResult:
    label: str
    seconds: float
    transitions: int
    phases: list[tuple[str, str]]
    scores: TableCounters  # scoring_score: rows inserted, updated, HOT; WAL of the run
    leads_updated: int
    stages: dict[str, int]

    @property
    def hot_share(self) -> str:
        if not self.scores.updated:
            return "no updates"
        return f"{100 * self.scores.hot / self.scores.updated:.1f} % HOT"


def _score_table() -> str:
    from scoring.models import Score

    return Score._meta.db_table


def _server_counters(table: str) -> TableCounters:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint, n_tup_ins, n_tup_upd, n_tup_hot_upd "
            "FROM pg_stat_user_tables WHERE relname = %s",
            [table],
        )
        row = cursor.fetchone()
    return TableCounters(*(int(value) for value in row))


def _wait_for_stats(table: str, before: TableCounters, expected_rows: int) -> TableCounters:
    """Table statistics reach the cumulative view shortly after the transactions end."""
    after = _server_counters(table)
    deadline = time.monotonic() + 3
    while (after - before).inserted + (after - before).updated < expected_rows and time.monotonic() < deadline:
        time.sleep(0.2)
        after = _server_counters(table)
    return after


def stage_counts() -> dict[str, int]:
    from django.db.models import Count

    from leadflow.leads.models import Lead

    return {row["stage"]: row["n"] for row in Lead.objects.values("stage").annotate(n=Count("id")).order_by("stage")}


def run_create(ruleset: Any, reason: str = "bench") -> Any:
    """A RescoreRun as ``rescore_run_create`` makes it, without enqueuing it: the benchmark executes it."""
    from leadflow.leads.models import Lead
    from scoring.models import RescoreRun, RescoreState

    return RescoreRun.objects.create(
        ruleset=ruleset, reason=reason, state=RescoreState.QUEUED, total=Lead.objects.count()
    )


@contextlib.contextmanager
def runs_captured() -> Iterator[list[int]]:
    """Services that create rescore runs (publish, the decay refresh) enqueue them on commit;
    the tasks run eagerly here, so capture the ids instead and let the benchmark time them."""
    from scoring import services

    captured: list[int] = []
    with mock.patch.object(services, "_enqueue_rescore", captured.append):
        yield captured


def time_bulk(run: Any, label: str) -> BulkResult:
    """``rescore_run_execute`` as the Celery task runs it, with its statements timed."""
    from django.db import DEFAULT_DB_ALIAS, connection, connections

    from leadflow.leads.models import Lead
    from scoring.models import RescoreState
    from scoring.services import rescore_run_execute

    log = StatementLog()
    last_print = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last_print[0] >= 10 or done == total:
            last_print[0] = now
            print(f"  {label}: {done:,}/{total:,} leads written", flush=True)

    table = _score_table()
    before, leads_before = _server_counters(table), _server_counters(Lead._meta.db_table)
    backend = type(connections[DEFAULT_DB_ALIAS])
    commit = backend._commit  # type: ignore[attr-defined]  # Django private API, for timing only

    def timed_commit(wrapper: Any) -> None:  # the deferred foreign-key checks run in COMMIT
        started = time.perf_counter()
        try:
            commit(wrapper)
        finally:
            log.statements.append(Statement(started, time.perf_counter(), "COMMIT"))

    with (
        mock.patch.object(backend, "_commit", timed_commit),
        connection.execute_wrapper(log),
        stopwatch() as watch,
    ):
        run = rescore_run_execute(run=run, progress=progress)
    after = _wait_for_stats(table, before, run.total)
    leads_after = _server_counters(Lead._meta.db_table)
    if run.state != RescoreState.DONE:
        raise BenchError(f"The rescore run ended {run.state}: {run.error}")
    return BulkResult(
        label=label,
        seconds=watch.seconds,
        transitions=run.changed_stages,
        phases=bulk_phases(log, watch.started, watch.started + watch.seconds),
        scores=after - before,
        leads_updated=(leads_after - leads_before).updated,
        stages=stage_counts(),
    )


def bulk_phases(log: StatementLog, started: float, finished: float) -> list[tuple[str, str]]:
    """The run's wall time split at the statements of ``_rescore_all_sql`` (every phase
    includes its Python work and commits). Each chunk writes its scores (upsert), applies its
    transitions (one statement), announces them (handoffs, notifications) and records its
    progress in one transaction."""
    from leadflow.db import SqlNames
    from scoring.bulk import SCORES_TABLE
    from scoring.models import Score

    write = f"INSERT INTO {SqlNames(Score).table} "  # ScoresTable.write
    transitions = "WITH scored AS"  # ScoresTable.transitions
    chunk_end = f"FROM {SCORES_TABLE} WHERE id > "  # ScoresTable.chunk_end
    compute = log.first(f"CREATE TEMP TABLE {SCORES_TABLE}")
    primary_key = log.first("ADD PRIMARY KEY")
    cleanup = log.last(f"DROP TABLE IF EXISTS {SCORES_TABLE}")
    if not (compute and primary_key and cleanup):
        return [("phases", "not recognised: scoring.bulk changed? (total only)")]
    chunks_from, chunks_to = primary_key.finished, cleanup.started
    writes, write_seconds = log.total(write, since=chunks_from, until=chunks_to)
    moves, move_seconds = log.total(transitions, since=chunks_from, until=chunks_to)
    ends, end_seconds = log.total(chunk_end, since=chunks_from, until=chunks_to)
    commits, commit_seconds = log.total("COMMIT", since=chunks_from, until=chunks_to)
    chunk_queries = [s for s in log.statements if chunks_from <= s.started < chunks_to and s.sql != "COMMIT"]
    in_sql = sum(s.finished - s.started for s in chunk_queries)
    rows = [
        ("claim, ruleset, count", compute.started - started),
        ("compute: CREATE TEMP TABLE AS scores_sql", compute.finished - compute.started),
        ("temp table primary key", primary_key.finished - primary_key.started),
        ("chunks (write + transitions + announce + progress), wall", chunks_to - chunks_from),
        (f"  of which {writes} score upserts (ScoresTable.write)", write_seconds),
        (f"  of which {moves} transition statements (ScoresTable.transitions)", move_seconds),
        (f"  of which {ends} chunk_end SELECTs", end_seconds),
        (
            f"  of which the other {len(chunk_queries) - writes - moves - ends} statements",
            in_sql - write_seconds - move_seconds - end_seconds,
        ),
        (f"  of which {commits} COMMITs (the deferred foreign-key checks run there)", commit_seconds),
        ("  of which Python between statements", chunks_to - chunks_from - in_sql - commit_seconds),
        ("drop temp table, finish run", finished - cleanup.started),
    ]
    return [(name, f"{seconds:8.2f} s") for name, seconds in rows]


def time_floor(spec: Any, as_of: datetime) -> list[tuple[str, float, str]]:
    """The same computation without writing, and simpler queries for scale: (name, seconds, result)."""
    from django.db import connection

    from scoring import bulk

    scores, params = bulk.scores_sql(spec)
    params["as_of"] = as_of
    simple, simple_params = behaviour_float_sql(spec)
    simple_params["as_of"] = as_of
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
        (
            "FLOOR: scores_sql, aggregated",
            f"SELECT count(*), sum(fit), sum(behaviour), count(last_intent_at), count(suppressed_by), "
            f"string_agg(DISTINCT grade, '') FROM ({scores}) s",
            params,
        ),
    ]
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


# Every stored field of a Score, and the name of the same value in bulk.ScoreRow.
SCORE_ROW_FIELDS = [
    ("score", "score"),
    ("fit", "fit"),
    ("behaviour", "behaviour"),
    ("grade", "grade"),
    ("last_intent_at", "last_intent_at"),
    ("behaviour_since_recycled", "behaviour_since"),
    ("suppressed_by", "suppressed_by"),
]


def check_against_engine(spec: Any, lead_ids: Sequence[int], name: str) -> CheckResult:
    """Rescore ``lead_ids`` with the single-lead Python engine at their stored
    ``computed_at`` and with their ``recycled_at``: every stored field of their Score under
    the model (score, fit, behaviour, grade, last intent, behaviour since recycling,
    suppression; the ruleset version) must equal what the engine gives. The engine gets
    all of a lead's events, not only the types the model reads."""
    from leadflow.leads.models import Event, Lead
    from scoring.bulk import ScoreRow
    from scoring.engine import EventRow, score_lead
    from scoring.models import Score
    from scoring.selectors import lead_attributes

    events: dict[int, list[EventRow]] = defaultdict(list)
    rows = Event.objects.filter(lead_id__in=lead_ids).values_list("lead_id", "id", "type", "properties", "occurred_at")
    for lead_id, event_id, event_type, properties, occurred_at in rows.iterator(chunk_size=5000):
        events[lead_id].append(EventRow(type=event_type, properties=properties, occurred_at=occurred_at, id=event_id))
    stored = {s.lead_id: s for s in Score.objects.filter(model_id=spec.model_id, lead_id__in=lead_ids)}
    mismatches = []
    leads = list(Lead.objects.filter(id__in=lead_ids).order_by("id"))
    for lead in leads:
        score = stored.get(lead.pk)
        if score is None or score.ruleset_version != spec.version:
            mismatches.append(f"lead {lead.pk}: no score of v{spec.version} ({score and score.ruleset_version})")
            continue
        result = ScoreRow.of(
            lead.pk, score_lead(lead_attributes(lead), events[lead.pk], spec, score.computed_at, lead.recycled_at)
        )
        for stored_name, row_name in SCORE_ROW_FIELDS:
            if getattr(score, stored_name) != getattr(result, row_name):
                mismatches.append(
                    f"lead {lead.pk} ({spec.model_slug}): stored {stored_name} {getattr(score, stored_name)!r}, "
                    f"Python engine {getattr(result, row_name)!r}"
                )
    if len(leads) != len(set(lead_ids)):
        mismatches.append(f"{len(set(lead_ids)) - len(leads)} sampled leads are missing")
    return CheckResult(name=name, checked=len(leads), mismatches=mismatches)


def check_all_against_sql(spec: Any) -> CheckResult:
    """Every lead's stored Score under the model against ``scores_sql`` (the floor's query)
    at the run's instant, every field: the write path lost or mixed up nothing; and no
    ``new`` lead is left meeting the model's MQL criteria (the transitions were applied)."""
    from django.db import connection

    from scoring import bulk

    table = _score_table()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(DISTINCT computed_at), min(computed_at), count(*) FROM {table} WHERE model_id = %s",  # noqa: S608
            [spec.model_id],
        )
        instants, as_of, total = cursor.fetchone()
        if instants != 1 or as_of is None:
            return CheckResult("every lead vs scores_sql", 0, [f"{instants} distinct computed_at values"])
        scores, params = bulk.scores_sql(spec)
        params.update(as_of=as_of, model=spec.model_id, version=spec.version)
        differs = " OR ".join(
            f"s.{stored} IS DISTINCT FROM q.{computed}"
            for stored, computed in [*SCORE_ROW_FIELDS[1:], ("score", "fit + q.behaviour")]
        )
        cursor.execute(f"SET work_mem = '{BULK_WORK_MEM}'")
        cursor.execute(
            f"""SELECT count(*), count(*) FILTER (WHERE s.id IS NULL)
                FROM leads_lead l LEFT JOIN ({scores}) q ON q.id = l.id
                LEFT JOIN {table} s ON s.lead_id = l.id AND s.model_id = %(model)s
                WHERE q.id IS NULL OR s.id IS NULL OR s.ruleset_version <> %(version)s OR {differs}""",  # noqa: S608
            params,
        )
        wrong, missing = cursor.fetchone()
        cursor.execute("RESET work_mem")
        grade_ok = "true" if not spec.mql_min_grade else 's.grade COLLATE "C" <= %(grade)s'
        cursor.execute(
            f"""SELECT count(*) FROM leads_lead l JOIN {table} s ON s.lead_id = l.id AND s.model_id = %(model)s
                WHERE l.stage = 'new' AND s.suppressed_by IS NULL AND s.score >= %(threshold)s AND {grade_ok}""",  # noqa: S608
            {"model": spec.model_id, "threshold": spec.mql_threshold, "grade": spec.mql_min_grade},
        )
        (unpromoted,) = cursor.fetchone()
    mismatches = []
    if wrong:
        mismatches.append(f"{wrong} leads' stored scores differ from scores_sql ({missing} without a Score row)")
    if unpromoted:
        mismatches.append(f"{unpromoted} new leads meeting the MQL criteria were not promoted")
    return CheckResult(f"{spec.model_slug}: every lead vs scores_sql, promotions", total, mismatches)


@dataclass
class NaiveResult:
    leads: int
    events: int
    seconds: float
    extrapolated: float


def time_naive(spec: Any, lead_ids: Sequence[int], total_leads: int) -> NaiveResult:
    """What a naive rescore does: per lead, load it, load its events, score in Python,
    save its Score (``update_or_create``, autocommit). Timed on a sample, extrapolated
    linearly to every lead. No transitions (the bulk path's time includes them)."""
    from django.utils import timezone

    from leadflow.leads.models import Lead
    from scoring.engine import EventRow, score_lead
    from scoring.models import Score
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
            result = score_lead(lead_attributes(lead), rows, spec, now, lead.recycled_at)
            Score.objects.update_or_create(
                model_id=spec.model_id,
                lead=lead,
                defaults={
                    "score": result.total,
                    "fit": result.fit,
                    "behaviour": result.behaviour,
                    "grade": result.grade,
                    "ruleset_version": spec.version,
                    "computed_at": now,
                    "last_intent_at": result.last_intent_at,
                    "behaviour_since_recycled": result.behaviour_since,
                    "suppressed_by": result.suppressed_by,
                },
            )
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
    models: int


def time_incremental(lead_ids: Sequence[int], chunk: int) -> IncrementalResult:
    """A backlog of flagged leads scored by ``leads_score`` (every published model) in
    chunks, as the worker does. Events: every event of the backlog's leads."""
    from leadflow.leads.models import Event, Lead
    from scoring.selectors import published_specs
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
            if time.perf_counter() - last_print >= 10:
                last_print = time.perf_counter()
                print(f"  incremental: {min(start + chunk, len(ids)):,}/{len(ids):,} leads", flush=True)
    left = sum(
        Lead.objects.filter(id__in=ids[start : start + 5000], needs_rescore=True).count()
        for start in range(0, len(ids), 5000)
    )
    return IncrementalResult(len(ids), events, watch.seconds, transitions, left, len(published_specs()))


# --- More scoring models, made through the services as an admin would ---------------------------
# (slug, name, changes to the default ruleset's fields, what to do with its rules, extra rules)
BENCH_MODEL_SLUGS = ("bench-analytics", "bench-services")


def bench_models_retire() -> None:
    """Archive the rulesets an earlier run published for the benchmark's extra models:
    the one-model measurements score the default model alone."""
    from scoring import selectors, services

    for ruleset in selectors.published_rulesets():
        if ruleset.model.slug in BENCH_MODEL_SLUGS:
            services.ruleset_archive(ruleset=ruleset)


def bench_models_publish(default: Any) -> list[int]:
    """Two more models, each a clone of the default ruleset with other thresholds and
    rules (ruleset_create, rule_create, ruleset_publish), published; returns the rescore
    runs the publishes created (not executed). They use what the default ruleset does
    not: a property condition, suppression by event and by attribute, a grade-gated SQL,
    a shorter intent window, a rule that does not decay."""
    from decimal import Decimal

    from scoring import selectors, services
    from scoring.models import RULE_FIELDS, RULESET_FIELDS, RuleKind

    base = {name: getattr(default, name) for name in RULESET_FIELDS}
    base_rules = [{name: getattr(rule, name) for name in RULE_FIELDS} for rule in default.rules.order_by("position")]
    designs: list[tuple[str, str, dict[str, Any], Callable[[dict[str, Any]], dict[str, Any] | None], list[dict]]] = [
        (
            "bench-analytics",
            "Analytics add-on (bench)",
            {
                "mql_threshold": Decimal(30),
                "sql_threshold": Decimal(50),
                "intent_window_days": 30,
                "sql_min_grade": "C",
                "decay_half_life_days": Decimal(14),
            },
            lambda rule: {**rule, "points": rule["points"] * 2} if rule["event_type"] == "pricing_view" else rule,
            [
                {
                    "kind": RuleKind.BEHAVIOUR,
                    "name": "Attribution pages",
                    "points": Decimal(4),
                    "event_type": "page_view",
                    "attribute": "topic",
                    "operator": "eq",
                    "value": "attribution",
                    "max_points": Decimal(20),
                    "window_days": 30,
                },
                {"kind": RuleKind.SUPPRESS, "name": "Unsubscribed", "points": Decimal(0), "event_type": "unsubscribe"},
            ],
        ),
        (
            "bench-services",
            "Services (bench)",
            {"mql_threshold": Decimal(50), "sql_threshold": Decimal(70), "decay_half_life_days": Decimal(45)},
            lambda rule: None if rule["event_type"] in ("email_open", "page_view") else rule,
            [
                {
                    "kind": RuleKind.BEHAVIOUR,
                    "name": "Webinar attendance (no decay)",
                    "points": Decimal(10),
                    "event_type": "webinar_attended",
                    "max_points": Decimal(20),
                    "window_days": 90,
                    "decays": False,
                },
                {
                    "kind": RuleKind.SUPPRESS,
                    "name": "Students",
                    "points": Decimal(0),
                    "attribute": "job_title",
                    "operator": "contains",
                    "value": "student",
                },
            ],
        ),
    ]
    captured: list[int] = []
    for slug, name, changes, adapt, extra in designs:
        model = next((m for m in selectors.model_list() if m.slug == slug), None)
        if model is None:
            model = services.scoring_model_create(name=name, slug=slug, description="Made by bench/rescore.py")
        fields = {**base, **changes, "name": f"{name} v{datetime.now(UTC):%H%M%S}"}
        ruleset = services.ruleset_create(user=None, model=model, **fields)
        for rule in [adapt(rule) for rule in base_rules] + extra:
            if rule is not None:
                services.rule_create(ruleset=ruleset, **{k: v for k, v in rule.items() if k != "position"})
        with runs_captured() as runs:
            services.ruleset_publish(ruleset=ruleset, user=None)
        captured += runs
    return captured


# --- EXPERIMENTS: alternatives measured here, not the product's code ----------------------------
# Each runs in a transaction that is rolled back: the benchmark data stays as it was.
Row = tuple[str, str]
EXPERIMENT_GROUPS = ("compute", "write", "transitions", "incremental", "fixes")


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


def _xact_updates(cursor: Any, table: str) -> tuple[int, int]:
    """(rows updated, HOT updates) of ``table`` counted by this backend's open transaction."""
    cursor.execute(
        "SELECT pg_stat_get_xact_tuples_updated(%s::regclass), pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
        [table, table],
    )
    updated, hot = cursor.fetchone()
    return int(updated), int(hot)


def _plan(cursor: Any, explain: list[str], title: str, statement: str, params: Any = None) -> None:
    cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, SETTINGS) {statement}", params)
    explain.append(f"--- {title}\n" + "\n".join(line for (line,) in cursor.fetchall()) + "\n")


def _vacuum(table: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM {table}")


class RecordingCursor:
    """Stands in for a cursor to capture the statements ``bulk.ScoresTable`` would run,
    so that an experiment runs the product's own SQL (on another table, or EXPLAINed)."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []
        self.rowcount = 0

    def execute(self, sql: str, params: Any = None) -> None:
        self.statements.append((sql, params))

    def fetchall(self) -> list[Any]:
        return []

    def fetchone(self) -> Any:
        return None


def product_statement(spec: Any, as_of: datetime, method: str, after: int, upto: int) -> tuple[str, Any]:
    """The statement ``ScoresTable.<method>(after=, upto=)`` runs."""
    from scoring import bulk

    recorder = RecordingCursor()
    getattr(bulk.ScoresTable(recorder, spec, as_of), method)(after=after, upto=upto)
    return recorder.statements[-1]


RECYCLED_JOIN = re.compile(
    r'LEFT JOIN \(\s*SELECT "id" AS id, "recycled_at" AS recycled_at FROM "leads_lead"\s*'
    r'WHERE "recycled_at" IS NOT NULL\s*\) rc ON rc\.id = e\."lead_id"'
)


def scores_sql_since_apart(spec: Any) -> tuple[str, dict[str, Any]]:
    """EXPERIMENT: ``scores_sql`` with the behaviour earned since recycling aggregated
    apart, over the events of recycled leads only. The product sums every event's
    decayed term twice (``SUM(term)`` and ``SUM(term) FILTER (WHERE occurred_at >
    rc.recycled_at)``) after a LEFT JOIN of every event to the recycled leads; here the
    per-(lead, rule) aggregate of all leads has neither, and a second, small aggregate
    joins only the recycled leads' later events. Same arithmetic: the result must be
    identical (checked). Built by rewriting the product's SQL text."""
    from scoring import bulk

    sql, params = bulk.scores_sql(spec)
    start = sql.index('SELECT e."lead_id" AS lead_id, r.idx, SUM(')
    group_by = 'GROUP BY e."lead_id", r.idx'
    end = sql.index(group_by) + len(group_by)
    inner = sql[start:end]
    term = inner[inner.index("r.idx, SUM(") + len("r.idx, SUM(") : inner.index(") AS total,")]
    since_filter = re.compile(
        r",\s*SUM\(" + re.escape(term) + r'\) FILTER \(WHERE e\."occurred_at" > rc\.recycled_at\) AS since'
    )
    if not since_filter.search(inner) or not RECYCLED_JOIN.search(inner):
        raise BenchError("scores_sql changed: the since-apart EXPERIMENT cannot rewrite it")
    plain = since_filter.sub("", inner)
    every = RECYCLED_JOIN.sub("", plain)
    recycled = RECYCLED_JOIN.sub(
        'JOIN (SELECT "id" AS id, "recycled_at" AS recycled_at FROM "leads_lead" WHERE "recycled_at" IS NOT NULL)'
        ' rc ON rc.id = e."lead_id" AND e."occurred_at" > rc.recycled_at',
        plain,
    ).replace(f"SUM({term}) AS total", f"SUM({term}) AS since")
    rewritten = (
        f"SELECT a.lead_id, a.idx, a.total, c.since FROM ({every}) a "
        f"LEFT JOIN ({recycled}) c ON c.lead_id = a.lead_id AND c.idx = a.idx"
    )
    return sql[:start] + rewritten + sql[end:], params


def _differences(cursor: Any, table: str, reference: str) -> int:
    """Leads whose scores differ between two tables of ``scores_sql``'s columns."""
    from scoring.bulk import SCORE_COLUMNS

    columns = [name.strip() for name in SCORE_COLUMNS.split(",") if name.strip() != "id"]
    differ = " OR ".join(f"a.{name} IS DISTINCT FROM b.{name}" for name in columns)
    cursor.execute(
        f"SELECT count(*) FROM {reference} a FULL JOIN {table} b ON a.id = b.id "  # noqa: S608
        f"WHERE a.id IS NULL OR b.id IS NULL OR {differ}"
    )
    return int(cursor.fetchone()[0])


def experiment_compute(spec: Any, as_of: datetime, explain: list[str]) -> list[Row]:
    """The temp-table query under other settings, an alternative giving the same scores
    (compared with the product's lead by lead, every column), and their plans."""
    from django.db import connection, transaction

    from scoring import bulk

    product = bulk.scores_sql(spec)
    apart = scores_sql_since_apart(spec)
    free = {"parallel_setup_cost": "0", "parallel_tuple_cost": "0"}
    variants: list[tuple[str, tuple[str, dict[str, Any]], dict[str, str]]] = [
        ("scores_sql as the product runs it (work_mem 256MB, jit on)", product, {}),
        ("EXPERIMENT behaviour since recycling aggregated apart", apart, {}),
        ("scores_sql, parallel plans costed free (parallel_setup_cost = parallel_tuple_cost = 0)", product, free),
        ("EXPERIMENT since apart, parallel plans costed free", apart, free),
        ("scores_sql as the product runs it, again (noise)", product, {}),
    ]
    rows: list[Row] = []
    with transaction.atomic(), connection.cursor() as cursor:
        for number, (name, (query, params), settings) in enumerate(variants):
            print(f"  compute: {name}", flush=True)
            _settings(cursor, work_mem=BULK_WORK_MEM, **settings)
            table = f"x_variant_{number}"
            seconds = _timed(cursor, f"CREATE TEMP TABLE {table} AS {query}", {**params, "as_of": as_of})
            differ = "" if number == 0 else f", {_differences(cursor, table, 'x_variant_0')} leads differ"
            rows.append((f"compute: {name}", f"{seconds:8.2f} s{differ}"))
        _settings(cursor, work_mem=BULK_WORK_MEM)
        query, params = product
        _plan(
            cursor,
            explain,
            "compute: scores_sql (as the product)",
            f"CREATE TEMP TABLE p1 AS {query}",
            {**params, "as_of": as_of},
        )
        transaction.set_rollback(True)
    return rows


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
    """How to write a model's scores on a refresh (every lead already has a row): the
    product's upsert (HOT updates: no index on a changing column, fillfactor 50), the same
    upsert on copies of the table at fillfactor 50 and 100, and EXPERIMENT build-and-swap
    (a new table with the other models' rows and this model's new ones, its indexes and
    foreign keys, renamed in place of the old one)."""
    from django.conf import settings
    from django.db import connection, transaction

    from scoring import bulk

    table = _score_table()
    rows: list[Row] = []

    def prepare(cursor: Any) -> list[tuple[int, int]]:
        """The run's temp table from the snapshot, and its chunks as (after, upto)."""
        _settings(cursor, work_mem=BULK_WORK_MEM)
        cursor.execute(f"CREATE TEMP TABLE {bulk.SCORES_TABLE} AS SELECT * FROM bench_x_scores")
        cursor.execute(f"ALTER TABLE {bulk.SCORES_TABLE} ADD PRIMARY KEY (id)")
        cursor.execute(f"SELECT min(id) - 1, max(id) FROM {bulk.SCORES_TABLE}")
        after, last = cursor.fetchone()
        scores = bulk.ScoresTable(cursor, spec, as_of)
        chunks = []
        while after < last:
            upto = scores.chunk_end(after=after, last=last, size=settings.RESCORE_CHUNK_SIZE)
            chunks.append((after, upto))
            after = upto
        return chunks

    def upsert(cursor: Any, label: str, target: str, chunks: list[tuple[int, int]]) -> None:
        cursor.execute("CHECKPOINT")  # every variant starts with the same full-page-write state
        before, wal_before, written = _xact_updates(cursor, target), _wal(cursor), 0
        with stopwatch() as watch:
            for after, upto in chunks:
                statement, params = product_statement(spec, as_of, "write", after, upto)
                cursor.execute(statement.replace(table, target), params)
                written += cursor.rowcount
        updated, hot = (a - b for a, b in zip(_xact_updates(cursor, target), before, strict=True))
        share = f"{100 * hot / updated:.1f} %" if updated else "-"
        rows.append(
            (
                f"write: {label}",
                f"{watch.seconds:8.2f} s, {written:,} rows, {updated:,} updated ({hot:,} HOT, {share}), "
                f"WAL {(_wal(cursor) - wal_before) / 2**20:,.0f} MiB",
            )
        )
        print(f"  write: {label}: {watch.seconds:.2f} s", flush=True)

    def copy(cursor: Any, name: str, fillfactor: int) -> None:
        cursor.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING ALL) WITH (fillfactor = {fillfactor})")
        cursor.execute(f"INSERT INTO {name} SELECT * FROM {table} ORDER BY lead_id, model_id")
        cursor.execute(f"ANALYZE {name}")

    print(f"  write: the product's upsert into {table}…", flush=True)
    _vacuum(table)
    with transaction.atomic(), connection.cursor() as cursor:
        chunks = prepare(cursor)
        statement, params = product_statement(spec, as_of, "write", *chunks[0])
        _plan(cursor, explain, "write: first chunk's upsert (refresh)", statement, params)
        statement, params = product_statement(spec, as_of, "transitions", *chunks[0])
        _plan(cursor, explain, "transitions: first chunk (refresh: the leads as the runs left them)", statement, params)
        after, upto = chunks[min(1, len(chunks) - 1)]
        cursor.execute(  # the second chunk's leads back at their generated stages, as on a first publish
            LEAD_STATE_RESET_SQL.replace("%", "%%") + " WHERE l.id > %(after)s AND l.id <= %(upto)s",
            {"after": after, "upto": upto},
        )
        statement, params = product_statement(spec, as_of, "transitions", after, upto)
        _plan(
            cursor,
            explain,
            "transitions: second chunk (or the only one), its leads at their generated stages",
            statement,
            params,
        )
        transaction.set_rollback(True)
    _vacuum(table)
    with transaction.atomic(), connection.cursor() as cursor:
        chunks = prepare(cursor)
        upsert(cursor, f"product: upsert into {table} (fillfactor 50, as left by the runs)", table, chunks)
        transaction.set_rollback(True)
    for fillfactor in (50, 100):
        with transaction.atomic(), connection.cursor() as cursor:
            chunks = prepare(cursor)
            copy(cursor, "x_scores_copy", fillfactor)
            upsert(cursor, f"same upsert into a fresh copy at fillfactor {fillfactor}", "x_scores_copy", chunks)
            transaction.set_rollback(True)
    # A first publish inserts a row per lead, and each insert queues the checks of the
    # table's two foreign keys (Django makes them DEFERRABLE INITIALLY DEFERRED: they run
    # at COMMIT, outside any statement's time). What do they cost, and what would one
    # validation of each key after the load cost instead?
    lead_fk = "FOREIGN KEY (lead_id) REFERENCES leads_lead (id)"
    model_fk = "FOREIGN KEY (model_id) REFERENCES scoring_scoringmodel (id)"
    for with_keys in (True, False):
        with transaction.atomic(), connection.cursor() as cursor:
            chunks = prepare(cursor)
            cursor.execute(f"CREATE TABLE x_first (LIKE {table} INCLUDING ALL) WITH (fillfactor = 50)")
            if with_keys:
                for key in (lead_fk, model_fk):
                    cursor.execute(f"ALTER TABLE x_first ADD {key} DEFERRABLE INITIALLY DEFERRED")
            label = "first publish: upsert into an empty copy " + (
                "with the 2 deferred foreign keys (as the product)" if with_keys else "without foreign keys"
            )
            upsert(cursor, label, "x_first", chunks)
            with stopwatch() as watch:
                if with_keys:
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the checks COMMIT would run
                else:
                    for key in (lead_fk, model_fk):
                        cursor.execute(f"ALTER TABLE x_first ADD {key}")
            rows.append(
                (
                    "  then " + ("the deferred key checks (what COMMIT runs)" if with_keys else "ADD FOREIGN KEY x2"),
                    f"{watch.seconds:8.2f} s",
                )
            )
            print(f"  write: {rows[-1][0].strip()}: {watch.seconds:.2f} s", flush=True)
            transaction.set_rollback(True)
    with transaction.atomic(), connection.cursor() as cursor:
        chunks = prepare(cursor)
        cursor.execute("CHECKPOINT")
        wal_before = _wal(cursor)
        columns = (
            "score, fit, behaviour, grade, ruleset_version, computed_at, last_intent_at, "
            "behaviour_since_recycled, suppressed_by"
        )
        with stopwatch() as watch:
            cursor.execute(f"CREATE TABLE x_swap (LIKE {table} INCLUDING DEFAULTS) WITH (fillfactor = 100)")
            cursor.execute(f"INSERT INTO x_swap SELECT * FROM {table} WHERE model_id <> %s", [spec.model_id])
            others = cursor.rowcount
            cursor.execute(
                f"""INSERT INTO x_swap (id, model_id, lead_id, {columns})
                    SELECT COALESCE(o.id, nextval(pg_get_serial_sequence('{table}', 'id'))), %(model)s, s.id,
                           s.fit + s.behaviour, s.fit, s.behaviour, s.grade, %(version)s, %(as_of)s,
                           s.last_intent_at, s.behaviour_since, s.suppressed_by
                    FROM {bulk.SCORES_TABLE} s LEFT JOIN {table} o ON o.lead_id = s.id AND o.model_id = %(model)s
                    ORDER BY s.id""",  # noqa: S608
                {"model": spec.model_id, "version": spec.version, "as_of": as_of},
            )
            mine = cursor.rowcount
            built = time.perf_counter() - watch.started
            cursor.execute("ALTER TABLE x_swap ADD PRIMARY KEY (id)")
            cursor.execute("CREATE UNIQUE INDEX x_swap_lead_model ON x_swap (lead_id, model_id)")
            indexed = time.perf_counter() - watch.started
            cursor.execute("ALTER TABLE x_swap ADD FOREIGN KEY (lead_id) REFERENCES leads_lead (id)")
            cursor.execute("ALTER TABLE x_swap ADD FOREIGN KEY (model_id) REFERENCES scoring_scoringmodel (id)")
            keyed = time.perf_counter() - watch.started
            cursor.execute(f"ALTER TABLE {table} RENAME TO x_swap_old")
            cursor.execute(f"ALTER TABLE x_swap RENAME TO {table}")
            cursor.execute("DROP TABLE x_swap_old")
        rows.append(
            (
                "write: EXPERIMENT build and swap",
                f"{watch.seconds:8.2f} s (fill {built:.2f}, + PK and key index {indexed - built:.2f}, "
                f"+ 2 foreign keys {keyed - indexed:.2f}, swap {watch.seconds - keyed:.2f}); {mine:,} rows of "
                f"this model, {others:,} of the others copied; WAL {(_wal(cursor) - wal_before) / 2**20:,.0f} MiB",
            )
        )
        print(f"  write: build and swap: {watch.seconds:.2f} s", flush=True)
        transaction.set_rollback(True)
    return rows


SCORE_JOIN = 's."lead_id" = l."id" AND s."model_id" = %(model)s'


def experiment_transitions(spec: Any, as_of: datetime, explain: list[str], chunks_measured: int = 5) -> list[Row]:
    """``ScoresTable.transitions`` on first-publish stages (the leads of the first
    ``chunks_measured`` chunks put back at their generated stages), as the product runs
    it, then with the chunk's lead-id range also on the scores table's side of the join
    (``s.lead_id > after AND s.lead_id <= upto``): the product's join gives the index on
    (lead_id, model_id) only ``model_id``, so each chunk reads every score of the model.
    The same leads must move (md5 of their stages and of the StageChanges returned)."""
    from django.conf import settings
    from django.db import connection, transaction

    rows: list[Row] = []
    digests = []
    size = settings.RESCORE_CHUNK_SIZE
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {_score_table()}")  # as a VACUUM ANALYZE after the load would leave it
        cursor.execute(f"SELECT min(lead_id) - 1 FROM {_score_table()} WHERE model_id = %s", [spec.model_id])
        (first,) = cursor.fetchone()
    bounds = [(first + index * size, first + (index + 1) * size) for index in range(chunks_measured)]
    for label, fixed in (("product", False), ("EXPERIMENT lead-id range on the scores' side too", True)):
        print(f"  transitions: {label}", flush=True)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                LEAD_STATE_RESET_SQL.replace("%", "%%") + " WHERE l.id > %(after)s AND l.id <= %(upto)s",
                {"after": bounds[0][0], "upto": bounds[-1][1]},
            )
            moved: list[str] = []
            with stopwatch() as watch:
                for after, upto in bounds:
                    statement, params = product_statement(spec, as_of, "transitions", after, upto)
                    if SCORE_JOIN not in statement:
                        raise BenchError("ScoresTable.transitions changed: the EXPERIMENT cannot rewrite it")
                    if fixed:
                        statement = statement.replace(
                            SCORE_JOIN, SCORE_JOIN + ' AND s."lead_id" > %(after)s AND s."lead_id" <= %(upto)s'
                        )
                    cursor.execute(statement, params)
                    moved += [f"{lead}|{to_stage}" for _id, lead, _from, to_stage, _score in cursor.fetchall()]
            if not fixed:
                after, upto = bounds[0]
                cursor.execute(  # undo the first chunk's moves, to show its plan again
                    LEAD_STATE_RESET_SQL.replace("%", "%%") + " WHERE l.id > %(after)s AND l.id <= %(upto)s",
                    {"after": after, "upto": upto},
                )
                statement, params = product_statement(spec, as_of, "transitions", after, upto)
                statement = statement.replace(
                    SCORE_JOIN, SCORE_JOIN + ' AND s."lead_id" > %(after)s AND s."lead_id" <= %(upto)s'
                )
                _plan(cursor, explain, "transitions: EXPERIMENT with the range on the scores' side", statement, params)
            digests.append(str(hash(tuple(sorted(moved)))))
            transaction.set_rollback(True)
        rows.append(
            (
                f"transitions, first publish, {chunks_measured} chunks of {size:,}: {label}",
                f"{watch.seconds:8.2f} s, {len(moved):,} stage changes",
            )
        )
    rows.append(("transitions: the same stage changes", "yes" if digests[0] == digests[1] else "NO"))
    return rows


UPDATE_BACK = 'WHERE l."id" = t.id AND l."stage" = t.from_stage'
CHUNK_RANGE_SCORES = ' AND s."lead_id" > %(after)s AND s."lead_id" <= %(upto)s'
CHUNK_RANGE_LEADS = ' AND l."id" > %(after)s AND l."id" <= %(upto)s'


class _RangedCursor:
    """A cursor that gives ``ScoresTable.transitions``'s statement the chunk's lead-id
    range on the scores' side of the join and on the UPDATE's target (EXPERIMENT)."""

    def __init__(self, cursor: Any):
        self._cursor = cursor

    def execute(self, sql: str, params: Any = None) -> Any:
        if SCORE_JOIN not in sql or UPDATE_BACK not in sql:
            raise BenchError("ScoresTable.transitions changed: the EXPERIMENT cannot rewrite it")
        sql = sql.replace(SCORE_JOIN, SCORE_JOIN + CHUNK_RANGE_SCORES).replace(
            UPDATE_BACK, UPDATE_BACK + CHUNK_RANGE_LEADS
        )
        return self._cursor.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@contextlib.contextmanager
def proposed_fixes() -> Iterator[None]:
    """EXPERIMENT: proposals 1 and 2 of RESULTS patched into ``scoring.bulk`` for one run:
    the transitions statement with the chunk's range on every side, and the temp table
    ANALYZEd before the first ``chunk_end``."""
    from scoring import bulk

    transitions, chunk_end = bulk.ScoresTable.transitions, bulk.ScoresTable.chunk_end
    analyzed: set[int] = set()

    def ranged_transitions(self: Any, *, after: int, upto: int) -> Any:
        cursor, self.cursor = self.cursor, _RangedCursor(self.cursor)
        try:
            return transitions(self, after=after, upto=upto)
        finally:
            self.cursor = cursor

    def analyzed_chunk_end(self: Any, *, after: int, last: int, size: int) -> int:
        if id(self) not in analyzed:
            analyzed.add(id(self))
            self.cursor.execute(f"ANALYZE {bulk.SCORES_TABLE}")
        return chunk_end(self, after=after, last=last, size=size)

    with (
        mock.patch.object(bulk.ScoresTable, "transitions", ranged_transitions),
        mock.patch.object(bulk.ScoresTable, "chunk_end", analyzed_chunk_end),
    ):
        yield


def experiment_fixes(spec: Any, leads: int, events: int, check_sample: int, rng: random.Random) -> list[Row]:
    """A refresh of the default model as the product runs it, then with ``proposed_fixes``
    (both are real runs: the scores are rewritten at a later instant), each checked
    against ``score_lead`` on a sample."""
    from django.utils import timezone

    from scoring import selectors

    ruleset = selectors.published_ruleset()
    rows: list[Row] = []
    print("  the SQL floor…", flush=True)
    name, seconds, result = time_floor(spec, timezone.now())[-1]
    rows.append((f"refresh: same-run {name}", f"{seconds:8.2f} s [{result}]"))
    for label, patch in (("product", contextlib.nullcontext()), ("EXPERIMENT proposals 1 and 2", proposed_fixes())):
        print(f"  refresh: {label}", flush=True)
        with patch:
            bulk = time_bulk(run_create(ruleset), f"refresh, {label}")
        sample = rng.sample(range(1, leads + 1), check_sample)
        check = check_against_engine(spec, sample, "sample")
        phases = {name.strip(): value.strip() for name, value in bulk.phases}
        detail = ", ".join(
            f"{name.split(' (')[0].replace('of which ', '')} {value}"
            for name, value in phases.items()
            if "upserts" in name or "transition statements" in name or "chunk_end" in name or "compute" in name
        )
        rows.append(
            (
                f"refresh: {label}",
                f"{bulk.seconds:8.2f} s = {bulk.seconds / seconds:.2f}x the floor ({detail}); {bulk.hot_share}; "
                f"{len(check.mismatches)} of {check.checked} vs score_lead differ",
            )
        )
    return rows


def scores_sql_for_leads(spec: Any) -> tuple[str, dict[str, Any]]:
    """EXPERIMENT: ``scores_sql`` restricted to the leads in ``%(ids)s`` (events and leads
    read through ``= ANY``), by rewriting the product's SQL text: the bulk engine used for
    a chunk of the incremental path's backlog."""
    from scoring import bulk

    sql, params = bulk.scores_sql(spec)
    events = 'FROM "leads_event" e'
    leads = 'FROM "leads_lead" l'
    if events not in sql or leads not in sql:
        raise BenchError("scores_sql changed: the incremental EXPERIMENT cannot rewrite it")
    sql = sql.replace(events, 'FROM (SELECT * FROM "leads_event" WHERE "lead_id" = ANY(%(ids)s)) e')
    sql = sql.replace(leads, 'FROM (SELECT * FROM "leads_lead" WHERE "id" = ANY(%(ids)s)) l')
    return sql, params


def _scores_digest(cursor: Any, ids: Sequence[int]) -> str:
    """md5 of every Score row of these leads (every model) and of their stages."""
    cursor.execute(
        f"""SELECT md5(string_agg(concat_ws('|', s.model_id, s.lead_id, s.score, s.fit, s.behaviour, s.grade,
                   s.ruleset_version, s.computed_at, s.last_intent_at, s.behaviour_since_recycled, s.suppressed_by,
                   l.stage), ',' ORDER BY s.lead_id, s.model_id))
            FROM {_score_table()} s JOIN leads_lead l ON l.id = s.lead_id WHERE s.lead_id = ANY(%s)""",  # noqa: S608
        [list(ids)],
    )
    return str(cursor.fetchone()[0])[:12]


def experiment_incremental(lead_ids: Sequence[int], chunk: int) -> list[Row]:
    """The incremental path on a backlog, as the product runs it (``leads_score``: the
    Python engine per lead and model), then with the bulk engine per chunk: per model,
    ``scores_sql_for_leads`` into the rescore's temp table, ``ScoresTable.write`` and
    ``ScoresTable.transitions``, then the bulk path's announcement (handoffs, notifications).
    Same instant; the Score rows written are compared (md5). Both rolled back."""
    from django.db import connection, transaction
    from django.utils import timezone

    from scoring import bulk, selectors, services
    from scoring.services import leads_score

    ids = sorted(lead_ids)
    as_of = timezone.now()
    specs = selectors.published_specs()
    rows: list[Row] = []
    digests = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM leads_event WHERE lead_id = ANY(%s)", [ids])
        (events,) = cursor.fetchone()
    for label in ("product: leads_score (Python engine per lead and model)", "EXPERIMENT bulk engine per chunk"):
        print(f"  incremental: {label}", flush=True)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE leads_lead SET needs_rescore = true WHERE id = ANY(%s)", [ids])
            transitions = 0
            with stopwatch() as watch:
                for start in range(0, len(ids), chunk):
                    part = ids[start : start + chunk]
                    if label.startswith("product"):
                        transitions += leads_score(lead_ids=part, as_of=as_of).transitions
                        continue
                    cursor.execute("SELECT id FROM leads_lead WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [part])
                    cursor.execute("UPDATE leads_lead SET needs_rescore = false WHERE id = ANY(%s)", [part])
                    for spec in specs:
                        query, params = scores_sql_for_leads(spec)
                        cursor.execute(f"DROP TABLE IF EXISTS {bulk.SCORES_TABLE}")
                        cursor.execute(
                            f"CREATE TEMP TABLE {bulk.SCORES_TABLE} AS {query}", {**params, "as_of": as_of, "ids": part}
                        )
                        cursor.execute(f"ALTER TABLE {bulk.SCORES_TABLE} ADD PRIMARY KEY (id)")
                        table = bulk.ScoresTable(cursor, spec, as_of)
                        table.write(after=0, upto=2**62)
                        changes = table.transitions(after=0, upto=2**62)
                        services._announce(changes, as_of)  # handoffs and notifications, as the bulk path
                        transitions += len(changes)
            digests.append(_scores_digest(cursor, ids))
            transaction.set_rollback(True)
        rows.append(
            (
                f"incremental: {label}",
                f"{watch.seconds:8.2f} s for {len(ids):,} leads, {events:,} events, {len(specs)} models: "
                f"{rate(events, watch.seconds):,.0f} events/s, {transitions:,} transitions",
            )
        )
    rows.append(
        ("incremental: same Score rows and stages (md5)", "yes" if digests[0] == digests[1] else f"NO {digests}")
    )
    return rows


def run_experiments(
    spec: Any,
    out_path: Path,
    backlog: Sequence[int],
    chunk: int,
    groups: Sequence[str] = EXPERIMENT_GROUPS,
    sizes: tuple[int, int, int] = (0, 0, 0),
    rng: random.Random | None = None,
) -> list[Row]:
    """EXPERIMENTS: EXPLAIN ANALYZE of the bulk statements and alternatives timed side by side."""
    from django.utils import timezone

    explain: list[str] = []
    rows: list[Row] = []
    try:
        if "compute" in groups:
            print("EXPERIMENT compute…", flush=True)
            rows += experiment_compute(spec, timezone.now(), explain)
        if "write" in groups:
            as_of = timezone.now() + timedelta(days=1)  # tomorrow's refresh: scores move by a day of decay
            with scores_snapshot(spec, as_of):
                print("EXPERIMENT write…", flush=True)
                rows += experiment_write(spec, as_of, explain)
        if "transitions" in groups:
            print("EXPERIMENT transitions…", flush=True)
            rows += experiment_transitions(spec, timezone.now(), explain)
        if backlog and "incremental" in groups:
            print("EXPERIMENT incremental…", flush=True)
            rows += experiment_incremental(backlog, chunk)
        if "fixes" in groups:
            print("EXPERIMENT fixes (two real refreshes of the default model)…", flush=True)
            leads, events, check_sample = sizes
            rows += experiment_fixes(spec, leads, events, check_sample, rng or random.Random(0))
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
        description="Benchmark the full rescore of a scoring model (PostgreSQL) against the SQL floor, "
        "a naive per-lead ORM loop, three models, and the incremental path.",
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
    parser.add_argument(
        "--no-models", action="store_true", help="skip the two extra models (first publishes, 3-model refresh)"
    )
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
        "--proposed-fixes",
        action="store_true",
        help="EXPERIMENT: run the measurements with proposals 1 and 2 of RESULTS patched into scoring.bulk "
        "(see proposed_fixes); the checks are unchanged",
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


def load_now() -> str:
    """The machine's load average and how busy its CPUs were over the last second: other
    people's test runs share the two cores, so every figure needs it beside it."""
    busy, total = machine_cpu_seconds()
    time.sleep(1)
    busy2, total2 = machine_cpu_seconds()
    share = 100 * (busy2 - busy) / (total2 - total) if total2 > total else float("nan")
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}; CPUs {share:.0f} % busy over 1 s"


def run(args: argparse.Namespace) -> int:
    env = in_process_env(args.database_url)
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

    if not args.only_experiments:
        bench_models_retire()
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
        cursor.execute("SHOW autovacuum")
        (autovacuum,) = cursor.fetchone()

    report(
        f"Rescore benchmark: {args.leads:,} leads, {args.events:,} events over {args.days} days",
        [
            ("command", command_line()),
            ("commit", git_commit()),
            ("started", f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"),
            ("postgresql", f"{postgres_version(args.database_url)} (autovacuum {autovacuum})"),
            *machine_summary(),
            ("speed probe", f"{speed_probe():.0f} ms (pure-Python loop, best of 3; lower is faster)"),
            ("machine load", load_now()),
            ("scoring.bulk", "EXPERIMENT: proposals 1 and 2 patched in" if args.proposed_fixes else "the product's"),
            (
                "ruleset",
                f"{spec.model_slug} v{spec.version} {ruleset.name}: "
                f"{len(spec.fit_rules)} fit, {len(spec.behaviour_rules)} behaviour, "
                f"{len(spec.suppress_rules)} suppression rules",
            ),
            ("table sizes", f"leads_event {event_size}, leads_lead {lead_size}"),
            ("leads without events", f"{without_events:,}"),
            ("events by type", ", ".join(f"{name} {count:,}" for name, count in type_counts)),
            *load_rows,
        ],
    )

    with proposed_fixes() if args.proposed_fixes else contextlib.nullcontext():
        failures = [] if args.only_experiments else measure(args, ruleset, spec, rng)

    if args.experiments:
        print("\nEXPERIMENTS (alternatives measured in rolled-back transactions; not the product's code)", flush=True)
        out = OUT_DIR / f"rescore-explain-{args.leads}-{args.events}.txt"
        backlog = rng.sample(range(1, args.leads + 1), min(args.backlog, 5000))
        report(
            "EXPERIMENTS",
            run_experiments(
                spec,
                out,
                backlog,
                args.incremental_chunk,
                args.experiments,
                (args.leads, args.events, args.check_sample),
                rng,
            ),
        )
        report("After the experiments", [("speed probe", f"{speed_probe():.0f} ms"), ("machine load", load_now())])

    for check in failures:
        print(f"\nFAILED {check.name}:", file=sys.stderr)
        for line in check.mismatches[:20]:
            print(f"  {line}", file=sys.stderr)
    return 1 if failures else 0


def git_commit() -> str:
    import subprocess

    try:
        described = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return described.stdout.strip()


def bulk_rows(bulk: BulkResult, leads: int, events: int) -> list[tuple[str, object]]:
    return [
        *bulk.phases,
        (
            "total",
            f"{bulk.seconds:8.2f} s  ({rate(leads, bulk.seconds):,.0f} leads/s, "
            f"{rate(events, bulk.seconds):,.0f} events/s)",
        ),
        ("stage transitions", f"{bulk.transitions:,}"),
        ("stages after", ", ".join(f"{stage} {count:,}" for stage, count in bulk.stages.items())),
        (
            f"{_score_table()} rows inserted / updated (HOT)",
            f"{bulk.scores.inserted:,} / {bulk.scores.updated:,} ({bulk.scores.hot:,}: {bulk.hot_share})",
        ),
        ("leads_lead rows updated", f"{bulk.leads_updated:,}"),
        ("WAL written", f"{bulk.scores.wal / 2**20:,.0f} MiB"),
    ]


def measure(args: argparse.Namespace, ruleset: Any, spec: Any, rng: random.Random) -> list[CheckResult]:
    """The floor, the two bulk runs of the default model with their checks, the naive loop,
    two more models (first publishes, then all three refreshed) and the incremental path
    with every model; prints them and a summary; returns the failed checks."""
    from django.db import connection
    from django.utils import timezone

    from scoring import selectors, services

    print("\nWarming the cache, then the SQL floor…", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM leads_event WHERE properties IS NOT NULL")
        cursor.execute("SELECT count(*) FROM leads_lead WHERE traits IS NOT NULL")
    floors = time_floor(spec, timezone.now())
    floor_seconds = floors[-1][1]
    report(
        "SQL (computes, writes nothing)", [(name, f"{seconds:8.2f} s   [{result}]") for name, seconds, result in floors]
    )

    bulks = []
    checks: list[CheckResult] = []
    labels = ("bulk run 1 (first publish: no scores yet)", "bulk run 2 (refresh: every lead has a score)")
    for label in labels:
        print(f"\n{label}…", flush=True)
        bulk = time_bulk(run_create(ruleset), label.split(" (")[0])
        bulks.append(bulk)
        sample = rng.sample(range(1, args.leads + 1), args.check_sample)
        checks.append(check_against_engine(spec, sample, f"{bulk.label}: {len(sample)} random leads vs score_lead"))
        if not args.no_full_check and bulk is bulks[0]:
            print("  checking every lead against scores_sql…", flush=True)
            checks.append(check_all_against_sql(spec))
        report(f"{label}: {bulk.seconds:.2f} s", bulk_rows(bulk, args.leads, args.events))

    naive = None
    if args.naive_sample:
        print(f"\nNaive per-lead ORM loop on {args.naive_sample:,} leads…", flush=True)
        naive = time_naive(spec, rng.sample(range(1, args.leads + 1), args.naive_sample), args.leads)

    publishes: list[BulkResult] = []
    refresh_all: list[BulkResult] = []
    if not args.no_models:
        print("\nTwo more models (cloned from the default ruleset, other thresholds and rules), published…", flush=True)
        for run_id in bench_models_publish(ruleset):
            from scoring.models import RescoreRun

            run = RescoreRun.objects.select_related("ruleset__model").get(pk=run_id)
            label = f"first publish of {run.ruleset.model.slug}"
            print(f"  {label}…", flush=True)
            publishes.append(time_bulk(run, label))
            report(f"{label}: {publishes[-1].seconds:.2f} s", bulk_rows(publishes[-1], args.leads, args.events))
        print("\nRefresh of every model (decay_refresh: one run per model)…", flush=True)
        with runs_captured() as run_ids:
            services.decay_refresh()
        from scoring.models import RescoreRun

        for run in RescoreRun.objects.filter(pk__in=run_ids).select_related("ruleset__model").order_by("pk"):
            refresh_all.append(time_bulk(run, f"refresh of {run.ruleset.model.slug}"))
            report(
                f"refresh of {run.ruleset.model.slug}: {refresh_all[-1].seconds:.2f} s",
                bulk_rows(refresh_all[-1], args.leads, args.events),
            )
        for model_spec in selectors.published_specs():
            sample = rng.sample(range(1, args.leads + 1), args.check_sample)
            checks.append(
                check_against_engine(
                    model_spec,
                    sample,
                    f"after the 3-model refresh, {model_spec.model_slug}: {len(sample)} vs score_lead",
                )
            )
        if not args.no_full_check:
            print("  checking every lead of the last model against scores_sql…", flush=True)
            checks.append(check_all_against_sql(selectors.published_specs()[-1]))

    incremental = None
    if args.backlog:
        print(f"\nIncremental: a backlog of {args.backlog:,} flagged leads…", flush=True)
        probe_before = speed_probe()
        incremental = time_incremental(rng.sample(range(1, args.leads + 1), args.backlog), args.incremental_chunk)
        probe_after = speed_probe()
        if incremental.left_flagged:
            checks.append(
                CheckResult("incremental", incremental.leads, [f"{incremental.left_flagged} leads still flagged"])
            )
    failures = [check for check in checks if check.mismatches]

    first, refresh = bulks
    rows: list[tuple[str, object]] = [
        ("bulk run 1 (first publish) / run 2 (refresh)", f"{first.seconds:.2f} s / {refresh.seconds:.2f} s"),
        ("SQL floor (scores_sql aggregated, same run)", f"{floor_seconds:.2f} s"),
        (
            "bulk / floor",
            f"{first.seconds / floor_seconds:.2f}x / {refresh.seconds / floor_seconds:.2f}x "
            f"(target ≤ {FLOOR_RATIO_TARGET:.0f}x: {verdict(first.seconds <= FLOOR_RATIO_TARGET * floor_seconds)} "
            f"for run 1, {verdict(refresh.seconds <= FLOOR_RATIO_TARGET * floor_seconds)} for run 2)",
        ),
        ("HOT updates of the refresh", f"{refresh.scores.hot:,} of {refresh.scores.updated:,} ({refresh.hot_share})"),
    ]
    if args.leads >= 1_000_000:
        rows.append(
            (
                "bulk at this size",
                f"target < {BULK_TARGET_SECONDS:.0f} s: run 1 {verdict(first.seconds < BULK_TARGET_SECONDS)}, "
                f"run 2 {verdict(refresh.seconds < BULK_TARGET_SECONDS)}",
            )
        )
    if naive:
        rows += [
            (
                "naive ORM loop",
                f"{naive.seconds:.2f} s for {naive.leads:,} leads ({naive.events:,} events): "
                f"{1000 * naive.seconds / max(naive.leads, 1):.2f} ms/lead",
            ),
            ("naive, extrapolated to every lead", f"{naive.extrapolated:,.0f} s ({naive.extrapolated / 3600:.2f} h)"),
        ]
        for bulk in bulks:
            ratio = naive.extrapolated / bulk.seconds
            rows.append(
                (
                    f"naive extrapolated / {bulk.label}",
                    f"{ratio:,.0f}x (target ≥ {NAIVE_RATIO_TARGET:.0f}x: {verdict(ratio >= NAIVE_RATIO_TARGET)})",
                )
            )
    if publishes:
        rows.append(("first publish of the 2 other models", " / ".join(f"{bulk.seconds:.2f} s" for bulk in publishes)))
    if refresh_all:
        total = sum(bulk.seconds for bulk in refresh_all)
        rows.append(
            (
                f"refresh of all {len(refresh_all)} models",
                f"{total:.2f} s ({' + '.join(f'{bulk.seconds:.2f}' for bulk in refresh_all)}) = "
                f"{total / refresh.seconds:.2f}x the default model's refresh (run 2), "
                f"{total / refresh_all[0].seconds:.2f}x its refresh in this sequence "
                f"(target < 3x: {verdict(total < 3 * refresh.seconds)})",
            )
        )
    if incremental:
        speed = rate(incremental.events, incremental.seconds)
        rows += [
            (
                "incremental backlog",
                f"{incremental.leads:,} leads, {incremental.events:,} events, {incremental.models} models, "
                f"in {incremental.seconds:.2f} s (chunks of {args.incremental_chunk}), "
                f"{incremental.transitions:,} transitions",
            ),
            (
                "incremental throughput",
                f"{speed:,.0f} events/s, {rate(incremental.leads, incremental.seconds):,.0f} leads/s "
                f"(target ≥ {INCREMENTAL_TARGET_EVENTS_PER_SECOND:,} events/s: "
                f"{verdict(speed >= INCREMENTAL_TARGET_EVENTS_PER_SECOND)}); speed probe before / after "
                f"{probe_before:.0f} / {probe_after:.0f} ms",
            ),
        ]
    for check in checks:
        rows.append((check.name, f"{check.checked:,} checked, {len(check.mismatches)} mismatches"))
    rows += [("speed probe at the end", f"{speed_probe():.0f} ms"), ("machine load at the end", load_now())]
    report("Summary", rows)
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
