"""An import's worker killed for real in the middle of a file: real worker and beat
processes, a Redis server of the test's own (never the shared one), the test database."""

import pytest
from django.db import connection

from leadflow.leads import imports
from leadflow.leads.models import ImportJob, ImportStatus, Lead
from tests.factories import LeadFactory
from tests.helpers import CHUNK, hold_row_lock, real_broker
from tests.processes import celery_beat, celery_env, celery_worker, own_redis, started, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def broker(tmp_path):
    with own_redis(tmp_path) as server:
        yield server


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_import_whose_worker_is_killed_mid_file_is_finished_by_another_exactly_once(broker, marketer, tmp_path):
    env = celery_env(
        broker.url,
        IMPORT_CHUNK_ROWS=str(CHUNK),
        IMPORT_STALE_AFTER_SECONDS="3",
        SWEEP_INTERVAL_SECONDS="1",
        SWEEP_GRACE_SECONDS="0",
    )
    rows = 6 * CHUNK
    known = LeadFactory.create(email=f"lead{2 * CHUNK + 2}@example.com", name="Known before")
    text = "Email,First Name,Last Name\n" + "".join(
        f"lead{index}@example.com,Lead,Number {index}\n" for index in range(1, rows + 1)
    )
    job = imports.import_job_create(user=marketer, filename="contacts.csv", data=text.encode(), source_name="Big")
    with real_broker(broker.url):
        assert imports.import_job_start(job=job)
    # A transaction elsewhere holds a lead of the third chunk: the worker commits two
    # chunks, then waits on the lock, and is killed there.
    blocker = hold_row_lock(known.pk)
    try:
        with started(celery_worker("first-worker", env=env, log_dir=tmp_path)) as (first,):
            wait_for(
                lambda: ImportJob.objects.get(pk=job.pk).position == 2 * CHUNK and waiting_on_a_lock(),
                processes=[first],
                what="two chunks committed and the third waiting on the lock",
            )
            first.kill()
    finally:
        blocker.rollback()
        blocker.close()

    killed = ImportJob.objects.get(pk=job.pk)
    assert (killed.status, killed.attempts, killed.position, killed.created) == (
        ImportStatus.RUNNING,
        1,
        2 * CHUNK,
        2 * CHUNK,
    )

    with started(celery_worker("second-worker", env=env, log_dir=tmp_path), celery_beat(env=env, log_dir=tmp_path)):
        wait_for(
            lambda: ImportJob.objects.get(pk=job.pk).status == ImportStatus.DONE,
            timeout=90,
            what="the sweep to resume the import on the second worker",
        )

    done = ImportJob.objects.get(pk=job.pk)
    assert (done.attempts, done.position, done.created, done.updated, done.rejected) == (2, rows, rows - 1, 1, 0)
    assert Lead.objects.count() == rows
    known.refresh_from_db()
    assert known.name == f"Lead Number {2 * CHUNK + 2}"
