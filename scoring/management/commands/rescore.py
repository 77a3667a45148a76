"""Rescore every lead with a model's published ruleset (every model's), in this process, with progress."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leadflow.progress import progress_bar
from scoring import selectors, services
from scoring.models import RescoreRun, RescoreState, RuleSet


class Command(BaseCommand):
    help = (
        "Rescore every lead with each scoring model's published ruleset, or one model's with --model "
        "(the bulk engine: set-based SQL on PostgreSQL). Publishing a ruleset already does this in the "
        "background; use this after a restore, an import with scoring disabled, or to refresh decay by hand. "
        "With --dirty, only leads flagged needs_rescore (under every model)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dirty",
            action="store_true",
            help="Only rescore leads still flagged needs_rescore (what the sweeper does).",
        )
        parser.add_argument("--model", metavar="SLUG", help="Only this scoring model (default: every model).")

    def handle(self, *args: Any, **options: Any) -> None:
        rulesets = selectors.published_rulesets()
        if options["model"]:
            if selectors.model_get(slug=options["model"]) is None:
                known = ", ".join(selectors.model_list().values_list("slug", flat=True))
                raise CommandError(f"No scoring model {options['model']!r}; the models are: {known}.")
            rulesets = [ruleset for ruleset in rulesets if ruleset.model.slug == options["model"]]
        if not rulesets:
            raise CommandError("No published ruleset: publish one first (API POST /api/v1/rulesets/<version>/publish).")
        if options["dirty"]:
            count = services.leads_sweep_dirty(older_than_seconds=0, limit=10**9)
            self.stdout.write(self.style.SUCCESS(f"Rescored {count} flagged leads under every published model."))
            return
        for ruleset in rulesets:
            self._rescore(ruleset)

    def _rescore(self, ruleset: RuleSet) -> None:
        run = RescoreRun.objects.create(ruleset=ruleset, reason="command", total=0)
        label = f"{ruleset.model.slug} v{ruleset.version}"
        with progress_bar(self.stderr, desc=f"Rescoring with {label}", unit="lead") as bar:

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
                f"Rescored {run.total} leads with {label} in {seconds:.1f} s; {run.changed_stages} stage changes."
            )
        )
