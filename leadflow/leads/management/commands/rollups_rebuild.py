import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leadflow.leads.rollups import REBUILD_CHUNK, rollups_rebuild


class Command(BaseCommand):
    help = (
        "Recount the dashboard's rollups (the funnel per day of creation, source, campaign and scoring model; "
        "MQL and SQL entries per day; the durations behind the medians; the handoffs' sales outcomes) from the "
        "leads, their stage log and their handoffs, "
        "and replace them in one transaction; then refresh the score histograms. Writes that commit meanwhile "
        "are kept (PostgreSQL). Run it after an upgrade that adds or changes rollups, after changing "
        "TIME_ZONE, or after writing leads or stage changes behind the services' back."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--chunk", type=int, default=REBUILD_CHUNK, help=f"Leads read per query (default {REBUILD_CHUNK})."
        )

    def handle(self, *args: Any, chunk: int, **options: Any) -> None:
        if chunk < 1:
            raise CommandError("--chunk must be a positive number of leads.")
        started = time.monotonic()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 2 or done >= total:
                last[0] = now
                self.stdout.write(f"Counted {done:,} of {total:,} leads ({now - started:.0f} s)")

        rows = rollups_rebuild(chunk=chunk, progress=progress)
        self.stdout.write(f"Rollups rebuilt: {rows:,} rows in {time.monotonic() - started:.1f} s.")
