"""LeadFlow's counters and histograms, counted by the processes that do the work (the web
process for ingest, the Celery worker for tasks), and the per-batch ingest log line.

What a process counts is exported by /metrics (``leadflow.monitoring``) in the web
process, and by the worker's own port (``WORKER_METRICS_PORT``). With several processes
(gunicorn's workers, a prefork worker's children), set ``PROMETHEUS_MULTIPROC_DIR``:
prometheus_client's multiprocess mode writes each process's values to files there and
the exporter adds them up. Gauges of the state of the data (leads waiting, handoffs
queued, rescore progress) are not counted here: they are read from the database when
Prometheus scrapes (``leadflow.monitoring.LeadFlowCollector``).
"""

import os
from collections.abc import Mapping

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess

ingest_logger = structlog.get_logger("leadflow.ingest")

INGEST_EVENTS = Counter(
    "leadflow_ingest_events",
    "Events received by the ingest (Segment: messages), by source and outcome (accepted, duplicate, rejected).",
    ["source", "outcome"],
)
INGEST_BATCH_SECONDS = Histogram(
    "leadflow_ingest_batch_seconds",
    "Time to validate and store one ingest batch (the request, up to its answer), by source.",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TASK_SECONDS = Histogram(
    "leadflow_task_seconds",
    "Time a Celery task ran (scoring.tasks.score_* is the scoring), by task, queue and state.",
    ["task", "queue", "state"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
WEBHOOK_DELIVERIES = Counter(
    "leadflow_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, retry, failed, refused, skipped, superseded).",
    ["outcome"],
)


def ingest_batch_done(
    *,
    source: str,
    accepted: int,
    duplicates: int,
    rejected: int,
    seconds: float,
    accepted_by_kind: Mapping[str, int] | None = None,
) -> None:
    """Count one batch's events and its time, and log the batch: its source and counts,
    never its contents (personal data: e-mail addresses, names). Every ingest endpoint
    calls it once per batch it answered. A Segment batch counts messages: ``accepted``
    adds up ``accepted_by_kind`` (events stored, lead upserts and aliases applied),
    which the log line carries too."""
    INGEST_BATCH_SECONDS.labels(source=source).observe(seconds)
    for outcome, count in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
        if count:
            INGEST_EVENTS.labels(source=source, outcome=outcome).inc(count)
    breakdown = {"accepted_by_kind": dict(accepted_by_kind)} if accepted_by_kind is not None else {}
    ingest_logger.info(
        "ingest_batch",
        source=source,
        accepted=accepted,
        duplicates=duplicates,
        rejected=rejected,
        **breakdown,
        duration_ms=round(seconds * 1000, 1),
    )


def task_finished(*, task: str, queue: str, state: str, seconds: float) -> None:
    TASK_SECONDS.labels(task=task, queue=queue, state=state).observe(seconds)


def webhook_delivery_attempted(*, outcome: str) -> None:
    """The hook for every webhook sender: one attempt and its outcome."""
    WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()


def exported_registry() -> CollectorRegistry:
    """What this process exports: every process's values, added up from the files in
    ``PROMETHEUS_MULTIPROC_DIR`` (multiprocess mode), or this process's own."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY
