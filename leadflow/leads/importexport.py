"""Import and export of leads as CSV: used by the management commands and the import
pages (``leadflow.leads.imports``); what a column maps to is ``leadflow.leads.importmap``'s.

Import goes through the same identity resolution as the ingest API
(``leads_resolve``), so a CSV row upserts exactly like a lead sent by a source.
Export streams rows and neutralises cells a spreadsheet would run as a formula.
"""

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TextIO

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from leadflow.leads.importmap import (
    FIRST_NAME,
    IGNORE,
    IMPORT_COLUMNS,
    LAST_NAME,
    NATIVE,
    SIZE_ERROR,
    STAGE,
    TRAIT,
    TRAIT_PREFIX,
    CsvImportError,
    company_size_parse,
    preset_targets,
    stage_parse,
    target_check,
)
from leadflow.leads.lifecycle import leads_stage_import
from leadflow.leads.models import LEAD_IDENTITY_FIELDS, LEAD_PROFILE_FIELDS, Lead, Source
from leadflow.leads.scores import leads_annotate_scores
from leadflow.leads.services import leads_resolve, request_scoring_after_commit
from leadflow.leads.validation import Errors, LeadInput, validate_lead

IMPORT_CHUNK_SIZE = 500
EXPORT_CHUNK_SIZE = 2000

EXPORT_COLUMNS = (
    "public_id",
    *LEAD_IDENTITY_FIELDS,
    *LEAD_PROFILE_FIELDS,
    "source",
    "stage",
    "score",
    "fit_score",
    "behaviour_score",
    "grade",
    "last_activity_at",
    "created_at",
    "mql_at",
    "sql_at",
)
# Columns of our own export that LeadFlow computes: importing an export back must
# not turn them into traits (use ``trait:score`` to really store such a trait).
COMPUTED_COLUMNS = frozenset(EXPORT_COLUMNS) - set(IMPORT_COLUMNS)

# A spreadsheet evaluates a cell starting with one of these as a formula
# (OWASP "CSV injection"); tab and carriage return can hide such a prefix.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(text: str) -> str:
    """Prefix a cell a spreadsheet would evaluate with ``'`` so it is shown as text."""
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def csv_cell(value: Any) -> str:
    """One exported cell. Text is neutralised; numbers and dates we format ourselves are
    left alone, so a negative score stays a number in the spreadsheet."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, bool | int | Decimal):
        return str(value)
    return neutralise_formula(str(value))


# --- Import ------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvLayout:
    """How the header's columns map onto a lead: a profile field, the first or last name,
    the lifecycle stage, a trait, or ignored (``leadflow.leads.importmap``)."""

    width: int  # columns in the header
    fields: dict[int, str]  # column index -> lead field
    traits: dict[int, str]  # column index -> trait name
    ignored: list[str]
    first_name: int | None = None
    last_name: int | None = None
    stage: int | None = None
    header: tuple[str, ...] = ()


@dataclass(frozen=True)
class RejectedRow:
    line: int
    errors: Errors


@dataclass(frozen=True)
class ParsedRow:
    """A row as it will be stored: the lead, and the stage its old tool had it at."""

    lead: LeadInput
    stage: str | None = None
    stage_value: str = ""  # the cell, for the StageChange's reason


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    stages_changed: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    lead_ids: list[int] = field(default_factory=list)


def csv_layout(header: Sequence[str]) -> CsvLayout:
    """LeadFlow's own columns: a field by its name, ``trait:NAME``, anything else a trait."""
    return csv_layout_mapped(header, preset_targets(NATIVE, header))


