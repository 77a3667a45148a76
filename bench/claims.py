"""Claim throughput and correctness: 50 concurrent reps hammer a queue of SQLs, first
through the service layer (handoff_claim_next / handoff_claim), then over HTTP
(POST /api/v1/handoffs/claim-next and /{id}/claim through gunicorn).

    .venv/bin/python bench/claims.py                                # 50 reps, 100k attempts per phase
    .venv/bin/python bench/claims.py --attempts 5000 --queue 5000   # smoke run

Each attempt is a claim: most take the head of the queue (claim-next), the rest
target one of a few "hot" handoffs by id, so reps collide on the same rows. The
real claim limit (HANDOFF_MAX_OPEN_CLAIMS, 10) stays on and is checked on every
claim; so that the run measures claims and not releases, each of the 50
concurrent clients works through a pool of rep accounts and moves to the next
account when the current one holds 10 claims.

Correctness: in every handoff's audit trail (ordered by event id, which follows
the row lock) a claim must be followed by a release before the next claim — two
claims in a row would be one handoff held by two reps: a double claim. The number
of claim events must equal the successes the clients counted, every claimed row
must be held by the rep of its last claim event, and no rep may hold more than the
limit. Any violation exits 1.

The database (leadflow_bench_claims) is dropped and recreated; results and their
interpretation: bench/RESULTS.md, section "Claims".
"""

import argparse
import http.client
import json
import math
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as a script: make `bench` and `leadflow` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    BenchError,
    CpuMeter,
    CpuUsage,
    PgActivitySampler,
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
    report,
    speed_probe,
)
from bench.rescore import load_now  # noqa: E402

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadflow_bench_claims"
BROKER_URL = "redis://127.0.0.1:6379/14"  # nothing is enqueued; a database of its own all the same
SERVICE_TARGET = 1000.0
HTTP_TARGET = 300.0


