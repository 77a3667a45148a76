"""Reads at 1M leads / 10M events: the first page of every order the lead API and the
leads page offer (the hot-MQL list: ``stage=mql``, by score), the sales queue, each
beside the same-run baseline of the code before (django-filter's DISTINCT over every
column, the order on the outer-joined score), and what JIT costs them.

    .venv/bin/python bench/reads.py                       # leadflow_bench_lists, 40 requests a case
    .venv/bin/python bench/reads.py --reps 100 --baseline-reps 5

The database is NOT reset: it must hold bench/rescore.py's data (1M leads scored by
the default model). Its migrations are applied (the lists' index) and its tables
VACUUM ANALYZEd; a user of each role with a personal token is added. Requests run
in this process through Django's test client with a real personal token (auth, the
query, serialisation; no network). Target: hot-MQL p95 < 20 ms. Results:
bench/RESULTS.md, section "Lists".
"""

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `leadflow` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    BenchError,
    bench_env,
    django_setup,
    machine_summary,
    manage,
    percentile,
    postgres_version,
    report,
    speed_probe,
    stopwatch,
)
from bench.rescore import load_now  # noqa: E402

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadflow_bench_lists"
BROKER_URL = "redis://127.0.0.1:6379/12"  # nothing is enqueued
HOT_TARGET_MS = 20.0

# (name, URL) of the lead API's first pages; the hot-MQL list first.
API_CASES = [
    ("hot MQLs: stage=mql, by score", "/api/v1/leads?stage=mql&ordering=-score"),
    ("MQL+SQL by score", "/api/v1/leads?stage=mql&stage=sql&ordering=-score"),
    ("all leads by score", "/api/v1/leads?ordering=-score"),
    ("all leads by score, lowest first", "/api/v1/leads?ordering=score"),
    ("MQLs by score, lowest first", "/api/v1/leads?stage=mql&ordering=score"),
    ("all leads, latest activity (default)", "/api/v1/leads"),
    ("MQLs, latest activity", "/api/v1/leads?stage=mql&ordering=-activity_at"),
    ("all leads, oldest activity", "/api/v1/leads?ordering=activity_at"),
    ("all leads, newest", "/api/v1/leads?ordering=-created_at"),
    ("MQLs, oldest", "/api/v1/leads?stage=mql&ordering=created_at"),
]
PAGE_CASES = [
    ("leads page: MQLs by score (with its count)", "/leads/?stage=mql&sort=-score", "marketer"),
    ("leads page: all by score (with its count)", "/leads/?sort=-score", "marketer"),
    ("leads page: all, latest activity", "/leads/?sort=-activity", "marketer"),
    ("queue page (HTML) as a rep", "/queue/", "rep"),
]
QUEUE_CASES = [
    ("queue as a rep (queued + own claims)", "/api/v1/handoffs", "rep"),
    ("queue as a manager (every handoff)", "/api/v1/handoffs", "manager"),
    ("queue as a rep, queued only", "/api/v1/handoffs?status=queued", "rep"),
    ("queue as a manager, lowest priority first", "/api/v1/handoffs?ordering=priority", "manager"),
    ("queue as a manager, due first", "/api/v1/handoffs?ordering=due_at", "manager"),
    ("queue as a rep, newest first", "/api/v1/handoffs?ordering=-created_at", "rep"),
    ("queue as a manager, page 3", "/api/v1/handoffs?page=3", "manager"),
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DATABASE_URL, help="holds bench/rescore.py's data; not reset")
    parser.add_argument("--reps", type=int, default=40, help="timed requests per case, default 40")
    parser.add_argument("--baseline-reps", type=int, default=5, help="timed runs of each baseline query, default 5")
    parser.add_argument("--no-vacuum", action="store_true", help="skip VACUUM ANALYZE (already done)")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the same-run baseline queries and JIT (the requests only)"
    )
    parser.add_argument(
        "--write-experiment",
        action="store_true",
        help="EXPERIMENT (rolled back): a day of decay written to every score, with and without the\n"
        "indexes score_model_rank and score_model_stage_rank: seconds, WAL and HOT share; then only that",
    )
    return parser.parse_args(argv)


