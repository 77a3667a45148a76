import csv
import os
from collections.abc import Iterable
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leadflow.leads.importexport import EXPORT_COLUMNS, lead_export_queryset, lead_export_rows
from leadflow.leads.models import Source, Stage
from leadflow.leads.scores import UnknownModel
from leadflow.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Export leads as CSV (UTF-8, a header line then one row per lead, streamed from the database). "
        f"Columns: {', '.join(EXPORT_COLUMNS)}. Text cells a spreadsheet would run as a formula (starting "
        "with = + - @, tab or carriage return) are prefixed with ' so they show as plain text."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv", help="Path of the file to write (replaced if it exists), or - for standard output.")
        parser.add_argument(
            "--stage",
            action="append",
            choices=Stage.values,
            metavar="STAGE",
            help=f"Only leads in this stage; repeat for several: --stage mql --stage sql ({', '.join(Stage.values)}).",
        )
        parser.add_argument("--source", metavar="SLUG", help="Only leads of the source with this slug, e.g. website.")
        parser.add_argument(
            "--model",
            metavar="SLUG",
            help="The scoring model whose score, fit, behaviour and grade are exported (default: the first model).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stages: list[str] | None = options["stage"]
        for stage in stages or []:
            if stage not in Stage.values:  # call_command(stage=[...]) bypasses argparse's choices
                raise CommandError(f"Unknown stage {stage!r}: use one of {', '.join(Stage.values)}.")
        source = None
        if options["source"]:
            source = Source.objects.filter(slug=options["source"]).first()
            if source is None:
                known = ", ".join(Source.objects.values_list("slug", flat=True)) or "none yet"
                raise CommandError(f"There is no source with slug {options['source']!r}. Known slugs: {known}.")

        try:
            leads = lead_export_queryset(stages=stages, source=source, model=options["model"])
        except UnknownModel as error:
            raise CommandError(str(error)) from None
        path = options["csv"]
        if path == "-":
            out = cast(TextIO, self.stdout._out)
            try:
                written = self._export(out, leads)
            except BrokenPipeError:  # e.g. `export_leads - | head`: the reader has had enough
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
                return
            # The CSV owns standard output: the summary goes to standard error.
            self.stderr.write(self.style.SUCCESS(f"Exported {written} leads to standard output."))
            return
        try:
            with open(path, "w", encoding="utf-8", newline="") as file:
                written = self._export(file, leads)
        except OSError as error:
            raise CommandError(
                f"Cannot write {path}: {error.strerror}. Check that the folder exists and is writable."
            ) from None
        self.stdout.write(self.style.SUCCESS(f"Exported {written} leads to {path}."))

    def _export(self, file: TextIO, leads: Any) -> int:
        with progress_bar(self.stderr, total=leads.count(), unit="lead", desc="Exporting") as bar:
            return _write_csv(file, lead_export_rows(leads), on_row=lambda: bar.update(1))


def _write_csv(file: TextIO, rows: Iterable[list[str]], *, on_row: Any) -> int:
    writer = csv.writer(file)
    writer.writerow(EXPORT_COLUMNS)
    written = 0
    for row in rows:
        writer.writerow(row)
        written += 1
        on_row()
    return written
