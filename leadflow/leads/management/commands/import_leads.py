import codecs
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.text import slugify

from leadflow.leads.importexport import csv_layout_mapped, leads_import, read_csv_header
from leadflow.leads.importmap import (
    IMPORT_COLUMNS,
    NATIVE,
    PRESETS,
    TARGETS,
    TRAIT_PREFIX,
    CsvImportError,
    csv_delimiter,
    preset_detect,
    preset_targets,
    targets_override,
)
from leadflow.leads.imports import preset_label
from leadflow.leads.services import source_get_or_create
from leadflow.progress import progress_bar

# Rejected rows listed in full; past this a count is enough to know the file needs fixing.
MAX_LISTED_REJECTIONS = 100


class Command(BaseCommand):
    help = (
        "Create or update leads from a CSV file with a header line. Rows are matched to existing leads by "
        "email or external_id (one of the two columns is required). Profile columns: "
        f"{', '.join(IMPORT_COLUMNS)}; any other column (or '{TRAIT_PREFIX}NAME') is stored as a trait, merged "
        "into the lead's traits. Empty cells change nothing. Bad rows are reported with their line number "
        "and skipped; the others are imported. A contacts export of HubSpot, Salesforce / Account Engagement or "
        "Mautic is recognised by its header (or name it with --preset); --map changes a column's target."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv", help="Path of the CSV file (UTF-8, with or without byte-order mark).")
        parser.add_argument(
            "--source",
            default="CSV import",
            help="Name or slug of the source new leads are attributed to; created if needed (default: 'CSV import').",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Validate and count, then roll back: nothing is written."
        )
        parser.add_argument(
            "--preset",
            choices=["auto", NATIVE, *PRESETS],
            default="auto",
            help="Which tool's export the file is (default: detected from the header; "
            f"'{NATIVE}' reads LeadFlow's own column names).",
        )
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="COLUMN=TARGET",
            help=f"Map a column (by its header) to one of {', '.join(TARGETS)} or {TRAIT_PREFIX}NAME; repeatable, "
            "e.g. --map 'Company Name=company' --map 'Fax=ignore'.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["csv"])
        dry_run: bool = options["dry_run"]
        if not slugify(options["source"]):
            raise CommandError("--source needs a name with a letter or digit, e.g. --source 'Trade show 2026'.")
        total_lines = _check_file(path)
        with path.open(encoding="utf-8-sig", newline="") as file:
            delimiter = csv_delimiter(file.read(65536))
            file.seek(0)
            try:
                header, rows = read_csv_header(file, delimiter=delimiter)
                preset = preset_detect(header) if options["preset"] == "auto" else options["preset"]
                targets = targets_override(header, preset_targets(preset, header), options["map"])
                layout = csv_layout_mapped(header, targets)
            except CsvImportError as error:
                raise CommandError(f"{path}: {error}") from None
            if preset != NATIVE or options["map"]:
                self.stdout.write(f"Reading the file as: {preset_label(preset)}.")
                for name, target in zip(header, targets, strict=True):
                    self.stdout.write(f"  {name or '(no header)'} → {target}")
            if layout.ignored:
                what = "LeadFlow computes itself" if preset == NATIVE and not options["map"] else "mapped to ignore"
                self.stdout.write(f"Ignoring columns {what}: {', '.join(layout.ignored)}.")
            # A dry run must not even leave the source behind.
            with transaction.atomic() if dry_run else nullcontext():
                source, _created = source_get_or_create(name=options["source"])
                with progress_bar(self.stderr, total=total_lines, initial=1, unit="line", desc="Importing") as bar:

                    def advance(line: int) -> None:
                        bar.update(max(0, line - bar.n))

                    try:
                        result = leads_import(
                            source=source,
                            layout=layout,
                            rows=rows,
                            dry_run=dry_run,
                            on_row=advance,
                            origin=f"{preset_label(preset)} {path.name!r}",
                        )
                    except CsvImportError as error:
                        done = "nothing was written (dry run)" if dry_run else "the rows before it were imported"
                        raise CommandError(f"{path}: {error} Fix the file and run again; {done}.") from None
                if dry_run:
                    transaction.set_rollback(True)

        for row in result.rejected[:MAX_LISTED_REJECTIONS]:
            self.stdout.write(f"Line {row.line}: {json.dumps(row.errors, ensure_ascii=False)}")
        if len(result.rejected) > MAX_LISTED_REJECTIONS:
            self.stdout.write(f"… and {len(result.rejected) - MAX_LISTED_REJECTIONS} more rejected rows.")
        counts = f"{result.created} created, {result.updated} updated, {len(result.rejected)} rejected"
        if layout.stage is not None:
            counts += f", {result.stages_changed} moved to their imported stage"
        if dry_run:
            summary = f"Dry run, nothing written. Would be: {counts} (source {source.name!r})."
        else:
            summary = f"Imported into source {source.name!r}: {counts}."
        self.stdout.write((self.style.WARNING if result.rejected else self.style.SUCCESS)(summary))
        if result.rejected:
            self.stdout.write("Fix the rejected lines and import the file again: leads already imported are updated.")


def _check_file(path: Path) -> int:
    """Check the file is readable UTF-8 before importing anything; returns its number of lines."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    last = b"\n"
    try:
        with path.open("rb") as raw:
            while block := raw.read(1 << 20):
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as error:
                    line = lines + block[: max(0, error.start)].count(b"\n") + 1
                    raise CommandError(
                        f"{path} is not UTF-8 (line {line}). Save it as 'CSV UTF-8' in your spreadsheet and retry."
                    ) from None
                lines += block.count(b"\n")
                last = block[-1:]
            decoder.decode(b"", final=True)
    except OSError as error:
        raise CommandError(f"Cannot read {path}: {error.strerror}. Check the path and its permissions.") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 (it ends mid-character). Save it as 'CSV UTF-8' and retry.") from None
    return lines + (last != b"\n")
