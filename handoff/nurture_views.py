"""Nurture pages, for marketing and scoring admins: the segments with their next content
and the content attribution (``/nurture/``), a segment's leads (``/nurture/<key>/``), its
CSV export, and its push to the e-mail tool through the outbound webhook. They live in
handoff because the push is a webhook notification, which is the handoff's; the
segments and the attribution are the core's (``leadflow.leads.nurture``)."""

import csv
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.utils import timezone
from django.views.decorators.http import require_POST

from handoff import nurture as nurture_push
from leadflow.leads import nurture
from leadflow.leads.decorators import role_required
from leadflow.leads.importexport import csv_cell
from leadflow.leads.roles import MARKETING, SCORING_ADMIN

NURTURE_ROLES = (MARKETING, SCORING_ADMIN)
ONLY_MARKETING = "Nurture segments are for marketing and scoring admins."
LEADS_PER_PAGE = 50
EXPORT_COLUMNS = ["email", "name", "company", "topic", "last_engagement", "next_content"]


def window_days(request: HttpRequest, name: str = "days", default: int = nurture.DEFAULT_DAYS) -> int:
    """A window in days from the query string; the default for anything but 1–3650."""
    value = request.GET.get(name, "")
    if value.isdigit() and 1 <= int(value) <= nurture.MAX_DAYS:
        return int(value)
    return default


def _segment_or_404(segments: nurture.Segments, key: str) -> nurture.Segment:
    segment = nurture.segment_find(segments, key)
    if segment is None:
        raise Http404("No such nurture segment: pick one on the nurture page.")
    return segment


@role_required(*NURTURE_ROLES, message=ONLY_MARKETING)
def nurture_overview(request: HttpRequest) -> HttpResponse:
    days = window_days(request)
    segments = nurture.nurture_segments(days=days)
    context = {
        "days": days,
        "segments": segments,
        "attribution": segments.attribution,
        "webhook_configured": nurture_push.webhook_configured(),
        "nurture_cache_minutes": settings.NURTURE_CACHE_SECONDS // 60,
    }
    return render(request, "nurture/overview.html", context)


@role_required(*NURTURE_ROLES, message=ONLY_MARKETING)
def nurture_segment(request: HttpRequest, segment: str) -> HttpResponse:
    segments = nurture.nurture_segments()
    found = _segment_or_404(segments, segment)
    page = Paginator(nurture.segment_member_ids(segments, found), LEADS_PER_PAGE).get_page(request.GET.get("page"))
    page.object_list = nurture.segment_leads(list(page.object_list))
    suggestions = nurture.leads_next_content(page.object_list, ranking=segments.ranking)
    for lead in page.object_list:
        lead.next_content = suggestions.get(lead.pk)
    context = {
        "segment": found,
        "segments": segments,
        "page": page,
        "webhook_configured": nurture_push.webhook_configured(),
        "no_webhook": nurture_push.NO_WEBHOOK,
    }
    return render(request, "nurture/segment.html", context)


class _Echo:
    def write(self, value: str) -> str:
        return value


@role_required(*NURTURE_ROLES, message=ONLY_MARKETING)
def nurture_segment_export(request: HttpRequest, segment: str) -> StreamingHttpResponse:
    """The segment's leads as CSV; cells a spreadsheet would run are neutralised."""
    segments = nurture.nurture_segments()
    found = _segment_or_404(segments, segment)
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(EXPORT_COLUMNS)
        for row in nurture.segment_lead_rows(segments, found):
            cells: list[Any] = [row.email, row.name, row.company, row.topic, row.last_engaged_at, row.next_content]
            yield writer.writerow([csv_cell(cell) for cell in cells])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    filename = f"nurture-{found.key}-{timezone.localdate().isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_POST
@role_required(*NURTURE_ROLES, message=ONLY_MARKETING)
def nurture_segment_push_view(request: HttpRequest, segment: str) -> HttpResponse:
    try:
        pushed = nurture_push.nurture_segment_push(key=segment)
    except nurture_push.NurturePushError as error:
        if error.code == "unknown_segment":
            raise Http404(str(error)) from None
        messages.error(request, str(error))
    else:
        more = " (the first ones: the segment is larger than one push carries)" if pushed.truncated else ""
        messages.success(
            request,
            f"Pushed {pushed.leads} lead{pluralize(pushed.leads)} to the webhook{more}; it is sent in the background.",
        )
    return redirect("nurture-segment", segment=segment)
