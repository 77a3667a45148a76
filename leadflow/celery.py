"""Celery application, configured from Django settings (``CELERY_*``).

Besides the tasks, what every worker does (README: "Operating LeadFlow"):

- logs as the web does: settings.LOGGING (structured, ``LOG_FORMAT``), and each task's
  lines carry the ``request_id`` of the request that enqueued it (django-structlog's boot
  step reads it from the task's headers);
- beats (:class:`HeartbeatStep`): a row in the database every ``WORKER_HEARTBEAT_SECONDS``
  with the queues it consumes, which /readyz and /metrics read;
- times every task (``leadflow_task_seconds``) and counts webhook deliveries by outcome,
  served on ``WORKER_METRICS_PORT`` when set.
"""

import logging
import logging.config
import os
import time
from typing import Any

import structlog
from celery import Celery, Task, bootsteps
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init
from django_structlog.celery.steps import DjangoStructLogInitStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadflow.settings")

app = Celery("leadflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)
# Webhook senders (today's deliver_webhook, the subscriptions' deliver_*) return their outcome.
WEBHOOK_TASK_PREFIX = "handoff.tasks.deliver_"


@setup_logging.connect
def _logging_as_the_web_does(**kwargs: Any) -> None:
    """Django's LOGGING instead of Celery's own handlers: the same structured lines (and the
    same redaction of e-mail addresses in production, ``leadflow.logredact``) from the worker
    and beat. Celery then sets up no handler of its own (nor its -l level: ``LOG_LEVEL``)."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@worker_init.connect
def _fresh_metrics_files(**kwargs: Any) -> None:
    """Before the pool starts its children: the multiprocess folder starts empty."""
    from leadflow.metrics_files import multiprocess_dir_reset

    multiprocess_dir_reset()


class HeartbeatStep(bootsteps.StartStopStep):
    """The worker's main process records its heartbeat on its timer (``leadflow.health``)."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timers: list[Any] = []

    def start(self, parent: Any) -> None:
        from django.conf import settings

        self.timers = [
            parent.timer.call_after(1.0, self.beat, (parent,)),
            parent.timer.call_repeatedly(settings.WORKER_HEARTBEAT_SECONDS, self.beat, (parent,)),
        ]

    def beat(self, worker: Any) -> None:
        from leadflow.health import heartbeat_safely

        queues = worker.app.amqp.queues
        heartbeat_safely(hostname=worker.hostname, queues=list(queues.consume_from or queues))

    def stop(self, parent: Any) -> None:
        for timer in self.timers:
            timer.cancel()


class MetricsPortStep(bootsteps.StartStopStep):
    """The worker's counters on ``WORKER_METRICS_PORT`` (its main process serves them; with
    ``PROMETHEUS_MULTIPROC_DIR``, every child's)."""

    def start(self, parent: Any) -> None:
        from django.conf import settings

        if not settings.WORKER_METRICS_PORT:
            return
        from prometheus_client import start_http_server

        from leadflow.metrics import exported_registry

        start_http_server(settings.WORKER_METRICS_PORT, registry=exported_registry())
        logger.info("Worker metrics served on port %s", settings.WORKER_METRICS_PORT)


app.steps["worker"].add(DjangoStructLogInitStep)
app.steps["worker"].add(HeartbeatStep)
app.steps["worker"].add(MetricsPortStep)


@task_prerun.connect
def _task_started(task: Task, **kwargs: Any) -> None:
    task.request._leadflow_started = time.monotonic()  # type: ignore[attr-defined]


@task_postrun.connect
def _task_finished(task: Task, state: str | None = None, retval: Any = None, **kwargs: Any) -> None:
    """Every task's duration (eager ones too, in the process that ran them), and the outcome
    of every webhook delivery."""
    from leadflow import metrics

    started = getattr(task.request, "_leadflow_started", None)
    delivery_info = task.request.delivery_info or {}
    queue = delivery_info.get("routing_key") or ("in-process" if task.request.is_eager else "")
    if started is not None:
        metrics.task_finished(task=task.name, queue=queue, state=state or "", seconds=time.monotonic() - started)
    if task.name.startswith(WEBHOOK_TASK_PREFIX):
        outcome = retval if state == "SUCCESS" and isinstance(retval, str) else (state or "unknown").lower()
        metrics.webhook_delivery_attempted(outcome=outcome)
    if not task.request.is_eager:
        # The worker's own lines between tasks belong to no task and no request (an eager
        # task runs inside the request, whose lines keep its id).
        structlog.contextvars.clear_contextvars()
