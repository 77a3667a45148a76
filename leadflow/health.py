"""Health and readiness, for load balancers, orchestrators and monitors.

- ``/healthz``: the process is alive and serves requests. No database, no broker: a probe
  that restarts a process must not restart it because PostgreSQL is down.
- ``/readyz``: LeadFlow can do its work: the database answers, the broker accepts
  connections, a Celery worker's heartbeat is at most ``READINESS_HEARTBEAT_MAX_AGE_SECONDS``
  old for every queue in ``READINESS_WORKER_QUEUES``, and the scoring lag (how long the
  oldest lead still flagged for rescoring has waited) is under
  ``READINESS_SCORING_LAG_SECONDS``. 200 or 503, with a JSON body naming each check.

The checks are django-health-check's (its ``Database`` check, its runner with a time budget
per check) and ours, in its ``HealthCheck`` shape. On the embedded default (no broker,
tasks run in-process) the broker and worker checks pass, saying so: there is no broker to
reach and no worker to wait for; the scoring lag still counts (a lead left flagged there
waits for ``run_schedule``'s sweep).

Worker heartbeats: each Celery worker's main process writes a row
(:class:`~leadflow.models.WorkerHeartbeat`) every ``WORKER_HEARTBEAT_SECONDS`` from its
timer (``leadflow.celery.HeartbeatStep``), not from a task: a long task on a busy queue
(a rescore's hour) does not delay it, and it needs no beat. The database is the one store
every process shares in every configuration.
"""

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from health_check.base import HealthCheck, HealthCheckResult
from health_check.checks import Database
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

from leadflow.celery import app as celery_app
from leadflow.leads.selectors import scoring_backlog
from leadflow.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

# Rows of workers gone for this long are removed by the next heartbeat.
FORGET_WORKERS_AFTER = datetime.timedelta(days=1)


# --- Heartbeats --------------------------------------------------------------------------------
def worker_heartbeat_record(*, hostname: str, queues: Sequence[str]) -> None:
    """The worker ``hostname``, consuming ``queues``, is alive now."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(hostname=hostname, defaults={"queues": sorted(queues), "beat_at": now})
    WorkerHeartbeat.objects.filter(beat_at__lt=now - FORGET_WORKERS_AFTER).delete()


def tasks_run_in_process() -> bool:
    return bool(celery_app.conf.task_always_eager)


def queue_heartbeats() -> dict[str, datetime.datetime]:
    """Each queue's latest heartbeat of a worker consuming it."""
    latest: dict[str, datetime.datetime] = {}
    for beat in WorkerHeartbeat.objects.all():
        for queue in beat.queues:
            if queue not in latest or beat.beat_at > latest[queue]:
                latest[queue] = beat.beat_at
    return latest


def readiness_queues() -> list[str]:
    return sorted(settings.READINESS_WORKER_QUEUES or [queue.name for queue in settings.CELERY_TASK_QUEUES])


@contextmanager
def _own_connection() -> Iterator[None]:
    """The checks run on threads of their own: each closes the database connection its
    thread opened, or every probe would leave one behind."""
    try:
        yield
    finally:
        connections.close_all()


@contextmanager
def _database_unavailable(what: str) -> Iterator[None]:
    """A database error is the check's answer (the ``database`` check says why), not a fault."""
    try:
        yield
    except DatabaseError as error:
        raise ServiceUnavailable(f"Could not read {what}: the database did not answer.") from error


# --- Checks ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker accepts a connection (``CELERY_BROKER_URL``)."""

    detail: str = dataclasses.field(default="", init=False, repr=False)

    def run(self) -> None:
        if tasks_run_in_process():
            self.detail = "No broker: tasks run in-process (embedded default)."
            return
        try:
            with celery_app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        except Exception as error:
            # The URL may hold a password: name the error, not the connection.
            raise ServiceUnavailable(f"The broker refused the connection ({type(error).__name__}).") from error
        self.detail = "The broker accepts connections."


