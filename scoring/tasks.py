"""Celery tasks of scoring: thin, take ids, safe to run twice."""

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from scoring import accounts, services
from scoring.models import RescoreChunk, RescoreRun


@shared_task(acks_late=True, soft_time_limit=120, time_limit=150)
def score_leads(lead_ids: list[int]) -> int:
    return services.leads_score(lead_ids=lead_ids).scored


@shared_task(acks_late=True, soft_time_limit=120, time_limit=150)
def score_intent(lead_ids: list[int]) -> int:
    """The fast lane: leads that just raised a hand (``SCORING_INTENT_QUEUE``)."""
    return services.leads_score_intent(lead_ids=lead_ids)


@shared_task(acks_late=True, soft_time_limit=240, time_limit=290)
def score_flagged() -> int:
    """One coalesced pass over every flagged lead (``SCORING_QUEUE``)."""
    return services.leads_score_flagged()


@shared_task(acks_late=True, soft_time_limit=3300, time_limit=3600)
def rescore_all(run_id: int) -> str:
    run = RescoreRun.objects.filter(pk=run_id).select_related("ruleset").first()
    if run is None:
        return "missing"
    return services.rescore_run_execute(run=run).state


@shared_task(acks_late=True, soft_time_limit=1200, time_limit=1260)
def rescore_chunk(chunk_id: int) -> str:
    """One chunk of a rescore split across workers; safe to run twice (its own lease)."""
    chunk = RescoreChunk.objects.filter(pk=chunk_id).select_related("run__ruleset").first()
    if chunk is None:
        return "missing"
    return services.rescore_chunk_execute(chunk=chunk)


@shared_task(acks_late=True, soft_time_limit=240, time_limit=290)
def sweep_dirty() -> int:
    """Work a lost message or a dead worker left behind: rescore runs to resume, leads still flagged."""
    services.rescore_runs_resume()
    return services.leads_sweep_dirty()


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def refresh_decay() -> list[int]:
    return [run.pk for run in services.decay_refresh()]


@shared_task(acks_late=True, soft_time_limit=600, time_limit=660)
def accounts_rollup_all() -> None:
    """Every account's roll-up again (the core enqueues it by name after re-deriving accounts)."""
    accounts.accounts_rollup_all(at=timezone.now())


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def accounts_rollup_left(account_ids: list[int]) -> None:
    """The accounts leads left (the core enqueues it by name): rolled up again."""
    with transaction.atomic():
        accounts.accounts_rollup_left(account_ids=account_ids, at=timezone.now())
