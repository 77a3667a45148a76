"""Pages of the lead core: the leads list with its CSV export, saved views and bulk actions. Views read through
selectors and write through services. (The dashboard and the lead page compose
scoring and handoff: they are the project's, in ``leadflow.views``.)"""

import csv
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from leadflow.leads import lifecycle, merge, privacy, saved_views, selectors, services
from leadflow.leads.decorators import role_required
from leadflow.leads.forms import BulkActionForm, LeadFilterForm, LeadMergeForm, SavedViewForm, SegmentEventTypesForm
from leadflow.leads.importexport import EXPORT_COLUMNS, csv_cell, lead_export_rows
from leadflow.leads.models import Lead, Source, Stage
from leadflow.leads.roles import ALL_ROLES, SEGMENT_MAPPING_EDITORS, STAGE_EDITORS, has_role
from leadflow.leads.scores import leads_qualifications, scoring_models
from leadflow.leads.validation import segment_event_types_text

LEADS_PER_PAGE = 50


# --- Leads list and export ----------------------------------------------------------------
@role_required(*ALL_ROLES)
def lead_list(request: HttpRequest) -> HttpResponse:
    return _list_page(request, request.GET)


def _list_page(
    request: HttpRequest,
    data: QueryDict,
    *,
    save_form: SavedViewForm | None = None,
    bulk_form: BulkActionForm | None = None,
    refused: list[tuple[Lead, str]] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The leads list of the filters ``data`` (a query string's); the saved-view and bulk
    forms come back here with their errors."""
    form = LeadFilterForm(data, viewer=request.user)
    filters = form.filters()
    paginator = selectors.HeadFirstPaginator(
        selectors.lead_search(filters=filters), LEADS_PER_PAGE, head=selectors.lead_search_head(filters=filters)
    )
    page = paginator.get_page(data.get("page"))
    # Each row's next-stage criteria under the list's model: a few queries for the whole page.
    page.object_list = list(page.object_list)
    qualifications = leads_qualifications(page.object_list, model=filters.model)
    for lead in page.object_list:
        lead.qualification = qualifications.get(lead.pk)
    models = scoring_models()
    names = dict(models)
    model_name = names.get(filters.model or "", models[0][1] if models else "") if len(models) > 1 else ""
    query = data.urlencode()
    can_bulk = has_role(request.user, *STAGE_EDITORS)
    selected = set(request.POST.getlist("leads")) if bulk_form is not None else set()
    context = {
        "form": form,
        "filters": filters,
        "page": page,
        "filtered": _is_filtered(form),
        "model_name": model_name,
        "query": query,
        "saved_views": list(saved_views.saved_views_of(user=request.user)),
        "save_form": save_form or SavedViewForm(initial={"query": query}),
        "can_bulk": can_bulk,
        "bulk_form": (bulk_form or BulkActionForm(initial={"query": query})) if can_bulk else None,
        "selected": selected,
        "refused": refused or [],
    }
    return render(request, "leads/list.html", context, status=status)


def _is_filtered(form: LeadFilterForm) -> bool:
    """Whether the list is narrowed: the sort and the model whose scores it shows are not filters."""
    return any(form.data.get(name) for name in form.fields if name not in ("sort", "model"))


def _list_url(query: str) -> str:
    return f"{reverse('lead-list')}?{query}" if query else reverse("lead-list")


class _Echo:
    """A file-like object whose ``write`` returns the line: csv.writer into a stream."""

    def write(self, value: str) -> str:
        return value


def _csv_response(leads: QuerySet[Lead], *, name: str) -> StreamingHttpResponse:
    """``leads`` (annotated with a model's scores) as CSV of ``EXPORT_COLUMNS``, streamed;
    cells a spreadsheet would run are neutralised."""
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow([csv_cell(column) for column in EXPORT_COLUMNS])
        for row in lead_export_rows(leads):
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}-{timezone.localdate().isoformat()}.csv"'
    return response


@role_required(*ALL_ROLES)
def lead_export(request: HttpRequest) -> StreamingHttpResponse:
    """The leads of the current filter as CSV."""
    filters = LeadFilterForm(request.GET).filters()
    return _csv_response(selectors.lead_search(filters=filters), name="leads")


# --- Saved views ----------------------------------------------------------------------------
@require_POST
@role_required(*ALL_ROLES)
def saved_view_create(request: HttpRequest) -> HttpResponse:
    """Save the list's current filters (the form's ``query``) under a name."""
    form = SavedViewForm(request.POST)
    query = QueryDict(request.POST.get("query", ""))
    if form.is_valid():
        try:
            view = saved_views.saved_view_create(
                user=request.user, name=form.cleaned_data["name"], query=form.cleaned_data["query"]
            )
        except ValidationError as error:
            for field, problems in error.message_dict.items():
                form.add_error(field if field in form.fields else None, problems)
        else:
            messages.success(request, f"Saved the view “{view.name}”: it is listed above the filters.")
            return redirect(_list_url(view.query))
    return _list_page(request, query, save_form=form, status=400)


@require_POST
@role_required(*ALL_ROLES)
def saved_view_delete(request: HttpRequest, view_id: int) -> HttpResponse:
    view = saved_views.saved_view_get(user=request.user, view_id=view_id)
    if view is None:
        raise Http404("No such saved view of yours.")
    saved_views.saved_view_delete(view=view)
    messages.success(request, f"Deleted the view “{view.name}”.")
    return redirect(_list_url(request.POST.get("query", "")))


# --- Bulk actions on the selected leads ----------------------------------------------------
@require_POST
@role_required(*STAGE_EDITORS, message="Only marketing and scoring admins may act on several leads at once.")
def lead_bulk(request: HttpRequest) -> HttpResponseBase:
    """The selected rows of the list: move them to a stage with a reason (all or none,
    ``lifecycle.leads_stage_change``), or export them as CSV."""
    form = BulkActionForm(request.POST)
    query = QueryDict(request.POST.get("query", ""))
    if not form.is_valid():
        return _list_page(request, query, bulk_form=form, status=400)
    ids = form.cleaned_data["leads"]
    if form.cleaned_data["action"] == "export":
        filters = LeadFilterForm(query).filters()  # the list's model's scores
        return _csv_response(selectors.lead_search(filters=filters).filter(public_id__in=ids), name="leads-selected")
    leads = list(selectors.lead_list().filter(public_id__in=ids))
    missing = len(ids) - len(leads)
    if missing:
        form.add_error("leads", f"{missing} of the selected leads no longer exist: reload the list.")
        return _list_page(request, query, bulk_form=form, status=400)
    to_stage = form.cleaned_data["stage"]
    try:
        changes = lifecycle.leads_stage_change(
            leads=leads, to_stage=to_stage, actor=request.user, reason=form.cleaned_data["reason"]
        )
    except lifecycle.LeadsStageChangeError as error:
        by_pk = {lead.pk: lead for lead in leads}
        refused = [(by_pk[pk], why) for pk, why in error.refused.items()]
        form.add_error("leads", f"{str(error)} Leave out the leads listed below, or choose another stage.")
        return _list_page(request, query, bulk_form=form, refused=refused, status=400)
    except lifecycle.StageChangeError as error:
        form.add_error(None, str(error))
        return _list_page(request, query, bulk_form=form, status=400)
    count = len(changes)
    moved = f"Moved {count} lead{pluralize(count)} to {Stage(to_stage).label}."
    messages.success(request, f"{moved} Each change is in its lead's stage history.")
    return redirect(_list_url(query.urlencode()))


# --- Privacy: export and erase one person -----------------------------------------------------------
_PRIVACY_ONLY = "Exporting and erasing people is for scoring admins and staff."


@role_required(*privacy.PRIVACY_ROLES, message=_PRIVACY_ONLY)
def lead_privacy_export(request: HttpRequest, lead_id: Any) -> HttpResponse:
    """Everything held about the lead's person, as a JSON file to hand to them."""
    lead = get_object_or_404(selectors.lead_list(), public_id=lead_id)
    response = JsonResponse(privacy.person_export(lead=lead), json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="person-{lead.public_id}.json"'
    return response


@require_http_methods(["GET", "POST"])
@role_required(*privacy.PRIVACY_ROLES, message=_PRIVACY_ONLY)
def lead_erase(request: HttpRequest, lead_id: Any) -> HttpResponse:
    """GET: what erasing the person does, and a button; POST: erase them."""
    lead = get_object_or_404(selectors.lead_list(), public_id=lead_id)
    if request.method == "POST":
        try:
            privacy.person_erase(lead=lead, actor=request.user)
        except privacy.AlreadyErased:
            raise Http404("This person was erased already.") from None
        messages.success(request, "The person was erased: their e-mail address is on the suppression list.")
        return redirect("lead-list")
    return render(request, "leads/erase_confirm.html", {"lead": lead})


# --- Merge a duplicate into a lead ----------------------------------------------------------------------------
_MERGE_ONLY = "Merging leads is for marketing and scoring admins."


@require_http_methods(["GET", "POST"])
@role_required(*STAGE_EDITORS, message=_MERGE_ONLY)
def lead_merge(request: HttpRequest, lead_id: Any) -> HttpResponse:
    """GET ``?other=``: the confirmation naming both leads (or the form again, with why
    the other lead was not found); POST: merge the other lead into this one."""
    lead = get_object_or_404(selectors.lead_list(), public_id=lead_id)
    data = request.POST if request.method == "POST" else request.GET
    form = LeadMergeForm(data, lead=lead)
    if not form.is_valid():
        return render(request, "leads/merge_confirm.html", {"lead": lead, "form": form}, status=400)
    other = form.cleaned_data["other"]
    if request.method == "POST" and form.cleaned_data.get("confirmed"):
        try:
            record = merge.lead_merge(
                survivor=lead, merged=other, actor=request.user, reason=form.cleaned_data["reason"]
            )
        except merge.MergeError as error:
            form.add_error("other", str(error))
            return render(request, "leads/merge_confirm.html", {"lead": lead, "form": form}, status=400)
        moved = record.counts.get("events", 0)
        messages.success(
            request, f"{other.display_name} was merged into this lead: {moved} event{pluralize(moved)} moved."
        )
        return redirect("lead-detail", lead_id=lead.public_id)
    return render(
        request,
        "leads/merge_confirm.html",
        {"lead": lead, "other": other, "form": form, "other_events": other.events.count()},
    )


# --- Segment ingest's drop log ------------------------------------------------------------------------------
DROPS_PER_PAGE = 50


@role_required(*SEGMENT_MAPPING_EDITORS, message="The Segment drop log is for marketing and scoring admins.")
def segment_drops(request: HttpRequest) -> HttpResponse:
    """What Segment-compatible ingest dropped and why, newest first, by source."""
    sources = selectors.sources_with_segment_drops()
    chosen = next((source for source in sources if source.slug == request.GET.get("source")), None)
    page = Paginator(selectors.segment_drops(source=chosen), DROPS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "leads/segment_drops.html",
        {
            "sources": sources,
            "every_source": selectors.sources_all(),
            "chosen": chosen,
            "page": page,
            "kept": settings.SEGMENT_DROPS_KEPT,
        },
    )


@require_http_methods(["GET", "POST"])
@role_required(*SEGMENT_MAPPING_EDITORS, message="A source's Segment event names are for marketing and scoring admins.")
def segment_event_types(request: HttpRequest, source_slug: str) -> HttpResponse:
    """A source's Segment mapping, one ``Segment event name → event type`` a line: the next
    track message uses it. Nothing is saved while a line is wrong; each wrong line is named."""
    source = get_object_or_404(Source, slug=source_slug)
    if request.method == "POST":
        form = SegmentEventTypesForm(request.POST)
        if form.is_valid():
            mapping = form.cleaned_data["event_types"]
            try:
                services.source_segment_event_types_update(source=source, event_types=mapping, actor=request.user)
            except ValidationError as error:
                form.add_error("event_types", error.message_dict.get("segment_event_types", error.messages))
            else:
                messages.success(
                    request,
                    f"Saved {len(mapping)} Segment event name{pluralize(len(mapping))} for {source.name}: "
                    "the next track message uses them.",
                )
                return redirect("segment-event-types", source_slug=source.slug)
        status = 400
    else:
        form = SegmentEventTypesForm(
            initial={"event_types": segment_event_types_text(source.segment_event_types or {})}
        )
        status = 200
    return render(
        request,
        "leads/segment_event_types.html",
        {"source": source, "form": form, "mapped": source.segment_event_types or {}},
        status=status,
    )