def csv_layout_mapped(header: Sequence[str], targets: Sequence[str]) -> CsvLayout:
    """The layout of ``header`` with a target per column (``leadflow.leads.importmap``);
    raises CsvImportError (with the column to change) when it cannot identify leads or two
    columns set one field or trait."""
    if len(targets) != len(header):
        raise CsvImportError(f"Give a target to each of the {len(header)} columns (got {len(targets)}).")
    fields: dict[int, str] = {}
    traits: dict[int, str] = {}
    ignored: list[str] = []
    special: dict[str, int] = {}
    seen: dict[str, str] = {}
    for index, (raw, target) in enumerate(zip(header, targets, strict=True)):
        name = raw.strip()
        target_check(target)
        if target == IGNORE:
            ignored.append(name or f"(column {index + 1}, no header)")
            continue
        if target == TRAIT or target.lower().startswith(TRAIT_PREFIX):
            trait = target[len(TRAIT_PREFIX) :].strip() if target != TRAIT else name
            if target == TRAIT and name.lower().startswith(TRAIT_PREFIX):
                trait = name[len(TRAIT_PREFIX) :].strip()
            if not trait:
                raise CsvImportError(
                    f"Column {index + 1} is named {name!r}: write the trait's name after 'trait:'.", index
                )
            kind, key = "trait", trait
        else:
            kind, key = "field", target
        seen_key = f"{kind}:{key}"
        if seen_key in seen:
            raise CsvImportError(
                f"Columns {seen[seen_key]!r} and {name!r} both set the {kind} {key!r}: remove or rename one of them.",
                index,
            )
        seen[seen_key] = name
        if kind == "trait":
            traits[index] = key
        elif key in (FIRST_NAME, LAST_NAME, STAGE):
            special[key] = index
        else:
            fields[index] = key
    if "email" not in fields.values() and "external_id" not in fields.values():
        raise CsvImportError(
            "The header has neither an 'email' nor an 'external_id' column, so no row can be matched to a lead. "
            f"Add one of them to the first line of the file (found: {', '.join(h for h in header if h) or 'nothing'})."
        )
    return CsvLayout(
        width=len(header),
        fields=fields,
        traits=traits,
        ignored=ignored,
        first_name=special.get(FIRST_NAME),
        last_name=special.get(LAST_NAME),
        stage=special.get(STAGE),
        header=tuple(header),
    )


def read_csv_header(file: TextIO, *, delimiter: str = ",") -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Read the header of a CSV file; returns it and an iterator of ``(line number, cells)``
    of the rows after it, blank lines skipped.

    Open the file with ``encoding="utf-8-sig", newline=""`` so a byte-order mark and
    line breaks inside quoted cells are handled.
    """
    reader = csv.reader(file, delimiter=delimiter)
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as error:
        raise CsvImportError(f"Cannot read the header line: {error}. Save the file as UTF-8 CSV.") from None
    if header is None:
        raise CsvImportError("The file is empty: the first line must be a header such as 'email,name,company'.")

    def rows() -> Iterator[tuple[int, list[str]]]:
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as error:
                raise CsvImportError(
                    f"Cannot read the file after line {reader.line_num}: {error}. Save the file as UTF-8 CSV."
                ) from None
            line, start = start, reader.line_num + 1
            if any(cell.strip() for cell in cells):
                yield line, cells

    return header, rows()


def read_lead_csv(file: TextIO) -> tuple[CsvLayout, Iterator[tuple[int, list[str]]]]:
    """``read_csv_header`` with LeadFlow's own columns (``csv_layout``)."""
    header, rows = read_csv_header(file)
    return csv_layout(header), rows


def lead_row_parse(layout: CsvLayout, cells: Sequence[str]) -> tuple[ParsedRow | None, Errors]:
    """Validate one CSV row as a lead; empty cells are left out (they change nothing)."""
    errors: Errors = {}
    data: dict[str, Any] = {}
    traits: dict[str, str] = {}

    def cell(index: int | None) -> str:
        return cells[index].strip() if index is not None and index < len(cells) else ""

    if len(cells) > layout.width:
        errors["non_field_errors"] = [
            f"Has {len(cells)} cells but the header has {layout.width} columns: quote cells that contain commas."
        ]
    for index, name in layout.fields.items():
        value = cell(index)
        if not value:
            continue
        if name == "company_size":
            size = company_size_parse(value)
            if size is None:
                errors[name] = [SIZE_ERROR.format(value=value)]
            else:
                data[name] = size
        else:
            data[name] = value
    full_name = " ".join(part for part in (cell(layout.first_name), cell(layout.last_name)) if part)
    if "name" not in data and full_name:
        data["name"] = full_name
    for index, name in layout.traits.items():
        if value := cell(index):
            traits[name] = value
    if traits:
        data["traits"] = traits
    lead, lead_errors = validate_lead(data)
    errors = {**lead_errors, **errors}
    if errors or lead is None:
        return None, errors
    stage_value = cell(layout.stage)
    return ParsedRow(lead=lead, stage=stage_parse(stage_value) if stage_value else None, stage_value=stage_value), {}


def leads_import(
    *,
    source: Source,
    layout: CsvLayout,
    rows: Iterable[tuple[int, Sequence[str]]],
    dry_run: bool = False,
    chunk_size: int = IMPORT_CHUNK_SIZE,
    on_row: Callable[[int], None] | None = None,
    origin: str = "a CSV file",
    actor: Any = None,
) -> ImportResult:
    """Upsert the leads of CSV rows through ``leads_resolve``, a transaction per chunk.

    Bad rows are reported with their line number, never fatal. A dry run does all
    the work (so its counts are exact) inside one transaction and rolls it back.
    Every lead touched is flagged for rescoring and scored after commit; a stage column
    moves leads forward with a StageChange "Imported from ``origin``…"."""
    result = ImportResult()

    def run() -> None:
        _import_chunks(
            source=source,
            layout=layout,
            rows=rows,
            chunk_size=chunk_size,
            on_row=on_row,
            origin=origin,
            actor=actor,
            into=result,
        )

    if dry_run:
        with transaction.atomic():
            run()
            transaction.set_rollback(True)
        result.lead_ids = []
    else:
        run()
    return result


