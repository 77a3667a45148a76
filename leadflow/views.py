"""Pages that compose several apps: the marketing dashboard (leads, their stage log and
the sales outcomes), the lead page (the score explained by scoring, the handoffs and
the rep's feedback) and the accounts pages (the core's accounts and contacts with
scoring's roll-ups). Views read through selectors and write through services."""

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from leadflow import charts, selectors
from leadflow.forms import PERIOD_PRESETS, DashboardFilterForm
from leadflow.leads import lifecycle, nurture, privacy
from leadflow.leads import selectors as lead_selectors
from leadflow.leads.decorators import role_required
from leadflow.leads.forms import StageChangeForm
from leadflow.leads.models import Account, Lead, Source, Stage
from leadflow.leads.roles import ALL_ROLES, MARKETING, SCORING_ADMIN, STAGE_EDITORS, has_role
from leadflow.leads.scores import leads_annotate_scores
from leadflow.leads.templatetags.leadflow_ui import percent
from scoring import accounts as scoring_accounts
from scoring import selectors as scoring_selectors
from scoring.models import ScoringModel
from scoring.presenters import explanation_data, explanation_event_points, explanation_qualifications

EVENTS_PER_PAGE = 25


# --- Dashboard --------------------------------------------------------------------------
@role_required(*ALL_ROLES)
def dashboard(request: HttpRequest) -> HttpResponse:
    if not selectors.dashboard_has_leads():
        return render(request, "leads/empty.html", {"events_url": request.build_absolute_uri(reverse("api-events"))})
    form = DashboardFilterForm(request.GET)
    period, preset, source = form.selected()
    slug = form.selected_model()
    model = (scoring_selectors.model_get(slug=slug) if slug else None) or scoring_selectors.model_default()
    numbers = selectors.dashboard_numbers(period=period, source=source, model=model)
    funnel, per_day, histogram = numbers.funnel, numbers.per_day, numbers.histogram
    ruleset = scoring_selectors.published_ruleset(model) if model else None
    markers = [("MQL", ruleset.mql_threshold), ("SQL", ruleset.sql_threshold)] if ruleset else []
    context = {
        "form": form,
        "period": period,
        "preset": preset,
        "presets": PERIOD_PRESETS,
        "source": source,
        "funnel": funnel,
        "funnel_chart": charts.funnel_chart(
            chart_id="funnel",
            title="Funnel of the leads created in the period",
            steps=[
                ("New leads", funnel.created),
                ("MQL", funnel.mql),
                ("SQL", funnel.sql),
                ("Accepted", funnel.accepted),
            ],
            notes=["", *(_rate_note(rate) for rate in (funnel.mql_rate, funnel.sql_rate, funnel.accepted_rate))],
        ),
        "per_day_chart": charts.line_chart(
            chart_id="per-day",
            title="Leads entering MQL and SQL per day",
            days=period.days,
            series=[
                charts.Series("MQL", per_day[Stage.MQL], "series-1"),
                charts.Series("SQL", per_day[Stage.SQL], "series-2"),
            ],
        ),
        "new_mqls": sum(per_day[Stage.MQL]),
        "new_sqls": sum(per_day[Stage.SQL]),
        "histogram": histogram,
        "histogram_chart": charts.histogram(
            chart_id="scores",
            title=f"Current {model.name} scores of all leads" if model else "Current scores of all leads",
            lows=histogram.lows,
            width=histogram.width,
            series=[charts.Series("Leads", histogram.counts, "series-1")],
            markers=[(value, name) for name, value in markers],
        )
        if histogram.lows
        else None,
        "ruleset": ruleset,
        "model": model,
        "several_models": len(form.fields["model"].choices) > 1,  # type: ignore[attr-defined]
        "model_funnel": numbers.model_funnel,
        "grade_matrix": selectors.dashboard_grade_matrix(model=model, source=source) if model else None,
        "by_source": numbers.by_source,
        "by_campaign": numbers.by_campaign,
        "source_links": breakdown_links(numbers.by_source, by="source", period=period, source=source),
        "campaign_links": breakdown_links(numbers.by_campaign, by="utm_campaign", period=period, source=source),
        "medians": numbers.medians,
        "outcomes": selectors.dashboard_sales_outcomes(period=period, source=source),
        "crm_outcomes": selectors.dashboard_outcomes(period=period, source=source),
        "confirmations": selectors.dashboard_sales_confirmations(period=period, source=source),
        "overdue": selectors.dashboard_overdue_handoffs(user=request.user, source=source),
        "recent_sqls": selectors.dashboard_recent_sqls(source=source, model=model),
    }
    return render(request, "leads/dashboard.html", context)


