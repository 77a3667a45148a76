"""Score quality benchmark (issue 14): the quality report and the backtest of a draft over
historical handoffs, each lead scored point-in-time, beside a plain-SQL calibration.

    .venv/bin/python bench/quality.py --leads 20000 --events 200000 --handoffs 2000   # a quick run
    .venv/bin/python bench/quality.py --leads 1000000 --events 10000000               # the issue's size
    .venv/bin/python bench/quality.py --reuse ...                                     # keep the data

The leads and events are bench/rescore.py's generator (its ``load_data``), in the database
``leadflow_bench_quality`` (dropped, created and migrated unless ``--reuse`` finds the same
sizes and seed; its name must contain "bench"). Then ``--handoffs`` historical handoffs of
the default model are made in SQL (any earlier ones and their evaluations are removed
first): leads with a hand-raise, each handed off within two days of one of its
hand-raises; sales' verdict depends on the job title and the industry (planted), 10 %
still undecided; 40 % of the accepted ones have a CRM outcome (won or lost). VACUUM
ANALYZE, then in this process (Django set up against that database):

1. the quality report of the published ruleset, cold (no cached evaluation: every handoff
   evaluated and cached) and warm (``handoff.quality.ruleset_quality``);
2. p50/p95 of the page ``/rules/<v>/quality/`` and of ``GET /api/v1/rulesets/<v>/quality``
   (Django's test client, a scoring admin; the cache warm);
3. the backtest of a draft (the published ruleset cloned, one rule's points changed) beside
   the published ruleset: the draft evaluated on the fly, the published one from the cache;
4. the baseline in the same run: the same calibration (the deciles' counts, accepted,
   rejected, won) in one plain SQL statement over the cached scores, and the same over
   the handoffs' ``priority`` (the score at SQL time, as stored: what a report without
   point-in-time evaluation would read);
5. correctness: the SQL calibration must equal the report's bands; a sample of handoffs
   evaluated again with ``scoring.engine.score_lead`` from their events up to the handoff
   must equal the cached evaluations.

The speed probe (a fixed pure-Python loop) and the load average are printed at the start
and the end: the machine is shared. Targets: the quality page < 2 s, a backtest < 30 s.
Exit status: 0 when the checks pass (targets are only reported), 1 when one fails, 3 when
the benchmark cannot run.
"""

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `leadflow` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2  # noqa: E402

from bench.common import (  # noqa: E402
    BenchError,
    bench_main,
    django_setup,
    in_process_env,
    machine_summary,
    percentile,
    postgres_version,
    report,
    speed_probe,
    stopwatch,
)
from bench.rescore import DataSpec, data_arguments, data_ready, load_now  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadflow_bench_quality"
PAGE_TARGET_SECONDS = 2.0
BACKTEST_TARGET_SECONDS = 30.0
OUTCOME_SOURCE_SLUG = "bench-quality-crm"

