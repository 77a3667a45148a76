"""Celery tasks of the lead core: thin, safe to run twice (retention; the dashboard's
rollups, ``leadflow.leads.rollups``; the nurture segments' snapshot)."""

from celery import shared_task

from leadflow.leads import imports, nurture, rollups
from leadflow.leads.retention import retention_apply


@shared_task(acks_late=True, soft_time_limit=3300, time_limit=3600)
def apply_retention() -> dict[str, int]:
    """The daily retention run (``RETENTION_EVENTS_MONTHS``, ``RETENTION_ANONYMOUS_DAYS``)."""
    result = retention_apply()
    return {"events": result.events, "rescored_leads": result.rescored_leads, "anonymous_leads": result.anonymous_leads}


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def refresh_score_histograms(model: str | None = None) -> int:
    """Beat (every model), and after a full rescore (its model, a slug): count every
    lead's current score again (the dashboard's score distribution shows the snapshot's
    age). Safe to run twice: it replaces."""
    return rollups.score_histograms_refresh(model=model)


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def compact_rollups() -> int:
    """Beat: fold the rollups' delta rows, one row per key."""
    return rollups.rollups_compact()


@shared_task(acks_late=True, soft_time_limit=1800, time_limit=1860)
def import_leads_job(job_id: int) -> str:
    """An import of the import page, from where it stopped; safe to run twice (its lease)."""
    return imports.import_job_execute(job_id=job_id)


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def resume_import_jobs() -> list[int]:
    """Beat: imports a lost message or a dead worker left behind, enqueued again; drafts
    nobody started, deleted."""
    imports.import_drafts_expire()
    return imports.import_jobs_resume()


@shared_task(acks_late=True, soft_time_limit=540, time_limit=600)
def refresh_nurture_segments(days: int, topic_days: int, min_leads: int) -> int:
    """The nurture segments' snapshot computed again, queued by a request that found it
    older than ``NURTURE_CACHE_SECONDS``. Safe to run twice: it replaces."""
    return nurture.nurture_segments_refresh(days=days, topic_days=topic_days, min_leads=min_leads).leads
