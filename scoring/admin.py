"""The scoring admin writes through the services like the API and the pages: a ruleset
and its rules are checked by ``ruleset_validate`` and ``rule_validate`` (each message on
its field) and saved by ``ruleset_update`` and ``rule_create``/``rule_update``/
``rule_delete``; only drafts change, published and archived rulesets are read-only."""

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from leadflow.leads.admin import ReadOnlyAdminMixin
from scoring import services
from scoring.models import RULE_FIELDS, RULESET_FIELDS, RescoreRun, Rule, RuleSet, RuleSetStatus, ScoringModel


def _check(
    form: forms.ModelForm, errors_of: Callable[[dict[str, Any]], services.Errors], names: tuple[str, ...]
) -> None:
    """Run a service's rules on the fields that parse, with the form's own messages: every
    message at once, each on its field (a field the form refused is left to its message)."""
    cleaned = form.cleaned_data
    values = {
        name: cleaned[name] if name in cleaned else getattr(form.instance, name)
        for name in names
        if name not in form.errors
    }
    for name, messages in errors_of(values).items():
        if name not in form.errors:
            form.add_error(name if name in form.fields else None, messages)


class RuleAdminForm(forms.ModelForm):
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        _check(self, services.rule_errors, RULE_FIELDS)
        return cleaned


class RuleSetAdminForm(forms.ModelForm):
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        _check(self, services.ruleset_errors, RULESET_FIELDS)
        return cleaned


def _is_draft(obj: Any) -> bool:
    return obj is None or obj.status == RuleSetStatus.DRAFT


class RuleInline(admin.TabularInline):
    model = Rule
    form = RuleAdminForm
    extra = 0
    fields = ["position", *(name for name in RULE_FIELDS if name != "position")]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_draft(obj)

    has_add_permission = has_delete_permission = has_change_permission


@admin.register(RuleSet)
class RuleSetAdmin(admin.ModelAdmin):
    """Read rulesets and tidy drafts here; preview and publish them in the Scoring rules
    pages, which rescore leads on publish. New rulesets come from the API, the pages or a
    clone (the services number versions)."""

    form = RuleSetAdminForm
    list_display = ["version", "model", "name", "status", "mql_threshold", "sql_threshold", "published_at"]
    list_filter = ["model", "status"]
    list_select_related = ["model"]
    inlines = [RuleInline]
    readonly_fields = [
        "model",
        "version",
        "status",
        "created_by",
        "created_at",
        "published_by",
        "published_at",
        "archived_at",
    ]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and _is_draft(obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and _is_draft(obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: RuleSet, form: Any, change: bool) -> None:
        given = {name: form.cleaned_data[name] for name in form.changed_data}
        services.ruleset_update(ruleset=obj, changes=services.RuleSetChanges(**given))

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """The rules through the services: ``formset.save(commit=False)`` only sorts the
        forms into new, changed and deleted rules (for the history message)."""
        formset.save(commit=False)
        for rule in formset.deleted_objects:
            services.rule_delete(rule=rule)
        for rule, changed in formset.changed_objects:
            given = {name: getattr(rule, name) for name in changed}
            services.rule_update(rule=rule, changes=services.RuleChanges(**given))
        formset.new_objects = [
            services.rule_create(ruleset=form.instance, **{name: getattr(rule, name) for name in RULE_FIELDS})
            for rule in formset.new_objects
        ]

    def delete_model(self, request: HttpRequest, obj: RuleSet) -> None:
        services.ruleset_delete(ruleset=obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Drafts are deleted one by one, through ruleset_delete: no bulk delete of any ruleset.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(ScoringModel)
class ScoringModelAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Models are created and edited in the Scoring rules pages and the API (the services
    check slugs and refuse to delete a model that scored leads)."""

    list_display = ["position", "name", "slug", "created_at"]
    list_display_links = ["name"]


@admin.register(RescoreRun)
class RescoreRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "ruleset", "reason", "state", "done", "total", "changed_stages", "created_at", "finished_at"]
    list_filter = ["state", "reason"]
