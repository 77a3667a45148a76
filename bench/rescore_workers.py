"""Rescore across workers: the full rescore of the default model split into chunks of
lead ids (``RESCORE_PARALLEL``) and shared by 1, then 2 real Celery worker processes,
beside the same run's SQL floor and the one-task rescore in this process.

    .venv/bin/python bench/rescore.py --leads 1000000 --events 10000000 --no-models \\
        --naive-sample 0 --backlog 0 --no-full-check            # generates the data once (~5 min)
    .venv/bin/python bench/rescore_workers.py                   # in-process, 1 worker, 2 workers
    .venv/bin/python bench/rescore_workers.py --workers 2 --kinds refresh

It reuses ``bench/rescore.py``'s database (``leadflow_bench_rescore``) as that script
left it, migrates it, and for each configuration — the one-task rescore in this process
(``rescore_run_execute``, what a deployment without ``RESCORE_PARALLEL`` runs), then N
worker processes (``celery worker --pool=solo``, each on its own PostgreSQL connection,
consuming the rescore queue) — puts every lead back in its generated state (no score:
a **first publish**), rescores, then rescores again (every score exists: a **refresh**).
With workers, this process only creates the run through ``rescore_run_create`` (as a
publish does) and waits for it to be done: the workers split it, share the chunks and
finish it. Each run prints its wall time, the CPU seconds of the workers and of their
PostgreSQL backends and how busy the machine was, which together say where the limit
is; then each run's stage transitions are listed side by side (runs minutes apart differ
by the leads that decay carried across a threshold meanwhile), and a sample of leads
must equal the single-lead engine (``check_against_engine``). The worker processes'
PostgreSQL backends connect after the meter starts: their CPU shows under "others".

Exit status: 0 when every check passes, 1 when one fails, 3 when it cannot run.
Results: bench/RESULTS.md, section "Rescore", "1 worker and 2 workers".
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `leadflow` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.common import (  # noqa: E402
    OUT_DIR,
    BenchError,
    CpuMeter,
    bench_env,
    bench_main,
    django_setup,
    machine_summary,
    manage,
    postgres_backend_pids,
    postgres_version,
    redis_flush,
    report,
    speed_probe,
    stopwatch,
)
from bench.rescore import (  # noqa: E402
    DEFAULT_DATABASE_URL,
    CheckResult,
    check_against_engine,
    command_line,
    git_commit,
    load_now,
    prepare_state,
    run_create,
    stage_counts,
    stored_data,
    time_bulk,
    time_floor,
)

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/13"
QUEUE = "bench-rescore"
KINDS = ("first", "refresh")
KIND_LABELS = {"first": "first publish", "refresh": "refresh"}


@dataclass
class Measured:
    config: str
    kind: str
    seconds: float
    changed: int
    cpu: dict[str, float]
    machine_share: float
    stages: dict[str, int]


class Workers:
    """N ``celery worker --pool=solo`` processes on the rescore queue, logs in bench/out."""

    def __init__(self, count: int, env: dict[str, str]):
        self.count, self.env = count, env
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> "Workers":
        OUT_DIR.mkdir(exist_ok=True)
        for index in range(self.count):
            log = (OUT_DIR / f"rescore-worker-{index + 1}.log").open("wb")
            command = [sys.executable, "-m", "celery", "-A", "leadflow", "worker", "--pool=solo", "-Q", QUEUE]
            command += [f"--hostname=bench{index + 1}@%h", "--without-mingle", "--without-gossip", "--loglevel=INFO"]
            self.processes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 120.0) -> None:
        from leadflow.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(process.poll() is not None for process in self.processes):
                raise BenchError(f"A worker exited at start: see {OUT_DIR}/rescore-worker-*.log")
            if len(app.control.ping(timeout=1.0) or []) >= self.count:
                return
        raise BenchError(f"{self.count} workers did not answer a ping within {timeout:.0f} s")

    def pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.poll() is None]

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_done(run_id: int, timeout: float) -> Any:
    from scoring.models import RescoreRun, RescoreState

    deadline = time.monotonic() + timeout
    last_print = 0.0
    while time.monotonic() < deadline:
        run = RescoreRun.objects.get(pk=run_id)
        if run.state in (RescoreState.DONE, RescoreState.FAILED):
            return run
        if time.monotonic() - last_print >= 10:
            last_print = time.monotonic()
            print(f"  {run.done:,}/{run.total:,} leads written", flush=True)
        time.sleep(0.1)
    raise BenchError(f"Rescore run {run_id} not done after {timeout:.0f} s")


def measure_workers(count: int, kind: str, ruleset: Any, env: dict[str, str], database_url: str) -> Measured:
    """A run created as a publish creates it, executed by ``count`` workers; timed from the
    commit that enqueues it to the state ``done`` the last chunk writes."""
    from django.db import transaction

    from scoring import services
    from scoring.models import RescoreState

    with Workers(count, env) as workers:
        meter = CpuMeter(
            {"workers": workers.pids, "their PostgreSQL backends": lambda: postgres_backend_pids(database_url)}
        )
        meter.start()
        with stopwatch() as watch:
            with transaction.atomic():
                run = services.rescore_run_create(ruleset=ruleset, reason=f"bench: {count} workers")
            run = wait_done(run.pk, timeout=3600)
        usage = meter.stop()
    if run.state != RescoreState.DONE:
        raise BenchError(f"Rescore run {run.pk} ended {run.state}: {run.error}")
    cpu = {name: seconds for name, seconds in usage.seconds.items() if name != meter.this_process}
    cpu["others (neighbours, this process)"] = usage.others
    return Measured(
        config=f"{count} worker{'s' if count > 1 else ''}",
        kind=kind,
        seconds=watch.seconds,
        changed=run.changed_stages,
        cpu=cpu,
        machine_share=usage.machine_busy / usage.machine_total if usage.machine_total else float("nan"),
        stages=stage_counts(),
    )


def measure_in_process(kind: str, ruleset: Any, database_url: str) -> Measured:
    meter = CpuMeter({"PostgreSQL backend": lambda: postgres_backend_pids(database_url)}, this_process="this process")
    meter.start()
    result = time_bulk(run_create(ruleset, reason="bench: in-process"), KIND_LABELS[kind])
    usage = meter.stop()
    cpu = dict(usage.seconds)
    cpu["others (neighbours)"] = usage.others
    return Measured(
        config="in-process (one task)",
        kind=kind,
        seconds=result.seconds,
        changed=result.transitions,
        cpu=cpu,
        machine_share=usage.machine_busy / usage.machine_total if usage.machine_total else float("nan"),
        stages=result.stages,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The split full rescore at 1 and 2 real Celery workers, beside the SQL floor and the "
        "one-task rescore of the same run, on bench/rescore.py's data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="bench/rescore.py's database")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help="Redis for the workers (flushed)")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, comma-separated")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"runs per configuration: {', '.join(KINDS)}")
    parser.add_argument("--no-in-process", action="store_true", help="skip the one-task rescore in this process")
    parser.add_argument("--chunk-size", type=int, default=20_000, help="RESCORE_CHUNK_SIZE: leads per chunk")
    parser.add_argument("--check-sample", type=int, default=200, help="leads checked against the Python engine")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the checked sample")
    args = parser.parse_args(argv)
    try:
        args.workers = [int(part) for part in args.workers.split(",") if part.strip()]
    except ValueError:
        parser.error("--workers: comma-separated whole numbers, e.g. 1,2")
    if not args.workers or min(args.workers) < 1:
        parser.error("--workers: at least one count, each 1 or more")
    args.kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if not args.kinds or set(args.kinds) - set(KINDS):
        parser.error(f"--kinds: choose among {', '.join(KINDS)}")
    if args.chunk_size < 1 or args.check_sample < 0:
        parser.error("--chunk-size must be at least 1, --check-sample 0 or more")
    return args


def run(args: argparse.Namespace) -> int:
    stored, generated_at, clean = stored_data(args.database_url)
    if stored is None:
        raise BenchError(f"No data in {args.database_url}: run bench/rescore.py first (see --help).")
    env = bench_env(
        args.database_url,
        args.broker_url,
        RESCORE_PARALLEL="1",
        RESCORE_QUEUE=QUEUE,
        RESCORE_CHUNK_SIZE=str(args.chunk_size),
        DB_CONN_MAX_AGE="600",  # a worker keeps its connection: its backend's CPU time is counted
    )
    manage(["migrate", "--noinput"], env)
    redis_flush(args.broker_url)
    django_setup(env)
    from django.db import connection

    from scoring import selectors
    from scoring.models import Score

    ruleset = selectors.published_ruleset()
    if ruleset is None:
        raise BenchError("No published ruleset in the benchmark database.")
    spec = selectors.ruleset_spec(ruleset)
    report(
        f"Rescore across workers: {stored.leads:,} leads, {stored.events:,} events",
        [
            ("command", command_line()),
            ("commit", git_commit()),
            ("started", f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"),
            ("data", f"generated {generated_at:%Y-%m-%d %H:%M} UTC by bench/rescore.py"),
            ("postgresql", postgres_version(args.database_url)),
            *machine_summary(),
            ("speed probe", f"{speed_probe():.0f} ms (pure-Python loop, best of 3; lower is faster)"),
            ("machine load", load_now()),
            ("ruleset", f"{spec.model_slug} v{spec.version}; chunks of {args.chunk_size:,} leads"),
        ],
    )
    from django.utils import timezone

    floors = time_floor(spec, timezone.now())
    floor = floors[-1][1]
    report("SQL floor (computes every score, writes nothing)", [(floors[-1][0], f"{floor:8.2f} s")])

    configs: list[int | None] = ([] if args.no_in_process else [None]) + args.workers
    results: list[Measured] = []
    for config in configs:
        for kind in args.kinds:
            if kind == "first":
                connection.close()
                prepare_state(args.database_url, clean)
                clean = False
            elif not Score.objects.filter(model_id=spec.model_id).exists():
                raise BenchError("A refresh needs the scores of a first publish: add --kinds first,refresh.")
            label = "in-process" if config is None else f"{config} workers"
            print(f"\n{label}, {KIND_LABELS[kind]}…", flush=True)
            if config is None:
                measured = measure_in_process(kind, ruleset, args.database_url)
            else:
                measured = measure_workers(config, kind, ruleset, env, args.database_url)
            results.append(measured)
            cpu = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in measured.cpu.items())
            report(
                f"{measured.config}, {KIND_LABELS[kind]}",
                [
                    ("wall", f"{measured.seconds:8.2f} s  ({measured.seconds / floor:.2f}x the floor)"),
                    ("stage transitions", f"{measured.changed:,}"),
                    ("CPU seconds", cpu),
                    ("machine busy", f"{100 * measured.machine_share:.0f} % of {os.cpu_count()} CPUs"),
                ],
            )

    failures = checks(results, spec, stored.leads, args)
    summary(results, floor)
    report("At the end", [("speed probe", f"{speed_probe():.0f} ms"), ("machine load", load_now())])
    for check in failures:
        print(f"\nFAILED {check.name}:", file=sys.stderr)
        for line in check.mismatches[:20]:
            print(f"  {line}", file=sys.stderr)
    return 1 if failures else 0


def checks(results: list[Measured], spec: Any, leads: int, args: argparse.Namespace) -> list[CheckResult]:
    """The last run's scores must equal the single-lead engine's on a sample. Each run's
    stage transitions are reported side by side: they need not be equal, since the runs
    happen minutes apart and scores decay (a lead at a threshold's edge crosses it between
    two runs); the test suite checks that the split rescore equals the in-process one."""
    rows = []
    for kind in args.kinds:
        for m in results:
            if m.kind == kind:
                rows.append((f"{KIND_LABELS[kind]}, {m.config}", f"{m.changed:,} transitions, stages {m.stages}"))
    sample = random.Random(args.seed).sample(range(1, leads + 1), min(args.check_sample, leads))
    engine = check_against_engine(spec, sample, f"{len(sample)} leads vs score_lead after the last run")
    report("Checks", [(engine.name, f"{len(engine.mismatches)} mismatches"), *rows])
    return [engine] if engine.mismatches else []


def summary(results: list[Measured], floor: float) -> None:
    rows = []
    for kind in KINDS:
        runs = [m for m in results if m.kind == kind]
        one = next((m for m in runs if m.config == "1 worker"), None)
        for m in runs:
            speedup = f", {one.seconds / m.seconds:.2f}x 1 worker" if one and m is not one else ""
            rows.append(
                (
                    f"{KIND_LABELS[kind]}, {m.config}",
                    f"{m.seconds:8.2f} s = {m.seconds / floor:.2f}x floor{speedup}; "
                    f"machine {100 * m.machine_share:.0f} % busy",
                )
            )
    report(f"Summary (floor {floor:.2f} s)", rows)


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
