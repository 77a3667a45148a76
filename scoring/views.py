"""Pages of scoring: rulesets and their rules, the what-if preview, publishing and the
rescore progress. Everyone with a role reads; only scoring admins (and staff) change
rulesets, and only drafts change."""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from leadflow import charts
from leadflow.leads import selectors as lead_selectors
from leadflow.leads.decorators import role_required
from leadflow.leads.models import Stage
from leadflow.leads.roles import ALL_ROLES, SCORING_ADMIN, has_role
from scoring import selectors, services
from scoring.forms import RuleForm, RuleSetForm, ScoringModelForm, ruleset_defaults
from scoring.models import RescoreRun, Rule, RuleKind, RuleSet, RuleSetStatus
from scoring.presenters import PREVIEW_CATEGORIES, describe_rule, preview_data, ruleset_warnings

EDITOR_ONLY = "Only scoring admins may change rulesets; you can read them."


def _ruleset_or_404(version: int) -> RuleSet:
    return get_object_or_404(selectors.ruleset_list(), version=version)


def _not_editable(request: HttpRequest, ruleset: RuleSet) -> HttpResponse:
    """Only drafts change: the page says so in the services' words, as the API does."""
    try:
        services.ruleset_require_draft(ruleset=ruleset)
    except services.RuleSetNotEditable as refusal:
        messages.error(request, str(refusal))
    return redirect("ruleset-detail", version=ruleset.version)


# --- Reading ---------------------------------------------------------------------------------
@role_required(*ALL_ROLES)
def ruleset_list(request: HttpRequest) -> HttpResponse:
    """Every scoring model with its published ruleset, drafts and archived ones (three
    queries however many models and rulesets)."""
    rulesets = list(selectors.ruleset_list())
    models = []
    for model in selectors.model_list():
        own = [r for r in rulesets if r.model_id == model.pk]
        models.append(
            {
                "model": model,
                "published": [r for r in own if r.status == RuleSetStatus.PUBLISHED],
                "drafts": [r for r in own if r.status == RuleSetStatus.DRAFT],
                "archived": [r for r in own if r.status == RuleSetStatus.ARCHIVED],
            }
        )
    context = {
        "models": models,
        "several_models": len(models) > 1,
        "latest_run": selectors.rescore_run_latest(),
        "can_edit": has_role(request.user, SCORING_ADMIN),
    }
    return render(request, "scoring/ruleset_list.html", context)


@role_required(*ALL_ROLES)
def ruleset_detail(request: HttpRequest, version: int) -> HttpResponse:
    ruleset = _ruleset_or_404(version)
    rules = list(ruleset.rules.all())
    is_admin = has_role(request.user, SCORING_ADMIN)

    def rows(kind: str) -> list[dict[str, Any]]:
        return [
            {"rule": rule, "condition": describe_rule(selectors.rule_spec(rule))} for rule in rules if rule.kind == kind
        ]

    context = {
        "ruleset": ruleset,
        "fit_rows": rows(RuleKind.FIT),
        "behaviour_rows": rows(RuleKind.BEHAVIOUR),
        "suppress_rows": rows(RuleKind.SUPPRESS),
        "is_admin": is_admin,
        "can_edit": is_admin and ruleset.is_editable,
        # A draft's warnings (what saved but is likely a mistake); a published ruleset's are history.
        "warnings": ruleset_warnings(ruleset=ruleset, rules=rules) if ruleset.is_editable else [],
    }
    return render(request, "scoring/ruleset_detail.html", context)


# --- Models and new drafts ---------------------------------------------------------------------
MODELS_ONLY = "Only scoring admins may create scoring models and rulesets; you can read them."


@role_required(SCORING_ADMIN, message=MODELS_ONLY)
def scoring_model_create(request: HttpRequest) -> HttpResponse:
    """A new scoring model (e.g. a product line); it scores nothing until a draft of it is published."""
    form = ScoringModelForm(request.POST) if request.method == "POST" else ScoringModelForm()
    if request.method == "POST":
        if form.is_valid():
            try:
                model = services.scoring_model_create(**form.cleaned_data)
            except ValidationError as error:
                form.add_service_errors(error)
            else:
                messages.success(request, f"Created the model {model.name}: add a draft ruleset, then publish it.")
                return redirect(f"{reverse('ruleset-list')}#model-{model.slug}")
        return render(request, "scoring/model_form.html", {"form": form}, status=400)
    return render(request, "scoring/model_form.html", {"form": form})


@role_required(SCORING_ADMIN, message=MODELS_ONLY)
def ruleset_create(request: HttpRequest, slug: str) -> HttpResponse:
    """A new, empty draft of a model, with its settings (thresholds, grades, windows)."""
    model = get_object_or_404(selectors.model_list(), slug=slug)
    context: dict[str, Any] = {"model": model, "ruleset": None}
    if request.method != "POST":
        context["form"] = RuleSetForm(initial=ruleset_defaults())
        return render(request, "scoring/ruleset_form.html", context)
    # Validated against an unsaved ruleset of the model: its defaults under the posted values
    # (the serializer's unique-per-model check needs the model and the status).
    form = RuleSetForm(request.POST, instance=RuleSet(model=model))
    context["form"] = form
    if form.is_valid():
        try:
            ruleset = services.ruleset_create(user=request.user, model=model, **form.validated_data)
        except ValidationError as error:
            form.add_service_errors(error)
        else:
            messages.success(request, f"Draft v{ruleset.version} of {model.name} created: add its rules, then publish.")
            return redirect("ruleset-detail", version=ruleset.version)
    return render(request, "scoring/ruleset_form.html", context, status=400)