@dataclass
class Tally:
    attempts: int = 0
    claimed: int = 0
    conflicts: int = 0  # the handoff was taken, or the queue head moved
    empty: int = 0  # claim-next found nothing to claim
    limit: int = 0  # the rep was at the claim limit
    releases: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds per claim attempt
    started: float = 0.0
    finished: float = 0.0

    def add(self, other: "Tally") -> None:
        for name in ("attempts", "claimed", "conflicts", "empty", "limit", "releases"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors
        self.latencies += other.latencies
        self.started = min(self.started or other.started, other.started)
        self.finished = max(self.finished, other.finished)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=50, help="concurrent reps (threads), default 50")
    parser.add_argument("--attempts", type=int, default=100_000, help="claim attempts per phase, default 100000")
    parser.add_argument(
        "--queue", type=int, help="SQLs in the queue; default: as many as attempts, so claim-next never runs dry"
    )
    parser.add_argument("--hot", type=int, default=20, help="handoffs every rep also targets by id, default 20")
    parser.add_argument("--hot-share", type=float, default=0.3, help="share of attempts on a hot id, default 0.3")
    parser.add_argument("--processes", type=int, default=4, help="client processes the reps are spread over")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers, default 4")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class, default sync")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--skip-service", action="store_true", help="only the HTTP phase")
    parser.add_argument("--skip-http", action="store_true", help="only the service phase")
    parser.add_argument("--database-url", default=DATABASE_URL, help="dropped and recreated; must contain 'bench'")
    parser.add_argument("--broker-url", default=BROKER_URL, help="Redis database of its own (nothing is enqueued)")
    parser.add_argument(
        "--floor-attempts",
        type=int,
        default=10_000,
        help="same-run baseline: requests of the floor phases (a SELECT 1 per attempt through the\n"
        "service's connections; GET /api/v1/notifications/unread-count over HTTP), 0 skips",
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if args.reps < 1 or args.attempts < 1 or (args.queue or 1) < 1 or args.processes < 1:
        parser.error("--reps, --attempts, --queue and --processes must be at least 1")
    args.queue = args.queue or args.attempts
    if not 0 <= args.hot_share <= 1:
        parser.error("--hot-share is a fraction between 0 and 1")
    return args


# --- Setup ------------------------------------------------------------------------------------
def seed(*, accounts: int, queue: int, rng: random.Random) -> tuple[list[int], dict[int, str], list[str]]:
    """``queue`` SQL leads with the handoffs the scoring hook opens, then rep accounts
    (in the sales group, each with a personal API token)."""
    from decimal import Decimal

    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from handoff.models import Handoff
    from handoff.services import handoffs_open_for_changes
    from leadflow.leads.keys import PERSONAL_KIND, generate_key
    from leadflow.leads.models import ApiToken, Lead, Stage, StageChange

    now = timezone.now()
    for start in range(0, queue, 5000):
        leads = Lead.objects.bulk_create(
            [
                Lead(
                    email=f"sql{n}@bench.example",
                    name=f"Lead {n}",
                    stage=Stage.SQL,
                    mql_at=now,
                    sql_at=now,
                )
                for n in range(start, min(queue, start + 5000))
            ]
        )
        # Entering SQL as the default model qualified them, before the reps exist: no notifications.
        changes = [
            StageChange(
                lead=lead,
                from_stage=Stage.MQL,
                to_stage=Stage.SQL,
                qualified_by=["default"],
                score=Decimal(rng.randint(60, 160)),
            )
            for lead in leads
        ]
        handoffs_open_for_changes(changes=changes, at=now)
    users = User.objects.bulk_create([User(username=f"rep{n:05d}", email="") for n in range(accounts)], batch_size=5000)
    sales = Group.objects.get(name="sales")
    User.groups.through.objects.bulk_create(
        [User.groups.through(user_id=user.pk, group_id=sales.pk) for user in users], batch_size=5000
    )
    tokens: dict[int, str] = {}
    rows = []
    for user in users:
        key = generate_key(PERSONAL_KIND)
        tokens[user.pk] = key.key
        rows.append(ApiToken(user=user, name="bench", prefix=key.prefix, key_hash=key.key_hash))
    ApiToken.objects.bulk_create(rows, batch_size=5000)
    public_ids = [str(public_id) for public_id in Handoff.objects.values_list("public_id", flat=True)]
    return [user.pk for user in users], tokens, public_ids


def reset_queue() -> int:
    """Between phases: every claim back to the queue, with a release in the audit trail."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH released AS (
                UPDATE handoff_handoff SET status = 'queued', claimed_by_id = NULL, claimed_at = NULL,
                    claim_expires_at = NULL
                WHERE status = 'claimed' RETURNING id
            )
            INSERT INTO handoff_handoffevent (handoff_id, action, actor_id, at, details)
            SELECT id, 'released', NULL, now(), '{"bench": "reset between phases"}' FROM released
            """
        )
        released = cursor.rowcount
        # One UPDATE of most of the queue leaves as many dead rows in the queue index;
        # autovacuum would clear them in time, before the next phase starts from the head.
        cursor.execute("VACUUM (ANALYZE) handoff_handoff, handoff_handoffevent")
        return released


def verify() -> dict[str, int]:
    """Double claims from the audit trail, and claims the trail and the rows agree on."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT COUNT(*) FILTER (WHERE action = 'claimed' AND previous = 'claimed'),
                   COUNT(*) FILTER (WHERE action = 'claimed')
            FROM (
                SELECT action, LAG(action) OVER (PARTITION BY handoff_id ORDER BY id) AS previous
                FROM handoff_handoffevent WHERE action IN ('claimed', 'released')
            ) trail
            """
        )
        double_claims, claim_events = cursor.fetchone()
        cursor.execute(
            """
            SELECT COUNT(*) FROM handoff_handoff h
            WHERE h.status = 'claimed' AND h.claimed_by_id IS DISTINCT FROM (
                SELECT e.actor_id FROM handoff_handoffevent e
                WHERE e.handoff_id = h.id AND e.action = 'claimed' ORDER BY e.id DESC LIMIT 1
            )
            """
        )
        (holder_mismatches,) = cursor.fetchone()
        cursor.execute("SELECT COUNT(*) FROM handoff_handoff WHERE status = 'claimed'")
        (held,) = cursor.fetchone()
        cursor.execute(
            """
            SELECT COALESCE(MAX(n), 0) FROM (
                SELECT COUNT(*) AS n FROM handoff_handoff WHERE status = 'claimed' GROUP BY claimed_by_id
            ) per_rep
            """
        )
        (most_held,) = cursor.fetchone()
    return {
        "double_claims": double_claims,
        "claim_events": claim_events,
        "holder_mismatches": holder_mismatches,
        "held": held,
        "most_held": most_held,
    }


