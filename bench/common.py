"""Helpers shared by the benchmarks: a throw-away PostgreSQL database, the
environment the app runs with, gunicorn on a free loopback port, timing and a
plain-text report.

Benchmarks are scripts, not tests: they print figures and exit non-zero when a
correctness check fails (never when a throughput target is missed).
"""

import http.client
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
OUT_DIR = ROOT / "bench" / "out"  # logs and profiles; ignored by git
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/leadflow_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/13"


class BenchError(RuntimeError):
    """A benchmark could not run or produced a wrong result."""


# --- Environment ------------------------------------------------------------------
def bench_env(database_url: str, broker_url: str = DEFAULT_BROKER_URL, **extra: str) -> dict[str, str]:
    """The environment the app runs with during a benchmark: production-like
    settings, scoring tasks only enqueued to Redis (no worker runs them)."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "leadflow.settings",
            "DATABASE_URL": database_url,
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key-not-for-production-0123456789abcdefghijklmnop",
            "SECURE_SSL_REDIRECT": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CELERY_BROKER_URL": broker_url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "LOG_LEVEL": "WARNING",
            "REQUEST_LOG_LEVEL": "WARNING",  # no line per request in the figures' output
        }
    )
    env.update(extra)
    return env


def in_process_env(database_url: str, **extra: str) -> dict[str, str]:
    """``bench_env`` for a benchmark that runs the code in its own process (the rescore,
    the quality report, the preview): tasks run in-process, no broker, no kept connections."""
    return bench_env(
        database_url,
        "memory://",
        SECRET_KEY="bench",  # noqa: S106 -- a throw-away benchmark database
        CELERY_TASK_ALWAYS_EAGER="1",
        DB_CONN_MAX_AGE="0",
        **extra,
    )


def django_setup(env: dict[str, str]) -> None:
    """Configure Django in this process with ``env`` (settings read the environment once)."""
    os.environ.update(env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def manage(args: Sequence[str], env: dict[str, str]) -> str:
    """Run ``manage.py`` with ``env``; returns stdout, raises with stderr on failure."""
    completed = subprocess.run(
        [str(VENV_BIN / "python"), str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} failed:\n{completed.stderr[-4000:]}")
    return completed.stdout


# --- PostgreSQL ---------------------------------------------------------------------
def _database_name(database_url: str) -> str:
    name = urlsplit(database_url).path.lstrip("/")
    if not name:
        raise BenchError(f"{database_url} names no database.")
    return name


def _maintenance_url(database_url: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))


def database_reset(database_url: str) -> None:
    """Drop and create the benchmark database. Refuses names without "bench" so a
    mistyped URL cannot drop the development or test database."""
    name = _database_name(database_url)
    if "bench" not in name:
        raise BenchError(f"Refusing to drop database {name!r}: benchmark databases must have 'bench' in their name.")
    connection = psycopg2.connect(_maintenance_url(database_url))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        connection.close()


def database_drop(database_url: str) -> None:
    name = _database_name(database_url)
    if "bench" not in name:
        raise BenchError(f"Refusing to drop database {name!r}: it is not a benchmark database.")
    connection = psycopg2.connect(_maintenance_url(database_url))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        connection.close()


def postgres_version(database_url: str) -> str:
    connection = psycopg2.connect(_maintenance_url(database_url))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            row = cursor.fetchone()
    finally:
        connection.close()
    return str(row[0]) if row else "?"


# --- Redis ----------------------------------------------------------------------------
def redis_flush(broker_url: str) -> None:
    """Empty the benchmark's Redis database (enqueued scoring tasks)."""
    import redis

    client = redis.Redis.from_url(broker_url)
    try:
        client.flushdb()
    finally:
        client.close()


def redis_queue_length(broker_url: str, queue: str) -> int:
    import redis

    client = redis.Redis.from_url(broker_url)
    try:
        return int(client.llen(queue))
    finally:
        client.close()


