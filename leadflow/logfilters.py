"""Log filters the settings' ``LOGGING`` puts on Django's loggers.

``RefusalWithoutTraceback``: Django logs a refused request (``PermissionDenied``, a 403)
on ``django.request`` with the exception's traceback. A refusal is an answer, not a
fault: the line ("Forbidden (Permission denied): /rules/") says all there is to say,
and a traceback through the role decorator only buries the real errors around it.
"""

import logging

from django.core.exceptions import PermissionDenied


class RefusalWithoutTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PermissionDenied):
            record.exc_info = None
            record.exc_text = None
        return True
