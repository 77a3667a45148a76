"""Through a real Celery worker process and Redis: nothing mocked, nothing eager."""

from datetime import UTC, datetime, timedelta

import pytest
import redis
import requests
from django.conf import settings

from leadflow.leads.models import Lead, Stage, StageChange
from tests.helpers import behaviour, lead_score, real_broker
from tests.processes import broker_queues, celery_env, celery_worker, started, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A `celery worker` subprocess consuming the test broker, writing to the test database."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(*broker_queues())
    with started(celery_worker("worker", env=celery_env(settings.CELERY_BROKER_URL), log_dir=tmp_path)) as (worker,):
        yield worker


@pytest.mark.worker
def test_events_posted_over_http_promote_a_lead_to_sql_through_a_real_worker(
    celery_worker_process, live_server, ingest_secret, publish_ruleset
):
    publish_ruleset([behaviour("page_view", 10), behaviour("demo_request", 40)], mql=30, sql=60)
    now = datetime.now(UTC)
    events = [
        {
            "event_id": f"w-{n}",
            "type": event_type,
            "occurred_at": (now - timedelta(minutes=10 - n)).isoformat(),
            "lead": {"email": "grace@example.com", "name": "Grace"},
        }
        for n, event_type in enumerate(["page_view", "page_view", "page_view", "demo_request"])
    ]
    with real_broker():
        response = requests.post(
            f"{live_server.url}/api/v1/events",
            json={"events": events},
            headers={"Authorization": f"Bearer {ingest_secret}"},
            timeout=10,
        )
    assert response.status_code == 202
    assert response.json()["accepted"] == 4

    wait_for(
        lambda: Lead.objects.filter(stage=Stage.SQL, needs_rescore=False).exists(),
        processes=[celery_worker_process],
        what="the worker to score the lead",
    )
    lead = Lead.objects.get()
    assert lead_score(lead) == 70
    trail = list(StageChange.objects.filter(lead=lead).order_by("at", "id").values_list("from_stage", "to_stage"))
    assert trail == [("new", "mql"), ("mql", "sql")]
    celery_worker_process.assert_running()
