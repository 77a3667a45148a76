"""Long-running processes that tests start (servers, Celery workers, beat, a Redis of a
test's own) and how to wait on them."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis
import requests
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def current_database_url():
    """The URL of the database this test uses (the test database, once pytest-django made it)."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def database_backends():
    """Process ids of the other sessions connected to this test's database (this one excluded)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() ORDER BY pid",
            [connection.settings_dict["NAME"]],
        )
        return [pid for (pid,) in cursor.fetchall()]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A subprocess whose output goes to a file (a pipe nobody reads would fill up and block it)."""

    def __init__(self, name, args, *, env, log_dir):
        self.name = name
        self.log = Path(log_dir) / f"{name}.log"
        with self.log.open("w") as log:
            # Its own process group: stopping it also stops its children (gunicorn's and Celery's
            # workers, runserver's autoreloaded child).
            self.popen = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self):
        return self.log.read_text(errors="replace")

    def assert_running(self):
        if self.popen.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.popen.returncode}:\n{self.output()[-5000:]}")

    def kill(self):
        """SIGKILL to the whole group: no shutdown handler runs, the task in hand is neither
        acknowledged nor finished, as when the machine or the OOM killer takes a worker."""
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=15)

    def stop(self):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        print(f"--- {self.name} ---\n{self.output()[-3000:]}")


@contextmanager
def started(*processes):
    """Stop these processes on the way out, whatever happened."""
    with ExitStack() as stack:
        for process in processes:
            stack.callback(process.stop)
        yield processes


def wait_for(condition, *, processes=(), timeout=60.0, what="the condition"):
    """Poll ``condition`` until it holds; fail at once, with its output, if a process died meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            process.assert_running()
        if condition():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def answers(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        # Not yet: a worker still loading the app on a busy machine keeps the first request
        # waiting past the timeout; the caller's wait_for asks again.
        return False


def broker_queues():
    """The names of every Celery queue (CELERY_TASK_QUEUES): a test empties them all of
    messages another test left, whatever queue routes a task to."""
    from django.conf import settings

    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


def celery_env(broker_url, **extra):
    """A worker's or beat's environment: the test database, this broker, tasks sent to it."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "leadflow.settings",
        "DATABASE_URL": current_database_url(),
        "CELERY_BROKER_URL": broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        **extra,
    }


def celery_worker(name, *, env, log_dir, python=sys.executable, queues=()):
    """`celery worker` with one process, as a test can follow it; ``queues``: only those (-Q),
    else every queue."""
    return Process(
        name,
        [python, "-m", "celery", "-A", "leadflow", "worker", "--pool=solo", "--loglevel=INFO"]
        + ["--without-mingle", "--without-gossip", "--without-heartbeat"]
        + (["-Q", ",".join(queues)] if queues else []),
        env=env,
        log_dir=log_dir,
    )


def celery_beat(*, env, log_dir, python=sys.executable):
    return Process(
        "beat",
        [python, "-m", "celery", "-A", "leadflow", "beat", "--loglevel=INFO"]
        + ["--schedule", str(Path(log_dir) / "beat-schedule"), "--pidfile", str(Path(log_dir) / "beat.pid")],
        env=env,
        log_dir=log_dir,
    )


class RedisServer:
    """A redis-server on a free port, owned by one test (never the shared one): it may stop
    and start it again on the same port, as a broker outage does."""

    def __init__(self, log_dir):
        self.port = free_port()
        self.log_dir = log_dir
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        binary = shutil.which("redis-server") or "/usr/sbin/redis-server"
        self.process = Process(
            f"redis-{self.port}",
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            env=dict(os.environ),
            log_dir=self.log_dir,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_for(lambda: _pings(client), processes=[self.process], timeout=15, what=f"redis on {self.port}")

    def stop(self):
        if self.process is not None:
            self.process.stop()
            self.process = None


def _pings(client):
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@contextmanager
def own_redis(log_dir):
    server = RedisServer(log_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
