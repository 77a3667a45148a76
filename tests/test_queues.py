"""Celery queues: real-time scoring, full rescores and notifications each on a queue of their
own (settings.CELERY_TASK_ROUTES), through a real broker and a real worker."""

import pytest
import redis
import requests
import yaml
from django.conf import settings

from leadflow.models import WorkerHeartbeat
from tests.helpers import real_broker
from tests.processes import ROOT, celery_env, celery_worker, free_port, own_redis, started, wait_for

pytestmark = pytest.mark.postgres

SCORING = ("scoring.tasks.score_leads", ([0],))
RESCORE = ("scoring.tasks.rescore_all", (0,))
NOTIFICATION = ("handoff.tasks.deliver_webhook", (0,))
PERIODIC = ("handoff.tasks.expire_claims", ())


def send(app, task):
    name, args = task
    app.signature(name, args=args).apply_async()


def lengths(client):
    return {queue.name: client.llen(queue.name) for queue in settings.CELERY_TASK_QUEUES}


@pytest.mark.worker
def test_a_worker_of_the_scoring_queue_scores_while_a_rescore_and_a_webhook_wait_on_theirs(transactional_db, tmp_path):
    with own_redis(tmp_path) as broker, real_broker(broker.url) as app:
        client = redis.Redis.from_url(broker.url)
        for task in (SCORING, RESCORE, NOTIFICATION, PERIODIC, SCORING):
            send(app, task)
        assert lengths(client) == {"celery": 1, "scoring": 2, "rescore": 1, "notifications": 1}

        port = free_port()
        worker = celery_worker(
            "scoring-worker",
            env=celery_env(broker.url, WORKER_METRICS_PORT=str(port)),
            log_dir=tmp_path,
            queues=[settings.SCORING_QUEUE],
        )
        with started(worker):
            wait_for(lambda: client.llen("scoring") == 0, processes=[worker], what="the worker to take the scoring")
            wait_for(
                lambda: worker.output().count("] succeeded in") == 2,
                processes=[worker],
                what="both scorings to run",
            )
            # What the scoring worker does not consume waits for a worker of its own queue.
            assert lengths(client) == {"celery": 1, "scoring": 0, "rescore": 1, "notifications": 1}
            assert "Task scoring.tasks.rescore_all[" not in worker.output()
            assert "Task handoff.tasks.deliver_webhook[" not in worker.output()
            # Its heartbeat names the one queue it consumes (/readyz reads it per queue).
            wait_for(
                lambda: list(WorkerHeartbeat.objects.values_list("queues", flat=True)) == [["scoring"]],
                processes=[worker],
                what="the worker's heartbeat",
            )
            # The worker serves its own counters: the scoring tasks' durations, by queue.
            exposed = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert (
                'leadflow_task_seconds_count{queue="scoring",state="SUCCESS",task="scoring.tasks.score_leads"} 2.0'
                in exposed
            )
        client.close()


def test_docker_compose_starts_a_worker_for_every_queue():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    consumed: dict[str, list[str]] = {}
    for name, service in compose["services"].items():
        command = service.get("command") or []
        if command[:4] == ["celery", "-A", "leadflow", "worker"]:
            queues = command[command.index("-Q") + 1]
            for queue in queues.split(","):
                consumed.setdefault(queue, []).append(name)
            assert service["environment"]["DB_CONN_MAX_AGE"], name
    assert consumed == {
        "celery": ["worker"],
        "scoring": ["worker-scoring"],
        "rescore": ["worker-rescore"],
        "notifications": ["worker-notifications"],
    }
    assert {queue.name for queue in settings.CELERY_TASK_QUEUES} == set(consumed)


def test_a_lead_import_runs_on_the_bulk_queue_beside_the_rescores():
    from leadflow.celery import app

    route = app.amqp.router.route({}, "leadflow.leads.tasks.import_leads_job", args=(1,), kwargs={})

    assert route["queue"].name == settings.RESCORE_QUEUE == "rescore"
