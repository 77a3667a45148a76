"""Imports from the tools teams leave, as the import pages run them: upload a CSV export
(``import_job_create``: size limit, encoding and delimiter found, preset detected from the
header), map its columns (``import_job_map``, with ``import_preview`` showing the first
rows as they will be stored), then import it in the background (``import_job_start``,
the task ``leadflow.leads.tasks.import_leads_job`` running ``import_job_execute``).

The rows go through the same code as ``manage.py import_leads`` (``lead_rows_import``:
set-based upserts and stage moves a chunk at a time). A job is resumable: each chunk
commits its leads, its rejected rows and the job's position together, under the job's
lease; the sweep (``import_jobs_resume``) restarts a job left queued, one whose worker
died, or one that failed with starts left.
"""

import csv
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from leadflow.leads.importexport import (
    CsvLayout,
    ImportResult,
    csv_layout_mapped,
    lead_row_parse,
    lead_rows_import,
)
from leadflow.leads.importmap import (
    NATIVE,
    PRESETS,
    CsvImportError,
    csv_decode,
    csv_delimiter,
    preset_detect,
    preset_targets,
)
from leadflow.leads.models import ImportJob, ImportRejection, ImportStatus, rejection_reasons
from leadflow.leads.services import source_get_or_create

logger = logging.getLogger(__name__)

PREVIEW_ROWS = 10


def preset_label(preset: str) -> str:
    return PRESETS[preset].label if preset in PRESETS else "LeadFlow's own columns"


# --- Upload and mapping --------------------------------------------------------------------------


def import_job_create(*, user: Any, filename: str, data: bytes, source_name: str) -> ImportJob:
    """A draft import of an uploaded file: decoded (``csv_decode``: UTF-8, UTF-16 with a
    byte-order mark, Windows-1252, Latin-1), its delimiter sniffed, its header read and the preset
    its header matches pre-filling the mapping. Raises CsvImportError with what to fix."""
    if len(data) > settings.IMPORT_MAX_BYTES:
        raise CsvImportError(
            f"The file is {filesizeformat(len(data))}; the limit is {filesizeformat(settings.IMPORT_MAX_BYTES)}. "
            "Split it into smaller files, or import it with `manage.py import_leads`."
        )
    text, encoding = csv_decode(data)
    if "\x00" in text:
        raise CsvImportError(
            "This is not a CSV text file (it holds binary data): export the contacts as CSV and upload that file."
        )
    delimiter = csv_delimiter(text)
    header, total = _header_and_count(text, delimiter)
    if not source_name.strip():
        source_name = "CSV import"
    preset = preset_detect(header)
    with transaction.atomic():
        source, _created = source_get_or_create(name=source_name)
        return ImportJob.objects.create(
            created_by=user if getattr(user, "is_authenticated", False) else None,
            filename=filename[:255],
            source=source,
            preset=preset,
            encoding=encoding,
            delimiter=delimiter,
            content=text,
            header=header,
            mapping=preset_targets(preset, header),
            total_rows=total,
        )


def _header_and_count(text: str, delimiter: str) -> tuple[list[str], int]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None or not any(name.strip() for name in header):
            raise CsvImportError(
                "The file is empty or its first line is: the first line must be the header of the export."
            )
        total = sum(1 for _ in reader)
    except csv.Error as error:
        raise CsvImportError(
            f"Cannot read the file at line {reader.line_num}: {error}. Export it again as CSV."
        ) from None
    return [name.replace("\ufeff", "").strip() for name in header], total


def import_job_map(*, job: ImportJob, mapping: Sequence[str]) -> CsvLayout:
    """Set a draft import's mapping (a target per column); raises CsvImportError (with the
    column to change) for a mapping that cannot import."""
    if job.status != ImportStatus.DRAFT:
        raise CsvImportError("This import has started: its mapping can no longer change.")
    layout = csv_layout_mapped(job.header, list(mapping))
    job.mapping = list(mapping)
    job.save(update_fields=["mapping"])
    return layout


def import_job_preset(*, job: ImportJob, preset: str) -> None:
    """Read a draft import as another tool's export: the mapping becomes that preset's."""
    if job.status != ImportStatus.DRAFT:
        raise CsvImportError("This import has started: its mapping can no longer change.")
    if preset != NATIVE and preset not in PRESETS:
        raise CsvImportError(f"Unknown preset {preset!r}: choose one of {', '.join([NATIVE, *PRESETS])}.")
    job.preset, job.mapping = preset, preset_targets(preset, job.header)
    job.save(update_fields=["preset", "mapping"])


def preset_choices() -> list[tuple[str, str]]:
    return [(NATIVE, preset_label(NATIVE)), *((key, preset.label) for key, preset in PRESETS.items())]


