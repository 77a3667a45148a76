"""The folder of prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), made
empty when the processes that write to it start (gunicorn's master, a Celery worker's main
process): values of a previous run would otherwise be added to this one's. Standard library
only: gunicorn's master imports it before anything of Django."""

import os
import shutil
from pathlib import Path


def multiprocess_dir_reset() -> None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    path = Path(folder)
    if path.exists():
        for child in path.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)


def multiprocess_dir_ensure() -> None:
    """The folder exists before the first value is written (settings.py calls it: any process
    of the app, a `manage.py migrate` before gunicorn's start included, may count)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
