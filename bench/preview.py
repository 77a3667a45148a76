"""What-if preview benchmark: ``scoring.selectors.ruleset_preview`` of a draft over every
lead (what ``/rules/<v>/preview`` and ``POST /api/v1/rulesets/<v>/preview`` run), its time
and the memory it takes, beside the same scores computed by plain SQL in the same run.

    .venv/bin/python bench/preview.py                                     # 100k leads, 1M events
    .venv/bin/python bench/preview.py --leads 1000000 --events 10000000   # 1M leads
    .venv/bin/python bench/preview.py --reuse ...                         # keep the data

The leads and events are bench/rescore.py's generator (its ``load_data``), in the database
``leadflow_bench_preview`` (dropped, created and migrated unless ``--reuse`` finds the same
sizes and seed; its name must contain "bench"). Then, in this process (Django set up
against that database): the default model's full rescore (``rescore_run_execute``, so that
every lead has a score and a stage, as in production) and VACUUM ANALYZE, a draft (the published ruleset
cloned, one behaviour rule's points doubled), and the preview of that draft, ``--reps``
times. Memory: the process's resident set before the preview and its peak during it
(``VmHWM``, reset before each run through ``/proc/self/clear_refs``). Baseline: the
draft's scores in plain SQL (``scoring.bulk.scores_sql``, aggregated, nothing fetched),
and a count of the leads by stage. Checks: the preview counted every lead, and its stage
counts before equal the database's.
"""

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `leadflow` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    BenchError,
    bench_main,
    django_setup,
    in_process_env,
    machine_summary,
    postgres_version,
    report,
    speed_probe,
    stopwatch,
)
from bench.rescore import DataSpec, data_arguments, data_ready, load_now, run_create  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadflow_bench_preview"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time and memory of the what-if preview of a draft over every lead.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data_arguments(parser, leads=100_000, events=1_000_000, database_url=DEFAULT_DATABASE_URL)
    parser.add_argument("--reps", type=int, default=2, help="previews timed")
    args = parser.parse_args(argv)
    if args.leads < 1 or args.events < 0 or args.reps < 1:
        parser.error("--leads and --reps must be at least 1, --events 0 or more")
    if "bench" not in args.database_url.rsplit("/", 1)[-1]:
        parser.error("--database-url: the database's name must contain 'bench' (it is dropped and created)")
    return args


def memory_kib(field: str) -> int:
    """A line of /proc/self/status in KiB: VmRSS (now) or VmHWM (the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise BenchError(f"/proc/self/status has no {field}")


def peak_reset() -> None:
    """Start VmHWM again from the current resident set (Linux: clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def run(args: argparse.Namespace) -> int:
    env = in_process_env(args.database_url)
    wanted = DataSpec(leads=args.leads, events=args.events, days=args.days, seed=args.seed)
    rows = data_ready(args.database_url, wanted, env, reuse=args.reuse, chunk_rows=args.copy_chunk)

    django_setup(env)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from leadflow.leads.models import Lead
    from scoring import bulk, selectors, services
    from scoring.models import RuleSetStatus, Score

    published = selectors.published_ruleset()
    if published is None:
        raise BenchError("No published ruleset: the default ruleset migration did not run?")
    if not Score.objects.filter(model_id=published.model_id).exists():
        print("Scoring every lead under the published ruleset (a full rescore)…", flush=True)
        with stopwatch() as watch:
            services.rescore_run_execute(run=run_create(published))
        rows.append(("full rescore (every lead scored, stages moved)", f"{watch.seconds:.1f} s"))
    with connection.cursor() as cursor:  # as autovacuum would after the rescore's writes
        cursor.execute("VACUUM ANALYZE scoring_score, leads_lead")
    admin, _created = get_user_model().objects.get_or_create(username="bench-preview-admin")
    clone = services.ruleset_clone(ruleset=published, user=admin)
    rule = clone.rules.filter(kind="behaviour").order_by("id").first()
    if rule is not None:
        services.rule_update(rule=rule, changes=services.RuleChanges(points=rule.points * 2))
    draft = selectors.ruleset_by_version(clone.version)
    if draft is None or draft.status != RuleSetStatus.DRAFT:
        raise BenchError("the draft could not be made")
    leads = Lead.objects.count()
    report(
        f"What-if preview benchmark: {leads:,} leads, {wanted.events:,} events",
        [
            ("command", " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])),
            ("started", f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"),
            ("postgresql", postgres_version(args.database_url)),
            *machine_summary(),
            ("speed probe", f"{speed_probe():.0f} ms (pure-Python loop, best of 3; lower is faster)"),
            ("machine load", load_now()),
            ("draft", f"v{draft.version}: v{published.version} cloned, one behaviour rule's points doubled"),
            *rows,
        ],
    )

    runs: list[tuple[float, int, int]] = []  # seconds, resident before (KiB), peak during (KiB)
    preview: Any = None
    for _ in range(args.reps):
        draft = selectors.ruleset_by_version(draft.version) or draft  # as a request reads it
        preview = None  # the last run's result is not part of this one's memory
        before = memory_kib("VmRSS")
        peak_reset()
        with stopwatch() as watch:
            preview = selectors.ruleset_preview(ruleset=draft)
        runs.append((watch.seconds, before, memory_kib("VmHWM")))
    spec = selectors.ruleset_spec(draft)
    sql, params = bulk.scores_sql(spec)
    params["as_of"] = datetime.now(UTC)
    with connection.cursor() as cursor, stopwatch() as floor:
        cursor.execute(f"SELECT count(*), sum(fit + behaviour) FROM ({sql}) s", params)  # noqa: S608 -- generated
        floor_count, _total = cursor.fetchone()
    with connection.cursor() as cursor, stopwatch() as stages_watch:
        cursor.execute("SELECT stage, count(*) FROM leads_lead WHERE erased_at IS NULL GROUP BY stage")
        stages = dict(cursor.fetchall())

    failures = []
    if preview.leads != floor_count:
        failures.append(f"the preview counted {preview.leads:,} leads, the SQL {floor_count:,}")
    if {k: v for k, v in preview.stages_before.items() if v} != {k: v for k, v in stages.items() if v}:
        failures.append(f"stages before {preview.stages_before} differ from the database's {stages}")
    report(
        f"ruleset_preview of draft v{draft.version} over {preview.leads:,} leads",
        [
            *(
                (
                    f"run {n}",
                    f"{seconds:.1f} s; resident {before / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB "
                    f"(+{(peak - before) / 1024:.0f} MiB; a later run reuses what the first freed)",
                )
                for n, (seconds, before, peak) in enumerate(runs, 1)
            ),
            ("movers, stage changes", f"{sum(preview.counts.values()):,} counted in the preview's lists"),
            ("baseline: the draft's scores in plain SQL (aggregated)", f"{floor.seconds:.1f} s"),
            ("baseline: leads by stage", f"{stages_watch.seconds * 1000:.0f} ms"),
            ("check: every lead previewed", "yes" if preview.leads == floor_count else "NO"),
        ],
    )
    print(f"At the end: speed probe {speed_probe():.0f} ms, {load_now()}.")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
