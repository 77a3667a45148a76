"""Run the periodic tasks in this process, each on its interval: beat for the embedded default."""

import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection
from django.utils import timezone
from django.utils.module_loading import import_string


def _every(interval: timedelta) -> str:
    """``1 day``, ``10 min``, ``30 s``: an interval as people write it."""
    seconds = int(interval.total_seconds())
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''}"
    return f"{seconds} s"


class Command(BaseCommand):
    help = (
        "Run the periodic tasks of CELERY_BEAT_SCHEDULE in this process, each on its interval: score leads "
        "still flagged, expire claims, flag overdue handoffs, resend stale webhooks, refresh decay. "
        "`make run` starts it when no CELERY_BROKER_URL is set (tasks run in-process); with a broker, run "
        "`celery beat` instead. Each task first runs one interval after the start. --once runs each task "
        "once, now, and exits (for cron or a check)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run each task once, now, and exit.")
        parser.add_argument(
            "--only",
            action="append",
            default=[],
            metavar="NAME",
            help="Run only this schedule entry (repeatable), e.g. --only sweep-dirty-leads.",
        )
        parser.add_argument(
            "--tick", type=float, default=5.0, help="Seconds between checks of what is due (default 5)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        entries = self._entries(options["only"])
        if options["tick"] <= 0:
            raise CommandError("--tick must be a positive number of seconds.")
        if options["once"]:
            for name, task, _interval in entries:
                self._run(name, task, always_report=True)
            return
        start = timezone.now()
        due = {name: start + interval for name, _task, interval in entries}
        listing = ", ".join(f"{name} every {_every(interval)}" for name, _task, interval in entries)
        self.stdout.write(f"Running the periodic tasks in this process: {listing}. Ctrl-C stops.")
        try:
            while True:
                time.sleep(options["tick"])
                for name, task, interval in entries:
                    if timezone.now() >= due[name]:
                        self._run(name, task, always_report=options["verbosity"] >= 2)
                        due[name] = timezone.now() + interval
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")

    def _entries(self, only: list[str]) -> list[tuple[str, Any, timedelta]]:
        schedule: dict[str, dict[str, Any]] = settings.CELERY_BEAT_SCHEDULE
        unknown = sorted(set(only) - set(schedule))
        if unknown:
            raise CommandError(f"No schedule entry {', '.join(unknown)}: choose from {', '.join(sorted(schedule))}.")
        entries = []
        for name, entry in schedule.items():
            if only and name not in only:
                continue
            interval = entry["schedule"]
            if not isinstance(interval, timedelta):
                raise CommandError(f"{name}: only fixed intervals (timedelta) can run here, not {interval!r}.")
            entries.append((name, import_string(entry["task"]), interval))
        return entries

    def _run(self, name: str, task: Any, *, always_report: bool) -> None:
        # A long-lived process, like a worker between tasks: a connection the database
        # dropped (a restart) or one past DB_CONN_MAX_AGE is replaced, not reused broken.
        if not connection.in_atomic_block:
            close_old_connections()
        began = time.perf_counter()
        result = task.apply()  # in this process, whatever the broker settings say
        elapsed = (time.perf_counter() - began) * 1000
        stamp = timezone.localtime().strftime("%H:%M:%S")
        if result.failed():
            self.stderr.write(f"{stamp} {name} failed after {elapsed:.0f} ms:\n{result.traceback}")
        elif always_report or result.result:
            self.stdout.write(f"{stamp} {name}: {result.result} ({elapsed:.0f} ms)")