# --- Changing a draft -------------------------------------------------------------------------
@role_required(SCORING_ADMIN, message=EDITOR_ONLY)
def ruleset_edit(request: HttpRequest, version: int) -> HttpResponse:
    ruleset = _ruleset_or_404(version)
    if not ruleset.is_editable:
        return _not_editable(request, ruleset)
    if request.method == "POST":
        form = RuleSetForm(request.POST, instance=ruleset)
        if form.is_valid():
            try:
                services.ruleset_update(ruleset=ruleset, changes=services.RuleSetChanges(**form.validated_data))
            except services.ScoringError as error:
                form.add_error(None, str(error))
            else:
                messages.success(request, f"Saved the settings of draft v{ruleset.version}.")
                return redirect("ruleset-detail", version=ruleset.version)
        return render(
            request, "scoring/ruleset_form.html", {"ruleset": ruleset, "model": ruleset.model, "form": form}, status=400
        )
    context = {
        "ruleset": ruleset,
        "model": ruleset.model,
        "form": RuleSetForm(instance=ruleset),
        "warnings": ruleset_warnings(ruleset=ruleset, rules=[]),
    }
    return render(request, "scoring/ruleset_form.html", context)


def _rule_page(
    request: HttpRequest, ruleset: RuleSet, form: RuleForm, rule: Rule | None, status: int = 200
) -> HttpResponse:
    context: dict[str, Any] = {"ruleset": ruleset, "form": form, "rule": rule}
    if rule is not None and not form.is_bound:  # the saved rule: what it tests, and what looks amiss
        context["condition"] = describe_rule(selectors.rule_spec(rule))
        context["warnings"] = ruleset_warnings(ruleset=ruleset, rules=[rule], settings=False)
    return render(request, "scoring/rule_form.html", context, status=status)


@role_required(SCORING_ADMIN, message=EDITOR_ONLY)
def rule_create(request: HttpRequest, version: int) -> HttpResponse:
    ruleset = _ruleset_or_404(version)
    if not ruleset.is_editable:
        return _not_editable(request, ruleset)
    if request.method != "POST":
        kind = request.GET.get("kind")
        return _rule_page(request, ruleset, RuleForm(initial={"kind": kind if kind in RuleKind.values else ""}), None)
    form = RuleForm(request.POST)
    if form.is_valid():
        try:
            rule = services.rule_create(ruleset=ruleset, **form.validated_data)
        except services.ScoringError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Added the rule “{rule.name}” to draft v{ruleset.version}.")
            return redirect("ruleset-detail", version=ruleset.version)
    return _rule_page(request, ruleset, form, None, status=400)


@role_required(SCORING_ADMIN, message=EDITOR_ONLY)
def rule_edit(request: HttpRequest, version: int, rule_id: int) -> HttpResponse:
    ruleset = _ruleset_or_404(version)
    rule = get_object_or_404(Rule, pk=rule_id, ruleset=ruleset)
    if not ruleset.is_editable:
        return _not_editable(request, ruleset)
    if request.method != "POST":
        return _rule_page(request, ruleset, RuleForm(instance=rule), rule)
    form = RuleForm(request.POST, instance=rule)
    if form.is_valid():
        try:
            services.rule_update(rule=rule, changes=services.RuleChanges(**form.validated_data))
        except services.ScoringError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Saved the rule “{rule.name}”.")
            return redirect("ruleset-detail", version=ruleset.version)
    return _rule_page(request, ruleset, form, rule, status=400)


@require_POST
@role_required(SCORING_ADMIN, message=EDITOR_ONLY)
def rule_delete(request: HttpRequest, version: int, rule_id: int) -> HttpResponse:
    ruleset = _ruleset_or_404(version)
    rule = get_object_or_404(Rule, pk=rule_id, ruleset=ruleset)
    try:
        services.rule_delete(rule=rule)
    except services.ScoringError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Removed the rule “{rule.name}”.")
    return redirect("ruleset-detail", version=ruleset.version)


@require_POST
@role_required(SCORING_ADMIN, message=EDITOR_ONLY)
def ruleset_clone(request: HttpRequest, version: int) -> HttpResponse:
    clone = services.ruleset_clone(ruleset=_ruleset_or_404(version), user=request.user)
    messages.success(request, f"Draft v{clone.version} created from v{version}: edit it, preview it, then publish.")
    return redirect("ruleset-detail", version=clone.version)


@require_POST
@role_required(SCORING_ADMIN, message=EDITOR_ONLY)
def ruleset_delete(request: HttpRequest, version: int) -> HttpResponse:
    ruleset = _ruleset_or_404(version)
    try:
        services.ruleset_delete(ruleset=ruleset)
    except services.ScoringError as error:
        messages.error(request, str(error))
        return redirect("ruleset-detail", version=version)
    messages.success(request, f"Deleted draft v{version}.")
    return redirect("ruleset-list")


