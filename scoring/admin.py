from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from scoring.models import RULE_FIELDS, RescoreRun, Rule, RuleSet, RuleSetStatus


class RuleInline(admin.TabularInline):
    model = Rule
    extra = 0
    fields = ["position", *(name for name in RULE_FIELDS if name != "position")]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or obj.status == RuleSetStatus.DRAFT

    has_add_permission = has_delete_permission = has_change_permission


@admin.register(RuleSet)
class RuleSetAdmin(admin.ModelAdmin):
    """Read and tidy rulesets here; edit, preview and publish them in the Scoring rules pages,
    which validate rules and rescore leads on publish."""

    list_display = ["version", "name", "status", "mql_threshold", "sql_threshold", "published_at"]
    list_filter = ["status"]
    inlines = [RuleInline]
    readonly_fields = ["version", "status", "created_by", "created_at", "published_by", "published_at", "archived_at"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and (obj is None or obj.status == RuleSetStatus.DRAFT)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions are numbered by the service: use the API or the pages


@admin.register(RescoreRun)
class RescoreRunAdmin(admin.ModelAdmin):
    list_display = ["id", "ruleset", "reason", "state", "done", "total", "changed_stages", "created_at", "finished_at"]
    list_filter = ["state", "reason"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
