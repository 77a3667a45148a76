"""Import and export of leads as CSV: used by the management commands and, later,
by the web UI.

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

from leadflow.leads.models import LEAD_IDENTITY_FIELDS, LEAD_PROFILE_FIELDS, Lead, Source
from leadflow.leads.scores import leads_annotate_scores
from leadflow.leads.services import leads_resolve, request_scoring_after_commit
from leadflow.leads.validation import PROFILE_TEXT_FIELDS, Errors, LeadInput, validate_lead

IMPORT_CHUNK_SIZE = 500
EXPORT_CHUNK_SIZE = 2000
TRAIT_PREFIX = "trait:"

# Columns a CSV row may set on a lead; any other column is a trait.
IMPORT_COLUMNS = (*LEAD_IDENTITY_FIELDS, *PROFILE_TEXT_FIELDS, "company_size")

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


class CsvImportError(Exception):
    """The file as a whole cannot be imported; the message says what to fix."""


@dataclass(frozen=True)
class CsvLayout:
    """How the header's columns map onto a lead: a profile field, a trait, or ignored."""

    width: int  # columns in the header
    fields: dict[int, str]  # column index -> lead field
    traits: dict[int, str]  # column index -> trait name
    ignored: list[str]


@dataclass(frozen=True)
class RejectedRow:
    line: int
    errors: Errors


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    lead_ids: list[int] = field(default_factory=list)


def csv_layout(header: Sequence[str]) -> CsvLayout:
    """Map a header onto lead fields and traits; raises CsvImportError when it cannot identify leads."""
    fields: dict[int, str] = {}
    traits: dict[int, str] = {}
    ignored: list[str] = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(header):
        name = raw.strip()
        if not name:
            ignored.append(f"(column {index + 1}, no header)")
            continue
        if name.lower().startswith(TRAIT_PREFIX):
            target, kind = name[len(TRAIT_PREFIX) :].strip(), "trait"
            if not target:
                raise CsvImportError(f"Column {index + 1} is named {name!r}: write the trait's name after 'trait:'.")
        elif name.lower() in IMPORT_COLUMNS:
            target, kind = name.lower(), "field"
        elif name.lower() in COMPUTED_COLUMNS:
            ignored.append(name)
            continue
        else:
            target, kind = name, "trait"
        key = f"{kind}:{target}"
        if key in seen:
            raise CsvImportError(
                f"Columns {seen[key]!r} and {name!r} both set the {kind} {target!r}: remove or rename one of them."
            )
        seen[key] = name
        if kind == "field":
            fields[index] = target
        else:
            traits[index] = target
    if "email" not in fields.values() and "external_id" not in fields.values():
        raise CsvImportError(
            "The header has neither an 'email' nor an 'external_id' column, so no row can be matched to a lead. "
            f"Add one of them to the first line of the file (found: {', '.join(h for h in header if h) or 'nothing'})."
        )
    return CsvLayout(width=len(header), fields=fields, traits=traits, ignored=ignored)


def read_lead_csv(file: TextIO) -> tuple[CsvLayout, Iterator[tuple[int, list[str]]]]:
    """Read the header of a CSV file and return its layout and an iterator of
    ``(line number, cells)``; the header is line 1 and blank lines are skipped.

    Open the file with ``encoding="utf-8-sig", newline=""`` so a byte-order mark and
    line breaks inside quoted cells are handled.
    """
    reader = csv.reader(file)
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as error:
        raise CsvImportError(f"Cannot read the header line: {error}. Save the file as UTF-8 CSV.") from None
    if header is None:
        raise CsvImportError("The file is empty: the first line must be a header such as 'email,name,company'.")
    layout = csv_layout(header)

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

    return layout, rows()


def lead_row_parse(layout: CsvLayout, cells: Sequence[str]) -> tuple[LeadInput | None, Errors]:
    """Validate one CSV row as a lead; empty cells are left out (they change nothing)."""
    errors: Errors = {}
    data: dict[str, Any] = {}
    traits: dict[str, str] = {}
    if len(cells) > layout.width:
        errors["non_field_errors"] = [
            f"Has {len(cells)} cells but the header has {layout.width} columns: quote cells that contain commas."
        ]
    for index, name in layout.fields.items():
        value = cells[index].strip() if index < len(cells) else ""
        if not value:
            continue
        if name == "company_size":
            try:
                data[name] = int(value)
            except ValueError:
                errors[name] = [f"{value!r} is not a whole number of employees: write e.g. 250."]
        else:
            data[name] = value
    for index, name in layout.traits.items():
        value = cells[index].strip() if index < len(cells) else ""
        if value:
            traits[name] = value
    if traits:
        data["traits"] = traits
    lead, lead_errors = validate_lead(data)
    errors = {**lead_errors, **errors}
    if errors:
        return None, errors
    return lead, {}


def leads_import(
    *,
    source: Source,
    layout: CsvLayout,
    rows: Iterable[tuple[int, Sequence[str]]],
    dry_run: bool = False,
    chunk_size: int = IMPORT_CHUNK_SIZE,
    on_row: Callable[[int], None] | None = None,
) -> ImportResult:
    """Upsert the leads of CSV rows through ``leads_resolve``, a transaction per chunk.

    Bad rows are reported with their line number, never fatal. A dry run does all
    the work (so its counts are exact) inside one transaction and rolls it back.
    Every lead touched is flagged for rescoring and scored after commit.
    """
    result = ImportResult()
    if dry_run:
        with transaction.atomic():
            _import_chunks(source=source, layout=layout, rows=rows, chunk_size=chunk_size, on_row=on_row, into=result)
            transaction.set_rollback(True)
        result.lead_ids = []
    else:
        _import_chunks(source=source, layout=layout, rows=rows, chunk_size=chunk_size, on_row=on_row, into=result)
    return result


def _import_chunks(
    *,
    source: Source,
    layout: CsvLayout,
    rows: Iterable[tuple[int, Sequence[str]]],
    chunk_size: int,
    on_row: Callable[[int], None] | None,
    into: ImportResult,
) -> None:
    chunk: list[tuple[int, LeadInput]] = []
    counted: set[int] = set()  # leads created by this import, counted once
    try:
        for line, cells in rows:
            lead, errors = lead_row_parse(layout, cells)
            if lead is None:
                into.rejected.append(RejectedRow(line=line, errors=errors))
            else:
                chunk.append((line, lead))
            if on_row:
                on_row(line)
            if len(chunk) >= chunk_size:
                _import_chunk(source=source, chunk=chunk, counted=counted, into=into)
                chunk = []
    finally:
        # On a file that breaks half-way, every row read before the break is still imported.
        if chunk:
            _import_chunk(source=source, chunk=chunk, counted=counted, into=into)
        into.rejected.sort(key=lambda row: row.line)


def _import_chunk(*, source: Source, chunk: list[tuple[int, LeadInput]], counted: set[int], into: ImportResult) -> None:
    with transaction.atomic():
        resolved = leads_resolve(source=source, inputs=[lead for _, lead in chunk])
        lead_ids: list[int] = []
        for position, (line, _) in enumerate(chunk):
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
