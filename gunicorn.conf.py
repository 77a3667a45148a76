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

# A worker silent this long is killed (its request answers 502). gunicorn's default, 30 s, is
# what the what-if preview of a draft takes at 1M leads (bench/RESULTS.md, "What-if preview").
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))


# /metrics adds up every worker's counters when PROMETHEUS_MULTIPROC_DIR is set (prometheus_client's
# multiprocess mode, docker-compose.yml sets it): the folder starts empty (a previous run's files
# would count twice) and a worker that exits is marked dead.
def on_starting(server: object) -> None:
    from leadflow.metrics_files import multiprocess_dir_reset

    multiprocess_dir_reset()


def child_exit(server: object, worker: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
