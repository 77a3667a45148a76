"""Dashboard read benchmark: the marketing dashboard (``/``) at 1M leads / 10M events,
read from its rollups, against the same-run baseline of the dashboard's queries over the
base tables (the ``…_recount`` selectors, which were the dashboard before the rollups).

    .venv/bin/python bench/reads_dashboard.py --database-url postgres://postgres@127.0.0.1:5432/leadflow_bench_dash
    .venv/bin/python bench/reads_dashboard.py --rebuild            # recount the rollups first (timed)

The database is used as it is (never dropped): a copy of bench/rescore.py's data, scored,
with stage changes and handoffs. It is migrated first; the rollups are rebuilt when empty
or with ``--rebuild`` (``manage.py rollups_rebuild``, timed), then the rollup tables are
VACUUM ANALYZEd (the server runs without autovacuum).

Measured, in this process (Django set up against that database, DEBUG off):

1. the page ``GET /`` as a marketer (last 30 days, the default model), and filtered by
   one source: p50 and p95 over ``--repeats`` requests after two warm-ups, with the
   number of queries; the same page with the dashboard's numbers recounted from the
   base tables (the baseline, ``--baseline-repeats`` requests) and the ratio;
2. each part of the page on its own (p50);
3. the page's queries with JIT on and off (``SET jit``), p50 each;
4. EXPERIMENT: what an exact score histogram kept on every score write would add (the
   old scores' buckets read per chunk of a full rescore and per incremental batch);
5. the maintenance: ``score_histograms_refresh`` (one scan per model) and the
   compaction of the rollups' delta rows.

The speed probe (a fixed pure-Python loop) and the load average are printed at the start
and the end. Exit status: 0 when the page from the rollups shows the baseline's numbers
(medians within ``rollups.DURATION_PRECISION``), 1 otherwise, 3 when it cannot run.
Results and their interpretation: bench/RESULTS.md, section "Dashboard".
"""

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

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
)
from bench.rescore import load_now  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadflow_bench_dash"


def timed(function: Callable[[], Any], repeats: int, *, warmups: int = 1) -> list[float]:
    for _ in range(warmups):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def count_queries(connection: Any, function: Callable[[], Any]) -> int:
    executed: list[str] = []

    def record(execute: Callable[..., Any], sql: str, *rest: Any) -> Any:
        executed.append(sql)
        return execute(sql, *rest)

    with connection.execute_wrapper(record):
        function()
    return len(executed)


def summary(times: list[float]) -> str:
    return f"p50 {percentile(times, 0.5):7.1f} ms   p95 {percentile(times, 0.95):7.1f} ms   (n={len(times)})"


