"""Real time: how long a hand-raise takes to reach sales (event → SQL → handoff) while
ingest runs flat out, and how fast batch ingest goes while workers score at the same time.

    .venv/bin/python bench/realtime.py                              # 2 workers on one queue
    .venv/bin/python bench/realtime.py --intent-worker              # + a worker for the fast lane
    .venv/bin/python bench/realtime.py --seconds 30 --leads 20000   # shorter

The database ``leadflow_bench_realtime`` is dropped, created and migrated (the default
model's published rules); gunicorn serves the API and real Celery workers
(``--pool=solo``) score, on Redis database 13. Then, with a background of ``--leads``
leads already known (one batch of events each, scored):

1. **idle**: a probe lead raises a hand every ``--probe-interval`` seconds (one request:
   a pricing view and a demo request of a lead whose fit makes it an SQL); its latency
   is from the 202 to its handoff row, polled every 5 ms: the same-run baseline;
2. **loaded**: the same probes while ``--clients`` clients post batches of 1,000 ordinary
   events as fast as the server takes them for ``--seconds`` (the ingest rate with the
   workers scoring is measured there), then how long the workers take to drain the
   flagged leads left.

Prints p50/p95/max of each, the ingest rate, the backlog, the speed probe and the load.
Exit status: 0 when every probe reached sales and every batch was accepted, 1 otherwise,
3 when the benchmark cannot run. Results: bench/RESULTS.md, section "Real time".
"""

import argparse
import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `leadflow` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2  # noqa: E402
import requests  # noqa: E402

from bench.common import (  # noqa: E402
    OUT_DIR,
    BenchError,
    CpuMeter,
    PgActivitySampler,
    bench_env,
    bench_main,
    child_pids,
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
    report,
    speed_probe,
)
from bench.ingest import cpu_rows, make_events, make_leads, post_batches, serialise_batches  # noqa: E402
from bench.rescore import command_line, git_commit, load_now  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadflow_bench_realtime"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/13"
LATENCY_TARGET_SECONDS = 1.0  # p95, event → SQL + handoff, under full ingest
INGEST_TARGET_EVENTS_PER_SECOND = 8_000  # batch ingest with the workers scoring
ORDINARY = ["page_view", "email_open", "email_click", "content_download", "webinar_registered"]


@dataclass
class Probes:
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class Workers:
    def __init__(self, env: dict[str, str], queues: Sequence[str]):
        self.env, self.queues = env, queues
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> "Workers":
        for index, queue_name in enumerate(self.queues):
            log = (OUT_DIR / f"realtime-worker-{index + 1}.log").open("wb")
            command = [sys.executable, "-m", "celery", "-A", "leadflow", "worker", "--pool=solo", "-Q", queue_name]
            command += [f"--hostname=rt{index + 1}@%h", "--without-mingle", "--without-gossip", "--loglevel=WARNING"]
            self.processes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))
        from leadflow.celery import app

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(process.poll() is not None for process in self.processes):
                raise BenchError(f"A worker exited at start: see {OUT_DIR}/realtime-worker-*.log")
            if len(app.control.ping(timeout=1.0) or []) >= len(self.processes):
                return self
        raise BenchError("The workers did not answer a ping within 120 s")

    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def probe_batch(number: int) -> tuple[str, bytes]:
    """One request that makes a new lead an SQL under the default rules: fit 40 (VP, 600
    people, software) + pricing view 10 + demo request 30 = 80 ≥ 60, with a hand-raise."""
    email = f"probe-{number}@probe-{number}.example"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    lead = {"email": email, "name": f"Probe {number}", "job_title": "VP Marketing", "company_size": 600}
    lead["industry"] = "software"
    events = [
        {"event_id": f"probe-{number}-p", "type": "pricing_view", "occurred_at": now, "lead": lead},
        {"event_id": f"probe-{number}-d", "type": "demo_request", "occurred_at": now, "lead": lead},
    ]
    return email, json.dumps({"events": events}).encode()