@dataclasses.dataclass
class WorkerHeartbeats(HealthCheck):
    """A worker of each queue that must be served has beaten recently."""

    detail: str = dataclasses.field(default="", init=False, repr=False)
    queues: dict[str, float | None] = dataclasses.field(default_factory=dict, init=False, repr=False)

    def run(self) -> None:
        if tasks_run_in_process():
            self.detail = "No worker: tasks run in-process (embedded default)."
            return
        with _own_connection(), _database_unavailable("the workers' heartbeats"):
            latest = queue_heartbeats()
        now = timezone.now()
        max_age = settings.READINESS_HEARTBEAT_MAX_AGE_SECONDS
        self.queues = {
            queue: round((now - latest[queue]).total_seconds(), 1) if queue in latest else None
            for queue in readiness_queues()
        }
        silent = [queue for queue, age in self.queues.items() if age is None or age > max_age]
        if silent:
            raise ServiceUnavailable(
                f"No worker heartbeat in the last {max_age} s for queue(s) {', '.join(silent)}: "
                "start a worker consuming them (celery -A leadflow worker -Q <queue>)."
            )
        self.detail = f"A worker of every queue beat in the last {max_age} s."


@dataclasses.dataclass
class ScoringLag(HealthCheck):
    """The oldest lead still flagged for rescoring has not waited too long."""

    detail: str = dataclasses.field(default="", init=False, repr=False)
    waiting: int = dataclasses.field(default=0, init=False, repr=False)
    oldest_seconds: float = dataclasses.field(default=0.0, init=False, repr=False)

    def run(self) -> None:
        with _own_connection(), _database_unavailable("the leads waiting for scoring"):
            backlog = scoring_backlog()
        self.waiting, self.oldest_seconds = backlog.waiting, round(backlog.oldest_age_seconds(), 1)
        threshold = settings.READINESS_SCORING_LAG_SECONDS
        if threshold and self.oldest_seconds > threshold:
            raise ServiceUnavailable(
                f"{self.waiting} lead(s) wait for scoring, the oldest for {self.oldest_seconds:.0f} s "
                f"(more than {threshold} s): are the scoring workers running and keeping up?"
            )
        self.detail = f"{self.waiting} lead(s) wait for scoring."


@dataclasses.dataclass
class ClosingDatabase(Database):
    def run(self) -> None:
        with _own_connection():
            super().run()


READINESS_CHECKS: dict[str, type[HealthCheck]] = {
    "database": ClosingDatabase,
    "broker": Broker,
    "worker": WorkerHeartbeats,
    "scoring_lag": ScoringLag,
}


def _report(name: str, result: HealthCheckResult) -> dict[str, Any]:
    check = result.check
    report: dict[str, Any] = {
        "ok": result.error is None,
        "detail": str(result.error.message) if result.error else getattr(check, "detail", "") or "OK",
        "seconds": round(result.time_taken, 3),
    }
    if isinstance(check, WorkerHeartbeats) and check.queues:
        report["heartbeat_age_seconds"] = check.queues
    if isinstance(check, ScoringLag):
        report.update(
            waiting=check.waiting,
            oldest_seconds=check.oldest_seconds,
            threshold_seconds=settings.READINESS_SCORING_LAG_SECONDS,
        )
    return report


class ReadinessView(HealthCheckView):
    """``/readyz``: django-health-check's runner, our checks, 200 or 503 and a JSON body."""

    def get_executor(self) -> AbstractContextManager[Executor | None]:
        return ThreadPoolExecutor(max_workers=len(READINESS_CHECKS), thread_name_prefix="readyz")

    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        checks = {name: check() for name, check in READINESS_CHECKS.items()}
        with self.get_executor() as executor:
            results = await asyncio.gather(*(check.get_result(executor) for check in checks.values()))
        reports = {name: _report(name, result) for name, result in zip(checks, results, strict=True)}
        ready = all(report["ok"] for report in reports.values())
        body = {"status": "ready" if ready else "unavailable", "checks": reports}
        return JsonResponse(body, status=200 if ready else 503)


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """``/healthz``: alive. Touches neither the database nor the broker."""
    return JsonResponse({"status": "alive"})


def heartbeat_safely(*, hostname: str, queues: Sequence[str]) -> None:
    """The worker's timer calls this in its main process: a failed heartbeat (database down)
    is logged, never raised into the worker. The connection is closed after each beat: the
    main process holds none while it forks pool processes, and a database restart costs
    nothing but the next connect."""
    try:
        worker_heartbeat_record(hostname=hostname, queues=queues)
    except Exception:
        logger.warning("Worker heartbeat not recorded", exc_info=True)
    finally:
        connections.close_all()
