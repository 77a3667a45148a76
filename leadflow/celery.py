"""Celery application, configured from Django settings (``CELERY_*``)."""

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadflow.settings")

app = Celery("leadflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _no_emails_in_worker_logs(logger: logging.Logger, **kwargs: Any) -> None:
    """The worker's own log handlers (Celery sets them up, not Django's LOGGING) redact
    e-mail addresses in production, as the web's do (``leadflow.logredact``)."""
    from django.conf import settings

    from leadflow.logredact import RedactingFormatter

    if settings.DEBUG:
        return
    for handler in logger.handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(inner=handler.formatter or logging.Formatter()))
