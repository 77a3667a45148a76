"""Celery tasks of the lead core: thin, safe to run twice."""

from celery import shared_task

from leadflow.leads.retention import retention_apply


@shared_task(acks_late=True, soft_time_limit=3300, time_limit=3600)
def apply_retention() -> dict[str, int]:
    """The daily retention run (``RETENTION_EVENTS_MONTHS``, ``RETENTION_ANONYMOUS_DAYS``)."""
    result = retention_apply()
    return {"events": result.events, "rescored_leads": result.rescored_leads, "anonymous_leads": result.anonymous_leads}