# --- Workers ------------------------------------------------------------------------------------
def plan(attempts: int, clients: int) -> list[int]:
    share, extra = divmod(attempts, clients)
    return [share + (1 if n < extra else 0) for n in range(clients)]


def service_client(
    account_ids: list[int], attempts: int, hot: list[str], hot_share: float, limit: int, seed: int, start: Any
) -> Tally:
    from django.contrib.auth.models import User

    from handoff import services
    from handoff.models import Handoff
    from handoff.roles import can_work_handoffs

    rng = random.Random(seed)
    tally = Tally()
    accounts = list(User.objects.filter(pk__in=account_ids).order_by("pk"))
    for user in accounts:
        can_work_handoffs(user)  # loads the roles once, as one request would
    hot_handoffs = list(Handoff.objects.filter(public_id__in=hot).only("pk", "lead_id"))
    current, held = 0, 0
    start.wait()
    tally.started = time.time()
    try:
        for _ in range(attempts):
            if held >= limit:
                current, held = current + 1, 0
            user = accounts[current]
            began = time.perf_counter()
            try:
                if rng.random() < hot_share:
                    services.handoff_claim(handoff=rng.choice(hot_handoffs), user=user)
                elif services.handoff_claim_next(user=user) is None:
                    tally.empty += 1
                    continue
                held += 1
                tally.claimed += 1
            except services.ClaimLimitReached:
                tally.limit += 1
                current, held = current + 1, 0
            except services.HandoffError:
                tally.conflicts += 1
            finally:
                tally.attempts += 1
                tally.latencies.append(time.perf_counter() - began)
    except Exception as error:
        tally.errors.append(f"{type(error).__name__}: {error}")
    finally:
        tally.finished = time.time()
    return tally


def service_floor_client(attempts: int, seed: int, start: Any) -> Tally:
    """The same-run floor of the service phase: one round trip (SELECT 1) per attempt."""
    from django.db import connection

    tally = Tally()
    start.wait()
    tally.started = time.time()
    with connection.cursor() as cursor:
        for _ in range(attempts):
            began = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            tally.latencies.append(time.perf_counter() - began)
            tally.attempts += 1
    tally.finished = time.time()
    return tally


def http_floor_client(base_url: str, token: str, attempts: int, seed: int, start: Any) -> Tally:
    """The same-run floor of the HTTP phase: the cheapest request a rep's token makes
    (the unread count: authentication, one small query, a tiny JSON answer)."""
    tally = Tally()
    client = Client(base_url)
    start.wait()
    tally.started = time.time()
    try:
        for _ in range(attempts):
            began = time.perf_counter()
            status, body = client.request("GET", "/api/v1/notifications/unread-count", token)
            tally.latencies.append(time.perf_counter() - began)
            tally.attempts += 1
            if status != 200:
                tally.errors.append(f"unread-count {status}: {body[:200]!r}")
                break
    except Exception as error:
        tally.errors.append(f"{type(error).__name__}: {error}")
    finally:
        tally.finished = time.time()
    return tally


