"""Pages of the sales side: the queue reps work from, one handoff with its audit trail
and actions, every open handoff for sales managers (reassign, release), and everyone's
notifications. Reads go through selectors, every change
through the handoff services; a refused action becomes a message, never an error page.
"""

from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from handoff import notifications as handoff_notifications
from handoff import quality, selectors, suggest
from handoff import services as handoff_services
from handoff.context_processors import unread_notifications
from handoff.forms import ChecklistItemForm, HandoffAcceptForm, HandoffReassignForm, HandoffRejectForm
from handoff.models import Handoff, HandoffStatus, RejectReason
from handoff.roles import is_sales_manager
from leadflow import charts
from leadflow.leads import selectors as lead_selectors
from leadflow.leads.decorators import role_required
from leadflow.leads.people import person_name
from leadflow.leads.roles import ALL_ROLES, MARKETING, SALES, SCORING_ADMIN, has_role
from leadflow.pagination import CappedCountPaginator
from scoring import selectors as scoring_selectors
from scoring.presenters import explanation_data

QUEUE_PER_PAGE = 25
OVERVIEW_PER_PAGE = 25
NOTIFICATIONS_PER_PAGE = 25
RECENT_EVENTS = 10
SALES_ONLY = "The sales queue is for sales reps: ask an administrator for the sales role."
REPS_ONLY = "Only sales reps claim, accept, reject or release handoffs; you can read them."
OVERVIEW_READERS = (
    "The handoffs overview is for sales managers (staff users), marketing and scoring admins: "
    "reps work from the sales queue."
)
MANAGERS_ONLY = "Only sales managers (staff users) reassign or release other people's handoffs; you can read them."


def _safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


# --- The queue ------------------------------------------------------------------------------------
# The queue's two orders (``?sort=``): the claim order, or the overdue handoffs first. A rep's
# choice is remembered in their session: it lasts as long as their login, needs no table
# and no migration, and "Accept & next" follows it. A notification of SLA breaches links
# to the queue with ``sort=overdue``.
CLAIM_ORDER, OVERDUE_FIRST = "claim", "overdue"
QUEUE_SORT_KEY = "handoff.queue_sort"


def _overdue_first(request: HttpRequest) -> bool:
    """Whether this rep's queue lists the overdue handoffs first: the order asked for in
    ``?sort=`` (and from now on), or the one they chose last."""
    chosen = request.GET.get("sort")
    if chosen in (CLAIM_ORDER, OVERDUE_FIRST):
        if request.session.get(QUEUE_SORT_KEY) != chosen:
            request.session[QUEUE_SORT_KEY] = chosen
        return chosen == OVERDUE_FIRST
    return request.session.get(QUEUE_SORT_KEY) == OVERDUE_FIRST


@role_required(SALES, message=SALES_ONLY)
def sales_queue(request: HttpRequest) -> HttpResponse:
    overdue_only = request.GET.get("show") == "overdue"
    overdue_first = _overdue_first(request)
    models = list(scoring_selectors.model_list())
    slug = request.GET.get("model") or ""
    model = next((m for m in models if m.slug == slug), None)
    if slug and model is None:
        messages.error(request, f"No scoring model “{slug}”: showing SQLs of every model.")
    queued = selectors.sales_queue(
        user=request.user, overdue_only=overdue_only, model=model, overdue_first=overdue_first
    )
    page = CappedCountPaginator(queued, QUEUE_PER_PAGE).get_page(request.GET.get("page"))
    claims = selectors.sales_claims(user=request.user)
    items = selectors.queue_items([*page.object_list, *claims])
    context = {
        "page": page,
        "queue": items[: len(page.object_list)],
        "claims": items[len(page.object_list) :],
        "overdue_only": overdue_only,
        "overdue_first": overdue_first,
        "overdue_count": selectors.sales_queue_overdue_count(user=request.user, model=model),
        "models": models if len(models) > 1 else [],
        "model": model,
        "claim_limit": settings.HANDOFF_MAX_OPEN_CLAIMS,
        "claim_hours": settings.HANDOFF_CLAIM_TTL_HOURS,
        "at_claim_limit": len(claims) >= settings.HANDOFF_MAX_OPEN_CLAIMS,
        "reject_form": HandoffRejectForm(),
        # With a checklist to answer, Accept opens the handoff's accept form rather than accepting
        # in one click with nothing confirmed (which the dashboard would count as "missing").
        "accept_asks_confirmation": selectors.checklist_items(active_only=True).exists(),
    }
    return render(request, "sales/queue.html", context)


