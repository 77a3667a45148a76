"""Full rescores that always finish: durable progress, resume after a failure or a dead
worker, a lease that stops a presumed-dead execution, the sweep that finds them all.

These run in-process against PostgreSQL; tests/test_worker_failures.py does the same
through real worker processes killed with SIGKILL and a broker that goes away."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from leadflow.leads.models import Lead, Stage
from scoring import services, tasks
from scoring.models import RescoreRun, RescoreState, Score
from tests.factories import LeadFactory
from tests.helpers import (
    CHUNK,
    assert_qualified_exactly_once,
    behaviour,
    client_for,
    hold_row_lock,
    lead_score,
    make_leads,
    real_broker,
)


@pytest.fixture
def small_chunks(settings):
    settings.RESCORE_CHUNK_SIZE = CHUNK
    settings.SWEEP_GRACE_SECONDS = 0


@pytest.fixture
def rules(publish_ruleset):
    return publish_ruleset([behaviour("page_view", 40), behaviour("demo_request", 30)], mql=30, sql=60)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_failed_rescore_run_resumes_after_its_last_committed_chunk(rules, small_chunks):
    leads = make_leads(4 * CHUNK)
    run = RescoreRun.objects.create(ruleset=rules, reason="publish")
    blocker = hold_row_lock(leads[2 * CHUNK + 1].pk)  # inside the third chunk
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")
        with pytest.raises(OperationalError):
            services.rescore_run_execute(run=run)
    finally:
        blocker.rollback()
        blocker.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    run.refresh_from_db()
    assert (run.state, run.last_lead_id, run.done) == (RescoreState.FAILED, leads[2 * CHUNK - 1].pk, 2 * CHUNK)
    assert "lock" in run.error
    assert Lead.objects.filter(stage=Stage.NEW).count() == 2 * CHUNK, "the third chunk rolled back whole"
    # Leave a mark on a committed lead: a resume that started over would overwrite it.
    Score.objects.filter(lead_id=leads[0].pk).update(score=Decimal("999"))

    assert tasks.sweep_dirty() == 0  # the sweep resumes the run (its task runs eagerly here)

    run.refresh_from_db()
    assert (run.state, run.attempts, run.done, run.total) == (RescoreState.DONE, 2, 4 * CHUNK, 4 * CHUNK)
    assert run.changed_stages == 4 * CHUNK + 2 * CHUNK
    assert lead_score(Lead.objects.get(pk=leads[0].pk)) == Decimal("999"), "committed chunks are not redone"
    Score.objects.filter(lead_id=leads[0].pk).update(score=Decimal("70"))
    assert_qualified_exactly_once(leads)


@pytest.mark.django_db(transaction=True)
def test_a_running_run_whose_heartbeat_stopped_is_resumed_by_the_sweep_from_its_cursor(rules, small_chunks):
    leads = make_leads(3 * CHUNK)
    started = timezone.now() - timedelta(hours=1)
    run = RescoreRun.objects.create(
        ruleset=rules,
        state=RescoreState.RUNNING,
        attempts=1,
        as_of=started,
        started_at=started,
        heartbeat_at=started,
        max_lead_id=leads[-1].pk,
        last_lead_id=leads[CHUNK - 1].pk,
        total=len(leads),
        done=CHUNK,
    )

    assert services.rescore_runs_resume() == [run.pk]

    run.refresh_from_db()
    assert (run.state, run.attempts, run.done) == (RescoreState.DONE, 2, 3 * CHUNK)
    assert run.as_of == started, "a resumed run scores as of the moment it first started"
    assert not Score.objects.filter(lead_id__in=[lead.pk for lead in leads[:CHUNK]]).exists()
    assert list(Score.objects.values_list("computed_at", flat=True).distinct()) == [started]
    assert_qualified_exactly_once(leads, skip=CHUNK)


@pytest.mark.django_db(transaction=True)
def test_a_redelivered_rescore_task_leaves_a_run_with_a_live_worker_alone(rules):
    make_leads(3)
    now = timezone.now()
    run = RescoreRun.objects.create(
        ruleset=rules, state=RescoreState.RUNNING, attempts=1, as_of=now, heartbeat_at=now, max_lead_id=10**9
    )

    assert tasks.rescore_all(run.pk) == RescoreState.RUNNING
    assert services.rescore_runs_resume() == []

    run.refresh_from_db()
    assert (run.attempts, run.last_lead_id) == (1, 0)
    assert not Score.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_execution_whose_run_was_taken_over_stops_before_writing_a_chunk(rules, settings):
    make_leads(3)
    run = RescoreRun.objects.create(ruleset=rules)
    first_lease = services._rescore_run_claim(run)
    RescoreRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    second_lease = services._rescore_run_claim(run)
    assert (first_lease, second_lease) == (1, 2)
    assert first_lease is not None and second_lease is not None

    presumed_dead = services.RunProgress(run.pk, first_lease, 0, 0, 0, lambda done: None)
    with pytest.raises(services.RescoreRunSuperseded), transaction.atomic():
        presumed_dead.check()
    with transaction.atomic():
        services.RunProgress(run.pk, second_lease, 0, 0, 0, lambda done: None).check()


@pytest.mark.django_db(transaction=True)
def test_a_run_that_started_before_runs_had_a_heartbeat_is_resumed(rules):
    leads = make_leads(2)
    run = RescoreRun.objects.create(ruleset=rules, state=RescoreState.RUNNING, started_at=timezone.now())

    assert services.rescore_runs_resume() == [run.pk]

    run.refresh_from_db()
    assert run.state == RescoreState.DONE
    assert_qualified_exactly_once(leads)


@pytest.mark.django_db(transaction=True)
def test_a_run_that_keeps_failing_is_given_up_after_the_attempt_limit(rules, settings):
    settings.RESCORE_MAX_ATTEMPTS = 3
    run = RescoreRun.objects.create(ruleset=rules, state=RescoreState.FAILED, attempts=3, error="boom")

    assert services.rescore_runs_resume() == []
    RescoreRun.objects.filter(pk=run.pk).update(attempts=2)
    assert services.rescore_runs_resume() == [run.pk]


@pytest.mark.django_db(transaction=True)
def test_a_publish_while_the_broker_is_down_is_rescored_by_the_sweep(rules, admin, small_chunks, publish_ruleset):
    leads = make_leads(2 * CHUNK)
    draft = services.ruleset_clone(ruleset=rules, user=admin)

    with real_broker("redis://127.0.0.1:1/0"):  # nothing listens there
        response = client_for(admin).post(f"/api/v1/rulesets/{draft.version}/publish")
    assert response.status_code == 202
    run = RescoreRun.objects.get(pk=response.json()["id"])
    assert run.state == RescoreState.QUEUED
    assert not Score.objects.exists()

    tasks.sweep_dirty.delay()

    run.refresh_from_db()
    assert (run.state, run.done) == (RescoreState.DONE, 2 * CHUNK)
    assert_qualified_exactly_once(leads)


@pytest.mark.django_db(transaction=True)
def test_the_rescore_page_says_a_failed_run_resumes_by_itself_until_its_starts_run_out(rules, admin, settings):
    from django.test import Client

    settings.RESCORE_MAX_ATTEMPTS = 3
    run = RescoreRun.objects.create(ruleset=rules, state=RescoreState.FAILED, attempts=1, error="Connection lost")
    client = Client()
    client.force_login(admin)

    page = client.get(f"/rules/runs/{run.pk}/").content.decode()
    assert "Connection lost" in page
    assert "resumes by itself within a few minutes, where it stopped (start 1 of 3)" in page

    RescoreRun.objects.filter(pk=run.pk).update(attempts=3)
    page = client.get(f"/rules/runs/{run.pk}/").content.decode()
    assert "It was started 3 times" in page
    assert "python manage.py rescore" in page


def _orphan_a_score() -> int:
    """A lead with a score deleted behind Django's back (as a rescore racing the lead's
    deletion can leave it): the scores table has no foreign-key constraint to stop it."""
    lead = LeadFactory.create()  # no events: nothing else refers to it
    services.leads_score(lead_ids=[lead.pk])
    assert Score.objects.filter(lead_id=lead.pk).exists()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM leads_lead WHERE id = %s", [lead.pk])
    return lead.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_scores_table_has_no_foreign_key_constraints(rules):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = %s::regclass",
            [Score._meta.db_table],
        )
        assert cursor.fetchone()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_a_full_rescore_deletes_the_scores_of_deleted_leads(rules, small_chunks):
    kept = make_leads(CHUNK + 1)
    orphan = _orphan_a_score()
    run = RescoreRun.objects.create(ruleset=rules, reason="publish")

    services.rescore_run_execute(run=run)

    assert not Score.objects.filter(lead_id=orphan).exists()
    assert Score.objects.filter(lead__in=kept).count() == len(kept)


@pytest.mark.django_db
def test_deleting_a_lead_deletes_its_scores(rules):
    lead = make_leads(1)[0]
    services.leads_score(lead_ids=[lead.pk])

    Lead.objects.filter(pk=lead.pk).delete()

    assert not Score.objects.filter(lead_id=lead.pk).exists()
