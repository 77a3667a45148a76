"""Scoring requests with a broker: hand-raises take a fast lane, the rest of the activity is
coalesced into passes over the flagged leads (leadflow/leads/scoring_requests.py), and
no flagged lead is ever left behind. Real Redis; the last test runs a real worker."""

from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.conf import settings
from django.db import transaction

from leadflow.leads import scoring_requests
from leadflow.leads.models import Lead, Stage, StageChange
from leadflow.leads.services import events_ingest
from scoring import tasks
from scoring.models import Score
from tests.helpers import behaviour, real_broker
from tests.processes import celery_env, celery_worker, started, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def broker():
    """The test broker's Redis, with no message and no scoring hint left from another test."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(settings.SCORING_QUEUE, scoring_requests.INTENT_KEY, scoring_requests.PENDING_KEY)
    yield client
    client.delete(settings.SCORING_QUEUE, scoring_requests.INTENT_KEY, scoring_requests.PENDING_KEY)
    client.close()


@pytest.fixture
def rules(publish_ruleset):
    return publish_ruleset([behaviour("page_view", 40), behaviour("demo_request", 30)], mql=30, sql=60)


def event(n: int, event_type: str, email: str, minutes_ago: int = 5) -> dict:
    return {
        "event_id": f"lane-{n}",
        "type": event_type,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat(),
        "lead": {"email": email},
    }


def ingest(source, events: list[dict]) -> None:
    with transaction.atomic():  # the scoring request goes out when this commits
        result = events_ingest(source=source, payloads=events)
    assert result.accepted == len(events), result.rejected


def queued_tasks(client) -> list[str]:
    import json

    return [
        json.loads(message)["headers"]["task"] for message in reversed(client.lrange(settings.SCORING_QUEUE, 0, -1))
    ]


@pytest.mark.django_db(transaction=True)
def test_batches_of_ordinary_activity_enqueue_one_scoring_pass(rules, source, broker):
    with real_broker():
        for batch in range(3):
            ingest(source, [event(batch * 10 + n, "page_view", f"p{batch}-{n}@acme.test") for n in range(5)])

    assert queued_tasks(broker) == ["scoring.tasks.score_flagged"]
    assert Lead.objects.filter(needs_rescore=True).count() == 15

    with real_broker():
        assert tasks.score_flagged() == 15

    assert not Lead.objects.filter(needs_rescore=True).exists()
    assert set(Lead.objects.values_list("stage", flat=True)) == {Stage.MQL}


@pytest.mark.django_db(transaction=True)
def test_a_lead_flagged_after_a_pass_started_gets_the_next_pass(rules, source, broker):
    with real_broker():
        ingest(source, [event(1, "page_view", "first@acme.test")])
        scoring_requests.pass_started(broker)  # a worker took the pass: the next flag needs another
        ingest(source, [event(2, "page_view", "second@acme.test")])

        assert queued_tasks(broker) == ["scoring.tasks.score_flagged", "scoring.tasks.score_flagged"]
        assert tasks.score_flagged() == 2
        assert tasks.score_flagged() == 0

    assert not Lead.objects.filter(needs_rescore=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_pass_out_of_time_enqueues_the_next_and_loses_no_lead(rules, source, broker, settings):
    settings.SCORING_PASS_CHUNK = 2
    with real_broker():
        ingest(source, [event(n, "page_view", f"lead{n}@acme.test") for n in range(5)])
        broker.delete(settings.SCORING_QUEUE)

        from scoring import services

        assert services.leads_score_flagged(budget_seconds=0) == 2  # one chunk, then out of time
        assert queued_tasks(broker) == ["scoring.tasks.score_flagged"]
        assert Lead.objects.filter(needs_rescore=True).count() == 3
        assert services.leads_score_flagged() == 3

    assert not Lead.objects.filter(needs_rescore=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_hand_raise_takes_the_fast_lane(rules, source, broker):
    with real_broker():
        ingest(source, [event(1, "page_view", "browse@acme.test"), event(2, "demo_request", "hand@acme.test")])

    hand = Lead.objects.get(email="hand@acme.test")
    assert {int(value) for value in broker.smembers(scoring_requests.INTENT_KEY)} == {hand.pk}
    assert queued_tasks(broker) == ["scoring.tasks.score_intent", "scoring.tasks.score_flagged"]

    with real_broker():
        assert tasks.score_intent([hand.pk]) == 1

    assert not broker.smembers(scoring_requests.INTENT_KEY)
    hand.refresh_from_db()
    assert not hand.needs_rescore
    assert Lead.objects.get(email="browse@acme.test").needs_rescore, "ordinary activity waits for the pass"


@pytest.mark.django_db(transaction=True)
def test_an_event_type_that_no_published_model_calls_intent_is_ordinary(publish_ruleset, source, broker):
    publish_ruleset([behaviour("page_view", 40), behaviour("demo_request", 30)], intent=("contact_request",))
    with real_broker():
        ingest(source, [event(1, "demo_request", "maybe@acme.test")])

    assert not broker.smembers(scoring_requests.INTENT_KEY)
    assert queued_tasks(broker) == ["scoring.tasks.score_flagged"]


@pytest.mark.django_db(transaction=True)
def test_in_process_tasks_score_each_write_at_once(rules, source):
    ingest(source, [event(1, "page_view", "eager@acme.test")])  # eager mode: no broker

    lead = Lead.objects.get()
    assert (lead.stage, lead.needs_rescore) == (Stage.MQL, False)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_hand_raise_is_scored_ahead_of_a_backlog_on_one_worker(rules, source, broker, tmp_path):
    """One worker, one queue (the default): a backlog of ordinary activity is waiting when a
    demo request comes in; the pass the worker runs takes the hand-raise before its first chunk."""
    backlog = 600
    with real_broker():
        for start in range(0, backlog, 200):
            ingest(source, [event(n, "page_view", f"b{n}@acme.test") for n in range(start, start + 200)])
        ingest(source, [event(10_000, "page_view", "hand@acme.test"), event(10_001, "demo_request", "hand@acme.test")])
    hand = Lead.objects.get(email="hand@acme.test")
    assert queued_tasks(broker)[0] == "scoring.tasks.score_flagged", "the backlog's pass is ahead in the queue"

    env = celery_env(settings.CELERY_BROKER_URL, SCORING_PASS_CHUNK="50")
    with started(celery_worker("worker", env=env, log_dir=tmp_path)) as (worker,):
        wait_for(
            lambda: not Lead.objects.filter(needs_rescore=True).exists(),
            processes=[worker],
            what="the worker to score every lead",
        )

    entered_sql = StageChange.objects.get(lead=hand, to_stage=Stage.SQL).at
    backlog_scored = Score.objects.exclude(lead=hand).order_by("computed_at").values_list("computed_at", flat=True)
    first_of_backlog = backlog_scored.first()
    assert first_of_backlog is not None
    assert entered_sql < first_of_backlog, "the hand-raise was scored before any lead of the backlog"
    assert Score.objects.exclude(lead=hand).count() == backlog