class Client:
    """A keep-alive HTTP connection (reopened when a sync worker closes it)."""

    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)

    def post(self, path: str, token: str) -> tuple[int, bytes]:
        return self.request("POST", path, token)

    def request(self, method: str, path: str, token: str) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token}", "Content-Length": "0", "Accept": "application/json"}
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, headers=headers)
                response = self.connection.getresponse()
                body = response.read()
                if response.will_close:
                    self.connection.close()
                return response.status, body
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def http_client(
    base_url: str,
    tokens: list[str],
    attempts: int,
    hot: list[str],
    hot_share: float,
    limit: int,
    seed: int,
    start: Any,
) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    client = Client(base_url)
    current, held = 0, 0
    start.wait()
    tally.started = time.time()
    try:
        for _ in range(attempts):
            if held >= limit:
                current, held = current + 1, 0
            began = time.perf_counter()
            if rng.random() < hot_share:
                status, body = client.post(f"/api/v1/handoffs/{rng.choice(hot)}/claim", tokens[current])
            else:
                status, body = client.post("/api/v1/handoffs/claim-next", tokens[current])
            tally.latencies.append(time.perf_counter() - began)
            tally.attempts += 1
            if status == 200:
                held += 1
                tally.claimed += 1
            elif status == 204:
                tally.empty += 1
            elif status == 404:  # a hot handoff another rep holds is not visible to this one
                tally.conflicts += 1
            elif status == 409 and json.loads(body).get("code") == "claim_limit":
                tally.limit += 1
                current, held = current + 1, 0
            elif status == 409:
                tally.conflicts += 1
            else:
                tally.errors.append(f"claim {status}: {body[:200]!r}")
                if len(tally.errors) > 20:
                    break
    except Exception as error:
        tally.errors.append(f"{type(error).__name__}: {error}")
    finally:
        tally.finished = time.time()
    return tally


def _process(kind: str, jobs: list[tuple[Any, ...]], start: Any, results: Any, done: Any) -> None:
    """A client process: one thread per rep; the Tally of each rep goes to ``results``.
    Threads keep their database connection until ``done`` so that the parent can
    read the CPU time of their PostgreSQL backends."""
    import threading

    from django.db import connection

    targets: dict[str, Callable[..., Tally]] = {
        "service": service_client,
        "http": http_client,
        "service-floor": service_floor_client,
        "http-floor": http_floor_client,
    }
    target = targets[kind]

    def run(job: tuple[Any, ...]) -> None:
        results.put(target(*job, start))
        done.wait()
        connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_phase(
    kind: str, jobs: list[tuple[Any, ...]], processes: int, cpu_groups: dict[str, Any], database_url: str
) -> tuple[Tally, CpuUsage, list[tuple[str, float]]]:
    """Spread the reps over ``processes`` forked client processes, start them together,
    and meter the CPU of the clients and of ``cpu_groups`` while they run."""
    from django.db import connections

    connections.close_all()  # a forked child must not share the parent's connection
    context = multiprocessing.get_context("fork")
    start = context.Barrier(len(jobs) + 1)
    results = context.Queue()
    done = context.Event()
    groups = [jobs[n::processes] for n in range(processes) if jobs[n::processes]]
    children = [context.Process(target=_process, args=(kind, group, start, results, done)) for group in groups]
    for child in children:
        child.start()
    meter = CpuMeter({"clients": lambda: [child.pid for child in children if child.pid], **cpu_groups})
    sampler = PgActivitySampler(database_url)
    total = Tally()
    try:
        meter.start()
        sampler.start()
        start.wait(timeout=300)
        for _ in jobs:
            total.add(results.get(timeout=3600))
        usage = meter.stop()
    finally:
        activity = sampler.stop()
        done.set()
        for child in children:
            child.join(timeout=60)
    return total, usage, activity


def cpu_rows(usage: CpuUsage, tally: Tally, server_groups: list[str]) -> list[tuple[str, object]]:
    """CPU per claim attempt by group, and what that means for two dedicated cores."""
    per_claim = {name: 1000 * seconds / max(tally.attempts, 1) for name, seconds in usage.seconds.items()}
    server = sum(per_claim[name] for name in server_groups)
    wall = max(tally.finished - tally.started, 1e-9)
    others_share = usage.others / max(usage.machine_total, 1e-9)
    rows: list[tuple[str, object]] = [
        (f"CPU per attempt: {name}", f"{per_claim[name]:.2f} ms") for name in [*server_groups, "clients"]
    ]
    rows += [
        ("server CPU per attempt (" + " + ".join(server_groups) + ")", f"{server:.2f} ms"),
        ("⇒ attempts/s two dedicated cores could serve", f"{2000 / server:,.0f}" if server else "?"),
        ("other processes (neighbours) used", f"{others_share:.0%} of the machine ({usage.others / wall:.2f} cores)"),
    ]
    return rows