def breakdown_links(
    rows: list[selectors.BreakdownRow], *, by: str, period: selectors.Period, source: Source | None
) -> dict[str, str]:
    """Each breakdown row's leads on the leads list, by the row's key: the rows count the
    leads created in the period (of the dashboard's source), so the list is filtered by
    creation date too. A row of leads without a source or campaign has no link (the list
    has no filter for "none")."""
    cohort = {"created_from": period.first.isoformat(), "created_to": period.last.isoformat()}
    if source is not None:
        cohort["source"] = source.slug
    slugs = lead_selectors.source_slugs_by_name() if by == "source" and rows else {}
    links = {}
    for row in rows:
        if not row.key:
            continue
        if by == "source":
            if row.key not in slugs:
                continue
            params = cohort | {"source": slugs[row.key]}
        else:
            params = cohort | {"utm_campaign": row.key}
        links[row.key] = f"{reverse('lead-list')}?{urlencode(params)}"
    return links


def _rate_note(rate: float | None) -> str:
    return "" if rate is None else f"· {percent(rate)}"


# --- The lead page ------------------------------------------------------------------------
def _lead_or_404(lead_id: Any) -> Lead:
    return get_object_or_404(lead_selectors.lead_list(), public_id=lead_id)


def _chosen_model(request: HttpRequest) -> tuple[ScoringModel | None, str]:
    """The scoring model of ``?model=<slug>`` (the default one without it) and, for a slug
    that names no model, what the page says about it."""
    slug = request.GET.get("model") or ""
    if slug:
        model = scoring_selectors.model_get(slug=slug)
        if model is not None:
            return model, ""
        return scoring_selectors.model_default(), f"No scoring model “{slug}”: showing the default model."
    return scoring_selectors.model_default(), ""


def _lead_context(request: HttpRequest, lead: Lead, stage_form: StageChangeForm | None = None) -> dict[str, Any]:
    model, model_error = _chosen_model(request)
    explained = scoring_selectors.lead_explain(lead=lead, model=model)
    explanation = explanation_data(explained)
    rules = explanation["rules"]
    can_change_stage = has_role(request.user, *STAGE_EDITORS)
    cards = scoring_selectors.lead_score_cards(lead=lead)
    events = Paginator(lead_selectors.lead_events(lead=lead), EVENTS_PER_PAGE).get_page(request.GET.get("events"))
    # What each event of the page added to the explained behaviour score.
    points = explanation_event_points(explained)
    events.object_list = list(events.object_list)
    for event in events.object_list:
        event.points = points.get(event.pk) if explained.result else None  # type: ignore[attr-defined]
    return {
        "lead": lead,
        "model": model,
        "model_error": model_error,
        "score_cards": cards,
        "explanation": explanation,
        "intent_window_days": explained.ruleset.intent_window_days if explained.ruleset else None,
        "qualifications": explanation_qualifications(explained),
        "matched_rules": [rule for rule in rules if rule["matched"]],
        "unmatched_rules": [rule for rule in rules if not rule["matched"]],
        "history": lead_selectors.lead_stage_history(lead=lead, viewer=request.user),
        "events": events,
        "score_trend": _score_trend(lead, model, explanation, default=bool(cards) and model == cards[0].model),
        "topics": lead_selectors.lead_interests(lead=lead, key="topic"),
        "assets": lead_selectors.lead_interests(lead=lead, key="asset"),
        "handoffs": selectors.lead_handoffs(lead=lead, user=request.user),
        "outcomes": list(lead_selectors.lead_outcomes(lead=lead)[: lead_selectors.LEAD_OUTCOMES_LIMIT]),
        "can_change_stage": can_change_stage,
        "can_manage_privacy": privacy.can_manage_privacy(request.user),
        "stage_form": stage_form or (StageChangeForm(current_stage=lead.stage) if can_change_stage else None),
        "suggestion": nurture.lead_next_content(lead=lead),  # a lead in nurture: its next content
        "can_see_nurture": has_role(request.user, MARKETING, SCORING_ADMIN),
        "anonymous_ids": lead_selectors.lead_anonymous_ids(lead=lead),
        "merges": list(lead_selectors.lead_merges(lead=lead)[:10]),
    }