def _import_chunks(
    *,
    source: Source,
    layout: CsvLayout,
    rows: Iterable[tuple[int, Sequence[str]]],
    chunk_size: int,
    on_row: Callable[[int], None] | None,
    origin: str,
    actor: Any,
    into: ImportResult,
) -> None:
    chunk: list[tuple[int, Sequence[str]]] = []
    counted: set[int] = set()  # leads created by this import, counted once
    try:
        for line, cells in rows:
            chunk.append((line, cells))
            if on_row:
                on_row(line)
            if len(chunk) >= chunk_size:
                lead_rows_import(
                    source=source, layout=layout, rows=chunk, origin=origin, actor=actor, counted=counted, into=into
                )
                chunk = []
    finally:
        # On a file that breaks half-way, every row read before the break is still imported.
        if chunk:
            lead_rows_import(
                source=source, layout=layout, rows=chunk, origin=origin, actor=actor, counted=counted, into=into
            )
        into.rejected.sort(key=lambda row: row.line)


def lead_rows_import(
    *,
    source: Source,
    layout: CsvLayout,
    rows: Sequence[tuple[int, Sequence[str]]],
    origin: str,
    actor: Any,
    counted: set[int],
    into: ImportResult,
) -> None:
    """Import one chunk of rows in one transaction (a savepoint in the caller's): parse,
    upsert the valid rows' leads set-based (``leads_resolve``), move the leads a stage
    column says are further along (``leads_stage_import``), and add it all to ``into``.
    ``counted`` holds the leads created so far, so a lead repeated later counts once."""
    parsed: list[tuple[int, ParsedRow]] = []
    for line, cells in rows:
        row, errors = lead_row_parse(layout, cells)
        if row is None:
            into.rejected.append(RejectedRow(line=line, errors=errors))
        else:
            parsed.append((line, row))
    if not parsed:
        return
    column = layout.header[layout.stage] if layout.stage is not None and layout.header else "stage"
    with transaction.atomic():
        resolved = leads_resolve(source=source, inputs=[row.lead for _, row in parsed])
        lead_ids: list[int] = []
        stages: dict[int, tuple[str, str]] = {}
        for position, (line, row) in enumerate(parsed):
            pk = resolved.lead_ids[position]
            if pk is None:
                errors = resolved.errors.get(position, {"non_field_errors": ["Could not resolve the lead."]})
                into.rejected.append(RejectedRow(line=line, errors=errors))
                continue
            if pk in resolved.created and pk not in counted:
                counted.add(pk)
                into.created += 1
            else:
                into.updated += 1
            lead_ids.append(pk)
            if row.stage is not None:  # the file's last word on a lead wins
                stages[pk] = (row.stage, f"Imported from {origin}: {column} was {row.stage_value!r} (line {line}).")
        into.stages_changed += leads_stage_import(stages=stages, actor=actor, at=timezone.now())
        lead_ids = sorted(set(lead_ids))
        into.lead_ids.extend(lead_ids)
        request_scoring_after_commit(lead_ids)


# --- Export ------------------------------------------------------------------------


def lead_export_queryset(
    *, stages: Sequence[str] | None = None, source: Source | None = None, model: str | None = None
) -> QuerySet[Lead]:
    """Leads to export with the scores of ``model`` (a slug; the default model when None;
    raises UnknownModel)."""
    leads = leads_annotate_scores(Lead.objects.filter(erased_at__isnull=True), model=model)
    if stages:
        leads = leads.filter(stage__in=stages)
    if source is not None:
        leads = leads.filter(source=source)
    return leads.order_by("id")


def lead_export_rows(leads: QuerySet[Lead]) -> Iterator[list[str]]:
    """The rows of ``EXPORT_COLUMNS`` for ``leads`` (annotated with a model's scores,
    ``leadflow.leads.scores``), streamed from the database in chunks."""
    values = [name if name != "source" else "source__slug" for name in EXPORT_COLUMNS]
    for row in leads.values_list(*values).iterator(chunk_size=EXPORT_CHUNK_SIZE):
        yield [csv_cell(value) for value in row]
