"""Keeping personal data out of the logs in production (``DEBUG=0``).

- ``RedactingFormatter`` wraps a log formatter and replaces every e-mail address in the
  formatted line (message, arguments and traceback alike) with ``[email]``. Settings
  put it on the console handler, and ``leadflow.celery`` on the worker's handlers.
- ``SummaryConsoleEmailBackend`` stands in for Django's console backend in production:
  the console backend writes each message whole (recipients, subject, body: lead names
  and notes) to stdout, which is the worker's log. This one writes one line saying how
  many messages were not sent, and nothing of their content.
"""

import logging
import re
from collections.abc import Sequence
from typing import Any

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

# Good enough to find addresses in free text: local part, @, a dotted domain.
EMAIL_IN_TEXT = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
REDACTED = "[email]"

logger = logging.getLogger("leadflow.mail")


def redact_emails(text: str) -> str:
    return EMAIL_IN_TEXT.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """A formatter whose lines never hold an e-mail address. ``inner``: the formatter to
    wrap (a handler's own); without one, ``fmt`` as a plain Formatter."""

    def __init__(self, fmt: str | None = None, *args: Any, inner: logging.Formatter | None = None, **kwargs: Any):
        super().__init__(fmt, *args, **kwargs)
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record) if self.inner is not None else super().format(record)
        return redact_emails(text)


class SummaryConsoleEmailBackend(BaseEmailBackend):
    """Sends nothing; logs how many messages and recipients, never who or what."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        messages = list(email_messages)
        if messages:
            recipients = sum(len(message.recipients()) for message in messages)
            logger.info(
                "E-mail not sent (no SMTP server configured, EMAIL_BACKEND is the console): %d message(s) "
                "to %d recipient(s); contents withheld from the log.",
                len(messages),
                recipients,
            )
        return len(messages)
