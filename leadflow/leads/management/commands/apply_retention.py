"""Apply the retention settings now: delete old events (and rescore their leads) and
anonymous visitors. The beat task ``leadflow.leads.tasks.apply_retention`` does it daily."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leadflow.leads.retention import retention_apply


class Command(BaseCommand):
    help = (
        "Delete events that occurred more than RETENTION_EVENTS_MONTHS months ago (their leads are "
        "rescored) and anonymous visitors (no e-mail, no name, never qualified) inactive for "
        "RETENTION_ANONYMOUS_DAYS days. 0 keeps them; --events-months and --anonymous-days override "
        "the settings for this run. --dry-run only counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument(
            "--events-months", type=int, metavar="N", help="Keep events of the last N months (default: the setting)."
        )
        parser.add_argument(
            "--anonymous-days",
            type=int,
            metavar="M",
            help="Keep anonymous visitors active in the last M days (default: the setting).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("events_months", "anonymous_days"):
            if options[name] is not None and options[name] < 0:
                raise CommandError(f"--{name.replace('_', '-')} must be 0 (keep for ever) or more.")

        def progress(kind: str, count: int) -> None:
            self.stdout.write(f"  deleted {count} {kind} so far")

        result = retention_apply(
            dry_run=options["dry_run"],
            events_months=options["events_months"],
            anonymous_days=options["anonymous_days"],
            progress=progress,
        )
        verb = "Would delete" if result.dry_run else "Deleted"
        if result.events_cutoff is None:
            self.stdout.write("Events: kept (RETENTION_EVENTS_MONTHS is 0).")
        else:
            self.stdout.write(
                f"{verb} {result.events} events that occurred before {result.events_cutoff:%Y-%m-%d %H:%M} UTC; "
                f"{result.rescored_leads} leads {'would be' if result.dry_run else 'are being'} rescored."
            )
        if result.anonymous_cutoff is None:
            self.stdout.write("Anonymous visitors: kept (RETENTION_ANONYMOUS_DAYS is 0).")
        else:
            self.stdout.write(
                f"{verb} {result.anonymous_leads} anonymous visitors inactive since "
                f"{result.anonymous_cutoff:%Y-%m-%d %H:%M} UTC."
            )
        self.stdout.write(self.style.SUCCESS("Done." if not result.dry_run else "Dry run: nothing was deleted."))