def run(args: argparse.Namespace) -> int:
    env = bench_env(
        args.database_url,
        "memory://",
        CELERY_TASK_ALWAYS_EAGER="1",
        DB_CONN_MAX_AGE="600",
        # Pages render without collectstatic (the manifest is not what is measured).
        STATICFILES_BACKEND="django.contrib.staticfiles.storage.StaticFilesStorage",
    )
    report(
        "Dashboard reads: setup",
        [
            *machine_summary(),
            ("postgres", postgres_version(args.database_url)),
            ("speed probe (start)", f"{speed_probe():.0f} ms"),
            ("load (start)", load_now()),
        ],
    )
    started = time.perf_counter()
    manage(["migrate", "--no-input"], env)
    migrate_seconds = time.perf_counter() - started
    django_setup(env)

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.db.models import Count
    from django.test import Client
    from django.urls import reverse

    from handoff import rollups as handoff_rollups
    from leadflow import selectors
    from leadflow.leads import rollups
    from leadflow.leads.models import FunnelRollup, Lead, Source, StageChange
    from leadflow.leads.roles import MARKETING
    from scoring import selectors as scoring_selectors

    rows: list[tuple[str, object]] = [("migrate", f"{migrate_seconds:.1f} s")]
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        rows.append(("jit (server default)", cursor.fetchone()[0]))
    rows += [
        ("leads", f"{Lead.objects.count():,}"),
        ("stage changes", f"{StageChange.objects.count():,}"),
    ]
    if args.rebuild or not FunnelRollup.objects.exists():
        started = time.perf_counter()
        output = manage(["rollups_rebuild"], env)
        rows.append(("rollups_rebuild", f"{time.perf_counter() - started:.1f} s ({output.strip().splitlines()[-1]})"))
    with connection.cursor() as cursor:
        for table in (
            "leads_funnelrollup",
            "leads_stageentryrollup",
            "leads_durationrollup",
            "leads_scorehistogram",
            "handoff_handoffrollup",
            "handoff_handoffdurationrollup",
        ):
            cursor.execute(f"VACUUM ANALYZE {table}")
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 -- fixed names
            rows.append((f"rows in {table}", f"{cursor.fetchone()[0]:,}"))
    report("Dashboard reads: data", rows)

    user, _created = get_user_model().objects.get_or_create(username="bench-marketer")
    user.groups.add(Group.objects.get_or_create(name=MARKETING)[0])
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    source = Source.objects.annotate(n=Count("leads")).order_by("-n")[0]
    url = reverse("dashboard")
    campaign = Lead.objects.exclude(utm_campaign="").values_list("utm_campaign", flat=True).first() or ""

    def page(query: dict[str, str] | None = None) -> Callable[[], Any]:
        def get() -> Any:
            response = client.get(url, query or {})
            if response.status_code != 200:
                raise BenchError(f"GET {url} answered {response.status_code}")
            return response

        return get

    from_rollups = selectors.dashboard_numbers
    recount_numbers = mock.patch.object(
        selectors, "dashboard_numbers", lambda **kwargs: from_rollups(**kwargs, recount=True)
    )
    # The sales outcomes were live (handoff_stats) before their rollup: the baseline counts them so.
    recount_outcomes = mock.patch.object(
        selectors, "dashboard_sales_outcomes", selectors.dashboard_sales_outcomes_recount
    )

    model = scoring_selectors.model_default()
    if model is None:
        raise BenchError("No scoring model: the benchmark needs scored data.")
    results: list[tuple[str, object]] = []
    failures = 0
    for label, query in (("all sources", None), (f"source {source.name}", {"source": source.slug})):
        queries = count_queries(connection, page(query))
        rolled_times = timed(page(query), args.repeats, warmups=2)
        with recount_numbers, recount_outcomes:
            baseline_times = timed(page(query), args.baseline_repeats, warmups=1)
        ratio = percentile(baseline_times, 0.5) / percentile(rolled_times, 0.5)
        results += [
            (f"/ {label}: rollups", f"{summary(rolled_times)}   {queries} queries"),
            (f"/ {label}: baseline (base tables)", summary(baseline_times)),
            (f"/ {label}: ratio of p50s", f"{ratio:.1f}x faster"),
        ]
        chosen = None if query is None else source
        numbers = {
            recounted: selectors.dashboard_numbers(
                period=selectors.Period.last_days(30), source=chosen, model=model, recount=recounted
            )
            for recounted in (False, True)
        }
        failures += _compare(numbers[False], numbers[True], rollups.DURATION_PRECISION, label)
        failures += _compare_outcomes(
            selectors.dashboard_sales_outcomes(period=selectors.Period.last_days(30), source=chosen),
            selectors.dashboard_sales_outcomes_recount(period=selectors.Period.last_days(30), source=chosen),
            rollups.DURATION_PRECISION,
            label,
        )
    report("Dashboard reads: the page", results)

    period = selectors.Period.last_days(30)
    parts: dict[str, Callable[[], Any]] = {
        "funnel": lambda: selectors.dashboard_funnel(period=period),
        "MQL/SQL per day": lambda: selectors.dashboard_stage_entries_per_day(period=period),
        "score histogram (snapshot)": lambda: selectors.dashboard_score_histogram(model=model),
        "per-model funnel": lambda: selectors.dashboard_model_funnel(period=period, model=model),
        "by source": lambda: selectors.dashboard_breakdown(period=period, by="source"),
        "by campaign": lambda: selectors.dashboard_breakdown(period=period, by="utm_campaign"),
        "medians": lambda: selectors.dashboard_median_times(period=period),
        "grade matrix (snapshot)": lambda: selectors.dashboard_grade_matrix(model=model),
        "sales outcomes (rollup)": lambda: selectors.dashboard_sales_outcomes(period=period),
        "sales outcomes of a source (rollup)": lambda: selectors.dashboard_sales_outcomes(period=period, source=source),
        "sales outcomes of a model (rollup)": lambda: handoff_rollups.handoff_outcomes(
            first=period.first, last=period.last, model_id=model.pk
        ),
        "sales outcomes of a campaign (rollup)": lambda: handoff_rollups.handoff_outcomes(
            first=period.first, last=period.last, campaign=campaign
        ),
        "overdue handoffs (live)": lambda: selectors.dashboard_overdue_handoffs(user=user),
        "overdue handoffs of a source (live)": lambda: selectors.dashboard_overdue_handoffs(user=user, source=source),
        "recent SQLs (live, index)": lambda: selectors.dashboard_recent_sqls(model=model),
        "recent SQLs of a source (live, index)": lambda: selectors.dashboard_recent_sqls(model=model, source=source),
    }
    baseline_parts: dict[str, Callable[[], Any]] = {
        "funnel": lambda: selectors.dashboard_funnel_recount(period=period),
        "MQL/SQL per day": lambda: selectors.dashboard_stage_entries_per_day_recount(period=period),
        "score histogram (snapshot)": lambda: selectors.dashboard_score_histogram_recount(model=model),
        "per-model funnel": lambda: selectors.dashboard_model_funnel_recount(period=period, model=model),
        "by source": lambda: selectors.dashboard_breakdown_recount(period=period, by="source"),
        "by campaign": lambda: selectors.dashboard_breakdown_recount(period=period, by="utm_campaign"),
        "medians": lambda: selectors.dashboard_median_times_recount(period=period),
        "grade matrix (snapshot)": lambda: selectors.dashboard_grade_matrix_recount(model=model),
        "sales outcomes (rollup)": lambda: selectors.dashboard_sales_outcomes_recount(period=period),
        "sales outcomes of a source (rollup)": lambda: selectors.dashboard_sales_outcomes_recount(
            period=period, source=source
        ),
    }
    part_rows = []
    for name, function in parts.items():
        times = timed(function, args.part_repeats)
        base = ""
        if name in baseline_parts:
            base = f"   baseline {percentile(timed(baseline_parts[name], 1, warmups=0), 0.5):7.1f} ms (once)"
        part_rows.append((name, f"p50 {percentile(times, 0.5):7.1f} ms{base}"))
    report("Dashboard reads: the parts (all sources, 30 days)", part_rows)
    live = {name: parts[name] for name in parts if "(live" in name or "(rollup)" in name}
    report("Dashboard reads: the plans of the parts' queries (EXPLAIN ANALYZE)", plans(connection, live))

    def every_part() -> None:
        for function in parts.values():
            function()

    jit_rows = []
    for setting in ("on", "off"):
        with connection.cursor() as cursor:
            cursor.execute(f"SET jit = {setting}")
        jit_rows.append((f"jit {setting}", summary(timed(every_part, args.part_repeats))))
    with connection.cursor() as cursor:
        cursor.execute("RESET jit")
    report("Dashboard reads: the page's queries, JIT on and off", jit_rows)

    report("Dashboard reads: EXPERIMENT, a score histogram kept per write instead", histogram_alternatives(connection))

    started = time.perf_counter()
    models = rollups.score_histograms_refresh()
    refresh = time.perf_counter() - started
    started = time.perf_counter()
    removed = rollups.rollups_compact()
    compact = time.perf_counter() - started
    report(
        "Dashboard reads: maintenance",
        [
            ("score_histograms_refresh", f"{refresh:.2f} s for {models} model(s)"),
            ("rollups_compact", f"{compact:.2f} s ({removed:,} rows folded)"),
            ("speed probe (end)", f"{speed_probe():.0f} ms"),
            ("load (end)", load_now()),
        ],
    )
    return 1 if failures else 0


def histogram_alternatives(connection: Any) -> list[tuple[str, object]]:
    """EXPERIMENT (not the product's code): what keeping the score histogram exact on
    every score write would add — the old scores' bucket counts read before each write
    (the new ones come from the rows being written): per chunk of a full rescore (20,000
    leads, by id range) and per batch of the incremental path (1,000 leads, by ids)."""
    from leadflow.db import SqlNames
    from scoring.models import Score

    score = SqlNames(Score)
    rows: list[tuple[str, object]] = []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT min({score.lead}), max({score.lead}), count(*) FROM {score.table}")  # noqa: S608
        low, high, count = cursor.fetchone()
        if not count:
            return [("skipped", "no scores")]
        chunk_times = []
        for start in range(low, high, max((high - low) // 6, 1))[1:6]:
            began = time.perf_counter()
            cursor.execute(
                f"SELECT floor({score.score} / 10), count(*) FROM {score.table} "  # noqa: S608 -- names from the model
                f"WHERE {score.lead} > %s AND {score.lead} <= %s GROUP BY 1",
                [start, start + 20_000],
            )
            cursor.fetchall()
            chunk_times.append((time.perf_counter() - began) * 1000)
        chunks = count / 20_000
        p50 = percentile(chunk_times, 0.5)
        rows.append(
            ("old buckets of a 20k chunk", f"p50 {p50:.1f} ms; x {chunks:.0f} chunks = {p50 * chunks / 1000:.2f} s")
        )
        batch_times = []
        for start in range(low, high, max((high - low) // 6, 1))[1:6]:
            began = time.perf_counter()
            cursor.execute(
                f"SELECT floor({score.score} / 10), count(*) FROM {score.table} "  # noqa: S608 -- names from the model
                f"WHERE {score.lead} = ANY(%s) GROUP BY 1",
                [list(range(start, start + 1000))],
            )
            cursor.fetchall()
            batch_times.append((time.perf_counter() - began) * 1000)
        rows.append(("old buckets of a 1k incremental batch", f"p50 {percentile(batch_times, 0.5):.1f} ms per batch"))
    return rows


def plans(connection: Any, parts: dict[str, Callable[[], Any]]) -> list[tuple[str, object]]:
    """Each query of each part, EXPLAIN ANALYZEd: its scan nodes (an index, or a sequential
    scan of what) and its execution time."""
    rows: list[tuple[str, object]] = []
    for name, function in parts.items():
        executed: list[tuple[str, Any]] = []

        def record(
            execute: Callable[..., Any], sql: str, params: Any, *rest: Any, into: list[tuple[str, Any]] = executed
        ) -> Any:
            into.append((sql, params))
            return execute(sql, params, *rest)

        with connection.execute_wrapper(record):
            function()
        for index, (sql, params) in enumerate(executed, 1):
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", params)
                lines = [line for (line,) in cursor.fetchall()]
            scans = sorted({line.strip().lstrip("-> ").split("  ")[0] for line in lines if " Scan" in line})
            took = next((line.split(":")[1].strip() for line in lines if line.startswith("Execution Time")), "?")
            rows.append((f"{name} #{index}", f"{took}: {'; '.join(scans) or 'no scan'}"))
    return rows


def _compare_outcomes(rolled: Any, counted: Any, precision: float, label: str) -> int:
    """The sales outcomes from the rollup against handoff_stats's; prints what differs."""
    failures = 0
    for key in ("total", "accepted", "rejected", "closed", "sla_breaches", "rejected_by_reason"):
        if getattr(rolled.stats, key) != getattr(counted.stats, key):
            mine, exact = getattr(rolled.stats, key), getattr(counted.stats, key)
            print(f"MISMATCH ({label}) outcomes {key}: rollup {mine!r} != handoffs {exact!r}")
            failures += 1
    for key in ("median_to_claim", "median_to_decision"):
        mine, exact = getattr(rolled, key), getattr(counted, key)
        if (mine is None) != (exact is None) or (
            exact and exact.total_seconds() >= 1 and abs(mine / exact - 1) > precision
        ):
            print(f"MISMATCH ({label}) outcomes {key}: rollup {mine} vs handoffs {exact}")
            failures += 1
    return failures


def _compare(rolled: Any, counted: Any, precision: float, label: str) -> int:
    """The dashboard's numbers from the rollups against the baseline's; prints what differs."""
    failures = 0
    for key in ("funnel", "per_day", "model_funnel", "by_source", "by_campaign"):
        if getattr(rolled, key) != getattr(counted, key):
            print(
                f"MISMATCH ({label}) {key}: rollups {getattr(rolled, key)!r} != base tables {getattr(counted, key)!r}"
            )
            failures += 1
    for key in ("to_mql", "mql_to_sql"):
        mine, exact = getattr(rolled.medians, key), getattr(counted.medians, key)
        if (mine is None) != (exact is None) or (exact and abs(mine / exact - 1) > precision):
            print(f"MISMATCH ({label}) median {key}: rollups {mine} vs base tables {exact}")
            failures += 1
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="the benchmark database (kept)")
    parser.add_argument("--repeats", type=int, default=40, help="requests of the page from the rollups")
    parser.add_argument("--baseline-repeats", type=int, default=5, help="requests of the baseline page")
    parser.add_argument("--part-repeats", type=int, default=20, help="calls of each part")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the rollups first (timed)")
    args = parser.parse_args()
    try:
        return run(args)
    except BenchError as error:
        print(f"Cannot run: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
