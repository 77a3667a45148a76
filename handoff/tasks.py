"""Celery tasks of the handoff: thin, take ids, safe to run twice."""

from celery import shared_task

from handoff import services, webhooks


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def expire_claims() -> int:
    """Beat, every minute: claims past their expiry go back to the queue."""
    return services.handoffs_expire_claims()


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def flag_overdue() -> int:
    """Beat, every minute: open handoffs past due are flagged and notified, once."""
    return services.handoffs_flag_overdue()


@shared_task(acks_late=True, soft_time_limit=60, time_limit=webhooks.DELIVERY_TIME_LIMIT_SECONDS)
def deliver_webhook(delivery_id: int) -> str:
    """POST one webhook delivery to its subscription; a failure is retried by the sweep,
    with exponential backoff (``handoff.webhooks``)."""
    return webhooks.webhook_deliver(delivery_id=delivery_id)


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def sweep_webhooks() -> int:
    """Beat, every minute: due retries, and deliveries whose task was lost (broker outage,
    dead worker), are enqueued."""
    return webhooks.webhooks_sweep()
