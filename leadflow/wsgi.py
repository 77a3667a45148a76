import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadflow.settings")
application = get_wsgi_application()
# Import every view now, when the worker boots, rather than in its first request.
get_resolver().url_patterns  # noqa: B018

# Garbage collection: an ingest request allocates hundreds of thousands of objects
# that reference counting frees, but at CPython's default thresholds the cyclic
# collector ran about thirty times per request and re-scanned the application's
# long-lived objects: a fifth of a worker's CPU (bench/RESULTS.md). Freeze what
# the boot created and collect young objects every 50,000 allocations instead of 700.
gc.collect()
gc.freeze()
gc.set_threshold(50_000, 10, 10)
