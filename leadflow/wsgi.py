import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadflow.settings")
application = get_wsgi_application()
# Import every view now, when the worker boots, rather than in its first request.
get_resolver().url_patterns  # noqa: B018
