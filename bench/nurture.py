"""Nurture benchmark: the content attribution, the segments and their pages at size, beside
plain SQL that reads the same content events once.

    .venv/bin/python bench/nurture.py --leads 50000 --events 500000        # a quick run
    .venv/bin/python bench/nurture.py --leads 1000000 --events 10000000    # the other benchmarks' size
    .venv/bin/python bench/nurture.py --reuse ...                          # keep the data

The leads and events are bench/rescore.py's generator (``load_data``: 7 % of the leads in
nurture, MQL or recycled, 2 % past SQL; content downloads carry ``asset`` and ``topic``), in
the database ``leadflow_bench_nurture`` (dropped, created and migrated unless ``--reuse``
finds the same sizes and seed; its name must contain "bench").
Then, in this process (Django set up against that database):

1. ``content_attribution`` (before SQL, what converts) and ``nurture_segments_compute``
   (the snapshot: every nurture lead's top topic and recency, the segments' leads and
   next content), each timed;
2. the page ``/nurture/`` and the largest segment's page, cold (the cache cleared: the
   request computes the snapshot) and warm (p50/p95, its first and last page), and
   ``GET /api/v1/nurture/segments`` warm (Django's test client, a marketer);
3. the baseline in the same run: one plain SQL statement counting, per asset, the content
   events and the distinct leads engaged (the floor of reading the content events once).

The speed probe and the load average are printed at the start and the end: the machine
is shared. Exit status: 0 when it ran, 3 when it cannot run.
"""

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

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
from bench.quality import summary, timed  # noqa: E402
from bench.rescore import DataSpec, data_arguments, data_ready, load_now  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadflow_bench_nurture"

BASELINE_SQL = """
SELECT e.properties->>'asset' AS asset, count(*) AS events, count(DISTINCT e.lead_id) AS leads
FROM leads_event e
WHERE e.properties ? 'asset'
GROUP BY 1
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data_arguments(parser, leads=1_000_000, events=10_000_000, database_url=DEFAULT_DATABASE_URL)
    parser.add_argument("--reps", type=int, default=5, help="requests of each page and of the API")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    env = in_process_env(
        args.database_url,
        ALLOWED_HOSTS="testserver,localhost",
        STATICFILES_BACKEND="django.contrib.staticfiles.storage.StaticFilesStorage",
    )
    wanted = DataSpec(leads=args.leads, events=args.events, days=args.days, seed=args.seed)
    rows = data_ready(args.database_url, wanted, env, reuse=args.reuse, chunk_rows=args.copy_chunk)

    django_setup(env)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.cache import cache
    from django.db import connection
    from rest_framework.test import APIClient

    from leadflow.leads import nurture
    from leadflow.leads.roles import MARKETING

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM leads_lead), (SELECT count(*) FROM leads_event), "
            "(SELECT count(*) FROM leads_lead WHERE stage IN ('mql', 'recycled'))"
        )
        leads, events, in_nurture = cursor.fetchone()
    report(
        f"Nurture benchmark: {leads:,} leads ({in_nurture:,} in nurture), {events:,} events",
        [
            ("command", " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])),
            ("started", f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"),
            ("postgresql", postgres_version(args.database_url)),
            *machine_summary(),
            ("speed probe", f"{speed_probe():.0f} ms (pure-Python loop, best of 3; lower is faster)"),
            ("machine load", load_now()),
            *rows,
        ],
    )

    with stopwatch() as attribution_watch:
        attribution = nurture.content_attribution()
    with stopwatch() as segments_watch:
        segments = nurture.nurture_segments_compute()
    largest = max(segments.segments, key=lambda segment: segment.leads, default=None)
    if largest is None:
        raise BenchError("no nurture segment: the generated data has no lead in nurture")

    marketer, _created = get_user_model().objects.get_or_create(username="bench-nurture-marketer")
    marketer.groups.add(Group.objects.get_or_create(name=MARKETING)[0])
    browser = APIClient()
    browser.force_login(marketer)
    api = APIClient()
    api.force_authenticate(marketer)
    # Cold: no snapshot (the first request after NURTURE_CACHE_SECONDS); then warm.
    cache.clear()
    overview_cold = timed(lambda: browser.get("/nurture/"), 1)
    overview = timed(lambda: browser.get("/nurture/"), args.reps)
    cache.clear()
    segment_cold = timed(lambda: browser.get(f"/nurture/{largest.key}/"), 1)
    segment_page = timed(lambda: browser.get(f"/nurture/{largest.key}/"), args.reps)
    last_page = (largest.leads - 1) // 50 + 1
    segment_last = timed(lambda: browser.get(f"/nurture/{largest.key}/?page={last_page}"), args.reps)
    answer = timed(lambda: api.get("/api/v1/nurture/segments"), args.reps)

    with stopwatch() as baseline_watch, connection.cursor() as cursor:
        cursor.execute(BASELINE_SQL)
        baseline_rows = cursor.fetchall()

    report(
        "Nurture (leadflow.leads.nurture)",
        [
            (
                "content_attribution",
                f"{attribution_watch.seconds:.2f} s ({len(attribution.conversions)} assets ranked, "
                f"{attribution.mql_leads:,} MQLs)",
            ),
            (
                "nurture_segments_compute (the snapshot)",
                f"{segments_watch.seconds:.2f} s ({len(segments.segments)} segments, {segments.leads:,} leads)",
            ),
            ("page /nurture/, cold (no snapshot)", summary(overview_cold)),
            ("page /nurture/, warm", summary(overview)),
            (f"page /nurture/{largest.key}/, cold", summary(segment_cold)),
            (f"the same, warm ({largest.leads:,} leads)", summary(segment_page)),
            (f"the same, warm, its last page ({last_page})", summary(segment_last)),
            ("API /api/v1/nurture/segments, warm", summary(answer)),
            (
                "baseline: content events read once in plain SQL",
                f"{baseline_watch.seconds:.2f} s ({len(baseline_rows)} assets, "
                f"{sum(row[1] for row in baseline_rows):,} events)",
            ),
        ],
    )
    print(f"At the end: speed probe {speed_probe():.0f} ms, {load_now()}.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