def run_probes(url: str, key: str, database_url: str, count: int, interval: float, start: int) -> Probes:
    """``count`` hand-raises, one every ``interval`` s, each timed from its 202 to its handoff."""
    probes = Probes()
    session = requests.Session()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    try:
        for number in range(start, start + count):
            began = time.monotonic()
            email, body = probe_batch(number)
            response = session.post(f"{url}/api/v1/events", data=body, headers=headers, timeout=60)
            if response.status_code != 202 or response.json().get("accepted") != 2:
                probes.failures.append(f"probe {number}: HTTP {response.status_code} {response.text[:200]}")
                continue
            answered = time.monotonic()
            deadline = answered + 120
            with connection.cursor() as cursor:
                while time.monotonic() < deadline:
                    cursor.execute(
                        "SELECT 1 FROM handoff_handoff h JOIN leads_lead l ON l.id = h.lead_id WHERE l.email = %s",
                        [email],
                    )
                    if cursor.fetchone():
                        probes.latencies.append(time.monotonic() - answered)
                        break
                    time.sleep(0.005)
                else:
                    probes.failures.append(f"probe {number}: no handoff after 120 s")
            time.sleep(max(0.0, interval - (time.monotonic() - began)))
    finally:
        connection.close()
        session.close()
    return probes


def statement_kind(sql: str | None) -> str:
    """What a statement of the app is, for the lock-wait table: ingest's or scoring's steps.
    pg_stat_activity keeps the first 1 kB of a statement (``track_activity_query_size``), so
    statements are told apart by how they begin."""
    text = " ".join((sql or "").split())
    kinds = [
        ('UPDATE "leads_lead" SET "needs_rescore" = false', "scoring: take/clear the flag"),
        ('UPDATE "leads_lead" SET "needs_rescore" = true', "ingest: flag its new leads again"),
        ('SELECT "id", "email", "external_id", "last_activity_at" FROM', "ingest: lock its known leads"),
        ('SELECT "leads_lead"."id", "leads_lead"."public_id"', "scoring: lock leads (select_for_update)"),
        ('INSERT INTO "leads_event"', "ingest: insert events"),
        ('UPDATE "leads_lead" SET', "ingest: update leads (or a stage change)"),
        ("WITH s AS", "scoring: compute and write scores"),
        ("WITH chunk_events", "scoring: compute and write scores"),
        ('INSERT INTO "scoring_score"', "scoring: compute and write scores"),
        ("WITH ranked AS", "scoring: account roll-up"),
        ('SELECT "leads_account"', "scoring: account roll-up"),
    ]
    for start, kind in kinds:
        if text.startswith(start):
            return kind
    return text[:60] or "(none)"


