"""gunicorn's configuration for LeadFlow. gunicorn reads it from the folder it starts in, so
every `gunicorn leadflow.wsgi` run in the project (the image's CMD, docker-compose's web
service) gets it, whatever its command-line flags.

A gunicorn worker serves request after request on the same thread, so it keeps its database
connection between requests (60 s unless DB_CONN_MAX_AGE says otherwise) instead of opening
one per request. settings.py defaults DB_CONN_MAX_AGE to 0 for the processes that start a
thread per request (runserver), where kept connections would pile up.
"""

import os

# Before the workers load the settings: the environment is what settings.py reads.
os.environ.setdefault("DB_CONN_MAX_AGE", "60")
