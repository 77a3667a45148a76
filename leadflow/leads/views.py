"""Pages of the lead core: the leads list with its CSV export. Views read through
selectors and write through services. (The dashboard and the lead page compose
scoring and handoff: they are the project's, in ``leadflow.views``.)"""

import csv
from collections.abc import Iterator
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from leadflow.leads import privacy, selectors
from leadflow.leads.decorators import role_required
from leadflow.leads.forms import LeadFilterForm
from leadflow.leads.importexport import EXPORT_COLUMNS, csv_cell, lead_export_rows
from leadflow.leads.roles import ALL_ROLES
from leadflow.leads.scores import leads_qualifications, scoring_models

LEADS_PER_PAGE = 50


# --- Leads list and export ----------------------------------------------------------------
@role_required(*ALL_ROLES)
def lead_list(request: HttpRequest) -> HttpResponse:
    form = LeadFilterForm(request.GET)
    filters = form.filters()
    paginator = selectors.HeadFirstPaginator(
        selectors.lead_search(filters=filters), LEADS_PER_PAGE, head=selectors.lead_search_head(filters=filters)
    )
    page = paginator.get_page(request.GET.get("page"))
    # Each row's next-stage criteria under the list's model: a few queries for the whole page.
    page.object_list = list(page.object_list)
    qualifications = leads_qualifications(page.object_list, model=filters.model)
    for lead in page.object_list:
        lead.qualification = qualifications.get(lead.pk)
    models = scoring_models()
    names = dict(models)
    model_name = names.get(filters.model or "", models[0][1] if models else "") if len(models) > 1 else ""
    context = {
        "form": form,
        "filters": filters,
        "page": page,
        "filtered": _is_filtered(form),
        "model_name": model_name,
    }
    return render(request, "leads/list.html", context)


def _is_filtered(form: LeadFilterForm) -> bool:
    """Whether the list is narrowed: the sort and the model whose scores it shows are not filters."""
    return any(form.data.get(name) for name in form.fields if name not in ("sort", "model"))


class _Echo:
    """A file-like object whose ``write`` returns the line: csv.writer into a stream."""

    def write(self, value: str) -> str:
        return value


@role_required(*ALL_ROLES)
def lead_export(request: HttpRequest) -> StreamingHttpResponse:
    """The leads of the current filter as CSV, streamed; cells a spreadsheet would run are neutralised."""
    filters = LeadFilterForm(request.GET).filters()
    leads = selectors.lead_search(filters=filters)
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow([csv_cell(name) for name in EXPORT_COLUMNS])
        for row in lead_export_rows(leads):
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="leads-{timezone.localdate().isoformat()}.csv"'
    return response


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
