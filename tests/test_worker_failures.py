"""Failures for real: a worker killed with SIGKILL in the middle of a full rescore, and
a broker that is down when a ruleset is published. Real worker and beat processes,
a Redis server of the test's own (never the shared one), the test database."""

import pytest
from django.db import connection

from handoff.models import Handoff, Notification, NotificationKind
from handoff.services import new_sql_event_key
from scoring import tasks
from scoring.models import RescoreRun, RescoreState
from tests.helpers import (
    CHUNK,
    assert_qualified_exactly_once,
    behaviour,
    client_for,
    hold_row_lock,
    make_leads,
    real_broker,
)
from tests.processes import celery_beat, celery_env, celery_worker, own_redis, started, wait_for

pytestmark = pytest.mark.postgres

# Small chunks, a short heartbeat bound and a fast sweep, so that a test sees them work.
FAST_RECOVERY = {
    "RESCORE_CHUNK_SIZE": str(CHUNK),
    "RESCORE_STALE_AFTER_SECONDS": "3",
    "SWEEP_INTERVAL_SECONDS": "1",
    "SWEEP_GRACE_SECONDS": "0",
}


@pytest.fixture
def broker(tmp_path):
    with own_redis(tmp_path) as server:
        yield server


@pytest.fixture
def env(broker):
    return celery_env(broker.url, **FAST_RECOVERY)


def run_state(run_id: int) -> RescoreRun:
    return RescoreRun.objects.get(pk=run_id)


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def assert_new_sql_notified_once_each(rep) -> None:
    keys = list(
        Notification.objects.filter(recipient=rep, kind=NotificationKind.HANDOFF_NEW).values_list(
            "event_key", flat=True
        )
    )
    assert sorted(keys) == sorted(new_sql_event_key(h.public_id) for h in Handoff.objects.all())


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_rescore_whose_worker_is_killed_mid_run_is_finished_by_another_exactly_once(
    publish_ruleset, broker, env, rep, tmp_path
):

    rules = publish_ruleset([behaviour("page_view", 40), behaviour("demo_request", 30)], mql=30, sql=60)
    leads = make_leads(6 * CHUNK)
    run = RescoreRun.objects.create(ruleset=rules, reason="publish")
    with real_broker(broker.url):
        tasks.rescore_all.delay(run.pk)
    # A transaction elsewhere holds a lead of the third chunk: the worker commits two
    # chunks, then waits on the lock, and is killed there.
    blocker = hold_row_lock(leads[2 * CHUNK + 1].pk)
    try:
        with started(celery_worker("first-worker", env=env, log_dir=tmp_path)) as (first,):
            wait_for(
                lambda: run_state(run.pk).last_lead_id == leads[2 * CHUNK - 1].pk and waiting_on_a_lock(),
                processes=[first],
                what="two chunks committed and the third waiting on the lock",
            )
            first.kill()
    finally:
        blocker.rollback()
        blocker.close()

    killed = run_state(run.pk)
    assert (killed.state, killed.attempts, killed.done) == (RescoreState.RUNNING, 1, 2 * CHUNK)

    with started(celery_worker("second-worker", env=env, log_dir=tmp_path), celery_beat(env=env, log_dir=tmp_path)):
        wait_for(
            lambda: run_state(run.pk).state == RescoreState.DONE,
            timeout=90,
            what="the sweep to resume the run on the second worker",
        )

    finished = run_state(run.pk)
    assert (finished.attempts, finished.done, finished.total) == (2, 6 * CHUNK, 6 * CHUNK)
    assert finished.changed_stages == 6 * CHUNK + 3 * CHUNK
    assert_qualified_exactly_once(leads)
    assert_new_sql_notified_once_each(rep)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_ruleset_published_while_the_broker_is_down_is_rescored_once_it_is_back(
    publish_ruleset, broker, env, admin, rep, tmp_path
):
    from scoring import services

    rules = publish_ruleset([behaviour("page_view", 40), behaviour("demo_request", 30)], mql=30, sql=60)
    draft = services.ruleset_clone(ruleset=rules, user=admin)
    leads = make_leads(3 * CHUNK)

    broker.stop()
    with real_broker(broker.url):
        response = client_for(admin).post(f"/api/v1/rulesets/{draft.version}/publish")
    assert response.status_code == 202
    run_id = response.json()["id"]
    assert run_state(run_id).state == RescoreState.QUEUED

    broker.start()
    with started(celery_worker("worker", env=env, log_dir=tmp_path), celery_beat(env=env, log_dir=tmp_path)):
        wait_for(lambda: run_state(run_id).state == RescoreState.DONE, timeout=90, what="the queued run to be swept")

    assert run_state(run_id).done == 3 * CHUNK
    assert_qualified_exactly_once(leads)
    assert_new_sql_notified_once_each(rep)