class LockWaits:
    """Samples, every ``interval`` s, who waits for a lock on whom (pg_blocking_pids): the
    waiter's and the blocker's statement (the blocker's last one if it is idle in its
    transaction), so that ingest waiting on scoring shows apart from ingest waiting on ingest."""

    def __init__(self, database_url: str, interval: float = 0.1):
        self.database_url, self.interval = database_url, interval
        self.pairs: dict[tuple[str, str], int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-waits", daemon=True)

    def _run(self) -> None:
        connection = psycopg2.connect(self.database_url)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                while not self._stop.wait(self.interval):
                    cursor.execute(
                        "SELECT w.query, b.query FROM pg_stat_activity w"
                        " CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocker(pid)"
                        " JOIN pg_stat_activity b ON b.pid = blocker.pid"
                        " WHERE w.datname = current_database() AND w.wait_event_type = 'Lock'"
                    )
                    self.samples += 1
                    for waiter, blocker in cursor.fetchall():
                        pair = (statement_kind(waiter), statement_kind(blocker))
                        self.pairs[pair] = self.pairs.get(pair, 0) + 1
        finally:
            connection.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[tuple[str, str]]:
        """(waiter ← blocker, how often), most frequent first."""
        self._stop.set()
        self._thread.join()
        ordered = sorted(self.pairs.items(), key=lambda item: -item[1])
        return [
            (f"lock wait: {waiter} ← {blocker}", f"{count / max(self.samples, 1):.2f} waiting sessions on average")
            for (waiter, blocker), count in ordered
        ]


def vacuum_analyze(database_url: str) -> None:
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    finally:
        connection.close()


def flagged(database_url: str) -> int:
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM leads_lead WHERE needs_rescore")
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


def summary(probes: Probes) -> str:
    if not probes.latencies:
        return "no probe reached sales"
    ms = [1000 * value for value in probes.latencies]
    return (
        f"p50 {percentile(ms, 0.5):,.0f} ms, p95 {percentile(ms, 0.95):,.0f} ms, max {max(ms):,.0f} ms "
        f"({len(ms)} probes)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Hand-raise latency (event → SQL → handoff) idle and under full ingest, with real workers; "
        "batch ingest rate while the workers score.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="dropped and recreated ('bench' in name)")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help="Redis for the tasks (flushed)")
    parser.add_argument("--leads", type=int, default=50_000, help="leads the ordinary activity belongs to")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long ingest runs flat out")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients posting batches of 1,000")
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers on the scoring queue")
    parser.add_argument(
        "--intent-worker", action="store_true", help="SCORING_INTENT_QUEUE=intent and one more worker for it"
    )
    parser.add_argument("--probe-interval", type=float, default=0.5, help="seconds between hand-raises")
    parser.add_argument("--idle-probes", type=int, default=20, help="hand-raises with no other ingest")
    parser.add_argument("--seed", type=int, default=2026, help="random seed of the generated events")
    args = parser.parse_args(argv)
    if min(args.leads, args.clients, args.web_workers, args.workers, args.idle_probes) < 1 or args.seconds <= 0:
        parser.error("--leads, --clients, --web-workers, --workers, --idle-probes and --seconds must be positive")
    return args


def run(args: argparse.Namespace) -> int:
    extra = {"DB_CONN_MAX_AGE": "60", "CELERY_TASK_ALWAYS_EAGER": "0", "LOG_LEVEL": "WARNING"}
    if args.intent_worker:
        extra["SCORING_INTENT_QUEUE"] = "intent"
    env = bench_env(args.database_url, args.broker_url, **extra)
    database_reset(args.database_url)
    manage(["migrate", "--noinput"], env)
    redis_flush(args.broker_url)
    django_setup(env)
    OUT_DIR.mkdir(exist_ok=True)
    key = manage(["create_ingest_key", "bench"], env).strip().splitlines()[-1].strip()
    rng = random.Random(args.seed)
    leads = make_leads(args.leads, rng)
    now = datetime.now(UTC)
    report(
        "Real time: a hand-raise under full ingest, with real workers",
        [
            ("command", command_line()),
            ("commit", git_commit()),
            ("started", f"{now:%Y-%m-%d %H:%M:%S} UTC"),
            ("postgresql", postgres_version(args.database_url)),
            *machine_summary(),
            ("speed probe", f"{speed_probe():.0f} ms (pure-Python loop, best of 3; lower is faster)"),
            ("machine load", load_now()),
            (
                "set-up",
                f"gunicorn ×{args.web_workers}, {args.workers} scoring worker(s) on 'scoring'"
                + (", 1 on 'intent'" if args.intent_worker else " (the fast lane shares it)"),
            ),
        ],
    )
    server = gunicorn_start(env, workers=args.web_workers)
    failures: list[str] = []
    queues = ["scoring"] * args.workers + (["intent"] if args.intent_worker else [])  # SCORING_QUEUE
    try:
        with Workers(env, queues) as workers:
            print(f"\nKnown leads: one batch of events for each of {args.leads:,}…", flush=True)
            known = [dict(event, type=rng.choice(ORDINARY)) for event in make_events(leads, args.leads, rng, "k", now)]
            warm = post_batches(server.url, key, serialise_batches(known, 1000), args.clients)
            failures += warm.failures
            drain_started = time.monotonic()
            while flagged(args.database_url) and time.monotonic() - drain_started < 600:
                time.sleep(0.5)
            print(f"  scored in {time.monotonic() - drain_started:.1f} s after the last batch", flush=True)
            vacuum_analyze(args.database_url)  # as autovacuum would after a load (it is off here)

            print("\nIdle: hand-raises alone…", flush=True)
            idle = run_probes(server.url, key, args.database_url, args.idle_probes, args.probe_interval, 0)
            failures += idle.failures

            print(f"\nLoaded: {args.clients} clients post batches of 1,000 for {args.seconds:.0f} s…", flush=True)
            per_batch = 1000
            total = int(args.seconds * 30_000)  # more than the server can take in that time
            load_events = [dict(event, type=rng.choice(ORDINARY)) for event in make_events(leads, total, rng, "l", now)]
            batches = serialise_batches(load_events, per_batch)
            stop = threading.Event()
            posted: list[Any] = []

            def ingest() -> None:
                # Post in rounds of one batch per client until the time is up.
                position = 0
                while not stop.is_set() and position < len(batches):
                    step = batches[position : position + args.clients]
                    posted.append(post_batches(server.url, key, step, args.clients))
                    position += len(step)

            loader = threading.Thread(target=ingest, daemon=True)
            # Where the time goes while ingest and scoring share the machine: the CPU of each
            # side, and what the database connections do (running, or waiting for a lock).
            master = server.process.pid
            meter = CpuMeter(
                {
                    "gunicorn (master + workers)": lambda: [master, *child_pids(master)],
                    "celery workers (scoring)": workers.pids,
                    "postgresql backends": lambda: postgres_backend_pids(args.database_url),
                },
                this_process="http clients and probes (this process)",
            )
            sampler = PgActivitySampler(args.database_url)
            lock_waits = LockWaits(args.database_url)
            meter.start()
            sampler.start()
            lock_waits.start()
            started = time.monotonic()
            loader.start()
            count = max(1, int(args.seconds / args.probe_interval))
            loaded = run_probes(server.url, key, args.database_url, count, args.probe_interval, 1000)
            stop.set()
            loader.join()
            ingest_seconds = time.monotonic() - started
            activity = sampler.stop()
            waits = lock_waits.stop()
            usage = meter.stop()
            failures += loaded.failures + [problem for outcome in posted for problem in outcome.failures]
            accepted = sum(outcome.accepted for outcome in posted)
            backlog = flagged(args.database_url)
            drain_started = time.monotonic()
            while flagged(args.database_url) and time.monotonic() - drain_started < 900:
                time.sleep(0.5)
            drain = time.monotonic() - drain_started
    finally:
        server.stop()

    ingest_rate = rate(accepted, ingest_seconds)
    loaded_p95 = percentile(loaded.latencies, 0.95) if loaded.latencies else float("inf")
    report(
        "Results",
        [
            ("idle: event → handoff (baseline)", summary(idle)),
            ("loaded: event → handoff", summary(loaded)),
            ("loaded p95 target", f"< {LATENCY_TARGET_SECONDS:.0f} s: {'met' if loaded_p95 < 1 else 'NOT met'}"),
            (
                "batch ingest with the workers scoring",
                f"{ingest_rate:,.0f} events/s ({accepted:,} in {ingest_seconds:.1f} s)",
            ),
            (
                "ingest target",
                f"≥ {INGEST_TARGET_EVENTS_PER_SECOND:,} events/s: "
                f"{'met' if ingest_rate >= INGEST_TARGET_EVENTS_PER_SECOND else 'NOT met'}",
            ),
            ("flagged leads when ingest stopped", f"{backlog:,}; drained in {drain:.1f} s"),
            *cpu_rows(usage, max(accepted, 1), ingest_seconds),
            *[(f"db connections: {label}", f"{share * 100:.0f}% of samples") for label, share in activity[:8]],
            *(waits[:8] or [("lock waits", "none seen")]),
            ("speed probe at the end", f"{speed_probe():.0f} ms"),
            ("machine load at the end", load_now()),
        ],
    )
    for problem in failures[:20]:
        print(f"FAILED {problem}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
