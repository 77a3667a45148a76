"""``/metrics``: Prometheus's text format.

Three sources, one answer:

- django-prometheus: requests, responses, latencies by view, database queries and errors
  (its middleware and database backend, see settings.py);
- the processes' own counters (``leadflow.metrics``): events accepted, duplicate and
  rejected by source, ingest batch latency, task durations (scoring among them), webhook
  deliveries by outcome. With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn with several
  workers), every process's values are added up from the files there;
- :class:`LeadFlowCollector`: gauges read from the database at each scrape, so they are
  right whichever process (or none) changed the data: leads waiting for scoring and the
  oldest's wait, rescore progress, handoffs queued, claimed and overdue, webhook deliveries
  by state, each queue's latest worker heartbeat.

Access: a request with ``Authorization: Bearer <METRICS_TOKEN>`` (when set), or from an
address in ``METRICS_ALLOWED_ADDRESSES`` (loopback by default); anyone else gets 403.
"""

import hmac
import ipaddress
import logging
from collections.abc import Iterator
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from handoff.models import OPEN_STATUSES, Handoff, HandoffStatus, WebhookDelivery, overdue_q
from handoff.selectors import WEBHOOK_DELIVERY_STATES
from leadflow.health import queue_heartbeats
from leadflow.leads.selectors import scoring_backlog
from leadflow.metrics import exported_registry
from leadflow.throttling import client_address
from scoring.models import RescoreRun, RescoreState

logger = logging.getLogger(__name__)


class LeadFlowCollector(Collector):
    """Gauges of the data, computed when Prometheus scrapes (a handful of indexed counts)."""

    def collect(self) -> Iterator[Metric]:
        """The gauges, and ``leadflow_metrics_database_up``: 0 when the database did not answer
        (the gauges are then left out; the processes' counters are still exported)."""
        try:
            gauges = list(self._gauges())
        except DatabaseError:
            logger.warning("Metrics: the database did not answer; its gauges are left out", exc_info=True)
            gauges = []
        yield GaugeMetricFamily(
            "leadflow_metrics_database_up",
            "1 when the gauges read from the database could be read, 0 when the database did not answer.",
            value=1 if gauges else 0,
        )
        yield from gauges

    def _gauges(self) -> Iterator[Metric]:
        now = timezone.now()
        backlog = scoring_backlog()
        yield GaugeMetricFamily(
            "leadflow_leads_waiting_for_scoring", "Leads flagged for rescoring, not yet scored.", value=backlog.waiting
        )
        yield GaugeMetricFamily(
            "leadflow_scoring_lag_seconds",
            "How long the oldest lead flagged for rescoring has waited (0 with none waiting).",
            value=backlog.oldest_age_seconds(now),
        )
        yield from self._rescores()
        yield from self._handoffs(now)
        yield from self._webhooks()
        heartbeats = GaugeMetricFamily(
            "leadflow_worker_heartbeat_age_seconds",
            "Seconds since a worker consuming the queue last beat (no series: no worker ever did).",
            labels=["queue"],
        )
        for queue, beat_at in sorted(queue_heartbeats().items()):
            heartbeats.add_metric([queue], (now - beat_at).total_seconds())
        yield heartbeats

    def _rescores(self) -> Iterator[Metric]:
        unfinished = RescoreRun.objects.filter(state__in=[RescoreState.QUEUED, RescoreState.RUNNING])
        progress = GaugeMetricFamily(
            "leadflow_rescore_progress_ratio",
            "Share of its leads a queued or running full rescore has scored (0 to 1).",
            labels=["run", "model", "reason", "state"],
        )
        done = GaugeMetricFamily(
            "leadflow_rescore_leads_done", "Leads a queued or running full rescore has scored.", labels=["run"]
        )
        total = GaugeMetricFamily(
            "leadflow_rescore_leads_total", "Leads a queued or running full rescore covers.", labels=["run"]
        )
        for run in unfinished.select_related("ruleset__model").order_by("id"):
            run_id = str(run.pk)
            progress.add_metric(
                [run_id, run.ruleset.model.slug, run.reason, run.state], run.done / run.total if run.total else 0.0
            )
            done.add_metric([run_id], run.done)
            total.add_metric([run_id], run.total)
        runs = GaugeMetricFamily("leadflow_rescore_runs", "Full rescores by state.", labels=["state"])
        counts = dict(RescoreRun.objects.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
        for state in RescoreState.values:
            runs.add_metric([state], counts.get(state, 0))
        yield from (progress, done, total, runs)

    def _handoffs(self, now: datetime) -> Iterator[Metric]:
        row = Handoff.objects.filter(status__in=OPEN_STATUSES).aggregate(
            queued=Count("id", filter=Q(status=HandoffStatus.QUEUED)),
            claimed=Count("id", filter=Q(status=HandoffStatus.CLAIMED)),
            overdue=Count("id", filter=overdue_q(now)),
        )
        open_handoffs = GaugeMetricFamily("leadflow_handoffs_open", "Open handoffs by status.", labels=["status"])
        open_handoffs.add_metric(["queued"], row["queued"])
        open_handoffs.add_metric(["claimed"], row["claimed"])
        yield open_handoffs
        yield GaugeMetricFamily(
            "leadflow_handoffs_overdue", "Open handoffs past their SLA (due time).", value=row["overdue"]
        )

    def _webhooks(self) -> Iterator[Metric]:
        # Every subscription's deliveries (the global webhook is one), by the delivery log's states.
        row = WebhookDelivery.objects.aggregate(
            **{state: Count("id", filter=where) for state, where in WEBHOOK_DELIVERY_STATES.items()}
        )
        deliveries = GaugeMetricFamily(
            "leadflow_webhook_deliveries_by_state",
            "Webhook deliveries recorded, by state (pending, retrying, delivered, failed: given up).",
            labels=["state"],
        )
        for state in WEBHOOK_DELIVERY_STATES:
            deliveries.add_metric([state], row[state])
        yield deliveries


def metrics_text() -> bytes:
    data = CollectorRegistry(auto_describe=False)
    data.register(LeadFlowCollector())
    return generate_latest(exported_registry()) + generate_latest(data)


def metrics_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if token and given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip(), token):
        return True
    try:
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(allowed, strict=False) for allowed in settings.METRICS_ALLOWED_ADDRESSES)


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return JsonResponse(
            {
                "detail": "Metrics are for the monitoring system: send Authorization: Bearer <METRICS_TOKEN>, "
                "or scrape from an address in METRICS_ALLOWED_ADDRESSES."
            },
            status=403,
        )
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