# The handoffs, in one statement: leads with a hand-raise, each handed off within two days
# of one of them, keeping its lead's attributes as the app does; the verdict planted on the
# job title and the industry.
HANDOFFS_SQL = """
WITH raised AS (
    SELECT DISTINCT ON (e.lead_id) e.lead_id, e.occurred_at
    FROM leads_event e
    WHERE e.type IN ('demo_request', 'contact_request')
    ORDER BY e.lead_id, md5(e.id::text || %(seed)s)
), chosen AS (
    SELECT r.lead_id,
           LEAST(r.occurred_at + (random() * interval '2 days'), now() - interval '1 hour') AS created_at,
           l.job_title ~* '(vp|chief|director|head|founder|ceo)' AS senior,
           l.industry IN ('Software', 'SaaS', 'Technology') AS tech,
           random() AS verdict, random() AS open, random() AS reason,
           jsonb_build_object('email', l.email, 'name', l.name, 'company', l.company, 'job_title', l.job_title,
                              'industry', l.industry, 'country', l.country, 'company_size', l.company_size,
                              'utm_source', l.utm_source, 'utm_medium', l.utm_medium,
                              'utm_campaign', l.utm_campaign, 'traits', l.traits) AS attributes
    FROM raised r JOIN leads_lead l ON l.id = r.lead_id
    ORDER BY md5(r.lead_id::text || %(seed)s)
    LIMIT %(handoffs)s
), decided AS (
    SELECT *, CASE
        WHEN open < 0.10 THEN 'queued'
        WHEN verdict < 0.15 + 0.45 * senior::int + 0.25 * tech::int THEN 'accepted'
        ELSE 'rejected' END AS status
    FROM chosen
)
INSERT INTO handoff_handoff (public_id, lead_id, status, priority, model_id, qualified_by, created_at, due_at,
                             decided_at, reject_reason, note, checklist, lead_attributes)
SELECT gen_random_uuid(), lead_id, status, 0, %(model_id)s, %(qualified_by)s::jsonb, created_at,
       created_at + interval '24 hours',
       CASE WHEN status <> 'queued' THEN created_at + interval '6 hours' END,
       CASE WHEN status <> 'rejected' THEN ''
            WHEN NOT senior THEN 'not_a_fit'
            ELSE (ARRAY['no_budget', 'bad_timing', 'no_response', 'other'])[1 + floor(reason * 4)::int] END,
       CASE WHEN status = 'rejected' THEN 'bench' ELSE '' END,
       '[]'::jsonb, attributes
FROM decided
"""
OUTCOMES_SQL = """
INSERT INTO leads_outcome (lead_id, source_id, outcome_id, kind, amount, currency, occurred_at, received_at,
                           properties)
SELECT h.lead_id, %(source_id)s, 'bench-' || h.id, CASE WHEN random() < 0.5 THEN 'won' ELSE 'lost' END,
       12000, 'EUR', h.created_at + interval '10 days', now(), '{}'::jsonb
FROM handoff_handoff h
WHERE h.status = 'accepted' AND random() < 0.4
"""
# The report's calibration in plain SQL: handoffs by band of their cached score.
CALIBRATION_SQL = """
SELECT width_bucket(c.score, %(edges)s::numeric[]) AS band,
       count(*),
       count(*) FILTER (WHERE h.status = 'accepted'),
       count(*) FILTER (WHERE h.status = 'rejected'),
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM leads_outcome o WHERE o.lead_id = h.lead_id
                                      AND o.kind = 'won' AND o.occurred_at >= h.created_at))
FROM handoff_cachedevaluation c JOIN handoff_handoff h ON h.id = c.handoff_id
WHERE c.ruleset_id = %(ruleset_id)s
GROUP BY 1 ORDER BY 1
"""
PRIORITY_CALIBRATION_SQL = """
SELECT width_bucket(h.priority, %(edges)s::numeric[]) AS band, count(*),
       count(*) FILTER (WHERE h.status = 'accepted'), count(*) FILTER (WHERE h.status = 'rejected')
FROM handoff_handoff h WHERE h.model_id = %(model_id)s
GROUP BY 1 ORDER BY 1
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data_arguments(parser, leads=1_000_000, events=10_000_000, database_url=DEFAULT_DATABASE_URL)
    parser.add_argument("--handoffs", type=int, default=20_000, help="historical handoffs to make")
    parser.add_argument("--reps", type=int, default=10, help="requests of the page and of the API (warm)")
    parser.add_argument("--sample", type=int, default=200, help="handoffs checked against the engine")
    return parser.parse_args(argv)


def summary(seconds: Sequence[float]) -> str:
    return (
        f"p50 {percentile(seconds, 0.5) * 1000:.0f} ms, p95 {percentile(seconds, 0.95) * 1000:.0f} ms, "
        f"max {max(seconds) * 1000:.0f} ms ({len(seconds)} requests)"
    )


def timed(call: Callable[[], Any], reps: int) -> list[float]:
    seconds = []
    for _ in range(reps):
        with stopwatch() as watch:
            answer = call()
        if getattr(answer, "status_code", 200) != 200:
            raise BenchError(f"answered {answer.status_code}")
        seconds.append(watch.seconds)
    return seconds


def make_handoffs(database_url: str, handoffs: int, seed: int) -> tuple[int, int, float]:
    """Remove earlier handoffs, then make ``handoffs`` of the default model and their outcomes."""
    connection = psycopg2.connect(database_url)
    try:
        with stopwatch() as watch, connection.cursor() as cursor:
            cursor.execute("TRUNCATE handoff_handoff, leads_outcome CASCADE")
            cursor.execute("SELECT setseed(%s)", [(seed % 1000) / 1000])
            cursor.execute("SELECT id, slug FROM scoring_scoringmodel WHERE slug = 'default'")
            row = cursor.fetchone()
            if row is None:
                raise BenchError("No default scoring model: the migrations did not run?")
            model_id, slug = row
            cursor.execute(
                HANDOFFS_SQL,
                {"seed": str(seed), "handoffs": handoffs, "model_id": model_id, "qualified_by": f'["{slug}"]'},
            )
            made = cursor.rowcount
            cursor.execute(
                "INSERT INTO leads_source (name, slug, created_at, segment_event_types) "
                "VALUES ('Benchmark CRM', %s, now(), '{}') "
                "ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                [OUTCOME_SOURCE_SLUG],
            )
            (source_id,) = cursor.fetchone()
            cursor.execute(OUTCOMES_SQL, {"source_id": source_id})
            outcomes = cursor.rowcount
        connection.commit()
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(
                "VACUUM ANALYZE handoff_handoff, leads_outcome, handoff_cachedevaluation, scoring_stagechange"
            )
    finally:
        connection.close()
    return made, outcomes, watch.seconds


def check_sample(ruleset: Any, sample: int, seed: int) -> tuple[int, int]:
    """(checked, mismatches): cached evaluations against the engine, from the events up to the handoff."""
    from handoff.models import CachedEvaluation, Handoff
    from leadflow.leads.models import Event
    from scoring import engine
    from scoring.engine import EventRow
    from scoring.selectors import lead_attributes, ruleset_spec

    spec = ruleset_spec(ruleset)
    ids = list(CachedEvaluation.objects.filter(ruleset=ruleset).values_list("handoff_id", flat=True))
    chosen = random.Random(seed).sample(ids, min(sample, len(ids)))
    mismatches = 0
    for handoff in Handoff.objects.filter(id__in=chosen).select_related("lead"):
        cached = CachedEvaluation.objects.get(ruleset=ruleset, handoff=handoff)
        events = Event.objects.filter(lead=handoff.lead, occurred_at__lte=handoff.created_at, type__in=spec.event_types)
        rows = [EventRow(e.type, e.properties, e.occurred_at, e.pk) for e in events]
        recycled = (
            handoff.lead.stage_changes.filter(to_stage="recycled", at__lte=handoff.created_at)
            .order_by("-at")
            .values_list("at", flat=True)
            .first()
        )
        result = engine.score_lead(lead_attributes(handoff.lead), rows, spec, handoff.created_at, recycled)
        if (result.total, result.fit, result.behaviour) != (cached.score, cached.fit, cached.behaviour):
            mismatches += 1
            print(f"  MISMATCH handoff {handoff.pk}: engine {result.total}, cached {cached.score}")
    return len(chosen), mismatches


def sql_calibration(sql: str, params: dict[str, Any]) -> tuple[list[tuple[Any, ...]], float]:
    from django.db import connection

    with stopwatch() as watch, connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return rows, watch.seconds


def run(args: argparse.Namespace) -> int:
    env = in_process_env(
        args.database_url,
        ALLOWED_HOSTS="testserver,localhost",
        STATICFILES_BACKEND="django.contrib.staticfiles.storage.StaticFilesStorage",
    )
    wanted = DataSpec(leads=args.leads, events=args.events, days=args.days, seed=args.seed)
    rows = data_ready(args.database_url, wanted, env, reuse=args.reuse, chunk_rows=args.copy_chunk)
    made, outcomes, handoff_seconds = make_handoffs(args.database_url, args.handoffs, args.seed)
    rows.append(("handoffs made", f"{made:,} with {outcomes:,} outcomes in {handoff_seconds:.1f} s (+ VACUUM ANALYZE)"))
    if made < args.handoffs:
        rows.append(("note", f"only {made:,} leads have a hand-raise: fewer handoffs than asked"))

    django_setup(env)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from rest_framework.test import APIClient

    from handoff import quality
    from handoff.models import CachedEvaluation
    from leadflow.leads.roles import SCORING_ADMIN
    from scoring import selectors, services
    from scoring.models import RuleSetStatus

    published = selectors.published_ruleset()
    if published is None:
        raise BenchError("No published ruleset: the default ruleset migration did not run?")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM leads_lead), (SELECT count(*) FROM leads_event), "
            "(SELECT count(*) FROM handoff_handoff), "
            "(SELECT count(*) FROM leads_event e JOIN handoff_handoff h ON h.lead_id = e.lead_id "
            "AND e.occurred_at <= h.created_at)"
        )
        leads, events, handoffs, events_before = cursor.fetchone()
    report(
        f"Score quality benchmark: {leads:,} leads, {events:,} events, {handoffs:,} handoffs",
        [
            ("command", " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])),
            ("started", f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"),
            ("postgresql", postgres_version(args.database_url)),
            *machine_summary(),
            ("speed probe", f"{speed_probe():.0f} ms (pure-Python loop, best of 3; lower is faster)"),
            ("machine load", load_now()),
            ("ruleset", f"{published.model.slug} v{published.version}: {published.rules.count()} rules"),
            ("events before their handoff", f"{events_before:,} (what the evaluation reads)"),
            *rows,
        ],
    )

    # 1. The report, cold then warm.
    CachedEvaluation.objects.filter(ruleset=published).delete()

    def fresh(version: int) -> Any:
        """The ruleset as a request reads it (its rules and model selected anew)."""
        found = selectors.ruleset_by_version(version)
        if found is None:
            raise BenchError(f"ruleset v{version} vanished")
        return found

    published = fresh(published.version)
    with stopwatch() as cold:
        report_cold = quality.ruleset_quality(ruleset=published)
    warm_seconds = []
    for _ in range(3):
        with stopwatch() as warm:
            report_warm = quality.ruleset_quality(ruleset=fresh(published.version))
        warm_seconds.append(warm.seconds)
    cached = CachedEvaluation.objects.filter(ruleset=published).count()

    # 2. The page and the API, warm.
    admin, _created = get_user_model().objects.get_or_create(username="bench-quality-admin")
    admin.groups.add(Group.objects.get_or_create(name=SCORING_ADMIN)[0])
    browser = APIClient()
    browser.force_login(admin)
    api = APIClient()
    api.force_authenticate(admin)
    page = timed(lambda: browser.get(f"/rules/{published.version}/quality/"), args.reps)
    answer = timed(lambda: api.get(f"/api/v1/rulesets/{published.version}/quality"), args.reps)

    # 3. The backtest of a draft.
    draft = services.ruleset_clone(ruleset=published, user=admin)
    rule = draft.rules.filter(kind="behaviour").order_by("id").first()
    if rule is not None:
        services.rule_update(rule=rule, changes=services.RuleChanges(points=rule.points * 2))
    draft = fresh(draft.version)
    if draft.status != RuleSetStatus.DRAFT:
        raise BenchError("the draft could not be made")
    with stopwatch() as backtest_watch:
        backtest = quality.ruleset_backtest(ruleset=draft, published=published)

    # 4. The same calibration in plain SQL.
    edges = [band.low for band in report_warm.bands if band.low is not None]
    sql_rows, sql_seconds = sql_calibration(CALIBRATION_SQL, {"edges": edges, "ruleset_id": published.pk})
    _priority_rows, priority_seconds = sql_calibration(
        PRIORITY_CALIBRATION_SQL, {"edges": edges, "model_id": published.model_id}
    )
    sql_seconds_again = min(
        sql_calibration(CALIBRATION_SQL, {"edges": edges, "ruleset_id": published.pk})[1] for _ in range(3)
    )

    # 5. Correctness.
    failures = []
    expected = [(band.count, band.accepted, band.rejected, band.won) for band in report_warm.bands if band.count]
    got = [tuple(row[1:]) for row in sql_rows]
    if got != expected:
        failures.append(f"plain-SQL calibration {got} differs from the report's {expected}")
    if [(b.count, b.accepted) for b in report_cold.bands] != [(b.count, b.accepted) for b in report_warm.bands]:
        failures.append("the cold and warm reports differ")
    checked, mismatches = check_sample(published, args.sample, args.seed)
    if mismatches:
        failures.append(f"{mismatches} of {checked} cached evaluations differ from the engine")

    report(
        "Quality report of the published ruleset (handoff.quality.ruleset_quality)",
        [
            ("cold (every handoff evaluated, cached)", f"{cold.seconds:.2f} s for {report_cold.handoffs:,} handoffs"),
            ("warm (from the cache), best of 3", f"{min(warm_seconds):.2f} s ({cached:,} cached evaluations)"),
            ("page /rules/<v>/quality/", summary(page)),
            ("API /api/v1/rulesets/<v>/quality", summary(answer)),
            (
                "report",
                f"AUC accepted {report_warm.auc_accepted or float('nan'):.3f}, won "
                f"{report_warm.auc_won or float('nan'):.3f}; accepted {report_warm.accepted.shown} of "
                f"{report_warm.decided:,} decided; {len(report_warm.bands)} bands",
            ),
        ],
    )
    report(
        f"Backtest of draft v{draft.version} (one rule's points doubled) beside v{published.version}",
        [
            ("backtest (draft on the fly, published cached)", f"{backtest_watch.seconds:.2f} s"),
            (
                "draft",
                f"AUC {backtest.draft.auc_accepted or float('nan'):.3f}, would send {backtest.draft.sent_total:,}, "
                f"accept rate {backtest.draft.sent.shown}, missed {backtest.draft.missed_accepted:,}, "
                f"spared {backtest.draft.spared_rejected:,}",
            ),
        ],
    )
    report(
        "Baseline, same run: the calibration in plain SQL",
        [
            (
                "over the cached scores (first, then best of 3)",
                f"{sql_seconds * 1000:.0f} ms, {sql_seconds_again * 1000:.0f} ms",
            ),
            ("over handoff.priority (no point-in-time)", f"{priority_seconds * 1000:.0f} ms"),
            ("check: SQL bands = the report's bands", "yes" if got == expected else "NO"),
            ("check: engine = cached, sample", f"{checked - mismatches} of {checked} equal"),
        ],
    )
    page_p95 = percentile(page, 0.95)
    print(
        f"\nQuality page p95 {page_p95:.2f} s (target < {PAGE_TARGET_SECONDS:.0f} s: "
        f"{'met' if page_p95 < PAGE_TARGET_SECONDS else 'NOT met'}); backtest {backtest_watch.seconds:.1f} s "
        f"(target < {BACKTEST_TARGET_SECONDS:.0f} s: "
        f"{'met' if backtest_watch.seconds < BACKTEST_TARGET_SECONDS else 'NOT met'})."
    )
    print(f"At the end: speed probe {speed_probe():.0f} ms, {load_now()}.")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
