"""Long-running processes that tests start (servers, workers, beat) and how to wait on them."""

import os
import signal
import subprocess
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
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


def wait_for(condition, *, processes, timeout=60.0, what="the condition"):
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
    except requests.ConnectionError:
        return False
