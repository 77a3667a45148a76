"""Where one ingest batch spends its time: the full Django request, in this process.

    .venv/bin/python bench/ingest_profile.py                 # 10k leads, 10 warm-up + 30 timed batches
    .venv/bin/python bench/ingest_profile.py --profile 25    # and cProfile's 25 costliest functions
    .venv/bin/python bench/ingest_profile.py --segment --batch 500   # the Segment batch endpoint

Posts batches of the benchmark's events (bench/ingest.py generates them) through
Django's test client, one after another, and prints per batch: wall time, this
process's CPU, the time spent waiting on SQL, and that time by statement. No HTTP
server and no concurrency: this isolates the cost of the code path, which
bench/ingest.py then confirms under load. The database (its name must contain
"bench") is recreated unless --keep-data is given, and left in place afterwards so
that a rerun with --keep-data measures a fuller table.
"""

import argparse
import cProfile
import os
import pstats
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `leadflow` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    DEFAULT_BROKER_URL,
    BenchError,
    bench_env,
    database_reset,
    django_setup,
    manage,
    report,
    speed_probe,
)
from bench.ingest import (  # noqa: E402
    ingest_key_for_bench,
    make_events,
    make_leads,
    segment_leads,
    serialise_batches,
    serialise_segment_batches,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadflow_bench_profile"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Profile POST /api/v1/events (or the Segment batch) in-process: time per batch, "
        "SQL wait by statement.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--leads", type=int, default=10_000, help="distinct leads the events belong to")
    parser.add_argument("--warmup", type=int, default=10, help="batches posted before timing (they create leads)")
    parser.add_argument("--batches", type=int, default=30, help="batches timed")
    parser.add_argument("--batch", type=int, default=1000, help="events per batch (the API allows up to 1000)")
    parser.add_argument(
        "--segment",
        action="store_true",
        help="post the events as Segment messages to /api/segment/v1/batch (as bench/ingest.py's Segment phase)",
    )
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print cProfile's N costliest functions")
    parser.add_argument("--profile-out", metavar="FILE", help="with --profile: also save cProfile's stats (pstats)")
    parser.add_argument(
        "--pyinstrument",
        action="store_true",
        help="print pyinstrument's call tree of the timed batches (pip install pyinstrument; not a requirement)",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="database (name must contain 'bench')")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help="Redis database of the scoring requests")
    parser.add_argument("--keep-data", action="store_true", help="reuse the database as it is (no reset)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the generated data")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be between 1 and 1000 (the API limit)")
    if args.batches < 1 or args.warmup < 0 or args.leads < 1:
        parser.error("--batches and --leads must be at least 1, --warmup 0 or more")
    return args


def statement_kind(sql: str) -> str:
    """The first words of a statement, enough to tell the ingest statements apart."""
    return " ".join(sql.split()[:4])[:72]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = bench_env(args.database_url, args.broker_url)
    if not args.keep_data:
        if "bench" not in args.database_url.rsplit("/", 1)[-1]:
            raise BenchError("Refusing to reset a database without 'bench' in its name.")
        database_reset(args.database_url)
        manage(["migrate", "--noinput"], env)
    django_setup(env)
    from django.db import connection
    from django.test import Client

    import leadflow.wsgi  # noqa: F401 -- as a gunicorn worker: views loaded, boot objects frozen, GC thresholds

    key = ingest_key_for_bench(env)
    rng = random.Random(args.seed)
    leads = make_leads(args.leads, rng)
    total = (args.warmup + args.batches) * args.batch
    events = make_events(leads, total, rng, f"profile-{time.time_ns()}", datetime.now(UTC))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_HOST="127.0.0.1")
    if args.segment:
        events = make_events(segment_leads(leads), total, rng, f"profile-{time.time_ns()}", datetime.now(UTC))
        batches = serialise_segment_batches(events, args.batch)
        path, answer = "/api/segment/v1/batch", 200
    else:
        batches = serialise_batches(events, args.batch)
        path, answer = "/api/v1/events", 202

    def post(body: bytes) -> None:
        response = client.post(path, data=body, content_type="application/json")
        if response.status_code != answer or response.json().get("rejected"):
            raise BenchError(f"ingest answered {response.status_code}: {response.content[:300]!r}")

    print(f"Warming up with {args.warmup} batches…", flush=True)
    for _count, body in batches[: args.warmup]:
        post(body)

    waits: dict[str, float] = defaultdict(float)

    def timed(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            waits[statement_kind(sql)] += time.perf_counter() - start

    profiler = cProfile.Profile()
    tree: Any = None
    if args.pyinstrument:
        from pyinstrument import Profiler  # for profiling only: not in requirements

        tree = Profiler(interval=0.0005)
    statements: list[int] = [0]
    round_trips = _count_redis_round_trips()
    speed = speed_probe()
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    round_trips[0] = 0

    def counted(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        statements[0] += 1
        return timed(execute, sql, params, many, context)

    with connection.execute_wrapper(counted):
        if args.profile:
            profiler.enable()
        if tree is not None:
            tree.start()
        for _count, body in batches[args.warmup :]:
            post(body)
        if tree is not None:
            tree.stop()
        profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per_batch = 1000 / args.batches
    per_thousand = 1000 * 1000 / (args.batches * args.batch)
    profiled = " (profiled)" if args.profile or args.pyinstrument else ""
    rows: list[tuple[str, object]] = [
        ("endpoint", path),
        ("batches timed", f"{args.batches} of {args.batch} events, after {args.warmup} warm-up batches"),
        ("wall time per batch", f"{wall * per_batch:.2f} ms{profiled}"),
        ("wall time per 1000 events", f"{wall * per_thousand:.2f} ms{profiled}"),
        ("process CPU per 1000 events", f"{cpu * per_thousand:.2f} ms{profiled}"),
        ("process CPU per batch", f"{cpu * per_batch:.2f} ms (Django, validation, SQL client side){profiled}"),
        ("SQL wait per batch", f"{sum(waits.values()) * per_batch:.2f} ms (server work and client adaptation)"),
        ("SQL statements per batch", f"{statements[0] / args.batches:.2f} (BEGIN and COMMIT not seen here)"),
        ("Redis round trips per batch", f"{round_trips[0] / args.batches:.2f} (rate limits, scoring requests)"),
        ("machine speed probe", f"{speed:.0f} ms (lower is faster; see bench/RESULTS.md)"),
        ("load average (1 min)", f"{load:.1f} on {os.cpu_count()} cores"),
    ]
    rows += [
        (f"sql: {kind}", f"{seconds * per_batch:.1f} ms")
        for kind, seconds in sorted(waits.items(), key=lambda item: -item[1])
    ]
    report("Ingest, one batch at a time, in-process", rows)
    if args.profile:
        if args.profile_out:
            profiler.dump_stats(args.profile_out)
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(args.profile)
    if tree is not None:
        print(tree.output_text(unicode=True, color=False, show_all=False))
    return 0


def _count_redis_round_trips() -> list[int]:
    """A counter of the round trips this process makes to Redis (every client: the
    cache, the scoring requests, Celery), counted in redis-py's connection."""
    from redis.connection import AbstractConnection

    count = [0]
    send = AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> Any:
        count[0] += 1
        return send(self, command, check_health)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    return count


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        sys.exit(2)
