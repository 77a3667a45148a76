"""Database connections stay bounded: persistent only in processes that reuse their threads.

runserver (what `make run` serves with) starts a thread per request; a connection kept open
after its request would stay with a dead thread until garbage collection, and a hundred API
calls within a minute would use up PostgreSQL's connections. gunicorn's workers serve request
after request on the same thread, so there a connection is kept, and checked before reuse.
"""

import sys

import pytest
import requests
from django.db import connection

from leadflow.leads import services
from tests.helpers import clean_env
from tests.processes import Process, answers, current_database_url, database_backends, free_port, started, wait_for

pytestmark = pytest.mark.postgres

# Far below PostgreSQL's max_connections (100), shared with whoever else uses the server.
CONNECTION_BOUND = 10


@pytest.fixture
def marketer_token(marketer):
    _token, key = services.api_token_create(user=marketer)
    return key


def logged_in_session(base_url, username):
    session = requests.Session()
    session.get(f"{base_url}/login/", timeout=10)
    response = session.post(
        f"{base_url}/login/",
        data={
            "username": username,
            "password": "correct-horse-battery",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=10,
    )
    assert response.url == f"{base_url}/", "the login did not go through"
    return session


def test_dev_server_of_make_run_keeps_database_connections_bounded_over_300_requests(
    transactional_db, tmp_path, marketer, marketer_token, ingest_secret
):
    # As `make run` starts it (scripts/dev-server.sh, autoreload included), with DEBUG on and
    # tasks in-process, against the test database; DB_CONN_MAX_AGE at its default.
    env = clean_env(DEBUG="1", DATABASE_URL=current_database_url(), PYTHON=sys.executable)
    env.pop("DB_CONN_MAX_AGE", None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = Process("runserver", ["bash", "scripts/dev-server.sh", f"127.0.0.1:{port}"], env=env, log_dir=tmp_path)
    with started(server):
        wait_for(lambda: answers(f"{base}/login/"), processes=[server], what="runserver to answer")
        pages = logged_in_session(base, "marketer")
        api = {"Authorization": f"Bearer {marketer_token}"}
        ingest = {"Authorization": f"Bearer {ingest_secret}"}

        def send(n):
            if n % 3 == 0:
                return requests.get(f"{base}/api/v1/leads", headers=api, timeout=10)
            if n % 3 == 1:
                event = {"event_id": f"c-{n}", "type": "page_view", "lead": {"email": f"lead{n}@example.com"}}
                return requests.post(f"{base}/api/v1/events", json={"events": [event]}, headers=ingest, timeout=10)
            return pages.get(f"{base}/leads/", timeout=10)

        failures, peak = [], 0
        for n in range(300):
            response = send(n)
            if not 200 <= response.status_code < 300:
                failures.append(f"{response.request.method} {response.url}: {response.status_code}")
            held = len(database_backends())
            peak = max(peak, held)
            # Stop at once rather than drive the shared PostgreSQL out of connections.
            assert held <= CONNECTION_BOUND, f"{held} connections to the database after {n + 1} requests"
        assert failures == []
    print(f"at most {peak} connections over 300 requests")


def test_gunicorn_keeps_its_connection_and_reconnects_when_the_database_dropped_it(
    transactional_db, tmp_path, marketer_token
):
    # gunicorn as the image starts it, so it reads gunicorn.conf.py from the project folder.
    env = clean_env(DEBUG="1", DATABASE_URL=current_database_url())
    env.pop("DB_CONN_MAX_AGE", None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = Process(
        "gunicorn",
        [sys.executable, "-m", "gunicorn", "leadflow.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
        + ["--control-socket", str(tmp_path / "gunicorn.ctl")],
        env=env,
        log_dir=tmp_path,
    )
    api = {"Authorization": f"Bearer {marketer_token}"}
    with started(web):
        wait_for(lambda: answers(f"{base}/login/"), processes=[web], what="gunicorn to answer")
        for _ in range(20):
            assert requests.get(f"{base}/api/v1/leads", headers=api, timeout=10).status_code == 200
        kept = database_backends()
        assert len(kept) == 1, "one worker, one connection, kept from request to request"

        # What a database restart does to a kept connection.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", kept)
        response = requests.get(f"{base}/api/v1/leads", headers=api, timeout=10)
        assert response.status_code == 200, "the first request after the restart must not fail"
        assert len(database_backends()) == 1
        assert database_backends() != kept