# --- One handoff ------------------------------------------------------------------------------------
def _handoff_context(
    request: HttpRequest,
    handoff: Handoff,
    reject_form: HandoffRejectForm | None = None,
    accept_form: HandoffAcceptForm | None = None,
) -> dict[str, Any]:
    lead = handoff.lead
    explained = scoring_selectors.lead_explain(lead=lead, model=handoff.model)
    explanation = explanation_data(explained)
    actions = selectors.handoff_allowed_actions(handoff=handoff, user=request.user)
    names = dict(scoring_selectors.model_list().values_list("slug", "name")) if len(handoff.qualified_by) > 1 else {}
    trail = list(handoff.events.all())
    return {
        "handoff": handoff,
        "qualified_by_names": [names.get(slug, slug) for slug in handoff.qualified_by],
        "lead": lead,
        "trail": trail,
        "trail_people": selectors.trail_people(handoff, trail),
        "explanation": explanation,
        "matched_rules": [rule for rule in explanation["rules"] if rule["matched"]],
        "unmatched_rules": [rule for rule in explanation["rules"] if not rule["matched"]],
        "intent": selectors.explanation_intent(explained),
        "sql_change": selectors.lead_sql_change(lead=lead),
        "events": lead_selectors.lead_recent_events(lead=lead, limit=RECENT_EVENTS),
        "outcomes": list(lead_selectors.lead_outcomes(lead=lead)[: lead_selectors.LEAD_OUTCOMES_LIMIT]),
        "actions": actions,
        "reject_form": reject_form or (HandoffRejectForm() if "reject" in actions else None),
        "accept_form": accept_form
        or (HandoffAcceptForm(items=selectors.checklist_items(active_only=True)) if "accept" in actions else None),
        "claim_hours": settings.HANDOFF_CLAIM_TTL_HOURS,
    }


@role_required(*ALL_ROLES)
def handoff_detail(request: HttpRequest, handoff_id: Any) -> HttpResponse:
    handoff = get_object_or_404(selectors.handoff_visible(user=request.user), public_id=handoff_id)
    return render(request, "sales/handoff_detail.html", _handoff_context(request, handoff))


def _actionable_or_404(request: HttpRequest, handoff_id: Any) -> Handoff:
    """Another rep's claim answers 404, as a handoff that does not exist (like the API)."""
    return get_object_or_404(selectors.handoff_actionable(user=request.user), public_id=handoff_id)


def _after_refusal(request: HttpRequest, handoff: Handoff, error: handoff_services.HandoffError) -> HttpResponse:
    messages.error(request, str(error))
    if selectors.handoff_visible(user=request.user).filter(pk=handoff.pk).exists():
        return redirect(_safe_next(request, reverse("handoff-detail", kwargs={"handoff_id": handoff.public_id})))
    return redirect("sales-queue")


def _after_success(request: HttpRequest, handoff: Handoff) -> HttpResponse:
    return redirect(_safe_next(request, reverse("handoff-detail", kwargs={"handoff_id": handoff.public_id})))


def _after_decision(request: HttpRequest, handoff: Handoff) -> HttpResponse:
    """After an accept or a reject: back where the rep came from, or with "… & next"
    (``then=next``) on to the next queued handoff, in the order the rep chose for the queue.

    "Next" opens that handoff; it does not claim it. A claim hides the lead from the other
    reps and starts the claim's clock and the rep has not yet read why it qualified; one
    click on its page claims it, and "Claim next" still takes the head of the queue blind."""
    if request.POST.get("then") != "next":
        return _after_success(request, handoff)
    following = selectors.sales_queue_next(user=request.user, overdue_first=_overdue_first(request))
    if following is None:
        messages.info(request, "Nothing else is waiting in the queue. New SQLs appear here as leads qualify.")
        return redirect("sales-queue")
    limit = settings.HANDOFF_MAX_OPEN_CLAIMS
    if len(selectors.sales_claims(user=request.user)) >= limit:
        messages.info(
            request, f"You hold {limit} claims, the limit: accept, reject or release one before claiming the next."
        )
        return redirect("sales-queue")
    messages.info(request, f"Next in the queue: {following.lead.display_name}. Claim it to work on it.")
    return redirect("handoff-detail", handoff_id=following.public_id)


