"""Celery tasks of the handoff: thin, take ids, safe to run twice."""

from celery import Task, shared_task

from handoff import notifications, services


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def expire_claims() -> int:
    """Beat, every minute: claims past their expiry go back to the queue."""
    return services.handoffs_expire_claims()


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def flag_overdue() -> int:
    """Beat, every minute: open handoffs past due are flagged and notified, once."""
    return services.handoffs_flag_overdue()


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=notifications.RETRYABLE_ERRORS,
    retry_backoff=True,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
    soft_time_limit=60,
    time_limit=notifications.DELIVERY_TIME_LIMIT_SECONDS,  # the length of a sender's claim
)
def deliver_webhook(self: Task, delivery_id: int) -> str:
    """POST one notification to NOTIFY_WEBHOOK_URL; retried with exponential backoff."""
    final_attempt = self.request.retries >= (self.max_retries or 0)
    return notifications.webhook_deliver(delivery_id=delivery_id, final_attempt=final_attempt)


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def resend_stale_webhooks() -> int:
    """Beat: deliveries whose task was lost (broker outage, dead worker) are enqueued again."""
    return notifications.webhooks_resend_stale()