def phase_rows(name: str, tally: Tally, checks: dict[str, int], target: float) -> list[tuple[str, object]]:
    seconds = tally.finished - tally.started
    claims_per_second = rate(tally.attempts, seconds)
    latencies = tally.latencies or [0.0]
    return [
        ("claim attempts", f"{tally.attempts:,}"),
        ("  claimed / conflicts (409)", f"{tally.claimed:,} / {tally.conflicts:,}"),
        ("  queue empty / at limit", f"{tally.empty:,} / {tally.limit:,}"),
        ("wall time", f"{seconds:.1f} s"),
        (
            f"{name} claims/s",
            f"{claims_per_second:,.0f}  (target ≥ {target:,.0f}: {verdict(claims_per_second >= target)})",
        ),
        ("successful claims/s", f"{rate(tally.claimed, seconds):,.0f}"),
        ("latency p50 / p95 / p99", " / ".join(f"{percentile(latencies, q) * 1000:.1f} ms" for q in (0.5, 0.95, 0.99))),
        ("claim events in the trail", f"{checks['claim_events']:,}"),
        ("double claims", f"{checks['double_claims']}  (must be 0)"),
        ("rows held by another rep than their last claim", f"{checks['holder_mismatches']}  (must be 0)"),
        ("most claims held by one rep", f"{checks['most_held']}  (limit {limit_of()})"),
        ("errors", f"{len(tally.errors)}" + (f" — first: {tally.errors[0]}" if tally.errors else "")),
    ]


def floor_rows(tally: Tally, floor: Tally, what: str) -> list[tuple[str, object]]:
    """The same-run baseline: the floor's rate and the claims' as a share of it."""
    claims = rate(tally.attempts, tally.finished - tally.started)
    floor_rate = rate(floor.attempts, floor.finished - floor.started)
    latencies = floor.latencies or [0.0]
    return [
        ("same-run floor", what),
        ("  floor requests/s", f"{floor_rate:,.0f} ({len(floor.errors)} errors)"),
        ("  floor latency p50 / p95", " / ".join(f"{percentile(latencies, q) * 1000:.1f} ms" for q in (0.5, 0.95))),
        ("  claims/s ÷ floor/s", f"{claims / floor_rate:.2f}" if floor_rate else "?"),
    ]


