"""Structured logs (structlog, through the standard library's logging).

Every line, ours (``structlog.get_logger``) and every library's (``logging.getLogger``),
goes through one handler whose formatter renders it as JSON (``LOG_FORMAT=json``, the
production default: one object per line, for a log shipper) or as readable text
(``LOG_FORMAT=console``, the default with ``DEBUG=1``). Either way a line carries the
context bound for the request or the task in hand: ``request_id`` (django-structlog's
middleware binds it; ``leadflow.middleware.RequestIdMiddleware`` takes it from
``X-Request-ID`` or makes one), and in a Celery task the ``task_id`` and the
``request_id`` of the request that enqueued it (django-structlog sends the context in the
task's headers).

In production the formatter is wrapped in ``leadflow.logredact.RedactingFormatter``: no
e-mail address reaches a log line, whatever a message or an exception holds.
"""

import logging
from typing import Any

import structlog

LOG_FORMATS = ("json", "console")


def configure_structlog() -> None:
    """structlog's loggers hand their events to the standard library, whose handler renders them."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def formatter(*, log_format: str = "json", redact: bool = True) -> logging.Formatter:
    """The console handler's formatter (settings.LOGGING builds it with ``"()"``)."""
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        # The traceback as text in "exception": never the frames' local variables (personal data).
        rendering = [structlog.processors.format_exc_info, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        rendering = [renderer]
    processor_formatter = structlog.stdlib.ProcessorFormatter(
        # Lines of the standard library's loggers (Django, Celery, ours that use logging).
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *rendering,
        ],
    )
    if not redact:
        return processor_formatter
    from leadflow.logredact import RedactingFormatter

    return RedactingFormatter(inner=processor_formatter)