def _score_trend(
    lead: Lead, model: ScoringModel | None, explanation: dict[str, Any], *, default: bool
) -> dict[str, Any] | None:
    """The lead's score over time under ``model``: the scores its stage log recorded,
    then the current one; None before the model scored it."""
    if model is None or not explanation["ruleset_version"]:
        return None
    history = lead_selectors.lead_score_history(lead=lead, model_slug=model.slug, default=default)
    moments = [*history, (explanation["as_of"], explanation["score"])]
    labelled = [(f"{timezone.localtime(at):%b %-d, %Y %H:%M}", score) for at, score in moments]
    labelled[-1] = (f"{labelled[-1][0]} (now)", labelled[-1][1])
    return {
        "points": labelled,
        "chart": charts.sparkline(
            chart_id="score-trend", title=f"{model.name} score of {lead.display_name} over time", points=labelled
        ),
    }


@role_required(*ALL_ROLES)
def lead_detail(request: HttpRequest, lead_id: Any) -> HttpResponse:
    lead = _lead_or_404(lead_id)
    return render(request, "leads/detail.html", _lead_context(request, lead))


@require_POST
@role_required(*STAGE_EDITORS, message="Only marketing and scoring admins may change a lead's stage by hand.")
def lead_stage_change(request: HttpRequest, lead_id: Any) -> HttpResponse:
    lead = _lead_or_404(lead_id)
    form = StageChangeForm(request.POST, current_stage=lead.stage)
    if form.is_valid():
        try:
            change = lifecycle.lead_stage_change(
                lead=lead, to_stage=form.cleaned_data["stage"], actor=request.user, reason=form.cleaned_data["reason"]
            )
        except lifecycle.StageChangeError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Moved to {Stage(change.to_stage).label}. The change is in the stage history.")
            return redirect("lead-detail", lead_id=lead.public_id)
    return render(request, "leads/detail.html", _lead_context(request, lead, stage_form=form), status=400)


# --- Accounts -------------------------------------------------------------------------------------
ACCOUNTS_PER_PAGE = 50
CONTACTS_PER_PAGE = 25
ACCOUNT_SORTS: dict[str, tuple[str, ...]] = {
    "-score": ("-score", "-id"),
    "score": ("score", "id"),
    "name": ("name", "id"),
    "-contacts": ("-scored_contacts", "-id"),
}
DEFAULT_ACCOUNT_SORT = "-score"


@role_required(*ALL_ROLES)
def account_list(request: HttpRequest) -> HttpResponse:
    """Accounts with one model's roll-up (the default model unless ``model=<slug>``),
    sortable by it, searchable, paginated."""
    models = list(scoring_selectors.model_list())
    model = next((m for m in models if m.slug == request.GET.get("model")), models[0] if models else None)
    sort = request.GET.get("sort", DEFAULT_ACCOUNT_SORT)
    sort = sort if sort in ACCOUNT_SORTS else DEFAULT_ACCOUNT_SORT
    text = request.GET.get("q", "")
    accounts = scoring_accounts.accounts_annotate_rollup(
        lead_selectors.account_search(lead_selectors.account_list(), text=text), model=model
    ).order_by(*ACCOUNT_SORTS[sort])
    page = Paginator(accounts, ACCOUNTS_PER_PAGE).get_page(request.GET.get("page"))
    context = {"page": page, "models": models, "model": model, "sort": sort, "q": text, "filtered": bool(text.strip())}
    return render(request, "accounts/list.html", context)


@role_required(*ALL_ROLES)
def account_detail(request: HttpRequest, account_id: int) -> HttpResponse:
    """The account: its roll-up under each model with the contacts behind it, its
    contacts with their stages and scores, and its latest activity."""
    account = get_object_or_404(Account, pk=account_id)
    rollups = scoring_accounts.account_rollups(account=account)
    explained = [(rollup, scoring_accounts.account_explain(account=account, model=rollup.model)) for rollup in rollups]
    contacts = leads_annotate_scores(lead_selectors.account_contacts(account=account))
    context = {
        "account": account,
        "explained": explained,
        "top": scoring_accounts.top_contacts(),
        "contacts": Paginator(contacts, CONTACTS_PER_PAGE).get_page(request.GET.get("contacts")),
        "events": Paginator(lead_selectors.account_events(account=account), EVENTS_PER_PAGE).get_page(
            request.GET.get("events")
        ),
    }
    return render(request, "accounts/detail.html", context)