# --- gunicorn ---------------------------------------------------------------------------
def free_port() -> int:
    """A free TCP port on the loopback interface (freed again before gunicorn binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def log_tail(self, lines: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Graceful shutdown of the gunicorn we started (its pid only), then a kill."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _answers(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/api/v1/events")
        connection.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        connection.close()


def gunicorn_start(
    env: dict[str, str],
    *,
    workers: int,
    worker_class: str = "sync",
    threads: int = 1,
    wsgi: str = "leadflow.wsgi",
    extra_args: Sequence[str] = (),
    startup_timeout: float = 60.0,
) -> Server:
    """Start gunicorn on a free loopback port and wait until it answers HTTP."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    host, port = "127.0.0.1", free_port()
    log_path = OUT_DIR / f"gunicorn-{port}.log"
    log = log_path.open("wb")
    command = [
        str(VENV_BIN / "gunicorn"),
        wsgi,
        "-w",
        str(workers),
        "-k",
        worker_class,
        "--threads",
        str(threads),
        "-b",
        f"{host}:{port}",
        "--log-level",
        "warning",
        *extra_args,
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(url=f"http://{host}:{port}", process=process, log_path=log_path, _log=log)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise BenchError(f"gunicorn exited with status {process.returncode}:\n{server.log_tail()}")
        if _answers(host, port):
            _wait_until_idle(process.pid, deadline)
            return server
        time.sleep(0.2)
    server.stop()
    raise BenchError(f"gunicorn did not answer on {server.url} within {startup_timeout:.0f}s:\n{server.log_tail()}")


def _wait_until_idle(pid: int, deadline: float) -> None:
    """Wait until gunicorn's workers stop using CPU: one answering does not mean the
    others have finished booting, and their boot must not count as serving time."""

    def busy() -> float:
        return sum(process_cpu_seconds(child) for child in child_pids(pid))

    before = busy()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = busy()
        if now - before < 0.02:
            return
        before = now


# --- CPU accounting (Linux /proc) ------------------------------------------------------------
# On a shared or small machine wall-clock rates move with the neighbours' load; CPU
# seconds per event do not, and give the capacity of N dedicated cores.
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields after "pid (comm) "; comm may hold spaces


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    fields = _proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS if fields else 0.0


def child_pids(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields and int(fields[1]) == parent:
                children.append(int(entry.name))
    return children


def postgres_backend_pids(database_url: str) -> list[int]:
    """Server processes of the connections to the benchmark database (not this one)."""
    connection = psycopg2.connect(_maintenance_url(database_url))
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [_database_name(database_url)],
            )
            return [int(row[0]) for row in cursor.fetchall()]
    finally:
        connection.close()


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0, 0.0
    ticks = [int(value) for value in first[1:9]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / _CLOCK_TICKS, sum(ticks) / _CLOCK_TICKS


@dataclass
class CpuUsage:
    """CPU seconds used during a phase, by group."""

    seconds: dict[str, float]
    machine_busy: float
    machine_total: float

    @property
    def others(self) -> float:
        """CPU seconds used by processes outside the groups (neighbours, the OS)."""
        return max(0.0, self.machine_busy - sum(self.seconds.values()))


class CpuMeter:
    """Per-group CPU seconds between ``start()`` and ``stop()``.

    Groups are callables returning pids, evaluated at both ends; a process that
    exits in between loses its CPU time, so keep database connections open for
    the whole phase (the benchmark sets DB_CONN_MAX_AGE high)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], *, this_process: str = "this process"):
        self.groups = groups
        self.this_process = this_process
        self._start: dict[str, dict[int, float]] = {}
        self._machine: tuple[float, float] = (0.0, 0.0)
        self._self = 0.0

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {pid: process_cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}

    def start(self) -> None:
        self._start = self._sample()
        self._machine = machine_cpu_seconds()
        self._self = time.process_time()

    def stop(self) -> CpuUsage:
        end = self._sample()
        busy, total = machine_cpu_seconds()
        seconds = {name: sum(cpu - self._start[name].get(pid, 0.0) for pid, cpu in end[name].items()) for name in end}
        seconds[self.this_process] = time.process_time() - self._self
        return CpuUsage(seconds=seconds, machine_busy=busy - self._machine[0], machine_total=total - self._machine[1])


# --- What the database connections are doing ---------------------------------------------------
class PgActivitySampler:
    """Samples pg_stat_activity for the benchmark database's connections in a
    background thread: how often they run, wait for a lock, wait on IO, or sit
    idle (in a transaction: the app is working between statements)."""

    def __init__(self, database_url: str, interval: float = 0.05):
        self.database_url = database_url
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-activity", daemon=True)

    def _run(self) -> None:
        connection = psycopg2.connect(_maintenance_url(self.database_url))
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                while not self._stop.wait(self.interval):
                    cursor.execute(
                        "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                        "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                        [_database_name(self.database_url)],
                    )
                    for state, wait_type, wait_event in cursor.fetchall():
                        self.counts[self._label(state, wait_type, wait_event)] += 1
        finally:
            connection.close()

    @staticmethod
    def _label(state: str | None, wait_type: str | None, wait_event: str | None) -> str:
        if state == "active":
            if wait_type is None:
                return "running a statement"
            if wait_type == "Lock":
                return f"waiting for a lock ({wait_event})"
            return f"waiting: {wait_type} ({wait_event})"
        if state == "idle in transaction":
            return "idle in transaction (app working)"
        return f"{state or 'unknown'} (between requests)" if state == "idle" else str(state)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[tuple[str, float]]:
        """(activity, share of the connection samples), most frequent first."""
        self._stop.set()
        self._thread.join()
        total = sum(self.counts.values()) or 1
        return [(label, count / total) for label, count in self.counts.most_common()]


# --- Timing and reporting -------------------------------------------------------------------
@dataclass
class Stopwatch:
    started: float = 0.0
    seconds: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    """``with stopwatch() as watch: …`` then ``watch.seconds`` (monotonic wall clock)."""
    watch = Stopwatch(started=time.perf_counter())
    try:
        yield watch
    finally:
        watch.seconds = time.perf_counter() - watch.started


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def speed_probe() -> float:
    """Milliseconds a fixed piece of pure-Python work takes (best of three). The CPUs
    of this shared machine run at different speeds from one minute to the next (the
    same loop took 0.9 to 1.7 s), so a rate needs the speed it was measured at."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for number in range(2_000_000):
            total += number
        best = min(best, time.perf_counter() - start)
    return best * 1000


def machine_summary() -> list[tuple[str, str]]:
    """nproc, RAM, CPU model and Python: the context any figure needs."""
    rows = [("cpus (nproc)", str(os.cpu_count() or "?"))]
    try:
        meminfo = Path("/proc/meminfo").read_text()
        total_kb = next(int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:"))
        rows.append(("ram", f"{total_kb / 1024 / 1024:.1f} GiB"))
    except (OSError, StopIteration, ValueError):
        rows.append(("ram", "?"))
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
        rows.append(("cpu", model))
    except (OSError, StopIteration):
        rows.append(("cpu", platform.processor() or "?"))
    rows.append(("python", platform.python_version()))
    return rows


def report(title: str, rows: Sequence[tuple[str, object]]) -> None:
    """Print a titled block of aligned ``name: value`` lines."""
    width = max((len(name) for name, _ in rows), default=0)
    rule = "=" * max(len(title), 40, min(shutil.get_terminal_size().columns, 72))
    print(f"\n{title}\n{rule}")
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    sys.stdout.flush()


def bench_main(run: Callable[[Any], int], args: Any) -> int:
    """Run a benchmark's ``run(args)`` with the exit statuses every bench documents: its own
    (0 or 1), 3 when it cannot run (a BenchError, PostgreSQL, a crash of the code under
    test, traceback printed), 130 when interrupted; Django's connections closed at the end."""
    import traceback

    from django.db import DatabaseError

    try:
        return run(args)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except (psycopg2.Error, DatabaseError) as error:
        print(f"error: PostgreSQL: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # the code under test crashed: the benchmark cannot run
        traceback.print_exc()
        print("error: the benchmark could not run (traceback above)", file=sys.stderr)
        return 3
    finally:
        from django.apps import apps

        if apps.ready:
            from django.db import connections

            connections.close_all()
