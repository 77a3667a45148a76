"""A full rescore split into chunks of lead ids that Celery workers share: the result
equals the one-task rescore, progress adds up, a chunk that fails is retried alone."""

from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from handoff import webhooks
from scoring import engine, selectors, services, tasks
from scoring.models import RescoreChunk, RescoreRun, RescoreState, Score
from tests.factories import default_model
from tests.helpers import (
    CHUNK,
    assert_qualified_exactly_once,
    behaviour,
    client_for,
    hold_row_lock,
    make_leads,
    real_broker,
)
from tests.processes import celery_env, celery_worker, started, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def split(settings):
    settings.RESCORE_PARALLEL = True
    settings.RESCORE_CHUNK_SIZE = CHUNK
    settings.SWEEP_GRACE_SECONDS = 0


def publish(admin):
    """Publish a draft of the default model through the API (the rescore is enqueued
    after the commit). A transactional test starts without the migrations' data."""
    default_model()
    client = client_for(admin)
    draft = client.post(
        "/api/v1/rulesets",
        {"name": "Split", "mql_threshold": 30, "sql_threshold": 60, "intent_event_types": ["demo_request"]},
        format="json",
    ).json()
    for rule in (behaviour("page_view", 40), behaviour("demo_request", 30)):
        assert client.post(f"/api/v1/rulesets/{draft['version']}/rules", rule, format="json").status_code == 201
    response = client.post(f"/api/v1/rulesets/{draft['version']}/publish")
    assert response.status_code == 202
    return RescoreRun.objects.get(pk=response.json()["id"])


def assert_scores_are_the_engines(run):
    """Every stored score equals the single-lead engine's at the run's moment."""
    spec = selectors.ruleset_spec(run.ruleset)
    for score in Score.objects.select_related("lead"):
        events = selectors.events_by_lead([score.lead_id], spec).get(score.lead_id, [])
        expected = engine.score_lead(selectors.lead_attributes(score.lead), events, spec, run.as_of, None)
        assert (score.score, score.fit, score.grade, score.computed_at) == (
            expected.total,
            expected.fit,
            expected.grade,
            run.as_of,
        )


@pytest.mark.django_db(transaction=True)
def test_a_split_rescore_scores_every_chunk_and_adds_up_its_progress(admin, split, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    subscription = webhooks.webhook_subscription_create(
        actor=admin, name="CRM", url="http://127.0.0.1:9/closed", events=["model.rescored"]
    )
    leads = make_leads(4 * CHUNK + 2)
    run = publish(admin)
    run.refresh_from_db()
    assert run.parallel
    chunks = list(run.chunks.all())
    assert [(c.state, c.scored) for c in chunks] == [(RescoreState.DONE, CHUNK)] * 4 + [(RescoreState.DONE, 2)]
    assert [c.after_lead_id for c in chunks[1:]] == [c.last_lead_id for c in chunks[:-1]], "ranges meet"
    assert (run.state, run.done, run.total, run.changed_stages) == (RescoreState.DONE, 22, 22, 22 + 11)
    assert_qualified_exactly_once(leads)
    assert_scores_are_the_engines(run)
    (announced,) = subscription.deliveries.all()
    assert announced.key == f"model.rescored:{run.pk}", "announced once, by the chunk that finished the run"


@pytest.mark.django_db(transaction=True)
def test_a_chunk_that_fails_is_retried_alone_and_the_run_finishes(admin, split):
    leads = make_leads(3 * CHUNK)
    blocker = hold_row_lock(leads[CHUNK + 1].pk)  # inside the second chunk
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")
        publish(admin)  # the chunks run eagerly here, after the commit: the second one fails (logged)
    finally:
        blocker.rollback()
        blocker.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    run = RescoreRun.objects.get(parallel=True)
    assert [c.state for c in run.chunks.all()] == [RescoreState.DONE, RescoreState.FAILED, RescoreState.QUEUED]
    assert run.state == RescoreState.RUNNING and run.done == CHUNK

    # The run's heartbeat stops once its workers are gone: the sweep picks it up.
    RescoreRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    tasks.sweep_dirty()

    run.refresh_from_db()
    assert (run.state, run.done) == (RescoreState.DONE, 3 * CHUNK)
    assert [c.attempts for c in run.chunks.all()] == [1, 2, 1], "the done chunk is not redone"
    assert_qualified_exactly_once(leads)


@pytest.mark.django_db(transaction=True)
def test_a_redelivered_chunk_that_is_done_changes_nothing(admin, split):
    make_leads(CHUNK)
    run = publish(admin)
    (chunk,) = run.chunks.all()
    assert tasks.rescore_chunk(chunk.pk) == "skipped"
    chunk.refresh_from_db()
    assert (chunk.attempts, chunk.state) == (1, RescoreState.DONE)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_split_rescore_through_real_workers_equals_the_in_process_result(admin, split, tmp_path):
    """Two worker processes share the chunks through Redis; the result is the one the
    in-process engine gives."""
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).delete("celery")
    leads = make_leads(6 * CHUNK)
    env = celery_env(django_settings.CELERY_BROKER_URL, RESCORE_CHUNK_SIZE=str(CHUNK))
    workers = [celery_worker(f"worker{n}", env=env, log_dir=tmp_path) for n in (1, 2)]
    with started(*workers), real_broker():
        run = publish(admin)
        wait_for(
            lambda: RescoreRun.objects.get(pk=run.pk).state == RescoreState.DONE,
            processes=workers,
            what="the workers to rescore every chunk",
        )
    run.refresh_from_db()
    assert run.parallel and run.chunks.filter(state=RescoreState.DONE).count() == 6
    assert (run.done, run.total) == (6 * CHUNK, 6 * CHUNK)
    assert_qualified_exactly_once(leads)
    assert_scores_are_the_engines(run)
    assert services.rescore_runs_resume() == []
    assert RescoreChunk.objects.filter(run=run).exclude(attempts=1).count() == 0
