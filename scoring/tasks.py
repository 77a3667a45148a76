"""Celery tasks of scoring: thin wrappers that take ids and call services."""

from celery import shared_task


@shared_task(acks_late=True)
def score_leads(lead_ids: list[int]) -> int:
    return len(lead_ids)
