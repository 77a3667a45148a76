"""The project package's one model: the Celery workers' heartbeats, which readiness
(``leadflow.health``) and the metrics read."""

from django.db import models
from django.utils import timezone


class WorkerHeartbeat(models.Model):
    """A Celery worker's latest sign of life: written every ``WORKER_HEARTBEAT_SECONDS`` by
    the worker's main process (``leadflow.celery.HeartbeatStep``), with the queues it
    consumes. In the database, the one store every process shares in every configuration
    (the cache may be per process, the broker may be down or restarted empty)."""

    hostname = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list)
    beat_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return f"{self.hostname} ({', '.join(self.queues)}) at {self.beat_at:%Y-%m-%d %H:%M:%S}"