# --- Preview, publish, progress ---------------------------------------------------------------
def _bucket_low(label: str) -> int:
    return int(label.split("–")[0])


def _preview_histogram(preview: selectors.Preview) -> dict[str, Any]:
    lows = sorted({_bucket_low(label) for label in [*preview.histogram_before, *preview.histogram_after]})
    if not lows:
        return {"lows": [], "before": [], "after": []}
    width = int(selectors.HISTOGRAM_WIDTH)
    every = list(range(lows[0], lows[-1] + width, width))
    before = {_bucket_low(label): n for label, n in preview.histogram_before.items()}
    after = {_bucket_low(label): n for label, n in preview.histogram_after.items()}
    return {"lows": every, "before": [before.get(b, 0) for b in every], "after": [after.get(b, 0) for b in every]}


# The preview's totals the page shows as their parts (no longer, already below) instead.
PAGE_UNLISTED = (selectors.LEAVE_MQL, selectors.LEAVE_SQL)


@role_required(SCORING_ADMIN, message="Only scoring admins may preview rulesets.")
def ruleset_preview(request: HttpRequest, version: int) -> HttpResponse:
    ruleset = _ruleset_or_404(version)
    rules = list(ruleset.rules.all())
    preview = selectors.ruleset_preview(ruleset=ruleset)
    data = preview_data(preview)
    buckets = _preview_histogram(preview)
    stages = [
        {
            "stage": stage,
            "before": preview.stages_before.get(stage, 0),
            "after": preview.stages_after.get(stage, 0),
            "delta": preview.stages_after.get(stage, 0) - preview.stages_before.get(stage, 0),
        }
        for stage in Stage
    ]
    context = {
        "ruleset": ruleset,
        "preview": data,
        "stages": stages,
        "chart": charts.histogram(
            chart_id="preview-scores",
            title=f"Score distribution now and with v{ruleset.version}",
            lows=buckets["lows"],
            width=selectors.HISTOGRAM_WIDTH,
            series=[
                charts.Series("Now", buckets["before"], "series-muted"),
                charts.Series(f"With v{ruleset.version}", buckets["after"], "series-1"),
            ],
            markers=[(ruleset.mql_threshold, "MQL"), (ruleset.sql_threshold, "SQL")],
        )
        if buckets["lows"]
        else None,
        # The stage categories whose leads the page lists (the leave totals are the API's).
        "lists": [
            (category.key, category.label, category.description)
            for category in PREVIEW_CATEGORIES
            if category.key in selectors.PREVIEW_LISTS and category.key not in PAGE_UNLISTED
        ],
        "limit": selectors.PREVIEW_LIST_LIMIT,
        "below": {
            "no_longer": data["counts"][selectors.NO_LONGER_MQL] + data["counts"][selectors.NO_LONGER_SQL],
            "already": data["counts"][selectors.ALREADY_BELOW_MQL] + data["counts"][selectors.ALREADY_BELOW_SQL],
        },
        "movers": [
            (
                "up",
                "Top movers up",
                f"The {selectors.PREVIEW_MOVERS} leads whose score v{ruleset.version} raises most.",
                data["movers"]["up"],
            ),
            (
                "down",
                "Top movers down",
                f"The {selectors.PREVIEW_MOVERS} leads whose score v{ruleset.version} lowers most.",
                data["movers"]["down"],
            ),
        ],
        "is_admin": True,
        "rule_rows": [{"rule": rule, "condition": describe_rule(selectors.rule_spec(rule))} for rule in rules],
        "warnings": ruleset_warnings(ruleset=ruleset, rules=rules),
    }
    return render(request, "scoring/preview.html", context)


@role_required(SCORING_ADMIN, message=EDITOR_ONLY)
def ruleset_publish(request: HttpRequest, version: int) -> HttpResponse:
    """GET: confirm. POST: publish the draft and follow the rescore."""
    ruleset = _ruleset_or_404(version)
    if not ruleset.is_editable:
        return _not_editable(request, ruleset)
    if request.method == "POST":
        try:
            run = services.ruleset_publish(ruleset=ruleset, user=request.user)
        except services.ScoringError as error:
            messages.error(request, str(error))
            return redirect("ruleset-detail", version=version)
        messages.success(request, f"Published v{version}: every lead is rescored with it.")
        return redirect("rescore-run", run_id=run.pk)
    context = {
        "ruleset": ruleset,
        "current": selectors.published_ruleset(ruleset.model),
        "lead_count": lead_selectors.lead_count(),
    }
    return render(request, "scoring/publish_confirm.html", context)


@role_required(*ALL_ROLES)
def rescore_run(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(RescoreRun.objects.select_related("ruleset", "created_by"), pk=run_id)
    context = {"run": run, "finished": run.state in ("done", "failed"), "max_attempts": settings.RESCORE_MAX_ATTEMPTS}
    return render(request, "scoring/rescore_run.html", context)
