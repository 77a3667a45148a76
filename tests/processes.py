"""Real processes for the tests that need them: Celery workers and beat against the
test database, and a Redis server of a test's own that it may stop and start."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def subprocess_database_url() -> str:
    """The URL of the database this test runs against, for a subprocess."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float = 45.0, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


class RedisServer:
    """A redis-server on a free port, owned by one test: never the shared one."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        if not wait_for(lambda: _pings(client), timeout=15):
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@contextmanager
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class CeleryProcesses:
    """Celery workers and beat started as `make run` and docker-compose start them,
    with the test's database and broker; their output is printed when the test ends."""

    def __init__(self, broker_url: str, *, python: str = sys.executable, env: dict[str, str] | None = None):
        self.broker_url = broker_url
        self.python = python
        self.extra_env = env or {}
        self.started: list[tuple[str, subprocess.Popen[str]]] = []

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": subprocess_database_url(),
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "DJANGO_SETTINGS_MODULE": "leadflow.settings",
            **self.extra_env,
        }

    def _spawn(self, name: str, arguments: list[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [self.python, "-m", "celery", "-A", "leadflow", *arguments],
            cwd=ROOT,
            env=self._env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.started.append((name, process))
        return process

    def worker(self) -> subprocess.Popen[str]:
        return self._spawn(
            "worker",
            [
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            ],
        )

    def beat(self, schedule_dir: Path) -> subprocess.Popen[str]:
        return self._spawn(
            "beat",
            [
                "beat",
                "--loglevel=INFO",
                f"--schedule={schedule_dir / 'beat-schedule'}",
                f"--pidfile={schedule_dir / 'beat.pid'}",
            ],
        )

    @staticmethod
    def kill(process: subprocess.Popen[str]) -> None:
        """SIGKILL: no shutdown handler runs, the task in hand is neither acked nor finished."""
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=15)

    def stop_all(self) -> None:
        for name, process in self.started:
            if process.poll() is None:
                process.terminate()
            try:
                output, _ = process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            print(f"--- {name} (exit {process.returncode}) ---\n{(output or '')[-4000:]}")