@require_POST
@role_required(SALES, message=REPS_ONLY)
def handoff_claim_next(request: HttpRequest) -> HttpResponse:
    try:
        handoff = handoff_services.handoff_claim_next(user=request.user, overdue_first=_overdue_first(request))
    except handoff_services.HandoffError as error:
        messages.error(request, str(error))
        return redirect("sales-queue")
    if handoff is None:
        messages.info(request, "The queue is empty: nothing to claim. New SQLs appear here as leads qualify.")
        return redirect("sales-queue")
    messages.success(
        request,
        f"You claimed {handoff.lead.display_name}, the top of the queue. "  # in the order the rep chose
        f"Accept or reject it within {settings.HANDOFF_CLAIM_TTL_HOURS} h, or release it.",
    )
    return redirect("handoff-detail", handoff_id=handoff.public_id)


def _claimable_or_404(request: HttpRequest, handoff_id: Any) -> Handoff:
    """Any handoff, as the API's claim looks it up: a rep who lost the race for it hears
    "another rep claimed it first" (the service's ClaimTaken), not "no such handoff"."""
    return get_object_or_404(Handoff, public_id=handoff_id)


def _act(
    request: HttpRequest,
    handoff_id: Any,
    service: Callable[..., Handoff],
    success: Callable[[Handoff], str],
    lookup: Callable[[HttpRequest, Any], Handoff] = _actionable_or_404,
    after: Callable[[HttpRequest, Handoff], HttpResponse] = _after_success,
) -> HttpResponse:
    """Run one handoff service on an actionable handoff; a refusal becomes a message, never a 500."""
    handoff = lookup(request, handoff_id)
    try:
        handoff = service(handoff=handoff, user=request.user)
    except handoff_services.HandoffError as error:
        return _after_refusal(request, handoff, error)
    messages.success(request, success(handoff))
    return after(request, handoff)


@require_POST
@role_required(SALES, message=REPS_ONLY)
def handoff_claim(request: HttpRequest, handoff_id: Any) -> HttpResponse:
    return _act(
        request,
        handoff_id,
        handoff_services.handoff_claim,
        lambda handoff: (
            f"You claimed {handoff.lead.display_name}. "
            f"Accept or reject it within {settings.HANDOFF_CLAIM_TTL_HOURS} h, or release it."
        ),
        lookup=_claimable_or_404,
    )


@require_POST
@role_required(SALES, message=REPS_ONLY)
def handoff_release(request: HttpRequest, handoff_id: Any) -> HttpResponse:
    return _act(
        request,
        handoff_id,
        handoff_services.handoff_release,
        lambda handoff: f"Released {handoff.lead.display_name}: it is back in the queue for anyone to claim.",
    )


@require_POST
@role_required(SALES, message=REPS_ONLY)
def handoff_accept(request: HttpRequest, handoff_id: Any) -> HttpResponse:
    """Accept, with what the rep confirmed (the checklist's ticked items) and a note."""
    handoff = _actionable_or_404(request, handoff_id)
    form = HandoffAcceptForm(request.POST, items=selectors.checklist_items(active_only=True))
    if form.is_valid():
        try:
            handoff = handoff_services.handoff_accept(
                handoff=handoff,
                user=request.user,
                confirmed=form.cleaned_data["confirmed"],
                note=form.cleaned_data["note"],
            )
        except handoff_services.HandoffStateError as error:
            return _after_refusal(request, handoff, error)
        except handoff_services.HandoffError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Accepted {handoff.lead.display_name}: the lead is yours now.")
            return _after_decision(request, handoff)
    return _undecided(request, handoff, "accept", accept_form=form)


def _undecided(request: HttpRequest, handoff: Handoff, action: str, **forms: Any) -> HttpResponse:
    """A decision's form was refused: the handoff's page again with the errors on their
    fields (400), or a message when the handoff is no longer the rep's to decide."""
    handoff = get_object_or_404(selectors.handoff_visible(user=request.user), pk=handoff.pk)
    if handoff.status != HandoffStatus.CLAIMED or handoff.claimed_by_id != request.user.pk:
        messages.error(request, f"This handoff is {handoff.status} now: there is nothing to {action}.")
        return redirect("handoff-detail", handoff_id=handoff.public_id)
    return render(request, "sales/handoff_detail.html", _handoff_context(request, handoff, **forms), status=400)