def people() -> dict[str, tuple[Any, str]]:
    """A marketer, a rep and a sales manager, each with a personal token (made once)."""
    from django.contrib.auth.models import Group, User

    from leadflow.leads.roles import MARKETING, SALES
    from leadflow.leads.services import api_token_create

    cast = {"marketer": (MARKETING, False), "rep": (SALES, False), "manager": (SALES, True)}
    found = {}
    for name, (role, staff) in cast.items():
        user, _ = User.objects.get_or_create(username=f"bench-reads-{name}", defaults={"is_staff": staff})
        user.groups.add(Group.objects.get(name=role))
        user.api_tokens.all().delete()
        _token, secret = api_token_create(user=user, name="bench reads")
        found[name] = (user, secret)
    return found


def timed(call: Callable[[], Any], reps: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(reps):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return seconds


def summary(seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return f"p50 {percentile(ms, 0.5):7.1f}  p95 {percentile(ms, 0.95):7.1f}  max {max(ms):7.1f} ms"


def request_case(client: Any, url: str, reps: int) -> tuple[list[float], int, int]:
    """Timings of ``url``; the statements one request runs and the rows it shows."""
    from django.db import connection

    statements = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get(url)
    if response.status_code != 200:
        raise BenchError(f"GET {url}: {response.status_code} {response.content[:300]!r}")
    shown = len(response.json()["results"]) if response["Content-Type"].startswith("application/json") else -1
    return timed(lambda: client.get(url), reps), len(statements), shown


def baseline_queries() -> list[tuple[str, Callable[[], Any]]]:
    """The first pages as the code before ran them: the lead list outer-joined to the
    default model's scores, ordered by COALESCE(score, 0), with django-filter's DISTINCT
    for a stage filter."""
    from leadflow.leads.scores import leads_annotate_scores
    from leadflow.leads.selectors import lead_list

    def before(stages: tuple[str, ...], *ordering: str) -> Callable[[], Any]:
        leads = leads_annotate_scores(lead_list())
        if stages:
            leads = leads.filter(stage__in=stages).distinct()
        return lambda: list(leads.order_by(*ordering)[:51])

    return [
        ("hot MQLs: stage=mql, by score", before(("mql",), "-score", "-id")),
        ("all leads by score", before((), "-score", "-id")),
        ("MQLs, latest activity", before(("mql",), "-activity_at", "-id")),
    ]


def jit_cases() -> list[tuple[str, Callable[[], Any]]]:
    """The whole list by score (what a page outside the index's prefix reads) and the
    hot-MQL page as it runs now, each with JIT as configured."""
    from leadflow.leads.selectors import LeadFilters, lead_search, lead_search_head

    whole = lead_search(filters=LeadFilters(stages=("mql",), sort="-score"))
    head = lead_search_head(filters=LeadFilters(stages=("mql",), sort="-score"))
    assert head is not None
    before = baseline_queries()[0]
    return [
        (f"before: {before[0]} (DISTINCT)", before[1]),
        ("MQLs by score, whole list (no index prefix)", lambda: list(whole[:51])),
        ("MQLs by score, index prefix (as served)", lambda: list(head[:51])),
    ]


def set_jit(on: bool) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SET jit = {'on' if on else 'off'}")


# A day of decay on every score with behaviour points, as the nightly refresh writes it
# (half-life 30 days: x 0.977); the columns the product's upsert sets, in one statement.
DECAY_UPDATE = """
UPDATE scoring_score SET behaviour = round(behaviour * 0.977, 2),
    score = fit + round(behaviour * 0.977, 2), computed_at = computed_at + interval '1 day'
WHERE model_id = (SELECT id FROM scoring_scoringmodel ORDER BY position, id LIMIT 1)
"""


# What the scores' stage receiver writes for one chunk of a first publish (~2,600 of its
# 20,000 leads move, 129k in all at 1M): their rows take the new stage.
STAGE_UPDATE = """
UPDATE scoring_score SET stage = 'sql'
WHERE lead_id IN (SELECT id FROM leads_lead WHERE stage = 'mql' ORDER BY id LIMIT 2600) AND stage <> 'sql'
"""


def write_experiment(database_url: str) -> None:
    """EXPERIMENT: what the lists' indexes cost the refresh's write of the scores, and the
    stage receiver's write, in a transaction rolled back each time (the table VACUUMed
    after each)."""
    import psycopg2

    connection = psycopg2.connect(database_url)
    rows: list[tuple[str, object]] = []
    variants = {  # (statement, the indexes on scoring_score's changing columns dropped, rolled back)
        "decay, with score_model_rank and score_model_stage_rank": (DECAY_UPDATE, []),
        "decay, with score_model_rank only": (DECAY_UPDATE, ["score_model_stage_rank"]),
        "decay, with neither (DROP INDEX, rolled back)": (DECAY_UPDATE, ["score_model_rank", "score_model_stage_rank"]),
        "stage of 2,600 leads' scores (a first publish's chunk)": (STAGE_UPDATE, []),
        "the same without score_model_stage_rank": (STAGE_UPDATE, ["score_model_stage_rank"]),
    }
    try:
        for variant, (statement, dropped) in variants.items():
            with connection.cursor() as cursor:
                for index in dropped:
                    cursor.execute(f"DROP INDEX IF EXISTS {index}")
                cursor.execute(
                    "SELECT pg_current_wal_insert_lsn(), pg_stat_get_xact_tuples_hot_updated('scoring_score'::regclass)"
                )
                lsn, hot_before = cursor.fetchone()
                with stopwatch() as watch:
                    cursor.execute(statement)
                updated = cursor.rowcount
                cursor.execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s), "
                    "pg_stat_get_xact_tuples_hot_updated('scoring_score'::regclass)",
                    [lsn],
                )
                wal, hot = cursor.fetchone()
                hot -= hot_before
            connection.rollback()
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("VACUUM scoring_score")
            connection.autocommit = False
            rows.append((variant, f"{watch.seconds:6.2f} s, WAL {wal / 2**20:,.0f} MiB, HOT {hot:,} of {updated:,}"))
    finally:
        connection.close()
    report("EXPERIMENT: writes to the scores (one UPDATE each, rolled back)", rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = bench_env(
        args.database_url,
        BROKER_URL,
        DB_CONN_MAX_AGE="3600",
        ALLOWED_HOSTS="localhost",
        STATICFILES_BACKEND="django.contrib.staticfiles.storage.StaticFilesStorage",  # no collectstatic here
    )
    import psycopg2

    with psycopg2.connect(args.database_url) as check, check.cursor() as cursor:
        cursor.execute("SELECT to_regclass('leads_lead') IS NOT NULL")
        if not cursor.fetchone()[0]:
            raise BenchError(f"{args.database_url} holds no leads: load bench/rescore.py's data first.")
    with stopwatch() as migrate_watch:
        migrated = manage(["migrate", "--noinput"], env)
    vacuum_seconds = 0.0
    if not args.no_vacuum:
        connection = psycopg2.connect(args.database_url)
        connection.autocommit = True
        with stopwatch() as watch, connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE leads_lead, scoring_score, handoff_handoff, scoring_scoringmodel")
        connection.close()
        vacuum_seconds = watch.seconds
    django_setup(env)
    from django.db import connection as db
    from rest_framework.test import APIClient

    with db.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM leads_lead), (SELECT count(*) FROM leads_lead WHERE stage = 'mql'), "
            "(SELECT count(*) FROM scoring_score), (SELECT count(*) FROM handoff_handoff), "
            "(SELECT count(*) FROM leads_event), current_setting('jit')"
        )
        leads, mqls, scores, handoffs, events, jit = cursor.fetchone()
    report(
        f"Reads benchmark: {leads:,} leads, {events:,} events",
        [
            ("command", " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])),
            ("started", f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"),
            ("postgresql", f"{postgres_version(args.database_url)} (jit {jit})"),
            *machine_summary(),
            ("speed probe", f"{speed_probe():.0f} ms (pure-Python loop, best of 3; lower is faster)"),
            ("machine load", load_now()),
            ("data", f"{mqls:,} MQLs, {scores:,} scores, {handoffs:,} handoffs"),
            ("migrate", f"{migrate_watch.seconds:.1f} s ({'applied' if 'Applying' in migrated else 'nothing new'})"),
            ("VACUUM ANALYZE", f"{vacuum_seconds:.1f} s"),
        ],
    )
    if args.write_experiment:
        write_experiment(args.database_url)
        return 0
    cast = people()
    clients = {}
    for name, (_user, secret) in cast.items():
        client = APIClient(SERVER_NAME="localhost")
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        clients[name] = client
    hot_p95 = float("nan")
    rows: list[tuple[str, object]] = []
    for name, url in API_CASES:
        seconds, queries, shown = request_case(clients["marketer"], url, args.reps)
        rows.append((name, f"{summary(seconds)}  {queries} queries, {shown} leads"))
        if name.startswith("hot MQLs"):
            hot_p95 = percentile(seconds, 0.95) * 1000
    report(f"Lead API, first page of 50, {args.reps} requests each (marketer's token)", rows)

    browsers = {}
    for name in ("marketer", "rep"):
        browsers[name] = APIClient(SERVER_NAME="localhost")
        browsers[name].force_login(cast[name][0])
    rows = []
    for name, url, who in PAGE_CASES:
        seconds = timed(partial(browsers[who].get, url), max(args.reps // 4, 5))
        rows.append((name, summary(seconds)))
    report("Pages (HTML, the paginator's count included)", rows)

    rows = []
    for name, url, who in QUEUE_CASES:
        seconds, queries, shown = request_case(clients[who], url, args.reps)
        rows.append((name, f"{summary(seconds)}  {queries} queries, {shown} handoffs"))
    report("Sales queue API, first page", rows)

    if args.no_baseline:
        return hot_verdict(hot_p95)
    rows = []
    baselines: dict[str, float] = {}
    for name, run in baseline_queries():
        seconds = timed(run, args.baseline_reps, warmup=1)
        baselines[name] = percentile(seconds, 0.5) * 1000
        rows.append((f"before: {name}", summary(seconds)))
    for name, url in API_CASES:
        if name in baselines:
            after = percentile(timed(partial(clients["marketer"].get, url), args.reps), 0.5) * 1000
            rows.append(
                (f"  now (whole request): {name}", f"p50 {after:.1f} ms: {baselines[name] / after:.1f}x faster")
            )
    report("Same-run baseline: the query before (the query alone) vs the request now", rows)

    rows = []
    for name, run in jit_cases():
        for on in (True, False):
            set_jit(on)
            seconds = timed(run, args.reps if "index prefix" in name else args.baseline_reps, warmup=1)
            rows.append((f"{name}, jit {'on' if on else 'off'}", summary(seconds)))
    set_jit(jit == "on")
    report("JIT (the page's query alone)", rows)

    return hot_verdict(hot_p95)


def hot_verdict(hot_p95: float) -> int:
    verdict = "met" if hot_p95 < HOT_TARGET_MS else "NOT met"
    print(f"\nHot-MQL list p95 {hot_p95:.1f} ms (target < {HOT_TARGET_MS:.0f} ms: {verdict}).")
    print(f"At the end: speed probe {speed_probe():.0f} ms, {load_now()}.")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"bench error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        os.environ.pop("DJANGO_SETTINGS_MODULE", None)
