"""Pages of the lead core: the leads list with its CSV export. Views read through
selectors and write through services. (The dashboard and the lead page compose
scoring and handoff: they are the project's, in ``leadflow.views``.)"""

import csv
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from leadflow.leads import selectors
from leadflow.leads.decorators import role_required
from leadflow.leads.forms import LeadFilterForm
from leadflow.leads.importexport import EXPORT_COLUMNS, csv_cell, lead_export_rows
from leadflow.leads.roles import ALL_ROLES
from leadflow.leads.scores import scoring_models

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