@require_POST
@role_required(SALES, message=REPS_ONLY)
def handoff_reject(request: HttpRequest, handoff_id: Any) -> HttpResponse:
    handoff = _actionable_or_404(request, handoff_id)
    form = HandoffRejectForm(request.POST)
    if form.is_valid():
        try:
            handoff = handoff_services.handoff_reject(
                handoff=handoff, user=request.user, reason=form.cleaned_data["reason"], note=form.cleaned_data["note"]
            )
        except handoff_services.HandoffStateError as error:
            return _after_refusal(request, handoff, error)
        except handoff_services.HandoffError as error:
            form.add_error(None, str(error))
        else:
            label = RejectReason(handoff.reject_reason).label
            messages.success(
                request,
                f"Rejected {handoff.lead.display_name} ({label}): the lead is {handoff.lead.get_stage_display()} "
                "and marketing has your feedback.",
            )
            return _after_decision(request, handoff)
    return _undecided(request, handoff, "reject", reject_form=form)


# --- The managers' page: every open handoff ---------------------------------------------------------
def _overview(
    request: HttpRequest, *, failed: tuple[Handoff, HandoffReassignForm] | None = None, status: int = 200
) -> HttpResponse:
    """Every open handoff, the overdue ones first, and what each rep holds. ``failed``: a
    reassignment the form refused, shown with its field error (the page answers 400) as
    the manager saw the page: with the filters of the ``next`` they came from, and forms
    that return there (not to the POST's address)."""
    here = request.get_full_path()
    params = request.GET
    if failed:
        overview = reverse("handoff-overview")
        back = urlsplit(_safe_next(request, overview))
        here = f"{overview}?{back.query}" if back.path == overview and back.query else overview
        params = QueryDict(back.query if back.path == overview else "")
    wanted_status = params.get("status")
    wanted_status = wanted_status if wanted_status in selectors.OVERVIEW_STATUSES else "open"
    overdue_only = params.get("overdue") == "1"
    reps = selectors.sales_reps()
    loads = selectors.rep_loads(reps=reps)
    username = params.get("rep") or ""
    rep = next((load.rep for load in loads if load.rep.get_username() == username), None)
    if username and rep is None:
        messages.error(request, f"Nobody called “{username}” holds or may hold handoffs: showing everyone's.")
    handoffs = selectors.handoffs_open_overview(
        user=request.user, status=wanted_status, rep=rep, overdue_only=overdue_only
    )
    page = CappedCountPaginator(handoffs, OVERVIEW_PER_PAGE).get_page(params.get("page"))
    context = {
        "here": here,
        "params": params,
        "page": page,
        "handoffs": list(page.object_list),
        "loads": loads,
        "reps": reps,
        "rep": rep,
        "status": wanted_status,
        "statuses": [("open", "All open"), ("claimed", "Claimed"), ("queued", "Queued")],
        "overdue_only": overdue_only,
        "filtered": bool(rep or overdue_only or wanted_status != "open"),
        "can_manage": is_sales_manager(request.user),
        "failed_handoff": failed[0] if failed else None,
        "failed_form": failed[1] if failed else None,
    }
    return render(request, "sales/overview.html", context, status=status)


@role_required(MARKETING, SCORING_ADMIN, message=OVERVIEW_READERS)
def handoff_overview(request: HttpRequest) -> HttpResponse:
    return _overview(request)


def _managed_or_404(request: HttpRequest, handoff_id: Any) -> Handoff:
    """A handoff a sales manager acts on from the overview; anybody else is refused (403)."""
    if not is_sales_manager(request.user):
        raise PermissionDenied(MANAGERS_ONLY)
    return get_object_or_404(selectors.handoff_actionable(user=request.user), public_id=handoff_id)


def _back_to_overview(request: HttpRequest) -> HttpResponse:
    return redirect(_safe_next(request, reverse("handoff-overview")))


@require_POST
@login_required
def handoff_overview_reassign(request: HttpRequest, handoff_id: Any) -> HttpResponse:
    handoff = _managed_or_404(request, handoff_id)
    form = HandoffReassignForm(request.POST)
    if not form.is_valid():
        handoff = get_object_or_404(selectors.handoff_list(user=request.user), pk=handoff.pk)
        return _overview(request, failed=(handoff, form), status=400)
    try:
        handoff = handoff_services.handoff_reassign(
            handoff=handoff, actor=request.user, to_user=form.cleaned_data["username"]
        )
    except handoff_services.HandoffError as error:
        messages.error(request, str(error))
        return _back_to_overview(request)
    messages.success(
        request,
        f"Gave {handoff.lead.display_name} to {person_name(handoff.claimed_by)}: "
        f"they were told, and hold it for {settings.HANDOFF_CLAIM_TTL_HOURS} h.",
    )
    return _back_to_overview(request)