def import_job_start(*, job: ImportJob) -> bool:
    """Queue a draft import (its mapping checked again) and enqueue it after commit. Safe to
    call twice: only the first call starts it (a conditional UPDATE); returns whether it did."""
    csv_layout_mapped(job.header, job.mapping)
    with transaction.atomic():
        started = ImportJob.objects.filter(pk=job.pk, status=ImportStatus.DRAFT).update(status=ImportStatus.QUEUED)
        if started:
            _enqueue_after_commit(job.pk)
    job.refresh_from_db()
    return bool(started)


def _enqueue_after_commit(job_id: int) -> None:
    # The task module imports this one (tasks are thin wrappers around services).
    from leadflow.leads.tasks import import_leads_job

    transaction.on_commit(lambda: import_leads_job.delay(job_id))


# --- Preview ----------------------------------------------------------------------------------------

PREVIEW_FIELDS = ("email", "external_id", "name", "company", "job_title", "industry", "country", "company_size")
PREVIEW_LABELS = {
    "email": "E-mail",
    "external_id": "External id",
    "name": "Name",
    "company": "Company",
    "job_title": "Job title",
    "industry": "Industry",
    "country": "Country",
    "company_size": "Company size",
}


def import_samples(*, job: ImportJob) -> list[str]:
    """The first non-blank row's cells, one per column, to show beside the mapping."""
    for _line, cells in _rows(job.content, job.delimiter, skip=0):
        if cells is not None:
            return [cells[index] if index < len(cells) else "" for index in range(len(job.header))]
    return [""] * len(job.header)


@dataclass
class PreviewRow:
    line: int
    values: dict[str, Any] = field(default_factory=dict)  # PREVIEW_FIELDS, as stored
    utm: dict[str, str] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None
    stage_value: str = ""
    errors: dict[str, Any] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        return rejection_reasons(self.errors)


def import_preview(*, job: ImportJob, layout: CsvLayout, rows: int = PREVIEW_ROWS) -> list[PreviewRow]:
    """The first ``rows`` rows of a draft import as they will be stored under ``layout``,
    or the errors that will reject them. Nothing is written."""
    preview = []
    for line, cells in _rows(job.content, job.delimiter, skip=0):
        if cells is None:
            continue
        parsed, errors = lead_row_parse(layout, cells)
        row = PreviewRow(line=line, errors=errors)
        if parsed is not None:
            lead = parsed.lead
            row.values = {"email": lead.email, "external_id": lead.external_id}
            row.values |= {name: lead.profile.get(name) for name in PREVIEW_FIELDS if name in lead.profile}
            row.utm = {name: value for name, value in lead.profile.items() if name.startswith("utm_")}
            row.traits = dict(lead.traits)
            row.stage, row.stage_value = parsed.stage, parsed.stage_value
        preview.append(row)
        if len(preview) >= rows:
            break
    return preview


def _rows(content: str, delimiter: str, *, skip: int) -> Iterator[tuple[int, list[str] | None]]:
    """(line, cells) of each record after the header and the ``skip`` first ones; a blank
    record gives None for cells (it counts as read)."""
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    next(reader, None)
    for _ in range(skip):
        if next(reader, None) is None:
            return
    start = reader.line_num + 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        yield line, (cells if any(cell.strip() for cell in cells) else None)


# --- The background import -----------------------------------------------------------------------


class ImportSuperseded(Exception):
    """Another execution took the job over (this one was presumed dead): stop writing."""


def _stale_before() -> Any:
    return timezone.now() - timedelta(seconds=settings.IMPORT_STALE_AFTER_SECONDS)


def _resumable() -> Q:
    """Jobs an execution may take: queued, failed with starts left, or running without a
    live worker (its heartbeat stopped)."""
    return (
        Q(status=ImportStatus.QUEUED)
        | Q(status=ImportStatus.FAILED, attempts__lt=settings.IMPORT_MAX_ATTEMPTS)
        | (Q(status=ImportStatus.RUNNING) & (Q(heartbeat_at__lt=_stale_before()) | Q(heartbeat_at__isnull=True)))
    )


def _import_job_claim(job_id: int) -> int | None:
    """Take a new lease on the job if nobody live holds it; returns the lease."""
    now = timezone.now()
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(_resumable(), pk=job_id).first()
        if job is None:
            return None
        job.attempts += 1
        job.status, job.heartbeat_at, job.error = ImportStatus.RUNNING, now, ""
        job.started_at = job.started_at or now
        job.save(update_fields=["attempts", "status", "heartbeat_at", "error", "started_at"])
        return job.attempts


