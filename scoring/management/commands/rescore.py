"""Rescore every lead with the published ruleset, in this process, with progress."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leadflow.progress import progress_bar
from scoring import selectors, services
from scoring.models import RescoreRun, RescoreState


class Command(BaseCommand):
    help = (
        "Rescore every lead with the published ruleset (the bulk engine: set-based SQL on PostgreSQL). "
        "Publishing a ruleset already does this in the background; use this after a restore, an import "
        "with scoring disabled, or to refresh decay by hand. With --dirty, only leads flagged needs_rescore."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dirty",
            action="store_true",
            help="Only rescore leads still flagged needs_rescore (what the sweeper does).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ruleset = selectors.published_ruleset()
        if ruleset is None:
            raise CommandError("No published ruleset: publish one first (API POST /api/v1/rulesets/<version>/publish).")
        if options["dirty"]:
            count = services.leads_sweep_dirty(older_than_seconds=0, limit=10**9)
            self.stdout.write(self.style.SUCCESS(f"Rescored {count} flagged leads with ruleset v{ruleset.version}."))
            return
        run = RescoreRun.objects.create(ruleset=ruleset, reason="command", total=0)
        with progress_bar(self.stderr, desc=f"Rescoring with v{ruleset.version}", unit="lead") as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            run = services.rescore_run_execute(run=run, progress=progress)
        if run.state != RescoreState.DONE:
            raise CommandError(f"Rescore run {run.pk} ended {run.state}: {run.error}")
        seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else 0
        self.stdout.write(
            self.style.SUCCESS(
                f"Rescored {run.total} leads with ruleset v{ruleset.version} in {seconds:.1f} s; "
                f"{run.changed_stages} stage changes."
            )
        )