@require_POST
@login_required
def handoff_overview_release(request: HttpRequest, handoff_id: Any) -> HttpResponse:
    handoff = _managed_or_404(request, handoff_id)
    holder = person_name(handoff.claimed_by) if handoff.claimed_by_id else ""
    try:
        handoff = handoff_services.handoff_release(handoff=handoff, user=request.user)
    except handoff_services.HandoffError as error:
        messages.error(request, str(error))
        return _back_to_overview(request)
    messages.success(
        request, f"Released {handoff.lead.display_name} from {holder}: it is back in the queue for anyone to claim."
    )
    return _back_to_overview(request)


# --- The accept checklist -----------------------------------------------------------------------------
CHECKLIST_EDITORS_ONLY = "The accept checklist is set by scoring admins and staff: ask one of them to change it."


def _checklist_page(
    request: HttpRequest, *, new_form: ChecklistItemForm | None = None, failed: Any = None, status: int = 200
) -> HttpResponse:
    """Every item with its edit form (``failed``: an item and its refused form), and the
    form that adds one."""
    items = list(selectors.checklist_items())
    rows = [(item, failed[1] if failed and failed[0].pk == item.pk else None) for item in items]
    context = {
        "rows": rows,
        "new_form": new_form or ChecklistItemForm(),
        "active_count": sum(item.active for item in items),
    }
    return render(request, "sales/checklist.html", context, status=status)


@require_http_methods(["GET", "POST"])
@role_required(SCORING_ADMIN, message=CHECKLIST_EDITORS_ONLY)
def checklist(request: HttpRequest) -> HttpResponse:
    """The accept checklist: what a rep is asked to confirm when accepting an SQL. GET shows
    it; POST adds an item."""
    if request.method != "POST":
        return _checklist_page(request)
    form = ChecklistItemForm(request.POST)
    if not form.is_valid():
        return _checklist_page(request, new_form=form, status=400)
    item = handoff_services.checklist_item_create(
        actor=request.user,
        key=form.cleaned_data["key"],
        label=form.cleaned_data["label"],
        position=form.cleaned_data["position"],
        active=form.cleaned_data["active"],
    )
    messages.success(request, f"Added “{item.label}” to the accept checklist.")
    return redirect("handoff-checklist")


@require_POST
@role_required(SCORING_ADMIN, message=CHECKLIST_EDITORS_ONLY)
def checklist_item(request: HttpRequest, key: str) -> HttpResponse:
    """Change an item's label, position, or whether reps are asked about it."""
    item = get_object_or_404(selectors.checklist_items(), key=key)
    form = ChecklistItemForm(request.POST, item=item)
    if not form.is_valid():
        return _checklist_page(request, failed=(item, form), status=400)
    handoff_services.checklist_item_update(
        actor=request.user,
        item=item,
        label=form.cleaned_data["label"],
        position=form.cleaned_data["position"],
        active=form.cleaned_data["active"],
    )
    messages.success(request, f"Saved “{item.label}”{'' if item.active else ': reps are no longer asked about it'}.")
    return redirect("handoff-checklist")


# --- Notifications -----------------------------------------------------------------------------------
@role_required(*ALL_ROLES)
def notification_list(request: HttpRequest) -> HttpResponse:
    unread_only = request.GET.get("show") == "unread"
    page = Paginator(
        selectors.notification_inbox(user=request.user, unread_only=unread_only), NOTIFICATIONS_PER_PAGE
    ).get_page(request.GET.get("page"))
    context = {"page": page, "unread_only": unread_only, "unread": unread_notifications(request)}
    return render(request, "sales/notifications.html", context)


@require_POST
@role_required(*ALL_ROLES)
def notification_read(request: HttpRequest, notification_id: Any) -> HttpResponse:
    notification = get_object_or_404(selectors.notification_inbox(user=request.user), public_id=notification_id)
    handoff_notifications.notification_mark_read(notification=notification)
    return redirect(_safe_next(request, reverse("notification-list")))