def import_job_execute(*, job_id: int, chunk_size: int | None = None) -> str:
    """Import a queued job's rows from where it stopped, a chunk per transaction; returns
    the job's status. Safe to run twice: an execution first takes the lease, and a chunk
    commits only under the current one, so no row is imported twice."""
    lease = _import_job_claim(job_id)
    job = ImportJob.objects.select_related("source", "created_by").get(pk=job_id)
    if lease is None:
        return job.status
    chunk_size = chunk_size or settings.IMPORT_CHUNK_ROWS
    try:
        layout = csv_layout_mapped(job.header, job.mapping)
        origin = f"{preset_label(job.preset)} {job.filename!r}"
        counted: set[int] = set()
        position = job.position
        records = _rows(job.content, job.delimiter, skip=position)
        while True:
            chunk = [record for _, record in zip(range(chunk_size), records, strict=False)]
            if not chunk:
                break
            rows = [(line, cells) for line, cells in chunk if cells is not None]
            position += len(chunk)
            _import_job_chunk(job, lease, layout, rows, origin=origin, counted=counted, position=position)
    except ImportSuperseded:
        logger.warning("Import %s: lease %s was taken over by another worker", job_id, lease)
        return ImportJob.objects.get(pk=job_id).status
    except Exception as error:
        logger.exception("Import %s failed", job_id)
        message = str(error) if isinstance(error, CsvImportError) else f"The import stopped: {error}"
        ImportJob.objects.filter(pk=job_id, attempts=lease).update(
            status=ImportStatus.FAILED, error=message, finished_at=timezone.now()
        )
        return ImportStatus.FAILED
    ImportJob.objects.filter(pk=job_id, attempts=lease, status=ImportStatus.RUNNING).update(
        status=ImportStatus.DONE, finished_at=timezone.now(), content=""
    )
    return ImportStatus.DONE


def _import_job_chunk(
    job: ImportJob,
    lease: int,
    layout: CsvLayout,
    rows: list[tuple[int, list[str]]],
    *,
    origin: str,
    counted: set[int],
    position: int,
) -> None:
    """One chunk: its leads, rejected rows and the job's position commit together."""
    with transaction.atomic():
        held = (
            ImportJob.objects.select_for_update()
            .filter(pk=job.pk, attempts=lease, status=ImportStatus.RUNNING)
            .exists()
        )
        if not held:
            raise ImportSuperseded(f"Import {job.pk} was taken over; lease {lease} stops.")
        result = ImportResult()
        if rows:
            lead_rows_import(
                source=job.source,
                layout=layout,
                rows=rows,
                origin=origin,
                actor=job.created_by,
                counted=counted,
                into=result,
            )
        cells = dict(rows)
        ImportRejection.objects.bulk_create(
            ImportRejection(
                job=job,
                line=row.line,
                cells=cells[row.line],
                errors=row.errors,
                email=_email_cell(layout, cells[row.line]),
            )
            for row in result.rejected
        )
        ImportJob.objects.filter(pk=job.pk).update(
            position=position,
            created=F("created") + result.created,
            updated=F("updated") + result.updated,
            rejected=F("rejected") + len(result.rejected),
            stages_changed=F("stages_changed") + result.stages_changed,
            heartbeat_at=timezone.now(),
        )


def _email_cell(layout: CsvLayout, cells: list[str]) -> str:
    """A rejected row's e-mail cell, lower-cased: what a person's erasure looks it up by."""
    column = next((index for index, name in layout.fields.items() if name == "email"), None)
    if column is None or column >= len(cells):
        return ""
    return cells[column].strip().lower()[:254]


def import_jobs_resume() -> list[int]:
    """The sweep's half for imports: enqueue jobs left queued (the broker was down when
    they started), running with a stopped heartbeat (the worker died), or failed with
    starts left. Enqueuing twice is harmless: an execution first takes the lease."""
    grace = timezone.now() - timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
    ids = list(
        ImportJob.objects.filter(_resumable())
        .exclude(status=ImportStatus.QUEUED, created_at__gt=grace)
        .order_by("id")
        .values_list("id", flat=True)
    )
    from leadflow.leads.tasks import import_leads_job  # see _enqueue_after_commit

    for job_id in ids:
        logger.info("Sweep: resuming import %s", job_id)
        import_leads_job.delay(job_id)
    return ids


def import_drafts_expire() -> int:
    """Delete drafts nobody started within ``IMPORT_DRAFT_DAYS``: an uploaded file's text
    (personal data) is not kept for an import that never ran. Returns how many went."""
    before = timezone.now() - timedelta(days=settings.IMPORT_DRAFT_DAYS)
    deleted, _ = ImportJob.objects.filter(status=ImportStatus.DRAFT, created_at__lt=before).delete()
    return deleted
