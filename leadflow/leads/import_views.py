"""The import pages (marketing and scoring admins): upload a CSV export, map its columns
with a preview of the first rows as they will be stored, then follow the background import
and download its rejected rows. Views read through selectors and write through the
services of ``leadflow.leads.imports``."""

import csv
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from leadflow.leads import imports
from leadflow.leads.decorators import role_required
from leadflow.leads.forms import ImportMappingForm, ImportUploadForm, import_column_field
from leadflow.leads.importexport import csv_cell, csv_layout_mapped
from leadflow.leads.importmap import CsvImportError
from leadflow.leads.models import ImportJob, ImportRejection, ImportStatus, rejection_reasons
from leadflow.leads.roles import IMPORTERS

JOBS_PER_PAGE = 25
REJECTIONS_SHOWN = 20


def _job(job_id: Any) -> ImportJob:
    return get_object_or_404(ImportJob.objects.select_related("source", "created_by"), public_id=job_id)


@role_required(*IMPORTERS)
def import_list(request: HttpRequest) -> HttpResponse:
    jobs = ImportJob.objects.select_related("source", "created_by").defer("content").order_by("-created_at", "-id")
    page = Paginator(jobs, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "leads/imports/list.html", {"page": page})


@role_required(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def import_new(request: HttpRequest) -> HttpResponse:
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            job = imports.import_job_create(
                user=request.user, filename=upload.name, data=upload.read(), source_name=form.cleaned_data["source"]
            )
        except CsvImportError as error:
            form.add_error("file", str(error))
        else:
            return redirect("import-map", job_id=job.public_id)
    status = 400 if request.method == "POST" else 200
    return render(request, "leads/imports/new.html", {"form": form}, status=status)


@role_required(*IMPORTERS)
@require_http_methods(["GET", "POST"])
def import_map(request: HttpRequest, job_id: Any) -> HttpResponse:
    job = _job(job_id)
    if job.status != ImportStatus.DRAFT:
        return redirect("import-detail", job_id=job.public_id)
    if request.method == "POST" and request.POST.get("action") == "preset":
        try:
            imports.import_job_preset(job=job, preset=request.POST.get("preset", ""))
        except CsvImportError as error:
            messages.error(request, str(error))
        return redirect("import-map", job_id=job.public_id)
    form = ImportMappingForm(request.POST or None, header=job.header, mapping=job.mapping)
    layout = None
    mapping_error = ""
    if request.method == "POST":
        if form.is_valid():
            try:
                layout = imports.import_job_map(job=job, mapping=form.mapping())
            except CsvImportError as error:
                column = error.column
                form.add_error(import_column_field(column) if column is not None else None, str(error))
            else:
                if request.POST.get("action") == "start":
                    imports.import_job_start(job=job)
                    return redirect("import-detail", job_id=job.public_id)
    else:
        try:
            layout = csv_layout_mapped(job.header, job.mapping)
        except CsvImportError as error:  # e.g. no e-mail column found: the form says which to map
            mapping_error = str(error)
    context = {
        "job": job,
        "form": form,
        "preset": imports.preset_label(job.preset),
        "preview": imports.import_preview(job=job, layout=layout) if layout is not None else None,
        "preview_labels": imports.PREVIEW_LABELS,
        "columns": list(zip(form, imports.import_samples(job=job), strict=True)),
        "mapping_error": mapping_error,
        "presets": imports.preset_choices(),
    }
    status = 400 if request.method == "POST" and layout is None else 200
    return render(request, "leads/imports/map.html", context, status=status)


@role_required(*IMPORTERS)
def import_detail(request: HttpRequest, job_id: Any) -> HttpResponse:
    job = _job(job_id)
    if job.status == ImportStatus.DRAFT:
        return redirect("import-map", job_id=job.public_id)
    rejections = list(ImportRejection.objects.filter(job=job).order_by("line")[:REJECTIONS_SHOWN])
    context = {
        "job": job,
        "rejections": rejections,
        "preset": imports.preset_label(job.preset),
        "max_attempts": settings.IMPORT_MAX_ATTEMPTS,
    }
    return render(request, "leads/imports/detail.html", context)


@role_required(*IMPORTERS)
def import_progress(request: HttpRequest, job_id: Any) -> JsonResponse:
    """The job's progress for the detail page's poll (``static/js/app.js``)."""
    job = _job(job_id)
    return JsonResponse({"state": job.status, "percent": job.percent, "done": job.position, "total": job.total_rows})


@role_required(*IMPORTERS)
def import_rejected_csv(request: HttpRequest, job_id: Any) -> StreamingHttpResponse:
    """The rejected rows as a CSV: the file's own columns, its line, and why, so that the
    rows can be fixed and imported again."""
    job = _job(job_id)

    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())

    def rows() -> Iterator[str]:
        yield writer.writerow(["line", *job.header, "errors"])
        for line, cells, errors in (
            ImportRejection.objects.filter(job=job).order_by("line").values_list("line", "cells", "errors").iterator()
        ):
            reasons = " ".join(rejection_reasons(errors))
            yield writer.writerow([line, *(csv_cell(cell) for cell in cells), csv_cell(reasons)])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    stem = job.filename.rsplit(".", 1)[0] or "import"
    response["Content-Disposition"] = f'attachment; filename="{_safe_filename(stem)}-rejected.csv"'
    return response


def _safe_filename(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:80] or "import"