@require_POST
@role_required(*ALL_ROLES)
def notification_read_all(request: HttpRequest) -> HttpResponse:
    marked = handoff_notifications.notifications_mark_all_read(user=request.user)
    if marked:
        messages.success(request, f"Marked {marked} notification{'s' if marked != 1 else ''} read.")
    else:
        messages.info(request, "Nothing to mark: every notification was read already.")
    return redirect(_safe_next(request, reverse("notification-list")))


# --- Suggested points ------------------------------------------------------------------------------
@require_POST
@role_required(SCORING_ADMIN, message="Only scoring admins may ask for suggested points.")
def ruleset_suggest(request: HttpRequest, version: int) -> HttpResponse:
    """Make a draft with suggested points and open it; a refusal says why on the ruleset's page."""
    ruleset = get_object_or_404(scoring_selectors.ruleset_list(), version=version)
    keep_thresholds = request.POST.get("rederive_sql_threshold") != "on"
    try:
        draft = suggest.ruleset_suggest(ruleset=ruleset, user=request.user, keep_thresholds=keep_thresholds)
    except suggest.SuggestionRefused as error:
        messages.error(request, str(error))
        return redirect("ruleset-detail", version=version)
    messages.success(
        request, f"Draft v{draft.version} holds the suggested points: compare, preview it, then publish if you agree."
    )
    return redirect("ruleset-detail", version=draft.version)


# --- Score quality and the backtest of a draft (issue 14) -------------------------------------------
QUALITY_READERS = "Score quality is for scoring admins and marketing: ask an administrator for one of these roles."


def _short(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.1")).normalize(), "f")


def _band_chart_label(band: quality.Band) -> str:
    if band.low is None:
        return f"<{_short(band.high or Decimal(0))}"
    return f"≥{_short(band.low)}" if band.high is None else _short(band.low)


def _rate_point(rate: quality.Rate) -> charts.RatePoint:
    interval = rate.interval
    return charts.RatePoint(rate.value, *(interval or (None, None)))


def _quality_chart(report: quality.QualityReport) -> Any:
    if not report.decided:
        return None
    series = [("Accepted", [_rate_point(band.accept) for band in report.bands], "series-1")]
    if report.won.total:
        series.append(("Won", [_rate_point(band.win) for band in report.bands], "series-2"))
    return charts.rate_chart(
        chart_id="quality-calibration",
        title=f"Accept rate by score band, v{report.ruleset.version} (95 % intervals)",
        labels=[_band_chart_label(band) for band in report.bands],
        series=series,
    )


@role_required(MARKETING, SCORING_ADMIN, message=QUALITY_READERS)
def ruleset_quality(request: HttpRequest, version: int) -> HttpResponse:
    """How well the ruleset's score, evaluated as of each handoff's creation, predicts sales'
    verdict: calibration by band, AUC, each rule's lift, reject reasons and what sales
    confirmed on accepting, by band."""
    ruleset = get_object_or_404(scoring_selectors.ruleset_list(), version=version)
    bands_text = (request.GET.get("bands") or "").strip()
    edges, bands_error = None, ""
    if bands_text:
        try:
            edges = quality.quality_bands_parse(bands_text)
        except quality.BandsInvalid as error:
            bands_error = str(error)
    report = quality.ruleset_quality(ruleset=ruleset, edges=edges)
    context = {
        "ruleset": ruleset,
        "report": report,
        "chart": _quality_chart(report),
        "bands_text": bands_text,
        "bands_error": bands_error,
        "reason_labels": [(reason, RejectReason(reason).label) for reason in report.reject_reasons],
        "is_admin": has_role(request.user, SCORING_ADMIN),
    }
    return render(request, "quality/ruleset_quality.html", context, status=400 if bands_error else 200)


@role_required(MARKETING, SCORING_ADMIN, message=QUALITY_READERS)
def ruleset_backtest(request: HttpRequest, version: int) -> HttpResponse:
    """The ruleset and its model's published one replayed over the model's handoffs. With
    ``?fragment=1`` only the card's body, which the preview page loads in the background."""
    ruleset = get_object_or_404(scoring_selectors.ruleset_list(), version=version)
    backtest = quality.ruleset_backtest(ruleset=ruleset, published=scoring_selectors.published_ruleset(ruleset.model))
    context = {"ruleset": ruleset, "backtest": backtest}
    if request.GET.get("fragment") == "1":
        return render(request, "quality/partials/backtest.html", context)
    return render(request, "quality/ruleset_backtest.html", context)