def limit_of() -> int:
    from django.conf import settings

    return int(settings.HANDOFF_MAX_OPEN_CLAIMS)


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def check(tally: Tally, checks: dict[str, int], claims_before: int) -> list[str]:
    problems = []
    if checks["double_claims"]:
        problems.append(f"{checks['double_claims']} double claims")
    if checks["most_held"] > limit_of():
        problems.append(f"a rep holds {checks['most_held']} claims, over the limit")
    if checks["holder_mismatches"]:
        problems.append(f"{checks['holder_mismatches']} claimed rows held by the wrong rep")
    if checks["claim_events"] - claims_before != tally.claimed:
        problems.append(f"{checks['claim_events'] - claims_before} claim events but {tally.claimed} successes counted")
    if tally.errors:
        problems.append(f"{len(tally.errors)} errors, e.g. {tally.errors[0]}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = bench_env(
        args.database_url,
        args.broker_url,
        EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
        NOTIFY_WEBHOOK_URL="",
        DB_CONN_MAX_AGE="3600",  # every connection lives through a phase, so its CPU can be counted
    )
    rng = random.Random(args.seed)
    print(f"Resetting {args.database_url} and migrating…", flush=True)
    database_reset(args.database_url)
    manage(["migrate", "--noinput"], env)
    django_setup(env)
    from django.conf import settings

    limit = settings.HANDOFF_MAX_OPEN_CLAIMS
    shares = plan(args.attempts, args.reps)
    per_client = [math.ceil(share / limit) + 2 for share in shares]
    print(f"Seeding {args.queue:,} SQL handoffs and {sum(per_client):,} rep accounts…", flush=True)
    account_ids, tokens, public_ids = seed(accounts=sum(per_client), queue=args.queue, rng=rng)
    pools = []
    for count in per_client:
        pools.append(account_ids[:count])
        account_ids = account_ids[count:]
    hot = rng.sample(public_ids, min(args.hot, len(public_ids)))
    report(
        "Claims benchmark",
        [
            *machine_summary(),
            ("postgresql", postgres_version(args.database_url)),
            ("concurrent reps (clients)", f"{args.reps} threads over {args.processes} client processes"),
            ("rep accounts", f"{sum(per_client):,} (a client moves on when its rep holds {limit} claims)"),
            ("queue", f"{args.queue:,} SQL handoffs; {len(hot)} hot ids get {args.hot_share:.0%} of the attempts"),
            ("claim limit per rep", limit),
            ("command", " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])),
            ("speed probe", f"{speed_probe():.0f} ms (pure-Python loop, best of 3; lower is faster)"),
            ("machine load", load_now()),
        ],
    )
    problems: list[str] = []
    try:
        if not args.skip_service:
            before = verify()["claim_events"]
            jobs: list[tuple[Any, ...]] = [
                (pool, share, hot, args.hot_share, limit, args.seed + n)
                for n, (pool, share) in enumerate(zip(pools, shares, strict=True))
            ]
            backends = {"postgresql": lambda: postgres_backend_pids(args.database_url)}
            tally, usage, activity = run_phase("service", jobs, args.processes, backends, args.database_url)
            usage.seconds["django (in the clients)"] = usage.seconds.pop("clients")
            usage.seconds["clients"] = 0.0  # the clients are the app here
            checks = verify()
            rows = phase_rows("service", tally, checks, SERVICE_TARGET)
            rows += cpu_rows(usage, tally, ["django (in the clients)", "postgresql"])
            rows += [(f"connections: {label}", f"{share:.0%}") for label, share in activity[:5]]
            if args.floor_attempts:
                floor_jobs: list[tuple[Any, ...]] = [
                    (share, args.seed + n) for n, share in enumerate(plan(args.floor_attempts, args.reps))
                ]
                service_floor, _, _ = run_phase("service-floor", floor_jobs, args.processes, {}, args.database_url)
                rows += floor_rows(tally, service_floor, "a SELECT 1 round trip per attempt, same clients")
            report("Service: handoff_claim_next / handoff_claim", rows)
            problems += [f"service: {p}" for p in check(tally, checks, before)]
            reset_queue()
        if not args.skip_http:
            before = verify()["claim_events"]
            server = gunicorn_start(env, workers=args.workers, worker_class=args.worker_class, threads=args.threads)
            try:
                jobs = [
                    (server.url, [tokens[pk] for pk in pool], share, hot, args.hot_share, limit, args.seed + 1000 + n)
                    for n, (pool, share) in enumerate(zip(pools, shares, strict=True))
                ]
                groups = {
                    "gunicorn": lambda: [server.process.pid, *child_pids(server.process.pid)],
                    "postgresql": lambda: postgres_backend_pids(args.database_url),
                }
                tally, usage, activity = run_phase("http", jobs, args.processes, groups, args.database_url)
                floor: Tally | None = None
                if args.floor_attempts:
                    floor_jobs = [
                        (server.url, tokens[pool[0]], share, args.seed + n)
                        for n, (pool, share) in enumerate(zip(pools, plan(args.floor_attempts, args.reps), strict=True))
                    ]
                    floor, _, _ = run_phase("http-floor", floor_jobs, args.processes, {}, args.database_url)
            finally:
                server.stop()
            checks = verify()
            rows = phase_rows("HTTP", tally, checks, HTTP_TARGET)
            rows += cpu_rows(usage, tally, ["gunicorn", "postgresql"])
            rows += [(f"connections: {label}", f"{share:.0%}") for label, share in activity[:5]]
            if floor is not None:
                rows += floor_rows(tally, floor, "GET /api/v1/notifications/unread-count, same clients and tokens")
            rows.insert(0, ("gunicorn", f"{args.workers} × {args.worker_class}, {args.threads} thread(s)"))
            report("HTTP: POST /api/v1/handoffs/claim-next and /{id}/claim via gunicorn", rows)
            problems += [f"http: {p}" for p in check(tally, checks, before)]
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            database_drop(args.database_url)
    if problems:
        print("\nFAILED:\n  " + "\n  ".join(problems))
        return 1
    print("\nCorrect: no double claims; every claim accounted for.")
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
